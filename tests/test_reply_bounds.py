"""The picture's reply is bounded by design, never by luck (issue 11.3).

A home of 20 devices, each talking to 5,000 destinations with long IPv6
addresses and long DNS names, is asked for its graph through the real
method table and the real Agent (not started: no scans). The reply stays
under the 256 KB any reply may take (DESIGN §9), draws at most `limit`
destinations per device plus what the owner blocked or allowed there, and
says exactly how many destinations and bytes it left out.
"""

import json

import pytest

from spin_lite import agent as agent_mod
from spin_lite import api, blocks, config, conntrack, devices, names, ubus

from tests.test_firewall_store import Recorder

BUDGET = 256 * 1024
DEVICES, DESTINATIONS = 20, 5000


def mac_of(i):
    return "02:00:00:00:01:%02x" % i


def remote_of(i, j):
    # the longest text an IPv6 address takes: eight four-digit words
    return "2001:0db8:ffff:%04x:%04x:abcd:ef01:%04x" % (i + 0x1000, j + 0x1000, 0x1234)


def norm(ip):
    return api.parse_ip(ip)


def weight(i, j):
    """Distinct bytes, so the heaviest destinations are one set."""
    return (j + 1) * 1000 + i


@pytest.fixture
def home(tmp_path):
    # the digest keeps every destination by name here, so the graph alone
    # decides what is drawn (the last test has the digest's own bound)
    # and the name cache holds all 16,000 worst-case names (4 MB of text)
    return make_home(tmp_path, digest_remotes=DESTINATIONS, endpoints_bytes=64 << 20)


def make_home(tmp_path, **options):
    cfg = config.defaults()
    cfg.update(state_dir=str(tmp_path / "state"), run_dir=str(tmp_path / "run"), firewall="none")
    cfg.update(options)
    a = agent_mod.Agent(cfg)
    a.router_ips = {"192.168.8.1"}
    for i in range(DEVICES):
        d = a.devices.table[mac_of(i)] = devices.Device(mac_of(i), 0)
        d.ips = {"192.168.8.%d" % (100 + i), "fd00:8::ff:fe00:%x" % i}
        d.hostname = "device-%02d-" % i + "h" * 40
        for j in range(DESTINATIONS):
            a.digests.add(mac_of(i), norm(remote_of(i, j)), 443, weight(i, j), 0, 1, 0, True, False)
    part = blocks.Blocks(cfg, Recorder())
    a.parts.append(part)
    part.start(a)
    n = names.Names(cfg)       # not started: no DNS socket, only its tables
    a.names = n
    now = n.now()
    for i in range(DEVICES):   # the heaviest 200 (4,000 in all: the table keeps 4,096) have
        for j in range(DESTINATIONS - 200, DESTINATIONS):    # four names near the DNS's 253
            for k in range(4):
                label = ("n%d-%d-%d-" % (i, j, k)).ljust(60, "x")
                n.endpoints.learn(norm(remote_of(i, j)), ".".join([label] * 3) + "." + "d" * 60 + ".com", 3600, now)
    return a


def graph(a, args):
    return api.dispatch(a, "graph", args)


def drawn(g, mac):
    return {e["to"]: e["bytes"] for e in g["edges"] if e["from"] == mac}


def test_twenty_busy_devices_fit_in_a_bounded_reply_with_exact_others(home):
    blocked_heavy = norm(remote_of(0, 10))      # blocked, light: drawn beyond the limit
    blocked_silent = "198.51.100.99"            # blocked, no traffic: drawn at 0 bytes
    allowed = norm(remote_of(3, 7))             # allowed for everyone: drawn where it is talked to
    api.dispatch(home, "block", {"mac": mac_of(0), "remote": blocked_heavy})
    api.dispatch(home, "block", {"mac": mac_of(0), "remote": blocked_silent})
    api.dispatch(home, "allow", {"remote": allowed})

    g = graph(home, {})
    text = json.dumps(g)
    size = len(text.encode())
    blob = len(ubus.encode_message(ubus.Message(ubus.DATA, 1, 1, [(ubus.A_DATA, g)])))
    print("graph of %d devices x %d destinations: %d bytes JSON, %d bytes ubus" % (DEVICES, DESTINATIONS, size, blob))
    assert size < BUDGET and blob < BUDGET

    limit = g["limit"]
    assert limit == 20     # the default, which 20 devices can all have
    devs = [n for n in g["nodes"] if n["kind"] == "device"]
    assert sorted(n["id"] for n in devs) == [mac_of(i) for i in range(DEVICES)]
    for i in range(DEVICES):
        mac = mac_of(i)
        got = drawn(g, mac)
        pinned = {blocked_heavy, blocked_silent} if i == 0 else set()
        if i == 3:
            pinned = {allowed}
        assert pinned <= set(got), (mac, pinned - set(got))
        heaviest = {norm(remote_of(i, j)) for j in range(DESTINATIONS - limit, DESTINATIONS)}
        assert set(got) - pinned == heaviest
        assert len(got) <= limit + len(pinned)
        # the others: every destination not drawn, counted once, bytes to the byte
        total = sum(weight(i, j) for j in range(DESTINATIONS))
        left_out = DESTINATIONS - len([r for r in got if r != blocked_silent])
        assert g["others"][mac] == {"count": left_out, "bytes": total - sum(got.values())}
    assert drawn(g, mac_of(0))[blocked_silent] == 0
    # every edge leads to an endpoint node, whose bytes are those drawn to it
    eps = {n["id"]: n for n in g["nodes"] if n["kind"] == "endpoint"}
    assert {e["to"] for e in g["edges"]} == set(eps)
    for r, n in eps.items():
        assert n["bytes"] == sum(e["bytes"] for e in g["edges"] if e["to"] == r)
        assert len(n.get("names") or []) <= 1
    assert all(eps[r].get("names") for r in drawn(g, mac_of(1)))


def test_the_largest_limit_for_one_device_still_fits(home):
    g = graph(home, {"mac": mac_of(5), "limit": 200})
    size = len(json.dumps(g).encode())
    print("graph of one device at limit 200: %d bytes" % size)
    assert size < BUDGET
    assert [n["id"] for n in g["nodes"] if n["kind"] == "device"] == [mac_of(5)]
    assert set(drawn(g, mac_of(5))) == {norm(remote_of(5, j)) for j in range(DESTINATIONS - 200, DESTINATIONS)}
    assert {e["from"] for e in g["edges"]} == {mac_of(5)}
    eps = [n for n in g["nodes"] if n["kind"] == "endpoint"]
    assert len(eps) == 200
    assert all(len(n["names"][0]) > 240 and len(n["domain"]) == 64 for n in eps)   # the worst case was measured
    assert list(g["others"]) == [mac_of(5)] and g["others"][mac_of(5)]["count"] == DESTINATIONS - 200


def test_a_small_limit_is_kept_exactly(home):
    g = graph(home, {"limit": 3})
    assert g["limit"] == 3
    for i in range(DEVICES):
        assert set(drawn(g, mac_of(i))) == {norm(remote_of(i, j)) for j in (4997, 4998, 4999)}
        assert g["others"][mac_of(i)]["count"] == DESTINATIONS - 3


def test_bad_arguments_and_unknown_devices_are_refused(home):
    for bad in ({"limit": 0}, {"limit": 201}, {"limit": "20"}, {"mac": "02:00:00"}, {"colour": 1}):
        status, reply, message = api.call(home, "graph", bad)
        assert status == api.INVALID_ARGUMENT and reply is None and message, bad
    status, reply, message = api.call(home, "graph", {"mac": "02:00:00:00:09:99"})
    assert status == api.NOT_FOUND and "02:00:00:00:09:99" in message
    assert api.signature()["graph"] == {"mac": 3, "limit": 5}


def test_a_home_of_many_devices_shares_one_bound(tmp_path):
    """500 devices (the default max_devices is 512) cannot each have 20
    destinations drawn in 256 KB: the per-device limit shrinks, down to
    none past 400 devices, and "others" still counts every destination."""
    cfg = config.defaults()
    cfg.update(state_dir=str(tmp_path / "state"), run_dir=str(tmp_path / "run"), firewall="none")
    a = agent_mod.Agent(cfg)
    for count, want in ((100, 4), (500, 0)):
        for i in range(len(a.devices.table), count):
            mac = "02:00:00:01:%02x:%02x" % (i >> 8, i & 255)
            d = a.devices.table[mac] = devices.Device(mac, 0)
            d.ips = {"fd00:8::%x:ff:fe00:%x" % (i, i)}
            d.hostname = "h" * 64
            for j in range(30):
                a.digests.add(mac, norm(remote_of(i, j)), 443, weight(i, j), 0, 1, 0, True, False)
        g = graph(a, {})
        assert g["limit"] == want and len(g["edges"]) == want * count
        assert len(json.dumps(g).encode()) < BUDGET
        assert all(o["count"] == 30 - want for o in g["others"].values()) and len(g["others"]) == count


def test_flows_come_in_pages_that_fit_however_many_there_are(tmp_path):
    """3,000 live flows of one device to remotes with four long names each:
    a call without limit gets the heaviest 150 (FLOWS_PAGE_MAX), under
    256 KB, and the owner pages on with offset; a bigger page is refused."""
    cfg = config.defaults()
    path = tmp_path / "nf_conntrack"
    cfg.update(state_dir=str(tmp_path / "state"), run_dir=str(tmp_path / "run"), firewall="none",
               conntrack_file=str(path))
    a = agent_mod.Agent(cfg)
    a.scanner = conntrack.Scanner(conntrack.Lan(["192.168.8.0/24", "fd00:8::/64"], ["192.168.8.1", "fd00:8::1"]))
    mac, ip = mac_of(1), "fd00:8::ff:fe00:1"
    d = a.devices.table[mac] = devices.Device(mac, 0)
    d.ips = {ip}
    a.devices.by_ip[ip] = mac
    n = names.Names(cfg)
    a.names = n
    lines = []
    for j in range(3000):
        remote = norm(remote_of(1, j))
        for k in range(4):
            label = ("n%d-%d-" % (j, k)).ljust(60, "x")
            n.endpoints.learn(remote, ".".join([label] * 3) + "." + "d" * 60 + ".com", 3600, n.now())
        lines.append("ipv6     10 tcp      6 431999 ESTABLISHED src=%s dst=%s sport=%d dport=443 packets=10 "
                     "bytes=%d src=%s dst=%s sport=443 dport=%d packets=20 bytes=%d [ASSURED] mark=0 zone=0 use=2"
                     % (ip, remote, 10000 + j, 1000 + j, remote, ip, 10000 + j, 5000 + j))
    path.write_text("\n".join(lines) + "\n")

    first = api.dispatch(a, "flows", {})
    size = len(json.dumps(first).encode())
    blob = len(ubus.encode_message(ubus.Message(ubus.DATA, 1, 1, [(ubus.A_DATA, first)])))
    print("a page of %d flows: %d bytes JSON, %d bytes ubus" % (len(first["flows"]), size, blob))
    assert size < BUDGET and blob < BUDGET
    assert len(first["flows"]) == api.FLOWS_PAGE_MAX == 150
    assert first["total"] == 3000 and first["remaining"] == 2850
    assert all(len(f["names"]) == 4 for f in first["flows"])     # the worst case was measured
    weights = [f["bytes_out"] + f["bytes_in"] for f in first["flows"]]
    assert weights == sorted(weights, reverse=True) and weights[0] == 1000 + 5000 + 2 * 2999
    second = api.dispatch(a, "flows", {"mac": mac, "offset": 150, "limit": 150})
    assert second["flows"][0]["bytes_out"] + second["flows"][0]["bytes_in"] == weights[-1] - 2
    assert second["remaining"] == 2700
    status, _, message = api.call(a, "flows", {"limit": 151})
    assert status == api.INVALID_ARGUMENT and "limit" in message


def test_a_full_table_of_devices_comes_in_pages_that_fit(tmp_path):
    """512 devices (max_devices), each with the longest names, three
    addresses and a bucket whose top remotes have long DNS names: a call
    without limit gets 150 (DEVICES_PAGE_MAX) under 256 KB, and the pages
    together are every device once."""
    cfg = config.defaults()
    cfg.update(state_dir=str(tmp_path / "state"), run_dir=str(tmp_path / "run"), firewall="none")
    a = agent_mod.Agent(cfg)
    n = names.Names(cfg)
    a.names = n
    for i in range(512):
        mac = "02:00:00:01:%02x:%02x" % (i >> 8, i & 255)
        d = a.devices.table[mac] = devices.Device(mac, 0)
        d.ips = {"192.168.%d.%d" % (i >> 8, i & 255), "fd00:8::ff:fe%02x:%x" % (i >> 8, i),
                 "2001:db8:aaaa:bbbb:cccc:dddd:eeee:%x" % i}
        d.hostname = "h" * 63
        for j in range(10):
            r = norm(remote_of(i, j))
            a.digests.add(mac, r, 443, 1000 * (j + 1), 0, 1, 0, True, False)
            n.endpoints.learn(r, ("n%d-%d-" % (i, j)).ljust(60, "x") + "." + "d" * 60 + ".com", 3600, n.now())
    first = api.dispatch(a, "devices", {})
    size = len(json.dumps(first).encode())
    blob = len(ubus.encode_message(ubus.Message(ubus.DATA, 1, 1, [(ubus.A_DATA, first)])))
    print("a page of %d devices: %d bytes JSON, %d bytes ubus" % (len(first["devices"]), size, blob))
    assert size < BUDGET and blob < BUDGET
    assert len(first["devices"]) == api.DEVICES_PAGE_MAX == 150 and first["remaining"] == 362
    assert first["devices"][0]["bucket"]["top"]      # the worst case was measured
    seen = [d["mac"] for d in first["devices"]]
    offset = 150
    while offset < 512:
        seen += [d["mac"] for d in api.dispatch(a, "devices", {"offset": offset})["devices"]]
        offset += 150
    assert seen == sorted(a.devices.table)


def test_what_the_digest_kept_only_as_a_sum_is_in_others_to_the_byte(tmp_path):
    a = make_home(tmp_path)    # the default digest_remotes: a bounded table per device
    kept = config.defaults()["digest_remotes"]
    assert kept < DESTINATIONS
    g = graph(a, {"limit": 10})
    for i in range(DEVICES):
        got = drawn(g, mac_of(i))
        # the heaviest are kept by name (they came last, and outweigh the rest)
        assert set(got) == {norm(remote_of(i, j)) for j in range(DESTINATIONS - 10, DESTINATIONS)}
        total = sum(weight(i, j) for j in range(DESTINATIONS))
        o = g["others"][mac_of(i)]
        assert o["bytes"] == total - sum(got.values())
        # counted by the digest's distinct-remote sketch (~6.5 % standard error)
        assert abs(o["count"] - (DESTINATIONS - 10)) <= 0.2 * DESTINATIONS, o
