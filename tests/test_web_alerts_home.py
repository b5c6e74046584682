"""The Alerts page against the real agent in the simulated home.

The detector is stood in for by the response branch's test-only path
(tests/test_anomalies.py DRIVER: each scan the agent reads verdicts.json
into agent.verdicts); everything after it is real: the response part
opens the records and quarantines through the block store, nft drops the
bulb's packets, and the page the agent serves (standalone, the same view
files as LuCI) reads `anomalies` and `mutes` and answers with `keep`,
`release`, `mute` and `unmute`. Each story checks the agent's own state
after the click, not only the page.
"""

import os
import sys

import pytest

from tests.test_anomalies import DRIVER, HERE, say, silence, verdict
from tests.test_web_standalone import WWW
from tests.web.browser import Browser, available
from tests.world.home import DEVICES, SRC, Home
from tests.world.webproxy import forward

BULB, LAPTOP = DEVICES["bulb"][0], DEVICES["laptop"][0]
ROW = "#spin-alert-table tr[data-mac='%s'][data-rule='%s']"


@pytest.fixture(scope="module")
def home():
    why = available()
    if why:
        pytest.fail("no browser: " + why)
    with Home(firewall="nft", agent=False) as h:
        h.write_agent_config(www_dir=WWW, quarantine_minutes=15, quarantine_holdoff=60)
        h.verdicts = h.path("verdicts.json")
        h.agent = h.popen("router", [sys.executable, "-u", "-c", DRIVER, SRC, h.agent_config, h.verdicts],
                          label="agent", log=h.agent_log,
                          env={"PYTHONPATH": SRC + ":" + os.path.dirname(HERE)})
        h.wait_for(h._agent_answers, timeout=15, what="the agent's RPC socket")
        h.wait_for(lambda: len(h.call("devices")["devices"]) == len(DEVICES), timeout=30,
                   what="every device in the agent's table")
        yield h


@pytest.fixture(scope="module")
def page(home):
    with forward(home.rpc_socket) as fw, Browser() as b:
        b.url = fw.url + "/spin/?view=alerts"
        yield b


def record(home, mac, rule):
    for r in home.call("anomalies", {"mac": mac})["anomalies"]:
        if r["rule"] == rule:
            return r
    return None


def row_state(page, mac, rule):
    return "(document.querySelector(\"%s\") || {dataset: {}}).dataset.state" % (ROW % (mac, rule))


def test_the_detectors_quarantine_is_a_row_the_owner_keeps_then_releases(home, page):
    say(home, verdict(BULB))
    home.wait_for(lambda: (record(home, BULB, "outbound_scan") or {}).get("state") == "quarantined",
                  timeout=10, what="the bulb's quarantine")
    silence(home)
    page.goto(page.url)
    row = ROW % (BULB, "outbound_scan")
    page.wait(row_state(page, BULB, "outbound_scan") + " == 'quarantined'")
    text = page.eval("document.querySelector(\"%s\").innerText" % row)
    for words in ("bulb", "398 internet addresses", "Scanning the internet", "new flows: 412 (limit 100)",
                  "unanswered pct: 97\u202f% (limit 60\u202f%)", "198.18.0.1", "Quarantined", "ends in 15 min"):
        assert words in text, (words, text)
    page.screenshot("alerts-home-quarantined.png")

    page.click(row + " [data-action=keep]")
    page.wait(row_state(page, BULB, "outbound_scan") + " == 'kept'")
    assert record(home, BULB, "outbound_scan")["until"] is None
    [q] = home.call("blocks")["quarantines"]
    assert q["mac"] == BULB and q["expires"] is None
    assert page.eval("Array.from(document.querySelectorAll(\"%s [data-action]\")).map(b => b.dataset.action)" % row) \
        == ["release", "mute"]

    page.click(row + " [data-action=release]")
    page.wait(row_state(page, BULB, "outbound_scan") + " == 'released'")
    assert home.call("blocks")["quarantines"] == []
    assert record(home, BULB, "outbound_scan")["state"] == "released"
    assert page.eval("document.querySelectorAll('.alert-message').length") == 0
    assert page.logs() == []


def test_this_is_normal_mutes_the_rule_for_that_device_and_alert_again_undoes_it(home, page):
    say(home, verdict(LAPTOP, rule="one_remote_flood", severity="alert"))
    home.wait_for(lambda: record(home, LAPTOP, "one_remote_flood"), timeout=10, what="the laptop's alert")
    silence(home)
    page.goto(page.url)
    row = ROW % (LAPTOP, "one_remote_flood")
    page.wait(row_state(page, LAPTOP, "one_remote_flood") + " == 'open'")
    assert home.call("blocks")["quarantines"] == []   # an alert, not a quarantine

    page.click(row + " [data-action=mute]")   # the confirm() is answered yes
    mutes = "#spin-mute-table tr[data-mac='%s'][data-rule='one_remote_flood']" % LAPTOP
    page.wait("document.querySelector(\"%s\")" % mutes)
    assert [(m["mac"], m["rule"]) for m in home.call("mutes")["mutes"]] == [(LAPTOP, "one_remote_flood")]
    assert not page.eval("!!document.querySelector(\"%s [data-action=mute]\")" % row)
    assert "Flooding one address" in page.eval("document.querySelector(\"%s\").innerText" % mutes)

    page.click(mutes + " [data-action=unmute]")
    page.wait("!document.querySelector(\"%s\")" % mutes)
    assert home.call("mutes")["mutes"] == []
    page.wait("!!document.querySelector(\"%s [data-action=mute]\")" % row)
    assert page.logs() == []
