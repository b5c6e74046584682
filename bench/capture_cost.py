#!/usr/bin/env python3
"""What a device capture costs the agent, and how fast its own socket goes.

The simulated home (tests/world/home.py) with the agent, scan every second,
the camera streaming at its default 1.5 MB/s. Two measurements, in one run:

1. the scan: `last_scan_ms` and the agent's CPU (utime+stime from /proc)
   over the same number of scans with no capture, with a tcpdump capture
   of the camera and with the agent's own AF_PACKET capture of it,
   interleaved rounds, medians and the ratios to "none";
2. the agent's own capture (capture_tcpdump ''): the camera sends small
   UDP datagrams (60 bytes of payload) at rising rates to an address the
   internet drops; per rate the datagrams sent, the packets the capture
   wrote and the kernel's drops (PACKET_STATISTICS) it counted. The
   highest rate with no drop is what a Python capture keeps up with here.

The machine's load moves the absolute numbers; the ratios and the drop
point are what to compare.
"""

import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "src"))

from tests.world.home import DEVICES, Home  # noqa: E402

CAMERA = DEVICES["camera"][0]
SCANS = 5
ROUNDS = 3
RATES = (2000, 5000, 10000, 20000, 40000, 80000)
SECONDS = 3

# the sender: paces datagrams in 1 ms slices, prints how many it sent
SENDER = """
import socket, sys, time
rate, seconds = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
payload = b"x" * 60
sent, t0 = 0, time.monotonic()
while True:
    t = time.monotonic() - t0
    if t >= seconds:
        break
    while sent < rate * t:
        try:
            s.sendto(payload, ("198.18.0.1", 9))
            sent += 1
        except BlockingIOError:
            break
    time.sleep(0.001)
print(sent)
"""


def out(line=""):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def agent_cpu(home):
    with open("/proc/%d/stat" % agent_pid(home)) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def agent_pid(home):
    # `ip netns exec` execs the agent in place: the child's pid is the agent
    return home.agent.pid


def scans(home, n):
    """last_scan_ms of the next n scans, and the agent's CPU seconds over them."""
    seen = home.call("status")["scans"]
    cpu0 = agent_cpu(home)
    out_ms = []
    while len(out_ms) < n:
        st = home.wait_for(lambda: (lambda s: s if s["scans"] > seen else None)(home.call("status")),
                           timeout=20, interval=0.02, what="a scan")
        seen = st["scans"]
        out_ms.append(st["last_scan_ms"])
    return out_ms, agent_cpu(home) - cpu0


def stop_all(home):
    for c in home.call("captures")["captures"]:
        home.call("capture_delete", {"id": c["id"]})


def scan_cost(home, tool_of):
    results = {"none": ([], []), "tcpdump": ([], []), "socket": ([], [])}
    for _ in range(ROUNDS):
        for mode in ("none", "tcpdump", "socket"):
            if mode != "none":
                home.stop_agent()
                home.start_agent(**tool_of[mode])
                home.wait_for(lambda: home.call("device", {"mac": CAMERA}), timeout=15)
                home.call("capture_start", {"mac": CAMERA, "seconds": 600})
            else:
                home.stop_agent()
                home.start_agent(**tool_of["tcpdump"])
                home.wait_for(lambda: home.call("device", {"mac": CAMERA}), timeout=15)
            scans(home, 1)  # the first scan after a start reads the whole table
            ms, cpu = scans(home, SCANS)
            results[mode][0].extend(ms)
            results[mode][1].append(cpu / SCANS)
            stop_all(home)
    base_ms = statistics.median(results["none"][0]) or 1
    base_cpu = statistics.median(results["none"][1]) or 1e-9
    out("%-9s %14s %16s %8s %8s" % ("capture", "scan ms (med)", "agent CPU/scan", "ms x", "CPU x"))
    for mode, (ms, cpu) in results.items():
        m, c = statistics.median(ms), statistics.median(cpu)
        out("%-9s %14.1f %15.1f ms %7.2fx %7.2fx" % (mode, m, c * 1000, m / base_ms, c / base_cpu))


def socket_rate(home, tool_of):
    home.stop_agent()
    home.start_agent(**tool_of["socket"])
    home.wait_for(lambda: home.call("device", {"mac": CAMERA}), timeout=15)
    home.stop_traffic("camera")
    out("%9s %9s %10s %9s %9s" % ("rate/s", "sent", "captured", "drops", "kept"))
    for rate in RATES:
        c = home.call("capture_start", {"mac": CAMERA, "seconds": 600})
        sent = int(home.sh("camera", sys.executable, "-c", SENDER, str(rate), str(SECONDS),
                           timeout=SECONDS + 30).strip())
        time.sleep(0.5)  # what the socket holds reaches the file
        done = home.call("capture_stop", {"id": c["id"]})
        # the capture also holds the camera's ARP, NDP and DHCP: a few packets
        kept = min(done["packets"], sent) / float(sent or 1)
        out("%9d %9d %10d %9d %8.1f%%" % (rate, sent, done["packets"], done["drops"], 100 * kept))
        home.call("capture_delete", {"id": c["id"]})
    home.start_traffic("camera")


def main():
    load = os.getloadavg()
    out("load average at start: %.2f %.2f %.2f on %d CPUs" % (load + (os.cpu_count(),)))
    with Home(firewall="nft", agent=False) as home:
        common = {"capture_seconds_max": 600, "capture_kb_max": 262144, "capture_free_kb": 65536}
        tool_of = {"tcpdump": dict(common), "socket": dict(common, capture_tcpdump="")}
        home.start_agent(**tool_of["tcpdump"])
        home.wait_for(lambda: len(home.call("devices")["devices"]) == len(DEVICES), timeout=30)
        out("-- the scan beside a capture of the camera (1.5 MB/s upload), %d rounds x %d scans"
            % (ROUNDS, SCANS))
        scan_cost(home, tool_of)
        out()
        out("-- the agent's own AF_PACKET capture: small UDP datagrams from the camera, %d s a rate"
            % SECONDS)
        socket_rate(home, tool_of)
    load = os.getloadavg()
    out("load average at end: %.2f %.2f %.2f" % load)


if __name__ == "__main__":
    main()
