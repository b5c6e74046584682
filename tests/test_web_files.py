"""The LuCI app's files agree with each other and with the agent, without
a browser: every script parses, every menu entry names a view that
exists, every `spin` method a view declares exists in api.METHODS and is
granted by acl.d on the side (read or write) the method table says, and
the settings form only edits options the agent knows."""

import glob
import json
import os
import re
import subprocess

from spin_lite import api, config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = os.path.join(REPO, "luci-app-spin")
RES = os.path.join(APP, "htdocs", "luci-static", "resources")
VIEWS = sorted(glob.glob(os.path.join(RES, "view", "spin", "*.js")))
SCRIPTS = VIEWS + sorted(glob.glob(os.path.join(RES, "spin", "*.js"))) + [os.path.join(APP, "htdocs", "spin", "luci-lite.js")]

DECLARE = re.compile(r"rpc\.declare\(\{\s*object:\s*'(\w+)',\s*method:\s*'(\w+)'")


def test_every_script_parses():
    assert len(VIEWS) == 6
    for path in SCRIPTS:
        p = subprocess.run(["node", "--check", path], capture_output=True, text=True)
        assert p.returncode == 0, "%s: %s" % (path, p.stderr)


def test_every_menu_entry_opens_a_view_that_exists():
    with open(os.path.join(APP, "root/usr/share/luci/menu.d/luci-app-spin.json")) as f:
        menu = json.load(f)
    views = []
    for path, entry in menu.items():
        action = entry["action"]
        if action["type"] == "view":
            views.append(action["path"])
            assert os.path.exists(os.path.join(RES, "view", action["path"] + ".js")), path
    assert sorted(views) == sorted("spin/" + os.path.basename(v)[:-3] for v in VIEWS)
    top = menu["admin/services/spin"]
    assert top["depends"] == {"acl": ["luci-app-spin"], "uci": {"spin": True}}


def test_every_declared_method_exists_and_the_acl_grants_it_on_the_right_side():
    with open(os.path.join(APP, "root/usr/share/rpcd/acl.d/luci-app-spin.json")) as f:
        grant = json.load(f)["luci-app-spin"]
    read, write = set(grant["read"]["ubus"]["spin"]), set(grant["write"]["ubus"]["spin"])
    declared = set()
    for path in SCRIPTS:   # the views and the modules they share (spin/actions.js)
        with open(path) as f:
            for obj, method in DECLARE.findall(f.read()):
                assert obj == "spin", (path, obj)
                declared.add(method)
    assert {"graph", "devices", "blocks", "block", "unblock", "name"} <= declared
    for method in declared:
        assert method in api.METHODS, "%s declares spin.%s, which the agent does not have" % (path, method)
        writes = api.METHODS[method][2]
        assert method in (write if writes else read), "acl.d does not grant spin.%s under %s" % (
            method, "write" if writes else "read")
    assert grant["read"]["uci"] == ["spin"] and grant["write"]["uci"] == ["spin"]


def test_the_settings_form_edits_only_options_the_agent_knows():
    with open(os.path.join(RES, "view", "spin", "settings.js")) as f:
        text = f.read()
    options = re.findall(r"s\.option\(form\.\w+, '(\w+)'", text)
    assert len(options) >= 6
    for name in options:
        assert name in config.OPTIONS, "settings.js edits %r, not in config.OPTIONS" % name
    for name in re.findall(r"m\.section\(form\.NamedSection, '(\w+)', '(\w+)'", text):
        assert name == ("main", "spin")
