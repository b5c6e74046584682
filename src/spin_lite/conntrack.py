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
flow table in arrays of slots (about 52 B a slot on both interpreters,
starting at 4,096 slots and doubling as flows come, up to max_flows), found by an integer hash of each line's protocol and
original tuple, checked by a second independent one; a slot holds a crc32
of the line from its tuple on, and the slot that came after it in the last
read, so an idle flow costs two find()s and one crc32 in the read buffer,
no text is kept, and only a line that changed is looked at further
(DESIGN.md §4 "Memory shapes").
"""

import binascii
import struct
from array import array

from . import addr, plat

READ_SIZE = 32768  # one read() of /proc: bigger reads cost more (§2), smaller ones more calls

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


# the address cache's bound, in bytes as MicroPython's heap counts them
# (about 145 B an IPv4 entry with its key and text, 200 B an IPv6 one) and
# entries: 768 KB holds the ~4,000 remotes of a busy home
LAN_CACHE_BYTES = 786432
LAN_CACHE_ENTRIES = 8192


class Lan:
    """Decides what an address is: a LAN device, the router, or other.

    Answers are cached by the raw token, so a scan of thousands of flows
    converts each distinct address once, and every flow to one remote
    gets the same text object (the digests of many devices key by it, so
    a text made anew each call would be kept once per device). A remote's
    entry is its text alone, the kind OTHER implied: a (kind, text) tuple
    for each would cost 32 B an entry more on MicroPython's heap (178 B an
    entry measured with it, 730 KB for the 4,092 addresses of a 16k-flow
    home). The cache is emptied when it passes LAN_CACHE_BYTES or
    LAN_CACHE_ENTRIES."""

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
        self.cache_bytes = 0

    def kind(self, tok):
        """(kind, ip text) for a raw b'src=...' or b'dst=...' token."""
        hit = self.cache.get(tok)
        if hit is not None:
            if type(hit) is str:
                return (OTHER, hit)
            return hit
        if len(self.cache) >= LAN_CACHE_ENTRIES or self.cache_bytes > LAN_CACHE_BYTES:
            self.cache = {}
            self.cache_bytes = 0
        try:
            ip = _ip(tok)
            v6 = ":" in ip
            n = addr.parse_ipv6(ip) if v6 else addr.parse_ipv4(ip)
        except (ValueError, UnicodeError):
            return (BAD, None)
        if ip in self.router:
            k = ROUTER
        else:
            k = OTHER
            for nv6, net, mask in self.nets:
                if nv6 == v6 and n & mask == net:
                    k = LAN
                    break
        hit = (k, ip)
        if k == OTHER:
            self.cache[tok] = ip
            self.cache_bytes += 112 + len(tok) + len(ip)
        else:
            self.cache[tok] = hit
            self.cache_bytes += 144 + len(tok) + len(ip)
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
INBOUND = 4  # ... the device is the reply's source (a port forward)
# ... and from bit 3 on, its protocol's place in PROTOS (0: another one), so a
# moved line need not read its protocol column again
PROTOS = (None, b"tcp", b"udp", b"icmp", b"icmpv6", b"udplite", b"sctp", b"dccp")
PROTO_CODE = {b"tcp": 1, b"udp": 2, b"icmp": 3, b"icmpv6": 4, b"udplite": 5, b"sctp": 6, b"dccp": 7}

def key_check(key):
    """The second, independent checksum of a flow's key: the interpreter's
    own hash of it (CPython's is keyed per process, so no remote host can
    choose ports that collide in both; MicroPython's is shorter but still
    unrelated to crc32). crc32 with another seed would not do: two keys of
    one length that collide under one seed collide under every seed."""
    return hash(key) & 0xFFFFFFFF


# a slot's arrays and their item types (the index, idx, is apart: it has
# twice as many cells); nxt has one cell more, the first line's
SLOT_ARRAYS = (("h1", "I"), ("h2", "I"), ("sums", "I"), ("dev", "H"), ("mark", "B"),
               ("flags", "B"), ("ob", "Q"), ("rb", "Q"), ("op", "I"), ("rp", "I"), ("nxt", "I"))

# slots the last sweep freed that ended() still recognises: flows that died
# while the snapshot was read, whose DESTROY event is read after it
SWEPT_KEPT = 256


def _final_delta(o, op, ob, rp, rb):
    """(orig packets, orig bytes, reply packets, reply bytes) moved from a
    slot's counters o (the same four, then its flags) to the final ones."""
    if not o[4] & COUNTED or ob < o[1] or rb < o[3]:
        return (0, 0, 0, 0)
    return ((op - o[0]) & 0xFFFFFFFF, ob - o[1], (rp - o[2]) & 0xFFFFFFFF, rb - o[3])


class Scanner:
    """Turns successive snapshots into per-scan deltas.

    Between scans it keeps a flow table in arrays of slots, found through
    an open-addressed index (linear probing, twice as many cells as slots, `idx` holds slot + 1). A flow's
    key is its protocol column and original tuple; a slot holds the key's
    crc32 (`key_hash`, injectable for tests) and a second, independent
    checksum of it (`key_check`): a slot is the flow's only when both
    match, so two flows whose hashes collide probe on to separate slots and
    never share counters. A slot also holds the crc32 (`sums`) of the
    protocol column and the line from the original tuple on (its
    counters, the reply tuple, flags; not the delta-time clock), the owner (an index into `devs`, the device IPs
    met), the original and reply counters, flags and the mark of the scan
    that last met it.

    The kernel writes the table in the same order every read, so a slot
    also remembers the slot whose line came next (`nxt`). A flow whose line
    did not change since the last scan -- most of a big table, most of the
    time -- is that guess with the same `sums`: two find()s and one crc32
    over the read buffer, no key, no probe, no copy, no object kept. Any
    other line is keyed and probed; a known flow whose counters moved is
    read in place (`_moved`), and a new one, or one of another shape, or
    any line after the LAN changed, is split and converted (`_changed`).
    Its delta against the slot goes to sink, and the slot is updated in
    place. A guess is only a guess: a stale `nxt` (the table changed, a
    slot moved) costs the probe, never a wrong flow, and a line must match
    both the guessed slot's 32-bit crc of its whole tuple and counters to
    be taken as that flow idle. When the scan is over, slots it did not mark are
    freed (the last slot moves into the hole, the index shifts back), so
    the table never holds a second copy of anything.

    A full table keeps no new flow: it is still reported to sink as a new
    connection (unreplied or not) with no bytes, on every scan it is seen
    and not kept, and counted in `dropped` (this scan) and `dropped_total`.
    A flow of a scan that failed half way keeps what it reported.

    The arrays start with `initial` slots (4,096, about 210 KB) and
    double when a new flow finds them full (`grown` counts it), up to
    max_flows (the agent's setting): a home with 16k flows holds 16k
    slots, not the 65,536 a router's nf_conntrack_max allows. A growth
    extends each array in place and makes the index anew (`_grow`); the
    table never shrinks (a flood's peak stays allocated, bounded by
    max_flows)."""

    def __init__(self, lan, max_flows=4096, initial=4096):
        self.lan = lan
        self.prev_lan = lan
        self.key_hash = binascii.crc32
        self.key_check = key_check
        self.max_flows = max(1, int(max_flows))
        self.cap = 0  # slots the arrays hold now: grows by doubling up to max_flows
        # per slot: h1, h2 the key's two checksums, sums the line's, dev
        # the owner, mark the last scan that met it, flags; ob, rb, op, rp
        # bytes and packets each way as the original and the reply tuple
        # count them (packets wrap at 2**32: deltas are taken modulo it);
        # nxt the slot of the line that came next in the last scan (a
        # guess: checked, never trusted), and in cell cap the first line's
        for name, code in SLOT_ARRAYS:
            setattr(self, name, array(code))
        self.nxt.append(0)
        self.used = 0
        self.grown = 0
        self.heap_limited = 0  # slots the table stopped at for want of heap
        self.idx, self.mask = None, 0
        first = min(self.max_flows, max(1, int(initial)))
        if not self._grow(first):  # no table at all: the caller must know
            raise MemoryError("no room in the heap for a flow table of %d slots" % first)
        self.buf = None  # scan_file's read buffer, made at its first read
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
        # the last scan's lines met by the nxt guess (no key, no probe) and
        # lines keyed and probed: an idle table should be all guessed
        self.guessed = 0
        self.probed = 0
        self.swept = {}

    def nbytes(self):
        """The flow table's size in bytes (its arrays' items)."""
        t = len(self.idx) * 4
        for name, code in SLOT_ARRAYS:
            t += len(getattr(self, name)) * struct.calcsize(code)
        return t

    def _grow(self, n):
        """Make the arrays hold n slots (more than now): the slot arrays
        are extended in place (each one reallocated, so the transient is
        one array's old copy at a time) and the index, twice as many cells,
        is made anew and the used slots put back in it: for that moment the
        old and the new index are both alive (a scan holds the old one).
        -> False, the table as it was, when the heap has no room for it."""
        old = self.cap
        old_idx, old_mask = self.idx, self.mask
        try:
            for name, code in SLOT_ARRAYS:
                a = getattr(self, name)
                # an array a failed attempt already extended keeps its room
                if len(a) < n + (name == "nxt"):
                    plat.extend_zeros(a, code, n + (name == "nxt") - len(a))
            cells = 2
            while cells < 2 * n:
                cells *= 2
            idx = plat.zeros("I", cells)
            mask = cells - 1
            H1 = self.h1
            for s in range(self.used):
                i = H1[s] & mask
                while idx[i]:
                    i = (i + 1) & mask
                idx[i] = s + 1
        except MemoryError:
            # MicroPython's heap is fixed at start: a table that outgrows
            # it stays at its size, and what does not fit is counted as a
            # full table's is (flows_dropped), rather than lose the agent
            self.idx, self.mask = old_idx, old_mask
            self.max_flows = old
            self.heap_limited = old
            plat.warn("flow table: no room in the heap for %d flows; it stays at %d, the rest counted"
                      " as flows_dropped (raise heap_size)" % (n, old))
            return False
        self.nxt[n] = self.nxt[old]  # the first line's guess moves to its cell
        self.idx = idx
        self.mask = mask
        self.cap = n
        return True

    def scan(self, chunks, sink):
        """Feed one snapshot, given as byte chunks. For each flow that is
        new or moved, calls sink(device_ip, remote, remote_port, proto,
        d_bytes_out, d_bytes_in, d_packets_out, d_packets_in, new,
        unreplied); returns the number of live flows per device IP."""
        return self._feed(_blocks(chunks), sink)

    def scan_file(self, path, sink):
        """scan() of the snapshot in a file (/proc/net/nf_conntrack), read
        with readinto into one buffer the scanner keeps: only lines that
        changed are copied out of it."""
        if self.buf is None:
            self.buf = bytearray(READ_SIZE)
        return self._feed(_reads(path, self.buf), sink)

    def _feed(self, blocks, sink):
        mk = self.scan_mark % 255 + 1
        self.scan_mark = mk
        live, hits = self._scan(mk, blocks, sink)
        if hits < self.used:
            self._sweep(mk)
        if len(self.devs) > 4096:
            self._compact_devs()
        self.prev_lan = self.lan
        return live

    def _scan(self, mk, blocks, sink):
        live = {}
        kh = self.key_hash
        kc = self.key_check
        crc = binascii.crc32
        idx, mask = self.idx, self.mask
        H1, H2, SUMS, DEV, MARK, FLAGS = self.h1, self.h2, self.sums, self.dev, self.mark, self.flags
        NXT = self.nxt
        fast = self.lan is self.prev_lan  # a new LAN may re-classify flows
        used = self.used if fast else 0  # slots a guess may be: none after the LAN changed
        lan_kind = self.lan.kind
        counted = COUNTED  # a local: MicroPython looks a global up by name each time
        cnt = [0] * len(self.devs)  # idle flows per device index
        prev = self.cap  # nxt's cell for the first line
        seen = uncounted = malformed = skipped = hits = dropped = idle = 0
        probed = reidle = 0  # lines keyed and probed; of them, idle after all
        for buf, end in blocks:
            mv = memoryview(buf)
            find = buf.find
            # with nf_conntrack_timestamp on, every line ends in a clock
            # (delta-time=) that moves each second: leave it out
            e = find(b"\n", 0, end)
            ts = find(b" delta-time=", 0, e) >= 0
            p = 0
            while p < end:
                e = find(b"\n", p, end)
                a = find(b"src=", p, e)
                if a < 0:
                    if bytes(mv[p:e]).strip():
                        malformed += 1
                    p = e + 1
                    continue
                c = e
                if ts:
                    c = buf.rfind(b" delta-time=", a, e)
                    if c < 0:
                        c = e
                # the protocol column goes in too: a udp flow may have the
                # very tuple text and counters of a tcp one
                chk = crc(mv[a:c], crc(mv[p + 9:p + 16]))
                # the table is read in the same order every scan: the line
                # is most likely the flow that followed the last one, and
                # idle. Then the checksum of its key and the rest says so
                # without hashing the key apart or probing.
                s = NXT[prev]
                if SUMS[s] == chk and s < used and MARK[s] != mk:
                    MARK[s] = mk
                    idle += 1
                    cnt[DEV[s]] += 1
                    if not FLAGS[s] & counted:
                        uncounted += 1
                    prev = s
                    p = e + 1
                    continue
                b = find(b" packets=", a, e)
                if b < 0:
                    b = _plain_end(buf, find(b" ", a, e), e)
                    if b < 0:
                        b = e
                key = bytes(mv[p + 9:p + 16]) + bytes(mv[a:b])
                probed += 1
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
                if s < 0 and lan_kind(bytes(mv[a:find(b" ", a, e)]))[0] == ROUTER:
                    # the router's own flows have no slot: without this
                    # they would be split and parsed again every scan
                    seen += 1
                    skipped += 1
                    p = e + 1
                    continue
                if s >= 0:
                    if MARK[s] == mk:
                        p = e + 1
                        continue  # the same flow twice in one read (the table moved under the reader)
                    if fast and SUMS[s] == chk:
                        MARK[s] = mk
                        idle += 1
                        reidle += 1
                        cnt[DEV[s]] += 1
                        if not FLAGS[s] & counted:
                            uncounted += 1
                        NXT[prev] = s
                        prev = s
                        p = e + 1
                        continue
                    if fast and b < e and FLAGS[s] & counted and buf[b + 1] == 112 and \
                            self._moved(buf, mv, p, a, b, e, s, chk, mk, sink):
                        hits += 1
                        seen += 1
                        cnt[DEV[s]] += 1
                        NXT[prev] = s
                        prev = s
                        p = e + 1
                        continue
                r = self._changed(bytes(mv[p:e]), a - p, s, i, h, h2 if h2 is not None else kc(key),
                                  chk, mk, live, sink)
                p = e + 1
                if r == 1 or r == 2:
                    seen += 1
                    hits += 1
                    if r == 2:
                        uncounted += 1
                    if s < 0:
                        s = self.used - 1
                        used = self.used if fast else 0
                        idx, mask = self.idx, self.mask  # a new slot may have grown the table
                    NXT[prev] = s
                    prev = s
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
        devs = self.devs
        for di in range(len(cnt)):
            if cnt[di]:
                ip = devs[di]
                live[ip] = live.get(ip, 0) + cnt[di]
        self.malformed += malformed
        self.skipped = skipped
        self.seen = seen + idle
        self.uncounted = uncounted
        self.dropped = dropped
        self.dropped_total += dropped
        self.guessed = idle - reidle
        self.probed = probed
        return live, hits + idle

    def _moved(self, buf, mv, p, a, b, e, s, chk, mk, sink):
        """A known flow whose counters moved, read in place: the numbers
        after b (" packets=") and the remote from the original tuple, which
        was checked when the slot was made (a flow's tuple never changes).
        -> False, changing nothing, when the line is not that plain shape:
        _changed then reads all of it."""
        find = buf.find
        try:
            q = find(b" bytes=", b, e)
            r = find(b" ", q + 7, e)
            um = buf.startswith(b" [UNREPLIED]", r)
            w = find(b" packets=", r, e)
            x = find(b" bytes=", w, e)
            y = find(b" ", x + 7, e)
            if q < 0 or r < 0 or w < 0 or x < 0:
                return False
            c = (int(mv[b + 9:q]), int(mv[q + 7:r]), int(mv[w + 9:x]), int(mv[x + 7:y if y > 0 else e]))
            fl = self.flags[s]
            proto = PROTOS[fl >> 3]
            if proto is None:
                f1 = find(b" ", p + 9, a) + 1
                proto = bytes(mv[f1:find(b" ", f1, a)])
            d0 = find(b" ", a, b)
            d1 = find(b" ", d0 + 1, b)
            if d1 < 0:
                d1 = b
            ported = proto in PORTED
            if fl & INBOUND:
                remote = self.lan.kind(bytes(mv[a:d0]))[1]
                rport = int(mv[d1 + 7:find(b" ", d1 + 1, b)]) if ported else 0
            else:
                remote = self.lan.kind(bytes(mv[d0 + 1:d1]))[1]
                rport = int(mv[find(b" ", d1 + 1, b) + 7:b]) if ported else 0
        except ValueError:
            return False
        o = (self.op[s], self.ob[s], self.rp[s], self.rb[s])
        new = c[1] < o[1] or c[3] < o[3]  # the tuple was deleted and made again
        if new:
            d = c
        else:
            d = ((c[0] - o[0]) & 0xFFFFFFFF, c[1] - o[1], (c[2] - o[2]) & 0xFFFFFFFF, c[3] - o[3])
        nfl = (fl & ~UNREPLIED) | (UNREPLIED if um else 0)  # counted, or it would not be here
        self.sums[s] = chk
        self.mark[s] = mk
        self.flags[s] = nfl
        self.op[s] = c[0] & 0xFFFFFFFF
        self.ob[s] = c[1]
        self.rp[s] = c[2] & 0xFFFFFFFF
        self.rb[s] = c[3]
        if new or nfl != fl or d[0] or d[1] or d[2] or d[3]:
            if fl & INBOUND:
                pi, bi, po, bo = d
            else:
                po, bo, pi, bi = d
            sink(self.devs[self.dev[s]], remote, rport, proto, bo, bi, po, pi, new, new and um)
        return True

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
        fl = (COUNTED if counted else 0) | (UNREPLIED if e.unreplied else 0) | (INBOUND if inbound else 0) \
            | PROTO_CODE.get(e.proto, 0) << 3
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
            if s >= self.cap and self.cap < self.max_flows:
                # the table is full at this size: twice the room, and the
                # free cell this line's probe found is in the old index
                if self._grow(min(2 * self.cap, self.max_flows)):
                    self.grown += 1
                    i = self._free_cell(h)
            if s >= self.cap or len(self.devs) > 65534 and dev not in self.devix:
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

    def ended(self, key, op, ob, rp, rb):
        """A flow conntrack deleted (its DESTROY event), by the key a
        snapshot line of it would have (`line[9:16] + line[a:b]`) and its
        final counters. When the table holds it, its slot is freed and
        the counters moved since the last report are returned as
        (orig packets, orig bytes, reply packets, reply bytes); all zero
        when either count was not kept. None when the table does not hold
        it: the flow lived and died between two snapshots -- or it ended
        while the last snapshot was being read, and that scan's sweep
        freed it (`swept` remembers those, so it is not new twice)."""
        h = self.key_hash(key) & 0xFFFFFFFF
        h2 = self.key_check(key)
        idx, mask, H1, H2 = self.idx, self.mask, self.h1, self.h2
        i = h & mask
        while True:
            j = idx[i]
            if not j:
                break
            if H1[j - 1] == h and H2[j - 1] == h2:
                s = j - 1
                o = (self.op[s], self.ob[s], self.rp[s], self.rb[s], self.flags[s])
                self._free(s)
                return _final_delta(o, op, ob, rp, rb)
            i = (i + 1) & mask
        o = self.swept.pop(h, None)
        if o is not None and o[0] == h2:
            return _final_delta(o[1:], op, ob, rp, rb)
        return None

    def _free_cell(self, h):
        """The empty index cell a probe for hash h ends at."""
        idx, mask = self.idx, self.mask
        i = h & mask
        while idx[i]:
            i = (i + 1) & mask
        return i

    def _cell(self, s):
        """The index cell that points at slot s."""
        idx, mask = self.idx, self.mask
        i = self.h1[s] & mask
        while idx[i] != s + 1:
            i = (i + 1) & mask
        return i

    def _sweep(self, mk):
        """Free the slots this scan did not mark; remember a few in
        `swept` for ended() (a flow whose DESTROY event comes after the
        snapshot that no longer held it)."""
        MARK = self.mark
        swept = self.swept = {}
        s = 0
        while s < self.used:
            if MARK[s] == mk:
                s += 1
            else:
                if len(swept) < SWEPT_KEPT:
                    swept[self.h1[s]] = (self.h2[s], self.op[s], self.ob[s], self.rp[s],
                                         self.rb[s], self.flags[s])
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
                        self.ob, self.rb, self.op, self.rp, self.nxt):
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


def _blocks(chunks):
    """(text, end) with whole lines in text[:end], from an iterable of byte
    chunks (a line may span several)."""
    rest = b""
    for chunk in chunks:
        end = chunk.rfind(b"\n") + 1
        if not end:
            rest += chunk
            continue
        text = rest + chunk[:end] if rest else chunk
        yield text, end + len(rest)
        rest = chunk[end:]
    if rest:
        yield rest + b"\n", len(rest) + 1


def _reads(path, buf):
    """(buf, end) for each read of the file: buf[:end] holds whole lines,
    and the piece of a line after them moves to the front for the next
    read. Nothing else is allocated a read. A line longer than the buffer
    (the kernel writes under 1 KB) is cut where the buffer ends, losing
    its last byte there; its pieces are read as lines of their own."""
    mv = memoryview(buf)
    size = len(buf)
    fill = 0
    with open(path, "rb", 0) as f:  # unbuffered: each readinto is one read()
        while True:
            k = f.readinto(mv[fill:])
            if not k:
                break
            fill += k
            end = buf.rfind(b"\n", 0, fill) + 1
            if not end:
                if fill < size:
                    continue
                buf[fill - 1] = 10  # the scan loop needs a newline to end on
                end = fill
            yield buf, end
            rest = fill - end
            if rest:
                buf[0:rest] = buf[end:fill]  # a copy first: the two may overlap
            fill = rest
    if fill:
        buf[fill] = 10  # the last line had no newline
        yield buf, fill + 1


def _plain_end(text, sp, end):
    """Without counters, where the original tuple ends: at [UNREPLIED]
    (which goes away when the answer comes: the same flow) or at the reply."""
    if sp < 0:
        return -1
    u = text.find(b" [UNREPLIED]", sp, end)
    return u if u > 0 else text.find(b" src=", sp, end)


def _counts(e):
    return (_counter(e.count_o[0]), _counter(e.count_o[1]), _counter(e.count_r[0]), _counter(e.count_r[1]))
