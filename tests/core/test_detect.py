"""The detector over recorded-like per-scan figures: attacks seen within the
scans the rules promise, benign look-alikes never quarantined, state that
does not grow with an attack. Runs under CPython and MicroPython (no
random module: a small LCG keeps every run the same)."""

import json

from spin_lite import detect, scans

BULB = "02:00:00:00:00:0b"
LAPTOP = "02:00:00:00:00:0c"
ROUTER_IPS = {"192.168.8.1"}
LAN_IPS = {"192.168.8.%d" % i: "02:00:00:00:01:%02x" % i for i in range(10, 40)}
T0 = 1700000000.0


class Lcg:
    def __init__(self, seed):
        self.x = seed

    def next(self, n):
        self.x = (self.x * 1103515245 + 12345) & 0x7FFFFFFF
        return (self.x >> 8) % n

    def public_ip(self):
        # like Mirai's get_random_ip: public space only
        while True:
            a = 1 + self.next(223)
            if a not in (10, 127, 172, 192, 100, 198):
                return "%d.%d.%d.%d" % (a, self.next(256), self.next(256), 1 + self.next(254))


class Home:
    """A detector driven scan by scan, as the agent drives it."""

    def __init__(self, cfg=None):
        self.det = detect.Detector(cfg or {})
        self.t = T0
        self.scans = 0

    def flow(self, mac, remote, port, proto=b"tcp", bo=60, bi=0, po=1, pi=0,
             new=True, unreplied=True, refused=False):
        kind = detect.classify(remote, ROUTER_IPS, LAN_IPS)
        self.det.flow(mac, remote, port, proto, bo, bi, po, pi, new, unreplied, refused, kind)

    def scan(self, live=None, table_max=16384, seconds=5):
        self.t += seconds
        self.scans += 1
        got = self.det.end_scan(self.t, seconds, live or {}, table_max)
        for v in got:  # every rule's words fill in from its own figures
            assert "%(" not in v["text"] and v["text"].startswith(("The device", "In the", "1", "2",
                                                                   "3", "4", "5", "6", "7", "8",
                                                                   "9", "0")), v["text"]
        return got


def rules_of(verdicts, mac=None, severity=None):
    return sorted(set(v["rule"] for v in verdicts
                      if (mac is None or v["mac"] == mac)
                      and (severity is None or v["severity"] == severity)))


def mirai_scan(home, rng, mac=BULB, per_scan=800, ports=None, answered=0, refused=False):
    """160 SYN/s to random public addresses; `ports` is a list of
    (port, tenths); `answered` of every 10 get a SYN-ACK."""
    ports = ports or [(23, 9), (2323, 1)]
    wheel = []
    for p, n in ports:
        wheel.extend([p] * n)
    for i in range(per_scan):
        ok = (i % 10) < answered
        home.flow(mac, rng.public_ip(), wheel[i % len(wheel)], bi=60 if ok else 0,
                  pi=1 if ok else 0, unreplied=not ok and not refused, refused=refused)


def caught_within(home, feed, rule, scans, severity="quarantine"):
    """The scan number (1-based) on which `rule` first holds, at most `scans`."""
    for n in range(1, scans + 1):
        feed()
        got = home.scan()
        if rule in rules_of(got, severity=severity):
            return n
    return None


def test_a_mirai_scanner_is_caught_within_two_scans():
    home, rng = Home(), Lcg(1)
    n = caught_within(home, lambda: mirai_scan(home, rng), "outbound_scan", 2)
    assert n == 1


def test_a_scanner_that_also_tries_web_ports_and_gets_answers_is_caught():
    home, rng = Home(), Lcg(2)
    ports = [(23, 6), (2323, 1), (80, 2), (8080, 1)]
    n = caught_within(home, lambda: mirai_scan(home, rng, ports=ports, answered=3),
                      "outbound_scan", 2)
    assert n is not None and n <= 2


def test_a_scanner_whose_targets_answer_with_a_reset_is_caught():
    home, rng = Home(), Lcg(3)
    n = caught_within(home, lambda: mirai_scan(home, rng, refused=True), "outbound_scan", 2)
    assert n is not None and n <= 2


def test_the_verdict_says_why_in_words_and_as_data():
    home, rng = Home(), Lcg(4)
    mirai_scan(home, rng)
    v = [v for v in home.scan() if v["rule"] == "outbound_scan"][0]
    assert set(v) == set(["mac", "rule", "layer", "severity", "text", "figures", "thresholds",
                          "window", "examples"])
    assert v["mac"] == BULB and v["layer"] == "A" and v["severity"] == "quarantine"
    assert v["figures"]["new"] == 800 and v["figures"]["failed_share"] == 1.0
    assert 700 <= v["figures"]["remotes"] <= 900  # a sketch: within its error
    assert v["thresholds"]["new"] == 50 and v["window"] == 5
    assert "800 new connections" in v["text"] and "port 23 (telnet)" in v["text"]
    assert "the device" in v["text"].lower() and "%(" not in v["text"]
    assert len(v["examples"]["remotes"]) == 5 and v["examples"]["ports"][0] == 23
    assert set(v["examples"]["ports"]) <= set([23, 2323])
    assert json.loads(json.dumps(v))["figures"] == v["figures"]  # plain data, all of it


def test_a_syn_flood_to_one_remote_is_caught_even_when_answered():
    home = Home()

    def flood():
        for _ in range(1000):
            home.flow(BULB, "203.0.113.7", 80, bi=60, pi=1, unreplied=False)
    assert caught_within(home, flood, "one_remote_flood", 2) is not None


def test_dns_water_torture_through_the_router_is_a_flood():
    home, rng = Home(), Lcg(5)

    def torture():
        for _ in range(500):
            home.flow(BULB, "192.168.8.1", 53, proto=b"udp", bi=120, pi=1, unreplied=False)
            rng.next(2)
    n = caught_within(home, torture, "one_remote_flood", 2)
    assert n is not None
    assert "outbound_scan" not in rules_of(home.det.last)


def test_a_udp_flood_is_caught():
    home = Home()

    def flood():
        for sport in range(4):
            home.flow(BULB, "198.51.100.9", 9999, proto=b"udp", bo=12000000, po=10000,
                      new=home.scans == 0)
    n = caught_within(home, flood, "udp_flood", 2)
    assert n is not None


def test_a_lan_sweep_and_a_vertical_scan_of_the_router_are_caught():
    home = Home()

    def sweep():  # 22 hosts on the bridge (lanvis), never in conntrack
        for i in range(22):
            home.det.lan_attempt(BULB, "192.168.8.%d" % (100 + i), 22, b"tcp")
    assert caught_within(home, sweep, "lan_scan", 2) == 1

    home = Home()
    ports = list(range(1, 1001))

    def vertical():
        for _ in range(500):
            home.flow(BULB, "192.168.8.1", ports.pop(), refused=True, unreplied=False)
    assert caught_within(home, vertical, "lan_scan", 2) == 1
    v = [v for v in home.det.last if v["rule"] == "lan_scan"][0]
    assert v["examples"]["remotes"] == ["192.168.8.1"]


def test_dns_past_the_router_repeated_is_an_alert_not_a_quarantine():
    home = Home()
    home.flow(BULB, "8.8.8.8", 53, proto=b"udp", bi=80, pi=1, unreplied=False)
    assert "dns_bypass" not in rules_of(home.scan())
    seen = []
    for _ in range(4):
        home.flow(BULB, "8.8.8.8", 53, proto=b"udp", bi=80, pi=1, unreplied=False)
        seen.extend(home.scan())
    v = [v for v in seen if v["rule"] == "dns_bypass"]
    assert v and all(x["severity"] == "alert" for x in v)
    assert v[0]["examples"]["remotes"] == ["8.8.8.8"] and "8.8.8.8" in v[0]["text"]
    assert rules_of(seen, severity="quarantine") == []


def test_a_device_holding_a_large_share_of_the_conntrack_table_is_caught():
    home = Home()
    home.flow(BULB, "203.0.113.1", 443, bi=100, pi=1, unreplied=False)
    assert rules_of(home.scan(live={BULB: 1000}, table_max=16384)) == []
    got = home.scan(live={BULB: 5000}, table_max=16384)
    assert rules_of(got, severity="quarantine") == ["table_hog"]
    v = got[0]
    assert v["figures"]["live"] == 5000 and "16,384" in v["text"]
    assert rules_of(home.scan(live={BULB: 5000}, table_max=None)) == []  # unknown size: no verdict


def test_a_slow_scanner_is_alerted_within_ten_minutes_and_not_quarantined():
    home, rng = Home(), Lcg(6)
    first = None
    quarantined = []
    for n in range(1, 241):  # 20 minutes of 5 s scans
        if n % 4 == 0:  # 3 attempts a minute
            home.flow(BULB, rng.public_ip(), 23 if n % 8 else 2323)
        got = home.scan()
        if first is None and "slow_scan" in rules_of(got, BULB):
            first = n
        quarantined.extend(rules_of(got, severity="quarantine"))
    assert first is not None and first * 5 <= 600
    assert quarantined == []
    v = [v for v in home.det.last if v["rule"] == "slow_scan"][0]
    assert v["severity"] == "alert" and v["window"] == 600
    assert set(v["examples"]["ports"]) <= set([23, 2323])


# -- benign look-alikes: an hour of them, at high intensity -------------------

P2P, TV, CONSOLE, BACKUP, PHONE, SPEAKER = ("02:00:00:00:00:%02x" % i for i in range(0x21, 0x27))


def benign_scan(home, rng, n):
    """One scan of six benign devices (n: the scan number)."""
    # P2P: new UDP peers on random ports, most never answer, a few transfer
    for i in range(40):
        ok = rng.next(10) < 2 if n % 7 else rng.next(10) < 1  # some scans: 90 % unanswered
        home.flow(P2P, rng.public_ip(), 1024 + rng.next(64000), proto=b"udp", bo=120,
                  bi=300 if ok else 0, po=1, pi=1 if ok else 0, unreplied=not ok)
    for i in range(6):
        home.flow(P2P, "203.0.113.%d" % (10 + i), 51413, proto=b"udp", bo=2000000, bi=3000000,
                  po=1500, pi=2200, new=False, unreplied=False)
    # discovery: multicast and broadcast, always "unreplied"
    for remote, port in (("239.255.255.250", 1900), ("224.0.0.251", 5353),
                         ("255.255.255.255", 67), ("192.168.8.255", 137), ("ff02::fb", 5353)):
        home.flow(TV, remote, port, proto=b"udp", bo=300, po=2)
    # video: big downloads from a CDN
    home.flow(TV, "198.51.100.80", 443, bo=40000, bi=12000000, po=400, pi=8000, new=n % 12 == 0,
              unreplied=False)
    # console: many UDP peers, all answered
    for i in range(30):
        home.flow(CONSOLE, "203.0.113.%d" % (100 + i), 3074, proto=b"udp", bo=9000, bi=9000,
                  po=60, pi=60, new=n % 60 == 0, unreplied=False)
    # backup: a big upload to the usual endpoint, every scan
    home.flow(BACKUP, "198.51.100.20", 443, bo=50000000, bi=200000, po=35000, pi=4000,
              new=n % 120 == 0, unreplied=False)
    # phone: a software update burst every 10 min (60 flows to 12 remotes on 443)
    if n % 120 == 5:
        for i in range(60):
            home.flow(PHONE, "192.0.2.%d" % (20 + i % 12), 443, bo=2000, bi=800000, po=20,
                      pi=600, unreplied=False)
    # speaker: a reboot storm every 20 min: DNS, NTP, clouds, all answered
    if n % 240 == 17:
        for i in range(30):
            home.flow(SPEAKER, "192.168.8.1", 53, proto=b"udp", bo=70, bi=140, pi=1,
                      unreplied=False)
        for i in range(40):
            home.flow(SPEAKER, "192.0.2.%d" % (100 + i % 30), (443, 80, 8883)[i % 3], bo=900,
                      bi=5000, pi=8, unreplied=False)
        home.flow(SPEAKER, "162.159.200.1", 123, proto=b"udp", bo=76, bi=76, pi=1,
                  unreplied=False)


def test_an_hour_of_benign_look_alikes_quarantines_nothing():
    home, rng = Home(), Lcg(7)
    quarantines = []
    alerts = {}
    for n in range(720):
        benign_scan(home, rng, n)
        for v in home.scan(live={P2P: 1200, CONSOLE: 40, BACKUP: 2}):
            if v["severity"] == "quarantine":
                quarantines.append((n, v["mac"], v["rule"]))
            else:
                alerts[(v["mac"], v["rule"])] = alerts.get((v["mac"], v["rule"]), 0) + 1
    assert quarantines == []
    # Layer A alerts too stay quiet; Layer B notices the P2P client in the
    # quarter hour it learns against the default, then no more; the usual
    # backup endpoint is never "new"
    assert [k for k in alerts if detect.RULES[k[1]]["layer"] == "A"] == []
    assert [k for k in alerts if k[0] != P2P] == []
    assert max(alerts.values()) <= detect.LEARN_MINUTES


def test_a_scanner_next_to_benign_devices_is_still_caught():
    home, rng = Home(), Lcg(8)
    for n in range(24):
        benign_scan(home, rng, n)
        home.scan()
    benign_scan(home, rng, 24)
    mirai_scan(home, rng, per_scan=200)  # a slower bot: 40 SYN/s
    got = home.scan()
    assert rules_of(got, severity="quarantine") == ["outbound_scan"]
    assert [v["mac"] for v in got if v["severity"] == "quarantine"] == [BULB]


# -- Layer B ----------------------------------------------------------------

def test_layer_b_learns_a_device_and_alerts_on_an_upload_to_a_new_endpoint():
    home = Home()
    for n in range(12 * 90):  # an hour and a half of a camera uploading to its cloud
        home.flow(BULB, "198.51.100.5", 443, bo=300000, bi=3000, po=250, pi=50,
                  new=n % 12 == 0, unreplied=False)
        assert rules_of(home.scan()) == []
    got = []
    for n in range(12):  # then a minute of 80 MB to an address it never used
        home.flow(BULB, "198.51.100.5", 443, bo=300000, bi=3000, po=250, pi=50, new=False,
                  unreplied=False)
        home.flow(BULB, "203.0.113.66", 443, bo=7000000, bi=20000, po=5000, pi=300,
                  new=n == 0, unreplied=False)
        got.extend(home.scan())
    v = [v for v in got if v["rule"] == "baseline_new_endpoint_upload"]
    assert len(v) == 1 and v[0]["layer"] == "B" and v[0]["severity"] == "alert"
    assert v[0]["examples"]["remotes"] == ["203.0.113.66"]
    assert v[0]["figures"]["value"] >= 80000000


def test_layer_b_quarantines_only_at_a_large_multiple_or_with_a_layer_a_sign():
    home, rng = Home(), Lcg(9)
    for n in range(12 * 70):  # a quiet plug: one new flow a minute
        home.flow(BULB, "198.51.100.5", 443, bo=500, bi=500, new=n % 12 == 0, unreplied=False)
        home.scan()
    got = []
    for n in range(12):  # 700 answered new flows a minute to 100 cloud addresses: only odd
        for i in range(58):
            home.flow(BULB, "192.0.2.%d" % (1 + rng.next(100)), 443, bi=500, pi=2,
                      unreplied=False)
        got.extend(home.scan())
    assert rules_of(got) == ["baseline_new_flows"]
    assert rules_of(got, severity="quarantine") == []
    got = []
    for n in range(12):  # more of it (the baseline moved), with a slow telnet scan beside it
        for i in range(150):
            home.flow(BULB, "192.0.2.%d" % (1 + rng.next(100)), 443, bi=500, pi=2,
                      unreplied=False)
        if n % 3 == 0:
            for i in range(4):
                home.flow(BULB, rng.public_ip(), 23)
        got.extend(home.scan())
    assert rules_of(got, severity="quarantine") == ["baseline_new_flows"]
    assert "slow_scan" in rules_of(got, severity="alert")
    got = []
    for n in range(12):  # 50 times its usual: quarantined without a sign
        for i in range(4000):
            home.flow(BULB, "192.0.2.%d" % (1 + rng.next(200)), 443, bi=500, pi=2,
                      unreplied=False)
        got.extend(home.scan())
    q = [v for v in got if v["severity"] == "quarantine"]
    assert "baseline_new_flows" in rules_of(q)


# -- memory, configuration, classification ----------------------------------

def test_state_does_not_grow_with_an_attack_of_100000_remotes():
    home, rng = Home(), Lcg(10)
    sizes = []
    for n in range(100):
        for i in range(1000):
            home.flow(BULB, rng.public_ip(), 23 + (i % 3) * 1000, unreplied=i % 5 != 0,
                      bi=60 if i % 5 == 0 else 0)
        home.det.lan_attempt(BULB, "10.9.%d.%d" % (n, n), n, b"tcp")
        home.scan()
        sizes.append(home.det.nbytes())
    # once Layer B has its arrays (the first minute) and the known remotes
    # both generations (made as remotes are learnt: the third minute) the
    # state keeps its size, and it stays a few KB whatever the attack adds
    assert max(sizes[36:]) <= max(sizes[:36]), (max(sizes[:36]), max(sizes[36:]))
    assert max(sizes) < 16000, max(sizes)


def test_thresholds_come_from_the_configuration_and_bad_ones_are_named():
    over, warnings = detect.parse_thresholds(
        ["outbound_scan.new=5000", "nosuch.x=1", "lan_scan.speed=3", "udp_flood.udp_out=lots",
         "table_hog"])
    assert over == {"outbound_scan": {"new": 5000}}
    assert len(warnings) == 4
    assert "nosuch" in warnings[0] and "speed" in warnings[1] and "lots" in warnings[2]
    assert "table_hog" in warnings[3]
    home, rng = Home({"detect_threshold": ["outbound_scan.new=5000", "nosuch.x=1"]}), Lcg(12)
    assert len(home.det.warnings) == 1
    mirai_scan(home, rng)
    assert "outbound_scan" not in rules_of(home.scan())
    home.det.configure({"detect_threshold": []})  # reload: defaults again, state kept
    mirai_scan(home, rng)
    assert "outbound_scan" in rules_of(home.scan())


def test_addresses_are_classified_for_the_rules():
    c = detect.classify
    assert c("192.168.8.1", ROUTER_IPS, LAN_IPS) == detect.ROUTER
    assert c("192.168.8.12", ROUTER_IPS, LAN_IPS) == detect.LAN
    for m in ("239.255.255.250", "224.0.0.251", "255.255.255.255", "192.168.8.255", "ff02::1"):
        assert c(m, ROUTER_IPS, LAN_IPS) == detect.MULTICAST, m
    for p in ("8.8.8.8", "10.20.0.5", "2001:db8::1", "100.64.1.1"):
        assert c(p, ROUTER_IPS, LAN_IPS) == detect.PUBLIC, p


def test_a_forgotten_device_leaves_no_state():
    home, rng = Home(), Lcg(11)
    mirai_scan(home, rng, per_scan=100)
    home.scan()
    assert home.det.status()["devices"] == 1
    home.det.forget(BULB)
    assert home.det.status()["devices"] == 0 and home.det.nbytes() < 1000


def test_every_rule_reads_figures_its_window_has():
    for name, rule in detect.RULES.items():
        assert rule["layer"] in ("A", "B"), name
        assert rule["severity"] in ("quarantine", "alert"), name
        assert rule["test"] in detect.PREDICATES, name
        assert rule["examples"] in detect.EXAMPLE_SOURCES, name
        for t in rule["per_10s"]:
            assert t in rule["thresholds"], name
        if rule["layer"] == "B":
            assert rule["severity"] == "alert", name


def test_a_scan_sent_as_figures_gives_a_controllers_detector_the_same_short_verdicts():
    # issue 15: the agent publishes each closed scan (detect.scan_to_obj);
    # a controller rebuilds it and runs its own detector on it
    agent, rng = Home(), Lcg(7)
    ctl = detect.Detector({})
    short = [n for n in detect.RULES if detect.RULES[n]["window"] == detect.SHORT]
    seen = {}
    for n in range(3):
        mirai_scan(agent, rng, per_scan=300 if n else 20)  # past EXACT: HyperLogLog goes too
        for i in range(6000 if n == 2 else 10):
            agent.flow(LAPTOP, "198.51.100.9", 9999, proto=b"udp", bo=1200, po=1, new=i == 0)
        for i in range(25):
            agent.flow(LAPTOP, "192.168.8.%d" % (10 + i), 445, refused=True, unreplied=False)
        mine, theirs = judged_on_both(agent, ctl)
        for got, who in ((mine, "agent"), (theirs, "controller")):
            seen[who] = sorted((v["mac"], v["rule"], sorted(v["figures"].items()))
                               for v in got if v["rule"] in short)
        assert seen["agent"] == seen["controller"], n
    assert set(r for _, r, _ in seen["agent"]) == {"outbound_scan", "udp_flood", "lan_scan"}


def judged_on_both(agent, ctl):
    """One scan's verdicts on the agent, and on a controller fed the
    scan's figures through JSON as MQTT carries them."""
    mine = agent.scan(table_max=0)
    for mac, d in agent.det.devices.items():
        obj = json.loads(json.dumps(detect.scan_to_obj(d.prev)))
        scans.feed(ctl, mac, scans.from_obj(obj))
    return mine, ctl.end_scan(agent.t, 5, {}, 0)


def test_a_scan_sent_as_figures_carries_the_slow_scanners_attempts_and_the_examples():
    # figures v2: the failed scanner-port attempts (count, first EXACT
    # remotes) and the long window's examples travel with the scan, and
    # _ring_add puts them in the ring on both sides alike
    agent, rng = Home(), Lcg(8)
    ctl = detect.Detector({})
    first = {}
    for n in range(1, 121):
        if n % 4 == 0:
            agent.flow(BULB, rng.public_ip(), 23 if n % 8 else 2323)
        if n == 2:
            for i in range(40):  # past EXACT in one scan: the slot's cap, on both
                agent.flow(BULB, rng.public_ip(), 2323)
            for i in range(3):
                agent.flow(LAPTOP, "8.8.%d.8" % i, 53, proto=b"udp", bi=90, pi=1, unreplied=False)
        mine, theirs = judged_on_both(agent, ctl)
        for got, who in ((mine, "agent"), (theirs, "controller")):
            for v in got:
                if v["rule"] in ("slow_scan", "dns_bypass") and v["rule"] + who not in first:
                    first[v["rule"] + who] = (n, v["figures"], v["examples"], v["text"])
        for mac in agent.det.devices:
            a, c = agent.det.devices[mac], ctl.devices[mac]
            assert (list(a.ring or ()), a.sums, a.ex_slow, a.ex_dns) == (list(c.ring), c.sums, c.ex_slow, c.ex_dns), n
    assert first["slow_scanagent"] == first["slow_scancontroller"]
    n, fig, _, _ = first["slow_scanagent"]
    assert n == 2 and fig["scanner_failed"] == 40 and fig["scanner_remotes"] == detect.EXACT  # the slot's cap
    assert first["dns_bypassagent"] == first["dns_bypasscontroller"]


def test_a_quiet_device_holds_no_ring_or_known_remotes_and_judges_the_same_once_busy():
    # the ring and the three Bloom filters are made at first use: 1.3 KB a
    # device that most devices never need; made earlier (all zeros, as they
    # were always made before) they must give the very same verdicts
    lazy, eager = Home(), Home()
    for home in (lazy, eager):
        home.flow(BULB, "192.168.8.20", 8009, new=False, unreplied=False)  # LAN chatter only
        home.scan()
    d = lazy.det.devices[BULB]
    assert (d.ring, d.known, d.old, d.fresh) == (None, None, None, None)
    e = eager.det.devices[BULB]
    e.ring = detect._ring()
    e.known, e.old, e.fresh = (bytearray(detect.BLOOM_BYTES) for _ in range(3))
    for home in (lazy, eager):
        rng = Lcg(12)
        got = []
        for n in range(12 * 25):  # a camera learning its clouds, then a slow scan, then quiet
            home.flow(BULB, "198.51.100.%d" % (n % 40), 443, bo=300000, bi=3000, po=250, pi=50,
                      new=n % 3 == 0, unreplied=False)
            if 12 * 18 <= n < 12 * 19:
                home.flow(BULB, rng.public_ip(), 23)
            if n % 12 == 5:
                home.flow(BULB, "8.8.8.8", 53, proto=b"udp", po=1, pi=1, unreplied=False)
            if n == 12 * 20:
                home.flow(BULB, "203.0.113.66", 443, bo=90000000, bi=20000, new=True, unreplied=False)
            got.append(home.scan())
        home.got = got
    assert lazy.got == eager.got
    assert rules_of(sum(lazy.got, [])) == ["baseline_new_endpoint_upload", "dns_bypass", "slow_scan"]
    assert d.known is not None and d.ring is not None
    for _ in range(12 * 11):  # ten quiet minutes: the ring is all zeros and goes
        lazy.scan()
    assert d.ring is None
