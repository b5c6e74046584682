"""Endpoint names outlive the agent: a restart (procd respawn, an upgrade,
/etc/init.d/spin restart) must not turn every endpoint into a bare address
until each device happens to resolve again, which can take a day.

A home with only the laptop: it browses (resolving its names through the
router's DNS), then goes quiet, so no DNS answer can name anything again;
the agent is restarted, and the laptop's endpoints still carry their names
from the moment the new agent answers.
"""

import json
import os

import pytest

from tests.world.home import DEVICES, LAPTOP_NAMES, Home, resolve

pytestmark = pytest.mark.netns

LAPTOP = DEVICES["laptop"][0]


def named(home):
    """{remote address: names} over the laptop's flows."""
    return {f["remote"]: f["names"] for f in home.call("flows", {"mac": LAPTOP})["flows"]}


def test_the_laptops_endpoints_keep_their_names_across_an_agent_restart():
    with Home(devices=["laptop"], agent=True, traffic=False) as home:
        want = {}
        for name in LAPTOP_NAMES:
            for addr in resolve(name)[1]:
                want[addr] = name
        home.start_traffic("laptop")

        def all_named():
            got = named(home)
            return all(want[a] in got.get(a, ()) for a in want) and got
        home.wait_for(all_named, timeout=40, what="every address the laptop used, named")
        home.stop_traffic("laptop")
        answers = home.call("status")["names"]["dns_answers"]
        assert answers > 0

        home.stop_agent()
        saved = json.load(open(home.path("run", "endpoints.json")))
        assert set(want) <= set(row[0] for row in saved)
        home.start_agent()

        st = home.call("status")["names"]
        assert st["dns_answers"] == 0 and st["endpoints_restored"] >= len(want)
        got = named(home)  # the laptop's closed connections linger in conntrack
        for addr, name in want.items():
            assert addr in got, (addr, sorted(got))
            assert got[addr][0] == name, (addr, got[addr])
        eps = {n["id"]: n for n in home.call("graph")["nodes"] if n["kind"] == "endpoint"}
        shown = set(want) & set(eps)  # what the new agent's first scan counted
        assert shown, sorted(eps)
        for addr in shown:
            assert eps[addr]["names"] == [want[addr]] and eps[addr]["domain"]
        assert home.call("status")["names"]["dns_answers"] == 0  # no DNS named them again
        assert not os.path.exists(home.path("run", "endpoints.json.bad"))
