"""Digests: what each device did, per time bucket, in fixed-size rings.

Theory of operation
-------------------
Time is cut into buckets (60 s by default). Bucket numbers come from the
monotonic clock, aligned once, at start, so that boundaries fall on
wall-clock minutes: n = (monotonic_ms + align) // bucket_ms. A router boots
without a clock and jumps when NTP arrives; such a jump only changes the
wall-clock *label* of buckets (see Clock), never which buckets exist.

Each device has one open bucket (counters, the set of remotes and remote
ports it talked to, bytes per remote) and two rings of closed buckets: the
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


WIDE = 2  # bytes out/in: 64-bit; the other counters fit in 32 bits
SMALL = NC - WIDE
SMALL_MAX = 0xFFFFFFFF  # a coarse slot stops there (4e9 packets an hour)


class Ring:
    """`slots` buckets of NC counters and `top` remotes each. The byte
    counters are kept in `octets` ('Q'), the others in `counts` ('I'):
    8 bytes less per counter and slot than all in 'Q'."""
    __slots__ = ("slots", "top", "octets", "counts", "tops", "top_bytes", "newest")

    def __init__(self, slots, top):
        self.slots = slots
        self.top = top
        self.octets = array("Q", [0] * (slots * WIDE))
        self.counts = array("I", [0] * (slots * SMALL))
        self.tops = [None] * (slots * top)
        self.top_bytes = array("Q", [0] * (slots * top))
        self.newest = -1

    def clear_slot(self, n):
        self.put_row(n, ZERO_ROW)
        base = (n % self.slots) * self.top
        for i in range(self.top):
            self.tops[base + i] = None
            self.top_bytes[base + i] = 0

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
        self.octets[w] = row[0]
        self.octets[w + 1] = row[1]
        base = (n % self.slots) * SMALL
        for i in range(SMALL):
            self.counts[base + i] = min(row[WIDE + i], SMALL_MAX)

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
            r = self.tops[base + i]
            if r is not None:
                out.append([r, self.top_bytes[base + i]])
        return out

    def put_top(self, n, pairs):
        """pairs: [(bytes, remote)] best first, at most `top`."""
        base = (n % self.slots) * self.top
        for i in range(self.top):
            if i < len(pairs):
                self.top_bytes[base + i] = pairs[i][0]
                self.tops[base + i] = pairs[i][1]
            else:
                self.top_bytes[base + i] = 0
                self.tops[base + i] = None


def best(per_remote, n, hidden=None):
    """The n remotes with most bytes: [(bytes, remote)], largest first;
    remotes for which hidden(remote) is true (the ignore list) left out."""
    pairs = [(b, r) for r, b in per_remote.items() if hidden is None or not hidden(r)]
    pairs.sort(key=lambda p: -p[0])
    return pairs[:n]


class Device:
    """One device's open bucket and its rings."""
    __slots__ = ("open", "remotes", "ports", "per_remote", "fine", "coarse")

    def __init__(self, fine_slots, coarse_slots, top):
        self.open = array("Q", [0] * NC)
        self.remotes = set()
        self.ports = set()
        self.per_remote = {}
        self.fine = Ring(fine_slots, top)
        self.coarse = Ring(coarse_slots, top)

    def current(self):
        row = [self.open[i] for i in range(NC)]
        row[6] = len(self.remotes)
        row[7] = len(self.ports)
        return row


class Digests:
    """Every device's digests. Fed by the scan, closed by the clock."""

    def __init__(self, cfg, mono_ms, wall_s):
        self.bucket_ms = cfg["bucket_seconds"] * 1000
        self.fine_slots = cfg["fine_buckets"]
        self.coarse_slots = cfg["coarse_buckets"]
        self.factor = cfg["coarse_factor"]
        self.top = cfg["top_remotes"]
        self.clock = Clock(self.bucket_ms, mono_ms, wall_s)
        self.open_n = self.clock.bucket(mono_ms)
        self.first_n = self.open_n
        self.devices = {}
        self.remote_names = {}  # shares one string object per remote
        self.hidden = None  # remote -> True to leave it out of top lists (names.Names)
        self.on_close = None  # fn(key, n, per_remote) as a bucket closes (names.Names)

    def device(self, key):
        d = self.devices.get(key)
        if d is None:
            d = Device(self.fine_slots, self.coarse_slots, self.top)
            d.fine.newest = self.open_n - 1
            d.coarse.newest = (self.open_n - 1) // self.factor
            self.devices[key] = d
        return d

    def forget(self, key):
        self.devices.pop(key, None)

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
            r = self.remote_names.get(remote)
            if r is None:
                if len(self.remote_names) > 65536:
                    self.remote_names = {}
                self.remote_names[remote] = r = remote
            d.remotes.add(r)
            if port:
                d.ports.add(port)
            if bo or bi:
                d.per_remote[r] = d.per_remote.get(r, 0) + bo + bi

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
            d.remotes = set()
            d.ports = set()
            d.per_remote = {}

    # -- reading -----------------------------------------------------------

    def current(self, key):
        """The open bucket of a device as a dict (zeros if unknown)."""
        d = self.devices.get(key)
        row = d.current() if d else [0] * NC
        out = dict(zip(COUNTERS, row))
        out["t"] = self.clock.label(self.open_n)
        out["top"] = [[r, b] for b, r in best(d.per_remote, self.top, self.hidden)] if d else []
        return out

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
