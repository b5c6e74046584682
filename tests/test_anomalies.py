"""The staged response: the detector's verdicts become anomaly records, a
bounded quarantine through the block store, and the owner's answers (keep,
release, allow, "this is normal") win over the detector.

First with the real Agent object and block store (not started, a firewall
backend that records what it was asked to load, as test_firewall_store.py
does), where each scan is one call; then in the simulated home with nft,
where the quarantine is measured with real packets and ends by itself.

Until the detector (detect.py) is merged, a scan's verdicts are written by
hand here: the shapes are the shared ones (DESIGN, issue 12).
"""

import json
import os
import sys
import time

import pytest

from spin_lite import anomalies, api, plat
from tests.test_firewall_store import BULB, CAMERA, LAPTOP, make_agent

HERE = os.path.dirname(os.path.abspath(__file__))


def verdict(mac=BULB, rule="outbound_scan", severity="quarantine", new_flows=412):
    return {"mac": mac, "rule": rule, "layer": "A", "severity": severity,
            "text": "made %d connection attempts to 398 internet addresses in 5 s, 97%% unanswered." % new_flows,
            "figures": {"new_flows": new_flows, "remotes": 398, "unanswered_pct": 97},
            "thresholds": {"new_flows": 100, "remotes": 50, "unanswered_pct": 60},
            "window": 5, "examples": {"remotes": ["198.18.0.1", "198.18.0.2"], "ports": [23]}}


def responding(tmp_path, **cfg):
    a, part = make_agent(tmp_path)
    a.cfg.update(cfg)
    resp = anomalies.Anomalies(a.cfg)
    a.parts.append(resp)
    resp.start(a)
    return a, part, resp


def scan(a, *verdicts):
    """One scan as the agent runs it: verdicts set, then the parts' after_scan."""
    a.scans += 1
    a.verdicts = list(verdicts)
    for p in a.parts:
        p.after_scan(a, plat.monotonic_ms())


def call(a, method, args=None):
    return api.dispatch(a, method, args or {})


def status_of(a, method, args):
    with pytest.raises(api.ApiError) as e:
        api.dispatch(a, method, args)
    return e.value.status


def quarantined(a):
    return [q["mac"] for q in call(a, "blocks")["quarantines"]]


def events(a, name):
    return [d for n, d in a.emitted if n == name]


def test_a_scan_verdict_quarantines_for_a_bounded_time_and_says_why(tmp_path):
    a, part, resp = responding(tmp_path, quarantine_minutes=15)
    scan(a, verdict())
    assert quarantined(a) == [BULB]
    rec = call(a, "anomalies")["anomalies"][0]
    assert rec["action"] == "quarantined" and rec["state"] == "quarantined"
    assert rec["text"].startswith("bulb: made 412") and rec["device"] == "bulb"
    assert rec["figures"]["new_flows"] == 412 and rec["thresholds"]["new_flows"] == 100
    assert rec["examples"] == {"remotes": ["198.18.0.1", "198.18.0.2"], "ports": [23]}
    q = call(a, "blocks")["quarantines"][0]
    assert q["by"] == "detector" and q["anomaly"] == rec["id"] and "outbound_scan" in q["reason"]
    assert q["expires"] - q["created"] == 15 * 60 and rec["until"] == q["expires"]
    assert call(a, "device", {"mac": BULB})["quarantine"]["anomaly"] == rec["id"]
    # the record went out, and blocks told of the quarantine
    assert [e["id"] for e in events(a, "spin.anomaly")] == [rec["id"]]
    assert [e["anomaly"] for e in events(a, "spin.quarantine")] == [rec["id"]]
    assert part.backend.loaded[-1]["quarantines"][0]["mac"] == BULB


def test_a_verdict_on_every_scan_is_one_record_that_keeps_the_worst(tmp_path):
    a, part, resp = responding(tmp_path)
    scan(a, verdict(new_flows=412))
    scan(a, verdict(new_flows=900))
    scan(a, verdict(new_flows=300))
    page = call(a, "anomalies")
    assert page["total"] == 1
    rec = page["anomalies"][0]
    assert rec["scans"] == 3 and rec["figures"]["new_flows"] == 900 and rec["first_scan"] == 1
    assert len(events(a, "spin.anomaly")) == 1 and len(events(a, "spin.quarantine")) == 1
    assert call(a, "status")["anomalies"]["quarantined"] == 1


def test_the_quarantine_ends_by_itself_unless_the_owner_keeps_it(tmp_path):
    a, part, resp = responding(tmp_path)
    scan(a, verdict(BULB), verdict(LAPTOP))
    by_mac = {r["mac"]: r for r in call(a, "anomalies")["anomalies"]}
    bulb, laptop = by_mac[BULB], by_mac[LAPTOP]
    kept = call(a, "keep", {"id": bulb["id"]})
    assert kept["state"] == "kept" and kept["until"] is None
    # time runs out (the block store's own clock, brought forward)
    for key in part.deadlines:
        part.deadlines[key] = 0
    part.expire(a)
    assert quarantined(a) == [BULB]
    assert call(a, "anomaly", {"id": laptop["id"]})["state"] == "expired"
    assert call(a, "anomaly", {"id": bulb["id"]})["state"] == "kept"
    # kept survives a restart of the store: no expiry in the file
    stored = json.load(open(part.path))["quarantines"]
    assert [(q["mac"], q["expires"]) for q in stored] == [(BULB, None)]


def test_monitor_only_mode_alerts_and_never_quarantines(tmp_path):
    a, part, resp = responding(tmp_path, detect_mode="alert")
    scan(a, verdict())
    rec = call(a, "anomalies")["anomalies"][0]
    assert rec["action"] == "monitor" and rec["state"] == "open" and "Monitor-only" in rec["text"]
    assert quarantined(a) == [] and len(events(a, "spin.anomaly")) == 1


def test_the_owners_allow_beats_the_detector(tmp_path):
    a, part, resp = responding(tmp_path)
    call(a, "allow", {"mac": BULB})
    scan(a, verdict())
    rec = call(a, "anomalies")["anomalies"][0]
    assert rec["action"] == "alerted" and "allowed" in rec["text"] and quarantined(a) == []


def test_a_device_the_owner_released_is_only_alerted_within_the_holdoff(tmp_path):
    a, part, resp = responding(tmp_path, quarantine_holdoff=60)
    scan(a, verdict())
    first = call(a, "anomalies")["anomalies"][0]
    call(a, "release", {"mac": BULB})
    assert call(a, "anomaly", {"id": first["id"]})["state"] == "released"
    scan(a, verdict())
    again = call(a, "anomalies")["anomalies"][0]
    assert again["id"] != first["id"] and again["action"] == "alerted" and "released" in again["text"]
    assert quarantined(a) == []
    # another rule is not held off
    scan(a, verdict(rule="udp_flood"))
    assert quarantined(a) == [BULB]
    # and when the hold-off is over, the first rule quarantines again
    call(a, "release", {"mac": BULB})
    resp.released = {k: t - 3601 for k, t in resp.released.items()}
    scan(a, verdict())
    assert quarantined(a) == [BULB]
    escalated = call(a, "anomaly", {"id": again["id"]})        # the same record, escalated
    assert escalated["action"] == "quarantined" and escalated["state"] == "quarantined"
    assert "released" not in escalated["text"]


def test_this_is_normal_silences_a_rule_for_one_device_and_survives_a_restart(tmp_path):
    a, part, resp = responding(tmp_path)
    m = call(a, "mute", {"mac": BULB, "rule": "outbound_scan"})
    assert m["until"] is None
    scan(a, verdict(BULB), verdict(LAPTOP), verdict(BULB, rule="lan_scan"))
    assert sorted(quarantined(a)) == sorted([LAPTOP, BULB])    # lan_scan still acts
    assert sorted((r["mac"], r["rule"]) for r in call(a, "anomalies")["anomalies"]) == \
        sorted([(LAPTOP, "outbound_scan"), (BULB, "lan_scan")])
    # a new agent reads the mutes back
    b, _, resp2 = responding(tmp_path)
    assert [(x["mac"], x["rule"]) for x in call(b, "mutes")["mutes"]] == [(BULB, "outbound_scan")]
    call(b, "unmute", {"mac": BULB, "rule": "outbound_scan"})
    assert call(b, "mutes")["mutes"] == []
    assert status_of(b, "unmute", {"mac": BULB, "rule": "outbound_scan"}) == api.NOT_FOUND


def test_after_a_restart_the_quarantine_keeps_its_record_and_the_holdoff_holds(tmp_path):
    a, part, resp = responding(tmp_path)
    scan(a, verdict(BULB), verdict(LAPTOP, rule="udp_flood"))
    ids = {r["mac"]: r["id"] for r in call(a, "anomalies")["anomalies"]}
    call(a, "release", {"mac": LAPTOP})
    # the agent restarts: records were in memory, the quarantine and the
    # release were not
    b, _, _ = responding(tmp_path)
    rec = call(b, "anomaly", {"id": ids[BULB]})
    assert rec["state"] == "quarantined" and rec["rule"] == "outbound_scan" and rec["device"] == "bulb"
    assert rec["text"].startswith("bulb: made 412")
    assert call(b, "keep", {"id": ids[BULB]})["state"] == "kept"
    scan(b, verdict(LAPTOP, rule="udp_flood"), verdict(BULB))
    assert quarantined(b) == [BULB]
    laptop = call(b, "anomalies", {"mac": LAPTOP})["anomalies"][0]
    assert laptop["action"] == "alerted" and "released" in laptop["text"] and laptop["id"] > max(ids.values())
    assert call(b, "anomalies", {"mac": BULB})["total"] == 1     # the new verdict joined the adopted record


def test_a_timed_mute_ends_by_itself(tmp_path):
    a, part, resp = responding(tmp_path)
    call(a, "mute", {"mac": BULB, "rule": "outbound_scan", "minutes": 5})
    scan(a, verdict())
    assert call(a, "anomalies")["total"] == 0
    resp.mutes[0]["until"] = int(plat.wall()) - 1
    scan(a, verdict())
    assert call(a, "anomalies")["total"] == 1 and call(a, "mutes")["mutes"] == []
    assert json.load(open(resp.path))["mutes"] == []


def test_a_broken_mutes_file_is_kept_aside_and_the_agent_starts_with_none(tmp_path, capsys):
    os.makedirs(str(tmp_path / "state"))
    with open(str(tmp_path / "state" / "anomalies.json"), "w") as f:
        f.write("{not json")
    a, part, resp = responding(tmp_path)
    assert call(a, "mutes")["mutes"] == []
    assert open(str(tmp_path / "state" / "anomalies.json.bad")).read() == "{not json"
    assert "anomalies.json unreadable" in capsys.readouterr().err


def test_bad_calls_are_refused_and_change_nothing(tmp_path):
    a, part, resp = responding(tmp_path)
    scan(a, verdict(), verdict(CAMERA, severity="alert"))
    ids = sorted(r["id"] for r in call(a, "anomalies")["anomalies"])
    before = (json.dumps(call(a, "anomalies")), json.dumps(call(a, "blocks")), call(a, "mutes"))
    cases = [("anomaly", {"id": 999}, api.NOT_FOUND),
             ("anomaly", {"id": "1"}, api.INVALID_ARGUMENT),
             ("keep", {"id": 999}, api.NOT_FOUND),
             ("keep", {"id": ids[1]}, api.INVALID_ARGUMENT),          # only an alert: nothing to keep
             ("mute", {"mac": BULB, "rule": "telnet"}, api.INVALID_ARGUMENT),
             ("mute", {"mac": "02:00:00", "rule": "lan_scan"}, api.INVALID_ARGUMENT),
             ("mute", {"mac": BULB, "rule": "lan_scan", "minutes": 0}, api.INVALID_ARGUMENT),
             ("mute", {"mac": BULB, "rule": "lan_scan", "colour": 1}, api.INVALID_ARGUMENT),
             ("unmute", {"mac": BULB, "rule": "lan_scan"}, api.NOT_FOUND),
             ("unmute", {"mac": BULB, "rule": "nonsense"}, api.INVALID_ARGUMENT),
             ("anomalies", {"limit": 101}, api.INVALID_ARGUMENT),
             ("anomalies", {"mac": "zz"}, api.INVALID_ARGUMENT)]
    for method, args, status in cases:
        assert status_of(a, method, args) == status, (method, args)
    after = (json.dumps(call(a, "anomalies")), json.dumps(call(a, "blocks")), call(a, "mutes"))
    assert after == before
    assert not os.path.exists(resp.path) or json.load(open(resp.path))["mutes"] == []


def test_records_are_paged_newest_first_and_bounded(tmp_path):
    a, part, resp = responding(tmp_path, max_anomalies=5, detect_mode="alert")
    macs = ["02:00:00:00:01:%02x" % i for i in range(8)]
    for mac in macs:
        scan(a, verdict(mac))
    page = call(a, "anomalies", {"limit": 2})
    assert [r["mac"] for r in page["anomalies"]] == [macs[7], macs[6]]
    assert page["total"] == 5 and page["remaining"] == 3
    assert call(a, "anomalies", {"mac": macs[0]})["total"] == 0      # the oldest went
    assert call(a, "status")["anomalies"]["dropped"] == 3
    assert call(a, "anomalies", {"mac": macs[5]})["anomalies"][0]["mac"] == macs[5]


def test_a_full_page_of_the_largest_records_fits_in_a_reply(tmp_path):
    """100 records (ANOMALIES_PAGE_MAX) with the longest text, device name,
    figure names and example remotes a verdict can bring stay far under the
    256 KB any reply may take (DESIGN §9), as JSON and as a ubus message."""
    from spin_lite import ubus
    a, part, resp = responding(tmp_path, detect_mode="alert")
    for i in range(100):
        mac = "02:00:00:00:%02x:%02x" % (i >> 8, i & 255)
        big = verdict(mac)
        big["text"] = "w" * 5000
        big["figures"] = big["thresholds"] = dict(("f" * 100 + str(j), 10 ** 12 + j) for j in range(40))
        big["examples"] = {"remotes": ["2001:0db8:ffff:%04x:%04x:abcd:ef01:1234" % (i, j) + "x" * 200
                                       for j in range(20)], "ports": list(range(20))}
        scan(a, big)
    reply = call(a, "anomalies")
    size = len(json.dumps(reply).encode())
    blob = len(ubus.encode_message(ubus.Message(ubus.DATA, 1, 1, [(ubus.A_DATA, reply)])))
    print("a page of %d anomalies: %d bytes JSON, %d bytes ubus" % (len(reply["anomalies"]), size, blob))
    assert len(reply["anomalies"]) == api.ANOMALIES_PAGE_MAX == 100
    assert size < 256 * 1024 and blob < 256 * 1024


def test_ids_are_not_reused_after_a_restart(tmp_path):
    a, part, resp = responding(tmp_path, detect_mode="alert")
    scan(a, verdict())
    first = call(a, "anomalies")["anomalies"][0]["id"]
    b, _, _ = responding(tmp_path, detect_mode="alert")
    scan(b, verdict())
    assert call(b, "anomalies")["anomalies"][0]["id"] > first


# -- in the simulated home, with real packets ------------------------------

# The agent of the home with a stand-in for the detector: each scan it
# reads verdicts.json from the home's dir (while the file exists) into
# agent.verdicts, as detect will. Everything else is the real agent.
DRIVER = """
import json, os, sys
sys.path.insert(0, sys.argv[1])
from spin_lite import agent, config, plat

class Verdicts:
    def __init__(self, path):
        self.path = path
    def after_scan(self, a, now_ms):
        data = plat.read_file(self.path)
        a.verdicts = json.loads(data.decode()) if data else []

cfg, warnings = config.load(sys.argv[2])
a = agent.Agent(cfg, sys.argv[2], warnings)
build = a.build_parts
def build_parts():
    build()
    a.parts.insert(0, Verdicts(sys.argv[3]))
a.build_parts = build_parts
a.run()
"""


@pytest.fixture(scope="module")
def home():
    from tests.world.home import Home, SRC
    with Home(firewall="nft", agent=False) as h:
        h.write_agent_config(quarantine_minutes=1, quarantine_holdoff=60)
        h.verdicts = h.path("verdicts.json")
        h.agent = h.popen("router", [sys.executable, "-u", "-c", DRIVER, SRC, h.agent_config, h.verdicts],
                          label="agent", log=h.agent_log,
                          env={"PYTHONPATH": SRC + ":" + os.path.dirname(HERE)})
        h.wait_for(h._agent_answers, timeout=15, what="the agent's RPC socket")
        yield h


def say(home, *verdicts):
    with open(home.verdicts + ".new", "w") as f:
        json.dump(list(verdicts), f)
    os.rename(home.verdicts + ".new", home.verdicts)


def silence(home):
    if os.path.exists(home.verdicts):
        os.unlink(home.verdicts)


def reaches(home, dev):
    from tests.test_firewall_home import reaches as reach
    return reach(home, dev, "203.0.113.30", 80, timeout=1)


def record_of(home, mac, rule):
    for r in home.call("anomalies", {"mac": mac})["anomalies"]:
        if r["rule"] == rule:
            return r
    return None


@pytest.mark.netns
def test_in_the_home_the_scanning_bulb_is_cut_off_and_let_back_after_its_minute(home):
    bulb = home.devices["bulb"]
    home.wait_for(lambda: home.call("device", {"mac": bulb.mac}), timeout=20, what="the bulb known to the agent")
    assert reaches(home, "bulb")
    say(home, verdict(bulb.mac))
    rec = home.wait_for(lambda: (record_of(home, bulb.mac, "outbound_scan") or {}).get("state") == "quarantined"
                        and record_of(home, bulb.mac, "outbound_scan"), timeout=10, what="the quarantine")
    began = time.monotonic()
    assert not reaches(home, "bulb"), "the quarantined bulb still reaches the internet"
    assert reaches(home, "thermostat"), "the thermostat was cut off too"
    assert rec["until"] - rec["first"] <= 61
    silence(home)
    q = home.call("blocks")["quarantines"][0]
    assert q["by"] == "detector" and q["anomaly"] == rec["id"] and q["dropped"] > 0
    # it ends by itself, within a few scans of its minute
    home.wait_for(lambda: reaches(home, "bulb"), timeout=75, interval=1, what="the bulb let back")
    assert time.monotonic() - began > 50
    assert home.call("anomaly", {"id": rec["id"]})["state"] == "expired"


@pytest.mark.netns
def test_in_the_home_keep_holds_and_release_holds_off(home):
    cam = home.devices["camera"]
    home.wait_for(lambda: home.call("device", {"mac": cam.mac}), timeout=20, what="the camera known")
    say(home, verdict(cam.mac, rule="udp_flood"))
    rec = home.wait_for(lambda: (record_of(home, cam.mac, "udp_flood") or {}).get("state") == "quarantined"
                        and record_of(home, cam.mac, "udp_flood"), timeout=10, what="the camera's quarantine")
    silence(home)
    assert home.call("keep", {"id": rec["id"]})["state"] == "kept"
    assert home.call("blocks")["quarantines"][0]["expires"] is None
    assert not reaches(home, "camera")
    home.call("release", {"mac": cam.mac})
    home.wait_for(lambda: reaches(home, "camera"), timeout=10, what="the camera released")
    assert home.call("anomaly", {"id": rec["id"]})["state"] == "released"
    # the same rule again: alerted, not quarantined (hold-off)
    say(home, verdict(cam.mac, rule="udp_flood"))
    again = home.wait_for(lambda: (record_of(home, cam.mac, "udp_flood") or {}).get("id") != rec["id"]
                          and record_of(home, cam.mac, "udp_flood"), timeout=10, what="a new record")
    silence(home)
    assert again["action"] == "alerted" and reaches(home, "camera")
    assert home.call("status")["anomalies"]["quarantined"] == 0
