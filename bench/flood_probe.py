"""The agent as flood_rss.py measures it, on CPython or MicroPython (the
common subset only): `python3 -S flood_probe.py spec.json SRC` or
`micropython -X heapsize=... flood_probe.py spec.json SRC`.

It starts the agent as a router would (its parts included, every path
under the bench's directory; the loop itself does not run), then obeys
one command a line on stdin:

    scan     one Agent.scan of the namespace's /proc/net/nf_conntrack on a
             clock moved one simulated minute, so that a bucket closes on
             every scan and 62 scans fill an hour of history
    quit     stop

and answers each scan with one JSON line: RSS and its peak, the heap in
use after a collection (MicroPython), the scan's wall time and what the
agent counted (flows, drops). The first line says it is ready.
"""

import gc
import sys

try:
    import ujson as json
except ImportError:
    import json


def kb(field):
    f = open("/proc/self/status")
    try:
        for line in f.read().split("\n"):
            if line.startswith(field):
                return int(line.split()[1])
    finally:
        f.close()
    return 0


def heap():
    """(bytes in use after a collection, heap size) on MicroPython, else (0, 0)."""
    if not hasattr(gc, "mem_alloc"):
        return 0, 0
    gc.collect()
    return gc.mem_alloc(), gc.mem_alloc() + gc.mem_free()


def sample(a, ms):
    s = a.scanner
    used, size = heap()
    return {"rss_kb": kb("VmRSS"), "hwm_kb": kb("VmHWM"), "heap_used": used, "heap_size": size,
            "scan_ms": ms, "flows": s.seen, "dropped": s.dropped, "dropped_total": s.dropped_total,
            "devices": len(a.devices.table), "remote_table": len(a.digests.table),
            "folded": a.digests.folded, "top_dropped": a.digests.table.full, "scans": a.scans,
            "errors": a.errors}


def answer(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    if hasattr(sys.stdout, "flush"):  # CPython's pipe is block-buffered
        sys.stdout.flush()


def main(spec_path, src):
    sys.path.insert(0, src)
    from spin_lite import agent as agent_mod, plat
    f = open(spec_path)
    spec = json.loads(f.read())
    f.close()
    real_ms = plat.monotonic_ms
    clock = [real_ms()]
    wall = [plat.wall()]
    plat.monotonic_ms = lambda: clock[0]
    plat.wall = lambda: wall[0]
    plat.tune_gc()  # what Agent.run does first: on MicroPython, collect by the heap's size
    a = agent_mod.Agent(spec["cfg"])
    a.start()
    answer({"ready": True, "version": sys.version, "parts": [type(p).__name__ for p in a.parts]})
    while True:
        line = sys.stdin.readline().strip()
        if line != "scan":
            break
        clock[0] += 60000
        wall[0] += 60
        t = real_ms()
        a.scan()
        answer(sample(a, real_ms() - t))
    for p in a.parts:
        stop = getattr(p, "stop", None)
        if stop:
            try:
                stop(a)
            except Exception:
                pass


if __name__ == "__main__":
    try:
        main(sys.argv[1], sys.argv[2])
    except Exception as e:  # the driver shows it; a traceback would not reach it whole
        answer({"error": "%s: %s" % (type(e).__name__, e)})
