"""A router's /www for the LuCI harness, assembled in a directory.

    www/spin/                           luci-app-spin's htdocs/spin (the runtime, page.css)
    www/luci-static/resources/view/     luci-app-spin's views
    www/luci-static/resources/spin/     luci-app-spin's shared drawing code
    www/luci-static/resources/form.js   \\ the harness's stand-ins for LuCI's
    www/luci-static/resources/uci.js    /  form and uci modules
    www/luci-static/harness/            the harness page (LuCI's frame)
    www/luci-static/harness-data/       menu.d and acl.d as shipped, /etc/config/spin as uci JSON

The agent's web part serves it (www_dir), as uhttpd serves /www on a
router, and answers /ubus itself.
"""

import json
import os

from spin_lite import config

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
APP = os.path.join(REPO, "luci-app-spin")
HARNESS = os.path.join(HERE, "luci-harness")
MENU = os.path.join(APP, "root/usr/share/luci/menu.d/luci-app-spin.json")
ACL = os.path.join(APP, "root/usr/share/rpcd/acl.d/luci-app-spin.json")


def uci_json(path):
    """A UCI file as rpcd's `uci get` shows it: {name: {.name, .type, option: value}}."""
    with open(path) as f:
        sections, _ = config.parse_uci(f.read())
    out = {}
    for i, (stype, name, opts) in enumerate(sections):
        name = name or "cfg%02x" % i
        sec = {".name": name, ".type": stype, ".anonymous": False}
        sec.update(opts)
        out[name] = sec
    return out


def build(www, uci_path, acl=None):
    """Make the tree under www; acl overrides the shipped acl.d (dict)."""
    res = os.path.join(www, "luci-static", "resources")
    os.makedirs(res, exist_ok=True)
    os.symlink(os.path.join(APP, "htdocs", "spin"), os.path.join(www, "spin"))
    for d in ("view", "spin"):
        os.symlink(os.path.join(APP, "htdocs", "luci-static", "resources", d), os.path.join(res, d))
    for f in ("form.js", "uci.js"):
        os.symlink(os.path.join(HARNESS, "resources", f), os.path.join(res, f))
    os.symlink(HARNESS, os.path.join(www, "luci-static", "harness"))
    data = os.path.join(www, "luci-static", "harness-data")
    os.makedirs(data, exist_ok=True)
    with open(MENU) as f:
        menu = json.load(f)
    if acl is None:
        with open(ACL) as f:
            acl = json.load(f)
    for name, obj in (("menu.json", menu), ("acl.json", acl), ("uci-spin.json", uci_json(uci_path))):
        with open(os.path.join(data, name), "w") as f:
            json.dump(obj, f)
    return www


def set_uci(www, uci_path):
    """Refresh the harness's copy of /etc/config/spin after the file changed."""
    with open(os.path.join(www, "luci-static", "harness-data", "uci-spin.json"), "w") as f:
        json.dump(uci_json(uci_path), f)
