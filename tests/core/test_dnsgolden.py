"""DNS answers captured in the simulated home, parsed byte for byte.

Captured on the router's br-lan with `tcpdump -i br-lan -w dns-answers.pcap
'udp src port 53'` while the laptop (192.168.8.187, fd00:8::ff:fe00:4) asked
the router's dnsmasq and, once, the internet's resolver 198.51.100.53
directly (tests/world/home.py ZONE). Each packet is the frame without its
14-byte Ethernet header: what the AF_PACKET SOCK_DGRAM socket hands the
agent. At capture time the zone's dnsmasq answered with TTL 0 (its default
for its own records; real resolvers send such TTLs too), which is why the
agent names the flows that begin within dns_grace of a record's end
(endpoints.py). Plain tests: MicroPython
runs them too.
"""

from binascii import unhexlify

from spin_lite import dnssnoop

# (what happened, packet as hex, expected (client, address, name, ttl))
CAPTURED = [
    ('the laptop asks the router for www.example-shop.com (A): two CNAMEs, then the address',
     unhexlify(
     "45000099180840004011903fc0a80801c0a808bb0035c111008592a3930485800001000300000000"
     "037777770c6578616d706c652d73686f7003636f6d0000010001c00c0005000100000000001b0473"
     "686f7004656467650b6578616d706c652d63646e036e657400c03200050001000000000014026537"
     "0b6578616d706c652d63646e036e657400c05900010001000000000004cb007107"),
     [('192.168.8.187', '203.0.113.7', 'www.example-shop.com', 0)]),
    ('the same name, AAAA',
     unhexlify(
     "450000a51809400040119032c0a80801c0a808bb0035b19f009192af0a2f85800001000300000000"
     "037777770c6578616d706c652d73686f7003636f6d00001c0001c00c0005000100000000001b0473"
     "686f7004656467650b6578616d706c652d63646e036e657400c03200050001000000000014026537"
     "0b6578616d706c652d63646e036e657400c059001c000100000000001020010db800010000000000"
     "0000000007"),
     [('192.168.8.187', '2001:db8:1::7', 'www.example-shop.com', 0)]),
    ('video.example-tube.com: one CNAME, two addresses',
     unhexlify(
     "45000083180c400040119051c0a80801c0a808bb003589df006f928da6bd85800001000300000000"
     "05766964656f0c6578616d706c652d7475626503636f6d0000010001c00c00050001000000000013"
     "01760b6578616d706c652d63646e036e657400c03400010001000000000004c6336414c034000100"
     "01000000000004c6336415"),
     [('192.168.8.187', '198.51.100.20', 'video.example-tube.com', 0), ('192.168.8.187', '198.51.100.21', 'video.example-tube.com', 0)]),
    ("config.example-music.com asked of the internet's resolver directly, bypassing the router",
     unhexlify(
     "45000056d5a240003f117228c6336435c0a808bb0035e73f0042f41f558185800001000100000000"
     "06636f6e6669670d6578616d706c652d6d7573696303636f6d0000010001c00c0001000100000000"
     "0004cb007115"),
     [('192.168.8.187', '203.0.113.21', 'config.example-music.com', 0)]),
    ('nosuch.example.com: NXDOMAIN, nothing to learn',
     unhexlify(
     "45000040181c400040119084c0a80801c0a808bb0035d718002c924a0abb81830001000000000000"
     "066e6f73756368076578616d706c6503636f6d0000010001"),
     []),
    ("news.example.org AAAA over IPv6 from the router's fd00:8::1",
     unhexlify(
     "600169c600461140fd000008000000000000000000000001fd00000800000000000000fffe000004"
     "0035b7da0046f96d443b85800001000100000000046e657773076578616d706c65036f726700001c"
     "0001c00c001c000100000000001020010db800010000000000000000000a"),
     [('fd00:8::ff:fe00:4', '2001:db8:1::a', 'news.example.org', 0)]),
]


def test_every_captured_answer_parses_as_expected():
    counts = {}
    for what, packet, expected in CAPTURED:
        assert dnssnoop.parse(packet, counts) == expected, what
    assert counts["packets"] == len(CAPTURED)
    assert "malformed" not in counts


def test_every_captured_answer_passes_the_filter():
    from test_dnssnoop import run_bpf
    prog = dnssnoop.program()
    for what, packet, _ in CAPTURED:
        assert run_bpf(prog, packet) == dnssnoop.SNAPLEN, what


def test_captured_answers_cut_anywhere_never_raise():
    counts = {}
    for _, packet, expected in CAPTURED:
        for n in range(len(packet)):
            got = dnssnoop.parse(packet[:n], counts)
            for item in got:
                assert item in expected  # a cut answer may lose records, never invent one
    assert counts["malformed"] > 0
