"""Registrable domains and service labels (plain tests, MicroPython too)."""

from spin_lite import domains, services
from spin_lite.domains import registrable


def test_two_labels_for_generic_names():
    assert registrable("video.example-cdn.net") == "example-cdn.net"
    assert registrable("a.b.c.d.example.com.") == "example.com"
    assert registrable("Example.COM") == "example.com"
    assert registrable("example.com") == "example.com"


def test_three_labels_under_a_generic_second_level_of_a_cctld():
    assert registrable("www.bbc.co.uk") == "bbc.co.uk"
    assert registrable("news.abc.net.au") == "abc.net.au"
    assert registrable("static.sony.co.jp") == "sony.co.jp"
    assert registrable("cdn.shop.com.br") == "shop.com.br"
    assert registrable("www.uni.ac.at") == "uni.ac.at"
    # other labels under a ccTLD, and generic labels under a long TLD, stay at two
    assert registrable("www.heise.de") == "heise.de"
    assert registrable("www.co.example") == "co.example"


def test_listed_multi_label_suffixes_and_exceptions():
    assert registrable("a.b.schools.k12.ca.us") == "schools.k12.ca.us"
    assert registrable("www.firma.co.de") == "co.de"  # co.de is a registered domain, not a suffix
    assert registrable("myblog.blogspot.com") == "myblog.blogspot.com"


def test_addresses_single_labels_and_empty_stay():
    assert registrable("203.0.113.7") == "203.0.113.7"
    assert registrable("2001:db8::1") == "2001:db8::1"
    assert registrable("printer") == "printer"
    assert registrable("co.uk") == "co.uk"
    assert registrable("") == ""


def test_cdn_names_without_the_suffix_list_stay_together():
    # the Public Suffix List's private section would split these; an owner wants one line
    assert registrable("d111.cloudfront.net") == registrable("d222.cloudfront.net") == "cloudfront.net"
    assert domains.GENERIC_SECOND  # the table is there to read and extend


def test_service_labels_for_common_ports():
    assert services.label("tcp", 443) == "https"
    assert services.label("udp", 443) == "quic"
    assert services.label(17, 53) == "dns"
    assert services.label("tcp", 23) == "telnet"
    assert services.label("tcp", 2323) == "telnet-alt"
    assert services.label("tcp", 40000) is None
    assert services.label("icmp", 0) is None
