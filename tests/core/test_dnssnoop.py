"""DNS answers -> names: crafted packets in the RFC 1035 wire format.

Plain tests (no pytest import, no fixtures) so the MicroPython runner runs
them as well. Real packets captured from dnsmasq are in test_dnsgolden.py.
"""

import struct

from spin_lite import dnssnoop


# -- building DNS messages (RFC 1035 §4) ------------------------------------

def wire_name(name):
    out = b""
    for label in name.split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def rr(owner, rtype, ttl, rdata):
    """A resource record; owner is wire bytes (a name or a pointer)."""
    return owner + struct.pack(">HHIH", rtype, 1, ttl, len(rdata)) + rdata


def message(qname, answers, flags=0x8180, qd=1, an=None, qtype=1):
    head = struct.pack(">HHHHHH", 0x1234, flags, qd, len(answers) if an is None else an, 0, 0)
    return head + wire_name(qname) + struct.pack(">HH", qtype, 1) + b"".join(answers)


def ip4(text):
    return bytes([int(p) for p in text.split(".")])


def ip4_checksum(head):
    s = 0
    for i in range(0, len(head), 2):
        s += (head[i] << 8) | head[i + 1]
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return 0xFFFF - s


def ip4_packet(payload, src="192.0.2.53", dst="192.168.1.10", proto=17, frag=0, ident=1):
    head = struct.pack(">BBHHHBBH", 0x45, 0, 20 + len(payload), ident, frag, 64, proto, 0) + ip4(src) + ip4(dst)
    return head[:10] + struct.pack(">H", ip4_checksum(head)) + head[12:] + payload


def udp4(msg, src="192.0.2.53", dst="192.168.1.10", sport=53, proto=17, frag=0):
    udp = struct.pack(">HHHH", sport, 40000, 8 + len(msg), 0) + msg
    return ip4_packet(udp, src, dst, proto, frag)


def udp6(msg, src=b"\x20\x01\x0d\xb8" + bytes(11) + b"\x35",
         dst=b"\xfd\x00" + bytes(13) + b"\x10", sport=53, nexthdr=17):
    udp = struct.pack(">HHHH", sport, 40000, 8 + len(msg), 0) + msg
    head = struct.pack(">IHBB", 0x60000000, len(udp), nexthdr, 64)
    return head + src + dst + udp


QUESTION = b"\xc0\x0c"  # a pointer to the question's name at offset 12


# -- what a device asked for --------------------------------------------------

def test_an_a_record_is_named_after_the_question():
    counts = {}
    msg = message("camera-cloud.example", [rr(QUESTION, 1, 300, ip4("203.0.113.7"))])
    got = dnssnoop.parse(udp4(msg), counts)
    assert got == [("192.168.1.10", "203.0.113.7", "camera-cloud.example", 300)]
    assert counts["packets"] == 1 and counts["answers"] == 1
    assert "malformed" not in counts


def test_two_cnames_lead_back_to_the_name_the_laptop_asked_for():
    # www.shop.example -> shop.cdn.example -> edge7.example-cdn.net -> two addresses;
    # the TTL is the smallest on the way (the 60 s middle link)
    a = wire_name("shop.cdn.example")
    msg = message("www.shop.example", [])
    off_a = len(msg) + 2 + 10  # where the first CNAME's target starts
    ans = [rr(QUESTION, 5, 3600, a),
           rr(struct.pack(">H", 0xC000 | off_a), 5, 60, wire_name("edge7.example-cdn.net"))]
    msg = message("www.shop.example", ans)
    off_b = len(msg) - len(wire_name("edge7.example-cdn.net"))
    pb = struct.pack(">H", 0xC000 | off_b)
    msg = message("www.shop.example", ans + [rr(pb, 1, 20000, ip4("198.51.100.20")),
                                             rr(pb, 1, 30, ip4("198.51.100.21"))])
    got = dnssnoop.parse(udp4(msg), {})
    assert got == [("192.168.1.10", "198.51.100.20", "www.shop.example", 60),
                   ("192.168.1.10", "198.51.100.21", "www.shop.example", 30)]


def test_aaaa_over_ipv6_gives_rfc5952_text():
    addr = b"\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x0b\x0e"
    msg = message("Speaker.Example", [rr(QUESTION, 28, 120, addr)], qtype=28)
    got = dnssnoop.parse(udp6(msg), {})
    assert got == [("fd00::10", "2001:db8::b0e", "speaker.example", 120)]


def test_records_outside_the_chain_are_not_named():
    counts = {}
    msg = message("thermostat.example", [rr(QUESTION, 1, 300, ip4("203.0.113.9")),
                                         rr(wire_name("ads.example"), 1, 300, ip4("203.0.113.66"))])
    got = dnssnoop.parse(udp4(msg), counts)
    assert [g[1] for g in got] == ["203.0.113.9"]
    assert counts["unrelated"] == 1


def test_a_cname_loop_in_the_answers_stops():
    counts = {}
    msg = message("a.example", [rr(QUESTION, 5, 300, wire_name("b.example")),
                                rr(wire_name("b.example"), 5, 300, wire_name("a.example")),
                                rr(wire_name("b.example"), 1, 300, ip4("203.0.113.1"))])
    got = dnssnoop.parse(udp4(msg), counts)
    assert got == [("192.168.1.10", "203.0.113.1", "a.example", 300)]
    assert counts["cname_loop"] == 1


def test_queries_errors_and_other_traffic_give_nothing():
    counts = {}
    assert dnssnoop.parse(udp4(message("x.example", [], flags=0x0100)), counts) == []
    assert counts["not_response"] == 1
    assert dnssnoop.parse(udp4(message("x.example", [], flags=0x8183)), counts) == []  # NXDOMAIN
    assert dnssnoop.parse(udp4(b"", sport=443), counts) == []
    assert dnssnoop.parse(udp4(b"", proto=1), counts) == []  # ICMP
    assert counts["not_dns"] == 1 and counts["not_udp"] == 1


def test_a_ttl_with_the_top_bit_set_means_zero():
    msg = message("x.example", [rr(QUESTION, 1, 0x80000010, ip4("203.0.113.1"))])
    assert dnssnoop.parse(udp4(msg), {})[0][3] == 0


def test_labels_are_lowercased_and_written_as_dig_writes_them():
    # RFC 1035 §5.1: a dot or other special inside a label behind a
    # backslash, bytes outside printable ASCII as \DDD
    name = b"\x03Odd\x04a.b\xff\x05x+y/z\x04q(;)\x03a b\x07example\x00"
    msg = struct.pack(">HHHHHH", 1, 0x8180, 1, 1, 0, 0) + name + b"\0\1\0\1"
    msg += rr(QUESTION, 1, 60, ip4("203.0.113.2"))
    assert dnssnoop.parse(udp4(msg), {})[0][2] == "odd.a\\.b\\255.x+y/z.q\\(\\;\\).a\\032b.example"


def test_the_root_is_a_dot():
    msg = struct.pack(">HHHHHH", 1, 0x8180, 1, 1, 0, 0) + b"\0\0\1\0\1" + rr(b"\0", 1, 60, ip4("203.0.113.9"))
    assert dnssnoop.parse(udp4(msg), {}) == [("192.168.1.10", "203.0.113.9", ".", 60)]


# -- hostile and broken input ---------------------------------------------------

def test_a_pointer_to_itself_is_a_loop():
    counts = {}
    msg = struct.pack(">HHHHHH", 1, 0x8180, 1, 1, 0, 0) + b"\xc0\x0c" + b"\0\1\0\1"
    assert dnssnoop.parse(udp4(msg), counts) == []
    assert counts["malformed"] == 1 and counts["loop"] == 1


def test_two_pointers_that_chase_each_other_are_a_loop():
    # the answer's owner is the label "x" and then a pointer back to that label
    counts = {}
    msg = message("a.example", [])
    owner = b"\x01x" + struct.pack(">H", 0xC000 | len(msg))
    msg = message("a.example", [rr(owner, 1, 60, ip4("203.0.113.3"))])
    assert dnssnoop.parse(udp4(msg), counts) == []
    assert counts["loop"] == 1


def test_a_pointer_past_the_end_is_counted():
    counts = {}
    msg = message("a.example", [rr(b"\xc3\xff", 1, 60, ip4("203.0.113.3"))])
    assert dnssnoop.parse(udp4(msg), counts) == []
    assert counts["bad_pointer"] == 1


def test_a_message_cut_short_maps_nothing_not_even_the_records_before_the_cut():
    counts = {}
    msg = message("cam.example", [rr(QUESTION, 1, 60, ip4("203.0.113.4")),
                                  rr(QUESTION, 1, 60, ip4("203.0.113.5"))])
    cut = msg[:-3]
    udp = struct.pack(">HHHH", 53, 40000, 8 + len(cut), 0) + cut
    assert dnssnoop.parse(ip4_packet(udp), counts) == []
    assert counts["truncated"] == 1 and counts["malformed"] == 1


def test_more_answers_announced_than_sent_maps_nothing():
    counts = {}
    msg = message("cam.example", [rr(QUESTION, 1, 60, ip4("203.0.113.4"))], an=9)
    assert dnssnoop.parse(udp4(msg), counts) == []
    assert counts["bad_count"] == 1


def test_a_truncated_answer_maps_nothing_its_tcp_retry_will():
    counts = {}
    msg = message("big.example", [rr(QUESTION, 1, 60, ip4("203.0.113.4"))], flags=0x8380)
    assert dnssnoop.parse(udp4(msg), counts) == []
    assert counts["truncated_answer"] == 1 and "malformed" not in counts


def test_no_question_or_two_questions_is_a_bad_count():
    counts = {}
    assert dnssnoop.parse(udp4(message("a.example", [], qd=0)), counts) == []
    assert dnssnoop.parse(udp4(message("a.example", [], qd=2)), counts) == []
    assert counts["bad_count"] == 2


def test_a_name_longer_than_255_bytes_is_refused():
    counts = {}
    name = ".".join(["x" * 60] * 5)
    assert dnssnoop.parse(udp4(message(name, [rr(QUESTION, 1, 60, ip4("1.2.3.4"))])), counts) == []
    assert counts["too_long"] == 1


def test_after_a_record_of_the_wrong_length_no_record_is_mapped():
    counts = {}
    for bad in (b"\1\2\3", b"\1\2\3\4\5\6\7\x08\x09"):  # an A record of 3 and of 9 bytes
        msg = message("a.example", [rr(QUESTION, 1, 60, bad), rr(QUESTION, 1, 60, ip4("1.2.3.4"))])
        assert dnssnoop.parse(udp4(msg), counts) == []
    assert counts["bad_rdata"] == 2


def test_bytes_past_the_ip_length_are_not_read_as_records():
    counts = {}
    msg = message("a.example", [rr(QUESTION, 1, 60, ip4("1.2.3.4"))], an=2)
    pkt = udp4(msg)
    # the second record the header announces lies past the IP packet's end
    tail = rr(QUESTION, 1, 60, ip4("6.6.6.6"))
    assert dnssnoop.parse(pkt + tail, counts) == []
    assert counts["bad_count"] == 1


def test_a_packet_whose_ip_version_is_not_its_frames_is_refused():
    counts = {}
    pkt = udp4(message("a.example", [rr(QUESTION, 1, 60, ip4("1.2.3.4"))]))
    assert dnssnoop.Reader(counts).feed(pkt, 0, 0x86DD) == []
    assert counts["version_mismatch"] == 1
    assert dnssnoop.Reader(counts).feed(pkt, 0, 0x0800)[0][1] == "1.2.3.4"


def test_a_bad_ipv4_header_checksum_or_length_is_refused():
    counts = {}
    pkt = bytearray(udp4(message("a.example", [rr(QUESTION, 1, 60, ip4("1.2.3.4"))])))
    pkt[8] = 1  # the TTL changed, the checksum did not follow
    assert dnssnoop.parse(bytes(pkt), counts) == []
    assert counts["bad_checksum"] == 1
    short = udp4(message("a.example", [rr(QUESTION, 1, 60, ip4("1.2.3.4"))]))
    assert dnssnoop.parse(short[:-1], counts) == []  # the IP length says more than came
    assert counts["truncated"] == 1


def test_short_packets_of_every_length_never_raise():
    counts = {}
    pkt = udp4(message("a.example", [rr(QUESTION, 1, 60, ip4("1.2.3.4"))]))
    for n in range(len(pkt)):
        assert dnssnoop.parse(pkt[:n], counts) == []
    assert counts["malformed"] == len(pkt)


# -- the kernel filter, run by a tiny classic-BPF interpreter ---------------------

def run_bpf(prog, pkt):
    """Execute a classic BPF program (the subset FILTER uses) over pkt."""
    a = x = 0
    pc = 0
    while True:
        code, jt, jf, k = struct.unpack_from("HBBI", prog, pc * 8)
        pc += 1
        if code == 0x30:
            if k >= len(pkt):
                return 0
            a = pkt[k]
        elif code == 0x28 or code == 0x48:
            off = k + (x if code == 0x48 else 0)
            if off + 2 > len(pkt):
                return 0
            a = (pkt[off] << 8) | pkt[off + 1]
        elif code == 0xB1:
            if k >= len(pkt):
                return 0
            x = (pkt[k] & 15) * 4
        elif code == 0x54:
            a &= k
        elif code == 0x15:
            pc += jt if a == k else jf
        elif code == 0x45:
            pc += jt if a & k else jf
        elif code == 0x06:
            return k
        else:
            raise ValueError("opcode %x" % code)


def test_the_filter_keeps_dns_answers_only():
    prog = dnssnoop.program()
    assert len(prog) == 8 * len(dnssnoop.FILTER)
    answer = message("a.example", [rr(QUESTION, 1, 60, ip4("1.2.3.4"))])
    assert run_bpf(prog, udp4(answer)) == dnssnoop.SNAPLEN
    assert run_bpf(prog, udp6(answer)) == dnssnoop.SNAPLEN
    # IPv4 options move the UDP header: the filter follows the header length
    opt = udp4(answer)
    opt = bytes([0x46]) + opt[1:2] + struct.pack(">H", len(opt) + 4) + opt[4:10] + b"\0\0" + opt[12:20] + b"\1\1\1\0" + opt[20:]
    opt = opt[:10] + struct.pack(">H", ip4_checksum(opt[:24])) + opt[12:]
    assert run_bpf(prog, opt) == dnssnoop.SNAPLEN
    assert dnssnoop.parse(opt, {})[0][1] == "1.2.3.4"
    assert run_bpf(prog, udp4(answer, sport=5353)) == 0     # mDNS
    assert run_bpf(prog, udp4(answer, proto=6)) == dnssnoop.SNAPLEN       # TCP from port 53
    assert run_bpf(prog, udp4(answer, sport=443, proto=6)) == 0           # other TCP
    assert run_bpf(prog, udp4(answer, frag=0x0010)) == dnssnoop.SNAPLEN   # a later fragment: Python decides
    assert run_bpf(prog, udp4(answer, proto=6, frag=0x0010)) == 0         # of TCP: never DNS's
    assert run_bpf(prog, udp4(answer, frag=0x2000)) == dnssnoop.SNAPLEN  # the first one
    assert run_bpf(prog, udp6(answer, nexthdr=44)) == dnssnoop.SNAPLEN   # an IPv6 fragment
    assert run_bpf(prog, udp6(answer, nexthdr=6)) == dnssnoop.SNAPLEN
    assert run_bpf(prog, udp6(answer, sport=443, nexthdr=6)) == 0
    assert run_bpf(prog, udp6(answer, nexthdr=0)) == 0      # behind an extension header
    assert run_bpf(prog, b"\x00\x01\x08\x00") == 0          # ARP


# -- fuzz: thousands of broken answers; nothing escapes, the damage is counted --
class Rand:
    """xorshift32: the same sequence on every interpreter, so a failure
    can be replayed from its seed."""

    def __init__(self, seed):
        self.s = seed or 1

    def next(self):
        s = self.s
        s ^= (s << 13) & 0xFFFFFFFF
        s ^= s >> 17
        s ^= (s << 5) & 0xFFFFFFFF
        self.s = s
        return s

    def below(self, n):
        return self.next() % n


def seeds():
    chain = message("www.shop.example", [rr(QUESTION, 5, 300, wire_name("edge.example-cdn.net")),
                                         rr(wire_name("edge.example-cdn.net"), 1, 60, ip4("198.51.100.20")),
                                         rr(b"\xc0\x2e", 28, 60, bytes(15) + b"\1")])
    plain = message("camera-cloud.example", [rr(QUESTION, 1, 300, ip4("203.0.113.7")),
                                             rr(QUESTION, 1, 300, ip4("203.0.113.8"))])
    return [udp4(chain), udp6(chain), udp4(plain), udp6(plain)]


def mutate(rnd, pkt):
    b = bytearray(pkt)
    # keep the IP/UDP headers mostly intact so the DNS parser gets the blows
    head = 48 if pkt[0] >> 4 == 6 else 28
    for _ in range(1 + rnd.below(4)):
        how = rnd.below(7)
        at = head + rnd.below(max(1, len(b) - head))
        if how == 0 and at < len(b):
            b[at] = rnd.below(256)                            # one random byte
        elif how == 1:
            b = b[:at]                                        # cut short
        elif how == 2 and at + 1 < len(b):
            ptr = 0xC000 | rnd.below(len(b) + 64)             # a pointer anywhere, even past the end
            b[at] = ptr >> 8
            b[at + 1] = ptr & 255
        elif how == 3 and len(b) > head + 12:
            off = head + 4 + 2 * rnd.below(4)                 # a wrong count
            v = rnd.below(65536)
            b[off] = v >> 8
            b[off + 1] = v & 255
        elif how == 4:
            b = b[:at] + bytes([rnd.below(256) for _ in range(rnd.below(40))]) + b[at:]
        elif how == 5 and at < len(b):
            b[at] = 0x40 | rnd.below(128)                     # reserved label types, long labels
        elif how == 6:
            b = bytearray(bytes([rnd.below(256) for _ in range(rnd.below(80))]))
    return bytes(b)


def check(answers):
    for client, addr, name, ttl in answers:
        assert isinstance(client, str) and isinstance(addr, str) and isinstance(name, str)
        assert 0 <= ttl <= 0x7FFFFFFF
        assert len(name) <= 4 * 255


def test_thousands_of_mutated_answers():
    rnd = Rand(20261127)
    counts = {}
    base = seeds()
    named = 0
    for i in range(6000):
        answers = dnssnoop.parse(mutate(rnd, base[i % len(base)]), counts)
        check(answers)
        named += len(answers)
    assert counts["packets"] == 6000
    assert counts["malformed"] > 1000
    for reason in ("truncated", "bad_pointer", "loop", "bad_count"):
        assert counts.get(reason, 0) > 0, reason
    assert "parser_error" not in counts  # every fault was foreseen, none was a bug
    assert named > 0  # some mutants still carry good records


def test_random_bytes_behind_a_valid_dns_header():
    rnd = Rand(7)
    counts = {}
    for _ in range(3000):
        body = bytes([rnd.below(256) for _ in range(rnd.below(300))])
        msg = struct.pack(">HHHHHH", 1, 0x8180, 1, rnd.below(8), 0, 0) + body
        check(dnssnoop.parse(udp4(msg), counts))
    assert counts["malformed"] > 2000
    assert "parser_error" not in counts


# -- answers bigger than one packet: IP fragments and TCP ----------------------

def big_answer(name="big.example", n=200):
    return message(name, [rr(QUESTION, 1, 300, ip4("198.51.%d.%d" % (100 + i // 250, 1 + i % 250)))
                          for i in range(n)])


def fragments4(msg, size=1480, order=None, ident=77):
    """A UDP datagram from port 53 cut into IPv4 fragments of `size` bytes."""
    udp = struct.pack(">HHHH", 53, 40000, 8 + len(msg), 0) + msg
    pieces = [udp[i:i + size] for i in range(0, len(udp), size)]
    out = []
    for k, piece in enumerate(pieces):
        more = 0x2000 if k < len(pieces) - 1 else 0
        out.append(ip4_packet(piece, frag=more | (k * size // 8), ident=ident))
    return [out[k] for k in order] if order else out


def fragments6(msg, size=1448, ident=b"\0\0\0\x09"):
    udp = struct.pack(">HHHH", 53, 40000, 8 + len(msg), 0) + msg
    src, dst = b"\x20\x01\x0d\xb8" + bytes(11) + b"\x35", b"\xfd\x00" + bytes(13) + b"\x10"
    out = []
    for i in range(0, len(udp), size):
        piece = udp[i:i + size]
        more = 1 if i + size < len(udp) else 0
        frag = struct.pack(">BBH", 17, 0, i | more) + ident
        out.append(struct.pack(">IHBB", 0x60000000, 8 + len(piece), 44, 64) + src + dst + frag + piece)
    return out


def expected_big(n=200, client="192.168.1.10"):
    return [(client, "198.51.%d.%d" % (100 + i // 250, 1 + i % 250), "big.example", 300) for i in range(n)]


def test_an_answer_in_three_ipv4_fragments_is_read_whole_in_any_order():
    for order in (None, (2, 0, 1), (1, 2, 0)):
        r = dnssnoop.Reader()
        frags = fragments4(big_answer(), order=order)
        assert len(frags) == 3
        got = []
        for f in frags:
            got += r.feed(f, 100)
        assert got == expected_big(), order
        assert r.frags == {} and r.held == 0
        assert r.counts["reassembled"] == 1


def test_an_answer_in_ipv6_fragments_is_read_whole():
    r = dnssnoop.Reader()
    got = []
    for f in fragments6(big_answer()):
        got += r.feed(f, 100)
    assert got == expected_big(client="fd00::10")


def test_overlapping_fragments_drop_the_whole_datagram():
    r = dnssnoop.Reader()
    frags = fragments4(big_answer())
    # a forged piece over the middle of the first one
    evil = ip4_packet(b"\0" * 16, frag=0x2000 | 8, ident=77)
    assert r.feed(frags[0], 1) == [] and r.feed(evil, 1) == []
    assert r.feed(frags[1], 1) == [] and r.feed(frags[2], 1) == []
    assert r.counts["overlap"] == 1
    assert r.frags == {} or all(d[1] < 0 for d in r.frags.values())


def test_fragments_not_of_dns_and_stale_ones_are_let_go():
    r = dnssnoop.Reader()
    udp = struct.pack(">HHHH", 4500, 40000, 8 + 3000, 0) + bytes(3000)  # a VPN's datagram
    assert r.feed(ip4_packet(udp[:1480], frag=0x2000, ident=5), 1) == []
    assert r.feed(ip4_packet(udp[1480:2960], frag=0x2000 | 185, ident=5), 1) == []
    assert r.held == 0  # nothing of it is kept
    frags = fragments4(big_answer(), ident=6)
    r.feed(frags[0], 10)
    assert r.held > 0
    r.feed(frags[1], 10 + dnssnoop.FRAG_SECONDS + 1)  # the first one is too old by now
    assert r.counts["fragments_expired"] >= 1
    assert r.feed(frags[2], 10 + dnssnoop.FRAG_SECONDS + 1) == []


def test_fragments_are_bounded_in_number_and_bytes():
    r = dnssnoop.Reader(datagrams=4, max_bytes=8000)
    for ident in range(100):
        r.feed(fragments4(big_answer(), ident=ident)[0], ident)  # first pieces only, never whole
        assert len(r.frags) <= 4 and r.held <= 8000
    assert r.counts["fragments_dropped"] >= 96


def tcp_segment(data, seq, flags=0x18, src="192.0.2.53", dst="192.168.1.10", dport=40000):
    head = struct.pack(">HHIIBBHHH", 53, dport, seq & 0xFFFFFFFF, 1, 5 << 4, flags, 65535, 0, 0)
    return ip4_packet(head + data, src, dst, proto=6)


def framed(*msgs):
    return b"".join(struct.pack(">H", len(m)) + m for m in msgs)


def test_tcp_answers_split_and_joined_any_way_are_all_read():
    a = big_answer()
    b = message("small.example", [rr(QUESTION, 1, 60, ip4("203.0.113.77"))])
    stream = framed(a, b)
    for cut in (1, 2, 3, 700, len(stream) - 1):
        r = dnssnoop.Reader()
        isn = 0xFFFFFF00  # the sequence number wraps inside the stream
        assert r.feed(tcp_segment(b"", isn, flags=0x12), 1) == []   # SYN-ACK
        got = r.feed(tcp_segment(stream[:cut], isn + 1), 1)
        got += r.feed(tcp_segment(stream[:cut], isn + 1), 1)          # sent again: nothing twice
        got += r.feed(tcp_segment(stream[cut:], isn + 1 + cut, flags=0x19), 1)  # with FIN
        assert got == expected_big() + [("192.168.1.10", "203.0.113.77", "small.example", 60)], cut
        assert r.streams == {} and r.held == 0


def test_a_tcp_stream_seen_midway_or_with_a_gap_names_nothing():
    r = dnssnoop.Reader()
    stream = framed(big_answer())
    assert r.feed(tcp_segment(stream, 1000), 1) == []
    assert r.counts["tcp_midstream"] == 1
    r.feed(tcp_segment(b"", 5000, flags=0x12), 1)
    assert r.feed(tcp_segment(stream[10:], 5011), 1) == []  # ten bytes never came
    assert r.counts["tcp_gap"] == 1 and r.streams == {}


def test_a_broken_message_in_a_stream_maps_nothing_and_the_next_one_still_counts():
    r = dnssnoop.Reader()
    bad = message("a.example", [rr(QUESTION, 1, 60, b"\1\2\3"), rr(QUESTION, 1, 60, ip4("6.6.6.6"))])
    good = message("b.example", [rr(QUESTION, 1, 60, ip4("203.0.113.8"))])
    r.feed(tcp_segment(b"", 0, flags=0x12), 1)
    got = r.feed(tcp_segment(framed(bad, good), 1), 1)
    assert got == [("192.168.1.10", "203.0.113.8", "b.example", 60)]
    assert r.counts["bad_rdata"] == 1


def test_tcp_streams_are_bounded():
    r = dnssnoop.Reader(streams=3)
    for port in range(50):
        r.feed(tcp_segment(b"", 0, flags=0x12, dport=30000 + port), port)
        r.feed(tcp_segment(b"\x40\x00" + bytes(500), 1, dport=30000 + port), port)  # a 16 KB message begun
        assert len(r.streams) <= 3
    assert r.counts["streams_dropped"] >= 47
    assert r.held <= 3 * 502
