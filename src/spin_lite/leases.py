"""DHCP leases: dnsmasq's lease file (/tmp/dhcp.leases on OpenWrt).

One lease a line: expiry (epoch seconds, 0 = infinite), MAC, IP, hostname
('*' when the client sent none), client id. DHCPv6 leases start with a
`duid` line and have an IAID instead of a MAC; they are skipped.
"""

from . import plat


def parse(text):
    """Lease file bytes -> {mac: (ip, hostname or None)}."""
    out = {}
    for line in text.split(b"\n"):
        t = line.split()
        if len(t) < 4 or t[0] == b"duid":
            continue
        mac = t[1].decode("utf-8", "replace").lower()
        if len(mac) != 17 or mac.count(":") != 5:
            continue
        name = t[3].decode("utf-8", "replace")
        out[mac] = (t[2].decode(), None if name == "*" else name)
    return out


def read(path):
    return parse(plat.read_file(path) or b"")
