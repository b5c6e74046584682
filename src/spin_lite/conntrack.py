"""The conntrack source: /proc/net/nf_conntrack snapshots -> flows.

A line of the file looks like (one line, wrapped here):

    ipv4     2 tcp      6 117 ESTABLISHED src=192.168.8.100 dst=203.0.113.10
      sport=40000 dport=80 packets=6 bytes=400 [UNREPLIED] src=203.0.113.10
      dst=192.0.2.2 sport=80 dport=40000 packets=4 bytes=300 [ASSURED]
      mark=0 zone=0 use=2

family name and number, protocol name and number, seconds to live, a state
for tcp/sctp/dccp, the original tuple (as the first packet saw it), its
counters when nf_conntrack_acct is on, [UNREPLIED] while no answer came, the
reply tuple (as the answer will look, after NAT), its counters, then flags
and extras (mark, zone, secctx, labels, use...). IPv6 addresses are written
in full (%pI6), so they are normalised before anyone compares them.

Every flow is seen from the LAN device's side: when the original source is
a device, the device started it (out = original counters); when only the
reply source is a device, the flow came in through a port forward (out =
reply counters). Flows the router itself started, and flows that never
touch a device, are left out and counted.

`parse` turns a snapshot into Flow records (the `flows` API and the tests);
`Scanner` is the hot path of every scan: between scans it keeps a fixed
flow table in preallocated arrays (about 48 B a slot on both interpreters,
sized by max_flows), found by an integer hash of each line's protocol and
original tuple, checked by a second independent one; a slot holds a crc32
of the rest of the line, so an idle flow costs two slices, two checksums
and a probe, no text is kept, and only a line that changed is split and
converted to numbers (DESIGN.md §4 "Memory shapes").
"""

import binascii
import struct
from array import array

from . import addr

# tokens in one tuple, by protocol name; anything else is measured
TUPLE_LEN = {b"tcp": 4, b"udp": 4, b"udplite": 4, b"sctp": 4, b"dccp": 4,
             b"icmp": 5, b"icmpv6": 5, b"gre": 4, b"unknown": 2}

# protocols whose tuple has ports (the 3rd and 4th tokens)
PORTED = {b"tcp": 1, b"udp": 1, b"udplite": 1, b"sctp": 1, b"dccp": 1}

BAD = 0
LAN = 1
ROUTER = 2
OTHER = 3


class Entry:
    """One conntrack line split into its parts (raw tokens, not yet numbers)."""
    __slots__ = ("family", "proto", "state", "orig", "reply", "count_o", "count_r",
                 "unreplied", "assured", "extras")


def split_entry(t):
    """Token list of one line -> Entry, or None when the line is malformed."""
    n = len(t)
    if n < 7 or t[0] not in (b"ipv4", b"ipv6"):
        return None
    # a tcp/sctp/dccp state, or gre's "timeout=30, stream_timeout=180",
    # may stand before the original tuple
    s = 5
    state = None
    while s < n and t[s][:4] != b"src=":
        if s == 5 and b"=" not in t[s]:
            state = t[s]
        s += 1
    proto = t[2]
    width = TUPLE_LEN.get(proto)
    if width is None:
        width = _measure(t, s)
    end = s + width
    # a tuple is src= and dst= at least (an unfamiliar protocol's may measure 1)
    if width < 2 or end > n or t[s][:4] != b"src=" or t[s + 1][:4] != b"dst=":
        return None
    e = Entry()
    e.family = t[0]
    e.proto = proto
    e.state = state
    e.orig = t[s:end]
    k = end
    e.count_o = None
    if k < n and t[k][:8] == b"packets=":
        e.count_o = t[k:k + 2]
        k += 2
    e.unreplied = k < n and t[k] == b"[UNREPLIED]"
    if e.unreplied:
        k += 1
    if k + width > n or t[k][:4] != b"src=" or t[k + 1][:4] != b"dst=":
        return None
    e.reply = t[k:k + width]
    k += width
    e.count_r = None
    if e.count_o is not None:
        if k + 2 > n or t[k][:8] != b"packets=" or t[k + 1][:6] != b"bytes=":
            return None
        e.count_r = t[k:k + 2]
        k += 2
    e.assured = k < n and t[k] == b"[ASSURED]"
    e.extras = t[k + 1:] if e.assured else t[k:]
    return e


def _measure(t, s):
    """Tuple width of an unfamiliar protocol: up to the counters, a flag or
    the reply tuple's src=."""
    k = s + 1
    while k < len(t):
        w = t[k]
        if w[:4] == b"src=" or w[:8] == b"packets=" or w[:1] == b"[":
            break
        k += 1
    return k - s


def _value(tok):
    return tok[tok.find(b"=") + 1:]


def _num(tok):
    return int(tok[tok.find(b"=") + 1:])


def _port(tok):
    """A port token's number; ValueError for one no packet can carry."""
    n = int(tok[tok.find(b"=") + 1:])
    if not 0 <= n <= 65535:
        raise ValueError("bad port")
    return n


def _counter(tok):
    """A counter token's number: the kernel's are unsigned 64-bit."""
    n = int(tok[tok.find(b"=") + 1:])
    if not 0 <= n < 1 << 64:
        raise ValueError("bad counter")
    return n


def _ip(tok):
    """b'src=fd00:0000:...' -> normalised text address (the kernel writes
    IPv4 normalised already, but a token such as 192.168.08.5 must not
    become a second name of one device)."""
    return addr.parse_ip(_value(tok).decode())


class Lan:
    """Decides what an address is: a LAN device, the router, or other.

    Answers are cached by the raw token, so a scan of thousands of flows
    converts each distinct address once."""

    def __init__(self, prefixes, router_ips):
        self.nets = []
        for p in prefixes:
            ip_text, _, bits = p.partition("/")
            v6 = ":" in ip_text
            n = addr.parse_ipv6(ip_text) if v6 else addr.parse_ipv4(ip_text)
            width = 128 if v6 else 32
            bits = int(bits) if bits else width
            mask = ((1 << bits) - 1) << (width - bits)
            self.nets.append((v6, n & mask, mask))
        self.router = set(router_ips)
        self.cache = {}

    def kind(self, tok):
        """(kind, ip text) for a raw b'src=...' or b'dst=...' token."""
        hit = self.cache.get(tok)
        if hit is not None:
            return hit
        if len(self.cache) > 8192:
            self.cache = {}
        try:
            ip = _ip(tok)
            v6 = ":" in ip
            n = addr.parse_ipv6(ip) if v6 else addr.parse_ipv4(ip)
        except (ValueError, UnicodeError):
            return (BAD, None)
        if ip in self.router:
            hit = (ROUTER, ip)
        else:
            hit = (OTHER, ip)
            for nv6, net, mask in self.nets:
                if nv6 == v6 and n & mask == net:
                    hit = (LAN, ip)
                    break
        self.cache[tok] = hit
        return hit


class Flow:
    """A flow seen from the device: who, to whom, how much each way."""
    __slots__ = ("proto", "device_ip", "device_port", "remote", "remote_port",
                 "bytes_out", "bytes_in", "packets_out", "packets_in", "state",
                 "replied", "inbound")

    def as_dict(self):
        return {"proto": self.proto, "device_ip": self.device_ip,
                "device_port": self.device_port, "remote": self.remote,
                "remote_port": self.remote_port, "bytes_out": self.bytes_out,
                "bytes_in": self.bytes_in, "packets_out": self.packets_out,
                "packets_in": self.packets_in, "state": self.state,
                "replied": self.replied, "inbound": self.inbound}


def orient(e, lan):
    """Entry -> Flow from the device's side, or None for the router's own
    and WAN-only flows."""
    k_src, src = lan.kind(e.orig[0])
    if k_src == BAD:
        raise ValueError("bad address")
    if k_src == ROUTER:
        return None
    f = Flow()
    ported = e.proto in PORTED
    if k_src == LAN:
        f.inbound = False
        f.device_ip = src
        k_dst, f.remote = lan.kind(e.orig[1])
        if k_dst == BAD:
            raise ValueError("bad address")
        f.device_port = _port(e.orig[2]) if ported else 0
        f.remote_port = _port(e.orig[3]) if ported else 0
        out_c, in_c = e.count_o, e.count_r
    else:
        k_dev, dev = lan.kind(e.reply[0])
        if k_dev == BAD:
            raise ValueError("bad address")
        if k_dev != LAN:
            return None
        f.inbound = True
        f.device_ip = dev
        f.remote = src
        f.device_port = _port(e.reply[2]) if ported else 0
        f.remote_port = _port(e.orig[2]) if ported else 0
        out_c, in_c = e.count_r, e.count_o
    f.proto = e.proto.decode()
    f.state = e.state.decode() if e.state else ""
    f.replied = not e.unreplied
    if out_c is None:
        f.packets_out = f.bytes_out = f.packets_in = f.bytes_in = 0
    else:
        f.packets_out = _counter(out_c[0])
        f.bytes_out = _counter(out_c[1])
        f.packets_in = _counter(in_c[0])
        f.bytes_in = _counter(in_c[1])
    return f


def read_chunks(path, size=32768):
    """The file in chunks; reading /proc in one read() costs more (§2)."""
    with open(path, "rb") as f:
        while True:
            chunk = f.read(size)
            if not chunk:
                return
            yield chunk


def parse(text, lan):
    """Snapshot (bytes) -> ([Flow], malformed line count)."""
    flows = []
    bad = 0
    for line in text.split(b"\n"):
        t = line.split()
        if not t:
            continue
        e = split_entry(t)
        if e is None:
            bad += 1
            continue
        try:
            f = orient(e, lan)
        except ValueError:
            bad += 1
            continue
        if f is not None:
            flows.append(f)
    return flows, bad


COUNTED = 1  # a slot's flags: the line had counters (nf_conntrack_acct)
UNREPLIED = 2  # ... and [UNREPLIED]

def key_check(key):
    """The second, independent checksum of a flow's key: the interpreter's
    own hash of it (CPython's is keyed per process, so no remote host can
    choose ports that collide in both; MicroPython's is shorter but still
    unrelated to crc32). crc32 with another seed would not do: two keys of
    one length that collide under one seed collide under every seed."""
    return hash(key) & 0xFFFFFFFF


class Scanner:
    """Turns successive snapshots into per-scan deltas.

    Between scans it keeps a fixed-size flow table: max_flows slots in
    preallocated arrays, found through an open-addressed index (linear
    probing, twice as many cells as slots, `idx` holds slot + 1). A flow's
    key is its protocol column and original tuple; a slot holds the key's
    crc32 (`key_hash`, injectable for tests) and a second, independent
    checksum of it (`key_check`): a slot is the flow's only when both
    match, so two flows whose hashes collide probe on to separate slots and
    never share counters. A slot also holds the crc32 of the rest of the
    line (counters, reply tuple, flags: without the delta-time clock), the
    owner (an index into `devs`, the device IPs met), the original and
    reply counters, flags and the mark of the scan that last met it.

    A flow whose line did not change since the last scan -- most of a big
    table, most of the time -- costs two slices, two crc32s, a probe and
    the key check: no split, no address lookup, no numbers, no object kept.
    A line that changed (or is new, or the LAN changed) is split and
    converted, its delta against the slot reported to sink, and the slot
    updated in place. When the scan is over, slots it did not mark are
    freed (the last slot moves into the hole, the index shifts back), so
    the table never holds a second copy of anything.

    A full table keeps no new flow: it is still reported to sink as a new
    connection (unreplied or not) with no bytes, on every scan it is seen
    and not kept, and counted in `dropped` (this scan) and `dropped_total`.
    A flow of a scan that failed half way keeps what it reported.

    The agent sizes the table by its max_flows setting; the default here
    (4,096 slots, about 200 KB) suits the tests and small uses."""

    def __init__(self, lan, max_flows=4096):
        self.lan = lan
        self.prev_lan = lan
        self.key_hash = binascii.crc32
        self.key_check = key_check
        self.max_flows = n = max(1, int(max_flows))
        cells = 2
        while cells < 2 * n:
            cells *= 2
        self.mask = cells - 1
        self.idx = array("I", [0] * cells)
        z = [0] * n
        self.h1 = array("I", z)
        self.h2 = array("I", z)
        self.sums = array("I", z)
        self.dev = array("H", z)
        self.mark = array("B", z)
        self.flags = array("B", z)
        self.ob = array("Q", z)   # bytes and packets each way, as the
        self.rb = array("Q", z)   # original and the reply tuple count them
        self.op = array("I", z)   # (packets wrap at 2**32: deltas are
        self.rp = array("I", z)   # taken modulo it)
        self.used = 0
        self.scan_mark = 0
        self.devs = []
        self.devix = {}
        self.malformed = 0
        self.skipped = 0
        self.seen = 0
        self.uncounted = 0
        self.acct = None
        self.dropped = 0
        self.dropped_total = 0

    def nbytes(self):
        """The flow table's size in bytes (its arrays' items)."""
        t = 0
        for a, code in ((self.idx, "I"), (self.h1, "I"), (self.h2, "I"), (self.sums, "I"),
                        (self.dev, "H"), (self.mark, "B"), (self.flags, "B"), (self.ob, "Q"),
                        (self.rb, "Q"), (self.op, "I"), (self.rp, "I")):
            t += len(a) * struct.calcsize(code)
        return t

    def scan(self, chunks, sink):
        """Feed one snapshot. For each flow that is new or moved, calls
        sink(device_ip, remote, remote_port, proto, d_bytes_out, d_bytes_in,
        d_packets_out, d_packets_in, new, unreplied); returns the number of
        live flows per device IP."""
        mk = self.scan_mark % 255 + 1
        self.scan_mark = mk
        live, hits = self._scan(mk, chunks, sink)
        if hits < self.used:
            self._sweep(mk)
        if len(self.devs) > 4096:
            self._compact_devs()
        self.prev_lan = self.lan
        return live

    def _scan(self, mk, chunks, sink):
        live = {}
        kh = self.key_hash
        kc = self.key_check
        crc = binascii.crc32
        idx, mask = self.idx, self.mask
        H1, H2, SUMS, DEV, MARK, FLAGS = self.h1, self.h2, self.sums, self.dev, self.mark, self.flags
        devs = self.devs
        fast = self.lan is self.prev_lan  # a new LAN may re-classify flows
        seen = uncounted = malformed = skipped = hits = dropped = 0
        for part in _batches(chunks):
            # with nf_conntrack_timestamp on, every line ends in a clock
            # (delta-time=) that moves each second: leave it out
            ts = part and (b" delta-time=" in part[0] or b" delta-time=" in part[-1])
            for line in part:
                a = line.find(b"src=")
                if a < 0:
                    if line.strip():
                        malformed += 1
                    continue
                b = line.find(b" packets=", a)
                if b < 0:
                    b = _plain_end(line, line.find(b" ", a))
                    if b < 0:
                        b = len(line)
                key = line[9:16] + line[a:b]
                h = kh(key) & 0xFFFFFFFF
                i = h & mask
                h2 = None
                s = -1
                while True:
                    j = idx[i]
                    if not j:
                        break
                    if H1[j - 1] == h:
                        if h2 is None:
                            h2 = kc(key)
                        if H2[j - 1] == h2:
                            s = j - 1
                            break
                    i = (i + 1) & mask
                if ts:
                    c = line.rfind(b" delta-time=")
                    chk = crc(line[b:c] if c > b else line[b:])
                else:
                    chk = crc(line[b:])
                if s >= 0:
                    if MARK[s] == mk:
                        continue  # the same flow twice in one read (the table moved under the reader)
                    if fast and SUMS[s] == chk:
                        MARK[s] = mk
                        hits += 1
                        dev = devs[DEV[s]]
                        live[dev] = live.get(dev, 0) + 1
                        seen += 1
                        if not FLAGS[s] & COUNTED:
                            uncounted += 1
                        continue
                r = self._changed(line, a, s, i, h, h2 if h2 is not None else kc(key),
                                  chk, mk, live, sink)
                if r == 1:
                    seen += 1
                    hits += 1
                elif r == 2:
                    seen += 1
                    uncounted += 1
                    hits += 1
                elif r == 3:
                    seen += 1
                    skipped += 1
                elif r == 4:
                    seen += 1
                    dropped += 1
                elif r == 5:
                    seen += 1
                    uncounted += 1
                    dropped += 1
                else:
                    malformed += 1
        self.malformed += malformed
        self.skipped = skipped
        self.seen = seen
        self.uncounted = uncounted
        self.dropped = dropped
        self.dropped_total += dropped
        return live, hits

    def _changed(self, line, a, s, i, h, h2, chk, mk, live, sink):
        """A line not met unchanged: new, moved, or changed elsewhere than
        in its counters. s: its slot (-1: none; i is then the free index
        cell its probe ended at). -> 0 malformed, 1 kept, 2 kept without
        counters, 3 skipped, 4 not kept (the table is full), 5 the same
        without counters."""
        lan_kind = self.lan.kind
        kind, dev = lan_kind(line[a:line.find(b" ", a)])
        if kind == BAD:
            return 0
        e = split_entry(line.split())
        if e is None:
            return 0
        if kind == LAN:
            inbound = False
            src = dev
        elif kind == ROUTER:
            return 3
        else:
            src = dev
            k_dev, dev = lan_kind(e.reply[0])
            if k_dev == BAD:
                return 0
            if k_dev != LAN:
                return 3
            inbound = True
        ported = e.proto in PORTED
        try:
            if inbound:
                remote = src
                rport = _port(e.orig[2]) if ported else 0
                ported and _port(e.reply[2])  # the device's port: must be a port too
            else:
                k_dst, remote = lan_kind(e.orig[1])
                if k_dst == BAD:
                    return 0  # a device talking to no address: the line is broken
                rport = _port(e.orig[3]) if ported else 0
                ported and _port(e.orig[2])
            if e.count_o is None:
                c = (0, 0, 0, 0)
            else:
                c = _counts(e)
        except ValueError:
            return 0
        counted = e.count_o is not None
        if counted:
            self.acct = True
        elif self.acct is None:
            self.acct = False
        fl = (COUNTED if counted else 0) | (UNREPLIED if e.unreplied else 0)
        live[dev] = live.get(dev, 0) + 1
        d = c
        new = True
        if s >= 0:
            new = False
            ofl = self.flags[s]
            if counted and ofl & COUNTED:
                o = (self.op[s], self.ob[s], self.rp[s], self.rb[s])
                if c[1] >= o[1] and c[3] >= o[3]:
                    d = ((c[0] - o[0]) & 0xFFFFFFFF, c[1] - o[1], (c[2] - o[2]) & 0xFFFFFFFF, c[3] - o[3])
                else:
                    new = True  # the tuple was deleted and made again
            same = not new and fl == ofl and not (d[0] or d[1] or d[2] or d[3])
        else:
            s = self.used
            if s >= self.max_flows or len(self.devs) > 65534 and dev not in self.devix:
                sink(dev, remote, rport, e.proto, 0, 0, 0, 0, True, e.unreplied)
                return 4 if counted else 5
            self.used = s + 1
            self.idx[i] = s + 1
            self.h1[s] = h
            self.h2[s] = h2
            same = False
        di = self.devix.get(dev)
        if di is None:
            di = len(self.devs)
            self.devs.append(dev)
            self.devix[dev] = di
        self.sums[s] = chk
        self.dev[s] = di
        self.mark[s] = mk
        self.flags[s] = fl
        self.op[s] = c[0] & 0xFFFFFFFF
        self.ob[s] = c[1]
        self.rp[s] = c[2] & 0xFFFFFFFF
        self.rb[s] = c[3]
        if not same:
            if inbound:
                pi, bi, po, bo = d
            else:
                po, bo, pi, bi = d
            sink(dev, remote, rport, e.proto, bo, bi, po, pi, new, new and e.unreplied)
        return 1 if counted else 2

    def _cell(self, s):
        """The index cell that points at slot s."""
        idx, mask = self.idx, self.mask
        i = self.h1[s] & mask
        while idx[i] != s + 1:
            i = (i + 1) & mask
        return i

    def _sweep(self, mk):
        """Free the slots this scan did not mark."""
        MARK = self.mark
        s = 0
        while s < self.used:
            if MARK[s] == mk:
                s += 1
            else:
                self._free(s)

    def _free(self, s):
        idx, mask, H1 = self.idx, self.mask, self.h1
        # take s out of the index, shifting back the probes that ran past it
        i = self._cell(s)
        j = i
        while True:
            j = (j + 1) & mask
            v = idx[j]
            if not v:
                break
            k = H1[v - 1] & mask
            if (i < k <= j) if i <= j else (k > i or k <= j):
                continue  # v is at or after its home past the hole: it stays
            idx[i] = v
            i = j
        idx[i] = 0
        last = self.used - 1
        if s != last:
            cell = self._cell(last)
            for arr in (self.h1, self.h2, self.sums, self.dev, self.mark, self.flags,
                        self.ob, self.rb, self.op, self.rp):
                arr[s] = arr[last]
            idx[cell] = s + 1
        self.used = last

    def _compact_devs(self):
        """Keep only the device IPs live slots name."""
        old = self.devs
        self.devs = []
        self.devix = {}
        DEV = self.dev
        for s in range(self.used):
            ip = old[DEV[s]]
            di = self.devix.get(ip)
            if di is None:
                di = len(self.devs)
                self.devs.append(ip)
                self.devix[ip] = di
            DEV[s] = di


def _batches(chunks):
    """Lists of whole lines from an iterable of byte chunks (a line may
    span two); a list per chunk keeps the per-line loop free of calls."""
    rest = b""
    for chunk in chunks:
        parts = chunk.split(b"\n")
        if rest:
            parts[0] = rest + parts[0]  # not rest + chunk: a copy of 32 KB
        rest = parts.pop()
        yield parts
    if rest:
        yield [rest]


def _plain_end(text, sp):
    """Without counters, where the original tuple ends: at [UNREPLIED]
    (which goes away when the answer comes: the same flow) or at the reply."""
    u = text.find(b" [UNREPLIED]", sp)
    return u if u > 0 else text.find(b" src=", sp)


def _counts(e):
    return (_counter(e.count_o[0]), _counter(e.count_o[1]), _counter(e.count_r[0]), _counter(e.count_r[1]))
