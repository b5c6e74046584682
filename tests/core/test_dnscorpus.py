"""DNS answers of real servers (BIND, NSD, unbound, dnsmasq), captured on the
router's br-lan while a device asked them with dig (tests/data/dns/README).

Every packet of each pcap goes, in order, to one dnssnoop.Reader, as the
agent's AF_PACKET socket would hand them over (from the IP header on, with
the frame's ethertype); the Reader must give exactly the mappings derived
from what dig printed (SERVER.json): each one found, with its TTL, and none
more, so no glue, additional-section or unrelated address. The answers
come over UDP, in IPv4 and IPv6 fragments, and over TCP after a truncated
answer. malformed.pcap holds real answers made invalid: nothing maps.

Plain tests with a tiny pcap reader: MicroPython runs them as well.
"""

import json
import struct

import testdata

from spin_lite import dnssnoop

SERVERS = ("bind", "nsd", "unbound", "dnsmasq", "dnsmasq-router")


def data(name):
    return testdata.read("dns/" + name)


def frames(raw):
    """A pcap file (libpcap format, Ethernet) -> [(seconds, ethertype, packet
    from the IP header on)]."""
    magic = struct.unpack("<I", raw[:4])[0]
    if magic == 0xA1B2C3D4 or magic == 0xA1B23C4D:
        order = "<"
    elif magic == 0xD4C3B2A1 or magic == 0x4D3CB2A1:
        order = ">"
    else:
        raise ValueError("not a pcap file")
    if struct.unpack(order + "I", raw[20:24])[0] != 1:
        raise ValueError("not Ethernet frames")
    out = []
    pos = 24
    while pos + 16 <= len(raw):
        sec, _, caplen, wirelen = struct.unpack(order + "IIII", raw[pos:pos + 16])
        frame = raw[pos + 16:pos + 16 + caplen]
        assert caplen == wirelen, "a frame cut by the snap length"
        ethertype = (frame[12] << 8) | frame[13]
        out.append((sec, ethertype, frame[14:]))
        pos += 16 + caplen
    return out


def replay(name, counts=None):
    """Feed every packet of a pcap to one Reader -> [(client, address, name, ttl)]."""
    reader = dnssnoop.Reader(counts)
    got = []
    for sec, ethertype, packet in frames(data(name)):
        got.extend(reader.feed(packet, sec, ethertype))
    return got


def expected(server):
    return json.loads(data(server + ".json").decode())


def as_set(rows):
    return set((r[0], r[1], r[2], r[3]) for r in rows)


def check_server(server):
    want = expected(server)
    counts = {}
    got = replay(want["pcap"], counts)
    mapped = as_set(got)
    every = set()
    others = set()
    for q in want["queries"]:
        every |= as_set(q["mappings"])
        others |= set(q["others"])
    missing = every - mapped
    assert not missing, "%s: %d mappings missed, e.g. %s" % (server, len(missing), sorted(missing)[:3])
    extra = mapped - every
    assert not extra, "%s: mapped what no answer carries: %s" % (server, sorted(extra)[:3])
    # glue and additional-section addresses never named (a chain's own records aside)
    named = set(r[1] for r in got)
    reached = set(r[1] for r in every)
    wrong = (others - reached) & named
    assert not wrong, "%s: glue or additional addresses mapped: %s" % (server, sorted(wrong))
    assert "parser_error" not in counts, counts
    return want, counts


def test_bind_every_mapping_and_nothing_else():
    want, counts = check_server("bind")
    # the paths a large answer really took, as dig and the Reader saw them
    assert [q for q in want["queries"] if q["truncated_first"] and q["transport"] == "TCP"]
    assert counts.get("reassembled", 0) >= 2, counts   # an IPv4 and an IPv6 datagram
    assert counts.get("tcp_messages", 0) >= 2, counts  # after TC, and +tcp


def test_nsd_every_mapping_and_nothing_else():
    _, counts = check_server("nsd")
    assert counts.get("reassembled", 0) >= 2, counts
    assert counts.get("tcp_messages", 0) >= 1, counts


def test_unbound_every_mapping_and_nothing_else():
    _, counts = check_server("unbound")
    assert counts.get("reassembled", 0) >= 2, counts
    assert counts.get("tcp_messages", 0) >= 2, counts


def test_dnsmasq_every_mapping_and_nothing_else():
    _, counts = check_server("dnsmasq")
    assert counts.get("reassembled", 0) >= 2, counts
    assert counts.get("tcp_messages", 0) >= 1, counts


def test_the_routers_dnsmasq_every_mapping_and_nothing_else():
    _, counts = check_server("dnsmasq-router")
    assert counts.get("tcp_messages", 0) >= 1, counts


def find(server, ask):
    for q in expected(server)["queries"]:
        if q["ask"] == ask:
            return q
    raise KeyError(ask)


def test_the_corpus_holds_what_it_claims():
    # a chain of six CNAMEs across two zones: the TTL is its smallest link (120 s)
    q = find("bind", "@198.51.100.55 www.bind-zone.example A")
    assert len([r for r in q["answer"] if r[2] == "CNAME"]) == 6
    assert [m[1:] for m in q["mappings"]] == [["198.19.0.6", "www.bind-zone.example", 120]]
    # DNAME: the synthesized CNAME leads on
    q = find("unbound", "@198.51.100.56 host.old.bind-zone.example AAAA")
    assert [r[2] for r in q["answer"]][:2] == ["DNAME", "CNAME"]
    assert [m[1:3] for m in q["mappings"]] == [["2001:db8:2::13", "host.old.bind-zone.example"]]
    # labels with a dot and a space, as dig writes them; TTL 0 stays 0
    assert find("bind", r"@198.51.100.55 dot\.inside.bind-zone.example A")["mappings"][0][2] == \
        r"dot\.inside.bind-zone.example"
    assert find("bind", r"@198.51.100.55 with\032space.bind-zone.example A")["mappings"][0][2] == \
        r"with\032space.bind-zone.example"
    assert find("bind", "@198.51.100.55 zero.bind-zone.example A")["mappings"][0][3] == 0
    # a referral: nothing to map, the glue is the only address
    q = find("bind", "@198.51.100.55 x.sub.bind-zone.example A +norec")
    assert q["mappings"] == [] and q["others"] == ["198.19.99.53"]


def test_mixed_case_is_mapped_lowercase():
    got = replay("bind.pcap")
    names = set(r[2] for r in got)
    assert "mixed.case.bind-zone.example" in names
    for n in names:
        assert n == n.lower(), n


def test_malformed_answers_map_nothing():
    counts = {}
    got = replay("malformed.pcap", counts)
    assert got == [], got[:3]
    assert counts.get("malformed", 0) == counts["packets"], counts


def udp4_answers():
    """(seconds, packet, DNS offset) of the whole IPv4 UDP answers in the corpus."""
    out = []
    for server in SERVERS:
        for sec, ethertype, p in frames(data(server + ".pcap")):
            if ethertype != 0x0800 or p[9] != 17 or ((p[6] & 0x3F) or p[7]):
                continue
            ihl = (p[0] & 15) * 4
            if p[ihl:ihl + 2] != b"\x00\x35":
                continue
            out.append((sec, p, ihl + 8))
    return out


def cut(p, at, ihl):
    """The packet with its DNS message cut to `at` bytes past the UDP
    header, every length and the IP checksum right again."""
    total = at
    b = bytearray(p[:total])
    struct.pack_into(">H", b, 2, total)
    struct.pack_into(">H", b, 10, 0)
    s = 0
    for i in range(0, ihl, 2):
        s += (b[i] << 8) | b[i + 1]
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    struct.pack_into(">H", b, 10, (~s) & 0xFFFF)
    struct.pack_into(">H", b, ihl + 4, total - ihl)
    struct.pack_into(">H", b, ihl + 6, 0)
    return bytes(b)


def test_every_answer_cut_short_maps_nothing():
    # all or nothing: a message missing its last byte, or anything from
    # its header on, is not a message, whichever section the cut falls in
    checked = 0
    for sec, p, dns in udp4_answers():
        ihl = (p[0] & 15) * 4
        end = (p[2] << 8) | p[3]
        if not dnssnoop.parse(p, {}):
            continue
        for at in range(dns, end):
            got = dnssnoop.parse(cut(p, at, ihl), {})
            assert got == [], "cut to %d of %d bytes still maps %s" % (at - dns, end - dns, got[:2])
            checked += 1
    assert checked > 1000, checked


# -- the kernel's filter on the same packets ---------------------------------------

def bpf_run(prog, p):
    """Classic BPF, the opcodes dnssnoop.FILTER uses, on one packet: the
    bytes to deliver (0: drop). A load past the packet's end drops it, as
    in the kernel."""
    a = x = 0
    pc = 0
    n = len(p)
    while True:
        code, jt, jf, k = struct.unpack_from("HBBI", prog, pc * 8)
        pc += 1
        if code == 0x06:                       # ret #k
            return k
        if code in (0x30, 0x28, 0x48, 0xB1):   # loads
            at = k + x if code == 0x48 else k
            size = 1 if code in (0x30, 0xB1) else 2
            if at + size > n:
                return 0
            v = p[at] if size == 1 else (p[at] << 8) | p[at + 1]
            if code == 0xB1:
                x = 4 * (v & 15)
            else:
                a = v
        elif code == 0x54:                     # and #k
            a &= k
        elif code == 0x15:                     # jeq #k
            pc += jt if a == k else jf
        elif code == 0x45:                     # jset #k
            pc += jt if a & k else jf
        else:
            raise ValueError("opcode %#x not in this interpreter" % code)


def test_the_kernel_filter_lets_every_answer_through():
    # only what FILTER passes reaches the Reader on a router: the same
    # mappings must come out of that alone, and no device query gets in
    prog = dnssnoop.program()
    for server in SERVERS:
        reader = dnssnoop.Reader()
        got = []
        passed = dropped = 0
        for sec, ethertype, packet in frames(data(server + ".pcap")):
            if not bpf_run(prog, packet):
                dropped += 1
                continue
            passed += 1
            got.extend(reader.feed(packet, sec, ethertype))
        assert as_set(got) == as_set(replay(server + ".pcap")), server
        assert got and passed and dropped, (server, passed, dropped)
        assert "not_dns" not in reader.counts, (server, reader.counts)
