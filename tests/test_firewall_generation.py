"""The per-scan check of our nft table: skipped while the kernel's ruleset
generation stands still, done in full as soon as anything moved it."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.netns

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

STORY = r"""
import json, sys
from spin_lite import firewall, plat
state = json.load(open(sys.argv[1]))
nft = firewall.Nft({"run_dir": sys.argv[2]})
calls = []
real_run = plat.run
def counting(argv, **kw):
    calls.append(argv[:3])
    return real_run(argv, **kw)
plat.run = counting
out = {}
out["loaded"] = nft.apply(state)
before = len(calls)
out["first"] = nft.intact(state)
out["first_runs"] = len(calls) - before
before = len(calls)
out["again"] = [nft.intact(state) for _ in range(5)]
out["again_runs"] = len(calls) - before
real_run(["nft", "add", "table", "inet", "fw4"])   # fw4 reloads: another table
out["after_fw4"] = nft.intact(state)
real_run(["nft", "flush", "ruleset"])
out["after_flush"] = nft.intact(state)
print(json.dumps(out))
"""


def test_the_check_lists_the_table_only_when_the_ruleset_moved(tmp_path):
    ns = "sl-gen-%d" % os.getpid()
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        state = os.path.join(TOP, "tests", "firewall_cases", "02_camera_blocked.json")
        p = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", STORY, state, str(tmp_path)],
                           capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, PYTHONPATH=os.path.join(TOP, "src")))
        assert p.returncode == 0, p.stderr
        out = json.loads(p.stdout)
    finally:
        subprocess.run(["ip", "netns", "del", ns])
    assert out["loaded"] is None
    assert out["first"] is True and out["first_runs"] >= 1
    assert out["again"] == [True] * 5 and out["again_runs"] == 0
    assert out["after_fw4"] is True          # listed again, still whole
    assert out["after_flush"] is False
