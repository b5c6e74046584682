"""The block store on its own: the owner's decisions, their ids, their
expiry and their file, with the real Agent object (not started: no scans)
and a firewall backend that records what it was asked to load. What the
kernel does with it is told in test_firewall_home.py.
"""

import json
import os

import pytest

from spin_lite import agent as agent_mod
from spin_lite import api, blocks, config, devices, firewall, plat

CAMERA, LAPTOP, BULB = "02:00:00:00:00:01", "02:00:00:00:00:04", "02:00:00:00:00:05"
ROUTER = "192.168.8.1"


class Recorder(firewall.Off):
    """A backend that keeps every state it was asked to apply."""
    name = "recorder"

    def __init__(self, cfg=None):
        self.loaded = []
        self.fail = None

    def apply(self, state):
        if self.fail:
            return self.fail
        self.loaded.append(json.loads(json.dumps(state)))
        return None


def make_agent(tmp_path, backend=None):
    cfg = config.defaults()
    cfg.update(state_dir=str(tmp_path / "state"), run_dir=str(tmp_path / "run"), firewall="none")
    a = agent_mod.Agent(cfg)
    a.router_ips = {ROUTER, "fd00:8::1", "192.0.2.2"}
    for mac, ips in ((CAMERA, {"192.168.8.101", "fd00:8::ff:fe00:1"}), (LAPTOP, {"192.168.8.104"}),
                     (BULB, {"192.168.8.105"})):
        d = a.devices.table[mac] = devices.Device(mac, 0)
        d.ips = set(ips)
        d.hostname = {CAMERA: "camera", LAPTOP: "laptop", BULB: "bulb"}[mac]
    a.emitted = []
    a.listeners.append(lambda name, data: a.emitted.append((name, data)))
    part = blocks.Blocks(cfg, backend or Recorder())
    a.parts.append(part)
    part.start(a)
    return a, part


def call(a, method, args):
    return api.dispatch(a, method, args)


def status_of(a, method, args):
    with pytest.raises(api.ApiError) as e:
        api.dispatch(a, method, args)
    return e.value.status


def test_a_block_keeps_its_id_across_a_restart(tmp_path):
    a, part = make_agent(tmp_path)
    first = call(a, "block", {"mac": CAMERA, "note": "night"})["id"]
    second = call(a, "block", {"mac": LAPTOP, "remote": "203.0.113.7", "minutes": 30})["id"]
    call(a, "quarantine", {"mac": BULB, "reason": "telnet scan"})
    call(a, "allow", {"remote": "198.51.100.0/24"})
    listed = call(a, "blocks", {})

    b, _ = make_agent(tmp_path)                      # a new process reading the same file
    again = call(b, "blocks", {})
    assert [x["id"] for x in again["blocks"]] == [first, second]
    assert again["blocks"] == listed["blocks"]
    assert again["quarantines"][0]["reason"] == "telnet scan"
    assert again["allows"] == [{"remote": "198.51.100.0/24"}]
    assert call(b, "block", {"mac": BULB, "port": 23, "proto": "tcp"})["id"] == second + 1


def test_the_kernel_gets_the_devices_addresses_and_follows_them(tmp_path):
    a, part = make_agent(tmp_path)
    call(a, "block", {"mac": CAMERA})
    assert part.backend.loaded[-1]["devices"][CAMERA] == ["192.168.8.101", "fd00:8::ff:fe00:1"]
    n = len(part.backend.loaded)
    part.after_scan(a, plat.monotonic_ms())
    assert len(part.backend.loaded) == n, "nothing changed, nothing loaded"
    a.devices.table[CAMERA].ips = {"192.168.8.150"}    # a new lease; the v6 entry went idle
    part.after_scan(a, plat.monotonic_ms())
    assert part.backend.loaded[-1]["devices"][CAMERA] == ["192.168.8.101", "192.168.8.150",
                                                         "fd00:8::ff:fe00:1"]
    a.devices.by_ip = {"192.168.8.101": LAPTOP}       # the old lease went to the laptop
    part.after_scan(a, plat.monotonic_ms())
    assert part.backend.loaded[-1]["devices"][CAMERA] == ["192.168.8.150", "fd00:8::ff:fe00:1"]


def test_events_tell_what_happened(tmp_path):
    a, part = make_agent(tmp_path)
    bid = call(a, "block", {"mac": CAMERA})["id"]
    call(a, "unblock", {"id": bid})
    call(a, "quarantine", {"mac": BULB, "reason": "scan"})
    call(a, "release", {"mac": BULB})
    seen = [(n, d.get("action")) for n, d in a.emitted]
    assert seen == [("spin.block", "block"), ("spin.block", "unblock"),
                    ("spin.quarantine", "quarantine"), ("spin.quarantine", "release")]
    assert a.emitted[0][1]["block"]["what"] == "camera"
    assert a.emitted[2][1]["reason"] == "scan" and a.emitted[2][1]["name"] == "bulb"


def test_an_expired_block_is_gone_after_a_restart_and_a_running_one_keeps_its_time(tmp_path):
    a, part = make_agent(tmp_path)
    old = call(a, "block", {"mac": CAMERA, "minutes": 1})["id"]
    new = call(a, "block", {"mac": LAPTOP, "minutes": 10})["id"]
    # the agent is down for two minutes: rewrite the file as it would be
    path = str(tmp_path / "state" / "blocks.json")
    store = json.load(open(path))
    for b in store["blocks"]:
        b["created"] -= 120
        b["expires"] -= 120
        b["up_expires"] -= 120      # the clock since boot went on as well
    open(path, "w").write(json.dumps(store))

    b, part_b = make_agent(tmp_path)
    assert [x["id"] for x in call(b, "blocks", {})["blocks"]] == [new]
    assert ("spin.block", "expired") in [(n, d["action"]) for n, d in b.emitted]
    assert [x["id"] for x in json.load(open(path))["blocks"]] == [new]
    left_ms = part_b.deadlines[("block", new)] - plat.monotonic_ms()
    assert 7 * 60000 < left_ms <= 8 * 60000 + 1000
    assert len(b.loop.timers) == 1, "one timer for the one block that is left"
    assert old != new


def test_a_timer_ends_the_block(tmp_path):
    a, part = make_agent(tmp_path)
    bid = call(a, "block", {"mac": CAMERA, "minutes": 1})["id"]
    part.deadlines[("block", bid)] = plat.monotonic_ms()      # as if the minute is over
    part._arm(("block", bid))
    a.loop.run_once(10)
    assert call(a, "blocks", {})["blocks"] == []
    assert part.backend.loaded[-1]["blocks"] == []


def test_bad_requests_are_refused_and_change_nothing(tmp_path):
    a, part = make_agent(tmp_path)
    call(a, "block", {"mac": LAPTOP, "remote": "203.0.113.0/24"})
    path = str(tmp_path / "state" / "blocks.json")
    before = (open(path).read(), os.stat(path).st_ino, len(part.backend.loaded))
    refused = [
        ("block", {"mac": CAMERA, "ip": "192.168.8.101"}, 2),        # one or the other
        ("block", {"ip": "192.168.8.101", "remote": "2001:db8::1"}, 2),
        ("block", {"mac": CAMERA, "proto": "icmp", "port": 7}, 2),
        ("block", {"mac": LAPTOP, "remote": "203.0.113.7"}, 2),       # inside a block already there
        ("block", {"mac": LAPTOP, "remote": "203.0.113.0/24"}, 2),
        ("block", {"ip": ROUTER}, 2),
        ("block", {"remote": "192.168.8.0/24"}, 2),                   # holds the LAN gateway
        ("block", {"mac": "01:00:5e:00:00:01"}, 2),
        ("block", {"mac": CAMERA, "minutes": 0}, 2),
        ("unblock", {"id": 42}, 4),
        ("release", {"mac": CAMERA}, 4),
        ("allow", {}, 2),
        ("allow", {"mac": CAMERA, "remote": "203.0.113.1"}, 2),
        ("disallow", {"remote": "203.0.113.1"}, 4),
    ]
    for method, args, status in refused:
        assert status_of(a, method, args) == status, (method, args)
    assert (open(path).read(), os.stat(path).st_ino, len(part.backend.loaded)) == before


def test_allowed_devices_are_never_blocked_or_quarantined(tmp_path):
    a, part = make_agent(tmp_path)
    bid = call(a, "block", {"mac": CAMERA})["id"]
    call(a, "allow", {"mac": CAMERA})
    shown = call(a, "blocks", {})["blocks"]
    assert shown[0]["id"] == bid and shown[0]["active"] is False
    elements, _ = firewall.plan(part.backend.loaded[-1])
    assert elements["blk_mac"] == [] and elements["allow_mac"] == [(CAMERA, "allow " + CAMERA)]
    assert status_of(a, "quarantine", {"mac": CAMERA}) == 2
    assert status_of(a, "block", {"mac": CAMERA, "remote": "203.0.113.9"}) == 2


def test_a_failed_load_is_reported_and_retried(tmp_path):
    rec = Recorder()
    a, part = make_agent(tmp_path, rec)
    rec.fail = "nft: Error: syntax error"
    call(a, "block", {"mac": CAMERA})
    assert part.status()["firewall"] == "error"
    assert a.errors["firewall"].startswith("error: nft")
    rec.fail = None
    part.after_scan(a, part.retry_ms)
    assert part.status()["firewall"] == "ok" and "firewall" not in a.errors
    assert rec.loaded[-1]["blocks"][0]["mac"] == CAMERA


def test_an_unreadable_file_is_kept_and_the_agent_starts_clean(tmp_path):
    os.makedirs(str(tmp_path / "state"))
    path = str(tmp_path / "state" / "blocks.json")
    open(path, "w").write("{not json")
    a, part = make_agent(tmp_path)
    assert call(a, "blocks", {})["blocks"] == []
    assert open(path + ".bad").read() == "{not json"


def test_monitor_only_keeps_decisions_without_a_firewall(tmp_path):
    cfg = config.defaults()
    cfg.update(state_dir=str(tmp_path / "state"), firewall="none")
    part = blocks.Blocks(cfg)
    assert part.backend.name == "none" and part.status()["firewall"] == "off"


def test_a_clock_that_went_back_does_not_lengthen_a_block(tmp_path, monkeypatch):
    a, part = make_agent(tmp_path)
    bid = call(a, "block", {"mac": CAMERA, "minutes": 5})["id"]
    real = plat.wall
    monkeypatch.setattr(plat, "wall", lambda: real() - 3 * 365 * 86400)   # booted without NTP
    b, part_b = make_agent(tmp_path)
    left_ms = part_b.deadlines[("block", bid)] - plat.monotonic_ms()
    assert 4 * 60000 < left_ms <= 5 * 60000 + 1000


def test_a_decision_that_cannot_be_saved_is_refused_and_not_made(tmp_path):
    a, part = make_agent(tmp_path)
    call(a, "block", {"mac": CAMERA})
    loaded = len(part.backend.loaded)
    part.path = str(tmp_path / "no-such-dir" / "x" / "blocks.json")
    os.makedirs(str(tmp_path / "no-such-dir"))
    open(str(tmp_path / "no-such-dir" / "x"), "w").close()      # a file where the directory should be
    assert status_of(a, "block", {"mac": LAPTOP}) == api.UNKNOWN_ERROR
    assert status_of(a, "quarantine", {"mac": BULB}) == api.UNKNOWN_ERROR
    assert [b["mac"] for b in call(a, "blocks", {})["blocks"]] == [CAMERA]
    assert call(a, "blocks", {})["quarantines"] == [] and len(part.backend.loaded) == loaded


def test_the_picture_keeps_what_the_owner_blocked_after_its_traffic_stopped(tmp_path):
    """The laptop talked to the shop and the news an hour ago; the shop is
    blocked for it. The picture still draws laptop -> shop (0 bytes, so the
    owner can find and lift the block there), the news has aged out, and a
    range block is no single destination to draw."""
    a, part = make_agent(tmp_path)
    now = plat.monotonic_ms()
    for remote in ("203.0.113.7", "198.51.100.10"):
        a.digests.add(LAPTOP, remote, 443, 5000, 90000, 10, 60, True, False)
    drawn = {e["to"] for e in a.graph()["edges"] if e["from"] == LAPTOP}
    assert drawn == {"203.0.113.7", "198.51.100.10"}
    call(a, "block", {"mac": LAPTOP, "remote": "203.0.113.7"})
    call(a, "block", {"mac": LAPTOP, "remote": "192.0.2.128/25"})
    a.digests.tick(now + 3 * a.digests.bucket_ms, plat.wall() + 3 * a.digests.bucket_ms // 1000)
    g = a.graph()
    assert [(e["to"], e["bytes"]) for e in g["edges"] if e["from"] == LAPTOP] == [("203.0.113.7", 0)]
    assert {"id": "203.0.113.7", "kind": "endpoint", "bytes": 0} in g["nodes"]


def test_a_block_made_before_ntp_keeps_its_hour_after_a_restart_once_ntp_arrived(tmp_path, monkeypatch):
    # the router booted a day behind; the owner blocks the camera for an
    # hour; NTP puts the clock right (+1 day) and the agent restarts
    real = plat.wall
    monkeypatch.setattr(plat, "wall", lambda: real() - 86400)
    a, part = make_agent(tmp_path)
    bid = call(a, "block", {"mac": CAMERA, "minutes": 60})["id"]
    monkeypatch.setattr(plat, "wall", real)
    b, part_b = make_agent(tmp_path)
    assert [x["id"] for x in call(b, "blocks", {})["blocks"]] == [bid]
    left_ms = part_b.deadlines[("block", bid)] - plat.monotonic_ms()
    assert 59 * 60000 < left_ms <= 60 * 60000 + 1000


def test_a_full_conntrack_table_is_said_in_status_and_a_new_limit_is_read(tmp_path, monkeypatch):
    # the kernel's nf_conntrack_max changed under the agent (sysctl) and the
    # table filled up: new connections are dropped, and status must say so
    (tmp_path / "max").write_text("4096\n")
    (tmp_path / "count").write_text("4090\n")
    monkeypatch.setattr(agent_mod, "CONNTRACK_MAX", str(tmp_path / "max"))
    monkeypatch.setattr(agent_mod, "CONNTRACK_COUNT", str(tmp_path / "count"))
    a, part = make_agent(tmp_path)
    a.table_max = 262144                 # what it read at start
    a.check_table()
    assert a.table_max == 4096
    assert "4090 of 4096" in a.status()["errors"]["conntrack_table"]
    (tmp_path / "count").write_text("1200\n")
    a.check_table()
    assert "conntrack_table" not in a.status()["errors"]
