"""Neighbours and addresses: which MAC has which IP, which IPs are ours.

IPv4 neighbours come from /proc/net/arp; IPv6 neighbours and every
interface address from one rtnetlink dump each (a few lines of raw
netlink with the stdlib: pyroute2 would cost ~18 MB of RSS).

    nlmsghdr  u32 len | u16 type | u16 flags | u32 seq | u32 pid
    ndmsg     u8 family | u8 pad | u16 pad | s32 ifindex | u16 state | u8 flags | u8 type
    ifaddrmsg u8 family | u8 prefixlen | u8 flags | u8 scope | u32 ifindex
    rtattr    u16 len | u16 type | data, padded to 4
"""

import struct

from . import addr, plat

socket = plat.sockets()  # socket's names without `import socket` (plat.sockets)

RTM_NEWADDR = 20
RTM_GETADDR = 22
RTM_NEWNEIGH = 28
RTM_GETNEIGH = 30
NLMSG_DONE = 3
NLMSG_ERROR = 2
NLM_F_REQUEST = 1
NLM_F_DUMP = 0x300
AF_INET = 2
AF_INET6 = 10

NDA_DST = 1
NDA_LLADDR = 2
IFA_ADDRESS = 1
IFA_LOCAL = 2

# neighbour states that say nothing about who has the address
NUD_USELESS = 0x01 | 0x20 | 0x40  # INCOMPLETE, FAILED, NOARP


def parse_arp(text, ifname=None):
    """/proc/net/arp -> {ip: mac}, complete entries only (flags 0x2)."""
    out = {}
    for line in text.split(b"\n")[1:]:
        t = line.split()
        if len(t) < 6 or t[2] == b"0x0" or t[3] == b"00:00:00:00:00:00":
            continue
        if ifname is not None and t[5].decode() != ifname:
            continue
        out[t[0].decode()] = t[3].decode().lower()
    return out


def _attrs(data, off, end):
    """rtattrs in data[off:end] -> {type: bytes}."""
    out = {}
    while off + 4 <= end:
        alen, atype = struct.unpack_from("HH", data, off)
        if alen < 4:
            break
        out[atype & 0x3FFF] = data[off + 4:off + alen]
        off += (alen + 3) & ~3
    return out


def _ip_text(family, raw):
    if family == AF_INET and len(raw) == 4:
        return "%d.%d.%d.%d" % (raw[0], raw[1], raw[2], raw[3])
    if family == AF_INET6 and len(raw) == 16:
        return addr.ipv6_from_bytes(raw)
    return None


def messages(data):
    """Split a netlink reply buffer -> [(type, payload offset, end)]."""
    off = 0
    out = []
    while off + 16 <= len(data):
        mlen, mtype = struct.unpack_from("IH", data, off)
        if mlen < 16 or off + mlen > len(data):
            break
        out.append((mtype, off + 16, off + mlen))
        off += (mlen + 3) & ~3
    return out


def parse_neigh(data, ifindex=None):
    """RTM_NEWNEIGH messages -> {ip: mac}."""
    out = {}
    for mtype, off, end in messages(data):
        if mtype != RTM_NEWNEIGH or end - off < 12:
            continue
        family, _, _, idx, state = struct.unpack_from("BBHiH", data, off)
        if state & NUD_USELESS or (ifindex is not None and idx != ifindex):
            continue
        a = _attrs(data, off + 12, end)
        ip = _ip_text(family, a.get(NDA_DST, b""))
        ll = a.get(NDA_LLADDR, b"")
        if ip and len(ll) == 6:
            out[ip] = ":".join("%02x" % b for b in ll)
    return out


def parse_addrs(data):
    """RTM_NEWADDR messages -> [(ifindex, ip, prefixlen)]."""
    out = []
    for mtype, off, end in messages(data):
        if mtype != RTM_NEWADDR or end - off < 8:
            continue
        family, plen, _, _, idx = struct.unpack_from("BBBBI", data, off)
        a = _attrs(data, off + 8, end)
        ip = _ip_text(family, a.get(IFA_LOCAL) or a.get(IFA_ADDRESS, b""))
        if ip:
            out.append((idx, ip, plen))
    return out


def dump(msg_type, family, body):
    """One rtnetlink dump request; returns all reply bytes until DONE."""
    s = socket.socket(plat.AF_NETLINK, socket.SOCK_RAW, 0)
    try:
        s.bind(plat.netlink_address())
        hdr = struct.pack("IHHII", 16 + len(body), msg_type, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
        s.send(hdr + body)
        chunks = []
        while True:
            data = s.recv(65536)
            done = False
            for mtype, off, end in messages(data):
                if mtype in (NLMSG_DONE, NLMSG_ERROR):
                    done = True
            chunks.append(data)
            if done or not data:
                break
        return b"".join(chunks)
    finally:
        s.close()


def ifindex(ifname):
    raw = plat.read_file("/sys/class/net/%s/ifindex" % ifname)
    return int(raw) if raw else None


def read_neighbours(arp_file, ifname):
    """{ip: mac} for IPv4 and IPv6 neighbours on the LAN interface."""
    out = parse_arp(plat.read_file(arp_file) or b"", ifname)
    idx = ifindex(ifname)
    try:
        out.update(parse_neigh(dump(RTM_GETNEIGH, AF_INET6,
                                    struct.pack("BBHiHBB", AF_INET6, 0, 0, 0, 0, 0, 0)), idx))
    except OSError as e:
        plat.warn_once("neigh", "IPv6 neighbour dump failed: %s" % e)
    return out


def read_addresses():
    """[(ifindex, ip, prefixlen)] of every address of this host."""
    return parse_addrs(dump(RTM_GETADDR, 0, struct.pack("BBBBI", 0, 0, 0, 0, 0)))


def lan_prefixes(addrs, idx):
    """CIDR prefixes of the LAN interface (link-local left out)."""
    out = []
    for i, ip, plen in addrs:
        if i != idx or ip.startswith("fe80:"):
            continue
        if ":" in ip:
            n = addr.parse_ipv6(ip) >> (128 - plen) << (128 - plen)
            out.append("%s/%d" % (addr.format_ipv6(n), plen))
        else:
            n = addr.parse_ipv4(ip) >> (32 - plen) << (32 - plen)
            out.append("%d.%d.%d.%d/%d" % (n >> 24, (n >> 16) & 255, (n >> 8) & 255, n & 255, plen))
    return out
