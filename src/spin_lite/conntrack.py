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
`Scanner` is the hot path of every scan: it keeps one bytes value per live
flow between scans (its text from the original tuple on), so an idle flow
costs a slice and a dict lookup, and only a line that changed is split and
converted to numbers.
"""

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
    if end > n or t[s][:4] != b"src=" or t[s + 1][:4] != b"dst=":
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


def _ip(tok):
    """b'src=fd00:0000:...' -> normalised text address."""
    raw = _value(tok).decode()
    if ":" in raw:
        return addr.format_ipv6(addr.parse_ipv6(raw))
    return raw


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
        f.remote = lan.kind(e.orig[1])[1]
        f.device_port = _num(e.orig[2]) if ported else 0
        f.remote_port = _num(e.orig[3]) if ported else 0
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
        f.device_port = _num(e.reply[2]) if ported else 0
        f.remote_port = _num(e.orig[2]) if ported else 0
        out_c, in_c = e.count_r, e.count_o
    f.proto = e.proto.decode()
    f.state = e.state.decode() if e.state else ""
    f.replied = not e.unreplied
    if out_c is None:
        f.packets_out = f.bytes_out = f.packets_in = f.bytes_in = 0
    else:
        f.packets_out = _num(out_c[0])
        f.bytes_out = _num(out_c[1])
        f.packets_in = _num(in_c[0])
        f.bytes_in = _num(in_c[1])
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


class Scanner:
    """Turns successive snapshots into per-scan deltas.

    Between scans it keeps one bytes value per live flow: its line from the
    original tuple on (counters, reply tuple, flags), as the key of `prev`;
    the value says whose flow it is (a tuple shared by every flow of one
    device and protocol). A device's flow whose text did not change since
    the last scan -- most of a big table, most of the time -- costs a find,
    a slice and a dict lookup: no split, no address lookup, no numbers.

    The other lines wait until the snapshot has been read; the last scan's
    flows not met unchanged are then indexed by protocol and original tuple,
    which tells a flow that moved (and by how much) from a new one. With
    nothing kept from before (the first scan) they are settled at once."""

    def __init__(self, lan):
        self.lan = lan
        self.prev = {}
        self.prev_lan = lan
        self.owners = {}
        self.malformed = 0
        self.skipped = 0
        self.seen = 0
        self.uncounted = 0
        self.acct = None

    def scan(self, chunks, sink):
        """Feed one snapshot. For each flow that is new or moved, calls
        sink(device_ip, remote, remote_port, proto, d_bytes_out, d_bytes_in,
        d_packets_out, d_packets_in, new, unreplied); returns the number of
        live flows per device IP."""
        cur = {}
        try:
            live = self._scan(cur, chunks, sink)
        except BaseException:
            # a read that failed half way, or a sink that raised: keep what
            # this scan met and what it did not reach (a flow already
            # reported is kept with its new counters, so it is not counted
            # twice)
            prev = self.prev
            if prev is not None:
                for k, o in cur.items():
                    prev[k] = o
                cur = prev
            self.prev = cur
            raise
        self.prev = cur
        self.prev_lan = self.lan
        return live

    def _scan(self, cur, chunks, sink):
        prev = self.prev
        index = None if prev else {}  # nothing kept: every line is new
        live = {}
        heads = []  # the lines not met unchanged: up to the original tuple,
        rests = []  # and from it on
        counts = [0, 0, 0, 0, None]  # malformed, skipped, seen, uncounted, acct
        seen = uncounted = lines = 0
        fast = self.lan is self.prev_lan  # a new LAN may re-classify flows
        if len(self.owners) > 4096:
            self.owners = {}
        for part in _batches(chunks):
            # with nf_conntrack_timestamp on, every line ends in a clock
            # (delta-time=) that moves each second: leave it out
            ts = part and (b" delta-time=" in part[0] or b" delta-time=" in part[-1])
            if index is not None:
                for line in part:
                    a = line.find(b"src=")
                    if a < 0:
                        if line.strip():
                            counts[0] += 1
                        continue
                    c = line.rfind(b" delta-time=") if ts else -1
                    heads.append(line)
                    rests.append(line[a:c] if c > a else line[a:])
                self._settle(heads, rests, index, cur, live, sink, counts, True)
                heads = []
                rests = []
                continue
            take = prev.pop
            for line in part:
                a = line.find(b"src=")
                if a < 0:
                    if line.strip():
                        counts[0] += 1
                    continue
                if ts:
                    c = line.rfind(b" delta-time=")
                    rest = line[a:c] if c > a else line[a:]
                else:
                    rest = line[a:]
                o = take(rest, None)
                if o is None:
                    o = cur.get(rest)
                    if o is not None and o[3] == line[9:16]:
                        continue  # the same line twice in one read (the table moved under the reader)
                elif fast and line[9:16] == o[1]:
                    cur[rest] = o
                    dev = o[0]
                    live[dev] = live.get(dev, 0) + 1
                    seen += 1
                    if not o[2]:
                        uncounted += 1
                    continue
                else:
                    prev[rest] = o  # another protocol's flow, or a port forward
                heads.append(line[:a])
                rests.append(rest)
            lines += len(part)
            if lines > 500 and 2 * len(rests) > lines:
                # most flows moved: rather than hold every line to the end,
                # index the last scan now, let it go, and settle each part
                # as it comes (the memory of one table, not of two)
                index = _index(prev, cur)
                self.prev = prev = take = None
                self._settle(heads, rests, index, cur, live, sink, counts)
                heads = []
                rests = []
        if index is None:
            index = _index(prev, None)
        self._settle(heads, rests, index, cur, live, sink, counts)
        self.malformed += counts[0]
        self.skipped = counts[1]
        self.seen = seen + counts[2]
        self.uncounted = uncounted + counts[3]
        if counts[4] is not None:
            self.acct = counts[4]
        return live

    def _settle(self, heads, rests, index, cur, live, sink, counts, whole=False):
        """The lines not met unchanged, in their order: new, moved, or
        changed elsewhere than in their counters. heads: each line up to
        its original tuple (whole: the line itself); rests: from it on, as
        it will be kept. index: the last scan's flows by protocol column +
        original tuple -> counters, as made by _index."""
        lan_kind = self.lan.kind
        owners = self.owners
        malformed = skipped = seen = uncounted = 0
        acct = counts[4]
        for i in range(len(rests)):
            rest = rests[i]
            if whole:
                line = heads[i]
                a = line.find(b"src=")
            else:
                a = len(heads[i])
                line = heads[i] + rest
                heads[i] = None
            p = line[9:16]
            other = cur.get(rest)
            if other is not None:
                if other[3] == p:
                    continue  # the same line twice in one read (the table moved under the reader)
                rest = p + rest  # another protocol's flow has this text
            sp = line.find(b" ", a)
            kind, dev = lan_kind(line[a:sp])
            if kind == BAD:
                malformed += 1
                continue
            if kind == LAN:
                b = line.find(b" packets=", sp)
                if b < 0:
                    b = _plain_end(line, sp)
                    raw = b"u" if line.find(b"[UNREPLIED]", sp) > 0 else b"r"
                    uncounted += 1
                else:
                    raw = _counters(line, b)
                old = index.get(p + line[a:b])
                if old == raw:
                    k = (dev, p, len(raw) > 1, p)
                    o = owners.get(k)
                    if o is None:
                        owners[k] = o = k
                    cur[rest] = o
                    live[dev] = live.get(dev, 0) + 1
                    seen += 1
                    continue
            t = line.split()
            e = split_entry(t)
            if e is None:
                malformed += 1
                continue
            seen += 1
            if kind == LAN:
                inbound = False
                src = dev
            elif kind == ROUTER:
                skipped += 1
                continue
            else:
                src = dev
                k_dev, dev = lan_kind(e.reply[0])
                if k_dev == BAD:
                    malformed += 1
                    seen -= 1
                    continue
                if k_dev != LAN:
                    skipped += 1
                    continue
                inbound = True
                b = line.find(b" packets=", sp)
                if b < 0:
                    b = _plain_end(line, sp)
                    raw = b"u" if e.unreplied else b"r"
                    uncounted += 1
                else:
                    raw = _counters(line, b)
                old = index.get(p + line[a:b])
            live[dev] = live.get(dev, 0) + 1
            k = (dev, None if inbound else p, len(raw) > 1, p)
            o = owners.get(k)
            if o is None:
                owners[k] = o = k
            cur[rest] = o
            if old == raw:
                continue  # the same counters as last scan: only its state or flags moved
            try:
                moved = _movement(e, inbound, src, old, lan_kind)
            except ValueError:
                malformed += 1
                seen -= 1
                del cur[rest]
                live[dev] -= 1
                continue
            if e.count_o is None:
                acct = False if acct is None else acct
            else:
                acct = True
            sink(dev, moved[0], moved[1], e.proto, moved[2], moved[3], moved[4],
                 moved[5], moved[6], moved[6] and e.unreplied)
        counts[0] += malformed
        counts[1] += skipped
        counts[2] += seen
        counts[3] += uncounted
        counts[4] = acct


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


def _index(prev, hits):
    """The last scan's flows not met unchanged (plus `hits`, those met so
    far, when the index is made before the end) -> {protocol column +
    original tuple: counters}, both cut as _settle cuts them from a line."""
    index = {}
    for kept in (prev, hits or {}):
        for text, o in kept.items():
            proto = o[3]
            if text[:4] != b"src=":
                text = text[len(proto):]
            sp = text.find(b" ")
            b = text.find(b" packets=", sp)
            if b < 0:
                b = _plain_end(text, sp)
                index[proto + text[:b]] = b"u" if text.find(b"[UNREPLIED]", sp) > 0 else b"r"
            else:
                index[proto + text[:b]] = _counters(text, b)
    return index


def _plain_end(text, sp):
    """Without counters, where the original tuple ends: at [UNREPLIED]
    (which goes away when the answer comes: the same flow) or at the reply."""
    u = text.find(b" [UNREPLIED]", sp)
    return u if u > 0 else text.find(b" src=", sp)


def _counters(line, b):
    """The text from the original counters to the end of the reply's."""
    end = line.find(b" ", line.rfind(b"bytes="))
    return line[b:end] if end > 0 else line[b:]


def _movement(e, inbound, src, old, lan_kind):
    """What moved in a flow since the last scan, from the device's side:
    (remote, remote port, bytes out, bytes in, packets out, packets in, new).
    ValueError when a number in the line is not a number."""
    ported = e.proto in PORTED
    if inbound:
        remote = src
        rport = _num(e.orig[2]) if ported else 0
        ported and _num(e.reply[2])  # the device's port: must be a number too
    else:
        remote = lan_kind(e.orig[1])[1]
        rport = _num(e.orig[3]) if ported else 0
        ported and _num(e.orig[2])
    po = bo = pi = bi = 0
    if e.count_o is not None:
        c = _counts(e)
        if old is not None and len(old) > 1:
            o = _counts_raw(old)
            if c[1] >= o[1] and c[3] >= o[3]:
                c = (c[0] - o[0], c[1] - o[1], c[2] - o[2], c[3] - o[3])
            else:
                old = None  # the tuple was deleted and made again
        if inbound:
            pi, bi, po, bo = c
        else:
            po, bo, pi, bi = c
    return remote, rport, bo, bi, po, pi, old is None


def _counts(e):
    return (_num(e.count_o[0]), _num(e.count_o[1]), _num(e.count_r[0]), _num(e.count_r[1]))


def _counts_raw(raw):
    """The counters kept from the last scan, b' packets=6 bytes=400 ...
    src=... packets=4 bytes=300' -> (6, 400, 4, 300)."""
    t = raw.split()
    return (_num(t[0]), _num(t[1]), _num(t[-2]), _num(t[-1]))
