"""The endpoint-name cache in a running agent: names age out when their
(capped) TTL and the traffic of their flows end, and a flood of unique
names never grows it past its size.

A small home (the laptop only) whose agent keeps at most 16 addresses,
counts every record valid 5 seconds at most, and keeps a name 5 seconds
after the last traffic of its flows.
"""

import sys

import pytest

from tests.world.home import DEVICES, Home, resolve

pytestmark = pytest.mark.netns

LAPTOP = DEVICES["laptop"][0]
SIZE = 16
FLOOD_RESOLVER = "203.0.113.40"  # an internet address no device of this home uses

# a resolver on the internet that answers every A question with a fresh address
RESOLVER = r'''
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53))
n = 0
while True:
    q, peer = s.recvfrom(512)
    end = q.index(b"\0", 12) + 5
    n += 1
    rr = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + bytes([10, 200, n >> 8 & 255, n & 255])
    s.sendto(q[:2] + b"\x81\x80" + q[4:6] + b"\0\1\0\0\0\0" + q[12:end] + rr, peer)
'''

# the laptop asks it for many names, one after the other
ASK = r'''
import socket, struct, sys
server, count = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
got = 0
for i in range(count):
    q = b"".join(bytes([len(l)]) + l.encode() for l in ("n%d.flood.example" % i).split(".")) + b"\0"
    s.sendto(struct.pack(">HHHHHH", i, 0x0100, 1, 0, 0, 0) + q + b"\0\1\0\1", (server, 53))
    try:
        s.recv(512)
        got += 1
    except OSError:
        pass
print(got)
'''


@pytest.fixture(scope="module")
def home():
    with Home(devices=["laptop"], agent=True, traffic=False,
              config={"max_endpoints": SIZE, "dns_ttl_max": 5, "dns_grace": 5, "dns_hold": 5}) as h:
        h.popen("wan", [sys.executable, "-c", RESOLVER, FLOOD_RESOLVER], label="flood-resolver")
        yield h


def test_a_flood_of_unique_names_never_grows_the_cache_past_its_size(home):
    answered = int(home.sh("laptop", sys.executable, "-c", ASK, FLOOD_RESOLVER, "300", timeout=120))
    assert answered >= 290
    st = home.wait_for(lambda: (lambda s: s["dns_answers"] >= answered and s)(home.call("status")["names"]),
                       timeout=20, what="every flood answer read by the agent")
    assert st["endpoints"] <= SIZE
    assert st["endpoints_dropped"] + st["endpoints_expired"] >= answered - SIZE


def test_names_age_out_when_their_ttl_ends(home):
    shop = resolve("www.example-shop.com")[1][0]
    home.start_traffic("laptop")

    def shop_named():
        for f in home.call("flows", {"mac": LAPTOP})["flows"]:
            if f["remote"] == shop and f["names"] == ["www.example-shop.com"]:
                return True
        return False
    # the laptop asks again every round, so while it browses the name stays
    home.wait_for(shop_named, timeout=30, what="the shop's flows named while the laptop browses")
    home.stop_traffic("laptop")

    def shop_flow_without_name():
        flows = [f for f in home.call("flows", {"mac": LAPTOP})["flows"] if f["remote"] == shop]
        return flows and all(f["names"] == [] for f in flows)
    # the connections linger in conntrack (TIME_WAIT), idle, long after the names' 5 s
    home.wait_for(shop_flow_without_name, timeout=30,
                  what="the shop's flows still listed, their name aged out")
