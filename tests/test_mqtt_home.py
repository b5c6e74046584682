"""Issue 15, told as stories: the router's agent on a real mosquitto.

The owner runs mosquitto with a password file and the ACL of README
"MQTT": each agent may write its own topics only, the controller reads
them all and writes orders. The router's agent publishes its status
(retained, with a last will), a digest for every closed bucket, and the
devices it sees; the broker restarts and not one digest is lost; an
order that is not JSON, has a field too many, names a bad MAC or a device
the agent does not see is answered and changes nothing; a rogue client
with the router's name and a wrong password, or none, is refused, and
another agent cannot give the router orders. The neighbours' homes share
the broker: two controllers of a group share the homes out whole, and
when one dies the other takes its homes over.
"""

import json
import os
import shutil
import sys
import time

import pytest

from tests.world import broker as brokers
from tests.world.home import SRC, Home

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(not brokers.available(), reason="mosquitto is not installed "
                                 "(tools/apt-packages.txt)")]

USERS = {"router": "router-secret", "ap1": "ap1-secret", "controller": "controller-secret"}
BULB = "02:00:00:00:00:05"
NOBODY = "02:00:00:00:00:99"
# the neighbours' homes on the same broker, each with an access point's agent (ap1)
OTHER_HOMES = ["smith", "jones", "brown", "lee", "patel", "kim"]


@pytest.fixture(scope="module")
def home():
    with Home(firewall="nft", devices=["camera", "laptop", "bulb"],
              config={"bucket_seconds": 2, "scan_interval": 1, "detect": 0,
                      "mqtt_broker": "127.0.0.1:1883", "mqtt_agent": "router",
                      "mqtt_username": "router", "mqtt_password": USERS["router"],
                      "mqtt_keepalive": 5}) as h:
        h.certs = brokers.make_certificates(h.path("certs"))
        h.broker = brokers.Broker(h, USERS, tls=h.certs, homes=OTHER_HOMES).start()
        # the controller's stand-in: a persistent session that counts digests
        h.digests_out = h.path("digests.txt")
        h.broker.subscriber("spin/home/+/digest", "controller", USERS["controller"],
                            "counter", h.digests_out)
        h.start_agent()
        h.wait_for(lambda: (h.call("status")["mqtt"] or {}).get("state") == "up", timeout=15,
                   what="the agent's MQTT connection")
        yield h


def mqtt_status(home):
    return home.call("status")["mqtt"]


def received_digests(home):
    out = []
    try:
        lines = open(home.digests_out, errors="replace").read().splitlines()
    except FileNotFoundError:
        return out
    for line in lines:
        topic, _, payload = line.partition(" ")
        if topic == "spin/home/router/digest":
            out.append(json.loads(payload))
    return out


def as_controller(home, *argv, **kw):
    return home.broker.client(*argv, user="controller", password=USERS["controller"], **kw)


def read_one(home, topic, timeout=5):
    """The next message on topic (or the retained one), as the controller."""
    p = as_controller(home, "mosquitto_sub", "-t", topic, "-C", "1", "-W", str(timeout),
                      timeout=timeout + 5)
    return json.loads(p.stdout) if p.stdout.strip() else None


def order(home, payload, ack_timeout=8):
    """Publish an order for the router as the controller; return its ack."""
    cid = "ack-%d" % time.monotonic_ns()
    out = home.path(cid + ".txt")
    p = home.popen("router", ["mosquitto_sub", "-h", "127.0.0.1", "-u", "controller",
                              "-P", USERS["controller"], "-i", cid, "-q", "1",
                              "-t", "spin/home/router/ack", "-C", "1", "-W", str(ack_timeout)],
                   label=cid, log=out)
    home.wait_for(lambda: "%s 1 spin/home/router/ack" % cid in home.broker.log_text(), timeout=5,
                  what="the ack reader's subscription")
    as_controller(home, "mosquitto_pub", "-t", "spin/home/router/cmd", "-q", "1", "-m", payload,
                  check=True)
    p.wait(ack_timeout + 5)
    text = open(out, errors="replace").read().strip()
    return json.loads(text) if text else None


def test_the_router_agent_publishes_its_status_digests_and_devices(home):
    status = read_one(home, "spin/home/router/status")
    assert status["state"] == "online" and status["agent"] == "router" and status["v"] == 1
    home.wait_for(lambda: len(received_digests(home)) >= 3, timeout=20, what="three digests")
    digests = received_digests(home)
    assert [d["seq"] for d in digests] == list(range(1, len(digests) + 1))
    assert all(d["v"] == 1 and d["bucket_seconds"] == 2 for d in digests)
    assert [d["t"] for d in digests] == sorted(d["t"] for d in digests)
    # one message a bucket for all devices, and the devices that moved are in it
    moved = set(b["mac"] for d in received_digests(home) for b in d["devices"])
    assert moved and moved <= set(dev.mac for dev in home.devices.values())


def test_a_broker_restart_loses_no_digest(home):
    before = mqtt_status(home)
    home.broker.stop()
    # the agent goes on scanning and keeps what it cannot send
    home.wait_for(lambda: mqtt_status(home)["queued"] >= 2, timeout=20,
                  what="two digests queued while the broker is away")
    assert home.call("status")["scans"] > 0
    home.broker.start()
    home.wait_for(lambda: mqtt_status(home)["connects"] > before["connects"], timeout=20,
                  what="the agent back on the broker")
    home.wait_for(lambda: mqtt_status(home)["queued"] == 0, timeout=20, what="the queue emptied")
    made = mqtt_status(home)["seq"]
    home.wait_for(lambda: {d["seq"] for d in received_digests(home)} >= set(range(1, made + 1)),
                  timeout=20, what="every digest at the controller")
    assert mqtt_status(home)["dropped"] == 0
    seqs = [d["seq"] for d in received_digests(home)]
    assert set(seqs) >= set(range(1, made + 1))  # each one at least once (QoS 1)


def test_malformed_orders_are_refused_and_change_nothing(home):
    blocks = home.call("blocks")
    bad = [("not json {", 2), (json.dumps({"id": "o1", "method": "quarantine",
                                           "args": {"mac": BULB}, "extra": 1}), 2),
           (json.dumps({"id": "o2", "method": "quarantine", "args": {"mac": "02:00:zz"}}), 2),
           (json.dumps({"id": "o3", "method": "quarantine", "args": {"mac": BULB, "x": 1}}), 2),
           (json.dumps({"id": "o4", "method": "name", "args": {"mac": BULB, "name": "x"}}), 3),
           (json.dumps({"id": "o5", "method": "quarantine", "args": {"mac": NOBODY}}), 4)]
    for payload, status in bad:
        ack = order(home, payload)
        assert ack is not None, payload
        assert ack["status"] == status, (payload, ack)
        assert ack["message"]
    assert home.call("blocks") == blocks
    assert mqtt_status(home)["orders_refused"] >= len(bad)
    # a good order is done once, however often it comes
    q = json.dumps({"id": "q-bulb-1", "method": "quarantine", "args": {"mac": BULB, "reason": "test"}})
    first = order(home, q)
    assert first["status"] == 0 and first["id"] == "q-bulb-1"
    again = order(home, q)
    assert again == first
    assert [b for b in home.call("blocks")["blocks"] if b.get("mac") == BULB and b.get("quarantine")] or \
        home.call("device", {"mac": BULB})["quarantine"]
    assert order(home, json.dumps({"id": "r-bulb-1", "method": "release",
                                   "args": {"mac": BULB}}))["status"] == 0
    assert home.call("device", {"mac": BULB})["quarantine"] is None


def test_rogue_clients_are_refused(home):
    orders = mqtt_status(home)["orders"]
    # the router's name with a wrong password, and no name at all
    wrong = home.broker.client("mosquitto_pub", "-t", "spin/home/router/status", "-m", "{}",
                               user="router", password="guess")
    assert wrong.returncode != 0 and "not authorised" in (wrong.stderr + wrong.stdout).lower()
    anon = home.broker.client("mosquitto_pub", "-t", "spin/home/router/status", "-m", "{}")
    assert anon.returncode != 0 and "not authorised" in (anon.stderr + anon.stdout).lower()
    # another agent, rightly logged in, cannot order the router nor speak for it
    home.broker.client("mosquitto_pub", "-t", "spin/home/router/cmd", "-q", "1", "-m",
                       json.dumps({"id": "rogue", "method": "quarantine", "args": {"mac": BULB}}),
                       user="ap1", password=USERS["ap1"], check=True)
    home.broker.client("mosquitto_pub", "-t", "spin/home/router/status", "-q", "1", "-r", "-m",
                       json.dumps({"state": "offline"}), user="ap1", password=USERS["ap1"], check=True)
    # a valid order after the rogue's reaches the agent: the rogue's never did
    assert order(home, json.dumps({"id": "after-rogue", "method": "release",
                                   "args": {"mac": BULB}}))["id"] == "after-rogue"
    assert mqtt_status(home)["orders"] == orders + 1
    assert home.call("device", {"mac": BULB})["quarantine"] is None
    assert read_one(home, "spin/home/router/status")["state"] == "online"


def start_controller(home, name="controller", extra="", argv=()):
    """`spin controller` in the router's namespace; its call(), and its process as .proc."""
    path = home.path(name + ".conf")
    sock = home.path(name + ".sock")
    with open(path, "w") as f:
        f.write("config spin 'main'\n\toption mqtt_broker '127.0.0.1:1883'\n"
                "\toption mqtt_username 'controller'\n\toption mqtt_password '%s'\n"
                "\toption rpc_socket '%s'\n\toption www_dir ''\n%s" % (USERS["controller"], sock, extra))
    proc = home.popen("router", [sys.executable, "-u", "-m", "spin_lite", "controller", "-c", path] + list(argv),
                      label=name, log=home.path(name + ".log"),
                      env={"PYTHONPATH": SRC, "PYTHONDONTWRITEBYTECODE": "1"})
    from spin_lite import jsonrpc

    def call(method, args=None):
        return jsonrpc.call(sock, method, args or {})
    home.wait_for(lambda: os.path.exists(sock), timeout=10, what="the controller's socket")
    call.proc = proc
    return call


def test_the_controller_merges_agents_and_orders_the_one_that_sees_the_device(home):
    ctl = start_controller(home)
    home.wait_for(lambda: [a for a in ctl("agents")["agents"]
                           if a["agent"] == "router" and a["state"] == "online" and a["digests"]],
                  timeout=20, what="the router's digests at the controller")
    laptop = home.devices["laptop"].mac
    # a bucket in which the laptop moved nothing names it alone, with no
    # point in its history: wait for one in which it did
    home.wait_for(lambda: laptop in [d["mac"] for d in ctl("devices")["devices"]]
                  and ctl("device", {"mac": laptop}).get("agent") == "router"
                  and ctl("history", {"mac": laptop})["points"],
                  timeout=40, what="the laptop's traffic through the router")
    # the laptop roams to an access point: ap1's agent reports it in a newer bucket
    t = max(p["t"] for p in ctl("history", {"mac": laptop})["points"]) + 60
    roamed = {"v": 1, "agent": "ap1", "started": 1, "seq": 1, "t": t, "bucket_seconds": 2,
              "devices": [{"mac": laptop, "bytes_out": 5000, "bytes_in": 90000, "packets_out": 40,
                           "packets_in": 70, "conns": 3, "unreplied": 0, "remotes": 2, "ports": 1,
                           "top": [["203.0.113.10", 95000]]}]}
    home.broker.client("mosquitto_pub", "-t", "spin/home/ap1/digest", "-q", "1", "-m",
                       json.dumps(roamed), user="ap1", password=USERS["ap1"], check=True)
    home.wait_for(lambda: ctl("device", {"mac": laptop})["agent"] == "ap1", timeout=10,
                  what="the laptop at ap1")
    devices = ctl("devices")["devices"]
    assert [d["mac"] for d in devices].count(laptop) == 1
    assert set(ctl("device", {"mac": laptop})["agents"]) == {"router", "ap1"}
    # an order through the controller goes to the agent that sees the bulb
    sent = ctl("quarantine", {"mac": BULB, "reason": "controller test"})
    assert sent["agent"] == "router"
    home.wait_for(lambda: home.call("device", {"mac": BULB})["quarantine"], timeout=10,
                  what="the bulb quarantined by the router's agent")
    home.wait_for(lambda: [o for o in ctl("blocks")["orders"] if o["id"] == sent["order"]
                           and o["ack"] and o["ack"]["status"] == 0], timeout=10,
                  what="the router's ack at the controller")
    ctl("release", {"mac": BULB})
    home.wait_for(lambda: home.call("device", {"mac": BULB})["quarantine"] is None, timeout=10,
                  what="the bulb released")
    unknown = ctl("agents")
    assert all(a["gaps"] == 0 for a in unknown["agents"] if a["agent"] == "router")


def neighbour_digest(home, name, seq, macs):
    """ap1 of a neighbour's home publishes a digest of its devices."""
    rows = [{"mac": m, "bytes_out": 100, "bytes_in": 1000, "packets_out": 1, "packets_in": 1, "conns": 1,
             "unreplied": 0, "remotes": 1, "ports": 1, "top": [["203.0.113.10", 1100]]} for m in macs]
    msg = {"v": 1, "agent": "ap1", "started": 7, "seq": seq, "t": int(time.time()) - 2, "bucket_seconds": 2,
           "devices": rows}
    home.broker.client("mosquitto_pub", "-t", "spin/%s/ap1/digest" % name, "-q", "1", "-m", json.dumps(msg),
                       user="ap1", password=USERS["ap1"], check=True)


def test_two_controllers_share_the_homes_whole_and_one_takes_over_when_the_other_dies(home):
    every = ["home"] + OTHER_HOMES
    devices = {}  # home -> the MACs its agents report
    for i, name in enumerate(OTHER_HOMES):
        home.broker.client("mosquitto_pub", "-t", "spin/%s/ap1/status" % name, "-q", "1", "-r", "-m",
                           json.dumps({"v": 1, "agent": "ap1", "state": "online", "role": "ap"}),
                           user="ap1", password=USERS["ap1"], check=True)
        devices[name] = ["02:00:00:%02x:00:%02x" % (i + 1, k) for k in range(1, i + 3)]
    extra = "\tlist controller_homes '+'\n\toption mqtt_keepalive '5'\n"
    ctls = [start_controller(home, n, extra, ["--share", "nas", "--id", n]) for n in ("c1", "c2")]

    def held():
        return [set(c("status")["homes"]) for c in ctls]

    def shared():
        """Each home held by exactly one of the two, both with a share, and
        each one's subscriptions answered by the broker."""
        now = held()
        return sorted(h for s in now for h in s) == sorted(every) and all(now) and \
            not any(c("status")["mqtt"]["subscribing"] for c in ctls)
    home.wait_for(shared, timeout=20, what="the homes shared out whole between the two controllers")
    for name in OTHER_HOMES:
        neighbour_digest(home, name, 1, devices[name])

    def views(c, names):
        return dict((n, sorted(d["mac"] for d in c("devices", {"home": n})["devices"])) for n in names)
    # a home's whole view in the one controller that holds it: every device its agent reported
    home.wait_for(lambda: all(views(c, s - {"home"}) == dict((n, sorted(devices[n])) for n in s - {"home"})
                              for c, s in zip(ctls, held())), timeout=20, what="each home's devices merged")
    assert sum(c("status")["devices"] for c in ctls) >= sum(len(v) for v in devices.values())
    # the controller holding the router's home dies without a word: its will says so,
    # the other takes its homes and merges their next digests
    dead = 0 if "home" in held()[0] else 1
    alive = ctls[1 - dead]
    ctls[dead].proc.kill()
    home.wait_for(lambda: set(alive("status")["homes"]) == set(every), timeout=30,
                  what="the survivor holding every home")
    for name in OTHER_HOMES:
        neighbour_digest(home, name, 2, devices[name])
    home.wait_for(lambda: views(alive, OTHER_HOMES) == dict((n, sorted(devices[n])) for n in OTHER_HOMES),
                  timeout=20, what="the survivor's views of every home")
    assert all(a["gaps"] == 0 for a in alive("agents")["agents"])
    # the router's agent still takes its orders, now from the survivor
    home.wait_for(lambda: BULB in [d["mac"] for d in alive("devices", {"home": "home"})["devices"]],
                  timeout=30, what="the router's bulb at the survivor")
    sent = alive("quarantine", {"home": "home", "mac": BULB, "reason": "takeover test"})
    assert sent["agent"] == "router"
    home.wait_for(lambda: home.call("device", {"mac": BULB})["quarantine"], timeout=10,
                  what="the bulb quarantined through the survivor")
    alive("release", {"home": "home", "mac": BULB})
    home.wait_for(lambda: home.call("device", {"mac": BULB})["quarantine"] is None, timeout=10,
                  what="the bulb released")
    # the dead one comes back: its session still holds its old homes'
    # subscriptions; it takes back what the hash gives it, the survivor
    # gives those up, and again no home is in two
    name = "c%d" % (dead + 1)
    os.unlink(home.path(name + ".sock"))
    ctls[dead] = start_controller(home, name, extra, ["--share", "nas", "--id", name])
    home.wait_for(shared, timeout=20, what="the homes shared out again")
    for name in OTHER_HOMES:
        neighbour_digest(home, name, 3, devices[name])
    home.wait_for(lambda: all(views(c, s - {"home"}) == dict((n, sorted(devices[n])) for n in s - {"home"})
                              for c, s in zip(ctls, held())), timeout=20, what="each home whole again")
    for c in ctls:
        c.proc.terminate()


def test_the_owner_turns_on_tls_and_a_broker_it_cannot_trust_is_refused(home):
    ca, _, _, cert, key = home.certs
    # a CA that did not sign the broker's certificate: no session, and why
    other = brokers.make_certificates(home.path("other-ca"))[0]
    home.write_agent_config(mqtt_broker="127.0.0.1:1884", mqtt_ca=other, mqtt_cert=cert, mqtt_key=key)
    home.reload_agent()
    home.wait_for(lambda: "certificate" in mqtt_status(home)["last_error"].lower(), timeout=15,
                  what="the untrusted broker refused")
    assert mqtt_status(home)["state"] != "up" and mqtt_status(home)["tls"]
    # the right CA but no client certificate: this broker wants one
    home.write_agent_config(mqtt_broker="127.0.0.1:1884", mqtt_ca=ca)
    home.reload_agent()
    home.wait_for(lambda: mqtt_status(home)["drops"] >= 1 and mqtt_status(home)["state"] != "up"
                  and mqtt_status(home)["connects"] == 0, timeout=15, what="a TLS session refused")
    queued = mqtt_status(home)["seq"]
    # CA and client certificate: up over TLS, and the digests made meanwhile reach the controller
    home.write_agent_config(mqtt_broker="127.0.0.1:1884", mqtt_ca=ca, mqtt_cert=cert, mqtt_key=key)
    home.reload_agent()
    home.wait_for(lambda: mqtt_status(home)["state"] == "up" and mqtt_status(home)["tls"],
                  timeout=15, what="the agent on the broker over TLS")
    home.wait_for(lambda: {d["seq"] for d in received_digests(home)} >= set(range(1, queued + 1)),
                  timeout=20, what="the digests made while TLS failed")


def test_the_broker_by_name_is_looked_up_without_stalling_the_scan(home):
    """The owner names the broker; the router's own resolver (a dnsmasq,
    as on OpenWrt) knows it. `ip netns exec` mounts /etc/netns/<ns>/ over
    /etc for what it starts: the agent's /etc/resolv.conf and /etc/hosts."""
    etc = "/etc/netns/%s" % home.ns("router")
    os.makedirs(etc, exist_ok=True)
    resolv = os.path.join(etc, "resolv.conf")
    try:
        with open(os.path.join(etc, "hosts"), "w") as f:
            f.write("127.0.0.1 localhost\n")
        with open(resolv, "w") as f:
            f.write("nameserver 127.0.0.53\n")
        home.popen("router", ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-hosts",
                              "--no-resolv", "--user=root", "--pid-file=" + home.path("names-dnsmasq.pid"),
                              "--listen-address=127.0.0.53", "--bind-interfaces", "--local-ttl=2",
                              "--host-record=mqtt.home.example,127.0.0.1", "--log-queries",
                              "--log-facility=" + home.path("names-dnsmasq.log")], label="names-dnsmasq")
        home.stop_agent()
        home.start_agent(mqtt_broker="mqtt.home.example:1883", mqtt_ca="", mqtt_cert="", mqtt_key="")
        home.wait_for(lambda: mqtt_status(home)["state"] == "up", timeout=20,
                      what="the agent on the broker it found by name")
        assert mqtt_status(home)["address"] == "127.0.0.1"
        assert "mqtt.home.example" in open(home.path("names-dnsmasq.log")).read()
        # the resolver goes dead (an address the internet drops): the agent
        # scans on, and says why it is not on the broker
        with open(resolv, "w") as f:  # in place: the agent's bind mount sees it
            f.write("nameserver 198.19.0.53\n")
        home.stop_agent()
        home.start_agent(mqtt_broker="mqtt.home.example:1883")
        home.wait_for(lambda: "cannot resolve mqtt.home.example" in mqtt_status(home)["last_error"],
                      timeout=20, what="the failed lookup said")
        assert "198.19.0.53: no answer" in mqtt_status(home)["last_error"]
        scans = home.call("status")["scans"]
        home.wait_for(lambda: home.call("status")["scans"] >= scans + 3, timeout=20,
                      what="scans while the name does not resolve")
        assert mqtt_status(home)["state"] != "up"
        # the resolver is back: the agent finds the broker on its next try
        with open(resolv, "w") as f:
            f.write("nameserver 127.0.0.53\n")
        home.wait_for(lambda: mqtt_status(home)["state"] == "up", timeout=60,
                      what="the agent on the broker once the name resolves")
    finally:
        shutil.rmtree(etc, ignore_errors=True)


def test_the_last_will_says_offline_when_the_agent_dies(home):
    home.kill_agent()
    home.wait_for(lambda: (read_one(home, "spin/home/router/status", timeout=2) or {})
                  .get("state") == "offline", timeout=20, what="the will")
    assert os.path.exists(home.broker.log)


@pytest.mark.skipif(not shutil.which("micropython"), reason="no micropython (tools/requirements-test.txt)")
def test_the_agent_on_micropython_publishes_and_takes_orders_too_and_over_tls():
    with Home(firewall="nft", devices=["camera", "bulb"], interpreter="micropython",
              config={"bucket_seconds": 2, "scan_interval": 1, "detect": 0,
                      "mqtt_broker": "127.0.0.1:1883", "mqtt_agent": "router",
                      "mqtt_username": "router", "mqtt_password": USERS["router"]}) as h:
        certs = brokers.make_certificates(h.path("certs"))
        ca, _, _, cert, key = certs
        h.broker = brokers.Broker(h, USERS, tls=certs).start()
        h.digests_out = h.path("digests.txt")
        h.broker.subscriber("spin/home/+/digest", "controller", USERS["controller"], "counter",
                            h.digests_out)
        h.start_agent()
        h.wait_for(lambda: len(received_digests(h)) >= 2, timeout=30, what="digests from MicroPython")
        ack = order(h, json.dumps({"id": "mpy-1", "method": "quarantine", "args": {"mac": BULB}}))
        assert ack["status"] == 0, ack
        assert h.call("device", {"mac": BULB})["quarantine"]
        assert order(h, '{"id": "mpy-2", "method": "quarantine", "args": {"mac": "zz"}}')["status"] == 2
        # the owner turns TLS on: MicroPython's mbedTLS (it reads DER only;
        # the agent hands it the PEM files decoded) checks the broker's
        # certificate and shows its own
        h.stop_agent()
        h.start_agent(mqtt_broker="127.0.0.1:1884", mqtt_ca=ca, mqtt_cert=cert, mqtt_key=key)
        h.wait_for(lambda: mqtt_status(h)["state"] == "up" and mqtt_status(h)["tls"], timeout=30,
                   what="the MicroPython agent on the broker over TLS")
        before = len(received_digests(h))
        h.wait_for(lambda: len(received_digests(h)) > before, timeout=30, what="a digest over TLS")
        assert order(h, json.dumps({"id": "mpy-3", "method": "release", "args": {"mac": BULB}}))["status"] == 0
        assert h.call("device", {"mac": BULB})["quarantine"] is None
        # a CA that did not sign the broker's certificate: no session, and why
        other = brokers.make_certificates(h.path("other-ca"))[0]
        h.stop_agent()
        h.start_agent(mqtt_broker="127.0.0.1:1884", mqtt_ca=other, mqtt_cert=cert, mqtt_key=key)
        h.wait_for(lambda: "verify" in mqtt_status(h)["last_error"].lower(), timeout=30,
                   what="the untrusted broker refused")
        assert mqtt_status(h)["connects"] == 0
