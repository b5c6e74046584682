"""The owner opens the page the agent serves itself (no LuCI on this host).

A simulated home with five devices; the agent runs in the router namespace
with its web part on, and a browser on the host reaches it through a
127.0.0.1 port forwarded to the agent's unix socket. Every story checks
the page and, where the page claims something happened to the network,
the network itself (a TCP connect from the camera's namespace, the
camera's own byte counter, the firewall's drop counter).
"""

import os
import subprocess
import sys
import time

import pytest

from tests.web.browser import ARTIFACTS, Browser, available
from tests.world.home import DEVICES, LAN4_ROUTER, STATIC_HOSTS, Home
from tests.world.webproxy import forward, forward_into

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WWW = os.path.join(REPO, "luci-app-spin", "htdocs")
CAMERA = DEVICES["camera"][0]
CAMERA_CLOUD = ("203.0.113.10", 9000)

NODE = ".spin-device[data-id='%s']"


def expected_names():
    """What the owner should read: a static DHCP host's name, else the
    hostname the device sent with its lease."""
    static = {mac: name for name, mac, _ in STATIC_HOSTS}
    return sorted(static.get(mac, hostname) for mac, hostname, _ in DEVICES.values())


@pytest.fixture(scope="module")
def home():
    why = available()
    if why:
        pytest.fail("no browser: " + why)
    with Home(agent=True, config={"www_dir": WWW}) as h:   # the agent starts before the traffic
        h.wait_for(lambda: len(h.call("devices")["devices"]) == len(DEVICES), timeout=30,
                   what="every device in the agent's table")
        yield h


@pytest.fixture(scope="module")
def page(home):
    with forward(home.rpc_socket) as fw, Browser() as b:
        b.url = fw.url + "/spin/"
        yield b


def labels(b):
    return b.eval("Array.from(document.querySelectorAll('.spin-device')).map(n => n.dataset.label).sort()")


def can_connect(home, device, addr, port=80):
    """A fresh TCP connection from device to addr:port: real packets."""
    code = ("import socket,sys\n"
            "try:\n socket.create_connection(%r, timeout=2).close()\n"
            "except OSError:\n sys.exit(1)\n" % ((addr, port),))
    return subprocess.run(home._argv(device, [sys.executable, "-c", code]), capture_output=True).returncode == 0


def camera_can_connect(home):
    return can_connect(home, "camera", *CAMERA_CLOUD)


def cloud_received(home):
    """What the internet's upload sink has read: only the camera uploads."""
    import json
    try:
        with open(home.path("services.json")) as f:
            return json.load(f)["sink_bytes"]
    except (OSError, ValueError):
        return None


def stands_still(home, seconds=2):
    """True once the cloud receives nothing for `seconds`."""
    a = cloud_received(home)
    time.sleep(seconds)
    return a is not None and cloud_received(home) == a


def test_the_page_names_every_device_and_the_camera_talks_most(home, page):
    page.goto(page.url)
    # the first render, from the data load() fetched, before any poll
    page.wait("document.querySelectorAll('.spin-device').length > 0")
    assert labels(page) == expected_names()
    # the camera streams 1.5 MB/s to its cloud: its edge is the thickest
    home.wait_for(lambda: any(e["from"] == CAMERA for e in home.call("graph")["edges"]),
                  timeout=15, what="camera traffic in the agent's graph")
    heaviest = page.wait("""(() => {
        const edges = Array.from(document.querySelectorAll('.spin-edge'));
        if (!edges.some(e => e.dataset.from == '%s')) return null;
        edges.sort((a, b) => b.dataset.bytes - a.dataset.bytes);
        return edges[0].dataset.from;
    })()""" % CAMERA, timeout=15)
    assert heaviest == CAMERA
    page.screenshot("standalone-network-desktop.png")
    assert page.logs() == []


def test_block_on_the_camera_stops_its_traffic_and_unblock_brings_it_back(home, page):
    page.goto(page.url)
    page.click(NODE % CAMERA)
    page.wait("document.querySelector('#spin-details h3').textContent == 'camera'")
    assert camera_can_connect(home)

    page.click("#spin-details [data-action=block]")
    page.wait("document.querySelector(\"%s\").dataset.state == 'blocked'" % (NODE % CAMERA))
    blocks = [b for b in home.call("blocks")["blocks"] if b.get("mac") == CAMERA]
    assert len(blocks) == 1
    # the network, not the page: no new connection, the stream stands still,
    # and the firewall counts what it drops
    assert not camera_can_connect(home)
    home.wait_for(lambda: [b for b in home.call("blocks")["blocks"] if b.get("mac") == CAMERA][0]["dropped"] > 0,
                  timeout=10, what="the camera's block to drop packets")
    home.wait_for(lambda: stands_still(home), timeout=15, what="the camera's upload to stop reaching its cloud")
    page.screenshot("standalone-camera-blocked.png")

    page.click("#spin-details [data-action=unblock]")
    page.wait("document.querySelector(\"%s\").dataset.state != 'blocked'" % (NODE % CAMERA))
    assert not [b for b in home.call("blocks")["blocks"] if b.get("mac") == CAMERA]
    assert camera_can_connect(home)
    stopped = cloud_received(home)
    home.wait_for(lambda: cloud_received(home) > stopped + 1000000, timeout=20,
                  what="the camera's upload to reach its cloud again")
    assert page.logs() == []


def test_blocking_one_edge_stops_that_pair_only(home, page):
    """The laptop to example-shop.com, and nothing else: the laptop still
    reads the news, the camera could still reach the shop."""
    laptop = DEVICES["laptop"][0]
    edge = ".spin-edge-hit[data-id='e:%s|g:example-shop.com']" % laptop
    page.goto(page.url)
    page.wait("document.querySelector(\"%s\")" % edge, timeout=20)
    assert can_connect(home, "laptop", "203.0.113.7") and can_connect(home, "laptop", "198.51.100.10")
    page.click(edge)
    page.wait("document.querySelector('#spin-details h3').textContent == 'laptop \u2192 example-shop.com'")
    page.click("#spin-details [data-action=block]")
    blocked_edge = ".spin-edge.spin-edge-blocked[data-id='e:%s|g:example-shop.com']" % laptop
    page.wait("document.querySelector(\"%s\")" % blocked_edge)
    pairs = [b for b in home.call("blocks")["blocks"] if b.get("mac") == laptop]
    assert pairs and all(b["remote"] in ("203.0.113.7", "2001:db8:1::7") for b in pairs)
    assert not can_connect(home, "laptop", "203.0.113.7")
    assert can_connect(home, "laptop", "198.51.100.10")
    assert can_connect(home, "camera", "203.0.113.7")
    assert page.eval("document.querySelector(\"%s\").dataset.state" % (NODE % laptop)) != "blocked"
    page.screenshot("standalone-pair-blocked.png")

    page.click("#spin-details [data-action=unblock]")
    # (once its traffic has aged out, an unblocked pair may leave the picture)
    page.wait("!document.querySelector(\"%s\")" % blocked_edge)
    assert not [b for b in home.call("blocks")["blocks"] if b.get("mac") == laptop]
    assert can_connect(home, "laptop", "203.0.113.7")
    assert page.logs() == []


def test_the_page_follows_changes_made_elsewhere_without_a_reload(home, page):
    speaker = DEVICES["speaker"][0]
    page.goto(page.url)
    page.wait("document.querySelector(\"%s\")" % (NODE % speaker))
    page.eval("window.stillTheSamePage = true")
    block = home.call("block", {"mac": speaker, "note": "from the command line"})
    page.wait("document.querySelector(\"%s\").dataset.state == 'blocked'" % (NODE % speaker))
    home.call("unblock", {"id": block["id"]})
    page.wait("document.querySelector(\"%s\").dataset.state != 'blocked'" % (NODE % speaker))
    assert page.eval("window.stillTheSamePage") is True
    assert page.logs() == []


def test_a_new_name_survives_a_reload_and_an_agent_restart(home, page):
    page.goto(page.url)
    page.click(NODE % CAMERA)
    page.click("#spin-details [data-action=rename]")
    page.fill("#spin-rename-input", "Front door camera")
    page.click("#spin-rename-save")
    page.wait("document.querySelector(\"%s\").dataset.label == 'Front door camera'" % (NODE % CAMERA))

    page.reload()
    page.wait("document.querySelector(\"%s\") && document.querySelector(\"%s\").dataset.label == 'Front door camera'"
              % (NODE % CAMERA, NODE % CAMERA))

    home.stop_agent()
    # the open page says, in words, that it lost the router
    text = page.wait("(document.getElementById('spin-link') || {}).textContent", timeout=15)
    assert "did not answer" in text and "{" not in text
    home.start_agent(www_dir=WWW)
    page.reload()
    page.wait("document.querySelector(\"%s\") && document.querySelector(\"%s\").dataset.label == 'Front door camera'"
              % (NODE % CAMERA, NODE % CAMERA))
    assert home.call("device", {"mac": CAMERA})["name"] == "Front door camera"
    page.logs()  # the stop left failed requests in the console; that was the point


def test_the_alerts_tab_runs_the_same_view_as_luci(home, page):
    """The standalone page has the Alerts tab, and the view says in its
    table what there is to say (no alert in a quiet home, or why none can
    come), never an empty table."""
    from spin_lite import api
    page.page()
    page.goto(page.url + "?view=alerts")
    tabs = page.eval("Array.from(document.querySelectorAll('#tabs a')).map(a => a.textContent)")
    assert tabs == ["Network", "Devices", "Alerts", "Blocks", "Captures"]
    assert page.eval("document.querySelector('#tabs [aria-current]').textContent") == "Alerts"
    text = page.wait("document.querySelector('#spin-alert-table tbody td') && "
                     "document.querySelector('#spin-alert-table tbody').textContent")
    if "anomalies" in api.METHODS:
        assert text == "No alerts: no device has behaved like malware."
    else:
        assert text == "No alerts to show: this spin-lite agent does not run anomaly detection."
    assert page.eval("document.title") == "spin-lite \u2014 Alerts"
    page.logs()


def test_screenshots_desktop_phone_and_dark(home, page):
    shots = []
    for size, opts in (("desktop", {}), ("phone", {"width": 390, "height": 844, "mobile": True}),
                       ("dark", {"dark": True})):
        page.page(**opts)
        for view in ("network", "devices", "alerts", "blocks"):
            page.goto(page.url + "?view=" + view)
            page.wait("document.querySelector('.spin-view') && !document.querySelector('#view > .spinning')")
            if view == "network":
                page.wait("document.querySelectorAll('.spin-device').length == %d" % len(DEVICES))
                page.click(NODE % CAMERA)
            if view == "devices":
                page.wait("document.querySelectorAll('#spin-device-table tr[data-mac]').length == %d" % len(DEVICES))
                page.click("tr[data-mac='%s'] [data-action=timeline]" % CAMERA)
                page.wait("document.querySelector('.spin-timeline')")
            shots.append(page.screenshot("standalone-%s-%s.png" % (view, size), full_page=True))
    assert all(os.path.getsize(p) > 10000 for p in shots)
    assert os.path.dirname(shots[0]) == ARTIFACTS


def test_an_agent_shared_on_the_lan_asks_for_its_token(home, page):
    """rpc_listen on the router's LAN address needs the token: the page
    still loads, asks for the token, refuses a wrong one in words, and
    shows the home with the right one."""
    home.stop_agent()
    home.start_agent(www_dir=WWW, rpc_listen="%s:8080" % LAN4_ROUTER, token="s3cret-token")
    with forward_into(home.ns("router"), LAN4_ROUTER, 8080) as fw:
        page.page()
        page.goto(fw.url + "/spin/")
        page.wait("document.getElementById('spin-token-form')")
        assert page.eval("document.querySelectorAll('.spin-device').length") == 0
        page.fill("#spin-token", "a guess")
        page.click_load("#spin-token-form button")
        text = page.wait("(document.getElementById('spin-token-form') || {}).textContent")
        assert "not accepted" in text
        page.fill("#spin-token", "s3cret-token")
        page.click_load("#spin-token-form button")
        page.wait("document.querySelectorAll('.spin-device').length == %d" % len(DEVICES))
        page.screenshot("standalone-token-desktop.png")
        page.logs()  # the refused probes are 401s in the console, on purpose
