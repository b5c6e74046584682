"""The LAN watch: new connection attempts between devices on the LAN.

Theory of operation
-------------------
Stock OpenWrt has no bridge netfilter: two devices talking over br-lan
never reach conntrack, so a device sweeping its neighbours is nearly
invisible to the snapshot scan. With the nft backend the firewall's
`table bridge spin` writes every attempt that crosses the bridge as a key
(device MAC . peer address . protocol . port) into a dynamic set with a
timeout (firewall.LAN_WATCH_SETS). A key stays while the device keeps
sending to that peer port, and one timeout after.

Once a scan the agent lists that table (one nft process) and the keys the
last read did not hold are the new attempts: each goes to the detector
(`lan_attempt(mac, host, port, proto)`, proto as bytes like the flows'
b"tcp") and is counted in status. A key that times out and comes back is
a new attempt again; one that stays is counted once.

Rules of this module:

* `parse(items)` is pure (nft's JSON in, keys out) and so is `Seen`; the
  part only wires them to the backend's `lan_seen()` and the detector.
* The memory of the last read holds small integers (a key folded to 30
  bits), never texts: on MicroPython a string hashes to 16 bits, and the
  set holds thousands of keys. Two keys folding alike make one attempt go
  uncounted: at 4,096 keys, about one new key in 250,000. It never holds
  more keys than one read brings (the sets' size bounds that).
* Nothing here fails the scan: a read that fails says why in status and
  the next scan tries again.
"""

SETS = ("lan_seen4", "lan_seen6")
# "ip" (0): an ARP request's key (firewall.ARP_KEY), the address asked for
PROTOS = {"tcp": b"tcp", "udp": b"udp", 6: b"tcp", 17: b"udp", "ip": b"arp", 0: b"arp"}
FOLD = 1073741789   # the largest prime below 2**30: folded keys stay small ints


def proto_of(value):
    """nft prints a protocol by name (tcp) or, for the unnamed, number."""
    p = PROTOS.get(value)
    if p is not None:
        return p
    return str(value).encode()


def parse(items):
    """nft -j list table bridge spin -> ([(mac, host, port, proto)],
    sets found full, malformed keys). Only the watch's sets are read."""
    keys = []
    full = 0
    bad = 0
    for item in items or ():
        s = item.get("set") if isinstance(item, dict) else None
        if not s or s.get("name") not in SETS:
            continue
        elems = s.get("elem") or ()
        if s.get("size") and len(elems) >= s["size"]:
            full += 1
        for e in elems:
            key = _key_of(e)
            if key is None:
                bad += 1
            else:
                keys.append(key)
    return keys, full, bad


def _key_of(e):
    # {"elem": {"val": {"concat": [...]}, "expires": 59}} with a timeout,
    # {"concat": [...]} without one
    if isinstance(e, dict) and "elem" in e:
        e = e["elem"]
    if isinstance(e, dict) and "val" in e:
        e = e["val"]
    parts = e.get("concat") if isinstance(e, dict) else None
    if not isinstance(parts, list) or len(parts) != 4:
        return None
    mac, host, proto, port = parts
    if not isinstance(mac, str) or not isinstance(host, str) or not isinstance(port, int):
        return None
    return mac, host, port, proto_of(proto)


def fold(key):
    """A key as a small int, the same on every interpreter. The texts are
    taken as one big number (nft prints an address the same way at every
    read, and a MAC is always 17 characters, so distinct keys are distinct
    numbers) and reduced mod a prime: two C calls, no address parsing,
    which cost 7 us a key in Python."""
    mac, host, port, proto = key
    number = PROTO_NUMBER.get(proto)
    if number is None:
        number = int(proto) if proto.isdigit() else 0
    n = int.from_bytes((mac + host).encode(), "big")
    return ((n << 24) | ((number & 255) << 16) | (port & 0xFFFF)) % FOLD


PROTO_NUMBER = {b"tcp": 6, b"udp": 17}


class Seen:
    """The keys of the last read; `news(keys)` returns those it lacked and
    keeps this read's keys instead (at most `cap` of them)."""

    def __init__(self, cap):
        self.cap = cap
        self.last = set()

    def news(self, keys):
        fresh = []
        now = set()
        for key in keys:
            k = fold(key)
            if k in now:
                continue
            if len(now) < self.cap:
                now.add(k)
            if k not in self.last:
                fresh.append(key)
        self.last = now
        return fresh


class LanWatch:
    """Agent part: reads the watch once a scan (the agent's `collect`
    step, before the scan's figures close) and feeds the detector."""
    name = "lanwatch"

    def __init__(self, cfg):
        size = cfg.get("lan_watch_size") or 4096
        self.seen = Seen(2 * size)   # two sets, IPv4 and IPv6
        self.unseen = "not read yet"
        self.attempts = 0            # new attempts read since the start
        self.full = 0                # reads that found a set full
        self.malformed = 0

    def start(self, agent):
        agent.lanwatch = self

    def reload(self, agent):
        size = agent.cfg.get("lan_watch_size") or 4096
        self.seen.cap = 2 * size

    def collect(self, agent, now_ms):
        backend = getattr(agent.blocks, "backend", None) if agent.blocks else None
        if backend is None or not hasattr(backend, "lan_seen"):
            self.unseen = "no firewall backend"
            return
        items, why = backend.lan_seen()
        if items is None:
            # the memory stays: a read that failed once must not make
            # every key new at the next
            self.unseen = why
            return
        keys, full, bad = parse(items)
        items = None
        self.unseen = None
        self.full += 1 if full else 0
        self.malformed += bad
        fresh = self.seen.news(keys)
        self.attempts += len(fresh)
        detector = getattr(agent, "detector", None)
        if detector is None:
            return
        for mac, host, port, proto in fresh:
            detector.lan_attempt(mac, host, port, proto)

    def status(self):
        return {
            "lan": "bridge set" if self.unseen is None else "not seen: " + self.unseen,
            "lan_attempts": self.attempts,
            "lan_watch_full": self.full,
            "lan_malformed": self.malformed,
            # the watch sits on the CPU's bridge: what a switch chip or one
            # radio forwards by itself never passes it
            "lan_unseen": "frames a switch chip or one radio forwards itself"
                          " (wired port to wired port, station to station)",
        }
