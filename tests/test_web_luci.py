"""The owner uses the LuCI pages on the router.

No LuCI runtime runs here, so a harness stands in for the parts around
the views (tests/web/luci-harness): the menu built from the app's menu.d,
a logged-in session id, rpcd's ACL check built from the app's acl.d and
rpcd's uci object; the views themselves are the shipped files, and their
calls go to the agent's /ubus in uhttpd's JSON-RPC shape. The home is
real: five devices, the agent in the router namespace, nft.
"""

import json
import os

import pytest

from tests.web import luci_www
from tests.web.browser import Browser, available
from tests.world.home import DEVICES, Home
from tests.world.webproxy import forward

CAMERA = DEVICES["camera"][0]
NODE = ".spin-device[data-id='%s']"
VIEWS = ["network", "devices", "alerts", "blocks", "captures", "settings"]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    why = available()
    if why:
        pytest.fail("no browser: " + why)
    www = str(tmp_path_factory.mktemp("www"))
    with Home(agent=True, config={"www_dir": www}) as h:   # the agent starts before the traffic
        # LuCI's tree with the harness, its uci copy read from the agent's config
        h.www = luci_www.build(www, h.agent_config)
        h.wait_for(lambda: len(h.call("devices")["devices"]) == len(DEVICES), timeout=30,
                   what="every device in the agent's table")
        yield h


@pytest.fixture(scope="module")
def luci(home):
    with forward(home.rpc_socket) as fw, Browser() as b:
        b.base = fw.url + "/luci-static/harness/index.html?path=admin/services/spin/"
        yield b


def open_view(b, view):
    b.goto(b.base + view)
    b.wait("window.HARNESS && (HARNESS.bootError || (document.querySelector('#view > *') && "
           "!document.querySelector('#view > .spinning')))")
    assert b.eval("HARNESS.bootError || null") is None


def session_and_acl_held(b):
    """Every call carried the session id, and none asked for more than acl.d grants."""
    calls = b.eval("HARNESS.calls")
    sid = b.eval("HARNESS.sid")
    assert calls and all(c["sid"] == sid for c in calls)
    assert b.eval("HARNESS.denied") == []
    return calls


def test_the_menu_lists_the_five_pages_and_each_loads(home, luci):
    for view in VIEWS:
        open_view(luci, view)
        tabs = luci.eval("Array.from(document.querySelectorAll('#tabs a')).map(a => a.textContent)")
        assert tabs == ["Network", "Devices", "Alerts", "Blocks", "Captures", "Settings"]
        assert luci.eval("document.querySelector('#tabs [aria-current]').textContent") == view.capitalize()
        session_and_acl_held(luci)
        # read-only pages have no Save/Apply footer; the settings form has one
        footer = luci.eval("!!document.querySelector('.cbi-page-actions')")
        assert footer == (view == "settings")
        assert luci.logs() == []
    open_view(luci, "")  # the menu's top entry opens its first child
    assert luci.eval("HARNESS.view") == "spin/network"


def test_network_page_blocks_the_camera_and_the_blocks_page_unblocks_it(home, luci):
    open_view(luci, "network")
    luci.wait("document.querySelectorAll('.spin-device').length == %d" % len(DEVICES))
    luci.click(NODE % CAMERA)
    luci.click("#spin-details [data-action=block]")
    luci.wait("document.querySelector(\"%s\").dataset.state == 'blocked'" % (NODE % CAMERA))
    assert [b for b in home.call("blocks")["blocks"] if b.get("mac") == CAMERA]
    calls = session_and_acl_held(luci)
    assert any(c["method"] == "block" and c["args"] == {"mac": CAMERA, "note": "blocked from the network view"}
               for c in calls)
    luci.screenshot("luci-network-blocked.png")

    open_view(luci, "blocks")
    luci.wait("document.querySelectorAll('#spin-block-table tr[data-id]').length == 1")
    assert "camera" in luci.eval("document.querySelector('#spin-block-table tr[data-id]').textContent")
    luci.click("#spin-block-table [data-action=unblock]")
    luci.wait("document.querySelectorAll('#spin-block-table tr[data-id]').length == 0")
    assert not [b for b in home.call("blocks")["blocks"] if b.get("mac") == CAMERA]
    session_and_acl_held(luci)
    assert luci.logs() == []


def test_devices_page_renames_and_shows_a_timeline(home, luci):
    open_view(luci, "devices")
    row = "#spin-device-table tr[data-mac='%s']" % CAMERA
    luci.wait("document.querySelector(\"%s\")" % row)
    luci.click(row + " [data-action=rename]")
    luci.fill("#spin-rename-input", "Garden camera")
    luci.click("#spin-rename-save")
    luci.wait("document.querySelector(\"%s strong\").textContent == 'Garden camera'" % row)
    assert home.call("device", {"mac": CAMERA})["name"] == "Garden camera"
    luci.click(row + " [data-action=timeline]")
    bars = luci.wait("document.querySelectorAll('.spin-timeline .spin-bar').length")
    assert bars >= 1
    session_and_acl_held(luci)
    assert luci.logs() == []


def test_quarantine_from_the_devices_page_and_release_from_the_blocks_page(home, luci):
    bulb = DEVICES["bulb"][0]
    open_view(luci, "devices")
    row = "#spin-device-table tr[data-mac='%s']" % bulb
    luci.wait("document.querySelector(\"%s\")" % row)
    luci.click(row + " [data-action=quarantine]")   # the confirm() is answered yes
    luci.wait("document.querySelector(\"%s .spin-badge\").textContent == 'Quarantined'" % row)
    assert [q["mac"] for q in home.call("blocks")["quarantines"]] == [bulb]
    assert luci.eval("!!document.querySelector(\"%s [data-action=release]\")" % row)

    open_view(luci, "blocks")
    luci.wait("document.querySelectorAll('#spin-quarantine-table tr[data-mac]').length == 1")
    assert "bulb" in luci.eval("document.querySelector('#spin-quarantine-table tr[data-mac]').textContent")
    luci.click("#spin-quarantine-table [data-action=release]")
    luci.wait("document.querySelectorAll('#spin-quarantine-table tr[data-mac]').length == 0")
    assert home.call("blocks")["quarantines"] == []
    session_and_acl_held(luci)
    assert luci.logs() == []


def test_a_quarantined_device_is_marked_in_network_and_devices_and_released_from_the_picture(home, luci):
    """A quarantine made elsewhere (the detector's or `spin call`): the
    Network picture draws the bulb in the quarantine colour, its details
    and its Devices row say why and until when, and Release in the
    picture lets it back."""
    bulb = DEVICES["bulb"][0]
    home.call("quarantine", {"mac": bulb, "minutes": 15, "reason": "telnet scan"})
    try:
        open_view(luci, "network")
        node = NODE % bulb
        luci.wait("document.querySelector(\"%s\") && document.querySelector(\"%s\").dataset.state == 'quarantined'"
                  % (node, node))
        assert luci.eval("document.querySelector(\"%s\").classList.contains('spin-state-quarantined')" % node)
        fill = "getComputedStyle(document.querySelector(\"%s rect\")).fill" % node
        assert luci.eval(fill) != luci.eval("getComputedStyle(document.querySelector(\"%s rect\")).fill" % (NODE % CAMERA))
        luci.click(node)
        details = luci.wait("document.querySelector('#spin-details .spin-state-detail') && "
                            "document.querySelector('#spin-details').innerText")
        assert "Quarantined" in details and "telnet scan; ends in 15 min" in details
        assert not luci.eval("!!document.querySelector('#spin-details [data-action=block]')")
        luci.screenshot("luci-network-quarantined.png")

        open_view(luci, "devices")
        row = "#spin-device-table tr[data-mac='%s']" % bulb
        luci.wait("document.querySelector(\"%s .spin-state-detail\")" % row)
        assert luci.eval("document.querySelector(\"%s .spin-badge\").textContent" % row) == "Quarantined"
        assert luci.eval("document.querySelector(\"%s .spin-state-detail\").textContent" % row) == \
            "telnet scan; ends in 15 min"

        open_view(luci, "network")
        luci.wait("document.querySelector(\"%s\")" % node)
        luci.click(node)
        luci.click("#spin-details [data-action=release]")
        luci.wait("document.querySelector(\"%s\").dataset.state != 'quarantined'" % node)
        assert home.call("blocks")["quarantines"] == []
        calls = session_and_acl_held(luci)
        assert any(c["method"] == "release" and c["args"] == {"mac": bulb} for c in calls)
    finally:
        if home.call("blocks")["quarantines"]:
            home.call("release", {"mac": bulb})
    assert luci.logs() == []


def test_the_alerts_page_reads_the_live_agent(home, luci):
    """Against the real agent: no alert yet in a quiet home (or, on an
    agent without the response part, why there are none), said in the
    table, never an empty one."""
    from spin_lite import api
    open_view(luci, "alerts")
    text = luci.wait("document.querySelector('#spin-alert-table tbody td') && "
                     "document.querySelector('#spin-alert-table tbody').textContent")
    if "anomalies" in api.METHODS:
        assert text == "No alerts: no device has behaved like malware."
    else:
        assert text == "No alerts to show: this spin-lite agent does not run anomaly detection."
    calls = session_and_acl_held(luci)
    assert any(c["method"] == "anomalies" for c in calls)
    luci.logs()


def test_an_alerts_read_the_login_may_not_make_is_said_in_words(home, luci):
    with open(luci_www.ACL) as f:
        acl = json.load(f)
    acl["luci-app-spin"]["read"]["ubus"]["spin"].remove("anomalies")
    path = os.path.join(home.www, "luci-static", "harness-data", "acl.json")
    with open(path, "w") as f:
        json.dump(acl, f)
    try:
        open_view(luci, "alerts")
        text = luci.wait("document.querySelector('#spin-alert-table tbody td') && "
                         "document.querySelector('#spin-alert-table tbody').textContent")
        assert text == "Reading the alerts failed: you are not allowed to do that."
        assert "spin.anomalies" in luci.eval("HARNESS.denied")
    finally:
        with open(luci_www.ACL) as f:
            shipped = json.load(f)
        with open(path, "w") as f:
            json.dump(shipped, f)
    luci.logs()


def test_a_destination_is_blocked_for_everyone_then_ignored_then_shown_again(home, luci):
    group = ".spin-group[data-label='example-music.com']"
    open_view(luci, "network")
    luci.wait("document.querySelector(\"%s\")" % group, timeout=20)
    luci.click(group)
    luci.click("#spin-details [data-action=block]")
    luci.wait("document.querySelector(\"%s\").dataset.state == 'blocked'" % group)
    remote_blocks = [b for b in home.call("blocks")["blocks"] if b.get("remote") and not b.get("mac")]
    assert remote_blocks and all(b["remote"].startswith("203.0.113.") for b in remote_blocks)
    luci.click("#spin-details [data-action=unblock]")
    luci.wait("document.querySelector(\"%s\").dataset.state != 'blocked'" % group)
    assert not [b for b in home.call("blocks")["blocks"] if b.get("remote")]

    luci.click("#spin-details [data-action=ignore]")
    luci.wait("!document.querySelector(\"%s\")" % group)
    ignored = [i["remote"] for i in home.call("ignored")["ignored"] if i["why"] == "owner"]
    assert ignored and all(r.startswith("203.0.113.") for r in ignored)
    open_view(luci, "blocks")
    luci.wait("document.querySelectorAll('#spin-ignore-table tr[data-why=owner] [data-action=unignore]').length == %d" % len(ignored))
    for left in range(len(ignored) - 1, -1, -1):
        luci.click("#spin-ignore-table tr[data-why=owner] [data-action=unignore]")
        luci.wait("document.querySelectorAll('#spin-ignore-table tr[data-why=owner] [data-action=unignore]').length == %d" % left)
    assert [i for i in home.call("ignored")["ignored"] if i["why"] == "owner"] == []
    session_and_acl_held(luci)
    assert luci.logs() == []


def test_the_blocks_page_blocks_an_address_for_an_hour_and_refuses_nonsense(home, luci):
    open_view(luci, "blocks")
    luci.fill("#spin-block-remote", "not-an-address")
    luci.click("#spin-block-form button[type=submit]")
    text = luci.wait("(document.querySelector('.alert-message') || {}).textContent")
    assert "Blocking not-an-address failed" in text and "invalid" in text and "{" not in text
    assert home.call("blocks")["blocks"] == []

    luci.eval("document.querySelector('.alert-message').remove()")
    luci.fill("#spin-block-remote", "198.51.100.40")
    luci.eval("document.getElementById('spin-block-minutes').value = '60'")
    luci.click("#spin-block-form button[type=submit]")
    luci.wait("document.querySelectorAll('#spin-block-table tr[data-id]').length == 1")
    row = luci.eval("document.querySelector('#spin-block-table tr[data-id]').textContent")
    assert "198.51.100.40" in row and ("in 1 h" in row or "in 60 min" in row)
    [b] = home.call("blocks")["blocks"]
    assert b["remote"] == "198.51.100.40" and b["expires"]
    luci.screenshot("luci-blocks-desktop.png")
    luci.click("#spin-block-table [data-action=unblock]")
    luci.wait("document.querySelectorAll('#spin-block-table tr[data-id]').length == 0")
    assert home.call("blocks")["blocks"] == []
    session_and_acl_held(luci)
    luci.logs()


def test_a_refused_action_is_said_in_words(home, luci):
    """An owner whose login lacks the write grant (acl.d without `block`):
    the page says blocking failed and why, with no JSON in sight, and the
    camera is not blocked."""
    with open(luci_www.ACL) as f:
        acl = json.load(f)
    acl["luci-app-spin"]["write"]["ubus"]["spin"].remove("block")
    path = os.path.join(home.www, "luci-static", "harness-data", "acl.json")
    with open(path, "w") as f:
        json.dump(acl, f)
    try:
        open_view(luci, "network")
        luci.click(NODE % CAMERA)
        luci.click("#spin-details [data-action=block]")
        text = luci.wait("(document.querySelector('.alert-message') || {}).textContent")
        assert "failed" in text and "not allowed" in text
        for raw in ("{", "jsonrpc", "-32002", "RPCError"):
            assert raw not in text
        assert luci.eval("HARNESS.denied") == ["spin.block"]
        assert not [b for b in home.call("blocks")["blocks"] if b.get("mac") == CAMERA]
        luci.screenshot("luci-refused.png")
    finally:
        with open(luci_www.ACL) as f:
            shipped = json.load(f)
        with open(path, "w") as f:
            json.dump(shipped, f)
    luci.logs()


def test_settings_page_changes_the_scan_interval(home, luci):
    open_view(luci, "settings")
    field = "#cbi-spin [data-name=scan_interval] input"
    assert luci.eval("document.querySelector('%s').value" % field) == "1"  # the home's config
    # a wrong value is refused in the page and nothing is applied
    luci.fill(field, "0")
    luci.click(".cbi-page-actions .cbi-button-apply")
    luci.wait("document.body.classList.contains('modal-overlay-active')")
    assert "invalid" in luci.eval("document.querySelector('#modal_overlay').textContent")
    assert luci.eval("HARNESS.applied") == []
    luci.eval("L.ui.hideModal()")

    luci.fill(field, "2")
    luci.click(".cbi-page-actions .cbi-button-apply")
    applied = luci.wait("HARNESS.applied.length && HARNESS.applied")
    # the flags that were absent from the file are written with their
    # default, as LuCI does for an option with rmempty off
    assert applied == [{"spin": {"main": {"scan_interval": "2", "enabled": "1", "dns_snoop": "1"}}}]
    # what rpcd's commit and procd's reload trigger do: the file, then a HUP
    home.write_agent_config(www_dir=home.www, scan_interval=2)
    home.reload_agent()
    home.wait_for(lambda: home.call("status")["scan_interval"] == 2, timeout=10,
                  what="the agent to take the new scan interval")
    luci_www.set_uci(home.www, home.agent_config)
    open_view(luci, "settings")
    assert luci.eval("document.querySelector('%s').value" % field) == "2"
    luci.screenshot("luci-settings.png", full_page=True)
    luci.logs()


def test_screenshots_of_every_page_on_a_phone(home, luci):
    luci.page(width=390, height=844, mobile=True)
    for view in VIEWS:
        open_view(luci, view)
        if view == "network":
            luci.wait("document.querySelectorAll('.spin-device').length == %d" % len(DEVICES))
        path = luci.screenshot("luci-%s-phone.png" % view, full_page=True)
        assert os.path.getsize(path) > 5000
    luci.page(dark=True)
    open_view(luci, "network")
    luci.wait("document.querySelectorAll('.spin-device').length == %d" % len(DEVICES))
    luci.screenshot("luci-network-dark.png")
    assert luci.logs() == []
