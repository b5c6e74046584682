#!/usr/bin/env python3
"""What names over time cost (endpoints.py): Agent.account tells the
names part of every flow that began or moved, so each reported flow costs
one more dict lookup, and one `seen` when its remote has a name.

Measured in-process on CPython (no namespace needed): 16,384 flows of 250
devices to 4,096 remotes, reported to Agent.account as a scan where every
flow moved would; without the names part, with it and no names known, with
every remote named. Then the table's memory for 4,096 named addresses
(tracemalloc) beside the estimate the byte budget counts (endpoints.cost).
Prints figures, never fails on them.
"""

import os
import sys
import tempfile
import time
import tracemalloc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

from spin_lite import config, endpoints, names  # noqa: E402
from spin_lite.agent import Agent  # noqa: E402

FLOWS = 16384
DEVICES = 250
REMOTES = 4096
RUNS = 7


def remote(i):
    return "198.51.%d.%d" % (i // 250, i % 250) if i % 4 else "2001:db8:%x::%x" % (i // 256, i % 256)


def make_agent(work):
    cfg = config.defaults()
    cfg["state_dir"] = cfg["run_dir"] = work
    agent = Agent(cfg)
    for d in range(DEVICES):
        agent.devices.by_ip["192.168.8.%d" % (2 + d % 250)] = "02:00:00:00:%02x:%02x" % (d >> 8, d & 255)
    agent.last_scan_ms = 1  # not the first snapshot: beginnings count
    return agent


def flows():
    return [("192.168.8.%d" % (2 + i % DEVICES), remote(i % REMOTES), 443, b"tcp") for i in range(FLOWS)]


def scan_ms(agent, fl, new):
    best = None
    for _ in range(RUNS):
        t0 = time.perf_counter()
        for ip, r, port, proto in fl:
            agent.account(ip, r, port, proto, 100, 1000, 1, 2, new, False)
        dt = (time.perf_counter() - t0) * 1e3
        best = dt if best is None or dt < best else best
    return best


def main():
    fl = flows()
    with tempfile.TemporaryDirectory() as work:
        agent = make_agent(work)
        base = scan_ms(agent, fl, False)
        agent.names = names.Names(agent.cfg)
        empty = scan_ms(agent, fl, False)
        now = agent.names.now()
        for i in range(REMOTES):
            agent.names.endpoints.learn(remote(i), "n%d.cdn.example-video.com" % i, 86400, now)
        moved = scan_ms(agent, fl, False)
        began = scan_ms(agent, fl, True)
    print("account(), %d flows of %d devices to %d remotes, best of %d (ms a scan, us a flow):"
          % (FLOWS, DEVICES, REMOTES, RUNS))
    for label, ms in (("no names part", base), ("names part, no name known", empty),
                      ("every remote named, flows moved", moved), ("every remote named, flows new", began)):
        print("  %-34s %7.1f ms  %5.2f us  %5.2f x no names part" % (label, ms, ms * 1e3 / FLOWS, ms / base))

    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    eps = endpoints.Endpoints(size=REMOTES, budget=1 << 30)
    for i in range(REMOTES):
        eps.learn(remote(i), "n%d.cdn.example-video.com" % i, 86400, 1000)
        eps.seen(remote(i), True, 1001)
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    print("endpoints: %d addresses with one name each: %d B measured (%.0f B an address), "
          "%d B estimated by endpoints.cost (%.0f B an address)"
          % (REMOTES, held, held / REMOTES, eps.bytes, eps.bytes / REMOTES))


if __name__ == "__main__":
    main()
