"""The simulated home itself, told as a story: before the agent is trusted
with it, the world must be what it claims. Devices take leases by DHCP with
their hostnames, the internet answers, the router NATs IPv4 (and routes the
IPv6 ULA), its conntrack sees every flow, the bulb's scan leaves hundreds of
unanswered attempts, and when the home goes, nothing of it stays behind.
"""

import os
import re
import signal
import subprocess
import sys
import textwrap

import pytest

from tests.world import home as world
from tests.world.home import DEVICES, REPO, SRC, Home, HomeError

pytestmark = pytest.mark.netns


@pytest.fixture(scope="module")
def house():
    # no agent: these tests are about the world, not about spin-lite
    with Home() as h:
        yield h


def flows(home, *patterns):
    """Lines of the router's conntrack table matching every regex."""
    return [line for line in home.conntrack().splitlines()
            if all(re.search(p, line) for p in patterns)]


def test_every_device_takes_a_lease_with_its_hostname(house):
    names = house.lease_hostnames()
    for name, (mac, hostname, _) in DEVICES.items():
        if name == "thermostat":
            continue
        assert names[mac] == hostname, (name, names)
        assert house.devices[name].ip4.startswith("192.168.8.")
    # the thermostat has a static reservation: its address and the owner's name
    thermostat = house.devices["thermostat"]
    assert thermostat.ip4 == "192.168.8.50"
    assert names[thermostat.mac] == "hallway-thermostat"
    # and the agent finds that reservation in OpenWrt's UCI format
    sys.path.insert(0, SRC)
    from spin_lite import config
    assert config.static_hosts(house.path("dhcp")) == {thermostat.mac: "hallway-thermostat"}


def test_a_device_renews_its_lease_and_keeps_its_address(house):
    cam = house.devices["camera"]
    events = cam.lease_env + ".events"
    before = open(events).read().count(" renew ")
    house.renew("camera")
    house.wait_for(lambda: open(events).read().count(" renew ") > before, timeout=10,
                   what="the camera's renew")
    assert cam.lease()["ip"] == cam.ip4
    assert cam.lease()["event"] == "renew"


def test_devices_have_ipv6_by_slaac_and_reach_the_internet_unnatted(house):
    laptop = house.devices["laptop"]
    assert laptop.ip6 == "fd00:8::ff:fe00:4"
    # the laptop browses the v6 addresses too; the router routes, no NAT66
    full = "fd00:0008:0000:0000:0000:00ff:fe00:0004"
    lines = house.wait_for(lambda: flows(house, r"^ipv6 .* tcp ", "src=" + full + " dst=2001:0db8:0001:",
                                         "dst=" + full + " sport=80 "),
                           timeout=20, what="an IPv6 flow of the laptop")
    assert lines
    # and it asks the router's DNS over IPv6 as well
    assert house.wait_for(lambda: flows(house, r"^ipv6 .* udp .* src=%s dst=fd00:0008:0000:0000:0000:0000:0000:0001 "
                                               r".* dport=53 " % full),
                          timeout=20, what="a DNS query over IPv6 to the router")


def test_the_camera_streams_to_its_cloud_through_nat(house):
    cam = house.devices["camera"]
    house.wait_for(lambda: cam.status().get("bytes_out", 0) > 3 << 20, timeout=30,
                   what="3 MB from the camera")
    # the kernel's view: the device's address going out, the router's WAN
    # address in the reply direction (masquerade)
    lines = flows(house, r"^ipv4 .* tcp .* ESTABLISHED src=%s dst=203\.0\.113\.10 " % re.escape(cam.ip4),
                  r"dport=9000 ", r"src=203\.0\.113\.10 dst=192\.0\.2\.2 sport=9000")
    assert len(lines) == 1, house.conntrack()
    # and the internet really received it
    import json
    assert json.load(open(house.path("services.json")))["sink_bytes"] > 1 << 20


def test_names_resolve_through_the_router_along_cname_chains(house):
    # the laptop's question goes to the router's dnsmasq (its DHCP DNS server),
    # which forwards to the internet's resolver; the answer ends in the zone's A
    chain, addrs = world.resolve("www.example-shop.com")
    assert chain == ["www.example-shop.com", "shop.edge.example-cdn.net", "e7.example-cdn.net"]
    dns = house.devices["laptop"].lease()["dns"].split()[0]
    assert dns == world.LAN4_ROUTER
    out = house.sh("laptop", "busybox", "nslookup", chain[0], dns)
    assert "203.0.113.7" in out and "2001:db8:1::7" in out, out
    # the devices' own client (traffic.py) gets the same from the router
    # a name the zone does not have gets no address
    out = house.sh("laptop", "busybox", "nslookup", "nope.example.org", dns, check=False)
    assert "NXDOMAIN" in out, out


def test_the_speaker_asks_the_internets_resolver_directly(house):
    spk = house.devices["speaker"]
    house.wait_for(lambda: spk.status().get("direct_dns"), timeout=20, what="the speaker's direct query")
    lines = flows(house, r"udp .* src=%s dst=198\.51\.100\.53 .* dport=53 " % re.escape(spk.ip4))
    assert lines


def test_the_thermostat_polls_with_fresh_connections(house):
    t = house.devices["thermostat"]
    house.wait_for(lambda: t.status().get("polls", 0) >= 3, timeout=30, what="3 thermostat polls")
    polls = flows(house, r"tcp .* src=192\.168\.8\.50 dst=203\.0\.113\.30 .* dport=80 ")
    # each poll is a new connection; the oldest may have timed out of the table
    assert 2 <= len(polls) <= t.status()["polls"] + 1


def test_a_scanning_bulb_leaves_hundreds_of_unreplied_attempts(house):
    bulb = house.devices["bulb"]
    pattern = (r"^ipv4 .* tcp .* SYN_SENT src=%s dst=(198\.1[89]\.\d+\.\d+) .* dport=23 .*\[UNREPLIED\]"
               % re.escape(bulb.ip4))
    assert not flows(house, pattern), "the bulb scans before it is told to"
    house.scan("bulb", True)
    try:
        house.wait_for(lambda: len(flows(house, pattern)) >= 300, timeout=30,
                       what="300 unreplied telnet attempts")
    finally:
        house.scan("bulb", False)
    remotes = {re.search(pattern, line).group(1) for line in flows(house, pattern)}
    assert len(remotes) >= 300
    # the bulb writes its counters at most twice a second while it scans, and
    # once more when it has stopped: wait for that last word before comparing
    house.wait_for(lambda: bulb.status().get("scanning") is False, timeout=10,
                   what="the bulb to stop scanning")
    assert bulb.status()["scan_attempts"] >= len(remotes)


@pytest.mark.parametrize("flavour,save", [("iptables", "iptables-save"),
                                          ("iptables-legacy", "iptables-legacy-save")])
def test_iptables_router_nats_like_firewall3(new_home, flavour, save):
    # Debian's `iptables` is iptables-nft; OpenWrt 21.02's firewall3 is legacy
    h = new_home(firewall=flavour, devices=["camera"])
    rules = h.sh("router", save, "-t", "nat")
    assert "-A zone_wan_postrouting" in rules and "MASQUERADE" in rules
    assert "table inet fw4" not in h.sh("router", "nft", "list", "tables")
    cam = h.devices["camera"]
    h.wait_for(lambda: flows(h, r"src=%s dst=203\.0\.113\.10 .*dst=192\.0\.2\.2 sport=9000" % re.escape(cam.ip4)),
               timeout=20, what="the camera's NATed flow")


def test_the_agent_is_started_reloaded_and_stopped_in_the_router(new_home):
    h = new_home(devices=["camera"], traffic=False)
    agent = h.start_agent(scan_interval=1)
    assert "option rpc_socket '%s'" % h.rpc_socket in open(h.agent_config).read()
    assert isinstance(h.call("status"), dict)
    # it runs in the router's namespace (its net namespace is the router's)
    router_pids = h.sh(None, "ip", "netns", "pids", h.ns("router")).split()
    assert str(agent.pid) in router_pids
    h.reload_agent()
    assert isinstance(h.call("status"), dict)
    assert h.stop_agent() == 0
    h.start_agent()
    h.kill_agent()
    assert agent.poll() is not None and h.agent.returncode == -signal.SIGKILL


def test_down_leaves_nothing_behind(new_home):
    h = new_home(devices=["camera", "bulb"])
    pids = [p.pid for _, p in h.procs]
    namespaces = list(h.namespaces)
    homedir = h.dir
    h.down()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not [ns for ns in namespaces if ns in listed]
    assert not os.path.exists(homedir)
    assert [pid for pid in pids if os.path.exists("/proc/%d" % pid)] == []


CHILD = textwrap.dedent("""
    import sys, time
    from tests.world.home import Home
    h = Home(devices=["camera"])
    h.up()
    print(h.tag, h.dir, *[str(p.pid) for _, p in h.procs], flush=True)
    time.sleep(120)
""")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL],
                         ids=["ctrl-c", "sigterm", "kill-9"])
def test_an_interrupted_run_cleans_up(sig):
    """Ctrl-C and SIGTERM tear the home down; after kill -9 its children die
    with it and the next run sweeps the namespaces."""
    p = subprocess.Popen([sys.executable, "-c", CHILD], cwd=REPO, stdout=subprocess.PIPE, text=True,
                         env=dict(os.environ, PYTHONPATH=REPO))
    tag, homedir, *pids = p.stdout.readline().split()
    p.send_signal(sig)
    p.wait(20)
    if sig == signal.SIGKILL:
        Home.sweep()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert tag + "-" not in listed
    assert not os.path.exists(homedir)
    # kill -9 gives the children SIGTERM (PR_SET_PDEATHSIG); they take a moment
    Home(devices=[]).wait_for(lambda: not [pid for pid in pids if os.path.exists("/proc/" + pid)],
                              timeout=10, what="the world's processes to end")


def test_a_home_that_cannot_run_says_why(monkeypatch):
    h = Home()
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(HomeError, match="needs root"):
        h.check()
    monkeypatch.undo()
    monkeypatch.setattr(world.shutil, "which", lambda b: None if b == "dnsmasq" else "/usr/bin/" + b)
    with pytest.raises(HomeError, match="missing programs: dnsmasq"):
        h.check()
