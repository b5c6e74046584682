"""Conntrack events, on real ctnetlink messages the kernel sent in the
simulated home (tests/data/ctevents.txt, tests/data/README says how it was
made): the parser, the key a snapshot line of the same flow has, and the
hand-over between events and the snapshot scanner.

Plain tests (no pytest import, no fixtures): the MicroPython runner runs
them too."""

import struct
import sys
from binascii import unhexlify

from spin_lite import conntrack, ctevents
from testdata import read as data

LAN = ["192.168.8.0/24", "fd00:8::/64"]
ROUTER = ["192.168.8.1", "fd00:8::1", "192.0.2.2", "2001:db8:ff::2"]
BULB, LAPTOP6 = "192.168.8.188", "fd00:8::ff:fe00:4"


def _attrs_to_host(buf, off, end):
    """Netlink attribute headers from little endian to big (payloads are
    network order already); nested ones (NLA_F_NESTED) all the way down."""
    while off + 4 <= end:
        alen, atype = struct.unpack_from("<HH", buf, off)
        struct.pack_into(">HH", buf, off, alen, atype)
        if alen < 4:
            return
        if atype & 0x8000:
            _attrs_to_host(buf, off + 4, off + alen)
        off += (alen + 3) & ~3


def to_host(msg):
    """A datagram the little-endian kernel of the capture sent, as this
    machine's kernel would send it (tests/test_cross.py runs these tests
    on big-endian s390x too)."""
    if sys.byteorder == "little":
        return msg
    buf = bytearray(msg)
    off = 0
    while off + 16 <= len(buf):
        ln, typ, flags, seq, pid = struct.unpack_from("<IHHII", buf, off)
        struct.pack_into(">IHHII", buf, off, ln, typ, flags, seq, pid)
        if ln < 16:
            break
        _attrs_to_host(buf, off + 20, off + ln)  # after nlmsghdr and nfgenmsg
        off += (ln + 3) & ~3
    return bytes(buf)


def recording():
    """([/proc lines], [event datagrams]) of the capture."""
    procs, msgs = [], []
    for ln in data("ctevents.txt").split(b"\n"):
        if ln.startswith(b"proc "):
            procs.append(ln[5:])
        elif ln.startswith(b"msg "):
            msgs.append(to_host(unhexlify(ln[4:].strip())))
    return procs, msgs


def line_key(line):
    """The key conntrack.Scanner files a /proc line under."""
    a = line.find(b"src=")
    b = line.find(b" packets=", a)
    return line[9:16] + line[a:b]


class Destroys:
    """A sink that keeps what the reader parsed."""

    def __init__(self):
        self.got = []

    def __call__(self, *values):
        self.got.append(values)

    def keys(self):
        return [ctevents.proc_key(*v[:7]) for v in self.got]


def destroys():
    procs, msgs = recording()
    sink = Destroys()
    r = ctevents.Reader()
    for m in msgs:
        r.feed(m, sink)
    return r, sink, procs


def test_every_message_of_the_kernel_parses():
    r, sink, _ = destroys()
    assert r.malformed == 0 and r.errors == 0
    assert r.new > 100 and r.destroyed > 100, (r.new, r.destroyed)
    assert r.events == r.new + r.destroyed
    assert len(sink.got) == r.destroyed


def test_the_key_of_a_destroy_event_is_the_key_of_its_proc_line():
    # the capture flushed the table after the snapshot, so every flow in
    # it was destroyed: tcp, udp, icmp, icmpv6, gre, an unknown protocol,
    # over IPv4 (NAT) and IPv6 (full %pI6 form)
    _, sink, procs = destroys()
    keys = set(sink.keys())
    proc_keys = [line_key(p) for p in procs]
    matched = [k for k in proc_keys if k in keys]
    assert len(matched) >= len(proc_keys) - 2, (len(matched), len(proc_keys))
    kinds = set(k[:7] for k in matched)
    for kind in (b"2 tcp  ", b"2 udp  ", b"2 icmp ", b"2 gre  ", b"2 unkno", b"10 tcp ",
                 b"10 udp ", b"10 icmp"):
        assert kind in kinds, (kind, kinds)


def test_an_attempt_refused_with_a_reset_has_a_reply_packet_but_no_seen_reply():
    _, sink, _ = destroys()
    refused = [v for v, k in zip(sink.got, sink.keys())
               if k.startswith(b"2 tcp  src=" + BULB.encode()) and k.endswith(b" dport=1001")]
    assert len(refused) == 1, refused
    v = refused[0]
    status, op, rp, state = v[8], v[9], v[11], v[13]
    assert not status & ctevents.IPS_SEEN_REPLY and not status & ctevents.IPS_ASSURED
    assert op == 1 and rp == 1  # the SYN and the RST
    assert ctevents.TCP_STATES[state] == "CLOSE"


def a_destroy():
    """One real DESTROY message (a datagram holding just it)."""
    for m in recording()[1]:
        if struct.unpack_from("H", m, 4)[0] == ctevents.MSG_DELETE and len(m) == struct.unpack_from("I", m, 0)[0]:
            return m
    raise AssertionError("no DESTROY in the capture")


def test_a_truncated_message_is_counted_and_maps_nothing():
    m = a_destroy()
    for cut in range(1, len(m)):
        sink = Destroys()
        r = ctevents.Reader()
        # the datagram ends early, with the header's length left as it was
        r.feed(m[:cut], sink)
        assert sink.got == [], cut
        assert r.malformed == (1 if cut >= 4 else 0), (cut, r.malformed)


def top_attributes(m):
    """[(type, start, end)] of a message's top-level attributes."""
    out = []
    off = 20
    while off + 4 <= len(m):
        alen, atype = struct.unpack_from("HH", m, off)
        out.append((atype & 0x3FFF, off, off + alen))
        off += (alen + 3) & ~3
    return out


def test_a_message_whose_length_shrank_is_counted_and_maps_nothing():
    # the header says less than the attributes need: inside an attribute
    # the message is malformed; at a boundary it is whole but shorter,
    # which is fine once both tuples are in
    m = a_destroy()
    attrs = top_attributes(m)
    ends = set(e for _, _, e in attrs)
    tuples_end = max(e for t, _, e in attrs if t in (ctevents.CTA_TUPLE_ORIG, ctevents.CTA_TUPLE_REPLY))
    for ln in range(17, len(m)):
        sink = Destroys()
        r = ctevents.Reader()
        r.feed(struct.pack("I", ln) + m[4:ln], sink)
        if ln in ends and ln >= tuples_end:
            assert len(sink.got) == 1 and r.malformed == 0, ln
        else:
            assert sink.got == [] and r.malformed == 1, (ln, r.malformed)


def test_an_attribute_longer_than_its_message_is_counted_and_maps_nothing():
    m = bytearray(a_destroy())
    struct.pack_into("H", m, 20, 0xFFF0)  # the first attribute's length
    sink = Destroys()
    r = ctevents.Reader()
    r.feed(bytes(m), sink)
    assert sink.got == [] and r.malformed == 1
    struct.pack_into("H", m, 20, 2)  # shorter than an attribute header
    r.feed(bytes(m), sink)
    assert sink.got == [] and r.malformed == 2


def test_a_good_message_after_a_bad_one_in_the_next_datagram_still_parses():
    m = a_destroy()
    sink = Destroys()
    r = ctevents.Reader()
    r.feed(m[:40], sink)
    r.feed(m, sink)
    assert r.malformed == 1 and r.destroyed == 1 and len(sink.got) == 1


def test_an_ipv6_address_is_written_in_full_as_proc_does():
    raw = unhexlify("fd000008000000000000" + "00fffe000004")
    assert ctevents.address_text(raw) == b"fd00:0008:0000:0000:0000:00ff:fe00:0004"
    assert ctevents.address_text(bytes([203, 0, 113, 10])) == b"203.0.113.10"


# -- the scanner and the events share one flow table ---------------------------------

def lan():
    return conntrack.Lan(LAN, ROUTER)


class Account:
    """The agent's sink, recorded."""

    def __init__(self):
        self.calls = []

    def __call__(self, ip, remote, port, proto, bo, bi, po, pi, new, unreplied, refused=False):
        self.calls.append((ip, remote, port, proto, bo, bi, po, pi, new, unreplied, refused))


class Agent:
    """What ctevents.Events reads of the agent: its scanner and its sink."""

    def __init__(self, scanner):
        self.scanner = scanner
        self.account = Account()


def events_for(scanner):
    ev = ctevents.Events({"ctevents": True})
    ev.agent = Agent(scanner)
    return ev


def feed_all(ev):
    for m in recording()[1]:
        ev.reader.feed(m, ev._destroyed)


def test_a_flow_the_snapshot_held_ends_with_its_last_delta_and_is_not_new_again():
    procs, _ = recording()
    s = conntrack.Scanner(lan())
    first = Account()
    s.scan([b"\n".join(procs)], first)
    held = s.used
    assert held > 100
    ev = events_for(s)
    feed_all(ev)
    # every flow of the snapshot ended through its event: the table is empty
    assert s.used <= 2, s.used
    calls = ev.agent.account.calls
    assert calls
    # a held flow is never new twice; its news are bytes only
    held_keys = set(line_key(p) for p in procs)
    assert ev.ended_held >= held - 2
    assert ev.unseen + ev.ended_held + ev.skipped == ev.reader.destroyed
    assert ev.skipped > 0  # the router's own DNS upstream
    for c in calls:
        if not c[8]:
            assert not c[9] and not c[10]
    assert len([c for c in calls if c[8]]) == ev.unseen
    assert len(held_keys) >= held


def test_flows_no_snapshot_held_are_reported_new_with_their_final_counters():
    s = conntrack.Scanner(lan())
    ev = events_for(s)
    feed_all(ev)
    calls = ev.agent.account.calls
    assert all(c[8] for c in calls)  # nothing held: everything is new
    refused = [c for c in calls if c[0] == BULB and c[2] == 1001]
    assert len(refused) == 1
    ip, remote, port, proto, bo, bi, po, pi, new, unreplied, flag = refused[0]
    assert remote == "203.0.113.10" and proto == b"tcp"
    assert flag is True and unreplied is False and po == 1 and pi == 1 and bo > 0 and bi > 0
    six = [c for c in calls if c[0] == LAPTOP6 and c[2] == 1002]
    assert six and six[0][10] is True and six[0][1] == "2001:db8:1::10"
    # an answered UDP exchange is neither refused nor unreplied
    udp = [c for c in calls if c[3] == b"udp" and c[6] and c[7]]
    assert udp and not any(c[9] or c[10] for c in udp)
    # the router's own flows (its DNS upstream) are no device's
    assert not [c for c in calls if c[0] in ROUTER]


def test_a_flow_swept_while_its_event_was_on_the_way_is_not_new_twice():
    procs, _ = recording()
    line = [p for p in procs if p.startswith(b"ipv4") and b" tcp " in p and b"ESTABLISHED" in p][0]
    s = conntrack.Scanner(lan())
    s.scan([line], Account())
    assert s.used == 1
    s.scan([b""], Account())  # the flow died while the snapshot was read
    assert s.used == 0
    key = line_key(line)
    assert s.ended(key, 10 ** 9, 10 ** 12, 10 ** 9, 10 ** 12) is not None
    assert s.ended(key, 10 ** 9, 10 ** 12, 10 ** 9, 10 ** 12) is None  # once only


def test_ended_returns_what_moved_since_the_snapshot():
    procs, _ = recording()
    line = [p for p in procs if p.startswith(b"ipv4") and b" tcp " in p and b"ESTABLISHED" in p][0]
    t = line.split()
    c = [int(w[w.find(b"=") + 1:]) for w in t if w.startswith(b"packets=") or w.startswith(b"bytes=")]
    s = conntrack.Scanner(lan())
    s.scan([line], Account())
    d = s.ended(line_key(line), c[0] + 3, c[1] + 300, c[2] + 2, c[3] + 200)
    assert d == (3, 300, 2, 200), d
    assert s.used == 0
    assert s.ended(b"2 tcp  src=192.168.8.9 dst=203.0.113.1 sport=1 dport=2", 1, 1, 1, 1) is None


def test_events_see_each_flow_from_the_same_side_as_the_snapshot_does():
    # who, to whom, which port, which protocol: the snapshot's first scan
    # (every flow new) and the DESTROY of the same flow say the same
    procs, _ = recording()
    snap = Account()
    conntrack.Scanner(lan()).scan([b"\n".join(procs)], snap)
    ev = events_for(conntrack.Scanner(lan()))  # a table holding nothing: all unseen
    feed_all(ev)
    seen = set(c[:4] for c in snap.calls)
    from_events = set(c[:4] for c in ev.agent.account.calls)
    assert len(seen) > 20  # devices x remotes x ports x protocols of the capture
    missing = [c for c in seen if c not in from_events]
    assert len(missing) <= 2, missing


def attr(t, value):
    n = 4 + len(value)
    return struct.pack("HH", n, t) + value + b"\0" * (-n % 4)


def nest(t, *parts):
    return attr(t | 0x8000, b"".join(parts))


def tuple4(src, dst, sport, dport):
    ip = nest(1, attr(1, bytes(int(x) for x in src.split("."))),
              attr(2, bytes(int(x) for x in dst.split("."))))
    return ip + nest(2, attr(1, bytes([6])), attr(2, struct.pack(">H", sport)),
                     attr(3, struct.pack(">H", dport)))


def counters(t, packets, nbytes):
    return nest(t, attr(1, struct.pack(">Q", packets)), attr(2, struct.pack(">Q", nbytes)))


def destroy4(orig, reply, status, co, cr):
    body = (struct.pack("BBH", 2, 0, 0) + nest(1, tuple4(*orig)) + nest(2, tuple4(*reply))
            + attr(3, struct.pack(">I", status)) + counters(9, *co) + counters(10, *cr))
    return struct.pack("IHHII", 16 + len(body), ctevents.MSG_DELETE, 0, 0, 0) + body


def test_a_port_forward_is_seen_from_the_device_behind_it():
    # the internet opened 192.0.2.2:8443, the router forwarded it to the
    # camera's 443: the device is the reply's source, the remote its
    # opener, and the device's out bytes are the reply direction's
    camera = "192.168.8.184"
    m = destroy4(("198.51.100.7", "192.0.2.2", 40000, 8443), (camera, "198.51.100.7", 443, 40000),
                 ctevents.IPS_SEEN_REPLY | ctevents.IPS_ASSURED, (12, 1500), (30, 90000))
    ev = events_for(conntrack.Scanner(lan()))
    ev.reader.feed(m, ev._destroyed)
    assert ev.agent.account.calls == [(camera, "198.51.100.7", 40000, b"tcp", 90000, 1500, 30, 12,
                                       True, False, False)]
    # and the snapshot line of the same flow is oriented alike
    line = (b"ipv4     2 tcp      6 7440 ESTABLISHED src=198.51.100.7 dst=192.0.2.2 sport=40000"
            b" dport=8443 packets=10 bytes=1000 src=192.168.8.184 dst=198.51.100.7 sport=443"
            b" dport=40000 packets=20 bytes=60000 [ASSURED] mark=0 use=1")
    s = conntrack.Scanner(lan())
    snap = Account()
    s.scan([line], snap)
    assert snap.calls[0][:4] == (camera, "198.51.100.7", 40000, b"tcp")
    # the flow ends: its last delta, in the device's directions, and no new connection
    ev = events_for(s)
    ev.reader.feed(m, ev._destroyed)
    assert ev.agent.account.calls == [(camera, "198.51.100.7", 40000, b"tcp", 30000, 500, 10, 2,
                                       False, False, False)]
    assert s.used == 0
