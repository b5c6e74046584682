"""The house's arrows point one way (DESIGN.md §3): sources -> model ->
actions, the interface on top. Read from the source text, so it holds for
every interpreter and every code path (imports inside functions count)."""

import ast
import os

SRC = os.path.join(os.path.dirname(__file__), "..", "src", "spin_lite")

INTERFACE = ("api", "jsonrpc", "ubus", "ubuslink", "web", "cli", "agent", "mqtt", "mqttlink",
             "controller")
# sources, model, actions and the shared vocabulary
BELOW = ("conntrack", "ctevents", "neigh", "leases", "dnssnoop", "devices", "digest",
         "endpoints", "domains", "services", "names", "detect", "firewall", "blocks", "lanwatch",
         "bridgecount", "scans",
         "capture", "addr", "errors")


def own_imports(name):
    """The spin_lite modules that module `name` imports, anywhere in it."""
    path = os.path.join(SRC, name + ".py")
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module is None:
                out.update(a.name for a in node.names)
            else:
                out.add(node.module.split(".")[0])
    return out


def reach(name):
    """Every spin_lite module `name` pulls in, directly or through others."""
    seen = set()
    todo = [name]
    while todo:
        m = todo.pop()
        if m in seen or not os.path.exists(os.path.join(SRC, m + ".py")):
            continue
        seen.add(m)
        todo.extend(own_imports(m))
    seen.discard(name)
    return seen


def present(names):
    return [n for n in names if os.path.exists(os.path.join(SRC, n + ".py"))]


def test_no_source_model_or_action_reaches_the_interface():
    bad = {}
    for m in present(BELOW):
        hit = sorted(reach(m) & set(INTERFACE))
        if hit:
            bad[m] = hit
    assert bad == {}


def test_the_address_vocabulary_and_the_errors_stand_on_nothing_of_ours():
    assert own_imports("addr") == set()
    assert own_imports("errors") == set()


def test_the_firewall_renders_what_blocks_decides_and_never_asks_back():
    assert "blocks" not in reach("firewall")
    assert "firewall" in own_imports("blocks")


# modules whose import means I/O: processes, sockets, files, the clock
WITH_IO = ("plat", "firewall", "blocks", "conntrack", "ctevents", "neigh", "leases", "dnssnoop",
           "names", "capture", "anomalies")


def test_the_firewall_imports_nothing_of_the_decisions():
    # blocks holds the owner's and the detector's decisions; the firewall
    # is handed their state and never reaches back for either
    assert not (reach("firewall") & {"blocks", "anomalies", "detect"})


def test_the_detector_is_pure_and_the_response_acts_through_blocks():
    if present(["detect"]):
        assert not (reach("detect") & set(WITH_IO)), reach("detect")
    # the response does not render rules itself: it asks the block store
    assert "firewall" not in reach("anomalies") and "blocks" not in own_imports("anomalies")


def test_the_graph_check_itself_sees_an_arrow_pointing_up():
    # the interface does import the parts below it: the reader finds that
    assert "api" in own_imports("jsonrpc")
    assert {"addr", "errors"} <= reach("api")
