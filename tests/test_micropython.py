"""The pure core runs on MicroPython too (DESIGN.md §2): its unit tests in
tests/core pass under MicroPython 1.27 (the WebAssembly port in Node) as
they do under pytest, and no test is silently left out."""

import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_count():
    """How many tests pytest collects from tests/core."""
    p = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests/core"],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=os.path.join(REPO, "src")),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert p.returncode == 0, "pytest could not collect tests/core:\n" + p.stdout
    return sum(1 for line in p.stdout.splitlines() if "::" in line)


def test_the_core_tests_pass_under_micropython():
    p = subprocess.run(["node", "tests/mpy/run.mjs"], cwd=REPO, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=600)
    out = p.stdout
    assert "MicroPython v1.27" in out, "not MicroPython 1.27:\n" + out
    assert p.returncode == 0, "MicroPython run failed (rc %d):\n%s" % (p.returncode, out)
    summary = re.search(r"^(\d+) passed, (\d+) failed$", out, re.M)
    assert summary, "no summary line from tests/mpy/run.mjs:\n" + out
    ran = int(summary.group(1)) + int(summary.group(2))
    collected = pytest_count()
    assert collected > 0, "pytest collected nothing from tests/core"
    assert ran >= collected, "MicroPython ran %d tests, pytest collects %d:\n%s" % (ran, collected, out)
