"""The owner reads the Alerts page and answers it.

The records come from a recorded agent (the harness's ?fixture=), in the
shape of the `anomalies` reply (newest first, {anomalies, total, offset,
remaining}) and of `mutes`: a bulb quarantined for scanning the internet,
a laptop alerted by its own baseline, a camera whose quarantine was
released, and a device whose name is markup. What is checked is what the
owner needs: every record is a row, in words, with its figures beside the
thresholds and its state; each action calls its method with the record's
device, rule or id and the page then reads the records again; a failed
read or action is said in words, never drawn as an empty table.

The live agent's side (the page against the simulated home, the
quarantine shown in Devices and Network) is in test_web_luci.py.
"""

import functools
import http.server
import json
import os
import threading
import time

import pytest

from tests.test_web_busy import QuietHandler
from tests.web import luci_www
from tests.web.browser import Browser, available

BULB, LAPTOP, CAMERA, SPEAKER, ODD = ("02:00:00:00:00:05", "02:00:00:00:00:04", "02:00:00:00:00:01",
                                      "02:00:00:00:00:02", "02:00:00:00:00:09")
HOSTILE = '<img src=x onerror="window.pwned=1">'
ROW = "#spin-alert-table tr[data-id='%d']"


def record(id, mac, device, rule, layer, state, action, ago, text, figures, thresholds, **kw):
    now = int(time.time())   # the page says "… ago" against its own clock
    rec = {"id": id, "mac": mac, "device": device, "rule": rule, "layer": layer,
           "severity": "quarantine" if layer == "A" else "alert", "text": text,
           "figures": figures, "thresholds": thresholds, "window": kw.get("window", 10),
           "examples": kw.get("examples", {"remotes": [], "ports": []}),
           "first": now - ago - 20, "last": now - ago, "first_scan": 100 + id, "scans": kw.get("scans", 1),
           "action": action, "state": state, "until": kw.get("until")}
    return rec


def recorded_agent():
    now = int(time.time())
    records = [
        record(4, ODD, HOSTILE, "dns_bypass", "A", "open", "monitor", 30,
               "It sent DNS questions to a public resolver instead of the router.",
               {"dns_remotes": 2}, {"dns_remotes": 1}),
        record(3, BULB, "bulb", "outbound_scan", "A", "quarantined", "quarantined", 60,
               "It tried to open telnet on 412 addresses of the internet in 10 seconds; almost none answered.",
               {"new_flows": 412, "distinct_remotes": 380, "unanswered_share": 0.97},
               {"new_flows": 100, "distinct_remotes": 50, "unanswered_share": 0.8},
               examples={"remotes": ["198.18.0.1", "198.18.0.2"], "ports": [23, 2323]},
               scans=3, until=now + 840),
        record(2, LAPTOP, "laptop", "baseline_new_flows", "B", "open", "alerted", 600,
               "It opened 9 times as many connections as it usually does at this hour.",
               {"new_flows": 900, "baseline": 100}, {"new_flows": 500}, window=60),
        record(1, CAMERA, "camera", "one_remote_flood", "A", "released", "quarantined", 7200,
               "It opened 300 connections a second to one address.",
               {"new_flows": 3000}, {"new_flows": 1000}),
    ]
    return {
        "status": {"scan_interval": 5, "version": "fixture"},
        "anomalies": {"anomalies": records, "total": 4, "offset": 0, "remaining": 0},
        "anomaly": records[1],
        "mutes": {"mutes": [{"mac": SPEAKER, "rule": "udp_flood", "device": "speaker", "until": None}]},
        "blocks": {"blocks": [], "quarantines": [{"mac": BULB, "name": "bulb", "created": now - 60,
                                                  "expires": now + 840, "reason": "scanning the internet"}],
                   "allows": []},
        "release": {"mac": BULB}, "keep": {"id": 3}, "mute": {}, "unmute": {},
    }


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    why = available()
    if why:
        pytest.fail("no browser: " + why)
    tmp = tmp_path_factory.mktemp("alerts")
    cfg = tmp / "spin"
    cfg.write_text("config spin 'main'\n\toption scan_interval '5'\n")
    www = luci_www.build(str(tmp / "www"), str(cfg))
    data = recorded_agent()
    variants = {
        "alerts": data,
        # an agent without the method (older than the detector), and one
        # whose keep fails because the quarantine just ended
        "no-anomalies": dict(data, anomalies={"__failed": 3}),
        "keep-gone": dict(data, keep={"__failed": 4}),
        "none": dict(data, anomalies={"anomalies": [], "total": 0, "offset": 0, "remaining": 0},
                     mutes={"mutes": []}),
        # a long evening: a page of 50 shown, 70 older ones left
        "many": dict(data, anomalies={"anomalies": [dict(data["anomalies"]["anomalies"][2], id=120 - i)
                                                    for i in range(50)],
                                      "total": 120, "offset": 0, "remaining": 70}),
    }
    for name, agent in variants.items():
        with open(os.path.join(www, "luci-static", "harness-data", name + ".json"), "w") as f:
            json.dump(agent, f)
    handler = functools.partial(QuietHandler, directory=www)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with Browser() as b:
            b.base = "http://127.0.0.1:%d/luci-static/harness/index.html?fixture=%%s&path=admin/services/spin/alerts" \
                % server.server_address[1]
            yield b
    finally:
        server.shutdown()


def open_alerts(b, fixture="alerts"):
    b.goto(b.base % fixture)
    b.wait("window.HARNESS && (HARNESS.bootError || document.querySelector('#spin-alert-table tbody tr'))")
    assert b.eval("HARNESS.bootError || null") is None


def calls(b, method):
    return b.eval("HARNESS.calls.filter(c => c.method == '%s').map(c => c.args)" % method)


def test_every_record_is_a_row_in_words_newest_first(site):
    open_alerts(site)
    ids = site.eval("Array.from(document.querySelectorAll('#spin-alert-table tr[data-id]')).map(r => +r.dataset.id)")
    assert ids == [4, 3, 2, 1]
    bulb = site.eval("document.querySelector(\"%s\").innerText" % (ROW % 3))
    for words in ("bulb", BULB, "telnet on 412 addresses", "Scanning the internet", "certain sign",
                  "within 10 s", "198.18.0.1", "23, 2323", "Quarantined", "ends in 14 min",
                  "held 3 scans", "1 min ago"):
        assert words in bulb, (words, bulb)
    # the figures beside the thresholds they crossed, shares as percentages
    figures = site.eval("Array.from(document.querySelectorAll(\"%s [data-figure]\")).map(li => li.textContent)" % (ROW % 3))
    assert figures == ["new flows: 412 (limit 100)", "distinct remotes: 380 (limit 50)",
                       "unanswered share: 97\u202f% (limit 80\u202f%)"]
    laptop = site.eval("document.querySelector(\"%s\").innerText" % (ROW % 2))
    for words in ("Far more connections than usual", "unusual for this device", "within 1 min", "Alert",
                  "alert only", "new flows: 900 (limit 500)", "baseline: 100"):
        assert words in laptop, (words, laptop)
    assert "monitor only" in site.eval("document.querySelector(\"%s\").innerText" % (ROW % 4))
    assert "Released" in site.eval("document.querySelector(\"%s\").innerText" % (ROW % 1))
    assert "4 alerts, 2 open, in quarantine: 1" in site.eval("document.getElementById('spin-alert-summary').textContent")
    # a device's name is whatever it said: text, never markup
    assert site.eval("document.querySelector(\"%s strong\").textContent" % (ROW % 4)) == HOSTILE
    assert site.eval("document.querySelectorAll('#view img').length") == 0 and site.eval("window.pwned === undefined")
    # which actions each row offers: the way back only where it applies
    offered = site.eval("""Object.fromEntries(Array.from(document.querySelectorAll('#spin-alert-table tr[data-id]'))
        .map(r => [r.dataset.id, Array.from(r.querySelectorAll('[data-action]')).map(b => b.dataset.action)]))""")
    assert offered == {"4": ["mute"], "3": ["release", "keep", "mute"], "2": ["mute"], "1": ["mute"]}
    mutes = site.eval("document.querySelector(\"#spin-mute-table tr[data-mac='%s']\").innerText" % SPEAKER)
    assert "speaker" in mutes and "UDP flood" in mutes and "never" in mutes
    site.screenshot("alerts-desktop.png", full_page=True)
    assert site.logs() == []


@pytest.mark.parametrize("selector, method, args", [
    (ROW % 3 + " [data-action=release]", "release", {"mac": BULB}),
    (ROW % 3 + " [data-action=keep]", "keep", {"id": 3}),
    (ROW % 2 + " [data-action=mute]", "mute", {"mac": LAPTOP, "rule": "baseline_new_flows"}),
    ("#spin-mute-table tr[data-mac='%s'] [data-action=unmute]" % SPEAKER, "unmute",
     {"mac": SPEAKER, "rule": "udp_flood"}),
])
def test_each_action_calls_its_method_and_reads_the_records_again(site, selector, method, args):
    open_alerts(site)
    reads = len(calls(site, "anomalies"))
    site.click(selector)
    site.wait("HARNESS.calls.filter(c => c.method == 'anomalies').length > %d" % reads)
    assert calls(site, method) == [args]
    assert site.eval("HARNESS.denied") == []
    assert site.eval("document.querySelectorAll('.alert-message').length") == 0
    assert site.logs() == []


def test_an_agent_without_alerts_says_so_instead_of_an_empty_table(site):
    open_alerts(site, "no-anomalies")
    text = site.eval("document.querySelector('#spin-alert-table tbody').textContent")
    assert text == "No alerts to show: this spin-lite agent does not run anomaly detection."
    assert site.eval("document.querySelectorAll('#spin-alert-table tr[data-id]').length") == 0
    site.screenshot("alerts-unavailable.png")
    open_alerts(site, "none")
    assert site.eval("document.querySelector('#spin-alert-table tbody').textContent") == \
        "No alerts: no device has behaved like malware."
    site.logs()


def test_a_failed_action_is_said_in_words(site):
    open_alerts(site, "keep-gone")
    site.click(ROW % 3 + " [data-action=keep]")
    text = site.wait("(document.querySelector('.alert-message p') || {}).textContent")
    assert text == "Keeping bulb in quarantine failed: it no longer exists."
    # the records are still shown
    assert site.eval("document.querySelectorAll('#spin-alert-table tr[data-id]').length") == 4
    site.logs()


def test_alerts_on_a_phone(site):
    site.page(width=390, height=844, mobile=True)
    open_alerts(site)
    path = site.screenshot("alerts-phone.png", full_page=True)
    assert os.path.getsize(path) > 5000
    # a card per record: the labels come from data-title
    assert site.eval("getComputedStyle(document.querySelector('#spin-alert-table thead')).display") == "none"
    site.page()


def test_older_records_come_a_page_at_a_time(site):
    open_alerts(site, "many")
    assert site.eval("document.querySelectorAll('#spin-alert-table tr[data-id]').length") == 50
    assert calls(site, "anomalies")[0] == {"limit": 50, "offset": 0}
    assert site.eval("document.querySelector('[data-action=older]').textContent") == "Show 50 older"
    assert "120 alerts" in site.eval("document.getElementById('spin-alert-summary').textContent")
    site.click("[data-action=older]")
    site.wait("HARNESS.calls.some(c => c.method == 'anomalies' && c.args.offset == 50)")
    assert {"limit": 50, "offset": 50} in calls(site, "anomalies")
    site.logs()
