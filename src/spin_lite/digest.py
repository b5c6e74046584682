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
ZERO_ROW = [0] * NC
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


def varints(buf, start, end):
    """The values put_varint wrote in buf[start:end] (most are one byte)."""
    vals = []
    v = 0
    shift = 0
    for c in buf[start:end]:
        if c < 0x80:
            if shift:
                vals.append(v | (c << shift))
                v = 0
                shift = 0
            else:
                vals.append(c)
        else:
            v |= (c & 0x7F) << shift
            shift += 7
    return vals


class Ring:
    """The last `slots` buckets, each one variable-length record in one
    bytes (`data`, oldest first) and its length in `lens`: a record
    is the NC counters as varints (trailing zeros left out when it has no
    top remotes: a silent bucket is empty), then (ref, bytes) pairs of its
    top remotes, refs being slot numbers + 1 in the shared Remotes table.
    Most counters of most buckets fit a byte or two: fixed columns wide
    enough for the busiest bucket cost 38 B a bucket, this ~10-30.
    A ring without a table (the coarse one) keeps no top remotes.
    Records are written when their bucket closes (fine) or rewritten as
    fine buckets fold in (coarse, only its newest); reading bucket n sums
    the lengths before it."""
    __slots__ = ("slots", "table", "data", "lens", "newest")

    def __init__(self, slots, top, table=None):
        self.slots = slots
        self.table = (table if table is not None else Remotes(0xFFFF)) if top else None
        self.data = b""
        # lengths: a byte while a record cannot pass 255 (10 bytes a varint at most)
        self.lens = bytearray() if 1 + NC * 10 + top * 13 <= 255 else array("H")
        self.newest = -1

    def holds(self, n):
        return self.newest - self.slots < n <= self.newest

    def begin(self, n):
        """A new ring's newest bucket is n, empty: a device's first traffic
        in the middle of a half-hour folds into that half-hour's record."""
        self.newest = n
        self.lens.append(0)

    def _at(self, n):
        """The index in lens of bucket n's record, or None (zeros)."""
        i = len(self.lens) - 1 - (self.newest - n)
        if i < 0 or not self.holds(n):
            return None
        return i

    def _values(self, n):
        i = self._at(n)
        if i is None or not self.lens[i]:
            return ()
        off = sum(self.lens[:i])
        return varints(self.data, off, off + self.lens[i])

    def _drop_refs(self, off, end):
        vals = varints(self.data, off, end)
        for k in range(NC, len(vals), 2):
            self.table.drop(vals[k])

    def advance(self, n):
        """Make bucket n the newest; the buckets time skipped read as zeros
        and the oldest beyond `slots` go (with their references)."""
        if n <= self.newest:
            return
        lens = self.lens
        k = min(n - self.newest, self.slots)
        for _ in range(k):
            lens.append(0)
        over = len(lens) - self.slots
        if over > 0:
            cut = sum(lens[:over])
            if self.table is not None:
                off = 0
                for i in range(over):
                    if lens[i]:
                        self._drop_refs(off, off + lens[i])
                    off += lens[i]
            self.data = self.data[cut:]
            lens[0:over] = lens[0:0]
        self.newest = n

    def buckets(self):
        """{n: values} of every bucket with a record, in one pass (history
        reads them all: no sum of lengths per bucket)."""
        out = {}
        off = 0
        n = self.newest - len(self.lens) + 1
        data = self.data
        for ln in self.lens:
            if ln:
                out[n] = varints(data, off, off + ln)
                off += ln
            n += 1
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
        """Write bucket n: its counters and (fine ring) its top remotes,
        pairs [(bytes, remote)] best first; a remote the shared table has
        no room for is left out (the table counts it)."""
        i = self._at(n)
        if i is None:
            return
        rec = bytearray()
        if self.table is not None:
            refs = []
            for b, r in pairs:
                ref = self.table.take(r)
                if ref:
                    refs.append((ref, b))
        else:
            refs = ()
        last = NC
        if not refs:
            while last and not row[last - 1]:
                last -= 1
        for k in range(last):
            put_varint(rec, row[k])
        for ref, b in refs:
            put_varint(rec, ref)
            put_varint(rec, b)
        off = sum(self.lens[:i])
        end = off + self.lens[i]
        if self.table is not None and end > off:
            self._drop_refs(off, end)
        # a new bytes of the exact size (a bytearray keeps what it grew by);
        # mostly the newest record, at the end: one copy
        if end == len(self.data):
            self.data = (self.data[:off] if off < end else self.data) + rec
        else:
            self.data = self.data[:off] + rec + self.data[end:]
        self.lens[i] = len(rec)

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
        if self.table is not None:
            off = 0
            for ln in self.lens:
                if ln:
                    self._drop_refs(off, off + ln)
                off += ln
        self.data = b""
        self.lens = self.lens[0:0]


class NoRing:
    """What a device has before it first moves traffic: holds nothing."""
    slots = 1
    newest = -1

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
HLL_BITS = 8  # Distinct.add has it written out
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


class Distinct:
    """How many distinct values: exact (the values themselves, in a small
    list: `in` on it is one C loop, and MicroPython's arrays have no `in`)
    up to EXACT, then a HyperLogLog of HLL_M one-byte registers.
    Memory is bounded whatever the traffic; `reset` gives it back at each
    bucket. K spreads the values before mixing (ports are small numbers)."""
    __slots__ = ("small", "regs")
    K = 1

    def __init__(self):
        self.small = None  # made on the first value: a silent device pays nothing
        self.regs = None

    def add(self, v):
        """v: a 32-bit value (a crc32, a port)."""
        if self.regs is None:
            s = self.small
            if s is None:
                self.small = [v]
                return
            if v in s:
                return
            if len(s) < EXACT:
                s.append(v)
                return
            self.regs = bytearray(HLL_M)
            self.small = None
            for x in s:
                hll_add(self.regs, HLL_BITS, mix((x * self.K) & M32))
        # hll_add(self.regs, 8, mix(v * K)) written out: a busy device's
        # every flow comes here, and calls are what costs
        h = (v * self.K) & M32
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
        regs = self.regs
        if rank > regs[h & 0xFF]:
            regs[h & 0xFF] = rank

    def count(self):
        if self.regs is None:
            return len(self.small) if self.small is not None else 0
        return hll_estimate(self.regs)

    def reset(self):
        self.small = None
        self.regs = None


class Ports(Distinct):
    __slots__ = ()
    K = 0x9E3779B1


class Device:
    """One device's open bucket and its rings. The open bucket keeps at most
    `keep` remotes with their bytes (`per_remote`); once full, a new remote
    with more bytes than the smallest takes its place (the smallest's bytes
    go to `others`), one with fewer goes to `others` directly. The totals
    in `open` (COUNTERS but the two distinct counts; a list: the scan adds
    to it per flow, and a list's items add 3x faster than an array's) are
    always exact. Rings are NO_RING until the device first closes a bucket
    with traffic."""
    __slots__ = ("open", "remotes", "ports", "per_remote", "others", "floor",
                 "fine", "coarse")

    def __init__(self, fine_slots=0, coarse_slots=0, top=0):
        self.open = [0] * OPEN
        self.remotes = Distinct()
        self.ports = Ports()
        self.per_remote = {}
        self.others = 0  # bytes of remotes not kept in per_remote
        self.floor = 0  # no kept remote has fewer bytes than this
        self.fine = NO_RING
        self.coarse = NO_RING

    def current(self):
        return self.open + [self.remotes.count(), self.ports.count()]


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
                s = d.ports.small
                if s is None or port not in s:
                    d.ports.add(port)
            pr = d.per_remote
            b = bo + bi
            had = pr.get(remote)
            if had is not None:
                pr[remote] = had + b
                return
            d.remotes.add(crc32(remote.encode()))
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
            d.remotes.reset()
            d.ports.reset()
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

    def closed(self, key, n, decoded=None):
        """Bucket n of one device (or of all devices if key is None) as a
        dict, or None when it is no longer in the fine ring. decoded:
        {id(device): its fine ring's buckets()}, when reading many n."""
        devs = self._devs(key)
        row = [0] * NC
        tops = {}
        for d in devs:
            f = d.fine
            if not f.holds(n):
                continue
            vals = f._values(n) if decoded is None else decoded[id(d)].get(n, ())
            r = f.row(n, vals)
            for i in range(NC):
                row[i] = max(row[i], r[i]) if (i in DISTINCT and key is None) else row[i] + r[i]
            for rem, b in f.top_list(n, vals):
                tops[rem] = tops.get(rem, 0) + b
        out = dict(zip(COUNTERS, row))
        out["t"] = self.clock.label(n)
        out["top"] = [[r, b] for b, r in best(tops, self.top)]
        return out

    def history(self, key, minutes):
        """One point per elapsed bucket in the last `minutes` (fine ring),
        plus coarse points when the window reaches further back."""
        want = max(1, (minutes * 60000) // self.bucket_ms)
        last = self.open_n - 1
        first = max(self.first_n, last - want + 1, last - self.fine_slots + 1)
        decoded = {}
        for d in self._devs(key):
            decoded[id(d)] = d.fine.buckets()
        points = [self.closed(key, n, decoded) for n in range(first, last + 1)]
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
