"""Blocking from ubus, the way LuCI and the `ubus` CLI do it: the reply,
the clear refusal, and the events a listener on `spin.*` receives.

The agent is the one of test_ubus_agent.py (a camera and a laptop in small
files, ubusd's stand-in) with `firewall none`: what the kernel does with a
block is told in test_firewall_home.py; here it is the conversation.
"""

import pytest

from spin_lite import ubuslink
from tests.test_ubus_agent import CAMERA, LAPTOP, Home


@pytest.fixture
def agent(tmp_path, ubusd):
    # a digest is sent every bucket; a minute keeps spin.digest out of the events the story waits for
    with Home(str(tmp_path / "home"), ubusd.path, scan=1, bucket=60) as home:
        yield home


def events_until(listener, names):
    seen = []
    for _ in range(50):
        ev = listener.next_event(timeout=0.2)
        if ev is not None:
            seen.append(ev)
        if [n for n, _ in seen] == names:
            break
    return seen


def test_the_owner_blocks_and_quarantines_over_ubus_and_listeners_hear_it(agent, ubusd):
    path = ubusd.path
    with ubuslink.Client(path) as listener:
        listener.listen("spin.*")
        bid = ubuslink.call(path, "block", {"mac": CAMERA, "minutes": 30, "note": "night"})["id"]
        ubuslink.call(path, "quarantine", {"mac": LAPTOP, "reason": "telnet scan"})
        ubuslink.call(path, "unblock", {"id": bid})
        ubuslink.call(path, "release", {"mac": LAPTOP})
        seen = events_until(listener, ["spin.block", "spin.quarantine", "spin.block", "spin.quarantine"])
    names = [(n, d["action"]) for n, d in seen if n in ("spin.block", "spin.quarantine")]
    assert names == [("spin.block", "block"), ("spin.quarantine", "quarantine"),
                     ("spin.block", "unblock"), ("spin.quarantine", "release")]
    block = seen[0][1]["block"]
    assert block["id"] == bid and block["what"] == "camera" and block["note"] == "night"
    assert block["expires"] - block["created"] == 30 * 60
    assert seen[1][1]["mac"] == LAPTOP and seen[1][1]["reason"] == "telnet scan"


def test_refusals_over_ubus_say_why(agent, ubusd):
    path = ubusd.path
    bid = ubuslink.call(path, "block", {"mac": CAMERA})["id"]
    cases = [("block", {"mac": CAMERA}, 2, "already blocked"),
             ("block", {"mac": CAMERA, "port": 0}, 2, "port"),
             ("block", {"mac": "02:00:00"}, 2, "mac"),
             ("unblock", {"id": bid + 100}, 4, "no block"),
             ("release", {"mac": LAPTOP}, 4, "not in quarantine")]
    for method, args, status, word in cases:
        with pytest.raises(ubuslink.UbusError) as e:
            ubuslink.call(path, method, args)
        assert e.value.status == status, (method, args)
        assert word in e.value.message, e.value.message
    listing = ubuslink.call(path, "blocks", {})
    assert [b["id"] for b in listing["blocks"]] == [bid]
    assert listing["firewall"]["firewall"] == "off" and listing["firewall"]["backend"] == "none"
