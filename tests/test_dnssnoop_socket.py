"""The DNS socket on its own, in two namespaces joined by a veth pair.

`r` plays the router with its LAN port lan0, `d` a device. The snoop part
runs in `r` (a small script: the agent's Loop, the part, a status file);
the device receives DNS answers from port 53 and sends other traffic. The
kernel filter must let only the answers through, over IPv4 and IPv6, and
when the LAN port is deleted and made again (a network restart) the part
must find the new one by itself.
"""

import json
import os
import subprocess
import sys
import time

import pytest

from tests.world.home import SRC, Home, HomeError

pytestmark = pytest.mark.netns

TAG = "sl%ddns" % os.getpid()
R, D = TAG + "-r", TAG + "-d"

LISTEN = r'''
import json, os, sys
sys.path.insert(0, sys.argv[1])
from spin_lite import dnssnoop, endpoints
from spin_lite.agent import Loop

class Agent:
    cfg = {"dns_snoop": True, "lan_ifname": "lan0"}
    loop = Loop()

agent = Agent()
eps = endpoints.Endpoints(64, grace=3600)
part = dnssnoop.DnsSnoop(eps)
part.start(agent)
now_ms = 0
while not os.path.exists(sys.argv[2] + ".stop"):
    agent.loop.run_once(50)
    now_ms += 31000  # every round counts as half a minute: the part retries each time
    part.after_scan(agent, now_ms)
    st = {"state": part.state, "counts": part.counts,
          "names": {ip: eps.names_for(ip, 0) for ip in list(eps.table)}}
    with open(sys.argv[2] + ".tmp", "w") as f:
        json.dump(st, f)
    os.rename(sys.argv[2] + ".tmp", sys.argv[2])
'''

# the device side: DNS answers from port 53 (a tiny resolver faking replies)
# and traffic that is not DNS
SEND = r'''
import socket, struct, sys
def answer(name, rtype, rdata):
    q = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
    return (struct.pack(">HHHHHH", 7, 0x8180, 1, 1, 0, 0) + q + struct.pack(">HH", rtype, 1)
            + b"\xc0\x0c" + struct.pack(">HHIH", rtype, 1, 300, len(rdata)) + rdata)
tag = sys.argv[1]
for fam, src, dst, rtype, rdata in [
        (socket.AF_INET, "10.77.0.2", "10.77.0.1", 1, bytes([203, 0, 113, 7])),
        (socket.AF_INET6, "fd77::2", "fd77::1", 28, b"\x20\x01\x0d\xb8" + bytes(11) + b"\x07")]:
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((src, 53))
    s.sendto(answer(tag + ".example", rtype, rdata), (dst, 40000))
    o = socket.socket(fam, socket.SOCK_DGRAM)
    o.bind((src, 5353))
    o.sendto(answer("mdns-" + tag + ".example", rtype, rdata), (dst, 5353))
    o.sendto(b"hello", (dst, 9999))
    s.close(); o.close()
'''


def sh(*argv, check=True):
    p = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    if check and p.returncode:
        raise HomeError("%s: %s" % (" ".join(argv), p.stderr.strip()))
    return p.stdout


def lan_port():
    """(Re)make the veth pair lan0 (in r) <-> eth0 (in d), addressed."""
    sh("ip", "link", "add", "lan0", "netns", R, "type", "veth", "peer", "eth0", "netns", D)
    for ns, dev, a4, a6 in [(R, "lan0", "10.77.0.1/24", "fd77::1/64"), (D, "eth0", "10.77.0.2/24", "fd77::2/64")]:
        sh("ip", "-n", ns, "addr", "add", a4, "dev", dev)
        sh("ip", "-n", ns, "addr", "add", a6, "dev", dev, "nodad")
        sh("ip", "-n", ns, "link", "set", dev, "up")


@pytest.fixture
def pair(tmp_path):
    Home.sweep()
    made = []
    proc = None
    try:
        for ns in (R, D):
            sh("ip", "netns", "add", ns)
            made.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        lan_port()
        status = str(tmp_path / "snoop.json")
        proc = subprocess.Popen(["ip", "netns", "exec", R, sys.executable, "-c", LISTEN, SRC, status],
                                stderr=open(str(tmp_path / "snoop.log"), "w"))
        yield status
    finally:
        if proc is not None:
            open(status + ".stop", "w").close()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def read(status):
    try:
        with open(status) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def wait_for(fn, what, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise HomeError("timed out waiting for " + what)
        time.sleep(0.05)


def send(tag):
    sh("ip", "netns", "exec", D, sys.executable, "-c", SEND, tag)


def test_only_dns_answers_pass_and_a_remade_lan_port_is_found_again(pair):
    wait_for(lambda: (read(pair) or {}).get("state") == "on", "the part to open its socket")
    send("first")

    def both_named():
        st = read(pair)
        return st and "203.0.113.7" in st["names"] and "2001:db8::7" in st["names"] and st
    st = wait_for(both_named, "the two answers")
    assert st["names"]["203.0.113.7"] == ["first.example"]
    assert st["names"]["2001:db8::7"] == ["first.example"]
    # the mDNS look-alikes (port 5353) and the plain datagrams never reached Python
    assert st["counts"]["packets"] == 2 and st["counts"]["answers"] == 2

    # a network restart deletes the LAN port and makes a new one
    sh("ip", "-n", R, "link", "del", "lan0")
    wait_for(lambda: (read(pair) or {}).get("state", "").startswith("error"), "the part to notice")
    lan_port()
    wait_for(lambda: (read(pair) or {}).get("state") == "on", "the part to reopen on the new port")
    send("second")
    st = wait_for(lambda: "second.example" in (read(pair) or {"names": {}})["names"].get("203.0.113.7", ()) and read(pair),
                  "the answer on the new port")
    assert st["names"]["203.0.113.7"] == ["second.example", "first.example"]
