"""Endpoint names: remote IP -> the DNS names devices asked for, bounded.

SPIN kept an IP -> {domain -> expiry} map that nothing ever cleaned, so it
grew with every name a home resolved (research/spin.md §2.6). Here:

* at most `size` addresses and about `budget` bytes are kept (the bytes
  are an estimate: ENTRY_COST + the address's length for each address,
  NAME_COST + the name's length for each name; long names fill it before
  `size` does); when a new one would pass either, the
  expired ones go first, then the least recently used (learned or looked
  up), a sixteenth of the table at a time so a flood of unique names costs
  one sort per size/16 inserts instead of one per insert; every address
  dropped early is counted (`dropped`, and `dropped_bytes` for those the
  byte budget pushed out) for `status`;
* at most `per_ip` names per address (a CDN address is asked for under
  many names); the newest name comes first, the one learned longest ago
  goes when a new one arrives;
* what a name means over time (below).

What a name means over time. A DNS answer says: until its TTL runs out,
this address is that name's. A device that connected to it meanwhile
talks to that name for as long as the connection lasts, however long
after the TTL; a device that opens a connection to the address long after
the record expired got the address elsewhere (its own stale cache, another
name this router never saw, DoH), and the name may no longer be true. So
each name carries two times:

* `expires`: when its record runs out (seen + TTL, cut to `ttl_max`: a
  week-long TTL must not pin a name the address may no longer carry; TTL
  0 means now);
* `kept`: until when the name is shown. It starts at expires + `grace`
  (the device connects a moment after its answer, and the scanner sees
  the new flow up to a scan later). A flow that begins (`seen(ip, True,
  now)`) by expires + grace vouches for the name: kept moves to now +
  `hold`, and every later report of traffic to the address while the name
  is shown moves it on again, so a long stream keeps its name. A flow that
  begins later than that ends the name at once: the scanner keeps no
  per-flow records, so the address's flows cannot be told apart, and a
  name shown for a flow it may not belong to is worse than none.

A new answer for the name starts both times again. The scanner calls
`seen` from the agent's one per-flow sink (Agent.account); a flow first
met in the agent's first snapshot began at an unknown time and counts as
traffic, not as a beginning. `flows` reads conntrack afresh, so a late
flow is listed with the name until the next scan sees it begin (a scan
interval at most).

Times are whole seconds of the monotonic clock, passed in by the caller,
so the table is pure and tests need no clock.

Memory: one small list per address, [used, name, expires, kept, name,
expires, kept, ...], no per-entry objects or link nodes (MicroPython
counts every one).

`rows` and `restore` carry the table across an agent restart as
[ip, [names], expires, kept] rows in wall-clock seconds: the monotonic
clock starts again with the process, the wall clock does not.
"""


ENTRY_COST = 96  # a dict slot, the list, its use counter (CPython 3.11, measured ~180 B an address)
# a str header, two time ints (28 B each on CPython) and their list slots. Like
# ENTRY_COST an estimate below CPython's real figure (bench/names_seen.py,
# tracemalloc: 346 B an address with one name, 306 B before `kept` existed)
NAME_COST = 96
STRIDE = 3  # list slots per name: name, expires, kept


def cost(ip, entry):
    n = ENTRY_COST + len(ip)
    for i in range(1, len(entry), STRIDE):
        n += NAME_COST + len(entry[i])
    return n


class Endpoints:
    def __init__(self, size=4096, per_ip=4, grace=60, ttl_max=86400, budget=1048576, hold=600):
        self.size = max(1, size)
        self.budget = max(1, budget)
        self.bytes = 0  # estimated bytes held (see cost)
        self.per_ip = max(1, per_ip)
        self.grace = max(0, grace)
        self.ttl_max = max(0, ttl_max)
        self.hold = max(0, hold)
        self.table = {}  # ip -> [used, name, expires, kept, name, expires, kept, ...]
        self.clock = 0  # use counter: the order of learns and lookups
        self.dropped = 0  # addresses dropped before their names expired
        self.dropped_bytes = 0  # of those, dropped because of the byte budget
        self.expired = 0  # addresses whose names all ran out
        self.learned = 0  # names learned: the owner saves when this moved
        self.stale = 0  # names ended by a flow that began long after their record

    def __len__(self):
        return len(self.table)

    def learn(self, ip, name, ttl, now):
        """Remember that `ip` answers to `name` for `ttl` seconds from `now`."""
        expires = now + min(max(0, ttl), self.ttl_max)
        kept = expires + self.grace
        self.clock += 1
        self.learned += 1
        entry = self.table.get(ip)
        if entry is None:
            entry = self.table[ip] = [self.clock, name, expires, kept]
            self.bytes += cost(ip, entry)
            if len(self.table) > self.size or self.bytes > self.budget:
                self._shrink(now)
            return
        self.bytes -= cost(ip, entry)
        entry[0] = self.clock
        names = entry[1:]
        for i in range(0, len(names), STRIDE):
            if names[i] == name:
                # flows it vouched for keep it shown, a new answer or not
                kept = max(kept, names[i + 2])
                del names[i:i + STRIDE]
                break
        else:
            if len(names) >= STRIDE * self.per_ip:
                del names[-STRIDE:]
        entry[1:] = [name, expires, kept] + names
        self.bytes += cost(ip, entry)
        if self.bytes > self.budget:
            self._shrink(now)

    def seen(self, ip, began, now):
        """A flow to `ip` began (`began`) or moved traffic: the names it
        vouches for stay shown `hold` seconds more; a flow that began past
        a name's expires + grace ends that name (see above)."""
        entry = self.table.get(ip)
        if entry is None:
            return
        until = now + self.hold
        i = 1
        while i < len(entry):
            if began and now > entry[i + 1] + self.grace:
                self.bytes -= NAME_COST + len(entry[i])
                del entry[i:i + STRIDE]
                self.stale += 1
                continue
            if entry[i + 2] >= now and entry[i + 2] < until:
                entry[i + 2] = until
            i += STRIDE
        if len(entry) == 1:
            self.bytes -= cost(ip, entry)
            del self.table[ip]
            self.expired += 1

    def names_for(self, ip, now):
        """The names of `ip` still shown, newest first; [] when none. Counts
        as a use for the LRU order."""
        entry = self.table.get(ip)
        if entry is None:
            return []
        out = []
        for i in range(1, len(entry), STRIDE):
            if entry[i + 2] > now:
                out.append(entry[i])
        if not out:
            self.bytes -= cost(ip, entry)
            del self.table[ip]
            self.expired += 1
            return out
        self.clock += 1
        entry[0] = self.clock
        return out

    def expire(self, now):
        """Drop every name no longer shown; returns how many addresses went."""
        gone = []
        for ip, entry in self.table.items():
            # most entries have nothing expired: look before building anything
            n = len(entry)
            i = 3
            while i < n and entry[i] > now:
                i += STRIDE
            if i >= n:
                continue
            keep = []
            for i in range(1, n, STRIDE):
                if entry[i + 2] > now:
                    keep += entry[i:i + STRIDE]
            if not keep:
                gone.append(ip)
            else:
                self.bytes -= cost(ip, entry)
                entry[1:] = keep
                self.bytes += cost(ip, entry)
        for ip in gone:
            self.bytes -= cost(ip, self.table[ip])
            del self.table[ip]
        self.expired += len(gone)
        return len(gone)

    def _shrink(self, now):
        self.expire(now)
        if len(self.table) <= self.size and self.bytes <= self.budget:
            return
        # drop the least recently used, down to 15/16 of the size and budget
        keep_n = self.size - self.size // 16
        keep_b = self.budget - self.budget // 16
        order = sorted(self.table.items(), key=lambda kv: kv[1][0])
        for ip, entry in order:
            over_n = len(self.table) > keep_n
            if not over_n and self.bytes <= keep_b:
                break
            self.bytes -= cost(ip, entry)
            del self.table[ip]
            self.dropped += 1
            if not over_n:
                self.dropped_bytes += 1

    def rows(self, now, wall):
        """The live table as [[ip, [names], expires, kept], ...], times in
        wall seconds; least recently used first, so `restore` rebuilds the
        LRU order. Names of one address stay newest first; names whose
        times differ take one row each."""
        shift = int(wall) - now
        out = []
        for ip, entry in sorted(self.table.items(), key=lambda kv: kv[1][0]):
            row = None
            for i in range(1, len(entry), STRIDE):
                if entry[i + 2] <= now:
                    continue
                expires, kept = entry[i + 1] + shift, entry[i + 2] + shift
                if row is None or row[2] != expires or row[3] != kept:
                    row = [ip, [], expires, kept]
                    out.append(row)
                row[1].append(entry[i])
        return out

    def restore(self, rows, now, wall):
        """Take back `rows` from an earlier agent (shape already checked;
        rows of an older agent have no kept: expires + grace): names no
        longer shown stay out, no record lives past ttl_max from now (the
        wall clock may have been set back), at most per_ip names an address
        and the table keeps its size. Returns how many addresses came back."""
        shift = int(wall) - now
        for row in rows:
            ip, names, expires = row[0], row[1], int(row[2]) - shift
            kept = int(row[3]) - shift if len(row) > 3 else expires + self.grace
            expires = min(expires, now + self.ttl_max)
            kept = min(kept, max(expires + self.grace, now + self.hold))
            if kept <= now or not names:
                continue
            entry = self.table.get(ip)
            if entry is None:
                self.clock += 1
                entry = self.table[ip] = [self.clock]
            else:
                self.bytes -= cost(ip, entry)
            have = [entry[i] for i in range(1, len(entry), STRIDE)]
            for name in names:
                if len(have) < self.per_ip and name not in have:
                    entry += [name, expires, kept]
                    have.append(name)
            self.bytes += cost(ip, entry)
        if len(self.table) > self.size or self.bytes > self.budget:
            self._shrink(now)
        return len(self.table)

    def status(self):
        return {"endpoints": len(self.table), "endpoints_max": self.size,
                "endpoints_bytes": self.bytes, "endpoints_bytes_max": self.budget,
                "endpoints_dropped": self.dropped, "endpoints_dropped_bytes": self.dropped_bytes,
                "endpoints_expired": self.expired, "endpoints_stale": self.stale}
