"""A busy home on the Network page: 20 devices, 200 destinations.

No simulated home has that many devices, so the page gets a recorded agent
(the harness's ?fixture=): the same reply shapes the agent sends, built
here from a fixed seed. What is checked is what an owner needs to read
the picture: every device is there, the destinations are grouped by
domain and the small ones folded into one "others" node, no two labels
cover each other, the filter narrows it down, and a phone gets fewer
groups. The screenshots are for a person to look at.
"""

import functools
import http.server
import json
import os
import random
import threading
import time

import pytest

from tests.web import luci_www
from tests.web.browser import Browser, available

# a DHCP hostname is whatever the device says: one of them says markup
HOSTILE = '<img src=x onerror="window.pwned=1">'
DEVICE_NAMES = ["camera", "doorbell", "speaker", "tv", "thermostat", "laptop", "phone-anna",
                "phone-ben", "tablet", "printer", "bulb-kitchen", "bulb-hall", "vacuum", "nas",
                "console", "watch", "fridge", "plug-1", HOSTILE, "desktop"]


def busy_agent(seed=6):
    rnd = random.Random(seed)
    now = int(time.time())   # the page compares first_seen with its own clock
    devices, nodes, edges = [], [], []
    domains = ["example-%d.com" % i for i in range(60)]
    endpoints = []
    for i in range(200):
        dom = domains[min(59, int(rnd.expovariate(1 / 25.0)))]
        ip = "203.0.%d.%d" % (113 + i // 250, i % 250 + 1)
        endpoints.append((ip, "h%d.%s" % (i, dom), dom))
    for i, name in enumerate(DEVICE_NAMES):
        mac = "02:00:00:00:01:%02x" % i
        ip = "192.168.8.%d" % (100 + i)
        devices.append({"mac": mac, "name": name, "hostname": name, "ips": [ip],
                        "first_seen": now - (600 if name == "watch" else 86400),
                        "last_seen": now, "connections": rnd.randint(0, 40),
                        "rate_out": rnd.randint(0, 200000), "rate_in": rnd.randint(0, 900000),
                        "bucket": {"bytes_out": 0, "bytes_in": 0, "top": []}})
        nodes.append({"id": mac, "kind": "device", "name": name, "ips": [ip]})
        for ep in rnd.sample(endpoints, rnd.randint(3, 25)):
            edges.append({"from": mac, "to": ep[0], "bytes": int(rnd.paretovariate(1.2) * 2000)})
    used = set(e["to"] for e in edges)
    for ep in endpoints:
        if ep[0] not in used:
            edges.append({"from": rnd.choice(devices)["mac"], "to": ep[0], "bytes": rnd.randint(100, 3000)})
    # anna's phone is blocked from the lightest domain of all; its traffic
    # there has stopped, and the agent still sends the edge, at 0 bytes
    domain_of = {ip: dom for ip, _, dom in endpoints}
    per_domain = {}
    for e in edges:
        per_domain[domain_of[e["to"]]] = per_domain.get(domain_of[e["to"]], 0) + e["bytes"]
    lightest = min(per_domain, key=lambda dom: (per_domain[dom], dom))
    shop = [ip for ip, _, dom in endpoints if dom == lightest][0]
    edges.append({"from": devices[6]["mac"], "to": shop, "bytes": 0})
    for ip, name, dom in endpoints:
        if any(e["to"] == ip for e in edges):
            b = sum(e["bytes"] for e in edges if e["to"] == ip)
            nodes.append({"id": ip, "kind": "endpoint", "bytes": b, "names": [name], "domain": dom})
    blocks = {"blocks": [{"id": 1, "mac": devices[3]["mac"], "what": "tv", "created": now},
                         {"id": 2, "remote": endpoints[0][0], "what": "every device to " + endpoints[0][0],
                          "created": now},
                         {"id": 3, "mac": devices[6]["mac"], "remote": shop,
                          "what": "phone-anna to " + shop, "created": now}],
              "quarantines": [{"mac": devices[12]["mac"], "name": "vacuum", "created": now, "reason": "scan"}],
              "allows": []}
    return {"status": {"scan_interval": 5, "version": "fixture"}, "devices": {"devices": devices},
            "graph": {"nodes": nodes, "edges": edges, "limit": 20,
                      "others": {devices[0]["mac"]: {"count": 4000, "bytes": 123456},
                                 devices[1]["mac"]: {"count": 17, "bytes": 999}}},
            "blocks": blocks, "history": {"points": []}}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    why = available()
    if why:
        pytest.fail("no browser: " + why)
    tmp = tmp_path_factory.mktemp("busy")
    cfg = tmp / "spin"
    cfg.write_text("config spin 'main'\n\toption scan_interval '5'\n")
    www = luci_www.build(str(tmp / "www"), str(cfg))
    data = busy_agent()
    with open(os.path.join(www, "luci-static", "harness-data", "busy.json"), "w") as f:
        json.dump(data, f)
    # the same home whose agent refuses the graph, with its reason, and one that gives none
    for name, failed in (("refused", {"__failed": 11, "data": {"error": "reply of 2000000 bytes does not fit"}}),
                         ("broken", {"__failed": 9})):
        with open(os.path.join(www, "luci-static", "harness-data", name + ".json"), "w") as f:
            json.dump(dict(data, graph=failed), f)
    shop = data["blocks"]["blocks"][2]["remote"]
    handler = functools.partial(QuietHandler, directory=www)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with Browser() as b:
            b.base = "http://127.0.0.1:%d/luci-static/harness/index.html?fixture=busy&path=admin/services/spin/network" \
                % server.server_address[1]
            b.lightest = [n["domain"] for n in data["graph"]["nodes"] if n["id"] == shop][0]
            yield b
    finally:
        server.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


LABELS_OVERLAP = """(() => {
    const boxes = Array.from(document.querySelectorAll('.spin-labels text')).map(t => [t.textContent, t.getBBox()]);
    const hits = [];
    for (let i = 0; i < boxes.length; i++)
        for (let j = i + 1; j < boxes.length; j++) {
            const a = boxes[i][1], b = boxes[j][1];
            if (a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height)
                hits.push(boxes[i][0] + ' / ' + boxes[j][0]);
        }
    return hits;
})()"""


def drawn(b):
    return b.eval("""({
        devices: document.querySelectorAll('.spin-device').length,
        groups: document.querySelectorAll('.spin-group').length,
        others: Array.from(document.querySelectorAll('.spin-other')).map(n => n.dataset.label),
        labels: document.querySelectorAll('.spin-labels text').length,
        summary: document.getElementById('spin-summary').textContent,
        states: Object.fromEntries(Array.from(document.querySelectorAll('.spin-device')).map(n => [n.dataset.label, n.dataset.state]))
    })""")


def test_twenty_devices_and_two_hundred_destinations_stay_readable(site):
    site.goto(site.base)
    site.wait("document.querySelectorAll('.spin-device').length == 20")
    d = drawn(site)
    assert d["devices"] == 20
    assert d["groups"] == 40 and len(d["others"]) == 1 and d["others"][0].endswith("others")
    assert "folded" in d["summary"]
    assert "4017 lighter destinations not shown" in d["summary"]   # the agent's others, summed
    assert d["states"]["tv"] == "blocked" and d["states"]["vacuum"] == "quarantined"
    assert d["states"]["watch"] == "new"
    assert site.eval("document.querySelectorAll('.spin-group.spin-state-blocked').length") == 1
    assert site.eval(LABELS_OVERLAP) == []
    assert d["labels"] >= 20   # at least every device says who it is
    # the lightest domain is drawn, not folded: anna's phone is blocked there
    blocked_pair = site.eval("""Array.from(document.querySelectorAll('.spin-edge.spin-edge-blocked'))
        .map(l => l.dataset.id).filter(id => id.startsWith('e:02:00:00:00:01:06|'))""")
    assert blocked_pair == ["e:02:00:00:00:01:06|g:%s" % site.lightest]
    site.screenshot("busy-network-desktop.png")

    site.fill("#spin-network input[type=search]", "example-3.com")
    site.wait("document.querySelectorAll('.spin-group').length == 1")
    kept = drawn(site)
    assert kept["others"] == []
    assert 0 < kept["devices"] < 20
    site.fill("#spin-network input[type=search]", "laptop")
    site.wait("document.querySelectorAll('.spin-device').length == 1")
    assert site.eval("document.querySelector('.spin-device').dataset.label") == "laptop"
    assert site.logs() == []


def test_a_name_with_markup_is_shown_as_text_everywhere(site):
    site.goto(site.base)
    site.wait("document.querySelectorAll('.spin-device').length == 20")
    hostile = "02:00:00:00:01:%02x" % DEVICE_NAMES.index(HOSTILE)
    site.click(".spin-device[data-id='%s']" % hostile)
    assert site.eval("document.querySelector('#spin-details h3').textContent") == HOSTILE
    site.goto(site.base.replace("spin/network", "spin/devices"))
    site.wait("document.querySelectorAll('#spin-device-table tr[data-mac]').length == 20")
    assert site.eval("document.querySelector(\"tr[data-mac='%s'] strong\").textContent" % hostile) == HOSTILE
    assert site.eval("document.querySelectorAll('#view img').length") == 0
    assert site.eval("window.pwned === undefined")
    site.logs()


def test_a_phone_gets_fewer_groups_and_no_overlap(site):
    site.page(width=390, height=844, mobile=True)
    site.goto(site.base)
    site.wait("document.querySelectorAll('.spin-device').length == 20")
    d = drawn(site)
    assert d["groups"] == 14 and len(d["others"]) == 1
    assert site.eval(LABELS_OVERLAP) == []
    site.screenshot("busy-network-phone.png", full_page=True)
    site.page(dark=True)
    site.goto(site.base)
    site.wait("document.querySelectorAll('.spin-device').length == 20")
    site.screenshot("busy-network-dark.png")
    assert site.logs() == []


def test_luci_dark_mode_recolours_the_picture(site):
    """LuCI's bootstrap theme marks dark mode on <html data-darkmode="true">,
    whatever the system's setting: the colours follow it."""
    site.page()
    site.goto(site.base)
    site.wait("document.querySelectorAll('.spin-device').length == 20")
    fill = "getComputedStyle(document.querySelector('.spin-device rect')).fill"
    light = site.eval(fill)
    site.eval("document.documentElement.setAttribute('data-darkmode', 'true')")
    assert site.eval(fill) != light
    site.eval("document.documentElement.removeAttribute('data-darkmode')")
    assert site.eval(fill) == light


def test_a_failed_graph_call_is_said_not_drawn_as_an_empty_picture(site):
    """The Network view asks for a bounded graph (limit), and when the
    agent refuses it the owner reads why above the canvas, in the agent's
    words when it gave some, instead of a blank picture."""
    site.page()
    site.goto(site.base)
    site.wait("document.querySelectorAll('.spin-device').length == 20")
    graph_calls = site.eval("HARNESS.calls.filter(c => c.method == 'graph').map(c => c.args.limit)")
    assert graph_calls and all(limit == 20 for limit in graph_calls)
    assert site.eval("getComputedStyle(document.getElementById('spin-graph-error')).display") == "none"
    for fixture, words in (("refused", ["Drawing the picture failed", "does not fit"]),
                           ("broken", ["Drawing the picture failed", "error"])):
        site.goto(site.base.replace("fixture=busy", "fixture=" + fixture))
        site.wait("document.getElementById('spin-graph-error') && "
                  "getComputedStyle(document.getElementById('spin-graph-error')).display != 'none'")
        text = site.eval("document.getElementById('spin-graph-error').textContent")
        for w in words:
            assert w in text, text
    site.screenshot("network-graph-refused.png")
    site.logs()


def test_the_views_join_every_page_of_devices(site):
    """The agent sends at most 150 devices a reply: the views ask page
    after page (common.allPages) until none remain, and a failed page
    fails the whole list rather than leave half a home drawn."""
    site.page()
    site.goto(site.base)
    site.wait("document.querySelectorAll('.spin-device').length == 20")
    calls = site.eval("HARNESS.calls.filter(c => c.method == 'devices').map(c => [c.args.limit, c.args.offset])")
    assert calls and all(c == [150, 0] for c in calls)
    fake = """(limit, offset) => Promise.resolve(offset >= FAIL ? 4 : {
        devices: Array.from({length: Math.min(limit, 400 - offset)}, (_, i) => offset + i),
        remaining: Math.max(0, 400 - offset - limit)})"""
    got = site.eval("L.require('spin.common').then(c => c.allPages(%s, 'devices', 150))"
                    ".then(a => [a.length, a[0], a[399], new Set(a).size])" % fake.replace("FAIL", "1e9"))
    assert got == [400, 0, 399, 400]
    failed = site.eval("L.require('spin.common').then(c => c.allPages(%s, 'devices', 150))"
                       ".then(a => 'joined ' + a.length, e => 'failed: ' + e.message)" % fake.replace("FAIL", "300"))
    assert failed.startswith("failed") and "ubus code 4" in failed, failed
    site.logs()
