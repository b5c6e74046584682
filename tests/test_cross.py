"""The pure-Python core tests on router CPUs and on Python 3.9, inside
`make test`: arm64 (most GL.iNet routers), s390x (big-endian, standing in
for ath79's mips_24kc) and Debian bullseye's Python 3.9 (GL.iNet 4.x).
`make test-cross` runs every target (armhf and mipsel too);
tests/cross/run.py says how the sysroots are made."""

import os
import subprocess
import sys

import pytest

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("target", ["arm64", "s390x", "py39"])
def test_core_tests_pass_on(target):
    r = subprocess.run([sys.executable, os.path.join(TOP, "tests", "cross", "run.py"), target],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    print(r.stdout[-4000:])
    assert r.returncode == 0, r.stdout[-4000:]
    assert "cross: 1 of 1 targets passed" in r.stdout
    assert " passed" in r.stdout.split("== ")[-1]
