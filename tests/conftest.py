"""Shared fixtures: the simulated home (tests/world/home.py), ubusd's stand-in, the ipks.

Tests marked `netns` build namespaces and need root; without it they FAIL
with a message saying so (a skipped integration test looks like a pass).

    def test_x(home): ...              # one home per module, agent running
    def test_y(new_home):              # a fresh home for this test only
        h = new_home(firewall="iptables", agent=True, config={"scan_interval": 2})
    def test_z(ubusd): ...             # ubusd's stand-in, for this test only
    def test_w(ipks): ...              # {"spin": path, "luci-app-spin": path}, built once
"""

import os
import subprocess
import sys

import pytest

from tests.world.home import Home, HomeError
from tests.world.ubusd import StandIn

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_configure(config):
    config.addinivalue_line("markers", "netns: needs root and network namespaces (the simulated home)")


def pytest_sessionstart(session):
    # namespaces and home dirs of runs that crashed (their pid is gone)
    if os.geteuid() == 0:
        try:
            Home.sweep()
        except OSError:
            pass


def pytest_runtest_setup(item):
    if item.get_closest_marker("netns") is None:
        return
    try:
        Home().check()
    except HomeError as e:
        pytest.fail("%s: %s" % (item.nodeid, e), pytrace=False)


@pytest.fixture(scope="module")
def home():
    """The home with every device, its traffic and the agent (module-wide)."""
    with Home(agent=True) as h:
        yield h


@pytest.fixture
def new_home():
    """A factory of fresh homes, each removed when the test ends:
    new_home(firewall=..., agent=..., config=..., traffic=..., devices=[...])."""
    made = []

    def make(**kw):
        h = Home(**kw)
        made.append(h)
        h.up()
        return h
    yield make
    for h in reversed(made):
        h.down()


@pytest.fixture
def ubusd(tmp_path):
    """ubusd's stand-in (tests/world/ubusd.py) on a socket of this test's
    own; every message it receives is logged to tmp_path/ubusd.log."""
    with StandIn(str(tmp_path / "ubus.sock"), str(tmp_path / "ubusd.log")) as d:
        yield d


@pytest.fixture(scope="session")
def ipks(tmp_path_factory):
    """The two ipks `make ipk` builds, once for every test that installs or
    unpacks them (test_ipk.py builds its own: it tests the builder)."""
    out = tmp_path_factory.mktemp("ipk")
    subprocess.run([sys.executable, os.path.join(TOP, "tools", "ipk.py"), "--out", str(out)],
                   check=True, stdout=subprocess.DEVNULL)
    return {n.split("_")[0]: str(out / n) for n in os.listdir(out)}
