"""An agent's scans on a controller (issue 15): what an agent publishes
as `figures` (detect.scan_to_obj, per busy device, after each scan) read
back into detect.Scan objects, merged, and fed to the controller's own
Detector. One agent's scans add up; two agents that see the same device
(an access point and the router behind it) see the same flows: the larger
count, the union of the remotes, as the digest merge takes the larger
figure. Only the controller imports this; the agent needs scan_to_obj
alone, which stays in detect.py.
"""

from .detect import (DISTINCTS, EXACT, EXAMPLES, HLL_M, NCOUNT, SCAN_EXAMPLES, TOP_K, TOPS, Scan,
                     _keep_example, top_add, union_regs)


def count(v, what):
    if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v >= 1 << 32:
        raise ValueError("%s: %r is not a count" % (what, v))
    return v


def from_obj(obj):
    """detect.scan_to_obj's output back as a Scan, or ValueError (nothing half-built
    escapes: the caller merges only what came back whole)."""
    if not isinstance(obj, dict):
        raise ValueError("a scan is an object")
    s = Scan()
    c = obj.get("c")
    if not isinstance(c, list) or len(c) != NCOUNT:
        raise ValueError("c: %d counters expected" % NCOUNT)
    s.c = [count(v, "c") for v in c]
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
        ex = obj.get(name) or []
        if not isinstance(ex, list) or len(ex) > EXAMPLES or not all(isinstance(x, str) for x in ex):
            raise ValueError("%s: at most %d addresses" % (name, EXAMPLES))
        setattr(s, name, list(ex) if ex else None)
    return s


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
