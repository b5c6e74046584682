#!/usr/bin/env python3
"""Block call -> first dropped packet (DESIGN §9: <= 100 ms), both backends.

In the simulated home (every device's traffic running, the agent in the
router namespace) the camera also sends a numbered UDP packet every
millisecond to a receiver on the internet side. Each packet carries its
send time (CLOCK_MONOTONIC is one clock for every namespace). For each
round: note the time, call `block` for the camera over JSON-RPC, wait, and
find the last packet that arrived; the first dropped packet left at most
one interval after it. latency = that packet's send time - the call's
start. Then unblock, let the stream flow again, repeat.

Prints one line per backend: median and worst of the rounds, and how long
the API call itself took.
"""

import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for p in (ROOT, os.path.join(ROOT, "src")):
    if p not in sys.path:
        sys.path.insert(0, p)

from tests.world.home import Home, HomeError  # noqa: E402

ROUNDS = 7
PORT = 9999
TARGET_MS = 100
SINK = "203.0.113.10"

SENDER = """
import socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
n = 0
while True:
    n += 1
    try:
        s.sendto(struct.pack("!Qd", n, time.monotonic()), (sys.argv[1], int(sys.argv[2])))
    except OSError:
        pass
    time.sleep(0.001)
"""

# the receiver keeps the last packet in a file the bench reads (rewritten
# in place: 16 bytes, no growth)
RECEIVER = """
import os, socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[2])))
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
while True:
    data = s.recv(64)
    os.pwrite(fd, data[:16], 0)
"""


def last_packet(path):
    import struct
    try:
        with open(path, "rb") as f:
            data = f.read(16)
    except OSError:
        return None
    return struct.unpack("!Qd", data) if len(data) == 16 else None


def measure(firewall, rounds=ROUNDS):
    with Home(firewall=firewall, agent=True) as home:
        cam = home.devices["camera"]
        mark = home.path("udp-last")
        home.popen("wan", [sys.executable, "-c", RECEIVER, mark, str(PORT)], label="bench-receiver")
        home.popen("camera", [sys.executable, "-c", SENDER, SINK, str(PORT)], label="bench-sender")
        home.wait_for(lambda: home.call("device", {"mac": cam.mac}), timeout=20, what="the camera known")
        lat, calls = [], []
        for _ in range(rounds):
            first = last_packet(mark)
            home.wait_for(lambda: (last_packet(mark) or (0, 0))[0] > (first or (0, 0))[0] + 50,
                          timeout=10, what="the camera's UDP stream arriving")
            t0 = time.monotonic()
            bid = home.call("block", {"mac": cam.mac})["id"]
            t1 = time.monotonic()
            time.sleep(0.5)
            seq, sent = last_packet(mark)
            time.sleep(0.2)
            if last_packet(mark)[0] != seq:
                raise HomeError("packets still arrive after the block")
            lat.append((sent - t0) * 1000 + 1.0)
            calls.append((t1 - t0) * 1000)
            home.call("unblock", {"id": bid})
            time.sleep(0.3)
        return lat, calls


def main():
    if os.geteuid() != 0:
        print("block_latency: needs root (network namespaces); not measured")
        return 0
    for fw in ("nft", "iptables-legacy"):
        try:
            lat, calls = measure(fw)
        except HomeError as e:
            print("block latency [%s]: not measured: %s" % (fw, e))
            continue
        print("block latency [%-15s] call -> first dropped packet: median %.1f ms, worst %.1f ms"
              " over %d blocks (target <= %d ms); the block call itself: median %.1f ms"
              % (fw, statistics.median(lat), max(lat), len(lat), TARGET_MS, statistics.median(calls)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
