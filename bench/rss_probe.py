"""The agent's memory after a simulated hour; run by run.py as
`python3 -S rss_probe.py probe.json` inside the benchmark namespace.

-S: no site-packages, no .pth files (pyenv's add ~5 MB a router has not).
The agent starts as it does on a router (its parts included, every path
under the bench's directory), scans the namespace's /proc table, then
lives an hour on a simulated clock: each minute one scan of a tmpfs copy
of the table in which every flow moved, so every device has traffic and
top remotes in every bucket. Prints one JSON line.

    python3 bench/rss_probe.py --bench    (as root: only run.py's RSS part,
                                           in a namespace of its own)
"""

import os
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))
if sys.argv[1:2] not in (["--bench"], ["--inside"]):
    # the package: argv[2] (a compiled copy) or the source tree
    sys.path.insert(0, sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(HERE), "src"))


def kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def size(obj):
    """Bytes of a container and what it holds (one level, shared objects
    counted each time: an upper bound)."""
    n = sys.getsizeof(obj)
    if isinstance(obj, dict):
        for k, v in obj.items():
            n += sys.getsizeof(k) + sys.getsizeof(v)
    elif isinstance(obj, (list, set, tuple)):
        for v in obj:
            n += sys.getsizeof(v)
    return n


CODE = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
        types.MethodWrapperType)


def walk(obj, seen):
    """getsizeof of obj and everything it reaches (containers, slots,
    instance dicts), each object once: what a part holds."""
    if id(obj) in seen or obj is None or isinstance(obj, CODE):
        return 0  # classes, modules, functions, methods: code, not data
    seen.add(id(obj))
    n = sys.getsizeof(obj)
    if isinstance(obj, dict):
        for k, v in obj.items():
            n += walk(k, seen) + walk(v, seen)
    elif isinstance(obj, (list, set, tuple, frozenset)):
        for v in obj:
            n += walk(v, seen)
    else:
        for cls in type(obj).__mro__:
            for name in getattr(cls, "__slots__", ()):
                n += walk(getattr(obj, name, None), seen)
        d = getattr(obj, "__dict__", None)
        if isinstance(d, dict):
            n += walk(d, seen)
    return n


def breakdown(a):
    """KB held by the flow table, the address cache, the digests (with
    their shared remote table), the detector and the names."""
    flows = a.scanner.nbytes()  # arrays of slots, grown with the flows up to max_flows
    seen = set()
    digests = walk(a.digests.devices, seen) + walk(a.digests.table, seen)
    out = {"flow table": flows // 1024, "address cache": size(a.scanner.lan.cache) // 1024,
           "digests": digests // 1024}
    if a.detector is not None:
        out["detector"] = walk(a.detector.devices, set()) // 1024
    if a.names is not None:
        out["names"] = walk(a.names, set(seen) | {id(a)}) // 1024
    return out


def bench():
    """On the host: run.py's RSS part alone, in a namespace of its own."""
    import run
    return run.in_namespace("rss", __file__)


def inside(work):
    """In the namespace: run.py's table, home and snapshots, then its rss()."""
    import ctfill
    import run
    entries, devs = ctfill.home_table(run.FLOWS, run.DEVICES)
    with open("/proc/sys/net/netfilter/nf_conntrack_acct", "w") as f:
        f.write("1\n")
    run.build_home(devs, work)
    ctfill.insert(entries)
    with open("/proc/net/nf_conntrack", "rb") as f:
        text = f.read()
    cfg = run.agent_config(work)
    run.out("load %s" % open("/proc/loadavg").read().split()[0])
    snaps = run.moved_snapshots(text, 16, work)
    run.rss(cfg, text, snaps, work)
    # where the realistic agent's RSS comes from, step by step (source tree)
    spec = os.path.join(work, "probe-realistic.json")
    res = run.probe([sys.executable, "-S", os.path.abspath(__file__), spec], work)
    run.out("  RSS step by step (pyenv, source, realistic), MB:")
    last = res.get("import_kb", 0)
    run.out("    %-42s %6.1f" % ("after importing the agent", last / 1024.0))
    for label, k in res.get("steps_kb", ()) + [("after the first scan", res.get("first_kb", 0)),
                                               ("after 62 buckets", res.get("rss_kb", 0))]:
        run.out("    %-42s %6.1f  %+6.1f" % (label, k / 1024.0, (k - last) / 1024.0))
        last = k
    return 0


def main(path):
    # the agent's own JSON (plat.json), not `import json`: that would load
    # re and enum, 0.8 MB the agent itself no longer imports
    from spin_lite import agent as agent_mod, plat
    with open(path) as f:
        spec = plat.json.loads(f.read())
    import_kb = kb("VmRSS")
    clock = [plat.monotonic_ms()]
    wall = [plat.wall()]
    plat.monotonic_ms = lambda: clock[0]
    plat.wall = lambda: wall[0]
    cfg = spec["cfg"]
    a = agent_mod.Agent(cfg)
    marks = {}

    def first_scan():  # what the parts took before the first scan
        marks["parts_kb"] = kb("VmRSS")
        del a.scan
        a.scan()
    a.scan = first_scan
    steps = [("agent made", kb("VmRSS"))]

    def mark(obj, name, label):
        """RSS after obj.name() runs: where starting costs what."""
        fn = getattr(obj, name)

        def marked(*args):
            r = fn(*args)
            steps.append((label(), kb("VmRSS")))
            return r
        setattr(obj, name, marked)

    mark(a, "read_network", lambda: "network read (flow table made)")

    def parts_made():
        for p in a.parts:
            if getattr(p, "start", None) is not None:
                mark(p, "start", lambda p=p: type(p).__name__ + " started")
        return "parts made (their modules imported)"
    mark(a, "build_parts", parts_made)
    a.start()
    pump = spec.get("pump") and a.mqtt is not None  # publishing on: let the loop send
    for _ in range(400 if pump else 0):
        if a.mqtt.client.is_up():
            break
        a.loop.run_once(20)
    first_kb = kb("VmRSS")
    snaps = spec["snaps"]
    closed_before = a.digests.open_n
    for i in range(spec["buckets"]):
        clock[0] += 60000
        wall[0] += 60
        a.cfg["conntrack_file"] = snaps[i % len(snaps)]
        a.scan()
        for _ in range(200 if pump else 0):
            if not a.mqtt.ring:
                break
            a.loop.run_once(20)
    res = {
        "parts_kb": breakdown(a),
        "rss_kb": kb("VmRSS"), "hwm_kb": kb("VmHWM"), "import_kb": import_kb,
        "first_kb": first_kb, "started_kb": marks.get("parts_kb", 0), "devices": len(a.devices.table),
        "digest_devices": len(a.digests.devices), "closed": a.digests.open_n - closed_before,
        "flows": a.scanner.seen, "steps_kb": steps, "parts": [type(p).__name__ for p in a.parts],
        "errors": a.errors, "mqtt": a.mqtt.status() if getattr(a, "mqtt", None) else None,
    }
    for p in a.parts:
        stop = getattr(p, "stop", None)
        if stop:
            try:
                stop(a)
            except Exception:
                pass
    print(plat.json.dumps(res))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--bench"]:
        sys.exit(bench())
    if sys.argv[1:2] == ["--inside"]:
        sys.exit(inside(sys.argv[2]))
    try:
        main(sys.argv[1])
    except Exception as e:
        import json
        print(json.dumps({"error": "%s: %s" % (type(e).__name__, e)}))
