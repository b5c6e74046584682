"""The README's Detection table names every rule of detect.RULES with its
layer, what it does on its own, and every threshold at its default, so an
owner can write a detect_threshold without reading the code."""

import os
import re
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "src"))

from spin_lite import detect  # noqa: E402


def test_the_readme_lists_every_rule_and_threshold_at_its_default():
    readme = open(os.path.join(TOP, "README.md")).read()
    m = re.search(r"\n## Detection\n(.*?)\n## ", readme, re.S)
    assert m, "README.md has no Detection section"
    rows = {}
    for line in m.group(1).split("\n"):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells
    assert sorted(rows) == sorted(detect.RULES)
    for name, rule in detect.RULES.items():
        _, layer, alone, thresholds = rows[name]
        assert layer == rule["layer"] and alone == rule["severity"], name
        for t, v in rule["thresholds"].items():
            assert "`%s=%s`" % (t, v) in thresholds, (name, t, v)


def test_the_alerts_view_has_an_owners_title_for_every_rule():
    """The LuCI Alerts view names rules in words; a rule it does not know
    would show as its key."""
    js = open(os.path.join(TOP, "luci-app-spin/htdocs/luci-static/resources/view/spin/alerts.js")).read()
    block = js[js.index("var RULE_TITLES"):js.index("};", js.index("var RULE_TITLES"))]
    assert sorted(re.findall(r"^\t(\w+):", block, re.M)) == sorted(detect.RULES)
