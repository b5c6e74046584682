"""The collector story again, with the agent on MicroPython's Unix port (the
PyPI build, as on a router without python3): the same home, the same
traffic, the same questions, the same answers.

Left out here, and why: reload and SIGTERM (that build has no `ffi`, so no
signalfd: HUP and TERM take their default action and end it; with `ffi`,
tests/test_agent_micropython.py shows both)."""

import shutil

import pytest

from tests import test_collector as story
from tests.world.home import Home

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(shutil.which("micropython") is None,
                                 reason="no micropython command (tools/deps.sh installs it)")]


@pytest.fixture(scope="module")
def home():
    with Home(traffic=False, interpreter="micropython",
              config={"bucket_seconds": story.BUCKET, "scan_interval": 1, "detect_mode": "alert"}) as h:
        h.start_agent()
        for name in h.devices:
            h.start_traffic(name)
        yield h
        assert h.agent.poll() is None, h.agent_log_tail()  # it lived through the story


test_the_camera_is_listed_by_mac_and_hostname_with_its_upload = \
    story.test_the_camera_is_listed_by_mac_and_hostname_with_its_upload
test_the_thermostat_connections_equal_its_polls = story.test_the_thermostat_connections_equal_its_polls
test_history_has_one_point_per_elapsed_bucket = story.test_history_has_one_point_per_elapsed_bucket
test_the_laptop_talks_over_ipv4_and_ipv6 = story.test_the_laptop_talks_over_ipv4_and_ipv6
test_the_bulb_scans_and_shows_hundreds_of_unreplied_attempts = \
    story.test_the_bulb_scans_and_shows_hundreds_of_unreplied_attempts
test_status_reports_counters_and_no_errors = story.test_status_reports_counters_and_no_errors
test_spin_top_shows_the_devices_live = story.test_spin_top_shows_the_devices_live
