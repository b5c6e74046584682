"""The three places a router owner reads about options say the same as
the agent's own table of defaults (src/spin_lite/config.py OPTIONS): the
shipped /etc/config/spin, and the README's table."""

import os
import re
import subprocess
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "src"))

from spin_lite import config  # noqa: E402

SHIPPED = os.path.join(TOP, "files", "etc", "config", "spin")


def test_the_shipped_config_reads_back_as_exactly_the_defaults():
    cfg, warnings = config.load(SHIPPED)
    assert warnings == []
    assert cfg == config.defaults()


def test_the_shipped_config_names_every_option_under_a_comment():
    lines = open(SHIPPED).read().split("\n")
    for name in config.OPTIONS:
        at = [i for i, line in enumerate(lines)
              if re.match(r"^\s*#?\s*(option|list) %s( |$)" % re.escape(name), line)]
        assert at, "/etc/config/spin does not mention %s" % name
        # the comment block above it (options of one topic may share one)
        i = at[0] - 1
        while i > 0 and re.match(r"^\s*(option|list) ", lines[i]):
            i -= 1
        assert lines[i].strip().startswith("#"), "%s has no comment saying why it matters" % name


def test_the_readme_table_is_generated_from_the_defaults():
    table = subprocess.run([sys.executable, os.path.join(TOP, "tools", "config_table.py")], check=True,
                           stdout=subprocess.PIPE, universal_newlines=True).stdout
    readme = open(os.path.join(TOP, "README.md")).read()
    m = re.search(r"<!-- config table: [^\n]*-->\n(.*?)<!-- config table end -->", readme, re.S)
    assert m, "README.md has no config table markers"
    assert m.group(1) == table, "README's table is stale: python3 tools/config_table.py --readme"
    for name in config.OPTIONS:
        assert "| `%s` |" % name in table
