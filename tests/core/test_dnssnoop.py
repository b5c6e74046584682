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


def udp4(msg, src="192.0.2.53", dst="192.168.1.10", sport=53, proto=17, frag=0):
    udp = struct.pack(">HHHH", sport, 40000, 8 + len(msg), 0) + msg
    head = struct.pack(">BBHHHBBH", 0x45, 0, 20 + len(udp), 1, frag, 64, proto, 0)
    return head + ip4(src) + ip4(dst) + udp


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
    assert dnssnoop.parse(udp4(b"", proto=6), counts) == []
    assert counts["not_dns"] == 1 and counts["not_udp"] == 1


def test_a_ttl_with_the_top_bit_set_means_zero():
    msg = message("x.example", [rr(QUESTION, 1, 0x80000010, ip4("203.0.113.1"))])
    assert dnssnoop.parse(udp4(msg), {})[0][3] == 0


def test_labels_are_lowercased_and_odd_bytes_escaped():
    name = b"\x03Odd\x04a.b\xff\x07example\x00"
    msg = struct.pack(">HHHHHH", 1, 0x8180, 1, 1, 0, 0) + name + b"\0\1\0\1"
    msg += rr(QUESTION, 1, 60, ip4("203.0.113.2"))
    assert dnssnoop.parse(udp4(msg), {})[0][2] == "odd.a\\046b\\255.example"


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


def test_a_truncated_record_keeps_the_answers_before_it():
    counts = {}
    msg = message("cam.example", [rr(QUESTION, 1, 60, ip4("203.0.113.4")),
                                  rr(QUESTION, 1, 60, ip4("203.0.113.5"))])
    got = dnssnoop.parse(udp4(msg[:-3]), counts)
    assert [g[1] for g in got] == ["203.0.113.4"]
    assert counts["truncated"] == 1 and counts["malformed"] == 1


def test_more_answers_announced_than_sent():
    counts = {}
    msg = message("cam.example", [rr(QUESTION, 1, 60, ip4("203.0.113.4"))], an=9)
    got = dnssnoop.parse(udp4(msg), counts)
    assert [g[1] for g in got] == ["203.0.113.4"]
    assert counts["bad_count"] == 1


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


def test_an_address_of_the_wrong_length_is_skipped():
    counts = {}
    msg = message("a.example", [rr(QUESTION, 1, 60, b"\1\2\3"), rr(QUESTION, 1, 60, ip4("1.2.3.4"))])
    assert [g[1] for g in dnssnoop.parse(udp4(msg), counts)] == ["1.2.3.4"]
    assert counts["bad_rdata"] == 1


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
    opt = bytes([0x46]) + opt[1:2] + struct.pack(">H", len(opt) + 4) + opt[4:20] + b"\1\1\1\0" + opt[20:]
    assert run_bpf(prog, opt) == dnssnoop.SNAPLEN
    assert dnssnoop.parse(opt, {})[0][1] == "1.2.3.4"
    assert run_bpf(prog, udp4(answer, sport=5353)) == 0     # mDNS
    assert run_bpf(prog, udp4(answer, proto=6)) == 0        # TCP from port 53
    assert run_bpf(prog, udp4(answer, frag=0x0010)) == 0    # a later fragment
    assert run_bpf(prog, udp4(answer, frag=0x2000)) == dnssnoop.SNAPLEN  # the first one
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
