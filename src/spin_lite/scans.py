"""An agent's scans on a controller (issue 15): what an agent publishes
as `figures` (detect.scan_to_obj, per busy device, after each scan) read
back into detect.Scan objects, merged, and fed to the controller's own
Detector. One agent's scans add up; two agents that see the same device
(an access point and the router behind it) see the same flows: the larger
count, the union of the remotes, as the digest merge takes the larger
figure. Only the controller imports this; the agent needs scan_to_obj
alone, which stays in detect.py.
"""

from array import array

from .detect import (DISTINCTS, EXACT, EXAMPLES, HLL_M, LATEST, NCOUNT, SCAN_EXAMPLES, SCAN_OPTIONAL,
                     TOP_K, TOPS, Scan, _absent, _keep_example, _keep_latest, top_add, union_regs)

# counters a scan carries, by the figures message's schema: version 1 had
# no SCANNER_FAILED (its scans add nothing to a controller's slow_scan)
COUNTERS = {1: NCOUNT - 1, 2: NCOUNT}
TAKEN = tuple(COUNTERS)  # the figures schemas a controller takes
# what each list of a scan holds (detect.SCAN_EXAMPLES, SCAN_OPTIONAL)
KINDS = {"ex_failed": str, "ex_lan": str, "ex_upload": str, "lan_port_list": int,
         "slow": int, "ex_slow": str, "ex_slow_ports": int, "ex_dns": str}
assert set(KINDS) == set(SCAN_EXAMPLES + SCAN_OPTIONAL), "scans.KINDS: what does each list hold?"


def count(v, what):
    if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v >= 1 << 32:
        raise ValueError("%s: %r is not a count" % (what, v))
    return v


def from_obj(obj, version=2):
    """detect.scan_to_obj's output (of that schema version) back as a Scan,
    or ValueError (nothing half-built escapes: the caller merges only what
    came back whole)."""
    if not isinstance(obj, dict):
        raise ValueError("a scan is an object")
    s = Scan()
    c = obj.get("c")
    n = COUNTERS[version]
    if not isinstance(c, list) or len(c) != n:
        raise ValueError("c: %d counters expected" % n)
    s.c = [count(v, "c") for v in c] + [0] * (NCOUNT - n)
    for name in DISTINCTS:
        v = obj.get(name)
        d = getattr(s, name)
        if v is None:
            continue
        if isinstance(v, dict) and isinstance(v.get("hll"), list) and len(v["hll"]) == HLL_M:
            d.regs = bytearray(HLL_M)
            for j in range(HLL_M):
                x = count(v["hll"][j], name)
                if x > 32:  # a register holds a rank of a 32-bit hash
                    raise ValueError("%s: register %r" % (name, x))
                d.regs[j] = x
        elif isinstance(v, list) and len(v) <= EXACT:
            for h in v:
                d.add(count(h, name))
        else:
            raise ValueError("%s: a list of at most %d hashes or {\"hll\": %d registers}"
                             % (name, EXACT, HLL_M))
    for name in TOPS:
        rows = obj.get(name) or []
        if not isinstance(rows, list) or len(rows) > TOP_K:
            raise ValueError("%s: at most %d rows" % (name, TOP_K))
        t = {}
        for r in rows:
            if not (isinstance(r, list) and len(r) == 3 and isinstance(r[0], int if name == "ports" else str)
                    and not isinstance(r[0], bool)):
                raise ValueError("%s: rows are [key, weight, extra]" % name)
            t[r[0]] = [count(r[1], name), count(r[2], name)]
        setattr(s, name, t or None)
    for name in SCAN_EXAMPLES:
        items = _items(obj, name, KINDS[name], EXAMPLES)
        setattr(s, name, list(items) if items else None)
    for name in SCAN_OPTIONAL:
        items = _items(obj, name, KINDS[name], EXACT if name == "slow" else EXAMPLES)
        if items:
            setattr(s, name, array("I", items) if name == "slow" else items)
    return s


def _items(obj, name, kind, most):
    """A list of at most `most` strings, or of counts (a port, a hash)."""
    v = obj.get(name)
    if v is None:
        return None
    if not isinstance(v, list) or len(v) > most or not all(
            isinstance(x, kind) and not isinstance(x, bool) for x in v):
        raise ValueError("%s: at most %d %s" % (name, most, "addresses" if kind is str else "numbers"))
    if kind is int:
        for x in v:
            count(x, name)
    return v


def _union(a, b):
    if b.regs is not None or a.regs is not None:
        a.regs, a.small = union_regs((a, b)), None
    elif b.small is not None:
        for x in b.small:
            a.add(x)


def merge(a, b, same_flows):
    """Fold Scan b into Scan a. same_flows: b is another agent's view of the
    same minutes (the larger of each count, as the digest merge does), else
    a later scan of the same agent (the sum)."""
    for i in range(NCOUNT):
        a.c[i] = max(a.c[i], b.c[i]) if same_flows else a.c[i] + b.c[i]
    for name in DISTINCTS:
        _union(getattr(a, name), getattr(b, name))
    for name in TOPS:
        ta, tb = getattr(a, name) or {}, getattr(b, name) or {}
        for k, v in tb.items():
            if same_flows:
                w = ta.get(k, [0, 0])
                ta[k] = [max(w[0], v[0]), max(w[1], v[1])]
            else:
                top_add(ta, k, v[0], v[1])
        if len(ta) > TOP_K:  # the heaviest TOP_K of the two views
            for k in sorted(ta, key=lambda k: ta[k][0])[:len(ta) - TOP_K]:
                del ta[k]
        setattr(a, name, ta or None)
    for name in SCAN_EXAMPLES:
        for x in getattr(b, name) or ():
            setattr(a, name, _keep_example(getattr(a, name), x))
    if b.slow is not None:  # the first EXACT remotes of either: the slot's own cap
        if a.slow is None:
            a.slow = array("I")
        for h in b.slow:
            if len(a.slow) >= EXACT:
                break
            if _absent(a.slow, h):
                a.slow.append(h)
    for name in LATEST:
        got = getattr(a, name)
        for x in getattr(b, name) or ():
            got = _keep_latest(got, x)
        setattr(a, name, got)


def feed(detector, mac, s):
    """The controller's feeding: Scan s is what mac did since the last
    end_scan (instead of flow by flow)."""
    d = detector._device(mac)
    if d is None:
        return
    d.cur = s
    for dist in (s.remotes, s.lan_hosts):
        if dist.small is not None:
            for h in dist.small:
                d.minute_remotes.add(h)
        elif dist.regs is not None:
            _union(d.minute_remotes, dist)
