"""The detector: per-device figures of each scan -> verdicts (data).

Theory of operation
-------------------
The agent feeds every attributed flow's news to `flow()` (and every new
LAN-to-LAN attempt the bridge saw to `lan_attempt()`), then calls
`end_scan()` once per scan. Nothing here does I/O; verdicts are plain dicts
and acting on them is the response's job (anomalies.py).

Per device the state is fixed in size whatever the traffic does:

* per-scan counters (a list of ints, COUNTERS), distinct counts (an exact
  set of 32-bit hashes up to EXACT values, then a HyperLogLog of HLL_M
  one-byte registers), and Misra-Gries top-k tables of remote ports, of
  remotes by new connections and of UDP remotes by packets out. The short
  window of Layer A is the current scan and the one before it (10 s at the
  default 5 s interval), so an attack is seen within 2 scans;
* a ring of RING_SLOTS slots of RING_SECONDS each (10 min) of a few
  counts, for the rules that need a long window (a slow scanner, repeated
  DNS past the router);
* Layer B: EWMA mean and variance of per-minute figures, for the device as
  a whole and per hour of the day, and a "known remotes" Bloom filter in
  two generations, so bytes to a never-used endpoint can be told apart.

The rules are one table of data, RULES: layer, severity, window,
thresholds, which predicate of PREDICATES decides, which examples to show
and the words of the explanation. `end_scan` runs one loop over it.

Multicast and broadcast destinations are never attempts (they are always
"unreplied"): `classify` sets them apart and they count for nothing here.
Private addresses that are not the LAN count as public for the scan rules:
Mirai never scans private ranges, so this errs on the side of not alerting
on a device that reaches a neighbour's network through a VPN.
"""

import math
from array import array

from .digest import crc32, hll_add, hll_estimate, mix

PUBLIC = "public"
LAN = "lan"
ROUTER = "router"
MULTICAST = "multicast"

# Ports that Mirai and its descendants scan and that a home device has
# little reason to try on addresses it never talked to (peers.md §4.3).
SCANNER_PORTS = (22, 23, 2222, 2323, 5555, 7547, 37215, 52869, 5358, 8291, 60023, 9527)
PORT_NAMES = {22: "ssh", 23: "telnet", 2222: "ssh", 2323: "telnet", 53: "DNS",
              853: "DNS over TLS", 80: "web", 443: "web", 8080: "web", 8081: "web",
              5555: "Android debugging", 7547: "TR-069 router management",
              37215: "Huawei router management", 52869: "UPnP", 445: "Windows file sharing",
              3389: "remote desktop", 123: "time"}
DNS_PORTS = (53, 853)

# per-scan counters, by index (SCANNER_FAILED: unanswered, for slow_scan)
NEW, FAILED, REFUSED, SCANNER, NEW_ANY, UPLOAD_NEW, DNS_PUBLIC, LAN_NEW, SCANNER_FAILED = range(9)
NCOUNT = 9
TOP_K = 8  # Misra-Gries counters per table: error at most total / (TOP_K + 1)
EXACT = 32
HLL_BITS = 7
HLL_M = 1 << HLL_BITS  # 128 registers: ~9 % standard error, plenty for thresholds
EXAMPLES = 5
# the long window's examples: a scan's latest, then the device's
LATEST = ("ex_slow", "ex_slow_ports", "ex_dns")

# the long window: a ring of slots of counts
RING_SECONDS = 30
RING_SLOTS = 20  # 10 minutes
R_NEW, R_FAILED, R_SCANNER_FAILED, R_SCANNER_REMOTES, R_DNS_PUBLIC = range(5)
RING_FIELDS = 5

# Layer B: per-minute figures whose baselines are learned
BASE_FIGURES = ("m_new", "m_remotes", "m_failed_share", "m_upload_new")
NB = len(BASE_FIGURES)
# until a device has its own history: a default baseline (mean, sd) that
# a busy PC stays under, so a new device is not judged against nothing
PRIORS = {"m_new": (60.0, 60.0), "m_remotes": (20.0, 20.0),
          "m_failed_share": (0.1, 0.1), "m_upload_new": (1e6, 2e6)}
ALPHA = 0.05  # device EWMA per minute: ~20 minutes of memory
ALPHA_HOUR = 0.1  # per hour of day: updated 60 times a day
HOUR_MINUTES = 30  # minutes of history an hour of day needs before it is used
BLOOM_BYTES = 256  # 2,048 bits, 3 hashes
BLOOM_CAP = 300  # inserts before a generation ages out (~4.5 % false "known")
UPLOAD_CHUNK = 65536  # bytes out in one report that make a flow worth the known-remotes check

SHORT, LONG, NOW, MINUTE = "short", "long", "now", "minute"

# name: layer, severity, window, predicate, thresholds (defaults; the owner
# overrides them with `list detect_threshold 'rule.name=value'`), which of
# them grow with the window's seconds (rates per 10 s), the examples shown,
# whether it counts as a Layer-A sign for Layer B, and the words.
RULES = {
    "outbound_scan": {
        "layer": "A", "severity": "quarantine", "window": SHORT, "test": "scan",
        "thresholds": {"new": 50, "remotes": 40, "failed_share": 0.8, "concentration": 0.3,
                       "mixed_failed_share": 0.3, "mixed_concentration": 0.6},
        "per_10s": ("new", "remotes"), "examples": "failed", "sign": True,
        "text": "The device tried %(new)s new connections to %(remotes)s internet addresses"
                " in %(window)s s; %(failed_share)s got no answer or were refused; %(port_share)s"
                " went to port %(port)s%(port_name)s. A device doing this is almost certainly"
                " infected and looking for victims (threshold: %(t_new)s connections to"
                " %(t_remotes)s addresses).",
    },
    "one_remote_flood": {
        "layer": "A", "severity": "quarantine", "window": SHORT, "test": "all",
        "thresholds": {"peer_new": 300}, "per_10s": ("peer_new",), "examples": "peer",
        "sign": True,
        "text": "The device opened %(peer_new)s new connections to one address, %(peer)s, in"
                " %(window)s s (%(peer_failed_share)s unanswered). This is a flood, not normal"
                " use, even when the target answers (threshold: %(t_peer_new)s).",
    },
    "udp_flood": {
        "layer": "A", "severity": "quarantine", "window": SHORT, "test": "all",
        "thresholds": {"udp_out": 5000, "udp_answer_share": 0.01}, "per_10s": ("udp_out",),
        "examples": "udp", "sign": True,
        "text": "The device sent %(udp_out)s UDP packets to %(udp_peer)s in %(window)s s and"
                " got %(udp_in)s back. Sending this much to one address that does not answer"
                " is a flood (threshold: %(t_udp_out)s packets, at most %(t_udp_answer_share)s"
                " answered).",
    },
    "lan_scan": {
        "layer": "A", "severity": "quarantine", "window": SHORT, "test": "any",
        "thresholds": {"lan_hosts": 20, "lan_ports": 50}, "per_10s": (), "examples": "lan",
        "sign": True,
        "text": "The device tried %(lan_hosts)s addresses and %(lan_ports)s ports on the home"
                " network (this router included) in %(window)s s. Sweeping the home network"
                " like this is how an infected device looks for its next victim (threshold:"
                " %(t_lan_hosts)s addresses or %(t_lan_ports)s ports).",
    },
    "dns_bypass": {
        "layer": "A", "severity": "alert", "window": LONG, "test": "all",
        "thresholds": {"dns_public": 3}, "per_10s": (), "examples": "dns", "sign": False,
        "text": "The device sent %(dns_public)s DNS queries straight to internet resolvers"
                " (%(resolver)s) in the last %(window)s s instead of to this router. Some"
                " devices do this by design; malware does it to avoid the router's view"
                " (threshold: %(t_dns_public)s).",
    },
    "table_hog": {
        "layer": "A", "severity": "quarantine", "window": NOW, "test": "all",
        "thresholds": {"live": 2000, "table_share": 0.25}, "per_10s": (), "examples": "none",
        "sign": True,
        "text": "The device holds %(live)s of the router's %(table_max)s connection slots"
                " (%(table_share)s). When the table is full nobody's new connections get"
                " through (threshold: %(t_table_share)s and %(t_live)s connections).",
    },
    "slow_scan": {
        "layer": "A", "severity": "alert", "window": LONG, "test": "all",
        "thresholds": {"scanner_failed": 12, "scanner_remotes": 10}, "per_10s": (),
        "examples": "slow", "sign": True,
        "text": "In the last %(window)s s the device tried %(scanner_failed)s connections to"
                " %(scanner_remotes)s internet addresses on ports that infected devices scan"
                " (telnet, ssh, remote management), and none answered. This looks like a slow"
                " scanner (threshold: %(t_scanner_failed)s attempts to %(t_scanner_remotes)s"
                " addresses).",
    },
    "baseline_new_flows": {
        "layer": "B", "severity": "alert", "window": MINUTE, "test": "baseline",
        "figure": "m_new",
        "thresholds": {"floor": 600, "sigmas": 6, "quarantine_multiple": 50},
        "per_10s": (), "examples": "none", "sign": False,
        "text": "The device opened %(value)s new connections in the last minute; it usually"
                " opens about %(mean)s (threshold: %(limit)s).",
    },
    "baseline_remotes": {
        "layer": "B", "severity": "alert", "window": MINUTE, "test": "baseline",
        "figure": "m_remotes",
        "thresholds": {"floor": 200, "sigmas": 6, "quarantine_multiple": 50},
        "per_10s": (), "examples": "none", "sign": False,
        "text": "The device talked to %(value)s different addresses in the last minute; it"
                " usually talks to about %(mean)s (threshold: %(limit)s).",
    },
    "baseline_unanswered": {
        "layer": "B", "severity": "alert", "window": MINUTE, "test": "baseline",
        "figure": "m_failed_share",
        # a share cannot be a large multiple of anything: never quarantines alone
        "thresholds": {"floor": 0.5, "sigmas": 6, "min_new": 30},
        "per_10s": (), "examples": "none", "sign": False,
        "text": "%(value)s of the device's new internet connections got no answer in the last"
                " minute; usually about %(mean)s do (threshold: %(limit)s).",
    },
    "baseline_new_endpoint_upload": {
        "layer": "B", "severity": "alert", "window": MINUTE, "test": "baseline",
        "figure": "m_upload_new",
        "thresholds": {"floor": 50000000, "sigmas": 6, "quarantine_multiple": 50},
        "per_10s": (), "examples": "upload", "sign": False,
        # "never used" means something only once the device has a history
        "needs_history": True,
        "text": "The device sent %(value)s bytes in the last minute to addresses it never"
                " used before; it usually sends about %(mean)s to new addresses (threshold:"
                " %(limit)s).",
    },
}

# which rules each kind of evaluation runs, in table order
BY_WINDOW = {}
for _name in RULES:
    BY_WINDOW.setdefault(RULES[_name]["window"], []).append(_name)
# minutes of a device's own history before Layer B judges it by it (the
# default baseline before): its first clean minute seeds the mean, so a
# quarter of an hour is enough for the EWMA to settle
LEARN_MINUTES = 15


# -- classification ----------------------------------------------------------

def classify(remote, router_ips, lan_ips):
    """PUBLIC, LAN, ROUTER or MULTICAST for a remote address text.

    Broadcast: 255.255.255.255, and a private address ending in .255 that
    is no device (the directed broadcast of a /24 home LAN, cheaply
    guessed; on a wider LAN such an address is at worst not counted)."""
    if remote in router_ips:
        return ROUTER
    if remote in lan_ips:
        return LAN
    if ":" in remote:
        return MULTICAST if remote[:2].lower() == "ff" else PUBLIC
    dot = remote.find(".")
    try:
        first = int(remote[:dot])
    except ValueError:
        return PUBLIC
    if 224 <= first <= 239 or remote == "255.255.255.255":
        return MULTICAST
    if remote.endswith(".255") and _private(first, remote):
        return MULTICAST
    return PUBLIC


def _private(first, remote):
    if first == 10:
        return True
    second = remote.split(".")[1]
    return (first == 192 and second == "168") or (first == 172 and 16 <= int(second) <= 31)


# -- bounded counting ---------------------------------------------------------

def hash_text(text):
    return mix(crc32(text.encode()))


class Distinct:
    """How many distinct hashes: exact up to EXACT, then HyperLogLog; two
    of them can be counted together (the short window spans two scans).
    The exact part is an array, not a set: 32 hashes take 128 bytes there
    and 3 KB in a CPython set, for a linear search of at most 32."""
    __slots__ = ("small", "regs")

    def __init__(self):
        self.small = None
        self.regs = None

    def add(self, h):
        if self.regs is not None:
            _reg(self.regs, h)
            return
        if self.small is None:
            self.small = array("I")
        elif not _absent(self.small, h):
            return
        self.small.append(h)
        if len(self.small) > EXACT:
            self.regs = bytearray(HLL_M)
            for x in self.small:
                _reg(self.regs, x)
            self.small = None

    def count(self):
        return union_count(self, None)

    def nbytes(self):
        if self.regs is not None:
            return HLL_M + 100
        return 50 + (80 + 4 * len(self.small) if self.small is not None else 0)


def _reg(regs, h):
    hll_add(regs, HLL_BITS, h)


def union_count(a, b):
    """Distinct values in a and b together (b may be None)."""
    parts = [a] if b is None else [a, b]
    if all(p.regs is None for p in parts):
        s = set()
        for p in parts:
            if p.small is not None:
                for x in p.small:
                    s.add(x)
        return len(s)
    return hll_estimate(union_regs(parts))


def union_regs(parts):
    """The HyperLogLog registers of several distinct counts together, the
    exact ones hashed in (the controller merges agents' counts so too)."""
    regs = bytearray(HLL_M)
    for p in parts:
        if p.regs is not None:
            for j in range(HLL_M):
                if p.regs[j] > regs[j]:
                    regs[j] = p.regs[j]
        elif p.small is not None:
            for x in p.small:
                _reg(regs, x)
    return regs


def top_add(top, key, weight, extra):
    """Misra-Gries over {key: [weight, extra]}: at most TOP_K keys; a key
    that matters (more than total / (TOP_K + 1)) is never lost. -> top (a
    new table for None)."""
    if top is None:
        return {key: [weight, extra]}
    v = top.get(key)
    if v is not None:
        v[0] += weight
        v[1] += extra
        return top
    if len(top) < TOP_K:
        top[key] = [weight, extra]
        return top
    low = weight
    for v in top.values():
        if v[0] < low:
            low = v[0]
    for k in list(top):
        v = top[k]
        v[0] -= low
        if v[0] <= 0:
            del top[k]
    if weight > low:
        top[key] = [weight - low, extra]
    return top


def top_of(a, b):
    """The heaviest key of two Misra-Gries tables together: (key, weight, extra)."""
    merged = {}
    for t in (a, b):
        for k, v in (t or {}).items():
            m = merged.get(k)
            if m is None:
                merged[k] = [v[0], v[1]]
            else:
                m[0] += v[0]
                m[1] += v[1]
    best = (None, 0, 0)
    for k, v in merged.items():
        if v[0] > best[1]:
            best = (k, v[0], v[1])
    return best


def top_keys(a, b, n):
    merged = {}
    for t in (a, b):
        for k, v in (t or {}).items():
            merged[k] = merged.get(k, 0) + v[0]
    pairs = [(w, k) for k, w in merged.items()]
    pairs.sort(key=lambda p: -p[0])
    return [k for _, k in pairs[:n]]


def bloom_bits(h):
    """Three bit positions in a BLOOM_BYTES filter from one 32-bit hash."""
    nbits = BLOOM_BYTES * 8
    h2 = mix(h ^ 0x9E3779B9)
    return (h % nbits, h2 % nbits, (h + h2) % nbits)


def bloom_has(bits, pos):
    if bits is None:  # a filter not made yet knows nothing
        return False
    for p in pos:
        if not bits[p >> 3] & (1 << (p & 7)):
            return False
    return True


def bloom_put(bits, pos):
    for p in pos:
        bits[p >> 3] |= 1 << (p & 7)


def _keep_example(lst, value):
    """-> lst with value among its first EXAMPLES (a new list for None)."""
    if lst is None:
        return [value]
    if len(lst) < EXAMPLES and value not in lst:
        lst.append(value)
    return lst


def _then(a, b):
    """a's examples, then b's that a lacks (either may be None)."""
    out = list(a or ())
    return out + [x for x in b or () if x not in out]


def _absent(arr, h):
    for x in arr:  # MicroPython's array has no `in`
        if x == h:
            return False
    return True


def _keep_latest(lst, value):
    """-> lst with value the latest of its EXAMPLES (a new list for None)."""
    if lst is None:
        return [value]
    if value in lst:
        lst.remove(value)
    lst.append(value)
    if len(lst) > EXAMPLES:
        lst.pop(0)
    return lst


# -- one device ---------------------------------------------------------------

class Scan:
    """What a device did in one scan: counters, distinct counts, top-k."""
    __slots__ = ("c", "remotes", "lan_hosts", "lan_ports", "ports", "peers", "udp",
                 "ex_failed", "ex_lan", "ex_upload", "lan_port_list", "seconds",
                 "slow", "ex_slow", "ex_slow_ports", "ex_dns")

    def __init__(self):
        self.c = [0] * NCOUNT
        self.remotes = Distinct()
        self.lan_hosts = Distinct()
        self.lan_ports = Distinct()
        # top tables: None until the first key (64 B an empty dict on CPython)
        self.ports = None
        self.peers = None
        self.udp = None
        # examples: None until the first (56 B an empty list on CPython,
        # four a scan, two scans a device, and most scans have none)
        self.ex_failed = None
        self.ex_lan = None
        self.ex_upload = None
        self.lan_port_list = None
        self.seconds = 0
        # None until used: the first EXACT remotes of failed scanner-port
        # attempts; LATEST
        self.slow = self.ex_slow = self.ex_slow_ports = self.ex_dns = None

    def active(self):
        return any(self.c) or bool(self.udp)

    def reset(self):
        """Empty it in place: a scan allocates nothing for an idle device."""
        c = self.c
        for i in range(NCOUNT):
            c[i] = 0
        for d in (self.remotes, self.lan_hosts, self.lan_ports):
            d.small = d.regs = None
        self.ports = self.peers = self.udp = None
        self.ex_failed = self.ex_lan = self.ex_upload = self.lan_port_list = None
        self.seconds = 0
        self.slow = self.ex_slow = self.ex_slow_ports = self.ex_dns = None

    def nbytes(self):
        """Estimated bytes, by what CPython 3.11 takes (tracemalloc, in
        bench/detect_cost.py); MicroPython takes less."""
        n = 190
        for d in (self.remotes, self.lan_hosts, self.lan_ports):
            n += d.nbytes()
        n += (len(self.ports or ()) + len(self.peers or ()) + len(self.udp or ())) * 110
        n += 70 * (len(self.ex_failed or ()) + len(self.ex_lan or ()) + len(self.ex_upload or ()))
        n += 8 * len(self.lan_port_list or ())
        if self.slow is not None:
            n += 80 + 4 * len(self.slow)
        for lst in (self.ex_slow, self.ex_dns):
            n += 70 * len(lst or ())
        return n


class Device:
    __slots__ = ("cur", "prev", "ring", "sums", "ring_pos", "ring_secs", "slot_remotes",
                 "ex_slow", "ex_slow_ports", "ex_dns", "minute", "minute_secs",
                 "minute_remotes", "base", "hour_base", "hour_n", "minutes",
                 "known", "old", "fresh", "known_n", "a_sign")

    def __init__(self):
        self.cur = Scan()
        self.prev = Scan()
        # the long window's slots: None while its counts are all zero (a
        # quiet device; 464 B on CPython for each device otherwise)
        self.ring = None
        self.sums = [0] * RING_FIELDS  # the ring's totals, kept as slots fill and clear
        self.ring_pos = 0
        self.ring_secs = 0
        # failed scanner-port remotes in this slot, capped; None until the
        # slot has one (an empty set is 216 B on CPython, for each device)
        self.slot_remotes = None
        # examples for the long window outlive a scan: the few latest
        # (None until the first: 56 B an empty list, three for each device)
        self.ex_slow = None
        self.ex_slow_ports = None
        self.ex_dns = None
        self.minute = [0] * NCOUNT
        self.minute_secs = 0
        self.minute_remotes = Distinct()
        # Layer B: (mean, var) per figure, device-wide and per hour of day
        self.base = None
        self.hour_base = None
        self.hour_n = None
        self.minutes = 0
        # the known-remotes filters, each None until it holds a remote (three
        # times 313 B on CPython for each device, most of which learn none)
        self.known = None
        self.old = None
        self.fresh = None
        self.known_n = 0  # remotes learnt into `known` since it was new
        self.a_sign = False  # a Layer-A sign in this minute: keep it out of the baseline

    def nbytes(self):
        n = 900 + self.cur.nbytes() + self.prev.nbytes()
        n += len(self.ring or ()) * 4 + len(self.slot_remotes or ()) * 100
        n += BLOOM_BYTES * ((self.known is not None) + (self.old is not None) + (self.fresh is not None))
        n += self.minute_remotes.nbytes() + 70 * (len(self.ex_slow or ()) + len(self.ex_dns or ()))
        n += 8 * len(self.ex_slow_ports or ())
        if self.base is not None:
            n += 250 + len(self.base) * 4 + len(self.hour_base) * 4 + len(self.hour_n)
        return n

    def known_remote(self, pos):
        return bloom_has(self.known, pos) or bloom_has(self.old, pos)

    def learn_remote(self, pos):
        if not bloom_has(self.fresh, pos):
            if self.fresh is None:
                self.fresh = bytearray(BLOOM_BYTES)
            bloom_put(self.fresh, pos)
            self.known_n += 1


# -- predicates (the few shapes a rule's test takes) ------------------------------

def _all(rule, fig, thr):
    """Every threshold met: at least it, or at most it for a *_share
    threshold that bounds an answer (udp_answer_share)."""
    for name, t in thr.items():
        v = fig.get(name)
        if v is None:
            return False
        if name.endswith("answer_share"):
            if v > t:
                return False
        elif v < t:
            return False
    return True


def _any(rule, fig, thr):
    for name, t in thr.items():
        if fig.get(name, 0) >= t:
            return True
    return False


def _scan(rule, fig, thr):
    """Many new flows to many addresses, and either nearly all of them
    failed with some port focus, or a fair share failed with a strong port
    focus (a scanner that also tries web ports gets more answers). P2P has
    no dominant port; updates and reboots get answered."""
    if fig["new"] < thr["new"] or fig["remotes"] < thr["remotes"]:
        return False
    u = fig["failed_share"]
    c = fig["concentration"]
    if u >= thr["failed_share"] and c >= thr["concentration"]:
        return True
    return u >= thr["mixed_failed_share"] and c >= thr["mixed_concentration"]


def _baseline(rule, fig, thr):
    """Above an absolute floor and `sigmas` deviations above the device's
    own baseline (of this hour of day once it has one)."""
    if fig.get("min_new") is not None and fig["min_new"] < thr.get("min_new", 0):
        return False
    return fig["value"] >= fig["limit"]


PREDICATES = {"all": _all, "any": _any, "scan": _scan, "baseline": _baseline}


# -- examples per rule --------------------------------------------------------

def _ex_failed(d):
    return _then(d.cur.ex_failed, d.prev.ex_failed), \
        top_keys(d.cur.ports, d.prev.ports, EXAMPLES)


def _ex_peer(d):
    k = top_of(d.cur.peers, d.prev.peers)[0]
    return ([k] if k else []), top_keys(d.cur.ports, d.prev.ports, EXAMPLES)


def _ex_udp(d):
    k = top_of(d.cur.udp, d.prev.udp)[0]
    return ([k] if k else []), []


def _ex_lan(d):
    return _then(d.cur.ex_lan, d.prev.ex_lan), _then(d.cur.lan_port_list, d.prev.lan_port_list)


EXAMPLE_SOURCES = {
    "failed": _ex_failed, "peer": _ex_peer, "udp": _ex_udp, "lan": _ex_lan,
    "dns": lambda d: (list(d.ex_dns or ()), [53]),
    "slow": lambda d: (list(d.ex_slow or ()), list(d.ex_slow_ports or ())),
    "upload": lambda d: (list(d.cur.ex_upload or d.prev.ex_upload or ()), []),
    "none": lambda d: ([], []),
}


# -- words --------------------------------------------------------------------

def number(v):
    """1540 -> '1,540' (MicroPython's format has no ',' option)."""
    if isinstance(v, float):
        if v < 10 and v != int(v):
            return "%.1f" % v
        v = int(v + 0.5)
    s = str(v)
    neg = s.startswith("-")
    if neg:
        s = s[1:]
    out = ""
    while len(s) > 3:
        out = "," + s[-3:] + out
        s = s[:-3]
    return ("-" if neg else "") + s + out


def percent(v):
    return "%d %%" % int(v * 100 + 0.5)


def words(name, value):
    if isinstance(value, str):
        return value
    if name.endswith("share"):
        return percent(value)
    return number(value)


def explain(rule, fig, thr):
    w = {}
    for k, v in fig.items():
        w[k] = words(k, v)
    for k, v in thr.items():
        w["t_" + k] = words(k, v)
    port = fig.get("port")
    w["port_name"] = " (%s)" % PORT_NAMES[port] if port in PORT_NAMES else ""
    if rule.get("figure") == "m_failed_share":
        for k in ("value", "mean", "limit"):
            w[k] = percent(fig[k])
    try:
        return rule["text"] % w
    except (KeyError, ValueError, TypeError):  # a template naming a figure this rule lacks
        return rule["text"]


# -- the detector -------------------------------------------------------------

def parse_thresholds(entries):
    """['rule.name=value', ...] -> ({rule: {name: value}}, warnings): an
    unknown rule or name, or a value that is no number, is named and left
    at its default."""
    out = {}
    warnings = []
    for e in entries:
        key, eq, value = e.partition("=")
        rule, dot, name = key.strip().partition(".")
        if not eq or not dot:
            warnings.append("detect_threshold %r: expected rule.name=value; ignored" % e)
            continue
        if rule not in RULES:
            warnings.append("detect_threshold %r: no rule %r (rules: %s); ignored"
                            % (e, rule, ", ".join(sorted(RULES))))
            continue
        defaults = RULES[rule]["thresholds"]
        if name not in defaults:
            warnings.append("detect_threshold %r: rule %s has no threshold %r (it has: %s); ignored"
                            % (e, rule, name, ", ".join(sorted(defaults))))
            continue
        try:
            v = float(value.strip())
        except ValueError:
            warnings.append("detect_threshold %r: %r is not a number; %s.%s stays %s"
                            % (e, value.strip(), rule, name, defaults[name]))
            continue
        if v < 0 or v != v:
            warnings.append("detect_threshold %r: must be a number >= 0; %s.%s stays %s"
                            % (e, rule, name, defaults[name]))
            continue
        if isinstance(defaults[name], int) and v == int(v):
            v = int(v)
        out.setdefault(rule, {})[name] = v
    return out, warnings


class Detector:
    def __init__(self, cfg):
        self.devices = {}
        self.limit = cfg.get("max_devices", 512)
        self.dropped = 0
        self.scans = 0
        self.last = []
        self.configure(cfg)

    def configure(self, cfg):
        """Thresholds from the configuration (reload keeps all state)."""
        self.mode = cfg.get("detect_mode", "quarantine")
        over, self.warnings = parse_thresholds(cfg.get("detect_threshold", []))
        self.thresholds = {}
        for name, rule in RULES.items():
            t = dict(rule["thresholds"])
            t.update(over.get(name, {}))
            self.thresholds[name] = t

    def _device(self, mac):
        d = self.devices.get(mac)
        if d is None:
            if len(self.devices) >= self.limit:
                self.dropped += 1
                return None
            d = self.devices[mac] = Device()
        return d

    def forget(self, mac):
        self.devices.pop(mac, None)

    # -- feeding ----------------------------------------------------------

    def flow(self, mac, remote, port, proto, bo, bi, po, pi, new, unreplied, refused, kind):
        if kind == MULTICAST:
            return
        d = self._device(mac)
        if d is None:
            return
        s = d.cur
        c = s.c
        failed = unreplied or refused
        h = None
        if new:
            h = hash_text(remote)
            c[NEW_ANY] += 1
            s.peers = top_add(s.peers, remote, 1, 1 if failed else 0)
            d.minute_remotes.add(h)
            if kind == PUBLIC:
                self._new_public(d, s, remote, port, proto, failed, refused, h)
            else:
                self._new_lan(s, remote, port, h)
        if proto == b"udp" and (po or pi):
            s.udp = top_add(s.udp, remote, po, pi)
        if kind == PUBLIC and (bo >= UPLOAD_CHUNK or (new and not failed)):
            self._endpoint(d, s, remote, bo, bi, failed, h)

    def _new_public(self, d, s, remote, port, proto, failed, refused, h):
        c = s.c
        c[NEW] += 1
        s.remotes.add(h)
        s.ports = top_add(s.ports, port, 1, 0)
        scanner = port in SCANNER_PORTS
        if scanner:
            c[SCANNER] += 1
        if failed:
            c[FAILED] += 1
            s.ex_failed = _keep_example(s.ex_failed, remote)
            if scanner:
                self._slow_attempt(s, remote, port, h)
        if refused:
            c[REFUSED] += 1
        if port in DNS_PORTS:
            c[DNS_PUBLIC] += 1
            s.ex_dns = _keep_latest(s.ex_dns, remote)

    def _slow_attempt(self, s, remote, port, h):
        """Kept in the scan (a controller gets it so) till _ring_add."""
        s.c[SCANNER_FAILED] += 1
        sr = s.slow
        if sr is None:
            sr = s.slow = array("I")
        if len(sr) < EXACT and _absent(sr, h):
            sr.append(h)
        s.ex_slow = _keep_latest(s.ex_slow, remote)
        s.ex_slow_ports = _keep_latest(s.ex_slow_ports, port)

    def _new_lan(self, s, host, port, h):
        s.c[LAN_NEW] += 1
        s.lan_hosts.add(h)
        s.lan_ports.add(mix(port + 1))
        s.ex_lan = _keep_example(s.ex_lan, host)
        s.lan_port_list = _keep_example(s.lan_port_list, port)

    def _endpoint(self, d, s, remote, bo, bi, failed, h):
        """Bytes out to a remote the device never used (Layer B); a remote
        that answered becomes known at the end of the minute. Only new
        answered flows and reports of UPLOAD_CHUNK bytes or more come here:
        smaller uploads cannot reach the rule's floor, and checking every
        moved flow doubled the detector's cost per flow."""
        pos = bloom_bits(h if h is not None else hash_text(remote))
        if d.known_remote(pos):
            return
        if bo >= UPLOAD_CHUNK:
            s.c[UPLOAD_NEW] += bo
            s.ex_upload = _keep_example(s.ex_upload, remote)
        if bi or not failed:
            d.learn_remote(pos)

    def lan_attempt(self, mac, host, port, proto):
        """A new LAN-to-LAN attempt the bridge saw (it never reaches conntrack)."""
        d = self._device(mac)
        if d is not None:
            self._new_lan(d.cur, host, port, hash_text(host))

    # -- deciding -----------------------------------------------------------

    def end_scan(self, now_wall, seconds, live, table_max):
        """Close the scan: every rule over every device; returns the verdicts."""
        self.scans += 1
        seconds = seconds if seconds and seconds > 0 else 1
        hour = int(now_wall // 3600) % 24
        verdicts = []
        live = live or {}
        # table_max: the agent's table size, or per device the size of the
        # table its live entries are in (the controller's merged view)
        of = table_max.get if isinstance(table_max, dict) else (lambda mac: table_max)
        for mac in live:
            if of(mac) and live[mac] >= of(mac) * 0.05:
                self._device(mac)  # a device holding flows it opened before we started
        for mac, d in self.devices.items():
            d.cur.seconds = seconds
            if d.cur.active() or d.prev.active():
                self._evaluate(mac, d, SHORT, self._short(d), verdicts)
            self._ring_add(d, seconds)
            long = self._long(d)
            if long is not None:
                self._evaluate(mac, d, LONG, long, verdicts)
            n, tmax = live.get(mac, 0), of(mac)
            if tmax and n:
                self._evaluate(mac, d, NOW, {"window": seconds, "live": n, "table_max": tmax,
                                             "table_share": n / tmax}, verdicts)
            self._minute_add(d, seconds)
            if d.minute_secs >= 60:
                for fig in self._minute(d, hour):
                    self._evaluate(mac, d, MINUTE, fig, verdicts)
                self._learn(d, hour)
            d.prev, d.cur = d.cur, d.prev
            d.cur.reset()
        self.last = verdicts
        return verdicts

    def _evaluate(self, mac, d, window, figs, out):
        names = BY_WINDOW.get(window, ())
        if window == MINUTE:
            names = [figs["rule"]]
        for name in names:
            rule = RULES[name]
            thr = self.thresholds[name]
            fig = figs
            if rule["per_10s"] and window == SHORT:
                thr = dict(thr)
                scale = max(1.0, figs["window"] / 10.0)
                for t in rule["per_10s"]:
                    thr[t] = thr[t] * scale
            if not PREDICATES[rule["test"]](rule, fig, thr):
                continue
            severity = rule["severity"]
            if rule["layer"] == "A":
                if rule["sign"]:
                    d.a_sign = True
            elif d.a_sign or fig["value"] >= fig.get("quarantine_at", fig["value"] + 1):
                severity = "quarantine"
            out.append(self._verdict(mac, d, name, rule, fig, thr, severity))

    def _verdict(self, mac, d, name, rule, fig, thr, severity):
        remotes, ports = EXAMPLE_SOURCES[rule["examples"]](d)
        figures = {}
        for k, v in fig.items():
            if not isinstance(v, str) and k not in ("rule", "window"):
                figures[k] = round(v, 3) if isinstance(v, float) else v
        return {"mac": mac, "rule": name, "layer": rule["layer"], "severity": severity,
                "text": explain(rule, fig, thr), "figures": figures,
                "thresholds": dict(thr), "window": int(fig["window"]),
                "examples": {"remotes": remotes[:EXAMPLES], "ports": ports[:EXAMPLES]}}

    # -- figures of each window ------------------------------------------

    def _short(self, d):
        a, b = d.cur, d.prev
        new = a.c[NEW] + b.c[NEW]
        failed = a.c[FAILED] + b.c[FAILED]
        port, port_flows, _ = top_of(a.ports, b.ports)
        scanner = a.c[SCANNER] + b.c[SCANNER]
        peer, peer_new, peer_failed = top_of(a.peers, b.peers)
        udp_peer, udp_out, udp_in = top_of(a.udp, b.udp)
        share = (lambda x: x / new) if new else (lambda x: 0.0)
        return {
            "window": a.seconds + b.seconds,
            "new": new, "failed": failed, "refused": a.c[REFUSED] + b.c[REFUSED],
            "remotes": union_count(a.remotes, b.remotes),
            "failed_share": share(failed),
            "port": port if port is not None else 0, "port_share": share(port_flows),
            "scanner_share": share(scanner),
            "concentration": max(share(port_flows), share(scanner)),
            "peer": peer or "", "peer_new": peer_new,
            "peer_failed_share": peer_failed / peer_new if peer_new else 0.0,
            "udp_peer": udp_peer or "", "udp_out": udp_out, "udp_in": udp_in,
            "udp_answer_share": udp_in / udp_out if udp_out else 1.0,
            "lan_hosts": union_count(a.lan_hosts, b.lan_hosts),
            "lan_ports": union_count(a.lan_ports, b.lan_ports),
        }

    def _ring_add(self, d, seconds):
        base = d.ring_pos * RING_FIELDS
        s = d.cur
        c = s.c
        if d.ring is None and (c[NEW] or c[FAILED] or c[DNS_PUBLIC] or c[SCANNER_FAILED] or s.slow is not None):
            d.ring = _ring()
        if d.ring is not None:
            for i, n in ((R_NEW, c[NEW]), (R_FAILED, c[FAILED]), (R_DNS_PUBLIC, c[DNS_PUBLIC]),
                         (R_SCANNER_FAILED, c[SCANNER_FAILED])):
                d.ring[base + i] += n
                d.sums[i] += n
        if s.slow is not None:
            # at most EXACT a slot: a scan's first EXACT fill it as all would
            sr = d.slot_remotes
            if sr is None:
                sr = d.slot_remotes = set()
            for h in s.slow:
                if len(sr) >= EXACT:
                    break
                if h not in sr:
                    sr.add(h)
                    d.ring[base + R_SCANNER_REMOTES] += 1
                    d.sums[R_SCANNER_REMOTES] += 1
        for name in LATEST:
            new = getattr(s, name)
            if new is not None:
                old = getattr(d, name)
                for x in new:
                    old = _keep_latest(old, x)
                setattr(d, name, old)
        d.ring_secs += seconds
        slots = 0
        while d.ring_secs >= RING_SECONDS and slots < RING_SLOTS:
            d.ring_secs -= RING_SECONDS
            slots += 1
            d.ring_pos = (d.ring_pos + 1) % RING_SLOTS
            if d.ring is not None:
                base = d.ring_pos * RING_FIELDS
                for i in range(RING_FIELDS):
                    d.sums[i] -= d.ring[base + i]
                    d.ring[base + i] = 0
            d.slot_remotes = None
        if d.ring is not None and not any(d.sums):
            d.ring = None  # ten quiet minutes: every slot is zero again
        d.ring_secs %= RING_SECONDS  # a long pause (a clock jump) clears the ring once

    def _long(self, d):
        sums = d.sums
        if not any(sums):
            return None
        fig = {"window": RING_SLOTS * RING_SECONDS, "scanner_failed": sums[R_SCANNER_FAILED],
               "scanner_remotes": sums[R_SCANNER_REMOTES], "dns_public": sums[R_DNS_PUBLIC],
               "long_new": sums[R_NEW], "long_failed": sums[R_FAILED]}
        fig["resolver"] = ", ".join(d.ex_dns or ()) or "several"
        return fig

    # -- Layer B ----------------------------------------------------------------

    def _minute_add(self, d, seconds):
        m = d.minute
        c = d.cur.c
        for i in range(NCOUNT):
            m[i] += c[i]
        d.minute_secs += seconds

    def _minute_values(self, d):
        m = d.minute
        scale = 60.0 / d.minute_secs
        return {"m_new": m[NEW_ANY] * scale, "m_remotes": d.minute_remotes.count() * scale,
                "m_failed_share": m[FAILED] / m[NEW] if m[NEW] else 0.0,
                "m_upload_new": m[UPLOAD_NEW] * scale}, m[NEW]

    def _baseline_of(self, d, hour, i):
        """(mean, sd) for figure i: this hour's once it has history, else
        the device's own once it has LEARN_MINUTES, else the default."""
        if d.base is not None:
            if d.hour_n[hour] >= HOUR_MINUTES:
                j = (hour * NB + i) * 2
                return d.hour_base[j], math.sqrt(max(0.0, d.hour_base[j + 1]))
            if d.minutes >= LEARN_MINUTES:
                return d.base[i * 2], math.sqrt(max(0.0, d.base[i * 2 + 1]))
        return PRIORS[BASE_FIGURES[i]]

    def _minute(self, d, hour):
        values, new_public = self._minute_values(d)
        figs = []
        for name in BY_WINDOW.get(MINUTE, ()):
            rule = RULES[name]
            if rule.get("needs_history") and d.minutes < LEARN_MINUTES:
                continue
            thr = self.thresholds[name]
            i = BASE_FIGURES.index(rule["figure"])
            mean, sd = self._baseline_of(d, hour, i)
            prior = PRIORS[rule["figure"]]
            sd = max(sd, prior[1] * 0.25)  # a flat baseline must not make every wobble a sigma
            limit = max(thr["floor"], mean + thr["sigmas"] * sd)
            fig = {"rule": name, "window": int(d.minute_secs), "value": values[rule["figure"]],
                   "mean": mean, "sd": sd, "limit": limit,
                   "learned_minutes": d.minutes}
            if "quarantine_multiple" in thr:
                fig["quarantine_at"] = thr["quarantine_multiple"] * max(mean, thr["floor"])
            if "min_new" in thr:
                fig["min_new"] = new_public
            figs.append(fig)
        return figs

    def _learn(self, d, hour):
        """Fold the closed minute into the baselines, unless a Layer-A sign
        held in it (an attack must not become normal), and age the known
        remotes."""
        values, _ = self._minute_values(d)
        if d.base is None:
            d.base = array("f", [0.0] * (NB * 2))
            d.hour_base = array("f", [0.0] * (24 * NB * 2))
            d.hour_n = bytearray(24)
        if not d.a_sign:
            if d.minutes == 0:  # seed: this device's own level, the default's spread
                for i in range(NB):
                    d.base[i * 2] = values[BASE_FIGURES[i]]
                    d.base[i * 2 + 1] = PRIORS[BASE_FIGURES[i]][1] ** 2
            first_of_hour = d.hour_n[hour] == 0
            for i in range(NB):
                x = values[BASE_FIGURES[i]]
                _ewma(d.base, i * 2, x, ALPHA)
                j = (hour * NB + i) * 2
                if first_of_hour:
                    d.hour_base[j], d.hour_base[j + 1] = d.base[i * 2], d.base[i * 2 + 1]
                _ewma(d.hour_base, j, x, ALPHA_HOUR)
            if d.hour_n[hour] < 255:
                d.hour_n[hour] += 1
            d.minutes += 1
        if d.fresh is not None:  # this minute's answered remotes become known
            if d.known is None:
                d.known = d.fresh
            else:
                for i in range(BLOOM_BYTES):
                    d.known[i] |= d.fresh[i]
            d.fresh = None
        if d.known_n >= BLOOM_CAP:  # age a generation out
            d.old, d.known = d.known, None
            d.known_n = 0
        d.minute = [0] * NCOUNT
        d.minute_secs = 0
        d.minute_remotes = Distinct()
        d.a_sign = False

    # -- size and status --------------------------------------------------------

    def nbytes(self):
        """An estimate of the state's size in bytes (arrays, sets, dicts)."""
        n = 200 + 80 * len(self.devices)
        for d in self.devices.values():
            n += d.nbytes()
        return n

    def status(self):
        return {"on": True, "mode": self.mode, "devices": len(self.devices),
                "devices_dropped": self.dropped, "state_bytes": self.nbytes(),
                "scans": self.scans, "warnings": list(self.warnings),
                "last": [{"mac": v["mac"], "rule": v["rule"], "severity": v["severity"]}
                         for v in self.last[:20]]}


def _ring():
    return array("I", [0] * (RING_SLOTS * RING_FIELDS))


def _ewma(arr, j, x, alpha):
    diff = x - arr[j]
    arr[j] += alpha * diff
    arr[j + 1] = (1 - alpha) * (arr[j + 1] + alpha * diff * diff)


# -- a scan as a message (issue 15: the controller's detector) -----------------
#
# An agent publishes what each device did in its last scan (the Scan that
# end_scan just closed, slow_scan's attempts too); a controller rebuilds
# the Scans and merges them (scans.py). Not carried: the known-remotes
# filter (per-device state; a scan's upload counter says what it found).

TOPS = ("ports", "peers", "udp")
DISTINCTS = ("remotes", "lan_hosts", "lan_ports")
SCAN_EXAMPLES = ("ex_failed", "ex_lan", "ex_upload", "lan_port_list")  # lists, None until the first
SCAN_OPTIONAL = ("slow",) + LATEST  # None until used


def scan_to_obj(s):
    """A Scan as JSON-able data: {"c", distinct: [hashes] or {"hll": regs},
    top: [[key, weight, extra]], examples, slow: [hashes]}."""
    out = {"c": list(s.c)}
    for name in DISTINCTS:
        d = getattr(s, name)
        if d.regs is not None:
            out[name] = {"hll": list(d.regs)}
        elif d.small is not None:
            out[name] = list(d.small)
    for name in TOPS:
        t = getattr(s, name)
        if t:
            out[name] = [[k, v[0], v[1]] for k, v in t.items()]
    for name in SCAN_EXAMPLES + SCAN_OPTIONAL:
        if getattr(s, name):
            out[name] = list(getattr(s, name))
    return out
