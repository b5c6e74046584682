"""The reverse firewall, told as a story: the bulb turns into a telnet
scanner and is quarantined within two scans, while the laptop's P2P client
and the console keep working through the same firewall.

Before that, the world the story needs: the wild internet in wan
(tests/world/wild.py) leaves most of a scanner's attempts unanswered, half
of a P2P client's peers answer, and a console's peers all do.
"""

import re

import pytest

from tests.world import profiles, wild
from tests.world.home import Home

pytestmark = pytest.mark.netns

SCAN_INTERVAL = 5      # the agent's default: the detector's thresholds are set for it


def flows_of(home, ip):
    """(proto, remote, answered) of every flow of ip in the router's conntrack."""
    out = []
    for line in home.conntrack().splitlines():
        m = re.search(r" (tcp|udp) .*?src=%s dst=(\S+) " % re.escape(ip), line)
        if m:
            out.append((m.group(1), m.group(2), "[UNREPLIED]" not in line and "SYN_SENT" not in line))
    return out


def test_the_wild_internet_mostly_ignores_a_scanner_and_answers_peers():
    with Home(devices=["laptop", "console", "bulb"], traffic=False) as home:
        wild.install(home)
        procs = [profiles.start(home, "bulb", "telnet_scan", rate=50),
                 profiles.start(home, "laptop", "p2p", rate=20),
                 profiles.start(home, "console", "game")]
        bulb, laptop, console = (home.devices[n].ip4 for n in ("bulb", "laptop", "console"))
        home.wait_for(lambda: len(flows_of(home, bulb)) >= 200, timeout=20,
                      what="200 attempts of the scanner in conntrack")
        scan = [f for f in flows_of(home, bulb) if f[1].startswith("11.")]
        answered = sum(1 for f in scan if f[2])
        # 1 in 32 addresses answers, 1 in 32 resets (and is gone from the table)
        assert 0 < answered < len(scan) * 0.15, (answered, len(scan))
        assert len(set(f[1] for f in scan)) > len(scan) * 0.9
        home.wait_for(lambda: profiles.status(home, "laptop", "p2p").get("bytes_in", 0) > 100000,
                      timeout=15, what="bytes back from the P2P peers")
        peers = [f for f in flows_of(home, laptop) if f[1].startswith("12.")]
        share = sum(1 for f in peers if f[2]) / float(len(peers))
        assert 0.3 < share < 0.7, (share, len(peers))
        home.wait_for(lambda: profiles.status(home, "console", "game").get("packets_in", 0) > 500,
                      timeout=15, what="the console's peers answering")
        game = [f for f in flows_of(home, console) if f[1].startswith("12.")]
        assert len(game) >= 24 and all(f[2] for f in game), game
        for p in procs:
            profiles.stop(p)


def _has_anomalies():
    from spin_lite import api
    return "anomalies" in api.METHODS


def test_the_scanning_bulb_is_quarantined_while_p2p_and_the_console_keep_working():
    if not _has_anomalies():
        pytest.skip("anomalies not in this build")
    with Home(devices=["laptop", "console", "bulb"], traffic=False, agent=True,
              config={"scan_interval": SCAN_INTERVAL}) as home:
        wild.install(home)
        macs = dict((n, home.devices[n].mac) for n in home.devices)
        profiles.start(home, "laptop", "p2p", rate=10)
        profiles.start(home, "console", "game")
        profiles.start(home, "bulb", "iot")
        # a benign warm-up: the bulb's own habits come first
        home.wait_for(lambda: home.call("status")["scans"] >= 8, timeout=SCAN_INTERVAL * 12,
                      what="eight scans of benign traffic")
        assert quarantined(home) == set(), "a benign device was quarantined"
        began = home.call("status")["scans"]
        profiles.start(home, "bulb", "telnet_scan", rate=80)

        home.wait_for(lambda: macs["bulb"] in quarantined(home), timeout=SCAN_INTERVAL * 6,
                      what="the bulb's quarantine")
        records = home.call("anomalies", {"mac": macs["bulb"]})["anomalies"]
        acted = [r for r in records if r["action"] == "quarantined"]
        assert acted, records
        first = min(acted, key=lambda r: r["first_scan"])
        assert first["first_scan"] - began <= 2, (first, began)
        assert first["layer"] == "A" and first["text"] and first["figures"], first
        assert first["examples"]["remotes"], first

        # the others still talk through the firewall, and nothing holds them
        laptop_in = profiles.status(home, "laptop", "p2p").get("bytes_in", 0)
        console_in = profiles.status(home, "console", "game").get("packets_in", 0)
        home.wait_for(lambda: profiles.status(home, "laptop", "p2p").get("bytes_in", 0) > laptop_in + 100000,
                      timeout=15, what="the laptop's P2P traffic after the quarantine")
        home.wait_for(lambda: profiles.status(home, "console", "game").get("packets_in", 0) > console_in + 200,
                      timeout=15, what="the console's game traffic after the quarantine")
        assert quarantined(home) == {macs["bulb"]}
        for name in ("laptop", "console"):
            theirs = home.call("anomalies", {"mac": macs[name]})["anomalies"]
            assert not [r for r in theirs if r["action"] == "quarantined"], (name, theirs)


def quarantined(home):
    return set(q["mac"] for q in home.call("blocks")["quarantines"])
