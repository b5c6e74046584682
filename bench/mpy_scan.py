"""Scanner.scan into the digests under MicroPython (parse time only: the
PyPI Unix port's RSS says nothing about a router's). Run by run.py as
`micropython mpy_scan.py mpy.json` inside the benchmark namespace.

The sink is the agent's (Agent.scan): device IP -> MAC, then
Digests.add; the agent itself is not started here because its sources
(raw rtnetlink, child processes) need what this port may lack.
"""

import sys
import time

try:
    import ujson as json
except ImportError:
    import json


def bare_read(path):
    """The kernel producing the file, into one buffer as the scanner reads
    (read() would allocate 32 KB a call, which the scan does not)."""
    buf = bytearray(32768)
    f = open(path, "rb", 0)
    try:
        while f.readinto(buf):
            pass
    finally:
        f.close()


def ms(fn, *args):
    t = time.ticks_us()
    fn(*args)
    return time.ticks_diff(time.ticks_us(), t) / 1000.0


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def heap():
    """Bytes of the heap in use by live objects."""
    import gc
    gc.collect()
    return gc.mem_alloc()


def main(path):
    import gc
    f = open(path)
    spec = json.loads(f.read())
    f.close()
    sys.path.insert(0, spec["src"])
    from spin_lite import config, conntrack, digest, plat
    # collect often: with a big heap and no collection until it is full,
    # the survivors end up spread over all of it and a large dict or
    # bytes no longer finds room (MemoryError with most of the heap free).
    # "agent": the threshold the agent sets (plat.tune_gc)
    every = sys.argv[2] if len(sys.argv) > 2 else "agent"
    threshold = plat.tune_gc() if every == "agent" else gc.threshold(int(every)) or int(every)

    cfg = config.defaults()
    now = time.ticks_ms()
    heap0 = heap()
    digests = digest.Digests(cfg, now, time.time())
    by_ip = spec["by_ip"]
    # sized as the agent sizes it: the default 4,096 slots would leave
    # 12k of the 16k flows out, re-parsed and reported new every scan
    scanner = conntrack.Scanner(conntrack.Lan(spec["lan"], spec["router"]), cfg["max_flows"])

    def sink(ip, remote, port, proto, bo, bi, po, pi, new, unreplied):
        mac = by_ip.get(ip)
        if mac is not None:
            digests.add(mac, remote, port, bo, bi, po, pi, new, unreplied)

    def scan(p):
        scanner.scan_file(p, sink)

    proc = spec.get("proc", "/proc/net/nf_conntrack")
    runs = spec["runs"]
    heap1 = heap()
    scan(proc)
    table = scanner.nbytes()
    grown = scanner.grown
    slots = scanner.cap
    read, idle = [], []
    for _ in range(runs):
        read.append(ms(bare_read, proc))
        idle.append(ms(scan, proc))
    snaps = spec["snaps"]
    scan(snaps[0])
    in_use = heap()
    moved, shm_read = [], []
    for i in range(runs):
        p = snaps[1 + i % (len(snaps) - 1)]
        moved.append(ms(scan, p))
        shm_read.append(ms(bare_read, p))
    # the heap a growth takes for a moment: one more doubling of this
    # table (last: it changes the table), without collecting (what it frees is still counted)
    gc.collect()
    gc.disable()
    before = gc.mem_alloc()
    if scanner.cap < scanner.max_flows:
        scanner._grow(min(2 * scanner.cap, scanner.max_flows))
    grow_peak = gc.mem_alloc() - before
    gc.enable()
    print(json.dumps({"version": "%s %s" % (sys.implementation.name,
                                            ".".join(str(v) for v in sys.implementation.version[:3])),
                      "runs": runs, "read": median(read), "idle": median(idle),
                      "moved": median(moved), "shm_read": median(shm_read), "flows": scanner.seen,
                      "dropped": scanner.dropped, "heap_kb": (gc.mem_alloc() + gc.mem_free()) // 1024,
                      "threshold": threshold, "in_use": in_use, "modules": heap0, "digests_empty": heap1 - heap0,
                      "table": table, "slots": slots, "grown": grown, "grow_peak": grow_peak,
                      "grown_table": scanner.nbytes()}))


try:
    main(sys.argv[1])
except Exception as e:
    print(json.dumps({"error": "%s: %s" % (type(e).__name__, e)}))
