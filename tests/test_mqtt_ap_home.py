"""Issue 15 item 5, told as a story: an access point's agent.

The laptop and the bulb sit behind a bridged access point (ap1: no
routing, no NAT, no conntrack of its clients), the camera on the router.
ap1's agent counts its clients on its bridge (nft table bridge spinap)
and publishes digests like the router's agent; the controller shows the
laptop as one device that both agents see, the camera as the router's
alone. The laptop walks over to ap2 and stays one device with one
timeline. The bulb starts scanning: the controller orders its quarantine
to ap1, which drops its frames on its bridge.
"""

import json
import os
import sys

import pytest

from tests.world import broker as brokers
from tests.world.ap import AccessPoint
from tests.world.home import SRC, Home

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(not brokers.available(), reason="mosquitto is not installed")]

USERS = {"router": "router-pw", "ap1": "ap1-pw", "ap2": "ap2-pw", "controller": "controller-pw"}


def digests_of(path, agent):
    out = []
    if os.path.exists(path):
        for line in open(path, errors="replace").read().splitlines():
            topic, _, payload = line.partition(" ")
            if topic == "spin/home/%s/digest" % agent:
                out.append(json.loads(payload))
    return out


def test_an_access_point_reports_its_clients_from_its_bridge():
    mqtt = {"mqtt_broker": "192.168.8.1:1883", "mqtt_keepalive": 10}
    with Home(firewall="nft", devices=["camera", "laptop", "bulb"],
              config=dict(mqtt, bucket_seconds=2, detect=0, mqtt_agent="router",
                          mqtt_username="router", mqtt_password=USERS["router"])) as home:
        ap = AccessPoint(home, "ap1", ["laptop", "bulb"]).up()
        ap2 = AccessPoint(home, "ap2", []).up()
        broker = brokers.Broker(home, USERS).start()
        seen = home.path("digests.txt")
        broker.subscriber("spin/home/+/digest", "controller", USERS["controller"], "counter", seen)
        home.start_agent()
        # the AP's detector only alerts, and never on a scan: it publishes
        # what it counts, the controller's detector decides and orders the AP
        ap.start_agent(bucket_seconds=2, detect=1, detect_mode="alert", firewall="nft",
                       detect_threshold="outbound_scan.new=100000",
                       mqtt_username="ap1", mqtt_password=USERS["ap1"], **mqtt)
        laptop, camera = home.devices["laptop"].mac, home.devices["camera"].mac

        def ap_saw_laptop():
            # a 2 s bucket may hold only the middle of a flow, or only its
            # start: the laptop's buckets together show both
            rows = [b for d in digests_of(seen, "ap1") for b in d["devices"] if b["mac"] == laptop]
            total = {k: sum(b.get(k, 0) for b in rows) for k in ("bytes_in", "conns", "packets_out")}
            return total if all(total.values()) else None
        home.wait_for(ap_saw_laptop, timeout=60, what="the laptop's connections and traffic in ap1's digests")
        assert all(b["mac"] != camera for d in digests_of(seen, "ap1") for b in d["devices"])
        status = ap.call("status")
        assert status["bridge"]["state"] == "on" and status["bridge"]["reads"] > 0
        assert ap.call("device", {"mac": laptop})["ips"] == [home.devices["laptop"].ip4]
        # the controller: one laptop, seen by both agents; the camera by the router alone
        conf = home.path("controller.conf")
        sock = home.path("controller.sock")
        with open(conf, "w") as f:
            f.write("config spin 'main'\n\toption mqtt_broker '127.0.0.1:1883'\n"
                    "\toption mqtt_password '%s'\n\toption rpc_socket '%s'\n\toption www_dir ''\n"
                    "\toption scan_interval '1'\n"
                    % (USERS["controller"], sock))
        home.popen("router", [sys.executable, "-u", "-m", "spin_lite", "controller", "-c", conf],
                   label="controller", log=home.path("controller.log"),
                   env={"PYTHONPATH": SRC, "PYTHONDONTWRITEBYTECODE": "1"})
        from spin_lite import jsonrpc

        def both():
            if not os.path.exists(sock):
                return False
            macs = [d["mac"] for d in jsonrpc.call(sock, "devices")["devices"]]
            if laptop not in macs or camera not in macs:
                return False
            return set(jsonrpc.call(sock, "device", {"mac": laptop})["agents"]) == {"router", "ap1"}
        home.wait_for(both, timeout=30, what="the laptop through both agents at the controller")
        macs = [d["mac"] for d in jsonrpc.call(sock, "devices")["devices"]]
        assert macs.count(laptop) == 1
        assert set(jsonrpc.call(sock, "device", {"mac": camera})["agents"]) == {"router"}
        assert jsonrpc.call(sock, "device", {"mac": laptop})["agent"] == "ap1"  # the nearer one

        # the laptop walks to the other access point: still one device, now ap2's
        ap2.start_agent(bucket_seconds=2, detect=0, mqtt_username="ap2", mqtt_password=USERS["ap2"], **mqtt)
        ap.move("laptop", ap2)
        home.wait_for(lambda: jsonrpc.call(sock, "device", {"mac": laptop})["agent"] == "ap2", timeout=30,
                      what="the laptop at ap2")
        assert [d["mac"] for d in jsonrpc.call(sock, "devices")["devices"]].count(laptop) == 1
        assert {"ap1", "ap2", "router"} <= set(jsonrpc.call(sock, "device", {"mac": laptop})["agents"])
        times = [p["t"] for p in jsonrpc.call(sock, "history", {"mac": laptop, "minutes": 60})["points"]]
        assert times == sorted(set(times))  # one timeline, one point a bucket

        # the bulb behind the AP turns into a telnet scanner: ap1 sees it on its
        # bridge and publishes its figures, the controller's detector finds the
        # scan and orders the quarantine, ap1 cuts it off there
        bulb = home.devices["bulb"].mac
        home.scan("bulb")
        def quarantined_on_ap():
            try:
                return ap.call("device", {"mac": bulb})["quarantine"]
            except jsonrpc.RemoteError:  # not seen on the bridge yet
                return None
        q = home.wait_for(quarantined_on_ap, timeout=30,
                          what="the bulb quarantined on ap1 by the controller's order")
        assert "controller's detector, seen by ap1" in json.dumps(q)
        found = jsonrpc.call(sock, "status")["detect"]["verdicts"]
        assert {"mac": bulb, "rule": "outbound_scan", "agent": "ap1"} in [
            {k: v[k] for k in ("mac", "rule", "agent")} for v in found]
        home.wait_for(lambda: [o for o in jsonrpc.call(sock, "blocks")["orders"]
                               if o["agent"] == "ap1" and o["method"] == "quarantine"
                               and (o["ack"] or {}).get("status") == 0], timeout=10,
                      what="ap1's ack at the controller")

        def dropped():
            out = json.loads(home.sh("ap1", "nft", "-j", "list", "set", "bridge", "spin", "q_mac"))
            return sum(e["elem"]["counter"]["packets"] for item in out["nftables"] if "set" in item
                       for e in item["set"].get("elem", []) if isinstance(e, dict) and "elem" in e)
        home.wait_for(lambda: dropped() > 0, timeout=10, what="the bulb's frames dropped on ap1's bridge")
        assert home.call("device", {"mac": bulb})["quarantine"] is None  # the router was not asked
