"""The names part without a network: the ignore list and owner names on
disk, and the per-domain counts of a closed digest bucket.

An agent is built but not started (no sockets: dns_snoop off); the DNS
names it would have read are learned into its endpoint table directly.
"""

import json
import os

import pytest

from spin_lite import api, config, names
from spin_lite.agent import Agent

CAMERA = "02:00:00:00:00:01"
LAPTOP = "02:00:00:00:00:04"


def make(tmp_path, router_ips=("192.168.8.1", "192.0.2.2")):
    cfg = config.defaults()
    cfg["state_dir"] = str(tmp_path / "state")
    cfg["run_dir"] = str(tmp_path / "run")
    cfg["dns_snoop"] = False
    agent = Agent(cfg)
    agent.router_ips = set(router_ips)
    part = names.Names(cfg)
    part.start(agent)
    return agent, part


def test_the_router_is_ignored_until_the_owner_says_otherwise(tmp_path):
    agent, part = make(tmp_path)
    assert part.is_ignored("192.168.8.1") and part.is_ignored("192.0.2.2")
    assert not part.is_ignored("203.0.113.7")
    part.unignore("192.0.2.2")
    assert not part.is_ignored("192.0.2.2")
    # the WAN address changes: the new one is the router's, so ignored by default
    agent.router_ips = {"192.168.8.1", "192.0.2.77"}
    part.after_scan(agent, 0)
    assert part.is_ignored("192.0.2.77")
    saved = json.load(open(str(tmp_path / "state" / "ignored.json")))
    assert saved == {"added": [], "removed": ["192.0.2.2"]}


def test_prefixes_and_addresses_survive_a_restart(tmp_path):
    _, part = make(tmp_path)
    part.ignore("203.0.113.0/24")
    part.ignore("2001:db8:1::/48")
    part.ignore("198.51.100.10")
    _, again = make(tmp_path)
    assert again.is_ignored("203.0.113.200") and not again.is_ignored("203.0.114.1")
    assert again.is_ignored("2001:db8:1::7") and not again.is_ignored("2001:db8:2::7")
    assert again.is_ignored("198.51.100.10") and not again.is_ignored("198.51.100.11")
    owner = [i["remote"] for i in again.ignored_list() if i["why"] == "owner"]
    assert sorted(owner) == ["198.51.100.10", "2001:db8:1::/48", "203.0.113.0/24"]
    with pytest.raises(api.ApiError) as e:
        again.unignore("203.0.113.7")  # inside an ignored prefix, but not itself on the list
    assert e.value.status == api.NOT_FOUND


def test_a_broken_state_file_is_kept_aside_and_the_agent_goes_on(tmp_path):
    os.makedirs(str(tmp_path / "state"))
    (tmp_path / "state" / "names.json").write_text('{"02:00:00:00:00:04": ')
    (tmp_path / "state" / "ignored.json").write_text('{"added": ["not an address"], "removed": []}')
    _, part = make(tmp_path)
    assert part.owners == {} and part.added == []
    assert (tmp_path / "state" / "names.json.bad").exists()
    assert (tmp_path / "state" / "ignored.json.bad").exists()


def test_the_owners_name_beats_dhcp_names_and_is_saved(tmp_path):
    agent, part = make(tmp_path)
    agent.devices.update({"192.168.8.50": LAPTOP}, {LAPTOP: ("192.168.8.50", "laptop")},
                         {LAPTOP: "static-laptop"}, agent.router_ips, 0)
    assert agent.devices.get(LAPTOP).name == "static-laptop"
    part.name(agent, LAPTOP, "  Anna's laptop ")
    assert agent.devices.get(LAPTOP).name == "Anna's laptop"
    # a later refresh (a new lease) does not undo it
    agent.devices.update({}, {LAPTOP: ("192.168.8.50", "laptop")}, {}, agent.router_ips, 1)
    assert agent.devices.get(LAPTOP).name == "Anna's laptop"
    assert json.load(open(str(tmp_path / "state" / "names.json"))) == {LAPTOP: "Anna's laptop"}
    with pytest.raises(api.ApiError) as e:
        part.name(agent, LAPTOP, "x" * 65)
    assert e.value.status == api.INVALID_ARGUMENT
    part.name(agent, LAPTOP, "")
    assert agent.devices.get(LAPTOP).name == "laptop"
    assert json.load(open(str(tmp_path / "state" / "names.json"))) == {}


def test_a_closed_bucket_counts_bytes_per_registrable_domain(tmp_path):
    agent, part = make(tmp_path)
    now = part.now()
    for ip, name in [("203.0.113.7", "www.example-shop.com"), ("198.51.100.20", "video.example-tube.com"),
                     ("198.51.100.21", "video.example-tube.com"), ("203.0.113.60", "files.example.com")]:
        part.endpoints.learn(ip, name, 300, now)
    d = agent.digests
    t0 = d.open_n * d.bucket_ms
    for remote, b in [("203.0.113.7", 5000), ("198.51.100.20", 30000), ("198.51.100.21", 20000),
                      ("203.0.113.60", 1000), ("203.0.113.99", 700), ("192.168.8.1", 90000)]:
        d.add(LAPTOP, remote, 80, b, 0, 1, 0, True, False)
    closed = d.tick(t0 + d.bucket_ms - d.clock.align)  # the monotonic time the next bucket starts
    assert closed
    digest = agent.flow_digest(closed[-1])
    laptop = [x for x in digest["devices"] if x["mac"] == LAPTOP][0]
    # the router's 90 kB count in the totals, not in the top list or the domains
    assert laptop["bytes_out"] == 146700
    assert "192.168.8.1" not in [r for r, _ in laptop["top"]]
    assert laptop["domains"][:3] == [["example-tube.com", 50000], ["example-shop.com", 5000],
                                     ["example.com", 1000]]
    assert ["203.0.113.99", 700] in laptop["domains"]  # unnamed: counted under its address
    assert laptop["names"]["198.51.100.20"] == "video.example-tube.com"


def test_endpoint_names_survive_an_agent_restart_in_run_dir(tmp_path):
    agent, part = make(tmp_path)
    part.endpoints.learn("203.0.113.7", "camera-cloud.example", 3600, part.now())
    part.endpoints.learn("203.0.113.8", "brief.example", 1, part.now())  # shown dns_grace past its TTL
    part.stop(agent)
    rows = json.load(open(str(tmp_path / "run" / "endpoints.json")))
    assert sorted(r[0] for r in rows) == ["203.0.113.7", "203.0.113.8"]
    _, again = make(tmp_path)
    assert again.names_for("203.0.113.7") == ["camera-cloud.example"]
    assert again.status()["endpoints_restored"] == 2
    # nothing new learned: stopping again leaves the file as it was
    os.unlink(str(tmp_path / "run" / "endpoints.json"))
    again.stop(agent)
    assert not (tmp_path / "run" / "endpoints.json").exists()


def test_a_foreign_endpoints_file_is_kept_aside_and_names_start_empty(tmp_path):
    os.makedirs(str(tmp_path / "run"))
    for text in ['{"203.0.113.7": ["x.example"]}', '[["203.0.113.7", "x.example", 1]]',
                 '[["not an address", ["x.example"], 1]]', '[["203.0.113.7", ["x.example"]]]', "[[1"]:
        (tmp_path / "run" / "endpoints.json").write_text(text)
        _, part = make(tmp_path)
        assert len(part.endpoints) == 0 and part.status()["bad_files"] == 1, text
        assert (tmp_path / "run" / "endpoints.json.bad").read_text() == text


def test_new_names_reach_the_file_within_minutes_without_a_stop(tmp_path):
    # what a kill -9 keeps: the last periodic write, at most SAVE_SECONDS old
    agent, part = make(tmp_path)
    path = tmp_path / "run" / "endpoints.json"
    t0 = part.last_save
    part.after_scan(agent, (t0 + names.SAVE_SECONDS) * 1000)
    assert not path.exists()  # nothing learned yet: nothing written
    part.endpoints.learn("203.0.113.7", "camera-cloud.example", 3600, t0 + names.SAVE_SECONDS)
    part.after_scan(agent, (t0 + 2 * names.SAVE_SECONDS - 1) * 1000)
    assert not path.exists()
    part.after_scan(agent, (t0 + 2 * names.SAVE_SECONDS) * 1000)
    assert [r[1] for r in json.load(open(str(path)))] == [["camera-cloud.example"]]


def test_a_flow_of_the_first_snapshot_keeps_a_name_a_later_new_flow_ends_it(tmp_path):
    # the camera resolved its cloud (TTL 0) and has streamed since, as the
    # last agent saw; the new agent's first snapshot meets the stream as a
    # flow of unknown age: it keeps the name. A flow that begins after that
    # began long after the record ran out: the name ends.
    agent, part = make(tmp_path)
    now = part.now()
    part.endpoints.learn("203.0.113.10", "cloud.example-cam.com", 0, now - 3600)
    for t in range(now - 3600, now, 300):
        part.endpoints.seen("203.0.113.10", False, t)
    agent.devices.by_ip["192.168.8.184"] = CAMERA
    assert agent.last_scan_ms is None
    agent.account("192.168.8.184", "203.0.113.10", 9000, b"tcp", 1000, 60, 10, 5, True, False)
    assert part.names_for("203.0.113.10") == ["cloud.example-cam.com"]
    agent.last_scan_ms = 1  # the first scan is over
    agent.account("192.168.8.184", "203.0.113.10", 9000, b"tcp", 1000, 60, 10, 5, False, False)
    assert part.names_for("203.0.113.10") == ["cloud.example-cam.com"]
    agent.account("192.168.8.184", "203.0.113.10", 443, b"tcp", 60, 60, 1, 1, True, False)
    assert part.names_for("203.0.113.10") == []
    assert part.status()["endpoints_stale"] == 1
