"""The agent's neighbour and address reading, against pyroute2 as the
oracle (test-only: the agent itself must not import it, DESIGN §2)."""

import json
import sys

import pytest

from tests.world.home import SRC

pytestmark = pytest.mark.netns

PROBE = """
import json, sys
sys.path.insert(0, %r)
from spin_lite import neigh
from pyroute2 import IPRoute
ours = neigh.read_neighbours('/proc/net/arp', 'br-lan')
addrs = neigh.read_addresses()
with IPRoute() as ipr:
    idx = ipr.link_lookup(ifname='br-lan')[0]
    theirs = {}
    for n in ipr.get_neighbours(ifindex=idx):
        ip, ll = n.get_attr('NDA_DST'), n.get_attr('NDA_LLADDR')
        if ll and n['state'] not in (0x01, 0x20, 0x40):
            theirs[ip] = ll
    their_addrs = sorted((a['index'], a.get_attr('IFA_ADDRESS'), a['prefixlen']) for a in ipr.get_addr())
print(json.dumps({'ours': ours, 'theirs': theirs, 'addrs': sorted(addrs), 'their_addrs': their_addrs,
                  'lan': neigh.lan_prefixes(addrs, idx)}))
""" % SRC


def probe(home):
    out = home.sh("router", sys.executable, "-c", PROBE)
    return json.loads(out if isinstance(out, str) else out.stdout)


def test_every_device_is_found_by_mac_on_both_families(home):
    laptop = home.devices["laptop"]  # browses over IPv6 through the router
    home.wait_for(lambda: laptop.ip6 in probe(home)["ours"], timeout=20,
                  what="the laptop's IPv6 neighbour entry")
    p = probe(home)
    for d in home.devices.values():
        assert p["ours"][d.ip4] == d.mac
    assert p["ours"][laptop.ip6] == laptop.mac
    v6_ours = {ip: mac for ip, mac in p["ours"].items() if ":" in ip}
    v6_theirs = {ip: mac for ip, mac in p["theirs"].items() if ":" in ip}
    assert v6_ours == v6_theirs
    # the wan gateway is a neighbour too, but not on br-lan
    assert "192.0.2.1" not in p["ours"]


def test_addresses_and_the_lan_prefixes(home):
    p = probe(home)
    assert sorted(tuple(a) for a in p["addrs"]) == sorted(tuple(a) for a in p["their_addrs"])
    assert sorted(p["lan"]) == ["192.168.8.0/24", "fd00:8::/64"]
