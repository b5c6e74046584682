"""DNS answers seen on the LAN -> which name a device asked for each address.

Theory of operation. The agent opens one AF_PACKET socket on the LAN
interface (br-lan) and attaches a classic BPF program (FILTER below) so
that the kernel hands Python only UDP packets from source port 53: the
answers of the router's own resolver and of any resolver on the internet a
device asks directly, since both are sent out through br-lan on their way
to the device. Everything else (the device's traffic, queries, ARP) is
dropped in the kernel and costs no Python.

`parse(packet, counts)` is pure: an IP packet (IPv4 or IPv6, from the IP
header on) in, a list of (client, address, name, ttl) out, where `name` is
the question the device asked and `address` an A or AAAA record reached
from it through the CNAME chain in the answer section (SPIN gave every
address the question's name but ignored the chain, so it also named
unrelated records; it fixed the TTL at 1234 s). The TTL is the smallest
along the chain: the device forgets the mapping when its first link ends.

Hostile or broken input is counted in `counts` (a dict the caller keeps)
and skipped, never raised: a name longer than 255 bytes, a reserved label
type, a compression pointer out of the message or not pointing strictly
before where the name being read started (that rule makes loops
impossible: every jump goes further back), a record cut short, fewer
records than the header's counts. Records parsed before the fault are
kept, so a truncated (TC) or fragmented answer still names what it holds.

Not handled (as in SPIN): DNS over TCP, DoT/DoH (encrypted: nothing to
read), IPv6 answers behind extension headers, later IPv4 fragments.
"""

import struct
import sys

from . import addr, plat

SNAPLEN = 4096  # bytes of each packet the kernel copies to us
ETH_P_ALL = 0x0003
SOCK_DGRAM = 2  # packets from the network header on, whatever the link layer

# -- the BPF program ------------------------------------------------------
# With SOCK_DGRAM the program sees the packet from the IP header on. A row
# is (label, instruction, k, jump if true, jump if false); a jump target
# of None means the next row. `program()` turns the rows into the kernel's
# struct sock_filter {u16 code; u8 jt; u8 jf; u32 k}.
FILTER = (
    ("", "ldb [k]", 0, None, None),            # version (high nibble) and IHL
    ("", "and #k", 0xF0, None, None),          # keep the version
    ("", "jeq #k", 0x40, None, "ip6"),         # IPv4?
    ("", "ldb [k]", 9, None, None),            # IPv4 protocol field
    ("", "jeq #k", 17, None, "drop"),          # UDP?
    ("", "ldh [k]", 6, None, None),            # flags and fragment offset
    ("", "jset #k", 0x1FFF, "drop", None),     # a later fragment has no UDP header
    ("", "ldxb 4*([k]&0xf)", 0, None, None),   # X = IPv4 header length
    ("", "ldh [x+k]", 0, None, None),          # UDP source port
    ("", "jeq #k", 53, "keep", "drop"),        # from a DNS server?
    ("ip6", "jeq #k", 0x60, None, "drop"),     # A still holds the version: IPv6?
    ("", "ldb [k]", 6, None, None),            # next header of the fixed header
    ("", "jeq #k", 17, None, "drop"),          # UDP right after it?
    ("", "ldh [k]", 40, None, None),           # UDP source port
    ("", "jeq #k", 53, "keep", "drop"),        # from a DNS server?
    ("keep", "ret #k", SNAPLEN, None, None),   # deliver up to SNAPLEN bytes
    ("drop", "ret #k", 0, None, None),         # deliver nothing
)

# classic BPF opcodes (linux/filter.h: class | size | mode)
OPCODES = {
    "ldb [k]": 0x30,            # BPF_LD | BPF_B | BPF_ABS
    "ldh [k]": 0x28,            # BPF_LD | BPF_H | BPF_ABS
    "ldh [x+k]": 0x48,          # BPF_LD | BPF_H | BPF_IND
    "ldxb 4*([k]&0xf)": 0xB1,   # BPF_LDX | BPF_B | BPF_MSH
    "and #k": 0x54,             # BPF_ALU | BPF_AND | BPF_K
    "jeq #k": 0x15,             # BPF_JMP | BPF_JEQ | BPF_K
    "jset #k": 0x45,            # BPF_JMP | BPF_JSET | BPF_K
    "ret #k": 0x06,             # BPF_RET | BPF_K
}


def program(rows=FILTER):
    """The filter as bytes, 8 per instruction, in the machine's byte order."""
    where = {}
    for i, row in enumerate(rows):
        if row[0]:
            where[row[0]] = i
    out = b""
    for i, (_, op, k, jt, jf) in enumerate(rows):
        # jumps are counted from the instruction after this one
        t = where[jt] - i - 1 if jt else 0
        f = where[jf] - i - 1 if jf else 0
        out += struct.pack("HBBI", OPCODES[op], t, f, k)
    return out


# -- parsing --------------------------------------------------------------

class Malformed(Exception):
    pass


# bytes of a label shown as they are; anything else as \DDD like dig does
_PLAIN = b"abcdefghijklmnopqrstuvwxyz0123456789-_*"

TYPE_A = 1
TYPE_CNAME = 5
TYPE_AAAA = 28
CLASS_IN = 1
MAX_CHAIN = 16  # CNAME hops followed from the question


def _count(counts, key):
    counts[key] = counts.get(key, 0) + 1


def _label(raw):
    raw = raw.lower()
    for c in raw:
        if c not in _PLAIN:
            return "".join(chr(c) if c in _PLAIN else "\\%03d" % c for c in raw)
    return raw.decode()


def _name(msg, pos):
    """Read a (possibly compressed) name at pos -> (text, position after it)."""
    n = len(msg)
    labels = []
    end = -1
    limit = pos  # a pointer must land strictly before this
    total = 1
    while True:
        if pos >= n:
            raise Malformed("truncated")
        b = msg[pos]
        if b == 0:
            break
        kind = b & 0xC0
        if kind == 0xC0:
            if pos + 1 >= n:
                raise Malformed("truncated")
            ptr = ((b & 0x3F) << 8) | msg[pos + 1]
            if end < 0:
                end = pos + 2
            if ptr >= n:
                raise Malformed("bad_pointer")
            if ptr >= limit:
                raise Malformed("loop")
            pos = limit = ptr
            continue
        if kind:
            raise Malformed("bad_label")
        total += b + 1
        if total > 255:
            raise Malformed("too_long")
        if pos + 1 + b > n:
            raise Malformed("truncated")
        labels.append(_label(msg[pos + 1:pos + 1 + b]))
        pos += 1 + b
    if end < 0:
        end = pos + 1
    return ".".join(labels), end


def ip4_text(b):
    return "%d.%d.%d.%d" % (b[0], b[1], b[2], b[3])


def parse_dns(msg, counts):
    """A DNS response message -> [(address, asked name, ttl)]."""
    n = len(msg)
    if n < 12:
        raise Malformed("truncated")
    _, flags, qd, an = struct.unpack_from(">HHHH", msg, 0)
    if not flags & 0x8000:
        _count(counts, "not_response")
        return []
    if (flags >> 11) & 15 or flags & 15:
        return []  # not a standard query, or an error (NXDOMAIN ...): nothing to learn
    if qd != 1:
        # every resolver sends back exactly the one question it was asked
        raise Malformed("bad_count")
    qname, pos = _name(msg, 12)
    pos += 4
    if pos > n:
        raise Malformed("truncated")
    cnames = {}  # owner -> (target, ttl)
    addrs = []   # (owner, address, ttl)
    fault = None
    try:
        for _ in range(an):
            if pos >= n:
                raise Malformed("bad_count")
            owner, pos = _name(msg, pos)
            if pos + 10 > n:
                raise Malformed("truncated")
            rtype, rclass, ttl, rdlen = struct.unpack_from(">HHIH", msg, pos)
            pos += 10
            if pos + rdlen > n:
                raise Malformed("truncated")
            if ttl & 0x80000000:
                ttl = 0  # RFC 2181 §8: a TTL with the top bit set means zero
            if rclass == CLASS_IN:
                if rtype == TYPE_A and rdlen == 4:
                    addrs.append((owner, ip4_text(msg[pos:pos + 4]), ttl))
                elif rtype == TYPE_AAAA and rdlen == 16:
                    addrs.append((owner, addr.ipv6_from_bytes(msg[pos:pos + 16]), ttl))
                elif rtype in (TYPE_A, TYPE_AAAA):
                    _count(counts, "bad_rdata")
                elif rtype == TYPE_CNAME:
                    target, after = _name(msg, pos)
                    if after != pos + rdlen:
                        _count(counts, "bad_rdata")
                    elif owner not in cnames:
                        cnames[owner] = (target, ttl)
            pos += rdlen
    except Malformed as e:
        fault = e
    # walk the chain from the question; the TTL is the smallest on the way
    chain = {qname: None}
    name = qname
    for _ in range(MAX_CHAIN):
        link = cnames.get(name)
        if link is None:
            break
        target, ttl = link
        if target in chain:
            _count(counts, "cname_loop")
            break
        prev = chain[name]
        chain[target] = ttl if prev is None or ttl < prev else prev
        name = target
    out = []
    for owner, ip_text, ttl in addrs:
        if owner not in chain:
            _count(counts, "unrelated")
            continue
        cap = chain[owner]
        out.append((ip_text, qname, ttl if cap is None or ttl < cap else cap))
    if fault is not None:
        _count(counts, "malformed")
        _count(counts, fault.args[0])
    return out


def parse(packet, counts):
    """An IP packet carrying a UDP DNS response -> [(client, address, name,
    ttl)]; [] for anything else, with the reason counted. Never raises for
    any bytes."""
    _count(counts, "packets")
    try:
        n = len(packet)
        if n < 1:
            raise Malformed("truncated")
        version = packet[0] >> 4
        if version == 4:
            udp = (packet[0] & 15) * 4
            if udp < 20 or n < udp + 8:
                raise Malformed("truncated")
            if packet[9] != 17:
                raise Malformed("not_udp")
            client = ip4_text(packet[16:20])
        elif version == 6:
            udp = 40
            if n < udp + 8:
                raise Malformed("truncated")
            if packet[6] != 17:
                raise Malformed("not_udp")
            client = addr.ipv6_from_bytes(packet[24:40])
        else:
            raise Malformed("not_ip")
        if packet[udp] != 0 or packet[udp + 1] != 53:
            raise Malformed("not_dns")
        length = (packet[udp + 4] << 8) | packet[udp + 5]
        if length < 8:
            raise Malformed("bad_udp")
        # a first fragment holds less than the UDP length says: read what is here
        end = udp + length if udp + length <= n else n
        answers = parse_dns(packet[udp + 8:end], counts)
    except Malformed as e:
        _count(counts, "malformed")
        _count(counts, e.args[0])
        return []
    except Exception as e:  # a parser bug must cost one packet, not the agent
        _count(counts, "malformed")
        _count(counts, "parser_error")
        sys.stderr.write("spin: dns parser error: %s: %s\n" % (type(e).__name__, e))
        return []
    if answers:
        counts["answers"] = counts.get("answers", 0) + len(answers)
    return [(client, ip_text, name, ttl) for ip_text, name, ttl in answers]


# -- the socket, as an agent part ------------------------------------------

def open_socket(ifname):
    """A non-blocking AF_PACKET socket on ifname that receives only DNS
    responses. Raises OSError (ENODEV for a missing interface)."""
    import socket
    # protocol 0: the socket receives nothing until bound, so no packet
    # reaches it before the filter is in place
    sock = socket.socket(plat.AF_PACKET, SOCK_DGRAM, 0)
    try:
        plat.attach_filter(sock, program())
        sock.bind(plat.packet_address(ifname, ETH_P_ALL))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


EAGAIN = 11
BATCH = 64  # packets read per wake-up, so a DNS flood cannot starve the loop


class DnsSnoop:
    """Agent part: reads DNS answers into an Endpoints table."""

    def __init__(self, endpoints):
        self.endpoints = endpoints
        self.counts = {}
        self.sock = None
        self.ifname = None
        self.state = "off"
        self.last_expire = 0
        self.last_try = 0
        self.ifindex = None
        self.agent = None

    def start(self, agent):
        if not agent.cfg.get("dns_snoop", True):
            self.state = "off"
            return
        self.ifname = agent.cfg["lan_ifname"]
        try:
            self.sock = open_socket(self.ifname)
        except OSError as e:
            if self.state != "error: %s: %s" % (self.ifname, e):
                sys.stderr.write("spin: dns names off: cannot read %s: %s\n" % (self.ifname, e))
            self.state = "error: %s: %s" % (self.ifname, e)
            self.sock = None
            return
        self.state = "on"
        self.ifindex = plat.read_file("/sys/class/net/%s/ifindex" % self.ifname)
        self.agent = agent
        agent.loop.add_reader(self.sock, self.readable)

    def readable(self, *_):
        now = plat.monotonic_ms() // 1000
        learn = self.endpoints.learn
        for _ in range(BATCH):
            try:
                packet = self.sock.recv(SNAPLEN)
            except OSError as e:
                if e.errno != EAGAIN:
                    # the interface went away (ENETDOWN): close, retry from after_scan
                    sys.stderr.write("spin: dns socket on %s: %s\n" % (self.ifname, e))
                    self.stop(self.agent)
                    self.state = "error: %s: %s" % (self.ifname, e)
                return
            for _, ip_text, name, ttl in parse(packet, self.counts):
                learn(ip_text, name, ttl, now)

    def after_scan(self, agent, now_ms):
        now = now_ms // 1000
        if now - self.last_try >= 30:
            self.last_try = now
            if self.sock is None and self.state.startswith("error"):
                # the LAN bridge may come up after the agent (boot, network restart)
                self.start(agent)
            elif self.sock is not None and self.ifindex != plat.read_file(
                    "/sys/class/net/%s/ifindex" % self.ifname):
                # the bridge was made anew: a packet socket stays bound to the old one
                self.stop(agent)
                self.start(agent)
        if now - self.last_expire >= 60:
            self.last_expire = now
            self.endpoints.expire(now)

    def reload(self, agent):
        if (agent.cfg["lan_ifname"] != self.ifname
                or bool(agent.cfg.get("dns_snoop", True)) != (self.sock is not None)):
            self.stop(agent)
            self.start(agent)

    def stop(self, agent):
        if self.sock is not None:
            agent.loop.remove_reader(self.sock)
            self.sock.close()
            self.sock = None
        self.state = "off"

    def status(self):
        st = {"dns": self.state, "dns_packets": self.counts.get("packets", 0),
              "dns_answers": self.counts.get("answers", 0),
              "dns_malformed": self.counts.get("malformed", 0),
              "dns_counts": dict(self.counts)}
        st.update(self.endpoints.status())
        return st
