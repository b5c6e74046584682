"""`spin top` marks the devices the owner (or the detector) stopped: Q for
a quarantine, B for a device blocked whole, b for some of its traffic
blocked, with a legend under the table. The marks come from one `blocks`
call per refresh; an agent that cannot answer it still gets its table.

The first tests feed `blocks` replies of the shape blocks.listing()
gives; the story runs `spin top -n 1` in the router namespace of the
simulated home against the real agent, as `make demo` does.
"""

import os
import subprocess
import sys

import pytest

from spin_lite import cli
from tests.world.home import DEVICES, SRC, Home

CAMERA, BULB, LAPTOP, SPEAKER = (DEVICES[n][0] for n in ("camera", "bulb", "laptop", "speaker"))


def device(mac, name, ip, rate=0):
    return {"mac": mac, "name": name, "ips": [ip], "rate_out": rate, "rate_in": 0, "connections": 1,
            "bucket": {"bytes_out": 0, "bytes_in": 0, "top": []}}


DEVS = [device(CAMERA, "camera", "192.168.8.10", 900), device(BULB, "bulb", "192.168.8.11", 10),
        device(LAPTOP, "laptop", "192.168.8.12", 500), device(SPEAKER, "speaker", "192.168.8.13", 5)]


def rows(text):
    """{name: mark} from the table's lines (the mark column may be blank)."""
    out = {}
    for line in text.splitlines()[1:]:
        if not line.strip():
            break
        mark, rest = line[0], line[1:].split()
        out[rest[0]] = mark.strip()
    return out


def test_marks_follow_the_block_listing():
    listing = {"blocks": [{"id": 1, "mac": CAMERA, "active": True},
                          {"id": 2, "mac": LAPTOP, "remote": "203.0.113.7", "active": True},
                          {"id": 3, "remote": "198.51.100.0/24", "active": True},      # every device
                          {"id": 4, "ip": "192.168.8.13", "active": True},             # the speaker, by address
                          {"id": 5, "mac": BULB, "active": True}],
               "quarantines": [{"mac": BULB, "name": "bulb", "created": 1, "expires": None, "reason": "scan"}]}
    marks = cli.device_marks(listing, DEVS)
    # the quarantine is the stronger mark for the bulb, also blocked
    assert marks == {CAMERA: "B", LAPTOP: "b", SPEAKER: "B", BULB: "Q"}
    table = cli.top_table(DEVS, marks=marks)
    assert rows(table) == {"camera": "B", "laptop": "b", "bulb": "Q", "speaker": "B"}
    assert table.splitlines()[-1] == "Q quarantined  B blocked  b partly blocked"


def test_a_block_not_in_force_marks_nothing_and_no_marks_no_legend():
    listing = {"blocks": [{"id": 1, "mac": CAMERA, "active": False}], "quarantines": []}
    assert cli.device_marks(listing, DEVS) == {}
    table = cli.top_table(DEVS, marks={})
    assert set(rows(table).values()) == {""}
    assert "quarantined" not in table and table.splitlines()[0].startswith("!")


def test_an_agent_without_blocks_still_gets_its_table():
    def call(method, args):
        from spin_lite import jsonrpc
        raise jsonrpc.RemoteError(3, "method not found")
    marks, why = cli.top_marks(call, DEVS)
    assert marks == {} and "blocks unknown" in why and "method not found" in why


def test_the_head_counts_open_alerts_and_quarantines_when_the_agent_has_them():
    status = {"version": "0.1", "devices": 5, "flows": 12, "last_scan_ms": 3}
    assert cli.top_head(status) == "spin-lite 0.1  devices 5  flows 12  scan 3 ms  (Ctrl-C quits)"
    status["anomalies"] = {"open": 2, "quarantined": 1, "muted": 0}
    assert "alerts 2 open, 1 in quarantine" in cli.top_head(status)


@pytest.fixture(scope="module")
def home():
    with Home(agent=True, traffic=False) as h:
        h.wait_for(lambda: len(h.call("devices")["devices"]) == len(DEVICES), timeout=30,
                   what="every device in the agent's table")
        yield h


def spin_top(home):
    argv = home._argv("router", [sys.executable, "-m", "spin_lite", "top", "-n", "1", "-c", home.agent_config])
    p = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=dict(os.environ, PYTHONPATH=SRC))
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_spin_top_marks_the_quarantined_and_the_blocked_device(home):
    before = rows(spin_top(home).split("\n\n", 1)[1])
    assert len(before) == len(DEVICES) and set(before.values()) == {""}

    home.call("quarantine", {"mac": BULB, "reason": "telnet scan"})
    cam = home.call("block", {"mac": CAMERA, "note": "from the test"})
    pair = home.call("block", {"mac": LAPTOP, "remote": "203.0.113.7"})
    try:
        out = spin_top(home)
        marked = rows(out.split("\n\n", 1)[1])
        names = {d["mac"]: d["name"] or d["mac"] for d in home.call("devices")["devices"]}
        assert marked[names[BULB][:20]] == "Q"
        assert marked[names[CAMERA][:20]] == "B"
        assert marked[names[LAPTOP][:20]] == "b"
        assert marked[names[SPEAKER][:20]] == ""
        assert "Q quarantined  B blocked  b partly blocked" in out
        # an owner's quarantine is not the detector's: no alert is counted
        assert "alerts 0 open, 0 in quarantine" in out
    finally:
        home.call("release", {"mac": BULB})
        home.call("unblock", {"id": cam["id"]})
        home.call("unblock", {"id": pair["id"]})
    assert set(rows(spin_top(home).split("\n\n", 1)[1]).values()) == {""}
