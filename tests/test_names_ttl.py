"""What a name means over time, in a running agent (endpoints.py): BIND in
the home's internet answers zero.bind-zone.example with TTL 0. The laptop
streams to the address it was given from the moment of the answer: that
stream keeps the name for as long as it lasts, well past the TTL, the
grace and the hold. A connection the laptop opens to the same address
long after the record ran out gets no name (and, since the agent cannot
tell one address's flows apart, the stream loses it too). A record still
valid names a late connection all the same.

The agent runs with dns_grace 3 s and dns_hold 4 s, so "long after" is a
dozen one-second scans.
"""

import sys

import pytest

from tests.world import dnsservers as ds
from tests.world.home import Home

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(bool(ds.missing()), reason="needs %s" % ", ".join(ds.missing()))]

GRACE, HOLD = 3, 4
ZERO = "198.19.0.10"     # zero.bind-zone.example, TTL 0
VALID = "198.19.0.6"     # c6.bind-zone.example, TTL 300

# one UDP flow: the same source port, a packet every 0.2 s until the stop file exists
STREAM = r'''
import os, socket, sys, time
dst, port, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("", port))
while not os.path.exists(stop):
    s.sendto(b"frame", (dst, 9))
    time.sleep(0.2)
'''

ONCE = r'''
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("", int(sys.argv[2])))
s.sendto(b"x", (sys.argv[1], 9))
'''


@pytest.fixture(scope="module")
def home():
    with Home(agent=True, traffic=False, devices=["laptop"],
              config={"dns_grace": GRACE, "dns_hold": HOLD}) as h:
        ds.start(h, ("bind",))
        yield h


def dig(home, name):
    return home.sh("laptop", "dig", "+short", "+time=3", "+tries=1", "@" + ds.BIND4, name).split()


def flows_to(home, remote):
    """{laptop's port: names} of the live flows to remote."""
    mac = home.devices["laptop"].mac
    return {f["device_port"]: f["names"] for f in home.call("flows", {"mac": mac})["flows"]
            if f["remote"] == remote}


def scans(home):
    return home.call("status")["scans"]


def wait_scans(home, n, check):
    """Wait until the agent ran n more scans, `check()` holding at every look."""
    until = scans(home) + n

    def done():
        check()
        return scans(home) >= until
    home.wait_for(done, timeout=n * 3 + 10, what="%d scans" % n)


def test_a_ttl_0_name_stays_with_the_stream_begun_at_once_and_not_with_a_late_flow(home):
    stop = home.path("stream.stop")
    assert dig(home, "zero.bind-zone.example") == [ZERO]
    home.popen("laptop", [sys.executable, "-c", STREAM, ZERO, "40000", stop], label="stream")
    home.wait_for(lambda: flows_to(home, ZERO).get(40000) == ["zero.bind-zone.example"],
                  timeout=20, what="the stream named at once")

    def stream_named():
        assert flows_to(home, ZERO).get(40000) == ["zero.bind-zone.example"], flows_to(home, ZERO)
    # twelve scans: past the TTL (0), the grace (3 s) and the hold (4 s)
    wait_scans(home, 12, stream_named)

    stale = home.call("status")["names"]["endpoints_stale"]
    home.sh("laptop", sys.executable, "-c", ONCE, ZERO, "40001")
    # `flows` reads conntrack afresh; the scan after the flow began ends the name
    home.wait_for(lambda: home.call("status")["names"]["endpoints_stale"] == stale + 1,
                  timeout=20, what="the next scan seeing the late flow begin")
    got = flows_to(home, ZERO)
    assert got[40001] == [], got
    assert got[40000] == [], got   # the address's flows cannot be told apart
    open(stop, "w").close()


def test_a_record_still_valid_names_a_late_flow(home):
    assert dig(home, "c6.bind-zone.example") == [VALID]
    home.sh("laptop", sys.executable, "-c", ONCE, VALID, "40002")
    home.wait_for(lambda: flows_to(home, VALID).get(40002) == ["c6.bind-zone.example"],
                  timeout=20, what="the first flow named")
    wait_scans(home, 12, lambda: None)
    home.sh("laptop", sys.executable, "-c", ONCE, VALID, "40003")
    home.wait_for(lambda: 40003 in flows_to(home, VALID), timeout=20, what="the later flow listed")
    assert flows_to(home, VALID)[40003] == ["c6.bind-zone.example"]
