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
    sizes = fine.sizes()
    assert fine.count == 60 and len(sizes) == 60 and len(fine.data) == sum(sizes)
    assert max(sizes[:-1]) - min(sizes[:-1]) <= 3 and max(sizes) < 40
    assert coarse.count <= 199 // 30 + 2 and len(coarse.data) == sum(coarse.sizes())
    # buckets that left the ring gave their top remotes back
    assert len([r for r in d.table.refs if r]) <= 60 * 3
    assert len(d.history(CAMERA, 1000)["points"]) == 60


def test_a_silent_minute_costs_its_ring_one_byte():
    d = make()
    d.add(CAMERA, "203.0.113.1", 80, 5 * 2 ** 40, 7, 1, 1, True, False)
    d.tick(60000)
    d.tick(30 * 60000)  # half an hour of nothing
    fine = d.devices[CAMERA].fine
    assert fine.sizes()[-29:] == [1] * 29 and fine.sizes()[-30] > 1
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
            for sketch in (dev.remotes, dev.ports):
                # at most EXACT values, then the 256 registers
                assert len(sketch) <= 32 or (type(sketch) is bytearray and len(sketch) == 256)
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
    assert len(d.devices[SCANNER].per_remote) == 0 and d.devices[SCANNER].remotes is None


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
    """distinct_add writes the register update out (it runs per flow of a
    busy device): its registers must be the shared hll_add's."""
    for k in (1, digest.PORT_K):
        sketch = None
        values = [(i * 2654435761) & 0xFFFFFFFF for i in range(500)] + [7, 7, 443, 443]
        for v in values:
            sketch = digest.distinct_add(sketch, v, k)
        regs = bytearray(digest.HLL_M)
        for v in set(values):
            digest.hll_add(regs, digest.HLL_BITS, digest.mix((v * k) & digest.M32))
        assert sketch == regs
        assert abs(digest.distinct_count(sketch) - len(set(values))) <= len(set(values)) // 5
    few = None
    for p in (443, 80, 443, 53):
        few = digest.distinct_add(few, p, digest.PORT_K)
    assert digest.distinct_count(few) == 3 and few == [443, 80, 53]


def test_a_long_top_list_of_huge_buckets_reads_back_whole():
    """A record of 200 bytes and more (20 top remotes of petabytes) reads back
    whole: records carry no length of their own, the header says how many
    values follow."""
    d = make(dict(CFG, top_remotes=20))
    for i in range(25):
        d.add(CAMERA, "203.0.113.%d" % i, 443, (i + 1) * 2 ** 50, 2 ** 40, 2 ** 40, 1, True, False)
    d.tick(60000)
    b = d.closed(CAMERA, d.open_n - 1)
    assert b["bytes_out"] == sum((i + 1) * 2 ** 50 for i in range(25)) and b["packets_out"] == 25 * 2 ** 40
    assert b["top"] == [["203.0.113.%d" % i, (i + 1) * 2 ** 50 + 2 ** 40] for i in range(24, 4, -1)]
    assert max(d.devices[CAMERA].fine.sizes()) > 200


def test_a_sensor_that_does_the_same_every_minute_costs_its_ring_a_few_bytes():
    """Each older record is written against the next newer one: a minute
    like the one after it costs the header and its top remote's ref."""
    d = make()
    for minute in range(1, 90):
        d.add(CAMERA, "203.0.113.7", 8883, 1800, 600, 12, 10, minute % 30 == 0, False)
        d.tick(minute * 60000)
    sizes = d.devices[CAMERA].fine.sizes()
    assert len(sizes) == 60 and sizes[-1] >= 10  # the newest: absolute
    assert sum(s <= 3 for s in sizes) >= 55
    pts = d.history(CAMERA, 60)["points"]
    assert [p["bytes_out"] for p in pts] == [1800] * 60
    assert [p["conns"] for p in pts] == [1 if k % 30 == 0 else 0 for k in range(60)]  # minutes 30 to 89
    assert all(p["top"] == [["203.0.113.7", 2400]] for p in pts)


class Dice:
    """A small seeded generator (the same on both interpreters)."""

    def __init__(self, seed):
        self.x = seed * 2654435761 + 1

    def below(self, n):
        self.x = (self.x * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        return (self.x >> 33) % n


def test_a_ring_reads_back_what_a_plain_list_of_buckets_holds():
    """Random hours of advances, writes and folds against the plain
    reference (bucket -> counters, top pairs): every bucket reads back the
    same, and the shared table counts exactly the references held."""
    for seed in range(6):
        dice = Dice(seed)
        table = digest.Remotes(64)
        fine = digest.Ring(5, 3, table)
        coarse = digest.Ring(4, 0)
        ref_f, ref_c = {}, {}
        fine.begin(9)
        coarse.begin(4)
        n = 9
        for _ in range(150):
            n += 1 + (dice.below(7) if dice.below(5) == 0 else 0)
            big = dice.below(8) == 0
            row = [dice.below(2 ** 45) if big else dice.below(3) * 1000 + dice.below(40)
                   for _ in range(digest.NC)]
            if dice.below(4) == 0:
                row = [0] * digest.NC
            tops = [(row[0] // (k + 1) + dice.below(3), "198.51.100.%d" % dice.below(6))
                    for k in range(dice.below(4))]
            fine.advance(n)
            fine.put(n, row, tops)
            ref_f[n] = (list(row), [[r, b] for b, r in tops])
            m = n // 2
            if m > coarse.newest:
                coarse.advance(m)
            coarse.fold_row(m, row)
            old = ref_c.get(m, [0] * digest.NC)
            ref_c[m] = [max(a, b) if i in digest.DISTINCT else a + b for i, (a, b) in enumerate(zip(old, row))]
            for ring, ref, top in ((fine, ref_f, True), (coarse, ref_c, False)):
                got = ring.buckets()
                for k in range(ring.newest - 8, ring.newest + 1):
                    want = ref.get(k) if ring.holds(k) else None
                    want_row = (want[0] if top else want) if want else [0] * digest.NC
                    assert ring.row(k) == want_row, (seed, k)
                    if any(want_row) or (top and want and want[1]):
                        assert ring.row(k, got[k]) == want_row
                    if top:
                        assert ring.top_list(k) == (want[1] if want else [])
            held = sum(len(ref_f[k][1]) for k in ref_f if fine.holds(k))
            assert sum(table.refs) == held
        fine.release()
        assert sum(table.refs) == 0
