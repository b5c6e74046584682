"""Digests: what each device did, per time bucket, in rings of bounded size.

Theory of operation
-------------------
Time is cut into buckets (60 s by default). Bucket numbers come from the
monotonic clock, aligned once, at start, so that boundaries fall on
wall-clock minutes: n = (monotonic_ms + align) // bucket_ms. A router boots
without a clock and jumps when NTP arrives; such a jump only changes the
wall-clock *label* of buckets (see Clock), never which buckets exist.

Each device has one open bucket (counters, distinct counts of the remotes
and remote ports it talked to, bytes of at most `digest_remotes` remotes)
and, from the first bucket in which it moved traffic, two rings: the
fine ring (the last `fine_buckets` buckets, with their top remotes) and the
coarse ring (each slot folds `coarse_factor` fine buckets; distinct counts
take the maximum, since sets cannot be summed; counters only). A ring is
one bytes of variable-length records, one a bucket, oldest first (see
Ring); a ring remembers the newest bucket it holds, and buckets that time
skipped are empty records. Memory therefore depends on the number of
devices and the configuration, never on traffic: a record is at most
1 + 10 bytes a value.

Counters per bucket, in this order (COUNTERS): bytes out, bytes in, packets
out, packets in, new connections, unreplied attempts, distinct remotes,
distinct remote ports; plus the top remotes by bytes.
"""

import math
from array import array

COUNTERS = ("bytes_out", "bytes_in", "packets_out", "packets_in",
            "conns", "unreplied", "remotes", "ports")
NC = len(COUNTERS)
DISTINCT = (6, 7)  # folded by max, not by sum
OPEN = 6  # counters summed per flow; the distinct counts come from sketches


class Clock:
    """Bucket numbers from the monotonic clock, labels from the wall clock."""

    def __init__(self, bucket_ms, mono_ms, wall_s):
        self.bucket_ms = bucket_ms
        wall_ms = int(wall_s * 1000)
        self.align = wall_ms - mono_ms
        self.drift = 0

    def bucket(self, mono_ms):
        return (mono_ms + self.align) // self.bucket_ms

    def observe(self, mono_ms, wall_s):
        """Note how far the wall clock has moved from the monotonic one
        (NTP arrived, the owner set the time): labels follow it."""
        self.drift = int(wall_s * 1000) - mono_ms - self.align

    def label(self, n):
        """Wall-clock start of bucket n, in seconds."""
        return (n * self.bucket_ms + self.drift) // 1000


class Remotes:
    """One table of remote addresses shared by every ring: a ring's top
    list holds slot numbers + 1 ('H', 0 for none), not strings. Each slot
    counts the ring entries that point at it; only a slot nothing points
    at is reused (the clock hand looks for one), so a ring never names the
    wrong remote. At most `size` slots (<= 65535); when every one is in
    use a remote is left out of that top list and counted in `full`."""

    def __init__(self, size):
        self.size = max(1, min(size, 0xFFFF))
        self.names = []
        self.refs = array("I", [])
        self.index = {}
        self.hand = 0
        self.full = 0
        self.unused = 0  # slots nothing points at: no search when there are none

    def __len__(self):
        return len(self.index)

    def take(self, remote):
        """The slot + 1 of remote, its count raised; 0 when the table is full."""
        i = self.index.get(remote)
        if i is None:
            if len(self.names) < self.size:
                i = len(self.names)
                self.names.append(remote)
                self.refs.append(0)
                self.unused += 1
            else:
                i = self._free()
                if i < 0:
                    self.full += 1
                    return 0
                old = self.names[i]
                if old is not None:
                    del self.index[old]
                self.names[i] = remote
            self.index[remote] = i
        if self.refs[i] == 0:
            self.unused -= 1
        self.refs[i] += 1
        return i + 1

    def _free(self):
        if self.unused <= 0:
            return -1
        n = len(self.names)
        for k in range(n):
            i = (self.hand + k) % n
            if self.refs[i] == 0:
                self.hand = (i + 1) % n
                return i
        return -1

    def drop(self, ref):
        if ref:
            self.refs[ref - 1] -= 1
            if self.refs[ref - 1] == 0:
                self.unused += 1

    def name(self, ref):
        return self.names[ref - 1] if ref else None


def put_varint(out, v):
    """v (>= 0) appended to bytearray out, 7 bits a byte, low first: a
    quiet minute's counters take a byte or two each, a busy one's more,
    and no counter ever overflows."""
    while v > 0x7F:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def read_varints(data, off, k, out):
    """k values put_varint wrote in data from off, appended to out; the
    offset after them (most are one byte)."""
    while k:
        c = data[off]
        off += 1
        if c >= 0x80:
            v = c & 0x7F
            shift = 7
            c = data[off]
            off += 1
            while c >= 0x80:
                v |= (c & 0x7F) << shift
                shift += 7
                c = data[off]
                off += 1
            c = v | (c << shift)
        out.append(c)
        k -= 1
    return off


def zigzag(d):
    """A signed difference as a varint's value: 0, -1, 1, -2 ... -> 0, 1, 2, 3 ..."""
    return d << 1 if d >= 0 else ((-d) << 1) - 1


def unzigzag(z):
    return -((z + 1) >> 1) if z & 1 else z >> 1


POP = bytes([bin(i).count("1") for i in range(256)])  # bits set in a counter mask
ZERO_ROW = [0] * NC


class Ring:
    """The last `slots` buckets, each one variable-length record in one
    bytes (`data`, oldest first, `count` of them, the newest at offset
    `tail`, the one before it at `before`).

    A record is a header varint h, then values (varints):
      h = delta | ntop << 1 | mask << (1 + tb), tb the bits ntop needs;
      a set bit k of mask: counter k follows, the others are 0 (absolute
      record) or the newer record's (delta record: values are zigzag
      differences from the next newer record's); then ntop (ref, bytes)
      pairs of top remotes, refs being slot numbers + 1 in the shared
      Remotes table, bytes a difference too when the newer record has the
      same ref in the same place. h = 0 is a silent bucket: one byte.
    The newest record is always absolute; each older one is written the
    shorter way. A device that does the same every minute (a sensor's
    keepalive) costs its ring a byte or four a bucket, where one column
    per counter cost 38 and absolute varints 13. Deltas point to the newer
    record, so the oldest leaves the ring with nothing to rewrite, and a
    new bucket rewrites only the one before it.
    A ring without a table (the coarse one) keeps no top remotes. Only the
    newest bucket is written: fine records when their bucket closes,
    coarse ones as fine buckets fold in; reading one older bucket decodes
    the ring (history reads them all at once: buckets())."""
    __slots__ = ("slots", "table", "tb", "data", "count", "tail", "before", "newest")

    def __init__(self, slots, top, table=None):
        self.slots = slots
        self.table = (table if table is not None else Remotes(0xFFFF)) if top else None
        self.tb = len(bin(top)) - 2 if top else 0  # MicroPython has no int.bit_length
        self.data = b""
        self.count = 0
        self.tail = -1
        self.before = -1
        self.newest = -1

    def holds(self, n):
        return self.newest - self.slots < n <= self.newest

    def begin(self, n):
        """A new ring's newest bucket is n, empty: a device's first traffic
        in the middle of a half-hour folds into that half-hour's record."""
        self.newest = n
        self.data = b"\x00"
        self.count = 1
        self.tail = 0

    def _read(self, off):
        """(header, raw values, end) of the record at off."""
        data = self.data
        raw = []
        off = read_varints(data, off, 1, raw)
        h = raw.pop()
        if h:
            tb = self.tb
            off = read_varints(data, off, POP[h >> (1 + tb)] + 2 * ((h >> 1) & ((1 << tb) - 1)), raw)
        return h, raw, off

    def _decode(self, h, raw, newer):
        """A record's values (NC counters, then ref, bytes pairs) from its
        header and raw values; newer: the next newer record's values."""
        if not h:
            return list(ZERO_ROW)
        tb = self.tb
        mask = h >> (1 + tb)
        delta = h & 1
        vals = list(newer[:NC]) if delta else [0] * NC
        j = 0
        for k in range(NC):
            if mask & (1 << k):
                vals[k] = vals[k] + unzigzag(raw[j]) if delta else raw[j]
                j += 1
        p = NC
        while j < len(raw):
            ref = raw[j]
            b = raw[j + 1]
            if delta and p < len(newer) and newer[p] == ref:
                b = newer[p + 1] + unzigzag(b)
            vals.append(ref)
            vals.append(b)
            j += 2
            p += 2
        return vals

    def _encode(self, vals, newer):
        """vals as one record: absolute (newer None) or against newer."""
        mask = 0
        body = []
        for k in range(NC):
            v = vals[k] if newer is None else zigzag(vals[k] - newer[k])
            if v:
                mask |= 1 << k
                body.append(v)
        for p in range(NC, len(vals), 2):
            ref = vals[p]
            body.append(ref)
            if newer is not None and p < len(newer) and newer[p] == ref:
                body.append(zigzag(vals[p + 1] - newer[p + 1]))
            else:
                body.append(vals[p + 1])
        rec = bytearray()
        put_varint(rec, (newer is not None) | ((len(vals) - NC) // 2) << 1 | mask << (1 + self.tb))
        for v in body:
            put_varint(rec, v)
        return rec

    def _code(self, vals, newer):
        """The shorter of vals absolute and vals against newer."""
        rec = self._encode(vals, None)
        if newer is not None and rec[0]:
            d = self._encode(vals, newer)
            if len(d) < len(rec):
                return d
        return rec

    def _newest(self):
        h, raw, _ = self._read(self.tail)
        return self._decode(h, raw, None)

    def _values(self, n):
        if n == self.newest and self.count:
            return self._newest()
        if not self.holds(n) or n <= self.newest - self.count:
            return ()
        return self.buckets().get(n, ())

    def advance(self, n):
        """Make bucket n the newest; the buckets time skipped read as zeros
        and the oldest beyond `slots` go (with their references). The old
        newest stays absolute: against a silent bucket nothing is shorter."""
        if n <= self.newest:
            return
        k = min(n - self.newest, self.slots)
        size = len(self.data)
        self.before = self.tail if k == 1 else size + k - 2
        self.tail = size + k - 1
        self.data += bytes(k)
        self.count += k
        self.newest = n
        over = self.count - self.slots
        if over > 0:
            off = 0
            for _ in range(over):
                h, raw, off = self._read(off)
                self._release(h, raw)
            self.data = self.data[off:]
            self.count = self.slots
            self.tail -= off
            self.before = self.before - off if self.count > 1 else -1

    def _release(self, h, raw):
        """Give back the references of one record's top remotes."""
        if h and self.table is not None:
            ntop = (h >> 1) & ((1 << self.tb) - 1)
            for j in range(len(raw) - 2 * ntop, len(raw), 2):
                self.table.drop(raw[j])

    def buckets(self):
        """{n: values} of every bucket with traffic, in one pass (history
        reads them all): parsed oldest first, resolved newest first."""
        recs = []
        off = 0
        end = len(self.data)
        while off < end:
            h, raw, off = self._read(off)
            recs.append((h, raw))
        out = {}
        n = self.newest
        newer = ZERO_ROW
        for i in range(len(recs) - 1, -1, -1):
            h, raw = recs[i]
            if h:
                newer = out[n] = self._decode(h, raw, newer)
            else:
                newer = ZERO_ROW
            n -= 1
        return out

    def sizes(self):
        """Bytes of each record, oldest first (what a bucket costs)."""
        out = []
        off = 0
        while off < len(self.data):
            start = off
            off = self._read(off)[2]
            out.append(off - start)
        return out

    def row(self, n, vals=None):
        """Bucket n's counters, in COUNTERS order (vals: its values, when
        the caller decoded them already)."""
        if vals is None:
            vals = self._values(n)
        row = list(vals[:NC])
        return row + [0] * (NC - len(row))

    def top_list(self, n, vals=None):
        if vals is None:
            vals = self._values(n)
        return [[self.table.name(vals[k]), vals[k + 1]] for k in range(NC, len(vals), 2)]

    def put(self, n, row, pairs=()):
        """Write bucket n, the newest: its counters and (fine ring) its top
        remotes, pairs [(bytes, remote)] best first; a remote the shared
        table has no room for is left out (the table counts it). The record
        before it is written again against it."""
        if n != self.newest or not self.count:
            return
        vals = list(row[:NC])
        if self.table is not None:
            for b, r in pairs:
                ref = self.table.take(r)
                if ref:
                    vals.append(ref)
                    vals.append(b)
        h, raw, _ = self._read(self.tail)
        old = self._decode(h, raw, None)
        self._release(h, raw)
        rec = self._encode(vals, None)
        # a new bytes of the exact size (a bytearray keeps what it grew by)
        if self.before >= 0:
            ph, praw, _ = self._read(self.before)
            prev = self._code(self._decode(ph, praw, old), vals)
            self.data = self.data[:self.before] + prev + rec
            self.tail = self.before + len(prev)
        else:
            self.data = self.data[:self.tail] + rec

    def fold_row(self, n, row):
        """Add a fine bucket's counters to coarse bucket n (distinct counts:
        the larger of the two, since sets cannot be summed)."""
        old = self.row(n)
        for i in range(NC):
            if i in DISTINCT:
                if row[i] > old[i]:
                    old[i] = row[i]
            else:
                old[i] += row[i]
        self.put(n, old)

    def release(self):
        """Give back every reference into the shared table (the device goes)."""
        off = 0
        while off < len(self.data):
            h, raw, off = self._read(off)
            self._release(h, raw)
        self.data = b""
        self.count = 0
        self.tail = -1
        self.before = -1


class NoRing:
    """What a device has before it first moves traffic: holds nothing."""
    slots = 1
    newest = -1
    count = 0

    def holds(self, n):
        return False

    def top_list(self, n, vals=None):
        return []

    def row(self, n, vals=None):
        return list(ZERO_ROW)

    def buckets(self):
        return {}

    def release(self):
        pass


NO_RING = NoRing()


def best(per_remote, n, hidden=None):
    """The n remotes with most bytes: [(bytes, remote)], largest first;
    remotes for which hidden(remote) is true (the ignore list) left out."""
    pairs = [(b, r) for r, b in per_remote.items() if hidden is None or not hidden(r)]
    pairs.sort(key=lambda p: -p[0])
    return pairs[:n]


try:
    from binascii import crc32
except ImportError:  # a port without binascii: FNV-1a, slower, as good here
    def crc32(data):
        h = 0x811C9DC5
        for c in data:
            h = ((h ^ c) * 0x01000193) & 0xFFFFFFFF
        return h

M32 = 0xFFFFFFFF
EXACT = 32  # distinct values counted exactly up to this many
HLL_BITS = 8  # distinct_add has it written out
HLL_M = 1 << HLL_BITS  # 256 one-byte registers: ~6.5 % standard error


def mix(h):
    """murmur3's finaliser: crc32 of similar addresses differ in few bits."""
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & M32
    h ^= h >> 16
    return h


# leading zero bits of a byte (8 for 0): ranks without a bit loop
LZ8 = bytes([8] + [10 - len(bin(i)) for i in range(1, 256)])


def hll_add(regs, bits, h):
    """One 32-bit hash into HyperLogLog registers (2**bits of them, one byte
    each): the low bits pick the register, the rest give the rank (leading
    zeros + 1 of the remaining 32 - bits bits, at most 33 - bits)."""
    j = h & ((1 << bits) - 1)
    w = h >> bits
    width = 32 - bits
    lz = 0
    shift = width - 8
    while shift > -8:
        byte = (w >> shift) & 0xFF if shift >= 0 else (w << -shift) & 0xFF
        z = LZ8[byte]
        lz += z
        if z < 8:
            break
        shift -= 8
    rank = min(lz, width) + 1
    if rank > regs[j]:
        regs[j] = rank


def hll_estimate(regs):
    """The distinct count HyperLogLog registers stand for (with the small
    range correction)."""
    s = 0.0
    zeros = 0
    for r in regs:
        s += 2.0 ** -r
        if r == 0:
            zeros += 1
    m = len(regs)
    e = 0.7213 / (1 + 1.079 / m) * m * m / s
    if e <= 2.5 * m and zeros:
        e = m * math.log(m / zeros)
    return int(e + 0.5)


def distinct_add(s, v, k=1):
    """Count v (a 32-bit value: a crc32, a port) in sketch s; the sketch
    after it. A sketch is None (nothing yet: a silent device pays
    nothing), the values themselves in a small list (`in` on it is one C
    loop, and MicroPython's arrays have no `in`) up to EXACT of them, then
    a HyperLogLog of HLL_M one-byte registers (a bytearray). Bounded
    whatever the traffic, and no object of its own: a device holds two.
    k spreads the values before mixing (ports are small numbers)."""
    if s is None:
        return [v]
    if type(s) is list:
        if v in s:
            return s
        if len(s) < EXACT:
            s.append(v)
            return s
        regs = bytearray(HLL_M)
        for x in s:
            hll_add(regs, HLL_BITS, mix((x * k) & M32))
        s = regs
    # hll_add(s, 8, mix(v * k)) written out: a busy device's every flow
    # comes here, and calls are what costs
    h = (v * k) & M32
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & M32
    h ^= h >> 16
    w = h >> 8
    if w >> 16:
        rank = LZ8[w >> 16] + 1
    elif w >> 8:
        rank = LZ8[w >> 8] + 9
    else:
        rank = LZ8[w] + 17
    if rank > s[h & 0xFF]:
        s[h & 0xFF] = rank
    return s


def distinct_count(s):
    if s is None:
        return 0
    if type(s) is list:
        return len(s)
    return hll_estimate(s)


PORT_K = 0x9E3779B1  # ports are spread by this before mixing


class Device:
    """One device's open bucket and its rings. The open bucket keeps at most
    `keep` remotes with their bytes (`per_remote`); once full, a new remote
    with more bytes than the smallest takes its place (the smallest's bytes
    go to `others`), one with fewer goes to `others` directly. The totals
    in `open` (COUNTERS but the two distinct counts; a list: the scan adds
    to it per flow, and a list's items add 3x faster than an array's) are
    always exact. `remotes` and `ports` are sketches (distinct_add). Rings
    are NO_RING until the device first closes a bucket with traffic."""
    __slots__ = ("open", "remotes", "ports", "per_remote", "others", "floor",
                 "fine", "coarse")

    def __init__(self, fine_slots=0, coarse_slots=0, top=0):
        self.open = [0] * OPEN
        self.remotes = None  # sketch of the remotes' crc32 (distinct_add)
        self.ports = None  # sketch of the remote ports
        self.per_remote = {}
        self.others = 0  # bytes of remotes not kept in per_remote
        self.floor = 0  # no kept remote has fewer bytes than this
        self.fine = NO_RING
        self.coarse = NO_RING

    def current(self):
        return self.open + [distinct_count(self.remotes), distinct_count(self.ports)]

    def remote_count(self):
        """Distinct remotes of the open bucket (an estimate past EXACT)."""
        return distinct_count(self.remotes)


class Digests:
    """Every device's digests. Fed by the scan, closed by the clock."""

    def __init__(self, cfg, mono_ms, wall_s):
        self.bucket_ms = cfg["bucket_seconds"] * 1000
        self.fine_slots = cfg["fine_buckets"]
        self.coarse_slots = cfg["coarse_buckets"]
        self.factor = cfg["coarse_factor"]
        self.top = cfg["top_remotes"]
        # remotes kept with their bytes in an open bucket, per device
        self.keep = max(self.top, cfg.get("digest_remotes", 64))
        self.clock = Clock(self.bucket_ms, mono_ms, wall_s)
        self.open_n = self.clock.bucket(mono_ms)
        self.first_n = self.open_n
        self.devices = {}
        self.table = Remotes(cfg.get("digest_remote_table", 4096))
        self.folded = 0  # remotes whose bytes went to `others` (not kept by name)
        self.hidden = None  # remote -> True to leave it out of top lists (names.Names)
        self.on_close = None  # fn(key, n, per_remote) as a bucket closes (names.Names)

    def device(self, key):
        d = self.devices.get(key)
        if d is None:
            d = self.devices[key] = Device()
        return d

    def _rings(self, d):
        d.fine = Ring(self.fine_slots, self.top, self.table)
        d.fine.begin(self.open_n - 1)
        d.coarse = Ring(self.coarse_slots, 0)
        d.coarse.begin((self.open_n - 1) // self.factor)

    def forget(self, key):
        d = self.devices.pop(key, None)
        if d is not None:
            d.fine.release()
            d.coarse.release()

    def add(self, key, remote, port, bo, bi, po, pi, new, unreplied):
        """Account one flow's movement since the last scan to device `key`.
        Called per changed flow of every scan: the common case (a remote
        and port already counted in this bucket) is a few list and dict
        operations, no call."""
        d = self.devices.get(key)
        if d is None:
            d = self.device(key)
        o = d.open
        o[0] += bo
        o[1] += bi
        o[2] += po
        o[3] += pi
        if new:
            o[4] += 1
            if unreplied:
                o[5] += 1
        if bo or bi or new:
            if port:
                s = d.ports
                if s is None or type(s) is not list or port not in s:
                    d.ports = distinct_add(s, port, PORT_K)
            pr = d.per_remote
            b = bo + bi
            had = pr.get(remote)
            if had is not None:
                pr[remote] = had + b
                return
            d.remotes = distinct_add(d.remotes, crc32(remote.encode()))
            if not b:
                return
            if len(pr) < self.keep:
                pr[remote] = b
            elif b <= d.floor:
                d.others += b
                self.folded += 1
            else:
                self._make_room(d, pr, remote, b)

    def _make_room(self, d, pr, remote, b):
        """space-saving: the smallest kept remote gives its place to one
        with more bytes; either way the smaller one's bytes go to others."""
        lb = min(pr.values())
        if b <= lb:
            d.others += b
        else:
            for low in pr:
                if pr[low] == lb:
                    break
            del pr[low]
            d.others += lb
            pr[remote] = b
        d.floor = lb
        self.folded += 1

    def tick(self, mono_ms, wall_s=None):
        """Close every bucket that ended before mono_ms. Returns the closed
        bucket numbers (oldest first); the newest closed one is what an
        agent publishes as its flow digest."""
        if wall_s is not None:
            self.clock.observe(mono_ms, wall_s)
        now_n = self.clock.bucket(mono_ms)
        closed = []
        while self.open_n < now_n:
            self._close(self.open_n)
            closed.append(self.open_n)
            self.open_n += 1
            if now_n - self.open_n > self.fine_slots:
                # a long stall: nothing happened in between; skip ahead
                self.open_n = now_n
        return closed

    def _close(self, n):
        m = n // self.factor
        for key, d in self.devices.items():
            row = d.current()
            if d.fine is NO_RING:
                if not any(row):
                    continue  # seen but silent: no rings, nothing to clear
                self._rings(d)
            top = best(d.per_remote, self.top, self.hidden)
            if self.on_close is not None:
                self.on_close(key, n, d.per_remote)
            d.fine.advance(n)
            d.fine.put(n, row, top)
            # the coarse ring keeps counters only: no reader asks for a
            # half-hour's top remotes (history's coarse points have none)
            c = d.coarse
            if m > c.newest:
                c.advance(m)
            c.fold_row(m, row)
            d.open = [0] * OPEN
            d.remotes = None
            d.ports = None
            d.per_remote = {}
            d.others = 0
            d.floor = 0

    # -- reading -----------------------------------------------------------

    def current(self, key):
        """The open bucket of a device as a dict (zeros if unknown)."""
        d = self.devices.get(key)
        row = d.current() if d else [0] * NC
        out = dict(zip(COUNTERS, row))
        out["t"] = self.clock.label(self.open_n)
        out["top"] = [[r, b] for b, r in best(d.per_remote, self.top, self.hidden)] if d else []
        return out

    def recent_top(self, key):
        """The top remotes of the open bucket and the last closed one
        together: [[remote, bytes]], largest first. What "talks to now"
        means to a person: a minute that just began has no top yet."""
        d = self.devices.get(key)
        if d is None:
            return []
        merged = dict(d.per_remote)
        last = self.open_n - 1
        if d.fine.holds(last):
            for r, b in d.fine.top_list(last):
                merged[r] = merged.get(r, 0) + b
        return [[r, b] for b, r in best(merged, self.top, self.hidden)]

    def _devs(self, key):
        if key is None:
            return list(self.devices.values())
        d = self.devices.get(key)
        return [d] if d is not None else []

    def closed(self, key, n):
        """Bucket n of one device (or of all devices if key is None) as a
        dict, or None when it is no longer in the fine ring."""
        return self._points(key, n, n)[0]

    def _points(self, key, first, last):
        """closed() of buckets first..last, each ring decoded once: the
        devices' counters summed (distinct counts of the home: the
        maximum) and their top remotes merged, bucket by bucket."""
        rows = {}
        tops = {}
        home = key is None
        for d in self._devs(key):
            f = d.fine
            if first == last == f.newest:
                got = {first: f._values(first)} if f.count else {}
            else:
                got = f.buckets()
            for n, vals in got.items():
                if n < first or n > last or not f.holds(n) or not vals:
                    continue
                row = rows.get(n)
                if row is None:
                    rows[n] = list(vals[:NC])
                    tops[n] = top = {}
                else:
                    for i in range(NC):
                        if home and i >= DISTINCT[0]:
                            if vals[i] > row[i]:
                                row[i] = vals[i]
                        else:
                            row[i] += vals[i]
                    top = tops[n]
                for k in range(NC, len(vals), 2):
                    rem = f.table.name(vals[k])
                    top[rem] = top.get(rem, 0) + vals[k + 1]
        points = []
        for n in range(first, last + 1):
            out = dict(zip(COUNTERS, rows.get(n, ZERO_ROW)))
            out["t"] = self.clock.label(n)
            out["top"] = [[r, b] for b, r in best(tops.get(n, {}), self.top)]
            points.append(out)
        return points

    def history(self, key, minutes):
        """One point per elapsed bucket in the last `minutes` (fine ring),
        plus coarse points when the window reaches further back."""
        want = max(1, (minutes * 60000) // self.bucket_ms)
        last = self.open_n - 1
        first = max(self.first_n, last - want + 1, last - self.fine_slots + 1)
        points = self._points(key, first, last)
        out = {"bucket_seconds": self.bucket_ms // 1000, "points": points,
               "current": self.current(key) if key is not None else None}
        span = self.bucket_ms * self.factor
        if want > self.fine_slots:
            devs = self._devs(key)
            cdec = [(d.coarse, d.coarse.buckets()) for d in devs]
            coarse = []
            last_m = last // self.factor
            first_m = max(self.first_n // self.factor, last_m - (want // self.factor),
                          last_m - self.coarse_slots + 1)
            for m in range(first_m, last_m + 1):
                row = [0] * NC
                for c, got in cdec:
                    vals = got.get(m)
                    if vals is not None and c.holds(m):
                        r = c.row(m, vals)
                        for i in range(NC):
                            row[i] += r[i]
                p = dict(zip(COUNTERS, row))
                p["t"] = (m * span + self.clock.drift) // 1000
                coarse.append(p)
            out["coarse"] = coarse
            out["coarse_seconds"] = span // 1000
        return out
