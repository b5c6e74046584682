"""Issue 12, item 3, told as a story: the detector in the running agent.

The home's devices go about their day while the agent scans the kernel's
real conntrack table; then the bulb turns into a telnet scanner. The
detector names the bulb, and only the bulb, within two scans of its
scan showing up in conntrack. Verdicts are read from `status` (the
response, which acts on them, is another part).
"""

import time

import pytest

from tests.world.home import Home

pytestmark = pytest.mark.netns

SCAN = 2  # seconds between the agent's scans


@pytest.fixture(scope="module")
def home():
    with Home(traffic=False, config={"scan_interval": SCAN}) as h:
        h.start_agent()
        for name in h.devices:
            h.start_traffic(name)
        yield h


def verdicts_seen(home, seconds):
    """Every (mac, rule, severity) the detector reported over `seconds`,
    reading status at least once a scan."""
    seen = set()
    scans = -1
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        d = home.call("status")["detect"]
        if d["scans"] != scans:
            scans = d["scans"]
            seen.update((v["mac"], v["rule"], v["severity"]) for v in d["last"])
        time.sleep(SCAN / 4.0)
    return seen


def test_the_detector_is_on_and_says_how_big_it_is(home):
    d = home.call("status")["detect"]
    assert d["on"] is True and d["mode"] == "quarantine" and d["warnings"] == []
    assert d["table_max"] and d["table_max"] > 0
    assert 0 < d["state_bytes"] < 64 * 1024 * len(home.devices)


def test_the_bulb_scanning_telnet_is_named_within_two_scans_and_nobody_else(home):
    quiet = verdicts_seen(home, 6 * SCAN)
    assert [v for v in quiet if v[2] == "quarantine"] == []
    bulb = home.devices["bulb"].mac
    home.scan("bulb", True)
    try:
        def in_conntrack():
            return home.conntrack().count("dport=23 ") >= 50
        home.wait_for(in_conntrack, timeout=20, what="the bulb's SYNs in conntrack")
        t0 = home.call("status")["detect"]["scans"]

        def caught():
            d = home.call("status")["detect"]
            hits = [v for v in d["last"] if v["mac"] == bulb and v["rule"] == "outbound_scan"]
            return (d["scans"], hits[0]) if hits else None
        at, v = home.wait_for(caught, timeout=6 * SCAN, interval=SCAN / 4.0,
                              what="outbound_scan for the bulb")
        assert v["severity"] == "quarantine"
        assert at - t0 <= 2, "caught %d scans after the scan filled conntrack" % (at - t0)
        others = verdicts_seen(home, 3 * SCAN)
    finally:
        home.scan("bulb", False)
    assert [v for v in others if v[0] != bulb and v[2] == "quarantine"] == []
