"""The agent's memory after a simulated hour; run by run.py as
`python3 -S rss_probe.py probe.json` inside the benchmark namespace.

-S: no site-packages, no .pth files (pyenv's add ~5 MB a router has not).
The agent starts as it does on a router (its parts included, every path
under the bench's directory), scans the namespace's /proc table, then
lives an hour on a simulated clock: each minute one scan of a tmpfs copy
of the table in which every flow moved, so every device has traffic and
top remotes in every bucket. Prints one JSON line.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
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


def breakdown(a):
    """KB held by the flow table, the address cache and the digests."""
    flows = a.scanner.nbytes()  # arrays of slots, grown with the flows up to max_flows
    digests = 0
    for d in a.digests.devices.values():
        digests += sys.getsizeof(d.open) + size(d.per_remote)
        for sketch in (d.remotes, d.ports):
            digests += size(sketch.small) if sketch.small is not None else 0
            digests += sys.getsizeof(sketch.regs) if sketch.regs is not None else 0
        for r in (d.fine, d.coarse):
            if hasattr(r, "counts"):  # not NO_RING: the device moved traffic
                digests += sys.getsizeof(r.counts) + sys.getsizeof(r.octets)
                digests += sys.getsizeof(r.top_bytes) + sys.getsizeof(r.tops)
    table = a.digests.table
    digests += size(table.names) + size(table.index) + sys.getsizeof(table.refs)
    return {"flow table": flows // 1024, "address cache": size(a.scanner.lan.cache) // 1024,
            "digests": digests // 1024}


def main(path):
    with open(path) as f:
        spec = json.load(f)
    from spin_lite import agent as agent_mod, plat
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
        "flows": a.scanner.seen, "parts": [type(p).__name__ for p in a.parts],
        "errors": a.errors, "mqtt": a.mqtt.status() if a.mqtt else None,
    }
    for p in a.parts:
        stop = getattr(p, "stop", None)
        if stop:
            try:
                stop(a)
            except Exception:
                pass
    print(json.dumps(res))


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except Exception as e:
        print(json.dumps({"error": "%s: %s" % (type(e).__name__, e)}))
