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
* each name lives for its DNS TTL, raised to `ttl_min` (a device keeps
  using an address well past a 5 s TTL) and cut to `ttl_max` (a week-long
  TTL must not pin a name that the address may no longer carry).

Times are whole seconds of the monotonic clock, passed in by the caller,
so the table is pure and tests need no clock.

Memory: one small list per address, [used, name, expires, name, expires,
...], no per-entry objects or link nodes (MicroPython counts every one).

`rows` and `restore` carry the table across an agent restart as
[ip, [names], expires] rows in wall-clock seconds: the monotonic clock
starts again with the process, the wall clock does not.
"""


ENTRY_COST = 96  # a dict slot, the list, its use counter (CPython 3.11, measured ~180 B an address)
NAME_COST = 64  # a str header and an expiry int in the list


def cost(ip, entry):
    n = ENTRY_COST + len(ip)
    for i in range(1, len(entry), 2):
        n += NAME_COST + len(entry[i])
    return n


class Endpoints:
    def __init__(self, size=4096, per_ip=4, ttl_min=300, ttl_max=86400, budget=1048576):
        self.size = max(1, size)
        self.budget = max(1, budget)
        self.bytes = 0  # estimated bytes held (see cost)
        self.per_ip = max(1, per_ip)
        self.ttl_min = ttl_min
        self.ttl_max = max(ttl_min, ttl_max)
        self.table = {}  # ip -> [used, name, expires, name, expires, ...]
        self.clock = 0  # use counter: the order of learns and lookups
        self.dropped = 0  # addresses dropped before their names expired
        self.dropped_bytes = 0  # of those, dropped because of the byte budget
        self.expired = 0  # addresses whose names all ran out
        self.learned = 0  # names learned: the owner saves when this moved

    def __len__(self):
        return len(self.table)

    def learn(self, ip, name, ttl, now):
        """Remember that `ip` answers to `name` for `ttl` seconds from `now`."""
        if ttl < self.ttl_min:
            ttl = self.ttl_min
        elif ttl > self.ttl_max:
            ttl = self.ttl_max
        expires = now + ttl
        self.clock += 1
        self.learned += 1
        entry = self.table.get(ip)
        if entry is None:
            entry = self.table[ip] = [self.clock, name, expires]
            self.bytes += cost(ip, entry)
            if len(self.table) > self.size or self.bytes > self.budget:
                self._shrink(now)
            return
        self.bytes -= cost(ip, entry)
        entry[0] = self.clock
        names = entry[1:]
        for i in range(0, len(names), 2):
            if names[i] == name:
                del names[i:i + 2]
                break
        else:
            if len(names) >= 2 * self.per_ip:
                del names[-2:]
        entry[1:] = [name, expires] + names
        self.bytes += cost(ip, entry)
        if self.bytes > self.budget:
            self._shrink(now)

    def names_for(self, ip, now):
        """The unexpired names of `ip`, newest first; [] when none. Counts as
        a use for the LRU order."""
        entry = self.table.get(ip)
        if entry is None:
            return []
        out = []
        for i in range(1, len(entry), 2):
            if entry[i + 1] > now:
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
        """Drop every name whose time is up; returns how many addresses went."""
        gone = []
        for ip, entry in self.table.items():
            # most entries have nothing expired: look before building anything
            n = len(entry)
            i = 2
            while i < n and entry[i] > now:
                i += 2
            if i >= n:
                continue
            keep = []
            for i in range(1, n, 2):
                if entry[i + 1] > now:
                    keep.append(entry[i])
                    keep.append(entry[i + 1])
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
        """The live table as [[ip, [names], expires], ...], expires in wall
        seconds; least recently used first, so `restore` rebuilds the LRU
        order. Names of one address stay newest first; names that expire at
        different times take one row each."""
        shift = int(wall) - now
        out = []
        for ip, entry in sorted(self.table.items(), key=lambda kv: kv[1][0]):
            row = None
            for i in range(1, len(entry), 2):
                if entry[i + 1] <= now:
                    continue
                if row is None or row[2] != entry[i + 1] + shift:
                    row = [ip, [], entry[i + 1] + shift]
                    out.append(row)
                row[1].append(entry[i])
        return out

    def restore(self, rows, now, wall):
        """Take back `rows` from an earlier agent (shape already checked):
        expired names stay out, none lives past ttl_max from now (the wall
        clock may have been set back), at most per_ip names an address and
        the table keeps its size. Returns how many addresses came back."""
        shift = int(wall) - now
        for ip, names, expires in rows:
            expires = min(int(expires) - shift, now + self.ttl_max)
            if expires <= now or not names:
                continue
            entry = self.table.get(ip)
            if entry is None:
                self.clock += 1
                entry = self.table[ip] = [self.clock]
            else:
                self.bytes -= cost(ip, entry)
            have = [entry[i] for i in range(1, len(entry), 2)]
            for name in names:
                if len(have) < self.per_ip and name not in have:
                    entry += [name, expires]
                    have.append(name)
            self.bytes += cost(ip, entry)
        if len(self.table) > self.size or self.bytes > self.budget:
            self._shrink(now)
        return len(self.table)

    def status(self):
        return {"endpoints": len(self.table), "endpoints_max": self.size,
                "endpoints_bytes": self.bytes, "endpoints_bytes_max": self.budget,
                "endpoints_dropped": self.dropped, "endpoints_dropped_bytes": self.dropped_bytes,
                "endpoints_expired": self.expired}
