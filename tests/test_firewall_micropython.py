"""The blocking stories again, with the agent on MicroPython's Unix port
(the PyPI build: no ffi, so nft runs through os.system with every argument
quoted, and its ruleset goes in through a private file): the camera is
stopped mid-upload, the bulb is quarantined, a flushed ruleset comes back,
kill -9 keeps every block. On the fw4-shaped (nft) router; the iptables
router runs the same code paths through plat.run."""

import shutil

import pytest

from tests import test_firewall_home as story
from tests.world.home import Home

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(shutil.which("micropython") is None,
                                 reason="no micropython command (tools/deps.sh installs it)")]


@pytest.fixture(scope="module")
def home():
    with Home(firewall="nft", agent=True, interpreter="micropython") as h:
        yield story.furnish(h, "nft")


test_blocking_the_camera_stops_its_upload_while_the_speaker_keeps_streaming = story.test_blocking_the_camera_stops_its_upload_while_the_speaker_keeps_streaming
test_a_destination_block_for_the_laptop_stops_that_destination_for_the_laptop_only = story.test_a_destination_block_for_the_laptop_stops_that_destination_for_the_laptop_only
test_the_quarantined_bulb_keeps_dhcp_and_dns_and_reaches_nothing_else = story.test_the_quarantined_bulb_keeps_dhcp_and_dns_and_reaches_nothing_else
test_bad_requests_change_nothing = story.test_bad_requests_change_nothing
test_allow_beats_block = story.test_allow_beats_block
test_the_routers_own_firewall_reloading_leaves_every_block_in_force = story.test_the_routers_own_firewall_reloading_leaves_every_block_in_force
test_a_flushed_ruleset_is_restored_within_one_scan = story.test_a_flushed_ruleset_is_restored_within_one_scan
test_spin_firewall_prints_checks_and_flushes_what_the_agent_loads = story.test_spin_firewall_prints_checks_and_flushes_what_the_agent_loads
test_kill_9_reboot_and_restart_keep_the_same_blocks_and_ids = story.test_kill_9_reboot_and_restart_keep_the_same_blocks_and_ids
test_a_one_minute_block_ends_by_itself = story.test_a_one_minute_block_ends_by_itself
