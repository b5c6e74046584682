"""How much RSS importing the ubus client adds to the agent (issue 3 item 6:
at most 300 KB).

Each figure comes from a fresh interpreter: it imports what the agent has
loaded anyway (the agent module, socket, the JSON-RPC part), reads VmRSS,
imports spin_lite.ubus and spin_lite.ubuslink, reads VmRSS again.

Two cases, because they differ by a megabyte:
* bytecode: the modules load from .pyc, as on the router from the second
  start on (the ipk ships .py into /usr/lib/spin; python3 writes
  __pycache__ there on the first run). The limit applies to this case.
* source: no .pyc (PYTHONDONTWRITEBYTECODE=1, as `make test` runs): the
  compiler's working memory for ubus.py stays in the process's heap.

Run:  python3 bench/ubus_rss.py [--json]
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

LIMIT_KB = 300
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE = r'''
import gc
from spin_lite import plat
%s
gc.collect()
before = plat.rss_kb()
from spin_lite import ubus, ubuslink
gc.collect()
after = plat.rss_kb()
print(before, after)
'''

BASES = {
    # what the agent process already holds when build_parts adds the ubus part
    "agent": "import socket, select\nfrom spin_lite import agent, api, jsonrpc",
    # a bare interpreter: the whole cost, socket included
    "bare": "",
}


def measure(python, base, cache, runs=5):
    """Smallest of a few runs (allocator noise only ever adds). cache: a
    bytecode directory, or None to compile from source every time."""
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))
    if cache is None:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("PYTHONPYCACHEPREFIX", None)
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = cache
        subprocess.run([python, "-c", PROBE % base], capture_output=True, env=env, cwd=ROOT)  # warm
    best = None
    for _ in range(runs):
        p = subprocess.run([python, "-c", PROBE % base], capture_output=True, text=True, env=env, cwd=ROOT)
        if p.returncode != 0:
            raise SystemExit("probe failed: " + p.stderr)
        before, after = (int(x) for x in p.stdout.split())
        if best is None or after - before < best[2]:
            best = (before, after, after - before)
    return best


def measure_micropython(runs=3):
    """MicroPython compiles from source each start; its heap is preallocated,
    so the figure is what the import touched."""
    env = dict(os.environ, MICROPYPATH=os.path.join(ROOT, "src") + ":")
    base = "import socket, select\nfrom spin_lite import api"
    best = None
    for _ in range(runs):
        p = subprocess.run(["micropython", "-c", PROBE % base], capture_output=True, text=True, env=env, cwd=ROOT)
        if p.returncode != 0:
            return {"error": p.stderr.strip()[-200:]}
        before, after = (int(x) for x in p.stdout.split())
        if best is None or after - before < best["added_kb"]:
            best = {"before_kb": before, "after_kb": after, "added_kb": after - before}
    return best


def main(argv):
    out = {}
    cache = tempfile.mkdtemp(prefix="spin-pyc-")
    try:
        for name, base in BASES.items():
            for mode in ("bytecode", "source"):
                before, after, delta = measure(sys.executable, base, cache if mode == "bytecode" else None)
                out[name + ", " + mode] = {"before_kb": before, "after_kb": after, "added_kb": delta}
        if shutil.which("micropython"):
            out["micropython, source"] = measure_micropython()
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    added = out["agent, bytecode"]["added_kb"]
    verdict = "ok" if added <= LIMIT_KB else "OVER"
    if "--json" in argv:
        print(json.dumps({"ubus_import_rss": out, "limit_kb": LIMIT_KB, "verdict": verdict}))
        return 0
    for name, r in out.items():
        if "error" in r:
            print("ubus import RSS (%s): not measured: %s" % (name, r["error"]))
            continue
        print("ubus import RSS (%s): %d KB -> %d KB, +%d KB" % (name, r["before_kb"], r["after_kb"], r["added_kb"]))
    print("ubus import adds %d KB to the agent loading bytecode (limit %d KB): %s" % (added, LIMIT_KB, verdict))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
