"""The controller's merged view, fed the messages agents publish (what
arrives over MQTT, without the broker: tests/test_mqtt_home.py has it)."""

import json

from spin_lite import config, controller, mqttlink

LAPTOP = "02:00:00:00:00:04"


def home():
    cfg = config.defaults()
    cfg["mqtt_broker"] = "127.0.0.1"
    return controller.Home(cfg)


def station(homes=(), group=None, name=None):
    """A controller process without its broker: the homes it serves."""
    cfg = config.defaults()
    cfg.update(mqtt_broker="127.0.0.1", controller_homes=list(homes))
    return controller.Controller(cfg, group, name)


def digest(agent, seq, t, rows, started=100):
    return json.dumps({"v": 1, "agent": agent, "started": started, "seq": seq, "t": t,
                       "bucket_seconds": 60, "devices": rows}).encode()


def row(mac, out, inn):
    return {"mac": mac, "bytes_out": out, "bytes_in": inn, "packets_out": 1, "packets_in": 1,
            "conns": 1, "unreplied": 0, "remotes": 1, "ports": 1, "top": [["203.0.113.10", out + inn]]}


def test_a_roaming_laptop_is_one_device_with_one_timeline():
    c = home()
    c.message("spin/home/ap1/digest", digest("ap1", 1, 600, [row(LAPTOP, 100, 1000)]), False)
    # the router behind ap1 sees the same minute's flows: the same traffic, not twice
    c.message("spin/home/router/digest", digest("router", 1, 600, [row(LAPTOP, 90, 1000)]), False)
    c.message("spin/home/ap2/digest", digest("ap2", 1, 660, [row(LAPTOP, 50, 500)]), False)
    assert list(c.devices) == [LAPTOP]
    d = c.device_info(LAPTOP)
    assert d["agent"] == "ap2" and set(d["agents"]) == {"ap1", "router", "ap2"}
    points = c.history(LAPTOP, 60)["points"]
    assert [(p["t"], p["bytes_out"], p["bytes_in"]) for p in points] == [(600, 100, 1000), (660, 50, 500)]


def test_a_repeat_is_ignored_and_a_lost_digest_is_a_gap():
    c = home()
    for seq in (1, 2, 2, 4):
        c.message("spin/home/ap1/digest", digest("ap1", seq, 600 + 60 * seq, [{"mac": LAPTOP}]), False)
    a = c.agent_list()["agents"][0]
    assert (a["digests"], a["repeats"], a["gaps"], a["last_seq"]) == (3, 1, 1, 4)
    # the agent restarts: its numbers start again, no gap for that
    c.message("spin/home/ap1/digest", digest("ap1", 1, 900, [{"mac": LAPTOP}], started=200), False)
    assert c.agent_list()["agents"][0]["gaps"] == 1


def test_a_malformed_digest_changes_nothing():
    c = home()
    c.message("spin/home/ap1/digest", digest("ap1", 1, 600, [row(LAPTOP, 100, 1000)]), False)
    before = json.dumps((c.digests, c.history(LAPTOP, 60), c.agent_list()), sort_keys=True)
    bad = [b"{", b"[]", digest("ap1", 2, 660, [row(LAPTOP, 1, 1), {"mac": "zz"}]),
           digest("ap1", 2, 660, [row(LAPTOP, -5, 1)]), digest("ap1", 2, 660, "x"),
           digest("ap1", 2, 660, [dict(row(LAPTOP, 1, 1), top=[["a"]])]),
           json.dumps({"v": 2, "seq": 2, "t": 660, "devices": []}).encode()]
    for payload in bad:
        c.message("spin/home/ap1/digest", payload, False)
    assert c.malformed == len(bad)
    assert json.dumps((c.digests, c.history(LAPTOP, 60), c.agent_list()), sort_keys=True) == before
    # other homes and wildcards in names are not ours
    c.message("spin/other/ap1/digest", digest("ap1", 3, 720, [row(LAPTOP, 1, 1)]), False)
    assert c.digests == 1


def test_status_and_the_will_say_who_is_online():
    c = home()
    c.message("spin/home/ap1/status", b'{"v":1,"agent":"ap1","state":"online","version":"0.1"}', True)
    assert c.agent_list()["agents"][0]["state"] == "online"
    c.message("spin/home/ap1/status", b'{"v":1,"agent":"ap1","state":"offline"}', True)
    assert c.agent_list()["agents"][0]["state"] == "offline"


def test_the_api_serves_the_view_and_agents_behind_the_token():
    from spin_lite import jsonrpc
    c = station()
    c.cfg["token"] = "s3cret"
    c.message("spin/home/ap1/digest", digest("ap1", 1, 600, [row(LAPTOP, 100, 1000)]), False)
    server = jsonrpc.Server()
    server.routes["/"] = server.routes["/rpc"] = controller.rpc_route

    def post(body, token=None):
        headers = {"authorization": "Bearer " + token} if token else {}
        raw = server.respond(c, ("POST", "/", headers, json.dumps(body).encode()), True)
        head, _, out = raw.partition(b"\r\n\r\n")
        return int(head.split(b" ")[1]), json.loads(out)
    call = {"jsonrpc": "2.0", "id": 1, "method": "agents", "params": {}}
    assert post(call)[0] == 401
    assert post(call, "guess")[0] == 401
    code, reply = post(call, "s3cret")
    assert code == 200 and [a["agent"] for a in reply["result"]["agents"]] == ["ap1"]
    code, reply = post(dict(call, method="device", params={"mac": LAPTOP}), "s3cret")
    assert reply["result"]["agent"] == "ap1"
    # the same validation as the agent's API; methods only an agent has are not here
    code, reply = post(dict(call, method="quarantine", params={"mac": "nope"}), "s3cret")
    assert reply["error"]["data"]["status_name"] == "INVALID_ARGUMENT"
    code, reply = post(dict(call, method="flows", params={}), "s3cret")
    assert reply["error"]["data"]["status_name"] == "METHOD_NOT_FOUND"
    # no broker connection here: an order says it could not be sent
    code, reply = post(dict(call, method="quarantine", params={"mac": LAPTOP}), "s3cret")
    assert reply["error"]["data"]["status_name"] == "NOT_FOUND" and "broker" in reply["error"]["message"]


BULB = "02:00:00:00:00:05"


def bulb_scans(det, n=120):
    """The bulb tries telnet on n internet addresses in one scan, none answer:
    what an agent's detector is fed flow by flow."""
    from spin_lite import detect
    for i in range(n):
        det.flow(BULB, "198.51.%d.%d" % (i // 200, i % 200 + 1), 23, b"tcp", 60, 0, 1, 0, True, True,
                 False, detect.PUBLIC)
    det.end_scan(1000.0, 5, {}, None)
    return det


def figures(agent, det, tmax=0, live=None):
    """What that agent publishes after det's last end_scan."""
    live = live or {}
    msg = mqttlink.figures_message(det, agent, tmax, lambda mac: live.get(mac, 0), 1000)
    return json.dumps(msg).encode()


def test_the_controllers_detector_orders_the_quarantine_to_the_access_point():
    from spin_lite import detect
    cfg = config.defaults()
    ap = bulb_scans(detect.Detector(dict(cfg, detect_mode="alert", detect_threshold=["outbound_scan.new=100000"])))
    assert ap.last == [] or all(v["rule"] != "outbound_scan" for v in ap.last)  # ap1 itself sees nothing
    c = home()
    sent = []
    c.publish_order = lambda agent, order: sent.append((agent, order))  # the broker's side: test_mqtt_ap_home.py
    c.message("spin/home/ap1/status", b'{"v":1,"agent":"ap1","state":"online","role":"ap"}', True)
    c.message("spin/home/router/status", b'{"v":1,"agent":"router","state":"online","role":"router"}', True)
    # the router behind ap1 sees the same flows: the larger view, not the sum
    c.message("spin/home/router/figures", figures("router", bulb_scans(detect.Detector(cfg))), False)
    c.message("spin/home/ap1/figures", figures("ap1", ap), False)
    assert c.malformed == 0
    c.close_scan()
    rules = [v["rule"] for v in c.verdicts]
    assert "outbound_scan" in rules
    fig = [v for v in c.detector.last if v["rule"] == "outbound_scan"][0]["figures"]
    assert fig["new"] == 120 and 100 <= fig["remotes"] <= 140  # max, not 240; HyperLogLog past 32
    assert [(a, o["method"], o["args"]["mac"]) for a, o in sent] == [("ap1", "quarantine", BULB)]
    assert "controller's detector, seen by ap1" in sent[0][1]["args"]["reason"]
    c.close_scan()  # still scanning in the short window: ordered once
    assert len(sent) == 1


def test_two_scans_of_one_agent_in_one_of_the_controllers_are_twice_the_time():
    from spin_lite import detect
    c = home()
    c.publish_order = lambda agent, order: None
    for _ in range(2):  # ap1 scans every 5 s, the controller missed a tick
        c.message("spin/home/ap1/figures", figures("ap1", bulb_scans(detect.Detector(config.defaults()))), False)
    c.close_scan()
    v = [v for v in c.detector.last if v["rule"] == "outbound_scan"][0]
    assert (v["window"], v["figures"]["new"]) == (10, 240)  # the sum, over 10 s: the agent's rate


def test_malformed_figures_change_nothing():
    from spin_lite import detect
    c = home()
    good = json.loads(figures("ap1", bulb_scans(detect.Detector(config.defaults()))))
    row = good["devices"][0]
    bad = [dict(row, c=[1] * 7), dict(row, c=[-1] + [0] * 7), dict(row, remotes={"hll": [99] * 128}),
           dict(row, remotes=list(range(40))), dict(row, ports=[["23", 1, 0]]), dict(row, mac="zz"),
           dict(row, ex_failed=[1])]
    bad = [dict(good, devices=[row, r]) for r in bad] + [dict(good, seconds=0), dict(good, seconds="5")]
    for msg in bad:
        c.message("spin/home/ap1/figures", json.dumps(msg).encode(), False)
    assert c.malformed == len(bad) and c.pending == {} and c.pending_seconds == {}
    c.close_scan()
    assert c.verdicts == []


def test_the_standalone_page_asks_the_controller_behind_the_token():
    import os
    from spin_lite import jsonrpc
    www = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "luci-app-spin", "htdocs")
    c = station()
    c.cfg.update(token="s3cret", www_dir=www)
    c.message("spin/home/ap1/digest", digest("ap1", 1, 600, [row(LAPTOP, 100, 1000)]), False)
    server = jsonrpc.Server()
    controller.routes(server, c.cfg)

    def request(method, path, body=b"", token=None):
        headers = {"authorization": "Bearer " + token} if token else {}
        raw = server.respond(c, (method, path, headers, body), True)
        head, _, out = raw.partition(b"\r\n\r\n")
        return int(head.split(b" ")[1]), out
    code, page = request("GET", "/spin/index.html")  # the page itself is public: it asks for the token
    assert code == 200 and page == open(os.path.join(www, "spin", "index.html"), "rb").read()
    ask = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "call",
                      "params": ["00000000000000000000000000000000", "spin", "devices", {}]}).encode()
    assert request("POST", "/ubus", ask)[0] == 401
    assert request("POST", "/ubus", ask, "guess")[0] == 401
    code, out = request("POST", "/ubus/spin.devices", ask, "s3cret")
    status, data = json.loads(out)["result"]
    assert code == 200 and status == 0 and [d["mac"] for d in data["devices"]] == [LAPTOP]
    assert data["devices"][0]["agent"] == "ap1"  # the controller's view, not an agent's
    listed = json.loads(request("POST", "/ubus", json.dumps(
        {"jsonrpc": "2.0", "id": 2, "method": "list", "params": ["spin"]}).encode(), "s3cret")[1])
    assert "agents" in listed["result"]["spin"] and "flows" not in listed["result"]["spin"]
    # a method only an agent has: the status ubus gives, nothing else
    gone = json.dumps({"jsonrpc": "2.0", "id": 3, "method": "call",
                       "params": ["0" * 32, "spin", "flows", {}]}).encode()
    assert json.loads(request("POST", "/ubus", gone, "s3cret")[1])["result"] == [3]


STATUS = b'{"v":1,"agent":"%s","state":"%s"}'


def test_one_controller_keeps_each_home_apart_and_asks_which_one_a_call_is_about():
    c = station(["+"])
    assert c.homes == {}  # '+': the homes come with their agents' statuses
    for h in ("smith", "jones"):
        c.message("spin/%s/router/status" % h, STATUS % (b"router", b"online"), True)
        c.message("spin/%s/router/digest" % h, digest("router", 1, 600, [row(LAPTOP, 100, 1000)]), False)
    c.message("spin/jones/router/digest", digest("router", 2, 660, [row(BULB, 1, 1)]), False)
    assert sorted(c.homes) == ["jones", "smith"]
    assert sorted(c.homes["smith"].devices) == [LAPTOP] and sorted(c.homes["jones"].devices) == [LAPTOP, BULB]
    from spin_lite import api
    status, _, message = api.call(c, "devices", {}, controller.METHODS)
    assert status == api.INVALID_ARGUMENT and "jones, smith" in message
    assert api.dispatch(c, "devices", {"home": "jones"}, controller.METHODS)["total"] == 2
    status, _, message = api.call(c, "device", {"home": "brown", "mac": LAPTOP}, controller.METHODS)
    assert status == api.NOT_FOUND and "brown" in message
    st = api.dispatch(c, "status", {}, controller.METHODS)
    assert st["homes"] == ["jones", "smith"] and (st["digests"], st["devices"]) == (3, 3)
    assert api.dispatch(c, "status", {"home": "smith"}, controller.METHODS)["devices"] == 1
    agents = api.dispatch(c, "agents", {}, controller.METHODS)
    assert [(a["home"], a["agent"]) for a in agents["agents"]] == [("jones", "router"), ("smith", "router")]
    # an order goes to the home it names, to that home's agent
    sent = []
    c.publish_order = lambda home, agent, order: sent.append((home, agent, order["method"]))
    api.dispatch(c, "quarantine", {"home": "smith", "mac": LAPTOP}, controller.METHODS)
    assert sent == [("smith", "router", "quarantine")]


def test_controllers_of_a_group_split_the_homes_whole_and_take_over_a_dead_ones():
    homes = ["h%d" % i for i in range(40)]
    group = [station(["+"], "nas", n) for n in ("c1", "c2", "c3")]
    for c in group:
        for other in group:
            if other is not c:
                c.message("spin-controllers/nas/" + other.id, b'{"v":1,"state":"online"}', True)
        c.settle()
        for h in homes:
            c.message("spin/%s/router/status" % h, STATUS % (b"router", b"online"), True)
    held = [set(c.homes) for c in group]
    assert sorted(h for s in held for h in s) == sorted(homes)  # each home in exactly one
    for junk in (b"{", b"[]", b"\xff"):  # not a member's word: changes nothing
        group[0].message("spin-controllers/nas/c2", junk, True)
    assert set(group[0].homes) == held[0] and "c2" in group[0].members
    assert all(len(s) >= 4 for s in held)  # and each controller has a share
    # c3 dies: its will empties its retained membership; the others take its homes, keep theirs
    for c in group[:2]:
        c.message("spin-controllers/nas/c3", b"", True)
    after = [set(c.homes) for c in group[:2]]
    assert after[0] | after[1] == set(homes) and not after[0] & after[1]
    assert after[0] >= held[0] and after[1] >= held[1]
    # a call for a home held elsewhere says where
    from spin_lite import api
    elsewhere = sorted(after[1])[0]
    status, _, message = api.call(group[0], "devices", {"home": elsewhere}, controller.METHODS)
    assert status == api.NOT_FOUND and "controller c2 holds it" in message


def test_a_controller_forgets_what_no_agent_has_named_for_a_day():
    import time
    c = station(["+"])
    c.message("spin/smith/router/status", STATUS % (b"router", b"online"), True)
    c.message("spin/smith/ap1/status", STATUS % (b"ap1", b"online"), True)
    c.message("spin/smith/router/digest", digest("router", 1, 600, [row(LAPTOP, 100, 1000)]), False)
    c.message("spin/gone/old/status", STATUS % (b"old", b"offline"), True)
    c.message("spin/smith/ap1/status", STATUS % (b"ap1", b"offline"), True)
    c.forget(time.time() + 3600)  # an hour on: all is kept
    assert sorted(c.homes) == ["gone", "smith"] and LAPTOP in c.homes["smith"].devices
    c.homes["smith"].devices[BULB] = controller.Device(BULB)  # named just now
    c.homes["smith"].devices[BULB].heard = time.time() + 24 * 3600
    c.forget(time.time() + 24 * 3600 + 60)  # controller_forget: 24 hours by default
    smith = c.homes["smith"]
    assert list(smith.devices) == [BULB]  # the laptop unnamed for a day: forgotten
    assert list(smith.agents) == ["router"]  # ap1 offline for a day: forgotten; the router is online
    assert "gone" not in c.homes and "gone" not in c.known  # a home whose agents are all gone


def test_a_controller_knows_a_bounded_number_of_homes_and_devices(monkeypatch):
    monkeypatch.setattr(controller, "HOMES_KEPT", 3)
    c = station(["+"])
    for i in range(5):
        c.message("spin/h%d/router/status" % i, STATUS % (b"router", b"online"), True)
    assert sorted(c.homes) == ["h0", "h1", "h2"] and c.homes_refused == 2
    assert "h4 left out" in c.status()["errors"]["homes"]
    h = c.homes["h0"]
    h.cfg = dict(h.cfg, max_devices=2)
    macs = ["02:00:00:00:01:%02x" % i for i in range(4)]
    for i, mac in enumerate(macs):
        h.message("spin/h0/router/digest", digest("router", i + 1, 600 + 60 * i, [row(mac, 1, 1)]), False)
    assert sorted(h.devices) == macs[2:]  # the longest unheard forgotten, as an agent's table does


def test_a_device_filling_ap1s_table_gets_the_table_hog_verdict_ap1_would_give():
    # the figures carry the agent's table size and the device's entries; the
    # router's view of the same device in its own, larger table is not added on
    from spin_lite import detect
    cfg = config.defaults()
    agent = detect.Detector(cfg)
    mine = agent.end_scan(1000.0, 5, {BULB: 3000}, 8192)  # idle this scan, but holding 3,000 slots
    c = home()
    sent = []
    c.publish_order = lambda agent, order: sent.append((agent, order))
    c.message("spin/home/ap1/status", b'{"v":1,"agent":"ap1","state":"online","role":"ap"}', True)
    for name, live, tmax in (("ap1", 3000, 8192), ("router", 3000, 65536)):
        row = dict(detect.scan_to_obj(agent.devices[BULB].prev), mac=BULB, live=live)
        c.message("spin/home/%s/figures" % name, json.dumps(
            {"v": mqttlink.FIGURES_SCHEMA, "agent": name, "t": 1000, "seconds": 5, "table_max": tmax, "devices": [row]}).encode(),
            False)
    assert c.malformed == 0
    c.close_scan()
    theirs = [v for v in c.detector.last if v["rule"] == "table_hog"]
    assert [(v["mac"], v["severity"], v["figures"], v["text"]) for v in theirs] == \
        [(v["mac"], v["severity"], v["figures"], v["text"]) for v in mine if v["rule"] == "table_hog"]
    assert theirs and theirs[0]["figures"]["table_max"] == 8192
    assert [(a, o["method"]) for a, o in sent] == [("ap1", "quarantine")]
    c.message("spin/home/ap1/figures", json.dumps(
        {"v": 1, "agent": "ap1", "t": 1000, "seconds": 5, "table_max": -1, "devices": []}).encode(), False)
    assert c.malformed == 1


# -- the same detector on both sides (issue 15 item 4) --------------------------------
#
# Per rule of detect.RULES: traffic one agent sees, scan by scan, that
# gives that rule's verdict on the agent. The agent's detector judges it;
# its figures go to a controller, which judges them: the same verdicts
# (rule, device, severity, words, examples) on the same scans, also when
# an AP and the router behind it both see the traffic, unless the rule is
# in controller.NOT_JUDGED (then the controller must indeed not give it:
# the entry would be stale).

PLUG = "02:00:00:00:00:06"


def new_flow(det, mac, remote, port, bo=60, bi=0, proto=b"tcp", answered=False, kind="public"):
    from spin_lite import detect
    det.flow(mac, remote, port, proto, bo, bi, 1, 1 if answered else 0, True, not answered, False,
             getattr(detect, kind.upper()))


def telnet_scan(det, n):
    for i in range(200):
        new_flow(det, BULB, "198.51.%d.%d" % (n, i + 1), 23)


def flood(det, n):
    for i in range(200):
        new_flow(det, BULB, "203.0.113.7", 443, bi=60, answered=True)


def udp_flood(det, n):
    det.flow(BULB, "203.0.113.8", 9999, b"udp", 3000 * 60, 0, 3000, 0, n == 1, True, False, "public")


def lan_sweep(det, n):
    for i in range(15):
        det.lan_attempt(BULB, "192.168.8.%d" % (15 * n + i + 10), 445, b"tcp")


def dns_bypass(det, n):
    for i in range(2):
        new_flow(det, BULB, "8.8.%d.8" % i, 53, bi=90, proto=b"udp", answered=True)


def slow_scan(det, n):
    if n % 4 == 0:  # 3 attempts a minute, none answered
        new_flow(det, BULB, "192.0.%d.%d" % (n // 200, n % 200 + 1), 23 if n % 8 else 2323)


def many_flows(det, n):  # 60 a scan, answered, to 10 remotes on many ports
    for i in range(60):
        new_flow(det, BULB, "203.0.113.%d" % (i % 10 + 1), 1000 + 60 * n + i, bi=60, answered=True)


def many_remotes(det, n):  # 20 new answered remotes a scan
    for i in range(20):
        new_flow(det, BULB, "203.0.%d.%d" % (n, i + 1), 443, bi=60, answered=True)


def unanswered(det, n):  # a few, to a few remotes, none answered
    for i in range(4):
        new_flow(det, BULB, "203.0.113.%d" % (i % 3 + 1), 443)


def upload_after_a_quarter_hour(det, n):
    # a quiet backup for 16 minutes, then 60 MB to an address never used
    new_flow(det, BULB, "203.0.113.5", 443, bi=60, answered=True)
    if n > 16 * 12:
        det.flow(BULB, "198.51.100.%d" % (n % 200), 443, b"tcp", 6000000, 6000, 4000, 100,
                 True, False, False, "public")


# rule -> (traffic per scan, scans, (live entries of BULB, table size))
SCENES = {
    "outbound_scan": (telnet_scan, 3, None),
    "one_remote_flood": (flood, 3, None),
    "udp_flood": (udp_flood, 3, None),
    "lan_scan": (lan_sweep, 3, None),
    "dns_bypass": (dns_bypass, 3, None),
    "table_hog": (lambda det, n: None, 2, (3000, 8192)),
    "slow_scan": (slow_scan, 240, None),
    "baseline_new_flows": (many_flows, 13, None),
    "baseline_remotes": (many_remotes, 13, None),
    "baseline_unanswered": (unanswered, 13, None),
    "baseline_new_endpoint_upload": (upload_after_a_quarter_hour, 16 * 12 + 13, None),
}


def judged(verdicts):
    return [(v["rule"], v["mac"], v["severity"], v["text"], v["examples"]) for v in verdicts]


def agent_and_controller(scene, scans, live, agents=("router",)):
    """The detectors of the agents that see the traffic (an AP and the
    router behind it see the same flows) and the controller's on their
    figures: per scan (the first agent's verdicts, the controller's)."""
    from spin_lite import detect
    cfg = config.defaults()
    dets = [detect.Detector(cfg) for _ in agents]
    c = home()
    c.publish_order = lambda agent, order: None
    n_live, tmax = live or (0, 0)
    out = []
    t = 1700000000.0
    for n in range(1, scans + 1):
        t += 5
        live = {BULB: n_live} if n_live else {}
        mine = []
        for agent, det in zip(agents, dets):
            scene(det, n)
            verdicts = det.end_scan(t, 5, live, tmax)
            mine = mine or [verdicts]
            msg = mqttlink.figures_message(det, agent, tmax, lambda mac: live.get(mac, 0), int(t))
            if msg is not None:
                c.message("spin/home/%s/figures" % agent, json.dumps(msg).encode(), False)
        assert c.malformed == 0, c.errors
        c.close_scan(now=t)
        out.append((judged(mine[0]), judged(c.detector.last)))
    return out


def test_every_rule_gives_the_same_verdict_on_the_agent_and_on_the_controller():
    from spin_lite import detect
    assert set(controller.NOT_JUDGED) <= set(detect.RULES), "NOT_JUDGED names a rule that is gone"
    for rule, why in controller.NOT_JUDGED.items():
        assert isinstance(why, str) and len(why) > 20, "NOT_JUDGED[%s]: say why" % rule
    missing = sorted(set(detect.RULES) - set(SCENES))
    assert not missing, "no traffic here for rule(s) %s: add a scene to SCENES" % ", ".join(missing)
    # one agent, and two that see the same flows (an AP, the router behind it)
    for rule, agents in [(r, a) for a in (("router",), ("ap1", "router")) for r in detect.RULES]:
        scene, scans, live = SCENES[rule]
        per_scan = agent_and_controller(scene, scans, live, agents)
        mine = [v for agent, _ in per_scan for v in agent if v[0] == rule]
        assert mine, "%s: its scene gives the agent no verdict" % rule
        if rule in controller.NOT_JUDGED:
            assert not [v for _, ctl in per_scan for v in ctl if v[0] == rule], \
                "%s is judged on the controller now: take it out of NOT_JUDGED" % rule
            continue
        for n, (agent, ctl) in enumerate(per_scan, 1):
            assert ctl == agent, "%s seen by %s, scan %d: agent %r, controller %r" % (rule, agents, n, agent, ctl)


def test_a_slow_scanner_that_roams_between_two_access_points_is_caught_by_the_controller():
    # 16 telnet attempts in 5 minutes, none answered: the first 8 through
    # ap1, the rest through ap2 (and, in the scan it roams, one through
    # each). Each AP saw fewer than slow_scan's 12; the controller's ring
    # adds up the scans of both
    from spin_lite import detect
    cfg = config.defaults()
    aps = {"ap1": detect.Detector(cfg), "ap2": detect.Detector(cfg)}
    c = home()
    c.publish_order = lambda agent, order: None
    for name in aps:
        c.message("spin/home/%s/status" % name, b'{"v":1,"state":"online","role":"ap"}', True)
    t, attempts, theirs = 1700000000.0, 0, []
    mine = {name: [] for name in aps}
    for n in range(1, 80):
        t += 5
        if n % 4 == 0 and attempts < 16:
            attempts += 1
            at = ["ap1", "ap2"] if attempts == 8 else ["ap1" if attempts < 8 else "ap2"]
            for name in at:  # the roaming scan: each AP saw one attempt of it
                new_flow(aps[name], BULB, "192.0.2.%d%s" % (attempts, name[-1]), 23)
        for name, det in aps.items():
            mine[name] += [v["rule"] for v in det.end_scan(t, 5, {}, 0)]
            msg = mqttlink.figures_message(det, name, 0, lambda mac: 0, int(t))
            if msg is not None:
                c.message("spin/home/%s/figures" % name, json.dumps(msg).encode(), False)
        c.close_scan(now=t)
        theirs += [v for v in c.detector.last if v["rule"] == "slow_scan"]
    assert c.malformed == 0
    assert "slow_scan" not in mine["ap1"] + mine["ap2"]
    assert aps["ap1"].devices[BULB].sums[detect.R_SCANNER_FAILED] == 8
    assert theirs and theirs[0]["severity"] == "alert"
    # the roaming scan: the larger count of the two views, the union of their remotes
    assert (theirs[-1]["figures"]["scanner_failed"], theirs[-1]["figures"]["scanner_remotes"]) == (16, 17)
    assert set(theirs[-1]["examples"]["ports"]) == {23}
    assert [v["agent"] for v in c.verdicts if v["rule"] == "slow_scan"][0] in aps


def test_an_older_agents_figures_are_taken_and_bad_new_ones_change_nothing():
    from spin_lite import detect
    c = home()
    c.publish_order = lambda agent, order: None
    det = bulb_scans(detect.Detector(config.defaults()))
    new = json.loads(figures("ap1", det))
    row = new["devices"][0]
    assert new["v"] == mqttlink.FIGURES_SCHEMA == 2 and len(row["c"]) == 9 and len(row["slow"]) == 32
    # schema 1: eight counters, no slow remotes, fewer examples
    old_row = dict((k, v) for k, v in row.items() if k not in ("slow", "ex_slow", "ex_slow_ports"))
    old_row["c"] = row["c"][:8]
    old = dict(new, v=1, devices=[old_row])
    c.message("spin/home/ap1/figures", json.dumps(old).encode(), False)
    assert c.malformed == 0, c.errors
    c.close_scan()
    assert "outbound_scan" in [v["rule"] for v in c.verdicts]
    bad = [dict(row, c=row["c"][:8]), dict(row, slow=list(range(33))), dict(row, slow=[True]),
           dict(row, slow=[-1]), dict(row, ex_upload=[7]), dict(row, lan_port_list=["445"]),
           dict(row, ex_dns=["8.8.8.8"] * 6), dict(row, ex_slow="198.51.0.1")]
    bad = [dict(new, devices=[r]) for r in bad] + [dict(new, v=3), dict(new, v=True),
                                                   dict(old, devices=[dict(old_row, c=row["c"])])]
    before = c.malformed
    for msg in bad:
        c.message("spin/home/ap1/figures", json.dumps(msg).encode(), False)
    assert c.malformed - before == len(bad) and c.pending == {} and c.pending_seconds == {}
