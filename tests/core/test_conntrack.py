"""The conntrack source, on real tables the kernel wrote in the simulated
home (tests/data/README says who is who)."""

from spin_lite import conntrack
from testdata import path as data_path
from testdata import read as data

LAN = ["192.168.8.0/24", "fd00:8::/64"]
ROUTER = ["192.168.8.1", "fd00:8::1", "192.0.2.2", "2001:db8:ff::2"]
CAMERA, SPEAKER, LAPTOP, BULB = "192.168.8.184", "192.168.8.185", "192.168.8.187", "192.168.8.188"
LAPTOP6 = "fd00:8::ff:fe00:4"


def lan():
    return conntrack.Lan(LAN, ROUTER)


def flows(name):
    fl, bad = conntrack.parse(data(name), lan())
    assert bad == 0, bad
    return fl


def test_every_line_the_kernel_wrote_is_understood():
    for name in ("conntrack-acct.txt", "conntrack-noacct.txt", "conntrack-timestamp.txt"):
        text = data(name)
        n = 0
        for line in text.split(b"\n"):
            if line.strip():
                assert conntrack.split_entry(line.split()) is not None, line
                n += 1
        assert n > 200


def test_the_camera_stream_is_seen_from_the_camera():
    cam = [f for f in flows("conntrack-acct.txt") if f.device_ip == CAMERA and f.remote_port == 9000]
    assert len(cam) == 1
    f = cam[0]
    assert f.remote == "203.0.113.10" and f.proto == "tcp" and f.state == "ESTABLISHED"
    assert f.bytes_out > 1000000 and f.bytes_out > 10 * f.bytes_in
    assert f.packets_out > 0 and f.replied and not f.inbound


def test_the_routers_own_flows_and_broadcasts_are_left_out():
    fl = flows("conntrack-acct.txt")
    assert all(f.device_ip not in ROUTER for f in fl)
    assert all(f.device_ip.startswith("192.168.8.") or f.device_ip.startswith("fd00:8:") for f in fl)
    text = data("conntrack-acct.txt")
    assert b"src=192.0.2.2 dst=198.51.100.53" in text  # the router's own DNS is there...
    assert not [f for f in fl if f.remote == "198.51.100.53" and f.device_ip == "192.0.2.2"]


def test_ipv6_is_normalised_and_oriented():
    v6 = [f for f in flows("conntrack-acct.txt") if ":" in f.device_ip]
    assert v6
    assert LAPTOP6 in [f.device_ip for f in v6]
    assert all("0000" not in f.remote and "0000" not in f.device_ip for f in v6)
    icmp6 = [f for f in v6 if f.proto == "icmpv6"]
    assert icmp6 and icmp6[0].remote_port == 0 and icmp6[0].bytes_out > 0


def test_every_protocol_and_flag():
    fl = flows("conntrack-acct.txt")
    protos = set(f.proto for f in fl)
    for p in ("tcp", "udp", "icmp", "icmpv6", "gre", "unknown"):
        assert p in protos, (p, protos)
    gre = [f for f in fl if f.proto == "gre"][0]
    assert gre.device_ip == SPEAKER and gre.remote_port == 0 and not gre.replied
    scan = [f for f in fl if f.device_ip == BULB and f.remote_port == 23 and f.remote.startswith("198.1")]
    assert len(scan) > 10 and all(not f.replied and f.state == "SYN_SENT" for f in scan)
    assert all(f.remote.startswith("198.18.") or f.remote.startswith("198.19.") for f in scan)


def test_without_accounting_there_are_flows_but_no_counters():
    fl = flows("conntrack-noacct.txt")
    assert len(fl) > 100
    assert all(f.bytes_out == 0 and f.bytes_in == 0 for f in fl)
    sc = conntrack.Scanner(lan())
    sc.scan([data("conntrack-noacct.txt")], lambda *a: None)
    assert sc.acct is False and sc.uncounted == sc.seen - sc.skipped or sc.uncounted > 100


def test_timestamps_and_zones_are_extras_not_errors():
    fl = flows("conntrack-timestamp.txt")
    assert [f for f in fl if f.proto == "unknown"]


def scan(scanner, text):
    calls = []
    live = scanner.scan([text], lambda *a: calls.append(a))
    return calls, live


def test_a_second_identical_snapshot_moves_nothing():
    text = data("conntrack-acct.txt")
    sc = conntrack.Scanner(lan())
    calls, live = scan(sc, text)
    assert len(calls) == sc.seen - sc.skipped
    assert all(c[8] for c in calls)  # all new
    assert live[CAMERA] >= 1 and live[LAPTOP] > 5
    calls, _ = scan(sc, text)
    assert calls == []


def test_a_flow_that_moved_reports_exactly_its_delta():
    text = data("conntrack-acct.txt")
    sc = conntrack.Scanner(lan())
    scan(sc, text)
    line = [ln for ln in text.split(b"\n") if b"dport=9000" in ln and CAMERA.encode() in ln][0]
    t = line.split()
    e = conntrack.split_entry(t)
    bo, bi = int(e.count_o[1][6:]), int(e.count_r[1][6:])
    po = int(e.count_o[0][8:])
    dport = e.orig[2][6:]
    moved = line.replace(b"dport=9000 %s %s" % (e.count_o[0], e.count_o[1]),
                         b"dport=9000 packets=%d bytes=%d" % (po + 4, bo + 5000))
    moved = moved.replace(b"dport=%s %s %s" % (dport, e.count_r[0], e.count_r[1]),
                          b"dport=%s %s bytes=%d" % (dport, e.count_r[0], bi + 70))
    assert moved.count(b"bytes=") == 2 and moved != line
    calls, _ = scan(sc, text.replace(line, moved))
    assert len(calls) == 1
    dev, remote, port, proto, dbo, dbi, dpo, dpi, new, unreplied = calls[0]
    assert (dev, remote, port, proto) == (CAMERA, "203.0.113.10", 9000, b"tcp")
    assert (dbo, dbi, dpo, dpi, new, unreplied) == (5000, 70, 4, 0, False, False)


def test_new_unreplied_attempts_are_flagged():
    sc = conntrack.Scanner(lan())
    calls, _ = scan(sc, data("conntrack-acct.txt"))
    attempts = [c for c in calls if c[0] == BULB and c[2] == 23 and c[1].startswith("198.1")]
    assert len(attempts) > 10 and all(c[8] and c[9] for c in attempts)


def test_a_port_forward_is_seen_from_the_device():
    # the camera's stream as it would look had it come in through a DNAT
    # port forward: the original tuple is the remote's, the reply the device's
    sc = conntrack.Scanner(lan())
    line = b"ipv4     2 tcp      6 431999 ESTABLISHED src=203.0.113.10 dst=192.0.2.2 " \
           b"sport=40000 dport=8080 packets=10 bytes=900 src=192.168.8.184 dst=203.0.113.10 " \
           b"sport=80 dport=40000 packets=20 bytes=30000 [ASSURED] mark=0 zone=0 use=2"
    calls, live = scan(sc, line)
    assert live == {CAMERA: 1}
    assert calls[0][:8] == (CAMERA, "203.0.113.10", 40000, b"tcp", 30000, 900, 20, 10)
    f = conntrack.parse(line, lan())[0][0]
    assert f.inbound and f.device_port == 80 and f.bytes_out == 30000


MALFORMED = [
    b"ipv4     2 tcp      6 431999 ESTABLISHED src=192.168.8.184",
    b"ipv4 2 tcp 6 1 ESTABLISHED dst=1.2.3.4 src=192.168.8.184 sport=1 dport=2",
    b"ipv9     2 tcp      6 431999 ESTABLISHED src=192.168.8.184 dst=203.0.113.10 sport=1 dport=2 "
    b"src=203.0.113.10 dst=192.0.2.2 sport=2 dport=1",
    b"ipv4     2 tcp      6 431999 ESTABLISHED src=192.168.8.184 dst=203.0.113.10 sport=x dport=2 "
    b"packets=1 bytes=2 src=203.0.113.10 dst=192.0.2.2 sport=2 dport=y packets=1 bytes=2",
    b"ipv4     2 tcp      6 431999 ESTABLISHED src=192.168.8.184 dst=203.0.113.10 sport=1 dport=2 "
    b"packets=1 bytes=lots src=203.0.113.10 dst=192.0.2.2 sport=2 dport=1 packets=1 bytes=2",
    b"ipv4     2 tcp      6 431999 ESTABLISHED src=192.168.8.184 dst=203.0.113.10 sport=1 dport=2 "
    b"packets=1 bytes=2 src=203.0.113.10 dst=192.0.2.2 sport=2 dport=1",
    b"garbage",
    b"\xff\xfe\x00 src=\x00",
    # found by fuzzing (tests/data/fuzz/conntrack/): an unfamiliar protocol
    # whose tuple is src= alone, a destination that is no address, a port
    # no packet carries, counters outside the kernel's 64 bits
    b"ipv4     2 foo      99 30 timeout=30 src=192.168.8.184",
    b"ipv4     2 tcp      6 431999 ESTABLISHED src=192.168.8.184 dst=203.0.113 sport=1 dport=2 "
    b"src=203.0.113.10 dst=192.0.2.2 sport=2 dport=1",
    b"ipv4     2 tcp      6 431999 ESTABLISHED src=192.168.8.184 dst=203.0.113.10 sport=1 dport=70000 "
    b"src=203.0.113.10 dst=192.0.2.2 sport=70000 dport=1",
    b"ipv4     2 tcp      6 431999 ESTABLISHED src=192.168.8.184 dst=203.0.113.10 sport=1 dport=2 "
    b"packets=1 bytes=-5 src=203.0.113.10 dst=192.0.2.2 sport=2 dport=1 packets=1 bytes=2",
    b"ipv4     2 tcp      6 431999 ESTABLISHED src=192.168.8.184 dst=203.0.113.10 sport=1 dport=2 "
    b"packets=1 bytes=18446744073709551616 src=203.0.113.10 dst=192.0.2.2 sport=2 dport=1 packets=1 bytes=2",
]


def test_malformed_lines_are_counted_and_the_rest_still_counts():
    good = data("conntrack-acct.txt")
    sc = conntrack.Scanner(lan())
    text = b"\n".join(MALFORMED) + b"\n" + good
    calls, live = scan(sc, text)
    assert sc.malformed == len(MALFORMED)
    ref = conntrack.Scanner(lan())
    ref_calls, ref_live = scan(ref, good)
    assert len(calls) == len(ref_calls) and live == ref_live
    fl, bad = conntrack.parse(text, lan())
    assert bad == len(MALFORMED) and len(fl) == len(conntrack.parse(good, lan())[0])


def test_lines_split_across_chunks():
    text = data("conntrack-acct.txt")
    whole = conntrack.Scanner(lan())
    a, _ = scan(whole, text)
    pieces = conntrack.Scanner(lan())
    calls = []
    pieces.scan([text[i:i + 777] for i in range(0, len(text), 777)], lambda *x: calls.append(x))
    assert calls == a


def test_a_file_read_into_one_small_buffer_scans_as_its_text_does():
    # 700 bytes: every read ends inside a line (they are 150 to 450 long)
    for name in ("conntrack-acct.txt", "conntrack-noacct.txt", "conntrack-timestamp.txt"):
        ref = conntrack.Scanner(lan())
        want, want_live = scan(ref, data(name))
        sc = conntrack.Scanner(lan())
        sc.buf = bytearray(700)
        for turn in range(2):
            calls = []
            live = sc.scan_file(data_path(name), lambda *a: calls.append(a))
            assert calls == (want if turn == 0 else []), (name, turn)
            assert live == want_live and sc.seen == ref.seen and sc.malformed == 0, name
        assert len(sc.buf) == 700


def test_a_line_longer_than_the_read_buffer_is_cut_into_malformed_pieces():
    sc = conntrack.Scanner(lan())
    sc.buf = bytearray(64)  # shorter than any line: no line fits whole
    assert sc.scan_file(data_path("conntrack-acct.txt"), lambda *a: None) == {}
    assert sc.malformed > 200 and sc.used == 0


def test_a_line_that_ends_with_its_counters_still_moves():
    base = b"ipv4     2 udp      17 29 src=192.168.8.184 dst=203.0.113.10 sport=5000 dport=7 " \
           b"packets=1 bytes=60 src=203.0.113.10 dst=192.0.2.2 sport=7 dport=5000 packets=1 bytes=60"
    sc = conntrack.Scanner(lan())
    scan(sc, base)
    calls, _ = scan(sc, base[:-1] + b"1")
    assert len(calls) == 1 and calls[0][5] == 1


def test_without_accounting_an_answered_attempt_is_still_one_connection():
    text = data("conntrack-noacct.txt")
    line = [ln for ln in text.split(b"\n") if b"[UNREPLIED]" in ln and b"src=192.168.8." in ln][0]
    sc = conntrack.Scanner(lan())
    first, _ = scan(sc, line)
    assert len(first) == 1 and first[0][8] and first[0][9]
    answered, _ = scan(sc, line.replace(b" [UNREPLIED]", b""))
    assert [c[8] for c in answered] == [False]


def test_a_moved_flow_read_twice_in_one_snapshot_counts_once():
    line = b"ipv4     2 tcp      6 431999 ESTABLISHED src=192.168.8.184 dst=203.0.113.10 sport=5000 " \
           b"dport=9000 packets=4 bytes=400 src=203.0.113.10 dst=192.0.2.2 sport=9000 dport=5000 " \
           b"packets=2 bytes=100 [ASSURED] mark=0 zone=0 use=2"
    sc = conntrack.Scanner(lan())
    scan(sc, line)
    moved = line.replace(b"packets=4 bytes=400", b"packets=5 bytes=500")
    calls, live = scan(sc, moved + b"\n" + moved)
    assert [(c[4], c[8]) for c in calls] == [(100, False)]


# -- a long evening in the table, against a plain reference -----------------
#
# The scanner's fast path keeps checksums of line text. The reference below
# keeps numbers and nothing clever: parse every line, key a flow by protocol
# and original tuple, report what grew. Random evenings (flows end, start,
# move, change state, are read twice, lines come in any order and split
# anywhere) must leave both with the same totals per device and remote.

def _number_after(line, key, start=0):
    a = line.find(key, start)
    if a < 0:
        return None, -1, -1
    a += len(key)
    b = line.find(b" ", a)
    b = len(line) if b < 0 else b
    return int(line[a:b]), a, b


def _add(line, key, n, nth=0):
    at = 0
    for _ in range(nth + 1):
        value, a, b = _number_after(line, key, at)
        if value is None:
            return line
        at = b
    return line[:a] + b"%d" % (value + n) + line[b:]


def _evening(rnd, lines, step):
    """The table a few seconds later -> (its flows, a read of it: in any
    order, a flow sometimes read twice)."""
    out = []
    for line in lines:
        r = rnd.random()
        if r < 0.08:
            continue                                      # the flow ended
        if r < 0.35:
            line = _add(_add(line, b"bytes=", rnd.randrange(1, 3000)),
                        b"packets=", rnd.randrange(1, 4))  # it sent
        if r > 0.8:
            line = _add(_add(line, b"bytes=", rnd.randrange(1, 3000), 1),
                        b"packets=", 1, 1)                # it was answered
        if 0.35 < r < 0.38:
            line = line.replace(b"ESTABLISHED", b"FIN_WAIT")
        line = _add(line, b"delta-time=", 1)              # a second went by
        out.append(line)
        if rnd.random() < 0.05 and b" sport=" in line:   # a new flow, same device
            port, _, _ = _number_after(line, b"sport=")
            fresh = 20000 + 1000 * step + len(out)        # no flow has it yet
            out.append(_add(_add(line, b"sport=", fresh - port), b"dport=", fresh - port, 1))
    read = out + [line for line in out if rnd.random() < 0.02]
    for i in range(len(read) - 1, 0, -1):
        j = rnd.randrange(i + 1)
        read[i], read[j] = read[j], read[i]
    return out, read


def _reference(prev, text, lan):
    """-> (this read's flows, totals per device and remote, live flows per
    device)"""
    cur, totals, live = {}, {}, {}
    for line in text.split(b"\n"):
        e = conntrack.split_entry(line.split())
        if e is None:
            continue
        f = conntrack.orient(e, lan)
        key = e.proto + b" " + b" ".join(e.orig)
        if f is None or key in cur:
            continue
        now = (f.bytes_out, f.bytes_in, f.packets_out, f.packets_in)
        cur[key] = now
        live[f.device_ip] = live.get(f.device_ip, 0) + 1
        was = prev.get(key)
        delta = [a - b for a, b in zip(now, was)] if was else list(now)
        t = totals.setdefault((f.device_ip, f.remote, f.remote_port, f.proto), [0, 0, 0, 0, 0])
        for i in range(4):
            t[i] += delta[i]
        t[4] += 0 if was else 1
    return cur, totals, live


def _scanned(scanner, text, cut):
    totals = {}

    def sink(ip, remote, port, proto, bo, bi, po, pi, new, unreplied):
        t = totals.setdefault((ip, remote, port, proto.decode()), [0, 0, 0, 0, 0])
        for i, v in enumerate((bo, bi, po, pi, 1 if new else 0)):
            t[i] += v

    live = scanner.scan([text[i:i + cut] for i in range(0, len(text), cut)], sink)
    return {k: t for k, t in totals.items() if any(t)}, live


def _dice(seed):
    import random
    if hasattr(random, "Random"):
        return random.Random(seed)
    random.seed(seed)  # MicroPython's random has no Random class
    return random


def _an_evening(sc, name, rnd, steps, check):
    """Scan `steps` random turns of one evening with sc and compare every
    scan with the plain reference; check(sc, live) after each."""
    lines = read = [ln for ln in data(name).split(b"\n") if ln.strip()]
    ref, the_lan = {}, lan()
    for step in range(steps):
        if step:
            lines, read = _evening(rnd, lines, step)
        text = b"\n".join(read) + b"\n"
        ref, want, want_live = _reference(ref, text, the_lan)
        want = {k: t for k, t in want.items() if any(t)}
        got, live = _scanned(sc, text, 300 + rnd.randrange(3000))
        assert got == want, (name, step)
        assert live == want_live, (name, step)
        check(sc, live)


def test_an_evening_of_scans_adds_up_as_a_plain_reference_does():
    for name in ("conntrack-acct.txt", "conntrack-timestamp.txt"):
        for seed in range(12):
            def check(sc, live):
                assert sc.malformed == 0
            _an_evening(conntrack.Scanner(lan()), name, _dice(seed), 6, check)


# -- the flow table: collisions and a full table ------------------------------

def _syn(sport, dst=b"198.18.0.9", packets=1, nbytes=60):
    return b"ipv4     2 tcp      6 119 SYN_SENT src=192.168.8.188 dst=%s sport=%d dport=23 " \
           b"packets=%d bytes=%d [UNREPLIED] src=%s dst=192.0.2.2 sport=23 dport=%d " \
           b"packets=0 bytes=0 mark=0 zone=0 use=2" % (dst, sport, packets, nbytes, dst, sport)


def test_flows_whose_hashes_collide_keep_their_own_counters():
    sc = conntrack.Scanner(lan(), 8)
    sc.key_hash = lambda key: 7  # every flow lands on the same cell
    a, b, c = _syn(1001), _syn(1002), _syn(1003)
    calls, live = scan(sc, b"\n".join((a, b, c)))
    assert live == {BULB: 3} and sc.used == 3
    assert sorted(x[4] for x in calls) == [60, 60, 60] and all(x[8] for x in calls)
    # b sends, a ends: the probe must still find b and c past a's freed cell
    b2 = _syn(1002, packets=3, nbytes=500)
    calls, live = scan(sc, b"\n".join((c, b2)))
    assert live == {BULB: 2} and sc.used == 2
    assert [(x[4], x[6], x[8]) for x in calls] == [(440, 2, False)]
    calls, live = scan(sc, b"\n".join((b2, c)))
    assert calls == [] and live == {BULB: 2}
    # a again is a new flow, not b's or c's counters
    calls, _ = scan(sc, b"\n".join((b2, c, a)))
    assert [(x[4], x[8]) for x in calls] == [(60, True)]


def test_a_udp_flow_with_the_text_of_a_tcp_one_is_not_taken_for_it():
    # the same tuple, counters and reply as a tcp flow, read where the tcp
    # one came last time: the guess of the next slot must not take it
    tcp = _syn(3001)
    udp = tcp.replace(b"tcp      6 119 SYN_SENT ", b"udp      17 29 ")
    assert tcp[tcp.find(b"src="):] == udp[udp.find(b"src="):]
    first = _syn(3000)
    sc = conntrack.Scanner(lan())
    scan(sc, b"\n".join((first, tcp)))
    calls, live = scan(sc, b"\n".join((first, udp, tcp)))
    assert [(x[3], x[4], x[8]) for x in calls] == [(b"udp", 60, True)]
    assert live == {BULB: 3} and sc.used == 3


def test_a_full_table_drops_flows_but_still_counts_new_connections():
    n, k = 16, 5
    sc = conntrack.Scanner(lan(), n)
    size = sc.nbytes()
    text = b"\n".join(_syn(2000 + i) for i in range(n + k))
    calls, live = scan(sc, text)
    assert live == {BULB: n + k} and sc.seen == n + k
    assert sc.used == n and sc.dropped == k and sc.dropped_total == k
    assert len(calls) == n + k and all(x[8] and x[9] for x in calls)  # new, unreplied
    assert sum(x[4] for x in calls) == 60 * n  # the flows not kept bring no bytes
    assert sc.nbytes() == size and len(sc.idx) >= 2 * n
    # the next scan: the kept flows are idle, the others are still not kept
    calls, live = scan(sc, text)
    assert live == {BULB: n + k} and sc.dropped == k and sc.dropped_total == 2 * k
    assert len(calls) == k and all(x[4] == 0 and x[8] for x in calls)
    # k flows end: their slots are free once the scan is over (not during
    # it, a flow not met yet may still come), and the next scan keeps the rest
    rest = b"\n".join(_syn(2000 + i) for i in range(k, n + k))
    calls, _ = scan(sc, rest)
    assert sc.dropped == k and sc.used == n - k and len(calls) == k
    calls, _ = scan(sc, rest)
    assert sc.dropped == 0 and sc.used == n
    assert len(calls) == k and all(x[4] == 60 and x[8] for x in calls)
    calls, live = scan(sc, rest)
    assert calls == [] and live == {BULB: n} and sc.nbytes() == size


def test_an_evening_adds_up_when_most_hashes_collide():
    import binascii
    for seed in range(2):
        sc = conntrack.Scanner(lan(), 4096)
        sc.key_hash = lambda key: binascii.crc32(key) & 7  # 8 homes in 8192 cells

        def check(sc, live):
            assert sc.used == sum(live.values()) and sc.dropped == 0
        _an_evening(sc, "conntrack-acct.txt", _dice(100 + seed), 5, check)


def test_the_table_grows_mid_evening_and_colliding_flows_stay_apart():
    import binascii
    for seed in range(2):
        sc = conntrack.Scanner(lan(), 4096, initial=8)
        # 8 distinct hashes, whose home cells move as the index doubles
        sc.key_hash = lambda key: (binascii.crc32(key) & 7) * 40503
        sizes = []

        def check(sc, live):
            assert sc.used == sum(live.values()) and sc.dropped == 0
            assert sc.used <= sc.cap <= sc.max_flows and len(sc.idx) >= 2 * sc.cap
            sizes.append(sc.cap)
        _an_evening(sc, "conntrack-acct.txt", _dice(200 + seed), 5, check)
        # the first read alone outgrew 8 slots several times over, and new
        # flows later in the evening may have doubled it again
        assert sc.grown >= 4 and sizes[0] >= 256 and sizes == sorted(sizes)
        assert sc.nbytes() < 52 * 2 * sc.cap


def test_a_growing_table_stops_at_max_flows_and_counts_what_it_drops():
    n, k = 20, 5
    sc = conntrack.Scanner(lan(), n, initial=4)
    small = sc.nbytes()
    text = b"\n".join(_syn(4000 + i) for i in range(n + k))
    calls, live = scan(sc, text)
    assert sc.cap == n and sc.grown == 3  # 4 -> 8 -> 16 -> 20
    assert live == {BULB: n + k} and sc.used == n and sc.dropped == k and sc.dropped_total == k
    assert len(calls) == n + k and sum(x[4] for x in calls) == 60 * n
    full = sc.nbytes()
    assert full > 4 * small
    # the kept flows are idle next time, the dropped ones still not kept,
    # and the table does not grow past its cap
    moved = text.replace(b"sport=4003 dport=23 packets=1 bytes=60",
                         b"sport=4003 dport=23 packets=2 bytes=160")
    calls, live = scan(sc, moved)
    assert sc.cap == n and sc.nbytes() == full and sc.dropped == k and sc.dropped_total == 2 * k
    assert sorted((x[4], x[8]) for x in calls) == [(0, True)] * k + [(100, False)]


def test_a_table_that_outgrows_the_heap_stays_at_its_size_and_counts_the_rest():
    # MicroPython's heap is fixed at start: the bulb's burst of new flows
    # asks for a bigger table than it holds. The table keeps what it has,
    # the rest are counted as a full table's are, and nothing is mixed up.
    n, k = 8, 6
    sc = conntrack.Scanner(lan(), 64, initial=n)
    text = b"\n".join(_syn(5000 + i) for i in range(n + k))
    saved = conntrack.plat.zeros
    asked = []

    def no_room(code, count):
        asked.append(count)
        raise MemoryError("memory allocation failed, allocating %d bytes" % (4 * count))
    conntrack.plat.zeros = no_room
    try:
        calls, live = scan(sc, text)
    finally:
        conntrack.plat.zeros = saved
    assert asked == [32]  # one try, for the doubled index of 16 slots
    assert sc.cap == n and sc.max_flows == n and sc.heap_limited == n and sc.grown == 0
    assert live == {BULB: n + k} and sc.used == n and sc.dropped == k
    assert len(calls) == n + k and sum(x[4] for x in calls) == 60 * n
    # the index it kept still finds every flow: a moved flow is itself,
    # the others idle, the dropped ones still not kept
    moved = text.replace(b"sport=5002 dport=23 packets=1 bytes=60", b"sport=5002 dport=23 packets=2 bytes=160")
    calls, live = scan(sc, moved)
    assert sorted((x[4], x[8]) for x in calls) == [(0, True)] * k + [(100, False)]
    assert sc.cap == n and sc.dropped == k and len(sc.idx) >= 2 * n


def test_the_address_cache_answers_as_a_fresh_lookup_and_stays_bounded_in_bytes():
    tokens = [b"dst=198.18.0.9", b"src=192.168.8.188", b"src=192.0.2.2", b"dst=192.168.08.188",
              b"dst=2001:0db8:0741:0000:0000:0000:0000:000b", b"src=fd00:0008:0000:0000:0000:0000:0000:01e4",
              b"dst=300.1.1.1"]
    cached = lan()
    for tok in tokens:
        fresh = lan().kind(tok)
        assert cached.kind(tok) == fresh and cached.kind(tok) == fresh, tok  # a miss, then a hit
    assert cached.kind(b"dst=192.168.08.188") == (conntrack.LAN, BULB)
    assert cached.kind(b"dst=2001:0db8:0741:0000:0000:0000:0000:000b") == (conntrack.OTHER, "2001:db8:741::b")
    # a remote is kept as its text alone, one text object for every flow to it
    assert cached.cache[b"dst=198.18.0.9"] == "198.18.0.9"
    assert cached.kind(b"dst=198.18.0.9")[1] is cached.kind(b"dst=198.18.0.9")[1]
    # a neighbourhood of scanned addresses empties the cache at its bound
    # in bytes, long before its bound in entries
    saved = conntrack.LAN_CACHE_BYTES
    conntrack.LAN_CACHE_BYTES = 4096
    try:
        for i in range(2000):
            tok = b"dst=198.19.%d.%d" % (i >> 8, i & 255)
            assert cached.kind(tok) == (conntrack.OTHER, tok[4:].decode())
            assert cached.cache_bytes <= 4096 + 200 and len(cached.cache) < 60
    finally:
        conntrack.LAN_CACHE_BYTES = saved


def test_a_full_table_read_twice_in_one_snapshot_reports_its_drops_once():
    n, k = 4, 3
    sc = conntrack.Scanner(lan(), n)
    lines = [_syn(5000 + i) for i in range(n + k)]
    scan(sc, b"\n".join(lines))
    calls, _ = scan(sc, b"\n".join(lines))
    assert len(calls) == k and sc.dropped == k
    # a kept flow moves and one line is read twice (the table moved under
    # the reader): the moved flow reports once, each dropped one once
    lines[1] = _syn(5001, packets=2, nbytes=160)
    calls, live = scan(sc, b"\n".join(lines + [lines[2]]))
    assert sorted((x[4], x[8]) for x in calls) == [(0, True)] * k + [(100, False)]
    assert live == {BULB: n + k} and sc.dropped == k and sc.used == n


def test_an_idle_rescan_after_the_table_grew_meets_every_flow_by_its_guess():
    # the bulb's 600 attempts outgrow 4 slots seven times over in one read;
    # a second read a second later (every timeout one lower) is idle, and
    # every line of it is the slot that followed the one before: no key is
    # made and no index cell probed, for any line, growth or not
    n = 600
    sc = conntrack.Scanner(lan(), 4096, initial=4)
    text = b"\n".join(_syn(5000 + i) for i in range(n))
    calls, _ = scan(sc, text)
    assert sc.grown == 8 and sc.used == n and len(calls) == n and sc.probed == n
    calls, live = scan(sc, text.replace(b" 119 SYN_SENT", b" 118 SYN_SENT"))
    assert calls == [] and live == {BULB: n}
    assert (sc.guessed, sc.probed) == (n, 0)
    # the kernel's own table of the home: only the router's own lines (no
    # slot to guess) are keyed and probed when nothing moved
    sc = conntrack.Scanner(lan(), 4096, initial=4)
    text = data("conntrack-acct.txt")
    scan(sc, text)
    calls, _ = scan(sc, text)
    assert calls == [] and sc.skipped > 0
    assert (sc.guessed, sc.probed) == (sc.used, sc.skipped)
