"""The address vocabulary every part speaks (sources, model, firewall, api)."""

from spin_lite import addr


def test_addresses_are_normalised():
    assert addr.parse_ip("fd00:0008:0000:0000:0000:0000:0000:0010") == "fd00:8::10"
    assert addr.parse_ip("2001:db8::1:0:0:1") == "2001:db8::1:0:0:1"
    assert addr.parse_ip("::ffff:192.0.2.1") == "::ffff:c000:201"
    assert addr.parse_ip("192.168.8.10") == "192.168.8.10"
    assert addr.parse_remote("203.0.113.0/24") == "203.0.113.0/24"
    for bad in ("256.1.1.1", "1.2.3", "fd00::1::2", "g::1", "1.2.3.4/33", "::/129", ""):
        try:
            addr.parse_remote(bad)
        except ValueError:
            continue
        raise AssertionError("accepted %r" % bad)


def test_macs_are_lower_case_with_colons():
    assert addr.parse_mac("02-00-00-00-00-0A") == "02:00:00:00:00:0a"
    for bad in ("02:00:00:00:00", "02:00:00:00:00:0g", "0200.0000.000a", ""):
        try:
            addr.parse_mac(bad)
        except ValueError:
            continue
        raise AssertionError("accepted %r" % bad)


def test_ipv6_off_the_wire_is_written_as_rfc_5952_says():
    raw = bytes([0xfd, 0, 0, 8] + [0] * 10 + [0, 0x10])
    assert addr.ipv6_from_bytes(raw) == "fd00:8::10"
    assert addr.format_ipv6(addr.parse_ipv6("2001:db8:0:1:1:1:1:1")) == "2001:db8:0:1:1:1:1:1"


def test_ipv4_digits_are_ascii_only():
    # str.isdigit() also takes Arabic-Indic and superscript digits: the first
    # were read as 1.2.3.4, the second raised int()'s own message (fuzzing)
    assert addr.parse_ip("192.168.008.5") == "192.168.8.5"
    for bad in ("\u0661.2.3.4", "1.2.3.\u00b2", "1..2.3", " 1.2.3.4", "1.2.3.4 ", "+1.2.3.4", "1.2.3.-1",
                "1.2.3.0x1", "1234.1.1.1", "1.2.3.256", "1.2.3.4.5"):
        try:
            addr.parse_ipv4(bad)
        except ValueError as e:
            assert str(e) == "not an IPv4 address", e
            continue
        raise AssertionError("accepted %r" % bad)
