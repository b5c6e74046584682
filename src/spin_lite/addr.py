"""The address vocabulary: parse and format IPv4, IPv6, MAC and prefixes.

Sources (conntrack, neighbours, DNS answers), the model, the firewall and
the interface all speak it, so it sits at the bottom of the house and
imports nothing of ours (DESIGN.md §3). Parsers raise ValueError with a
few words saying what the text is not; callers add whose text it was.
"""

HEX = "0123456789abcdef"
DIGITS = "0123456789"


def parse_mac(value):
    mac = value.lower().replace("-", ":")
    parts = mac.split(":")
    if len(parts) != 6:
        raise ValueError("not a MAC address")
    for p in parts:
        if len(p) != 2 or p[0] not in HEX or p[1] not in HEX:
            raise ValueError("not a MAC address")
    return mac


def parse_ipv4(value):
    parts = value.split(".")
    if len(parts) != 4:
        raise ValueError("not an IPv4 address")
    n = 0
    for p in parts:
        # not str.isdigit: it takes '١' and '²', which int() then reads or
        # refuses. strip, not a loop over the characters: a scan brings
        # thousands of new remotes a second, each parsed once
        if not 0 < len(p) < 4 or p.strip(DIGITS):
            raise ValueError("not an IPv4 address")
        v = int(p)
        if v > 255:
            raise ValueError("not an IPv4 address")
        n = (n << 8) | v
    return n


def parse_ipv6(value):
    """IPv6 text -> int. Accepts '::' and an embedded IPv4 tail."""
    if value.count("::") > 1 or not value or "%" in value:
        raise ValueError("not an IPv6 address")
    if "." in value:
        head, _, v4 = value.rpartition(":")
        n4 = parse_ipv4(v4)
        value = "%s:%x:%x" % (head, n4 >> 16, n4 & 0xFFFF)
    if "::" in value:
        left, right = value.split("::")
        lw = left.split(":") if left else []
        rw = right.split(":") if right else []
        missing = 8 - len(lw) - len(rw)
        if missing < 1:
            raise ValueError("not an IPv6 address")
        words = lw + ["0"] * missing + rw
    else:
        words = value.split(":")
    if len(words) != 8:
        raise ValueError("not an IPv6 address")
    n = 0
    for w in words:
        if not w or len(w) > 4:
            raise ValueError("not an IPv6 address")
        for c in w.lower():
            if c not in HEX:
                raise ValueError("not an IPv6 address")
        n = (n << 16) | int(w, 16)
    return n


def format_ipv6(n):
    words = ["%x" % ((n >> (16 * (7 - i))) & 0xFFFF) for i in range(8)]
    # the longest run of two or more zero words becomes '::' (RFC 5952)
    best, best_len, i = -1, 1, 0
    while i < 8:
        if words[i] == "0":
            j = i
            while j < 8 and words[j] == "0":
                j += 1
            if j - i > best_len:
                best, best_len = i, j - i
            i = j
        else:
            i += 1
    if best < 0:
        return ":".join(words)
    return ":".join(words[:best]) + "::" + ":".join(words[best + best_len:])


def ipv6_from_bytes(raw):
    """16 bytes off the wire -> normalised text."""
    n = 0
    for b in raw:
        n = (n << 8) | b
    return format_ipv6(n)


def parse_ip(value):
    """Normalised text of an IPv4 or IPv6 address, or ValueError."""
    if ":" in value:
        return format_ipv6(parse_ipv6(value))
    n = parse_ipv4(value)
    return "%d.%d.%d.%d" % (n >> 24, (n >> 16) & 255, (n >> 8) & 255, n & 255)


def parse_remote(value):
    """An address or a CIDR prefix, normalised: '203.0.113.0/24'."""
    if "/" not in value:
        return parse_ip(value)
    addr, _, bits = value.partition("/")
    ip = parse_ip(addr)
    limit = 128 if ":" in ip else 32
    if not bits.isdigit() or int(bits) > limit:
        raise ValueError("bad prefix length")
    return ip + "/" + str(int(bits))
