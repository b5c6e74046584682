"""Issue 2, told as a story: a home's devices as the agent sees them.

The camera streams to its cloud, the thermostat polls, the laptop browses
over IPv4 and IPv6, and then the bulb turns into a telnet scanner. The agent
in the router namespace reads the kernel's real conntrack table.
"""

import json
import os
import subprocess
import sys
import time

import pytest

from tests.world.home import Home, SRC, resolve

pytestmark = pytest.mark.netns

BUCKET = 20
MB = 1 << 20


@pytest.fixture(scope="module")
def home():
    # as on a router: the agent is up (and has turned byte accounting on)
    # before the devices start talking; the detector only alerts, so the
    # bulb's scan stays in the digests this story reads (the quarantine is
    # tests/test_reverse_firewall.py's)
    with Home(traffic=False, config={"bucket_seconds": BUCKET, "scan_interval": 1,
                                     "detect_mode": "alert"}) as h:
        h.start_agent()
        for name in h.devices:
            h.start_traffic(name)
        yield h


def spin_call(home, method, args=None):
    """`spin call` as a user types it (on the host: the socket is a file)."""
    argv = [sys.executable, "-m", "spin_lite", "call", "-c", home.agent_config, method]
    if args is not None:
        argv.append(json.dumps(args))
    p = subprocess.run(argv, capture_output=True, text=True, timeout=20,
                       env=dict(os.environ, PYTHONPATH=SRC))
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def device(home, name):
    mac = home.devices[name].mac
    for d in spin_call(home, "devices")["devices"]:
        if d["mac"] == mac:
            return d
    return None


def conns_so_far(home, mac):
    h = home.call("history", {"mac": mac, "minutes": 60})
    return sum(p["conns"] for p in h["points"]) + h["current"]["conns"]


def test_the_camera_is_listed_by_mac_and_hostname_with_its_upload(home):
    cam = home.devices["camera"]

    def uploaded_5mb():
        d = device(home, "camera")
        return d if d and d["bucket"]["bytes_out"] >= 5 * MB else None

    d = home.wait_for(uploaded_5mb, timeout=4 * BUCKET, what="5 MB from the camera in one bucket")
    assert d["mac"] == cam.mac
    assert d["hostname"] == "camera" and d["name"] == "camera"
    assert cam.ip4 in d["ips"]
    cloud = resolve("cloud.example-cam.com")[1]  # the wan addresses it streams to
    assert set(cloud) & set(r for r, _ in d["bucket"]["top"]), (cloud, d["bucket"]["top"])
    # the agent counted bytes the camera really sent, not more (IP and TCP
    # headers add ~4%; the camera writes its own count once a second)
    time.sleep(2.5)
    assert d["bucket"]["bytes_out"] <= cam.status()["bytes_out"] * 1.1


def test_the_thermostat_connections_equal_its_polls(home):
    mac = home.devices["thermostat"].mac
    therm = home.devices["thermostat"]

    def after_a_poll(last):
        home.wait_for(lambda: therm.status().get("polls", 0) > last, timeout=15,
                      what="a thermostat poll")
        time.sleep(1.6)  # one scan later: the agent has seen it, no new poll yet
        return therm.status()["polls"], conns_so_far(home, mac)

    p0, c0 = after_a_poll(therm.status().get("polls", 0))
    p1, c1 = p0, c0
    for _ in range(5):
        p1, c1 = after_a_poll(p1)
    assert p1 - p0 >= 5
    assert abs((c1 - c0) - (p1 - p0)) <= 1, (p0, p1, c0, c1)


def test_history_has_one_point_per_elapsed_bucket(home):
    mac = home.devices["camera"].mac
    first = home.call("history", {"mac": mac})
    home.wait_for(lambda: len(home.call("history", {"mac": mac})["points"]) >= len(first["points"]) + 2,
                  timeout=3 * BUCKET + 5, what="two more buckets")
    h = home.call("history", {"mac": mac})
    times = [p["t"] for p in h["points"]]
    assert h["bucket_seconds"] == BUCKET
    assert all(b - a == BUCKET for a, b in zip(times, times[1:])), times
    assert h["current"]["t"] - times[-1] == BUCKET
    status = home.call("status")
    assert len(times) == (h["current"]["t"] - times[0]) // BUCKET
    assert times[0] <= time.time() - status["uptime"] + BUCKET
    # the camera streamed through every closed bucket after the first
    assert all(p["bytes_out"] > MB for p in h["points"][1:]), [p["bytes_out"] for p in h["points"]]


def test_the_laptop_talks_over_ipv4_and_ipv6(home):
    mac = home.devices["laptop"].mac
    flows = home.wait_for(
        lambda: (lambda f: f if any(":" in x["remote"] for x in f) and
                 any(":" not in x["remote"] for x in f) else None)(
            home.call("flows", {"mac": mac})["flows"]),
        timeout=20, what="laptop flows on both families")
    v6 = [f for f in flows if ":" in f["remote"]]
    assert all(f["device_ip"].startswith("fd00:8:") for f in v6)
    assert all(f["mac"] == mac for f in flows)
    page = home.call("flows", {"mac": mac, "limit": 1})
    assert len(page["flows"]) == 1 and page["remaining"] == page["total"] - 1


def test_the_bulb_scans_and_shows_hundreds_of_unreplied_attempts(home):
    mac = home.devices["bulb"].mac
    home.scan("bulb", True)
    try:
        def scanning():
            h = home.call("history", {"mac": mac, "minutes": 5})
            buckets = h["points"][-2:] + [h["current"]]
            best = max(buckets, key=lambda b: b["unreplied"])
            return best if best["unreplied"] >= 300 and best["remotes"] >= 300 else None
        b = home.wait_for(scanning, timeout=2 * BUCKET + 5, what="the bulb's scan in its digest")
    finally:
        home.scan("bulb", False)
    assert b["ports"] <= 3  # telnet, and the bulb's usual UDP echo
    cam = home.call("device", {"mac": home.devices["camera"].mac})
    assert cam["bucket"]["unreplied"] < 10


def test_status_reports_counters_and_no_errors(home):
    s = home.call("status")
    assert s["acct"] is True and s["conntrack_has_counters"] is True
    assert s["errors"] == {}
    assert "192.168.8.0/24" in s["lan"] and "192.168.8.1" in s["router_ips"]
    assert s["devices"] >= 5


def test_spin_top_shows_the_devices_live(home):
    p = subprocess.run([sys.executable, "-m", "spin_lite", "top", "-c", home.agent_config, "-n", "1"],
                       capture_output=True, text=True, timeout=30, env=dict(os.environ, PYTHONPATH=SRC))
    assert p.returncode == 0, p.stderr
    screen = p.stdout
    assert "NAME" in screen and "OUT/s" in screen
    for name in ("camera", "speaker", "laptop", "bulb", "hallway-thermostat"):
        assert name in screen, screen
    # after the first column (a mark: Q, B, b, or blank)
    rows = [ln[3:] for ln in screen.splitlines() if ln[3:].startswith(("camera", "speaker", "laptop"))]
    assert rows[0].startswith("camera"), screen  # the busiest first
    assert "cloud.example-cam.com" in rows[0], screen  # its endpoint by the name it asked for


def test_a_reload_keeps_history_and_reads_the_new_config(home):
    mac = home.devices["camera"].mac
    before = home.call("history", {"mac": mac})
    home.write_agent_config(scan_interval=2, bucket_seconds=BUCKET, bogus_option="x")
    home.reload_agent()
    home.wait_for(lambda: home.call("status")["scan_interval"] == 2, timeout=10, what="the reload")
    after = home.call("history", {"mac": mac})
    assert after["points"][:len(before["points"])] == before["points"]
    assert any("bogus_option" in w for w in home.call("status")["warnings"])
    assert home.agent.poll() is None


def test_sigterm_stops_the_agent_cleanly(home):
    assert home.stop_agent() == 0
    assert not os.path.exists(home.rpc_socket)
    assert "agent stopped" in home.agent_log_tail()
