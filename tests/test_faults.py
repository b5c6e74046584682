"""Faults a home router meets, survived: the quick rows of the fault matrix
(tests/faults.py, `make faults`) as stories, with the same code.

In every story the camera is blocked and the bulb quarantined by the
owner; whatever happens to the agent, the firewall, ubusd or the disks,
afterwards the camera is still blocked and the bulb still quarantined, as
real packets show (the speaker, meanwhile, reaches the internet). Where
the backend matters the story runs on fw4 (nft) and on firewall3
(iptables); the others on fw4 only. The conntrack-full fault and the
10-minute flood run only in `make faults`.
"""

import pytest

from tests import faults
from tests.world.home import Home

pytestmark = pytest.mark.netns


@pytest.fixture(scope="module", params=["nft", "iptables"])
def home(request):
    with Home(firewall=request.param, agent=True,
              config=faults.agent_config(request.param, 1)) as h:
        yield faults.Matrix(h).furnish()


def survived(m, r):
    assert m.lost() == (0, 0), "lost after %s: %s" % (r["fault"], r)
    assert r["recover_s"] is not None


def test_the_agent_killed_mid_scan_comes_back_by_procd_and_the_camera_stays_blocked(home):
    r = faults.kill9_mid_scan(home)
    assert r["held_while_down"], "the rules did not hold while the agent was down: %s" % r
    assert r["meanwhile"].startswith("no answer")
    survived(home, r)


def test_a_storm_of_100_hups_in_a_second_reloads_and_keeps_every_decision(home):
    pid = home.home.agent.pid
    r = faults.hup_storm(home)
    assert r["pid"] == pid, "the agent was restarted: %s" % r
    assert 1 <= r["reloads"] <= 100
    survived(home, r)


def test_a_firewall_reload_puts_the_rules_back_with_the_include(home):
    survived(home, faults.firewall_reload(home))


def test_a_firewall_restart_puts_the_rules_back_with_the_include(home):
    survived(home, faults.firewall_restart(home))


def test_firewall_stop_is_undone_by_the_self_check_and_start_by_the_include(home):
    r = faults.firewall_stop_start(home)
    survived(home, r)
    assert r["after_start"] is not None


def test_stop_during_a_scan_leaves_nothing_behind_and_start_brings_it_all_back(home):
    r = faults.stop_mid_scan(home)
    assert r["left"] == [], "left behind after stop: %s" % r["left"]
    assert r["exit"] == 0
    survived(home, r)


@pytest.mark.parametrize("home", ["nft"], indirect=True)
def test_ubusd_restarts_and_spin_is_on_ubus_again(home):
    r = faults.ubusd_restart(home)
    assert "errors: ubus" in r["meanwhile"]          # status said so while ubusd was away
    assert r["errors_after"] == []
    survived(home, r)


@pytest.mark.parametrize("home", ["nft"], indirect=True)
def test_with_tmp_full_the_rules_are_restored_and_the_agent_restarts(home):
    r = faults.tmp_full(home)
    assert r["held_after_restart"]
    survived(home, r)


@pytest.mark.parametrize("home", ["nft"], indirect=True)
def test_with_etc_read_only_a_new_decision_is_refused_and_nothing_changes(home):
    r = faults.etc_read_only(home)
    assert r["refused"] == ["block: 9", "quarantine: 9", "name: 9"], r["refused"]
    assert r["unchanged"], "a refused decision changed something: %s" % r
    survived(home, r)


@pytest.mark.parametrize("home", ["nft"], indirect=True)
def test_a_block_made_before_ntp_survives_the_clock_jump_and_a_restart(home):
    r = faults.clock_jumps(home)
    assert r["kept"], "the one-hour block made before NTP was gone after a restart"
    # history labels follow the wall clock, a day each way
    assert r["shifts"] == [1.0, -1.0, -1.0, 1.0], r["shifts"]
    survived(home, r)
