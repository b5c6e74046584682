"""DNS answers seen on the LAN -> which name a device asked for each address.

Theory of operation. The agent opens one AF_PACKET socket on the LAN
interface (br-lan) and attaches a classic BPF program (FILTER below) so
that the kernel hands Python only what can carry a DNS answer: UDP and TCP
from source port 53 (the answers of the router's own resolver and of any
resolver on the internet a device asks directly, since both are sent out
through br-lan on their way to the device), and IP fragments, whose later
pieces carry no ports. Everything else (the device's traffic, queries,
ARP) is dropped in the kernel and costs no Python.

`Reader.feed(packet, now, ethertype)` takes one IP packet (from the IP
header on) and returns a list of (client, address, name, ttl), where
`name` is the question the device asked and `address` an A or AAAA record
reached from it through the CNAME chain in the answer section (SPIN gave
every address the question's name but ignored the chain, so it also named
unrelated records; it fixed the TTL at 1234 s). The TTL is the smallest
along the chain: the device forgets the mapping when its first link ends.
The reader keeps, bounded in number, bytes and time:

* IPv4 and IPv6 fragments of UDP datagrams, until the datagram is whole
  (an answer larger than the MTU over UDP, with EDNS); overlapping
  fragments drop the whole datagram (RFC 5722), a datagram whose first
  fragment is not from port 53 is dropped with everything of it;
* TCP streams from port 53 whose SYN-ACK it saw (the answers a truncated
  UDP answer sends the resolver back for): bytes in sequence order, the
  2-byte length prefix, several messages in one segment and one message
  across segments; a gap in the sequence drops the stream.

Strict and all or nothing: the IPv4 header's length and checksum, the IPv6
payload length, the UDP length, the IP version against the frame's
ethertype are checked and bytes past the IP length are ignored; a DNS
message with any fault maps nothing (records before the fault included),
and neither does a truncated (TC) one: its whole answer comes over TCP.
Faults are counted in `counts` and skipped, never raised: a name longer
than 255 bytes, a reserved label type, a compression pointer out of the
message or not pointing strictly before where the name being read started
(that rule makes loops impossible: every jump goes further back), a record
cut short, a record whose data length does not fit its type, fewer
records than the header's counts (the authority and additional sections
are walked for that, though they map nothing), bytes after the last
record. Transport checksums are not checked:
the router's own answers are captured before the network card (or veth)
fills them in.

Names are written in the presentation format (RFC 1035 §5.1, as dig
writes them), lowercased: `.` `\\` `"` `(` `)` `;` inside a label behind a
backslash, bytes outside printable ASCII as \\DDD, the root as `.`.

Not handled: DoT/DoH (encrypted: nothing to read), IPv6 answers behind
extension headers other than a fragment header (the filter drops them).
"""

import struct
import sys

from . import addr, plat

# bytes of each packet the kernel copies to us: a whole IP packet, since
# the router's own TCP answers are captured before segmentation (one
# packet of up to 64 KB) and a reassembled answer may be as large
SNAPLEN = 65535
ETH_P_ALL = 0x0003
SOCK_DGRAM = 2  # packets from the network header on, whatever the link layer
ETHERTYPES = {0x0800: 4, 0x86DD: 6}

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
    ("", "jeq #k", 17, None, "tcp4"),          # UDP?
    ("", "ldh [k]", 6, None, None),            # flags and fragment offset
    ("", "jset #k", 0x1FFF, "keep", "port4"),  # a later fragment: no ports to see, Python decides
    ("tcp4", "jeq #k", 6, None, "drop"),       # TCP? (A still holds the protocol)
    ("", "ldh [k]", 6, None, None),
    ("", "jset #k", 0x1FFF, "drop", None),     # a later fragment of TCP: never DNS's
    ("port4", "ldxb 4*([k]&0xf)", 0, None, None),  # X = IPv4 header length
    ("", "ldh [x+k]", 0, None, None),          # UDP or TCP source port
    ("", "jeq #k", 53, "keep", "drop"),        # from a DNS server?
    ("ip6", "jeq #k", 0x60, None, "drop"),     # A still holds the version: IPv6?
    ("", "ldb [k]", 6, None, None),            # next header of the fixed header
    ("", "jeq #k", 44, "keep", None),          # a fragment header: Python reassembles
    ("", "jeq #k", 17, "port6", None),         # UDP right after it?
    ("", "jeq #k", 6, None, "drop"),           # or TCP?
    ("port6", "ldh [k]", 40, None, None),      # source port
    ("", "jeq #k", 53, "keep", "drop"),        # from a DNS server?
    ("keep", "ret #k", SNAPLEN, None, None),   # deliver up to SNAPLEN bytes
    ("drop", "ret #k", 0, None, None),         # deliver nothing
)

# classic BPF opcodes (linux/filter.h: class | size | mode)
OPCODES = {
    "ldb [k]": 0x30,            # BPF_LD | BPF_B | BPF_ABS
    "ld [k]": 0x20,             # BPF_LD | BPF_W | BPF_ABS (the capture's MAC filter)
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


# -- DNS messages -----------------------------------------------------------

class Malformed(Exception):
    pass


# printable ASCII that dig writes inside a label behind a backslash; the
# rest of 0x21..0x7e as it is, anything else as \DDD
_SPECIAL = b'."();\\'

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
        if c <= 0x20 or c >= 0x7F or c in _SPECIAL:
            break
    else:
        return raw.decode()
    out = []
    for c in raw:
        if c <= 0x20 or c >= 0x7F:
            out.append("\\%03d" % c)
        elif c in _SPECIAL:
            out.append("\\" + chr(c))
        else:
            out.append(chr(c))
    return "".join(out)


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
    return (".".join(labels) if labels else "."), end


def ip4_text(b):
    return "%d.%d.%d.%d" % (b[0], b[1], b[2], b[3])


def parse_dns(msg, counts):
    """A DNS response message -> [(address, asked name, ttl)]; raises
    Malformed for any fault, so a broken message maps nothing."""
    n = len(msg)
    if n < 12:
        raise Malformed("truncated")
    _, flags, qd, an, ns, ar = struct.unpack_from(">HHHHHH", msg, 0)
    if not flags & 0x8000:
        _count(counts, "not_response")
        return []
    if (flags >> 11) & 15 or flags & 15:
        return []  # not a standard query, or an error (NXDOMAIN ...): nothing to learn
    if flags & 0x0200:
        _count(counts, "truncated_answer")  # TC: the whole answer comes over TCP
        return []
    if qd != 1:
        # every resolver sends back exactly the one question it was asked
        raise Malformed("bad_count")
    qname, pos = _name(msg, 12)
    pos += 4
    if pos > n:
        raise Malformed("truncated")
    cnames = {}  # owner -> (target, ttl)
    addrs = []   # (owner, address, ttl)
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
            if rtype == TYPE_A:
                if rdlen != 4:
                    raise Malformed("bad_rdata")
                addrs.append((owner, ip4_text(msg[pos:pos + 4]), ttl))
            elif rtype == TYPE_AAAA:
                if rdlen != 16:
                    raise Malformed("bad_rdata")
                addrs.append((owner, addr.ipv6_from_bytes(msg[pos:pos + 16]), ttl))
            elif rtype == TYPE_CNAME:
                target, after = _name(msg, pos)
                if after != pos + rdlen:
                    raise Malformed("bad_rdata")
                if owner not in cnames:
                    cnames[owner] = (target, ttl)
        pos += rdlen
    # the authority and additional sections map nothing (glue, an MX's
    # host), but a message is whole only when every record the header
    # counts is there and nothing follows the last one: a message cut or
    # padded there is not what the server sent
    for _ in range(ns + ar):
        if pos >= n:
            raise Malformed("bad_count")
        _, pos = _name(msg, pos)
        if pos + 10 > n:
            raise Malformed("truncated")
        pos += 10 + ((msg[pos + 8] << 8) | msg[pos + 9])
        if pos > n:
            raise Malformed("truncated")
    if pos != n:
        raise Malformed("trailing")
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
    return out


# -- packets: IP, fragments, UDP and TCP ----------------------------------

def _ip4_header_ok(p, ihl):
    s = 0
    for i in range(0, ihl, 2):
        s += (p[i] << 8) | p[i + 1]
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s == 0xFFFF


FRAG_SECONDS = 30     # as the kernel's ipfrag_time
STREAM_SECONDS = 60   # a TCP answer stream with nothing new for this long goes
MASK32 = 0xFFFFFFFF


class Reader:
    """Packets in, (client, address, name, ttl) out; holds the fragments
    and TCP streams still incomplete, at most `datagrams` and `streams` of
    them and `max_bytes` bytes together (the oldest goes first, counted)."""

    def __init__(self, counts=None, datagrams=16, streams=32, max_bytes=262144):
        self.counts = counts if counts is not None else {}
        self.datagrams = datagrams
        self.max_streams = streams
        self.max_bytes = max_bytes
        self.frags = {}    # key -> [first seen, end or -1 (-2: not DNS), [(offset, bytes)]]
        self.streams = {}  # (server, client, client port) -> [last seen, next seq, bytearray]
        self.held = 0

    def feed(self, packet, now, ethertype=None):
        counts = self.counts
        _count(counts, "packets")
        try:
            out = self._packet(packet, now, ethertype)
        except Malformed as e:
            _count(counts, "malformed")
            _count(counts, e.args[0])
            return []
        except Exception as e:  # a parser bug must cost one packet, not the agent
            _count(counts, "malformed")
            _count(counts, "parser_error")
            sys.stderr.write("spin: dns parser error: %s: %s\n" % (type(e).__name__, e))
            return []
        if out:
            counts["answers"] = counts.get("answers", 0) + len(out)
        return out

    def _packet(self, p, now, ethertype):
        n = len(p)
        if n < 1:
            raise Malformed("truncated")
        version = p[0] >> 4
        if ethertype is not None and ETHERTYPES.get(ethertype) != version:
            raise Malformed("version_mismatch")
        if version == 4:
            return self._ip4(p, n, now)
        if version == 6:
            return self._ip6(p, n, now)
        raise Malformed("not_ip")

    def _ip4(self, p, n, now):
        if n < 20:
            raise Malformed("truncated")
        ihl = (p[0] & 15) * 4
        total = (p[2] << 8) | p[3]
        if ihl < 20 or total < ihl:
            raise Malformed("bad_ip_length")
        if total > n:
            raise Malformed("truncated")
        if not _ip4_header_ok(p, ihl):
            raise Malformed("bad_checksum")
        proto = p[9]
        server, client = ip4_text(p[12:16]), ip4_text(p[16:20])
        fo = (p[6] << 8) | p[7]
        payload = p[ihl:total]  # what lies past the IP length is not the packet's
        if fo & 0x3FFF:
            if proto != 17:
                raise Malformed("not_udp")
            payload = self._fragment((4, server, client, p[4:6]), (fo & 0x1FFF) * 8, fo & 0x2000,
                                     payload, now)
            if payload is None:
                return []
        return self._transport(proto, server, client, payload, now)

    def _ip6(self, p, n, now):
        if n < 40:
            raise Malformed("truncated")
        end = 40 + ((p[4] << 8) | p[5])
        if end > n:
            raise Malformed("truncated")
        nh = p[6]
        server, client = addr.ipv6_from_bytes(p[8:24]), addr.ipv6_from_bytes(p[24:40])
        if nh == 44:
            if end < 48:
                raise Malformed("truncated")
            nh = p[40]
            fo = (p[42] << 8) | p[43]
            if nh != 17:
                raise Malformed("not_udp")
            payload = p[48:end]
            if fo & 0xFFF9:  # an offset or more to come: not an atomic fragment
                payload = self._fragment((6, server, client, p[44:48]), fo & 0xFFF8, fo & 1, payload, now)
                if payload is None:
                    return []
            return self._transport(nh, server, client, payload, now)
        return self._transport(nh, server, client, p[40:end], now)

    def _transport(self, proto, server, client, payload, now):
        if proto == 17:
            return self._udp(client, payload)
        if proto == 6:
            return self._tcp(server, client, payload, now)
        raise Malformed("not_udp")

    def _udp(self, client, u):
        if len(u) < 8:
            raise Malformed("truncated")
        if u[0] != 0 or u[1] != 53:
            raise Malformed("not_dns")
        length = (u[4] << 8) | u[5]
        if length < 8:
            raise Malformed("bad_udp")
        if length > len(u):
            raise Malformed("truncated")
        return [(client, ip_text, name, ttl) for ip_text, name, ttl in parse_dns(u[8:length], self.counts)]

    # -- fragments --------------------------------------------------------

    def _fragment(self, key, offset, more, data, now):
        """Keep one fragment; the whole datagram's payload once every piece
        is in, else None."""
        self._expire(now)
        d = self.frags.get(key)
        if d is None:
            while len(self.frags) >= self.datagrams:
                self._drop_oldest_datagram()
            d = self.frags[key] = [now, -1, []]
        if d[1] == -2:
            return None  # its first fragment was not DNS
        if offset == 0 and (len(data) < 2 or data[0] != 0 or data[1] != 53):
            self._drop_datagram(key, None)
            self.frags[key] = [now, -2, []]
            return None
        last = offset + len(data)
        if (more and len(data) % 8) or last > 65535:
            self._drop_datagram(key, "bad_fragment")
            return None
        if not more:
            if d[1] >= 0 and d[1] != last:
                self._drop_datagram(key, "overlap")
                return None
            d[1] = last
        for o, b in d[2]:
            if offset < o + len(b) and o < last:
                self._drop_datagram(key, "overlap")
                return None
        while self.held + len(data) > self.max_bytes and (self.frags or self.streams):
            if not self._drop_oldest_datagram() and not self._drop_oldest_stream():
                break
        d = self.frags.get(key)
        if d is None or self.held + len(data) > self.max_bytes:
            self.frags.pop(key, None)
            _count(self.counts, "fragments_dropped")
            return None
        d[2].append((offset, data))
        self.held += len(data)
        if d[1] < 0:
            return None
        pieces = sorted(d[2], key=lambda ob: ob[0])
        at = 0
        for o, b in pieces:
            if o != at:
                return None  # a hole still
            at += len(b)
        if at != d[1]:
            return None
        del self.frags[key]
        self.held -= at
        _count(self.counts, "reassembled")
        return b"".join([b for _, b in pieces])

    def _drop_datagram(self, key, why):
        d = self.frags.pop(key, None)
        if d is not None:
            for _, b in d[2]:
                self.held -= len(b)
        if why:
            _count(self.counts, why)
            if why in ("overlap", "bad_fragment"):
                # what comes later of it is let go too, until it is stale
                self.frags[key] = [d[0] if d else 0, -2, []]

    def _drop_oldest_datagram(self):
        if not self.frags:
            return False
        oldest = None
        for k, d in self.frags.items():
            if oldest is None or d[0] < self.frags[oldest][0]:
                oldest = k
        self._drop_datagram(oldest, "fragments_dropped" if self.frags[oldest][1] != -2 else None)
        return True

    def _expire(self, now):
        for k in [k for k, d in self.frags.items() if now - d[0] > FRAG_SECONDS]:
            self._drop_datagram(k, "fragments_expired" if self.frags[k][1] != -2 else None)
        for k in [k for k, s in self.streams.items() if now - s[0] > STREAM_SECONDS]:
            self._close(k)

    # -- TCP streams --------------------------------------------------------

    def _tcp(self, server, client, seg, now):
        if len(seg) < 20:
            raise Malformed("truncated")
        if seg[0] != 0 or seg[1] != 53:
            raise Malformed("not_dns")
        key = (server, client, (seg[2] << 8) | seg[3])
        seq = (seg[4] << 24) | (seg[5] << 16) | (seg[6] << 8) | seg[7]
        hl = (seg[12] >> 4) * 4
        flags = seg[13]
        if hl < 20 or hl > len(seg):
            raise Malformed("bad_tcp")
        if flags & 4:  # RST
            self._close(key)
            return []
        if flags & 2:  # the server's SYN-ACK: the stream's bytes start after it
            self._expire(now)
            self._close(key)
            while len(self.streams) >= self.max_streams:
                self._drop_oldest_stream()
            self.streams[key] = [now, (seq + 1) & MASK32, bytearray()]
            return []
        s = self.streams.get(key)
        data = seg[hl:]
        if s is None:
            if data:
                _count(self.counts, "tcp_midstream")
            return []
        out = []
        if data:
            ahead = (seq - s[1]) & MASK32
            if ahead >= 0x80000000:  # sent again: keep only what is new
                data = data[(s[1] - seq) & MASK32:]
            elif ahead:
                _count(self.counts, "tcp_gap")
                self._close(key)
                return []
        if data:
            if len(s[2]) + len(data) > 65537 or self.held + len(data) > self.max_bytes:
                _count(self.counts, "tcp_too_big")
                self._close(key)
                return []
            s[0] = now
            s[1] = (s[1] + len(data)) & MASK32
            s[2].extend(data)
            self.held += len(data)
            out = self._messages(s, client)
        if flags & 1:  # FIN
            self._close(key)
        return out

    def _messages(self, s, client):
        """The whole messages at the front of a stream's bytes."""
        buf = s[2]
        out = []
        while len(buf) >= 2:
            length = (buf[0] << 8) | buf[1]
            if len(buf) < 2 + length:
                break
            msg = bytes(buf[2:2 + length])
            buf[:2 + length] = b""
            self.held -= 2 + length
            _count(self.counts, "tcp_messages")
            try:
                for ip_text, name, ttl in parse_dns(msg, self.counts):
                    out.append((client, ip_text, name, ttl))
            except Malformed as e:  # this message maps nothing; the next one starts where it ends
                _count(self.counts, "malformed")
                _count(self.counts, e.args[0])
        return out

    def _close(self, key):
        s = self.streams.pop(key, None)
        if s is not None:
            self.held -= len(s[2])

    def _drop_oldest_stream(self):
        if not self.streams:
            return False
        oldest = None
        for k, s in self.streams.items():
            if oldest is None or s[0] < self.streams[oldest][0]:
                oldest = k
        self._close(oldest)
        _count(self.counts, "streams_dropped")
        return True


def parse(packet, counts):
    """One packet on its own (no fragments or streams kept) -> [(client,
    address, name, ttl)]; [] for anything else, with the reason counted.
    Never raises for any bytes."""
    return Reader(counts).feed(packet, 0)


# -- the socket, as an agent part ------------------------------------------

def open_socket(ifname):
    """A non-blocking AF_PACKET socket on ifname that receives only DNS
    responses. Raises OSError (ENODEV for a missing interface)."""
    socket = plat.sockets()
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
        self.reader = Reader(self.counts)
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
                packet, ethertype = plat.packet_recv(self.sock, SNAPLEN)
            except OSError as e:
                if e.errno != EAGAIN:
                    # the interface went away (ENETDOWN): close, retry from after_scan
                    sys.stderr.write("spin: dns socket on %s: %s\n" % (self.ifname, e))
                    self.stop(self.agent)
                    self.state = "error: %s: %s" % (self.ifname, e)
                return
            for _, ip_text, name, ttl in self.reader.feed(packet, now, ethertype):
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
              "dns_counts": dict(self.counts),
              # incomplete answers held: IP fragments, TCP streams, their bytes
              "dns_pending": {"datagrams": len(self.reader.frags), "streams": len(self.reader.streams),
                              "bytes": self.reader.held}}
        st.update(self.endpoints.status())
        return st
