"""What the digests cost: bytes a device holds and flows a second through
`Digests.add`, measured in one run.

    PYTHONPATH=src python3 bench/digest_bytes.py      # bytes (getsizeof) + add flows/s
    PYTHONPATH=src python3 bench/digest_bytes.py --against OLD_DIGEST.py  # add: both, in turns
    MICROPYPATH=src micropython bench/digest_bytes.py # bytes (gc.mem_alloc deltas)

Bytes: on CPython sys.getsizeof of everything a device's digests reach
(rings, open bucket, its sketches and remotes; the shared remote table is
counted apart); on MicroPython the growth of gc.mem_alloc() after a
collection, for DEVS devices fed the same way, divided by DEVS.
Devices: "quiet" has traffic with 5 remotes every minute for 2 h (every
bucket of both rings written, the open bucket holding its 5 remotes);
"sparse" moves traffic one minute in ten; "scanner" has 100,000 remotes
in its open bucket (bounded by digest_remotes).

add: the 16,384-flow, 250-device table of ctfill.home_table (a few busy
devices, many quiet ones), fed as the agent's scan feeds it: the first
scan (every flow new), the first scan after a bucket closed (every flow
moved, per-remote bytes start empty) and a later scan of the same bucket.
"""

import gc
import sys
import time

MPY = sys.implementation.name == "micropython"
if not MPY:
    import os
    HERE = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))
    sys.path.insert(0, HERE)

from spin_lite import config, digest  # noqa: E402

DEVS = 10
MINUTES = 25 * 60  # full history: 60 fine buckets and 48 half-hours
# (name, minute -> [(remote, port, bytes out, bytes in, packets out, in, new)])
PROFILES = (
    ("sensor", lambda m: [("203.0.113.7", 8883, 1800, 600, 12, 10, m % 30 == 0)]),
    # the same sensor whose minutes differ a little (retries, TLS records)
    ("sensor~", lambda m: [("203.0.113.8", 8883, 1700 + (m * 37) % 211, 600 + (m * 11) % 53,
                            12 + m % 3, 10 + m % 2, m % 30 == 0)]),
    ("quiet", lambda m: [("203.0.113.%d" % k, 443, 20000 * (k + 1), 3000, 30, 20, k == 0)
                         for k in range(5)]),
    ("sparse", lambda m: [("203.0.113.%d" % k, 443, 20000 * (k + 1), 3000, 30, 20, k == 0)
                          for k in range(5)] if m % 10 == 0 else []),
    ("busy", lambda m: [("198.51.%d.%d" % (k % 3, (m + k) % 200), 443, 2000000 + k * 90000,
                         40000000, 4000, 30000, k < 3) for k in range(12)]),
)


TEXTS = {}  # remote -> one text object, as the agent's address cache hands it out


def text(remote):
    return TEXTS.setdefault(remote, remote)


def feed(d, key, profile, minutes=MINUTES):
    """The profile's traffic each minute; the open bucket of the last
    minute keeps what it got (as an agent's between two closes)."""
    for minute in range(1, minutes + 1):
        for remote, port, bo, bi, po, pi, new in profile(minute):
            d.add(key, text(remote), port, bo, bi, po, pi, new, False)
        if minute == minutes:
            break
        d.tick(minute * 60000)


SHARED = {id(i) for i in range(-5, 257)}  # CPython's small ints: one of each per interpreter


def walk(obj, skip, seen):
    """getsizeof of obj and of everything it reaches (slots, containers),
    each object once, leaving out the objects in skip."""
    if id(obj) in seen or id(obj) in skip or obj is None:
        return 0
    seen.add(id(obj))
    n = sys.getsizeof(obj)
    if isinstance(obj, dict):
        for k, v in obj.items():
            n += walk(k, skip, seen) + walk(v, skip, seen)
    elif isinstance(obj, (list, set, tuple, frozenset)):
        for v in obj:
            n += walk(v, skip, seen)
    elif hasattr(obj, "__slots__"):
        for cls in type(obj).__mro__:
            for name in getattr(cls, "__slots__", ()):
                if hasattr(obj, name):
                    n += walk(getattr(obj, name), skip, seen)
    return n


def feed_scanner(d, key):
    for i in range(100000):
        d.add(key, "10.%d.%d.%d" % (i >> 16, (i >> 8) & 255, i & 255), 23, 60, 0, 1, 0, True, True)


def sizes_cpython(cfg):
    """name -> (device bytes, of it the rings, device bytes less what the
    interpreter and the address cache share: small ints, remote texts)"""
    out = {}
    feeds = [(name, lambda d, k, p=profile: feed(d, k, p)) for name, profile in PROFILES]
    for name, fn in feeds + [("scanner", feed_scanner)]:
        d = digest.Digests(cfg, 0, 1700001000)
        fn(d, "02:00:00:00:00:01")
        skip = {id(d.table), id(digest.NO_RING)}
        dev = d.devices["02:00:00:00:00:01"]
        rings = sum(walk(r, skip, set()) for r in (dev.fine, dev.coarse))
        own = walk(dev, skip | SHARED | {id(t) for t in TEXTS.values()}, set())
        out[name] = (walk(dev, skip, set()), rings, own)
    silent = digest.Digests(cfg, 0, 1700001000)
    silent.add("02:00:00:00:00:05", "203.0.113.9", 80, 0, 0, 0, 0, False, False)
    dev = silent.devices["02:00:00:00:00:05"]
    out["silent"] = (walk(dev, {id(digest.NO_RING)}, set()), 0, walk(dev, {id(digest.NO_RING)} | SHARED, set()))
    return out


def sizes_micropython(cfg):
    """name -> (device bytes, 0): the heap DEVS more devices take, / DEVS"""
    out = {}
    for name, profile in PROFILES:
        per = []
        for n in (1, 1 + DEVS):
            gc.collect()
            d = digest.Digests(cfg, 0, 1700001000)
            for minute in range(1, MINUTES + 1):
                for i in range(n):
                    key = "02:00:00:00:01:%02x" % i
                    for remote, port, bo, bi, po, pi, new in profile(minute):
                        d.add(key, text(remote), port, bo, bi, po, pi, new, False)
                if minute < MINUTES:
                    d.tick(minute * 60000)
            if not per:
                gc.collect()
                m0 = gc.mem_alloc()
                per.append(0)
                del d
                continue
            gc.collect()
            per.append(gc.mem_alloc() - m0)
            del d
        out[name] = (per[1] // DEVS, 0)
    return out


def home_flows():
    """(mac, remote, port, bo, bi, po, pi) of ctfill's 16k-flow home."""
    import ctfill
    entries, devs = ctfill.home_table(16384, 250)
    mac_of = {}
    for mac, ip4, ip6, _ in devs:
        mac_of[ip4] = mac
        if ip6:
            mac_of[ip6] = mac
    flows = []
    for e in entries:
        o = e["orig"]
        po, bo, pr, br = e["counters"]
        if o[0] in mac_of:
            flows.append((mac_of[o[0]], o[1], o[3], bo, br, po, pr))
        else:
            r = e["reply"]
            flows.append((mac_of.get(r[0], devs[0][0]), o[0], o[3], br, bo, pr, po))
    return flows


def add_rate(cfg, flows, runs=7, module=digest):
    """Median process CPU seconds of one pass of every flow through add,
    per kind of scan (CPU, not wall: the machine is shared)."""
    res = {"first": [], "after close": [], "same bucket": []}
    minute = 0
    for run in range(runs):
        minute += 1
        d = module.Digests(cfg, 0, 1700001000)
        add = d.add
        t = time.process_time()
        for mac, remote, port, bo, bi, po, pi in flows:
            add(mac, remote, port, bo, bi, po, pi, True, bi == 0)
        res["first"].append(time.process_time() - t)
        d.tick(60000)
        t = time.process_time()
        for mac, remote, port, bo, bi, po, pi in flows:
            add(mac, remote, port, 1 + (bo & 1023), bi & 1023, 1, 1, False, False)
        res["after close"].append(time.process_time() - t)
        t = time.process_time()
        for mac, remote, port, bo, bi, po, pi in flows:
            add(mac, remote, port, 1 + (bo & 1023), bi & 1023, 1, 1, False, False)
        res["same bucket"].append(time.process_time() - t)
    return {k: sorted(v)[len(v) // 2] for k, v in res.items()}


def home_history(module, cfg, devices=250, minutes=61):
    """A home of `devices` devices (the profiles in turn) after `minutes`
    minutes: what history reads."""
    d = module.Digests(cfg, 0, 1700001000)
    keys = ["02:00:00:00:%02x:%02x" % (i >> 8, i & 255) for i in range(devices)]
    for minute in range(1, minutes + 1):
        for i, key in enumerate(keys):
            for remote, port, bo, bi, po, pi, new in PROFILES[i % len(PROFILES)][1](minute):
                d.add(key, text(remote), port, bo, bi, po, pi, new, False)
        d.tick(minute * 60000)
    return d, keys


def close_time(d, keys, runs=5):
    """Median process CPU seconds of closing one bucket of the home
    (every device's ring records written), its traffic fed before."""
    times = []
    for _ in range(runs):
        minute = d.open_n - d.first_n + 1
        for i, key in enumerate(keys):
            for remote, port, bo, bi, po, pi, new in PROFILES[i % len(PROFILES)][1](minute):
                d.add(key, text(remote), port, bo, bi, po, pi, new, False)
        t = time.process_time()
        d.tick(minute * 60000)
        times.append(time.process_time() - t)
    return sorted(times)[runs // 2]


def read_time(d, keys, runs=5):
    """Median process CPU seconds of a whole-home history(None, 60) and of
    every device's own history(mac, 60)."""
    home, each = [], []
    for _ in range(runs):
        t = time.process_time()
        d.history(None, 60)
        home.append(time.process_time() - t)
        t = time.process_time()
        for key in keys:
            d.history(key, 60)
        each.append(time.process_time() - t)
    return sorted(home)[runs // 2], sorted(each)[runs // 2]


def main():
    cfg = config.defaults()
    print("digest bytes per device, %d min of history (fine %d + coarse %d x %d buckets, top %d,"
          " digest_remotes %d), %s %s"
          % (MINUTES, cfg["fine_buckets"], cfg["coarse_buckets"], cfg["coarse_factor"],
             cfg["top_remotes"], cfg["digest_remotes"], sys.implementation.name,
             ".".join(str(x) for x in sys.implementation.version[:3])))
    if MPY:
        for name, (b, _) in sizes_micropython(cfg).items():
            print("  %-8s %6d B  (gc.mem_alloc delta / %d devices)" % (name, b, DEVS))
        return
    for name, (b, rings, own) in sizes_cpython(cfg).items():
        print("  %-8s %6d B  (rings %d, open bucket and device %d; %d B less small ints and remote texts)"
              % (name, b, rings, b - rings, own))
    flows = home_flows()
    print("Digests.add, %d flows of 250 devices, process CPU (load %s)"
          % (len(flows), open("/proc/loadavg").read().split()[0]))
    if sys.argv[1:2] == ["--against"]:
        # another digest.py (git show main:src/spin_lite/digest.py > old.py),
        # measured in turns with this one: the ratio holds on a loaded machine
        import importlib.util
        spec = importlib.util.spec_from_file_location("old_digest", sys.argv[2])
        old = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(old)
        new_t, old_t = {}, {}
        for _ in range(5):
            for mod, acc in ((digest, new_t), (old, old_t)):
                for k, v in add_rate(cfg, flows, 3, mod).items():
                    acc.setdefault(k, []).append(v)
        homes = [home_history(mod, cfg) for mod in (digest, old)]
        new_r, old_r = [], []
        for _ in range(3):
            new_r.append(read_time(*homes[0]))
            old_r.append(read_time(*homes[1]))
        print("history of 250 devices, 60 min, process CPU, medians in turns (load %s)"
              % open("/proc/loadavg").read().split()[0])
        for k in range(3):  # closing changes the home: after the reads
            new_r[k] += (close_time(*homes[0]),)
            old_r[k] += (close_time(*homes[1]),)
        for i, what in enumerate(("history(None, 60)", "250 x history(mac, 60)", "close a bucket (tick)")):
            n, o = min(r[i] for r in new_r), min(r[i] for r in old_r)
            print("  %-24s this %7.1f ms  %s %7.1f ms  ratio %.2f" % (what, n * 1e3, sys.argv[2], o * 1e3, n / o))
        print("  %-12s %24s %24s %7s" % ("", "this digest.py", sys.argv[2], "speedup"))
        for k in new_t:
            n, o = min(new_t[k]), min(old_t[k])
            print("  %-12s %6.1f ms %8.0f flows/s %6.1f ms %8.0f flows/s %6.2fx"
                  % (k, n * 1e3, len(flows) / n, o * 1e3, len(flows) / o, o / n))
        return
    for k, s in add_rate(cfg, flows).items():
        print("  %-12s %6.1f ms  %8.0f flows/s" % (k, s * 1e3, len(flows) / s))


if __name__ == "__main__":
    main()
