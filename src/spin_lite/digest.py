"""Digests: what each device did, per time bucket, in fixed-size rings.

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
fine ring (the last `fine_buckets` buckets) and the coarse ring (each slot
folds `coarse_factor` fine buckets; distinct counts take the maximum, since
sets cannot be summed). Rings are flat arrays indexed by bucket number
modulo the ring size; a ring remembers the newest bucket it holds, and
slots that time skipped are zeroed. Memory therefore depends on the number
of devices and the configuration, never on traffic.

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


WIDE = 2  # bytes out/in
SMALL = NC - WIDE
SMALL_MAX = 0xFFFFFFFF  # a coarse slot stops there (4e9 packets an hour)
LIMITS = {"H": 0xFFFF, "I": 0xFFFFFFFF, "Q": 0xFFFFFFFFFFFFFFFF}
WIDER = {"H": "I", "I": "Q"}


def widened(arr, code, v):
    """(arr, code), or a copy in a wider type code when v does not fit:
    counters start small (a quiet device's minute fits in 16 or 32 bits)
    and widen only in the rings that need it. (MicroPython's arrays have
    no .typecode: the code is kept beside the array.)"""
    if v <= LIMITS[code]:
        return arr, code
    while v > LIMITS[code]:
        code = WIDER[code]
    return array(code, list(arr)), code


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


class Ring:
    """`slots` buckets of NC counters and `top` remotes each. The byte
    counters are kept in `octets`, the others in `counts`, the top remotes
    as references into the shared Remotes table (`tops`, 'H') with their
    bytes in `top_bytes`. Counters start at 16 or 32 bits and widen (see
    widened) when a value needs it; `counts` stop at SMALL_MAX."""
    __slots__ = ("slots", "top", "octets", "counts", "tops", "top_bytes", "newest", "table",
                 "oc", "cc", "bc")

    def __init__(self, slots, top, table=None):
        self.slots = slots
        self.top = top
        self.table = table if table is not None else Remotes(0xFFFF)
        self.octets = array("I", [0] * (slots * WIDE))
        self.counts = array("H", [0] * (slots * SMALL))
        self.tops = array("H", [0] * (slots * top))
        self.top_bytes = array("I", [0] * (slots * top))
        self.oc, self.cc, self.bc = "I", "H", "I"  # their type codes
        self.newest = -1

    def clear_slot(self, n):
        self.put_row(n, ZERO_ROW)
        self.put_top(n, ())

    def advance(self, n):
        """Make bucket n the newest, zeroing slots skipped on the way."""
        if n <= self.newest:
            return
        start = max(self.newest + 1, n - self.slots + 1)
        for m in range(start, n + 1):
            self.clear_slot(m)
        self.newest = n

    def holds(self, n):
        return self.newest - self.slots < n <= self.newest

    def row(self, n):
        """Bucket n's counters, in COUNTERS order."""
        w = (n % self.slots) * WIDE
        base = (n % self.slots) * SMALL
        return [self.octets[w], self.octets[w + 1]] + [self.counts[base + i] for i in range(SMALL)]

    def put_row(self, n, row):
        w = (n % self.slots) * WIDE
        self.octets, self.oc = widened(self.octets, self.oc, max(row[0], row[1]))
        self.octets[w] = row[0]
        self.octets[w + 1] = row[1]
        base = (n % self.slots) * SMALL
        small = [min(row[WIDE + i], SMALL_MAX) for i in range(SMALL)]
        self.counts, self.cc = widened(self.counts, self.cc, max(small))
        for i in range(SMALL):
            self.counts[base + i] = small[i]

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
        self.put_row(n, old)

    def top_list(self, n):
        base = (n % self.slots) * self.top
        out = []
        for i in range(self.top):
            ref = self.tops[base + i]
            if ref:
                out.append([self.table.name(ref), self.top_bytes[base + i]])
        return out

    def put_top(self, n, pairs):
        """pairs: [(bytes, remote)] best first, at most `top`."""
        base = (n % self.slots) * self.top
        table = self.table
        refs = [table.take(pairs[i][1]) if i < len(pairs) else 0 for i in range(self.top)]
        for i in range(self.top):
            table.drop(self.tops[base + i])
            b = pairs[i][0] if refs[i] else 0
            self.top_bytes, self.bc = widened(self.top_bytes, self.bc, b)
            self.top_bytes[base + i] = b
            self.tops[base + i] = refs[i]

    def release(self):
        """Give back every reference into the shared table (the device goes)."""
        for i in range(len(self.tops)):
            self.table.drop(self.tops[i])
            self.tops[i] = 0


class NoRing:
    """What a device has before it first moves traffic: holds nothing."""
    slots = 1
    newest = -1

    def holds(self, n):
        return False

    def top_list(self, n):
        return []

    def row(self, n):
        return list(ZERO_ROW)

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
HLL_BITS = 8
HLL_M = 1 << HLL_BITS  # 256 one-byte registers: ~6.5 % standard error


def mix(h):
    """murmur3's finaliser: crc32 of similar addresses differ in few bits."""
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & M32
    h ^= h >> 16
    return h


def hll_add(regs, bits, h):
    """One 32-bit hash into HyperLogLog registers (2**bits of them, one byte
    each): the low bits pick the register, the rest give the rank."""
    j = h & ((1 << bits) - 1)
    w = h >> bits
    rank = 1
    top = 1 << (31 - bits)
    while rank <= 32 - bits and not (w & top):
        rank += 1
        w <<= 1
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
    """How many distinct values: exact (a set of hashes) up to EXACT, then
    a HyperLogLog of HLL_M one-byte registers. Memory is bounded whatever
    the traffic; `reset` gives the registers back at each bucket."""
    __slots__ = ("small", "regs")

    def __init__(self):
        self.small = None  # made on the first value: a silent device pays nothing
        self.regs = None

    def add_hash(self, h):
        h = mix(h & M32)
        if self.regs is None:
            if self.small is None:
                self.small = set()
            self.small.add(h)
            if len(self.small) <= EXACT:
                return
            self.regs = bytearray(HLL_M)
            hs, self.small = self.small, None
            for x in hs:
                self._reg(x)
            return
        self._reg(h)

    def _reg(self, h):
        hll_add(self.regs, HLL_BITS, h)

    def count(self):
        if self.regs is None:
            return len(self.small) if self.small is not None else 0
        return hll_estimate(self.regs)

    def reset(self):
        self.small = None
        self.regs = None


class Device:
    """One device's open bucket and its rings. The open bucket keeps at most
    `keep` remotes with their bytes (`per_remote`); once full, a new remote
    with more bytes than the smallest takes its place (the smallest's bytes
    go to `others`), one with fewer goes to `others` directly. The totals
    in `open` are always exact. Rings are NO_RING until the device first
    closes a bucket with traffic."""
    __slots__ = ("open", "remotes", "ports", "per_remote", "others", "floor",
                 "fine", "coarse")

    def __init__(self, fine_slots=0, coarse_slots=0, top=0):
        self.open = array("Q", [0] * NC)
        self.remotes = Distinct()
        self.ports = Distinct()
        self.per_remote = {}
        self.others = 0  # bytes of remotes not kept in per_remote
        self.floor = 0  # no kept remote has fewer bytes than this
        self.fine = NO_RING
        self.coarse = NO_RING

    def current(self):
        row = [self.open[i] for i in range(NC)]
        row[6] = self.remotes.count()
        row[7] = self.ports.count()
        return row


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
        d.fine.newest = self.open_n - 1
        d.coarse = Ring(self.coarse_slots, self.top, self.table)
        d.coarse.newest = (self.open_n - 1) // self.factor

    def forget(self, key):
        d = self.devices.pop(key, None)
        if d is not None:
            d.fine.release()
            d.coarse.release()

    def add(self, key, remote, port, bo, bi, po, pi, new, unreplied):
        """Account one flow's movement since the last scan to device `key`."""
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
            pr = d.per_remote
            b = bo + bi
            had = pr.get(remote)
            if had is None:
                d.remotes.add_hash(crc32(remote.encode()))
            if port:
                d.ports.add_hash(port * 0x9E3779B1)
            if not b:
                return
            if had is not None:
                pr[remote] = had + b
            elif len(pr) < self.keep:
                pr[remote] = b
            elif b <= d.floor:
                d.others += b
                self.folded += 1
            else:
                # space-saving: the smallest kept remote makes room
                low = None
                lb = 0
                for r, rb in pr.items():
                    if low is None or rb < lb:
                        low, lb = r, rb
                if b <= lb:
                    d.floor = lb
                    d.others += b
                else:
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
            d.fine.put_row(n, row)
            d.fine.put_top(n, top)
            c = d.coarse
            if m > c.newest:
                c.advance(m)
            c.fold_row(m, row)
            if top:
                merged = {}
                for r, b in c.top_list(m):
                    merged[r] = b
                for b, r in top:
                    merged[r] = merged.get(r, 0) + b
                c.put_top(m, best(merged, self.top))
            for i in range(NC):
                d.open[i] = 0
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

    def closed(self, key, n):
        """Bucket n of one device (or of all devices if key is None) as a
        dict, or None when it is no longer in the fine ring."""
        devs = self._devs(key)
        row = [0] * NC
        tops = {}
        for d in devs:
            if not d.fine.holds(n):
                continue
            r = d.fine.row(n)
            for i in range(NC):
                row[i] = max(row[i], r[i]) if (i in DISTINCT and key is None) else row[i] + r[i]
            for rem, b in d.fine.top_list(n):
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
        points = [self.closed(key, n) for n in range(first, last + 1)]
        out = {"bucket_seconds": self.bucket_ms // 1000, "points": points,
               "current": self.current(key) if key is not None else None}
        span = self.bucket_ms * self.factor
        if want > self.fine_slots:
            devs = self._devs(key)
            coarse = []
            last_m = last // self.factor
            first_m = max(self.first_n // self.factor, last_m - (want // self.factor),
                          last_m - self.coarse_slots + 1)
            for m in range(first_m, last_m + 1):
                row = [0] * NC
                for d in devs:
                    if d.coarse.holds(m):
                        r = d.coarse.row(m)
                        for i in range(NC):
                            row[i] += r[i]
                p = dict(zip(COUNTERS, row))
                p["t"] = (m * span + self.clock.drift) // 1000
                coarse.append(p)
            out["coarse"] = coarse
            out["coarse_seconds"] = span // 1000
        return out
