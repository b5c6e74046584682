"""Run the core unit tests inside MicroPython (the side of tests/mpy/run.mjs
that runs in the interpreter).

pytest is not available here, so this does the little of it the core tests
use: import every tests/core/test_*.py, call each top-level `test_*`
function with no arguments, and count a bare `assert` (or any exception) as
a failure. Written in the subset MicroPython has: no traceback, no inspect,
no dict order (test names are sorted).
"""

import os
import sys


def modules(core_dir, only=()):
    names = []
    for f in os.listdir(core_dir):
        if f.startswith("test_") and f.endswith(".py"):
            name = f[:-3]
            if not only or name in only:
                names.append(name)
    names.sort()
    return names


def run_module(name):
    """Import one test module and run its tests; returns (passed, failed)."""
    passed = failed = 0
    try:
        mod = __import__(name)
    except Exception as e:  # a construct MicroPython rejects shows up here
        print("FAIL %s (import)" % name)
        sys.print_exception(e)
        return 0, 1
    tests = []
    for attr in dir(mod):
        fn = getattr(mod, attr)
        if attr.startswith("test_") and callable(fn):
            tests.append(attr)
    tests.sort()
    for attr in tests:
        try:
            getattr(mod, attr)()
        except Exception as e:
            failed += 1
            print("FAIL %s.%s" % (name, attr))
            sys.print_exception(e)
            continue
        passed += 1
        print("ok   %s.%s" % (name, attr))
    return passed, failed


def main(core_dir, only=()):
    print(sys.version)
    passed = failed = 0
    for name in modules(core_dir, only):
        p, f = run_module(name)
        passed += p
        failed += f
    print("%d passed, %d failed" % (passed, failed))
    return passed, failed
