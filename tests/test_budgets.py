"""Budgets no other test asserts (DESIGN.md §2): what the agent imports, the
Python version it is written for, and the part of `re` MicroPython has.

These read the source (and import it in a fresh interpreter); each failure
names the file and line, or the chain of imports, to look at.
"""

import ast
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(REPO, "src")
PKG = os.path.join(SRC, "spin_lite")

# each costs megabytes of RSS on the router (DESIGN.md §2); subprocess and
# signal come in only lazily, inside plat, when the agent really needs them
HEAVY = ("asyncio", "pyroute2", "http.server", "logging", "ssl", "email", "paho",
         "subprocess", "signal")
# what differs under MicroPython lives in plat; nobody else imports these
# (json and socket: plat.json and plat.sockets() give their C halves, which
# spare re, enum and selectors)
ONLY_PLAT = ("subprocess", "signal", "ipaddress", "dataclasses", "enum", "typing", "json", "socket",
             "selectors")
RE_MODULES = ("re", "ure")
RE_FUNCTIONS = ("compile", "match", "search", "sub", "split")
NOT_IN_MICROPYTHON = ("findall", "finditer", "fullmatch")


def sources():
    out = []
    for top, dirs, files in os.walk(PKG):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        out.extend(os.path.join(top, f) for f in sorted(files) if f.endswith(".py"))
    assert out, "no Python files under %s" % PKG
    return out


def rel(path):
    return os.path.relpath(path, REPO)


def parse(path):
    with open(path, "rb") as f:
        return ast.parse(f.read(), path)


def outside_plat():
    return [p for p in sources() if os.path.basename(p) != "plat.py"]


# -- the agent's import graph ---------------------------------------------

def default_parts_modules():
    """spin_lite modules Agent.build_parts always imports (a conditional
    import is a feature a config option turns on, which may cost more)."""
    path = os.path.join(PKG, "agent.py")
    assert os.path.exists(path), "src/spin_lite/agent.py does not exist yet: no agent to check"
    for node in ast.walk(parse(path)):
        if isinstance(node, ast.FunctionDef) and node.name == "build_parts":
            return ["spin_lite." + a.name for st in node.body
                    if isinstance(st, ast.ImportFrom) and st.level == 1 and not st.module
                    for a in st.names]
    return []


# runs in a fresh interpreter: import what `python3 -m spin_lite agent` imports
# (the entry point with no command only prints its usage) and say, for each
# module that came in, which module's import statement brought it
PROBE = r"""
import builtins, importlib, json, sys
importer = {}
real_import = builtins.__import__

def traced(name, globals=None, locals=None, fromlist=(), level=0):
    before = set(sys.modules)
    module = real_import(name, globals, locals, fromlist, level)
    who = (globals or {}).get("__name__", "?")
    if who.startswith("importlib"):  # C modules import through it: the caller records
        return module
    for new in set(sys.modules) - before:
        importer.setdefault(new, who)  # inner imports finish, and record, first
    return module

builtins.__import__ = traced
before = set(sys.modules)
sys.argv = ["spin"]
try:
    import spin_lite.__main__
except SystemExit:
    pass
for name in %r:
    importlib.import_module(name)
print(json.dumps({m: importer.get(m, "the agent") for m in set(sys.modules) - before}))
"""


def is_heavy(module):
    return any(module == h or module.startswith(h + ".") for h in HEAVY)


def test_the_agent_imports_nothing_heavy():
    modules = ["spin_lite.agent"] + default_parts_modules()
    p = subprocess.run([sys.executable, "-c", PROBE % (modules,)],
                       cwd=REPO, env=dict(os.environ, PYTHONPATH=SRC),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
    assert p.returncode == 0, "importing the agent failed:\n" + p.stderr[-3000:]
    importer = json.loads(p.stdout.strip().splitlines()[-1])
    assert "spin_lite.agent" in importer and "spin_lite.cli" in importer, sorted(importer)
    why = []
    for module in sorted(m for m in importer if is_heavy(m) and not is_heavy(importer[m])):
        chain = [module]
        while chain[-1] in importer and len(chain) < 20:
            chain.append(importer[chain[-1]])
        why.append(" <- ".join(chain))
    assert not why, "the agent (%s) imports what DESIGN.md §2 keeps out of it:\n  %s" % (
        ", ".join(modules), "\n  ".join(why))


def test_only_plat_imports_what_micropython_lacks():
    found = []
    for path in outside_plat():
        for node in ast.walk(parse(path)):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in ONLY_PLAT:
                    found.append("%s:%d imports %s" % (rel(path), node.lineno, name))
    assert not found, "outside plat.py (DESIGN.md §2):\n  " + "\n  ".join(found)


# -- Python 3.9 (OpenWrt 21.02 on GL.iNet firmware) -------------------------

def test_every_module_is_python_39_syntax():
    found = []
    for path in sources():
        with open(path, "rb") as f:
            text = f.read()
        try:
            ast.parse(text, path, feature_version=(3, 9))
        except SyntaxError as e:
            found.append("%s:%s %s" % (rel(path), e.lineno, e.msg))
    assert not found, "not Python 3.9 syntax:\n  " + "\n  ".join(found)


# -- MicroPython's re -------------------------------------------------------

def regex_problems(pattern):
    """What in a pattern MicroPython's re lacks ({m,n} silently never
    matches there; the rest raise), as a list of short descriptions."""
    if isinstance(pattern, bytes):
        pattern = pattern.decode("latin-1")
    found = []
    i, in_class = 0, False
    while i < len(pattern):
        c = pattern[i]
        nxt = pattern[i + 1:i + 2]
        if c == "\\":
            if nxt in ("b", "B") and not in_class:
                found.append("\\" + nxt + " (word boundary)")
            elif nxt.isdigit() and nxt != "0":
                found.append("\\" + nxt + " (back-reference)")
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            if pattern[i + 1:i + 2] == "]":  # a leading ] is a literal
                i += 1
        elif c == "(" and nxt == "?":
            ext = pattern[i + 2:i + 4]
            if ext.startswith("P<"):
                found.append("(?P<...> (named group)")
            elif ext.startswith("P="):
                found.append("(?P=...) (named back-reference)")
            elif ext[:1] in ("=", "!") or ext in ("<=", "<!"):
                found.append("(?%s (lookaround)" % (ext if ext[:1] == "<" else ext[:1]))
            elif ext[:1] != ":":
                found.append("(?%s (inline flag or extension)" % ext[:1])
        elif c == "{":
            end = pattern.find("}", i)
            body = pattern[i + 1:end] if end > 0 else ""
            if body and all(ch.isdigit() or ch == "," for ch in body) and body != ",":
                found.append("{%s} (counted repetition)" % body)
        i += 1
    return found


def module_constants(tree):
    """Module-level NAME = "literal" assignments, to follow re.compile(NAME)."""
    consts = {}
    for st in tree.body:
        if isinstance(st, ast.Assign) and isinstance(st.value, ast.Constant):
            for t in st.targets:
                if isinstance(t, ast.Name):
                    consts[t.id] = st.value.value
    return consts


def test_regexes_stay_in_micropythons_subset():
    found = []
    for path in outside_plat():
        tree = parse(path)
        consts = module_constants(tree)
        for node in ast.walk(tree):
            where = "%s:%d" % (rel(path), getattr(node, "lineno", 0))
            if isinstance(node, ast.Attribute) and node.attr in NOT_IN_MICROPYTHON:
                found.append("%s .%s is not in MicroPython's re" % (where, node.attr))
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id in RE_MODULES and node.attr.isupper():
                found.append("%s re.%s: MicroPython's re has no flags" % (where, node.attr))
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id in RE_MODULES):
                continue
            if node.func.attr not in RE_FUNCTIONS + NOT_IN_MICROPYTHON:
                found.append("%s re.%s is not in MicroPython's re" % (where, node.func.attr))
                continue
            if not node.args:
                continue
            arg = node.args[0]
            if isinstance(arg, ast.Name) and arg.id in consts:
                pattern = consts[arg.id]
            elif isinstance(arg, ast.Constant):
                pattern = arg.value
            else:
                continue
            if isinstance(pattern, (str, bytes)):
                for what in regex_problems(pattern):
                    found.append("%s %r: %s" % (where, pattern, what))
    assert not found, "outside plat.py, regex use MicroPython cannot run (DESIGN.md §2):\n  " + \
        "\n  ".join(found)


def test_the_regex_check_finds_what_micropython_lacks():
    # the check above is only as good as this reader of patterns
    assert regex_problems(r"\d{1,3}") == ["{1,3} (counted repetition)"]
    assert regex_problems(rb"(?P<mac>[0-9a-f:]+)") == ["(?P<...> (named group)"]
    assert regex_problems(r"foo(?=bar)(?<!x)") == ["(?= (lookaround)", "(?<! (lookaround)"]
    assert regex_problems(r"\bsrc=") == ["\\b (word boundary)"]
    assert regex_problems(r"(a)\1") == ["\\1 (back-reference)"]
    assert regex_problems(r"(?i)dst") == ["(?i (inline flag or extension)"]
    assert regex_problems(r"^(\w+)=(\S*) [{}]\{x\} (?:a|b)+ [\b]") == []


RUNS = """
import sys
from spin_lite import plat
answers = [plat.run(["sh", "-c", "cat; echo oops >&2; exit 3"], stdin=b"rules" * 50000),
           plat.run(["spin-no-such-program"]), plat.run(["sleep", "30"], timeout=0.2),
           # closes its outputs and lives on: the timeout still holds
           plat.run(["sh", "-c", "exec >&- 2>&-; sleep 30"], timeout=0.2),
           # conntrack -D's list of what it deleted is never read in
           plat.run(["sh", "-c", "head -c 3000000 /dev/zero; echo gone >&2"], quiet=True)]
print([a[0] for a in answers], len(answers[0][1]), answers[0][2], answers[2][2], answers[4][1:])
import os, select
hups = []
wake = plat.install_signals(lambda: None, lambda: hups.append(1))
os.kill(os.getpid(), 1)  # SIGHUP, as `/etc/init.d/spin reload` sends it
print(select.select([wake], [], [], 10)[0] == [wake], hups)
print(sorted(m for m in ("subprocess", "signal", "threading") if m in sys.modules))
"""


def test_running_nft_and_taking_signals_cost_no_subprocess_or_signal_import():
    # plat.run is called at every start (Blocks loads its rules) and the
    # signals are installed at every start, so a lazy `import subprocess` or
    # `import signal` would still cost every router 1.9 + 0.8 MB
    p = subprocess.run([sys.executable, "-S", "-c", RUNS], cwd=REPO, env=dict(os.environ, PYTHONPATH=SRC),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    assert p.returncode == 0, p.stderr[-3000:]
    answer, hup, loaded = p.stdout.strip().splitlines()
    assert answer == "[3, 127, 124, 124, 0] 250000 b'oops\\n' b'timeout' (b'', b'gone\\n')"
    assert hup == "True [1]"  # the reload signal still reaches the loop
    assert loaded == "[]", "plat.run or install_signals imported " + loaded


STARTS = """
import os, sys
from spin_lite import agent, config, jsonrpc, plat
work = sys.argv[1]  # not tempfile: it brings re itself
cfg = config.defaults()
for k, v in cfg.items():  # every host path under work, as bench/run.py's agent_config
    if isinstance(v, str) and v.startswith("/") and not v.startswith("/proc/"):
        cfg[k] = os.path.join(work, v.lstrip("/"))
for k in ("state_dir", "run_dir"):
    os.makedirs(cfg[k], exist_ok=True)
a = agent.Agent(cfg)
a.start()
a.scan()
for _ in range(3):
    a.loop.run_once(10)
ok = jsonrpc.handle_rpc(a, b'{"jsonrpc": "2.0", "id": 1, "method": "status"}')
print("result" in ok, plat.json.loads(plat.dumps({"a": [1.5, None]})), len(a.parts) > 0)
print(sorted(m for m in ("re", "enum", "json", "socket", "selectors") if m in sys.modules))
bad = jsonrpc.handle_rpc(a, b'{"jsonrpc": "2.0", "id": 1, "method"')
print(bad["error"]["message"])
for p in a.parts:
    if getattr(p, "stop", None):
        p.stop(a)
"""


def test_a_default_agent_start_imports_no_re_enum_json_or_socket(tmp_path):
    # JSON and sockets come from their C halves through plat: `import json`
    # brings re and enum, `import socket` enum and selectors, 1.4 MB of RSS
    # on every router for names of numbers and two C functions
    p = subprocess.run([sys.executable, "-S", "-c", STARTS, str(tmp_path)], cwd=REPO, env=dict(os.environ, PYTHONPATH=SRC),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    works, loaded, bad = p.stdout.strip().splitlines()[-3:]
    assert works == "True {'a': [1.5, None]} True"
    assert loaded == "[]", "a default agent start imported " + loaded
    assert bad == "parse error: body is not JSON"  # bad input still gets json's error path
