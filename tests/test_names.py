"""Names in the simulated home: who each device is, what each endpoint is.

The agent starts before the devices do anything, so it sees every DNS
answer on br-lan from the first one: the laptop's names come from the
router's dnsmasq, the speaker also asks the internet's resolver directly.
"""

import pytest

from spin_lite import jsonrpc
from tests.world.home import DEVICES, LAN4_ROUTER, LAPTOP_NAMES, Home, resolve

pytestmark = pytest.mark.netns

LAPTOP = DEVICES["laptop"][0]
SPEAKER = DEVICES["speaker"][0]
THERMOSTAT = DEVICES["thermostat"][0]


@pytest.fixture(scope="module")
def home():
    with Home(agent=True, traffic=False, config={"bucket_seconds": 5}) as h:
        for name in h.devices:
            h.start_traffic(name)
        yield h


def flows_of(home, mac):
    return home.call("flows", {"mac": mac})["flows"]


def named(home, mac):
    """{remote address: names} over the device's live flows."""
    return {f["remote"]: f["names"] for f in flows_of(home, mac)}


def endpoints_in_graph(home):
    g = home.call("graph")
    return {n["id"]: n for n in g["nodes"] if n["kind"] == "endpoint"}


def call_error(home, method, args):
    with pytest.raises(jsonrpc.RemoteError) as e:
        home.call(method, args)
    return e.value.status


def test_the_laptop_sees_the_names_it_asked_for(home):
    want = {}
    for name in LAPTOP_NAMES:
        for addr in resolve(name)[1]:
            want[addr] = name

    def all_named():
        got = named(home, LAPTOP)
        return all(name in got.get(addr, ()) for addr, name in want.items()) and got
    got = home.wait_for(all_named, timeout=40, what="every address the laptop used, named")
    # www.example-shop.com -> shop.edge.example-cdn.net -> e7.example-cdn.net -> the address:
    # the name is the one the laptop asked for, not the end of the chain
    chain, addrs = resolve("www.example-shop.com")
    assert len(chain) == 3 and "203.0.113.7" in addrs and "2001:db8:1::7" in addrs
    assert got["203.0.113.7"] == ["www.example-shop.com"]
    assert got["2001:db8:1::7"] == ["www.example-shop.com"]
    flow = [f for f in flows_of(home, LAPTOP) if f["remote"] == "203.0.113.7"][0]
    assert flow["domain"] == "example-shop.com" and flow["service"] == "http"


def test_a_device_asking_the_internet_resolver_directly_still_gets_names(home):
    # the speaker asks 198.51.100.53 itself for config.example-music.com
    addr = resolve("config.example-music.com")[1][0]
    got = home.wait_for(lambda: named(home, SPEAKER).get(addr), timeout=40,
                        what="the speaker's direct-DNS endpoint, named")
    assert got == ["config.example-music.com"]
    assert home.devices["speaker"].status().get("direct_dns", 0) >= 1


def test_only_dns_answers_reach_the_agent(home):
    # the camera uploads, the speaker downloads, the laptop browses: none of it
    # may pass the kernel filter; every packet that did is a DNS answer
    home.wait_for(lambda: home.call("status")["names"]["dns_answers"] > 10, timeout=30,
                  what="DNS answers counted")
    st = home.call("status")["names"]
    assert st["dns"] == "on"
    counts = st["dns_counts"]
    for reason in ("not_ip", "not_udp", "not_dns", "malformed"):
        assert reason not in counts, (reason, counts)
    assert st["endpoints"] <= st["endpoints_max"]


def test_graph_and_digests_carry_names_and_domains(home):
    def laptop_endpoints():
        eps = endpoints_in_graph(home)
        return eps.get("203.0.113.7", {}).get("names") and eps
    eps = home.wait_for(laptop_endpoints, timeout=30, what="the shop's endpoint in the graph")
    assert eps["203.0.113.7"]["domain"] == "example-shop.com"
    dev = home.call("device", {"mac": LAPTOP})
    doms = [d for d, _ in dev["bucket"]["domains"]]
    assert doms and set(doms) <= set(["example-shop.com", "example.org", "example-tube.com",
                                      "example.net", "example.com"])
    # closed buckets in the history name their top remotes too
    hist = home.wait_for(lambda: [p for p in home.call("history", {"mac": LAPTOP, "minutes": 5})["points"]
                                  if p["names"]], timeout=30, what="a closed bucket with names")
    for p in hist:
        for r, _ in p["top"]:
            if r in p["names"]:
                assert p["names"][r] in LAPTOP_NAMES


def test_the_router_is_ignored_by_default_and_can_be_shown(home):
    # every device asks the router's DNS, yet the router is not an endpoint in the graph
    home.wait_for(lambda: LAN4_ROUTER in named(home, SPEAKER), timeout=30,
                  what="a flow from the speaker to the router")
    ign = home.call("ignored")["ignored"]
    assert {"remote": LAN4_ROUTER, "why": "router"} in ign
    assert LAN4_ROUTER not in endpoints_in_graph(home)
    home.call("unignore", {"remote": LAN4_ROUTER})
    assert LAN4_ROUTER not in [i["remote"] for i in home.call("ignored")["ignored"]]
    home.wait_for(lambda: LAN4_ROUTER in endpoints_in_graph(home), timeout=30,
                  what="the router in the graph once shown")
    home.call("ignore", {"remote": LAN4_ROUTER})
    assert LAN4_ROUTER not in endpoints_in_graph(home)


def test_an_ignored_endpoint_leaves_graph_and_top_lists_but_still_counts(home):
    stream = resolve("stream.example-music.com")[1][0]
    home.wait_for(lambda: stream in endpoints_in_graph(home), timeout=30,
                  what="the speaker's stream in the graph")
    home.call("ignore", {"remote": stream.rsplit(".", 1)[0] + ".0/24"})
    assert stream not in endpoints_in_graph(home)
    assert {"remote": stream.rsplit(".", 1)[0] + ".0/24", "why": "owner"} in home.call("ignored")["ignored"]

    def burst_counted_but_hidden():
        b = home.call("device", {"mac": SPEAKER})["bucket"]
        return b["bytes_in"] > 100000 and b
    b = home.wait_for(burst_counted_but_hidden, timeout=40, what="a speaker burst in the open bucket")
    assert stream not in [r for r, _ in b["top"]]
    assert stream not in [d for d, _ in b["domains"]] and "example-music.com" not in [d for d, _ in b["domains"]]
    home.call("unignore", {"remote": stream.rsplit(".", 1)[0] + ".0/24"})
    home.wait_for(lambda: stream in endpoints_in_graph(home), timeout=30,
                  what="the stream back in the graph")
    # what is not ignored cannot be unignored; bad input changes nothing
    assert call_error(home, "unignore", {"remote": "203.0.113.99"}) == 4
    assert call_error(home, "ignore", {"remote": "203.0.113.300"}) == 2
    assert [i for i in home.call("ignored")["ignored"] if i["why"] == "owner"] == []


def test_devices_by_dhcp_names_then_by_the_owners_name_also_after_a_restart(home):
    def names():
        return {d["mac"]: d["name"] for d in home.call("devices")["devices"]}
    home.wait_for(lambda: len(names()) == len(DEVICES), timeout=20, what="every device")
    got = names()
    for short, (mac, hostname, _) in DEVICES.items():
        if short != "thermostat":
            assert got[mac] == hostname
    # the thermostat sends "thermostat" but has a static host entry: that name wins
    assert got[THERMOSTAT] == "hallway-thermostat"

    assert home.call("name", {"mac": LAPTOP, "name": "Anna's laptop"})["name"] == "Anna's laptop"
    assert home.call("name", {"mac": THERMOSTAT, "name": "Hall"})["name"] == "Hall"
    assert names()[LAPTOP] == "Anna's laptop" and names()[THERMOSTAT] == "Hall"
    assert call_error(home, "name", {"mac": "02:00:00:00:00:99", "name": "ghost"}) == 4
    assert call_error(home, "name", {"mac": LAPTOP, "name": "bad\nname"}) == 2
    assert names()[LAPTOP] == "Anna's laptop"

    home.stop_agent()
    home.start_agent()
    home.wait_for(lambda: len(names()) == len(DEVICES), timeout=20, what="every device after the restart")
    assert names()[LAPTOP] == "Anna's laptop" and names()[THERMOSTAT] == "Hall"
    dev = home.call("device", {"mac": LAPTOP})
    assert dev["hostname"] == "laptop" and dev["owner_name"] == "Anna's laptop"

    # an empty name gives the device back its DHCP names
    home.call("name", {"mac": LAPTOP, "name": ""})
    home.call("name", {"mac": THERMOSTAT, "name": "  "})
    assert names()[LAPTOP] == "laptop" and names()[THERMOSTAT] == "hallway-thermostat"
