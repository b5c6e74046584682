"""The response's policy on its own: which verdict quarantines, which only
alerts, and what a record says. Pure functions of anomalies.py, so these
run under MicroPython too (no pytest import, no fixtures)."""

from spin_lite import anomalies

BULB = "02:00:00:00:00:05"


def scan_verdict(**over):
    v = {"mac": BULB, "rule": "outbound_scan", "layer": "A", "severity": "quarantine",
         "text": "made 412 connection attempts to 398 internet addresses in 5 s, 97% unanswered.",
         "figures": {"new_flows": 412, "remotes": 398, "unanswered_pct": 97},
         "thresholds": {"new_flows": 100, "remotes": 50, "unanswered_pct": 60},
         "window": 5, "examples": {"remotes": ["198.18.0.1", "198.18.0.2"], "ports": [23]}}
    v.update(over)
    return v


def decision(verdict=None, mode="quarantine", muted=False, allowed=False, held_off=False,
             in_quarantine=False, no_firewall=False):
    known = anomalies.facts(verdict or scan_verdict(), mode, muted, allowed=allowed,
                            held_off=held_off, in_quarantine=in_quarantine,
                            no_firewall=no_firewall)
    return anomalies.decide(known)


def test_a_quarantine_verdict_quarantines_when_nothing_speaks_against_it():
    assert decision() == ("quarantined", "")


def test_an_alert_verdict_only_alerts():
    assert decision(scan_verdict(severity="alert"))[0] == "alerted"


def test_monitor_only_mode_never_quarantines():
    action, why = decision(mode="alert")
    assert action == "monitor" and "Monitor-only" in why


def test_the_owners_allow_beats_the_detector_and_says_so():
    action, why = decision(allowed=True)
    assert action == "alerted" and "allowed" in why


def test_a_device_the_owner_released_is_only_alerted_within_the_holdoff():
    action, why = decision(held_off=True)
    assert action == "alerted" and "released" in why


def test_a_mute_silences_even_a_quarantine_in_any_mode():
    assert decision(muted=True)[0] == "muted"
    assert decision(muted=True, mode="alert")[0] == "muted"
    assert decision(scan_verdict(severity="alert"), muted=True)[0] == "muted"


def test_a_device_already_in_quarantine_is_not_quarantined_twice():
    assert decision(in_quarantine=True)[0] == "alerted"
    assert decision(no_firewall=True)[0] == "alerted"


def test_the_policy_is_a_table_whose_every_row_is_reachable():
    # each fact alone picks its own row: no row hides behind another
    for fact, action, _ in anomalies.POLICY:
        known = anomalies.facts(scan_verdict(), "quarantine", False, False, False, False)
        known[fact] = True
        assert anomalies.decide(known)[0] == action, fact


def test_a_record_begins_with_the_devices_name_and_has_the_api_shape():
    rec = anomalies.new_record(7, scan_verdict(), "bulb", 1000.5, 42)
    assert rec["text"].startswith("bulb: made 412")
    keys = ["action", "device", "examples", "figures", "first", "first_scan", "id", "last",
            "layer", "mac", "rule", "scans", "severity", "state", "text", "thresholds",
            "until", "window"]
    assert sorted(rec) == keys
    assert rec["id"] == 7 and rec["first"] == 1000 and rec["first_scan"] == 42 and rec["scans"] == 1
    assert rec["state"] == "open" and rec["until"] is None
    nameless = anomalies.new_record(8, scan_verdict(), "", 1000, 1)
    assert nameless["text"].startswith("made 412") and nameless["device"] == ""


def test_later_verdicts_keep_the_worst_figures_and_at_most_five_examples():
    rec = anomalies.new_record(1, scan_verdict(), "", 1000, 1)
    later = scan_verdict(figures={"new_flows": 300, "remotes": 900, "unanswered_pct": 99},
                         examples={"remotes": ["198.18.0.%d" % i for i in range(10)],
                                   "ports": [23, 2323, 80, 81, 8080, 7547]})
    anomalies.merge(rec, later, 1010)
    assert rec["figures"] == {"new_flows": 412, "remotes": 900, "unanswered_pct": 99}
    assert rec["scans"] == 2 and rec["last"] == 1010 and rec["first"] == 1000
    assert len(rec["examples"]["remotes"]) == 5 and rec["examples"]["remotes"][:2] == ["198.18.0.1", "198.18.0.2"]
    assert rec["examples"]["ports"] == [23, 2323, 80, 81, 8080]


def test_a_record_stays_bounded_whatever_the_verdict_carries():
    big = scan_verdict(text="x" * 5000, figures=dict(("f%d" % i, i) for i in range(50)),
                       examples={"remotes": ["r%d" % i for i in range(50)], "ports": list(range(50))})
    rec = anomalies.new_record(1, big, "a" * 64, 0, 0)
    assert len(rec["text"]) <= anomalies.TEXT_MAX
    assert len(rec["figures"]) <= anomalies.FIGURES_MAX
    assert len(rec["examples"]["remotes"]) == 5 and len(rec["examples"]["ports"]) == 5


def test_mutes_end_at_their_time_or_never():
    mutes = [{"mac": BULB, "rule": "outbound_scan", "created": 0, "until": 100},
             {"mac": BULB, "rule": "lan_scan", "created": 0, "until": None}]
    assert anomalies.muted(mutes, BULB, "outbound_scan", 99)
    assert not anomalies.muted(mutes, BULB, "outbound_scan", 100)
    assert anomalies.muted(mutes, BULB, "lan_scan", 10 ** 9)
    assert not anomalies.muted(mutes, "02:00:00:00:00:01", "lan_scan", 0)
    assert [m["rule"] for m in anomalies.live_mutes(mutes, 100)] == ["lan_scan"]


def test_a_mutes_file_is_read_strictly():
    good = {"version": 1, "next_id": 5, "mutes": [{"mac": BULB, "rule": "lan_scan", "until": None}]}
    assert anomalies.read_mutes(good)[0]["rule"] == "lan_scan"
    for bad in ([], {"mutes": {}}, {"mutes": [{"mac": BULB}]}, {"next_id": "5", "mutes": []},
                {"mutes": [{"mac": BULB, "rule": "x", "until": "soon"}]}):
        try:
            anomalies.read_mutes(bad)
        except ValueError:
            continue
        raise AssertionError("accepted %r" % (bad,))


def test_a_quarantine_kept_across_a_restart_becomes_its_record_again():
    q = {"mac": BULB, "created": 1000, "expires": 1900, "anomaly": 7, "rule": "outbound_scan",
         "reason": "anomaly 7 (outbound_scan): bulb: made 412 connection attempts"}
    rec = anomalies.adopted(q)
    assert rec["id"] == 7 and rec["state"] == "quarantined" and rec["until"] == 1900
    assert rec["text"] == "bulb: made 412 connection attempts" and rec["rule"] == "outbound_scan"
    q["expires"] = None
    assert anomalies.adopted(q)["state"] == "kept"
    fresh = anomalies.new_record(1, scan_verdict(), "", 0, 0)
    assert sorted(anomalies.adopted(q)) == sorted(fresh)


def test_the_owners_releases_are_read_back_with_their_time():
    store = {"mutes": [], "released": [{"mac": BULB, "rule": "udp_flood", "at": 1000}]}
    assert anomalies.read_released(store) == {(BULB, "udp_flood"): 1000}
    assert anomalies.read_released({"mutes": []}) == {}
    try:
        anomalies.read_released({"released": [{"mac": BULB, "rule": "x"}]})
    except ValueError:
        return
    raise AssertionError("a release without its time was accepted")
