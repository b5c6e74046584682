"""The long fuzz run (`make fuzz`): atheris, coverage-guided, per parser.

    python3 tools/fuzz.py seed                 write the seed corpus (tests/data/fuzz/<parser>/seed-*)
    python3 tools/fuzz.py run [--runs N] [--max-time S] [--jobs J] [parser ...]
    python3 tools/fuzz.py report [parser ...]  the table of the last run, from its logs
    python3 tools/fuzz.py keep [parser ...]    keep what the run's corpus adds in coverage
    python3 tools/fuzz.py one PARSER --runs N  (what `run` starts for each parser)

Each parser's target (tests/fuzzing.py) runs in its own process under
libFuzzer with the spin_lite modules instrumented. It starts from the kept
inputs in tests/data/fuzz/<parser>/ and grows a working corpus in
build/fuzz/<parser>/. A crash, a hang (-timeout) or memory past the limit
ends that parser's run and leaves the input as
tests/data/fuzz/<parser>/crash-<sha1>, which tests/test_fuzz.py replays from
then on. At the end, one line per parser: inputs run, libFuzzer's edge
coverage, the lines of the parser's modules the whole corpus reaches
(replayed under a line tracer), the RSS at a tenth of the run and at its
end, the slowest input's seconds, and the crashes.
"""

import hashlib
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "src")]

KEPT = os.path.join(ROOT, "tests", "data", "fuzz")
WORK = os.path.join(ROOT, "build", "fuzz")

# the modules whose lines each parser's report counts
MODULES = {
    "conntrack": ["conntrack.py", "addr.py"],
    "dns": ["dnssnoop.py"],
    "dnsframe": ["dnssnoop.py"],
    "ubus": ["ubus.py"],
    "uci": ["config.py"],
    "http": ["jsonrpc.py", "web.py"],
    "api": ["api.py"],
    "mqtt": ["mqtt.py", "mqttlink.py"],
    "controller": ["controller.py"],
}
# longest input libFuzzer makes: room for a few of everything (snapshots,
# packets, messages, sections) and still thousands of inputs a second
MAX_LEN = {"conntrack": 4096, "dns": 8192, "dnsframe": 4096, "ubus": 4096, "uci": 1024,
           "http": 4096, "api": 256, "mqtt": 2048, "controller": 2048}


# -- seeds from the project's own test data ----------------------------------------

def _write(name, label, data):
    where = os.path.join(KEPT, name)
    os.makedirs(where, exist_ok=True)
    with open(os.path.join(where, "seed-" + label), "wb") as f:
        f.write(data)


def sample(snapshot):
    """Two lines of each kind (family, protocol, state, flags, counters or
    not) of a captured table: every shape, small enough to mutate fast."""
    kinds = {}
    out = []
    for line in snapshot.split(b"\n"):
        t = line.split()
        if len(t) < 6:
            continue
        kind = (t[0], t[2], t[5] if b"=" not in t[5] else b"", b"[UNREPLIED]" in t, b"[ASSURED]" in t,
                b"packets=" in line, b"delta-time=" in line)
        kinds[kind] = kinds.get(kind, 0) + 1
        if kinds[kind] <= 2:
            out.append(line)
    return b"\n".join(out) + b"\n"


def seed():
    from tests.core import test_dnsgolden as golden
    from tests.core import test_dnssnoop as t
    from tests.fuzzing import SNAPSHOT, packets_to_bytes

    data = os.path.join(ROOT, "tests", "data")
    snaps = {}
    for fn in sorted(os.listdir(data)):
        if fn.startswith("conntrack") and fn.endswith(".txt"):
            with open(os.path.join(data, fn), "rb") as f:
                snaps[fn[:-4]] = sample(f.read())
            _write("conntrack", fn[:-4], snaps[fn[:-4]])
    acct = snaps["conntrack-acct"]
    # the same table read again, then with one flow gone and its counters moved
    lines = acct.split(b"\n")
    moved = b"\n".join(lines[1:]).replace(b"bytes=", b"bytes=1", 3)
    _write("conntrack", "three-scans", acct + SNAPSHOT + acct + SNAPSHOT + moved)

    for i, (_, pkt, _) in enumerate(golden.CAPTURED):
        etype = 1 if pkt[0] >> 4 == 4 else 2
        _write("dns", "captured-%d" % i, packets_to_bytes([(0, etype, pkt)]))
        _write("dnsframe", "captured-%d" % i,
               bytes(6) + b"\x02\0\0\0\0\x01" + (b"\x08\x00" if etype == 1 else b"\x86\xdd") + pkt)
    vlan = golden.CAPTURED[0][1]
    _write("dnsframe", "vlan", bytes(6) + b"\x02\0\0\0\0\x01" + b"\x81\x00\x00\x05\x08\x00" + vlan)
    for i, pkt in enumerate(t.seeds()):
        _write("dns", "crafted-%d" % i, packets_to_bytes([(0, 0, pkt)]))
    big = t.big_answer(n=40)
    _write("dns", "fragments4", packets_to_bytes([(0, 1, p) for p in t.fragments4(big, size=320, order=[2, 0, 1])]))
    _write("dns", "fragments6", packets_to_bytes([(0, 2, p) for p in t.fragments6(big, size=320)]))
    small = t.message("small.example", [t.rr(t.QUESTION, 1, 60, t.ip4("203.0.113.77"))])
    stream = t.framed(big, small)
    segs = [t.tcp_segment(b"", 1000, flags=0x12)]
    seq = 1001
    for cut in range(0, len(stream), 500):
        segs.append(t.tcp_segment(stream[cut:cut + 500], seq))
        seq += len(stream[cut:cut + 500])
    segs.append(t.tcp_segment(b"", seq, flags=0x11))
    _write("dns", "tcp", packets_to_bytes([(0, 1, p) for p in segs]))

    with open(os.path.join(data, "ubus-transcript.jsonl")) as f:
        recs = [json.loads(line) for line in f if line.strip()]
    for conn in sorted(set(r["conn"] for r in recs)):
        stream = b"".join(bytes.fromhex(r["hex"]) for r in recs if r["conn"] == conn and r["dir"] == "from_ubusd")
        _write("ubus", "conn-%d" % conn, b"\0" + stream)
        _write("ubus", "conn-%d-bytewise" % conn, b"\1" + stream)

    with open(os.path.join(ROOT, "files", "etc", "config", "spin"), "rb") as f:
        _write("uci", "shipped", f.read())
    _write("uci", "hosts", b"config spin\n\toption max_flows '100'\n\tlist lan_net \"10.0.0.0/8\"\n"
                           b"\tlist lan_net fd00::/8\nconfig host\n\toption name 'camera'\n"
                           b"\toption mac '02:00:00:00:00:01 02:00:00:00:00:02'\n"
                           b"config host 'x'\n\tlist mac '02:00:00:00:00:03'\n\toption name \"a b\\\" c\"\n")

    def post(path, body, extra=b""):
        return (b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + extra +
                b"Content-Length: %d\r\n\r\n" % len(body) + body)
    rpc = [
        b'{"jsonrpc":"2.0","id":1,"method":"status","params":{}}',
        b'[{"jsonrpc":"2.0","id":1,"method":"block","params":{"mac":"02:00:00:00:00:01"}},'
        b'{"jsonrpc":"2.0","id":"b","method":"blocks"}]',
        b'{"jsonrpc":"2.0","id":2,"method":"devices","params":{"limit":5,"offset":0}}',
    ]
    for i, body in enumerate(rpc):
        _write("http", "rpc-%d" % i, b"\0" + post(b"/rpc", body))
    _write("http", "token", b"\1" + post(b"/", rpc[0], b"Authorization: Bearer s3cret\r\n"))
    _write("http", "ubus-call", b"\0" + post(b"/ubus/spin.devices",
           b'{"jsonrpc":"2.0","id":3,"method":"call","params":["0","spin","devices",{}]}'))
    _write("http", "ubus-list", b"\0" + post(b"/ubus", b'{"jsonrpc":"2.0","id":4,"method":"list","params":["spin"]}'))
    _write("http", "file", b"\1GET /spin/index.html?v=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    for i in range(4):
        _write("api", "draw-%d" % i, hashlib.sha256(b"%d" % i).digest())

    from spin_lite import mqtt
    orders = [b'{"id":"q1","method":"quarantine","args":{"mac":"02:00:00:00:00:01","reason":"x"}}',
              b'{"id":2,"method":"release","args":{"mac":"02:00:00:00:00:01"}}',
              b'{"id":"b1","method":"block","args":{"ip":"192.168.8.104","remote":"203.0.113.0/24"}}',
              b'{"id":"u1","method":"unblock","args":{"id":1}}',
              b'{"id":"x","method":"quarantine","args":{"mac":"02:00:zz"},"more":1}', b"not json"]
    session = b"\x20\x02\x00\x00" + b"\x90\x03\x00\x01\x01" + b"\xd0\x00" + b"\x40\x02\x00\x02"
    for i, o in enumerate(orders):
        pub = mqtt.publish_packet("cmd", o, qos=1, pid=i + 1)
        _write("mqtt", "order-%d" % i, b"\0" + session + pub)
        _write("mqtt", "order-%d-bytewise" % i, b"\1" + session + mqtt.publish_packet("cmd", o))

    row = {"mac": "02:00:00:00:00:04", "bytes_out": 100, "bytes_in": 1000, "packets_out": 2,
           "packets_in": 3, "conns": 1, "unreplied": 0, "remotes": 1, "ports": 1,
           "top": [["203.0.113.10", 1100]]}
    msgs = {"status": (0, {"v": 1, "agent": "a0", "state": "online", "role": "ap", "version": "0.1"}),
            "digest": (1, {"v": 1, "agent": "a0", "started": 5, "seq": 1, "t": 600, "bucket_seconds": 60,
                           "devices": [row, {"mac": "02:00:00:00:00:05"}]}),
            "device": (2, {"v": 1, "agent": "a0", "event": "appeared", "mac": "02:00:00:00:00:04",
                           "device": {"name": "laptop", "ips": ["192.168.8.104"]}}),
            "anomaly": (3, {"v": 1, "agent": "a0", "anomaly": {"mac": "02:00:00:00:00:05",
                                                               "severity": "quarantine", "rule": "x",
                                                               "action": "monitor"}}),
            "ack": (4, {"v": 1, "agent": "a0", "id": "c1-1", "status": 0, "message": ""})}
    for name, (topic, body) in msgs.items():
        _write("controller", name, bytes([topic << 2]) + json.dumps(body).encode())


# -- one parser under atheris --------------------------------------------------------

def rss_kb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


def arcs_of(name, data, paths):
    """The (file, line before, line) steps one input takes through the
    parser's modules."""
    import tests.fuzzing as fuzzing
    seen = set()

    def tracer(frame, event, arg):
        if frame.f_code.co_filename not in paths:
            return None
        last = [0]

        def lines(frame, event, arg):
            if event == "line":
                seen.add((frame.f_code.co_filename, last[0], frame.f_lineno))
                last[0] = frame.f_lineno
            return lines
        return lines

    sys.settrace(tracer)
    try:
        fuzzing.TARGETS[name](data)
    except Exception:
        pass
    finally:
        sys.settrace(None)
    return seen


def keep(name):
    """Keep the inputs of the working corpus that take steps (line to line,
    in the parser's modules) no kept input takes, smallest first, as
    tests/data/fuzz/<name>/cov-<sha1>: make test replays them from then on."""
    paths = [os.path.join(ROOT, "src", "spin_lite", m) for m in MODULES[name]]
    kept = os.path.join(KEPT, name)
    have = set()
    for fn in sorted(os.listdir(kept)):
        with open(os.path.join(kept, fn), "rb") as f:
            have |= arcs_of(name, f.read(), paths)
    work = os.path.join(WORK, name)
    found = []
    for fn in os.listdir(work) if os.path.isdir(work) else []:
        with open(os.path.join(work, fn), "rb") as f:
            found.append(f.read())
    added = 0
    for data in sorted(found, key=len):
        new = arcs_of(name, data, paths) - have
        if new:
            have |= new
            with open(os.path.join(kept, "cov-" + hashlib.sha1(data).hexdigest()), "wb") as f:
                f.write(data)
            added += 1
    print("fuzz: %s: %d inputs kept for their coverage (%d found)" % (name, added, len(found)))
    return 0


def one(name, runs, max_time):
    import atheris
    assert "spin_lite.conntrack" not in sys.modules, "imported before instrumenting"
    with atheris.instrument_imports(include=["spin_lite", "tests.fuzzing"]):
        import tests.fuzzing as fuzzing
    target = fuzzing.TARGETS[name]
    every = max(1, runs // 10)
    state = [0]

    def test_one(data):
        target(data)
        state[0] += 1
        if state[0] % every == 0:
            sys.stderr.write("fuzz: %s inputs=%d rss_kb=%d\n" % (name, state[0], rss_kb()))
            sys.stderr.flush()

    work = os.path.join(WORK, name)
    kept = os.path.join(KEPT, name)
    os.makedirs(work, exist_ok=True)
    os.makedirs(kept, exist_ok=True)
    args = [sys.argv[0], "-runs=%d" % runs, "-max_len=%d" % MAX_LEN[name], "-timeout=10",
            "-rss_limit_mb=1536", "-print_final_stats=1", "-artifact_prefix=%s/" % kept, work, kept]
    if max_time:
        args.insert(1, "-max_total_time=%d" % max_time)
    atheris.Setup(args, test_one)
    atheris.Fuzz()


# -- line coverage of the corpus ----------------------------------------------------

def executable_lines(path):
    with open(path) as f:
        code = compile(f.read(), path, "exec")
    lines = set()
    todo = [code]
    while todo:
        c = todo.pop()
        lines.update(ln for _, _, ln in c.co_lines() if ln is not None)
        todo.extend(k for k in c.co_consts if hasattr(k, "co_lines"))
    return lines


def line_coverage(name):
    """(lines hit, lines) of the parser's modules over its whole corpus."""
    import tests.fuzzing as fuzzing
    paths = [os.path.join(ROOT, "src", "spin_lite", m) for m in MODULES[name]]
    hit = set()

    def tracer(frame, event, arg):
        f = frame.f_code.co_filename
        if f not in paths:
            return None

        def lines(frame, event, arg):
            if event == "line":
                hit.add((frame.f_code.co_filename, frame.f_lineno))
            return lines
        hit.add((f, frame.f_lineno))
        return lines

    inputs = []
    for where in (os.path.join(KEPT, name), os.path.join(WORK, name)):
        if os.path.isdir(where):
            inputs += [os.path.join(where, fn) for fn in sorted(os.listdir(where))]
    sys.settrace(tracer)
    try:
        for p in inputs:
            try:
                with open(p, "rb") as f:
                    data = f.read()
            except OSError:
                continue  # a running fuzzer replaced it with a shorter one
            try:
                fuzzing.TARGETS[name](data)
            except Exception:
                pass  # a crash is reported by the run itself
    finally:
        sys.settrace(None)
    total = hit_n = 0
    for p in paths:
        want = executable_lines(p)
        total += len(want)
        hit_n += len([1 for f, ln in hit if f == p and ln in want])
    return hit_n, total, len(inputs)


def start(name, runs, max_time):
    kept = os.path.join(KEPT, name)
    os.makedirs(WORK, exist_ok=True)
    log = open(os.path.join(WORK, name + ".log"), "wb")
    p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "one", name, "--runs", str(runs)]
                         + (["--max-time", str(max_time)] if max_time else []),
                         cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    return [name, p, log, set(os.listdir(kept)) if os.path.isdir(kept) else set(), time.time()]


def finish(job):
    name, p, log, _, t0 = job
    log.close()
    return row(name, time.time() - t0)


def row(name, seconds=None):
    """A parser's line of the report, from its run's log."""
    with open(os.path.join(WORK, name + ".log"), "rb") as f:
        out = f.read().decode("utf-8", "replace")
    done = re.findall(r"stat::number_of_executed_units: (\d+)", out)
    cov = re.findall(r"cov: (\d+) ft: (\d+)", out)
    rss = re.findall(r"rss_kb=(\d+)", out)
    slowest = re.findall(r"stat::slowest_unit_time_sec:\s+(\d+)", out)
    crashes = [os.path.basename(c) for c in re.findall(r"Test unit written to (\S+)", out)]
    took = re.findall(r"Done \d+ runs in (\d+) second", out)
    if seconds is None:
        seconds = int(took[-1]) if took else 0
    return (name, int(done[-1]) if done else 0, cov[-1] if cov else ("?", "?"), line_coverage(name),
            rss[0] if rss else "?", rss[-1] if rss else "?", slowest[-1] if slowest else "?", crashes, seconds)


def report(rows):
    print("\nparser      inputs  edges  features  lines hit (corpus)      rss kB 10% -> end  slowest s  crashes  seconds")
    for r in rows:
        print(fmt_row(r))


def run(names, runs, max_time, jobs=1):
    """Each parser in its own process, `jobs` at a time."""
    rows = []
    todo = list(names)
    running = []
    while todo or running:
        while todo and len(running) < jobs:
            running.append(start(todo.pop(0), runs, max_time))
        for job in list(running):
            if job[1].poll() is not None:
                running.remove(job)
                rows.append(finish(job))
                print(fmt_row(rows[-1]), flush=True)
        time.sleep(1)
    report(rows)
    return 1 if any(r[7] for r in rows) else 0


def fmt_row(r):
    name, done, (edges, ft), (hit, total, n), rss0, rss1, slowest, crashes, secs = r
    return "%-9s %9d %6s %9s  %4d/%-4d (%5d files)  %8s -> %-8s  %9s  %7d  %7.0f%s" % (
        name, done, edges, ft, hit, total, n, rss0, rss1, slowest, len(crashes), secs,
        ("  " + " ".join(crashes)) if crashes else "")


def main(argv):
    if not argv or argv[0] not in ("seed", "run", "one", "report", "keep"):
        sys.stderr.write(__doc__)
        return 2
    if argv[0] == "seed":
        seed()
        return 0
    runs, max_time, jobs, names = 1000000, 0, 1, []
    i = 1
    while i < len(argv):
        if argv[i] == "--runs":
            runs = int(argv[i + 1])
            i += 2
        elif argv[i] == "--jobs":
            jobs = int(argv[i + 1])
            i += 2
        elif argv[i] == "--max-time":
            max_time = int(argv[i + 1])
            i += 2
        else:
            names.append(argv[i])
            i += 1
    # not tests.fuzzing's TARGETS: importing it here would load the parsers
    # before `one` could instrument them
    for n in names:
        if n not in MODULES:
            sys.stderr.write("fuzz: no parser %r (have: %s)\n" % (n, " ".join(MODULES)))
            return 2
    if argv[0] == "report":  # the table again, from the logs of the last run
        report([row(n) for n in (names or MODULES) if os.path.exists(os.path.join(WORK, n + ".log"))])
        return 0
    if argv[0] == "keep":
        for n in names or MODULES:
            if keep(n):
                return 1
        return 0
    if argv[0] == "one":
        one(names[0], runs, max_time)
        return 0
    return run(names or list(MODULES), runs, max_time, jobs)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
