"""Digests: a simulated hour of a small home, fed through the ring buffers."""

from spin_lite import digest

CFG = {"bucket_seconds": 60, "fine_buckets": 60, "coarse_buckets": 48,
       "coarse_factor": 30, "top_remotes": 3}
CAMERA = "02:00:00:00:00:01"
BULB = "02:00:00:00:00:05"
T0 = 1700001000  # a wall-clock half-hour (and minute) boundary


def make(cfg=CFG):
    return digest.Digests(cfg, 0, T0)


def test_a_bucket_closes_each_minute_with_what_the_camera_sent():
    d = make()
    for s in range(0, 60, 5):
        d.add(CAMERA, "203.0.113.10", 443, 100000, 2000, 70, 30, s == 0, False)
    assert d.tick(59999) == []
    closed = d.tick(60000)
    assert closed == [d.open_n - 1]
    b = d.closed(CAMERA, closed[0])
    assert b["bytes_out"] == 1200000 and b["bytes_in"] == 24000
    assert b["packets_out"] == 840 and b["conns"] == 1 and b["remotes"] == 1
    assert b["top"] == [["203.0.113.10", 1224000]]
    assert b["t"] == T0
    assert d.current(CAMERA)["bytes_out"] == 0


def test_the_scanning_bulb_shows_unreplied_attempts_and_many_remotes():
    d = make()
    for i in range(300):
        d.add(BULB, "198.18.%d.%d" % (i // 250, i % 250), 23, 60, 0, 1, 0, True, True)
    cur = d.current(BULB)
    assert cur["unreplied"] == 300 and cur["conns"] == 300
    # past 32 distinct remotes the count comes from a fixed-size sketch
    assert abs(cur["remotes"] - 300) <= 30 and cur["ports"] == 1


def test_top_remotes_keep_the_biggest_three():
    d = make()
    for i, size in enumerate((5, 50, 500, 5000, 50)):
        d.add(CAMERA, "203.0.113.%d" % i, 80, size, 0, 1, 0, False, False)
    d.tick(60000)
    top = d.closed(CAMERA, d.open_n - 1)["top"]
    assert [r for r, _ in top] == ["203.0.113.3", "203.0.113.2", "203.0.113.1"] or \
        [r for r, _ in top] == ["203.0.113.3", "203.0.113.2", "203.0.113.4"]
    assert [b for _, b in top] == [5000, 500, 50]


def test_history_has_one_point_per_elapsed_bucket():
    d = make()
    for minute in range(1, 8):
        d.add(CAMERA, "203.0.113.10", 443, minute * 1000, 0, 1, 0, False, False)
        d.tick(minute * 60000)
    h = d.history(CAMERA, 60)
    assert len(h["points"]) == 7
    assert [p["bytes_out"] for p in h["points"]] == [m * 1000 for m in range(1, 8)]
    assert [p["t"] for p in h["points"]] == [T0 + 60 * m for m in range(7)]
    assert len(d.history(CAMERA, 3)["points"]) == 3


def test_memory_of_the_rings_does_not_grow_with_traffic():
    d = make()
    d.add(CAMERA, "203.0.113.1", 80, 1, 1, 1, 1, True, False)
    d.tick(60000)  # rings come with the first bucket that moved traffic
    for minute in range(2, 200):
        for i in range(50):
            d.add(CAMERA, "203.0.%d.%d" % (minute % 250, i), 80, 1000, 1000, 1, 1, True, False)
        d.tick(minute * 60000)
    fine = d.devices[CAMERA].fine
    coarse = d.devices[CAMERA].coarse
    # one record a bucket kept, no more; every minute wrote the same shape
    assert len(fine.lens) == 60 and len(fine.data) == sum(fine.lens)
    assert max(fine.lens) - min(fine.lens) <= 3 and max(fine.lens) < 40
    assert len(coarse.lens) <= 199 // 30 + 2 and len(coarse.data) == sum(coarse.lens)
    # buckets that left the ring gave their top remotes back
    assert len([r for r in d.table.refs if r]) <= 60 * 3
    assert len(d.history(CAMERA, 1000)["points"]) == 60


def test_a_silent_minute_costs_its_ring_one_byte():
    d = make()
    d.add(CAMERA, "203.0.113.1", 80, 5 * 2 ** 40, 7, 1, 1, True, False)
    d.tick(60000)
    d.tick(30 * 60000)  # half an hour of nothing
    fine = d.devices[CAMERA].fine
    assert list(fine.lens[-29:]) == [0] * 29 and fine.lens[-30] > 0
    assert d.closed(CAMERA, d.open_n - 30)["bytes_out"] == 5 * 2 ** 40
    assert [p["bytes_out"] for p in d.history(CAMERA, 29)["points"]] == [0] * 29


def test_coarse_ring_folds_half_hours():
    d = make()
    for minute in range(1, 61):
        d.add(CAMERA, "203.0.113.10", 443, 1000, 0, 1, 0, False, False)
        d.tick(minute * 60000)
    h = d.history(CAMERA, 120)
    sums = [p["bytes_out"] for p in h["coarse"]]
    assert h["coarse_seconds"] == 1800
    assert sum(sums) == 60000
    assert sums[-2:] == [30000, 30000]


def test_a_device_first_heard_in_the_middle_of_a_half_hour_counts_in_it():
    d = make()
    d.add(CAMERA, "203.0.113.10", 443, 1000, 0, 1, 0, False, False)
    for minute in range(1, 46):
        if minute > 10:  # the bulb joins ten minutes into the half-hour
            d.add(BULB, "203.0.113.9", 80, 100, 0, 1, 0, False, False)
        d.tick(minute * 60000)
    coarse = d.history(BULB, 120)["coarse"]
    assert [p["bytes_out"] for p in coarse[-2:]] == [2000, 1500]
    assert d.history(None, 120)["coarse"][-2]["bytes_out"] == 2000 + 1000


def test_a_stalled_agent_zeroes_the_buckets_it_missed():
    d = make()
    d.add(CAMERA, "203.0.113.10", 443, 777, 0, 1, 0, False, False)
    d.tick(60000)
    d.add(CAMERA, "203.0.113.10", 443, 999, 0, 1, 0, False, False)
    d.tick(5 * 60000)
    pts = d.history(CAMERA, 60)["points"]
    assert [p["bytes_out"] for p in pts] == [777, 999, 0, 0, 0]


def test_a_wall_clock_jump_relabels_history_without_making_or_losing_buckets():
    d = make()
    d.add(CAMERA, "203.0.113.10", 443, 10, 0, 1, 0, False, False)
    d.tick(60000, T0 + 60)
    d.tick(120000, T0 + 120 + 3600)  # NTP arrives: the clock was an hour slow
    pts = d.history(CAMERA, 60)["points"]
    assert len(pts) == 2
    assert pts[0]["bytes_out"] == 10
    assert pts[0]["t"] == T0 + 3600


def test_distinct_remotes_of_all_devices_take_the_maximum():
    d = make()
    d.add(CAMERA, "203.0.113.1", 80, 5, 0, 1, 0, True, False)
    d.add(BULB, "203.0.113.1", 80, 5, 0, 1, 0, True, False)
    d.tick(60000)
    home = d.closed(None, d.open_n - 1)
    assert home["bytes_out"] == 10 and home["remotes"] == 1


SCANNER = "02:00:00:00:00:66"


def test_a_scan_of_100000_remotes_in_one_bucket_keeps_the_digest_bounded():
    cfg = dict(CFG, digest_remotes=64)
    d = make(cfg)
    heavy = "203.0.113.200"
    total = 0
    biggest = 0
    for i in range(100000):
        remote = "10.%d.%d.%d" % (i >> 16, (i >> 8) & 255, i & 255)
        d.add(SCANNER, remote, 1 + i % 1000, 60, 0, 1, 0, True, True)
        total += 60
        if i % 1000 == 0:
            d.add(SCANNER, heavy, 443, 1500, 500, 2, 1, False, False)
            total += 2000
            biggest += 2000
            dev = d.devices[SCANNER]
            assert len(dev.per_remote) <= 64
            assert dev.remotes.regs is None or len(dev.remotes.regs) == 256
            for sketch in (dev.remotes, dev.ports):
                assert sketch.small is None or len(sketch.small) <= 33
    dev = d.devices[SCANNER]
    assert len(dev.per_remote) <= 64
    cur = d.current(SCANNER)
    assert cur["bytes_out"] + cur["bytes_in"] == total
    assert cur["conns"] == 100000 and cur["unreplied"] == 100000
    assert abs(cur["remotes"] - 100001) <= 10000
    assert abs(cur["ports"] - 1000) <= 100
    assert cur["top"][0] == [heavy, biggest]
    assert d.folded > 0
    d.tick(60000)
    b = d.closed(SCANNER, d.open_n - 1)
    assert b["top"][0] == [heavy, biggest]
    assert b["bytes_out"] + b["bytes_in"] == total and b["conns"] == 100000
    assert abs(b["remotes"] - 100001) <= 10000
    assert len(d.devices[SCANNER].per_remote) == 0 and d.devices[SCANNER].remotes.regs is None


def test_a_device_seen_but_silent_has_no_rings():
    d = make()
    d.add(BULB, "203.0.113.9", 80, 0, 0, 0, 0, False, False)  # a flow that did not move
    d.add(CAMERA, "203.0.113.10", 443, 1000, 10, 1, 1, True, False)
    for minute in range(1, 5):
        d.tick(minute * 60000)
    assert d.devices[BULB].fine is digest.NO_RING and d.devices[BULB].coarse is digest.NO_RING
    assert d.devices[CAMERA].fine is not digest.NO_RING
    assert d.closed(BULB, d.open_n - 1)["bytes_out"] == 0
    assert d.history(BULB, 120)["points"][0]["bytes_out"] == 0
    # the first bucket with traffic brings the rings, older buckets read as zero
    d.add(BULB, "203.0.113.9", 80, 500, 0, 1, 0, False, False)
    d.tick(5 * 60000)
    assert d.devices[BULB].fine is not digest.NO_RING
    assert [p["bytes_out"] for p in d.history(BULB, 5)["points"]] == [0, 0, 0, 0, 500]


def test_the_shared_remote_table_never_names_the_wrong_remote():
    # a table of 6 slots, too few for 2 devices x (4 fine + 2 coarse) x 1 top
    cfg = {"bucket_seconds": 60, "fine_buckets": 4, "coarse_buckets": 2,
           "coarse_factor": 2, "top_remotes": 1, "digest_remote_table": 6}
    d = make(cfg)
    for minute in range(1, 40):
        for k, dev in enumerate((CAMERA, BULB)):
            d.add(dev, "198.51.%d.%d" % (k, minute), 80, 100 * minute, 0, 1, 0, False, False)
        d.tick(minute * 60000)
        assert d.table.unused == len([r for r in d.table.refs if r == 0])
        for k, dev in enumerate((CAMERA, BULB)):
            for n in range(d.open_n - 4, d.open_n):
                top = d.closed(dev, n)["top"]
                m = n - (d.open_n - 1 - minute)  # the minute that wrote bucket n
                if top:
                    assert top == [["198.51.%d.%d" % (k, m), 100 * m]]
    assert len(d.table) <= 6
    assert d.table.full > 0  # some top entries had to be left out, and are counted
    d.forget(CAMERA)
    d.forget(BULB)
    assert sum(d.table.refs) == 0 and d.table.unused == len(d.table.names)


def test_counters_widen_when_a_bucket_needs_it():
    d = make()
    d.add(CAMERA, "203.0.113.10", 443, 5 * 2 ** 32, 7, 70000, 1, True, False)
    d.tick(60000)
    b = d.closed(CAMERA, d.open_n - 1)
    assert b["bytes_out"] == 5 * 2 ** 32 and b["packets_out"] == 70000
    assert b["top"] == [["203.0.113.10", 5 * 2 ** 32 + 7]]


def test_a_camera_streaming_has_a_recent_top_in_the_first_second_of_a_minute():
    """LuCI's Devices view showed "-" for it: the open bucket of a minute
    that just began has no top yet; the recent top adds the last closed one."""
    d = make()
    d.add(CAMERA, "203.0.113.10", 443, 100000, 2000, 70, 30, True, False)
    d.tick(60000)
    assert d.current(CAMERA)["top"] == []
    assert d.recent_top(CAMERA) == [["203.0.113.10", 102000]]
    d.add(CAMERA, "203.0.113.10", 443, 5000, 0, 4, 0, False, False)
    d.add(CAMERA, "198.51.100.9", 123, 90, 90, 1, 1, True, False)
    assert d.recent_top(CAMERA) == [["203.0.113.10", 107000], ["198.51.100.9", 180]]
    assert d.recent_top(BULB) == []


def test_past_32_remotes_the_sketch_holds_what_hyperloglog_would():
    """Distinct.add writes the register update out (it runs per flow of a
    busy device): its registers must be the shared hll_add's."""
    for kind in (digest.Distinct, digest.Ports):
        sketch = kind()
        values = [(i * 2654435761) & 0xFFFFFFFF for i in range(500)] + [7, 7, 443, 443]
        for v in values:
            sketch.add(v)
        regs = bytearray(digest.HLL_M)
        for v in set(values):
            digest.hll_add(regs, digest.HLL_BITS, digest.mix((v * kind.K) & digest.M32))
        assert sketch.small is None and sketch.regs == regs
        assert abs(sketch.count() - len(set(values))) <= len(set(values)) // 5
    few = digest.Ports()
    for p in (443, 80, 443, 53):
        few.add(p)
    assert few.count() == 3 and few.regs is None


def test_a_long_top_list_of_huge_buckets_reads_back_whole():
    """A record that could pass 255 bytes (20 top remotes of petabytes)
    keeps its length in 16 bits: nothing is cut."""
    d = make(dict(CFG, top_remotes=20))
    for i in range(25):
        d.add(CAMERA, "203.0.113.%d" % i, 443, (i + 1) * 2 ** 50, 2 ** 40, 2 ** 40, 1, True, False)
    d.tick(60000)
    b = d.closed(CAMERA, d.open_n - 1)
    assert b["bytes_out"] == sum((i + 1) * 2 ** 50 for i in range(25)) and b["packets_out"] == 25 * 2 ** 40
    assert b["top"] == [["203.0.113.%d" % i, (i + 1) * 2 ** 50 + 2 ** 40] for i in range(24, 4, -1)]
    assert max(d.devices[CAMERA].fine.lens) > 200
