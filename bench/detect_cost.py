#!/usr/bin/env python3
"""What the detector costs beside the digests it sits next to.

Pure (no namespace needed): 250 devices, each with 20 answered flows that
move every scan and 2 new ones, and one bulb scanning telnet at 160 SYN/s
(800 new flows a 5 s scan), fed for 24 scans (two minutes, so Layer B's
baselines exist) to digest.Digests.add and to detect.Detector.flow alike.
Prints the time per flow of each and their ratio, end_scan's time for all
devices beside the digests' tick, and the detector's state: its own
estimate (Detector.nbytes, what the core tests bound) beside what
tracemalloc counts on CPython.

    PYTHONPATH=src python3 bench/detect_cost.py
"""

import sys
import time
import tracemalloc

from spin_lite import config, detect, digest

DEVICES = 250
SCANS = 24
MOVED = 20
NEW = 2
SCAN_PER_5S = 800
SECONDS = 5


def macs():
    return ["02:00:00:00:%02x:%02x" % (i >> 8, i & 255) for i in range(DEVICES)]


def stream(scan):
    """One scan's flows: (mac, remote, port, proto, bo, bi, po, pi, new, unreplied)."""
    out = []
    for k, mac in enumerate(macs()):
        for j in range(MOVED):
            out.append((mac, "203.0.%d.%d" % (k % 200, j), 443, b"tcp", 1500, 30000, 10, 25,
                        False, False))
        for j in range(NEW):
            out.append((mac, "198.51.%d.%d" % (k % 200, (scan * NEW + j) % 250), 443, b"tcp",
                        600, 4000, 6, 8, True, False))
    bulb = macs()[0]
    for j in range(SCAN_PER_5S):
        n = scan * SCAN_PER_5S + j
        out.append((bulb, "%d.%d.%d.%d" % (11 + n % 200, (n >> 8) & 255, n & 255, 1 + n % 250),
                    23 if j % 10 else 2323, b"tcp", 60, 0, 1, 0, True, True))
    return out


def run(cfg):
    """Feed SCANS scans to fresh digests and a fresh detector; (timings, det)."""
    det = detect.Detector(cfg)
    dig = digest.Digests(cfg, 0, 1.7e9)
    router, lan = {"192.168.8.1"}, {}
    t = {"digest": 0.0, "detect": 0.0, "end_scan": 0.0, "tick": 0.0, "flows": 0, "verdicts": 0}
    for scan in range(SCANS):
        batch = stream(scan)
        t["flows"] += len(batch)
        t0 = time.perf_counter()
        for mac, remote, port, proto, bo, bi, po, pi, new, unr in batch:
            dig.add(mac, remote, port, bo, bi, po, pi, new, unr)
        t1 = time.perf_counter()
        for mac, remote, port, proto, bo, bi, po, pi, new, unr in batch:
            det.flow(mac, remote, port, proto, bo, bi, po, pi, new, unr, False,
                     detect.classify(remote, router, lan))
        t2 = time.perf_counter()
        t["verdicts"] += len(det.end_scan(1.7e9 + scan * SECONDS, SECONDS, {}, 65536))
        t3 = time.perf_counter()
        dig.tick((scan + 1) * SECONDS * 1000, 1.7e9 + scan * SECONDS)
        t4 = time.perf_counter()
        t["digest"] += t1 - t0
        t["detect"] += t2 - t1
        t["end_scan"] += t3 - t2
        t["tick"] += t4 - t3
    return t, det


def main():
    cfg = config.defaults()
    t, _ = run(cfg)
    us = 1e6 / t["flows"]
    print("flows fed: %d in %d scans (%d devices, one scanning at 160 SYN/s)"
          % (t["flows"], SCANS, DEVICES))
    print("digest.add      %6.2f us/flow" % (t["digest"] * us))
    print("detector.flow   %6.2f us/flow (classify included)  ratio to digest.add: %.2f"
          % (t["detect"] * us, t["detect"] / t["digest"]))
    print("end_scan        %6.2f ms/scan for %d devices; digests' tick %.2f ms/scan"
          % (t["end_scan"] * 1000 / SCANS, DEVICES, t["tick"] * 1000 / SCANS))
    print("verdicts        %d (the scanner's on every scan: %s)"
          % (t["verdicts"], t["verdicts"] >= SCANS))
    tracemalloc.start()
    _, det = run(cfg)
    snap = tracemalloc.take_snapshot()
    tracemalloc.stop()
    held = sum(s.size for s in snap.filter_traces(
        [tracemalloc.Filter(True, "*detect.py")]).statistics("filename"))
    est = det.nbytes()
    print("detector state  Detector.nbytes %d KB (%.1f KB/device); tracemalloc %d KB"
          " (%.1f KB/device)" % (est // 1024, est / 1024.0 / DEVICES, held // 1024,
                                 held / 1024.0 / DEVICES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
