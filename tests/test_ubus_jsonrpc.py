"""ubus and JSON-RPC expose exactly the same methods and errors.

Two agents watch the same home (files with a camera and a laptop), one
reached over ubus (the ubusd stand-in), the other over JSON-RPC. The whole
method table is walked, method by method, with valid, missing, unknown,
malformed and web-session arguments, in the same order on both, and the
answers compared: same status, same message, same reply (values that
depend on the clock masked). Write methods run on both agents in the same
order, so their state stays the same.
"""

import os

import pytest

from spin_lite import api, jsonrpc, ubuslink
from tests.test_ubus_agent import CAMERA, LAPTOP, Home, spin_on_ubus, wait_for
from tests.world.ubusd import StandIn

# values that come from the clock or the process, not from the method
VOLATILE = {"uptime", "rss_kb", "last_scan_ms", "first_seen", "last_seen", "t", "created", "expires",
            "since", "until", "started", "at", "time", "scans"}

VALID = {"mac": CAMERA, "ip": "192.168.8.10", "remote": "203.0.113.7", "string": "note",
         "bool": True, "table": {}, "array": []}
MALFORMED = {"mac": ["02:00:00", 7], "ip": ["300.1.1.1"], "remote": ["203.0.113.0/40"],
             "int": ["ten", True], "string": [12345], "bool": ["yes"], "table": ["x"], "array": ["x"]}


# write calls as an owner makes them, so that every write method also
# succeeds once; "$id" is the id the previous answer gave
STORIES = [
    ("block", {"mac": CAMERA, "remote": "203.0.113.7", "port": 443, "proto": "tcp", "minutes": 5,
               "note": "camera phones home"}),
    ("unblock", {"id": "$id"}),
    ("block", {"ip": "192.168.8.11"}),
    ("block", {"ip": "192.168.8.11"}),
    ("blocks", {}),
    ("allow", {"mac": LAPTOP}),
    ("allow", {"remote": "198.51.100.0/24"}),
    ("disallow", {"mac": LAPTOP}),
    ("quarantine", {"mac": CAMERA, "minutes": 10, "reason": "telnet scan"}),
    ("release", {"mac": CAMERA}),
    ("name", {"mac": LAPTOP, "name": "Anna's laptop"}),
    ("device", {"mac": LAPTOP}),
    ("mute", {"mac": LAPTOP, "rule": "lan_scan", "minutes": 5}),
    ("mutes", {}),
    ("unmute", {"mac": LAPTOP, "rule": "lan_scan"}),
    ("anomalies", {"mac": LAPTOP, "limit": 10}),
]

# methods that only succeed on a record the detector opened; these quiet
# files give it nothing to find, so both transports must answer "no anomaly"
# (their successes are told in tests/test_anomalies.py)
NEED_A_RECORD = {"anomaly", "keep"}
# and these a LAN interface to capture on, which these agents lack: both
# transports must answer "cannot capture" or "no capture" (their successes
# are told in tests/test_capture_home.py)
NEED_A_LAN = {"capture_start", "capture_stop", "capture_delete", "capture_data", "watch", "unwatch"}


def valid(kind, limit):
    if kind == "int":
        return limit[0] if limit else 1
    return VALID[kind]


def cases():
    """(label, method, args) for the whole method table."""
    out = [("story", m, a) for m, a in STORIES]
    for method in sorted(api.METHODS):
        schema = api.METHODS[method][0]
        full = {a: valid(s[0], s[2]) for a, s in schema.items()}
        required = {a: valid(s[0], s[2]) for a, s in schema.items() if s[1] is api.REQUIRED}
        out.append(("required only", method, dict(required)))
        out.append(("every argument", method, dict(full)))
        out.append(("web session", method, dict(required, ubus_rpc_session="0123456789abcdef" * 2)))
        out.append(("unknown argument", method, dict(required, colour="red")))
        for a in required:
            rest = dict(required)
            del rest[a]
            out.append(("missing " + a, method, rest))
        for a, (kind, _, limit) in schema.items():
            bad = list(MALFORMED[kind])
            if kind == "int" and limit:
                bad.append(limit[1] + 1)
            if kind == "string" and limit:
                bad.append("x" * (limit + 1))
            for b in bad:
                out.append(("malformed %s=%r" % (a, b), method, dict(required, **{a: b})))
    out.append(("unknown method", "nosuch", {}))
    return out


def mask(value):
    if isinstance(value, dict):
        return {k: ("*" if k in VOLATILE else mask(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v) for v in value]
    return value


def answer(fn):
    try:
        return 0, None, mask(fn())
    except (ubuslink.UbusError, jsonrpc.RemoteError) as e:
        return e.status, e.message, None


@pytest.fixture
def two_agents(tmp_path):
    with StandIn(str(tmp_path / "ubus.sock")) as ubusd:
        over_ubus = Home(str(tmp_path / "a"), ubusd.path, rpc=False).start()
        over_rpc = Home(str(tmp_path / "b"), str(tmp_path / "no-ubusd-here.sock")).start()
        try:
            wait_for("spin on ubus", lambda: spin_on_ubus(ubusd.path), home=over_ubus)
            wait_for("JSON-RPC socket", lambda: os.path.exists(over_rpc.rpc_socket)
                     and jsonrpc.call(over_rpc.rpc_socket, "status", {}), home=over_rpc)
            yield ubusd.path, over_rpc.rpc_socket, over_ubus, over_rpc
        finally:
            over_ubus.stop()
            over_rpc.stop()


def test_the_whole_method_table_answers_the_same_over_ubus_and_json_rpc(two_agents):
    ubus_path, rpc_path, over_ubus, over_rpc = two_agents
    walked = cases()
    statuses = set()
    methods = set()
    succeeded = set()
    last_id = None
    for label, method, args in walked:
        args = {k: (last_id if v == "$id" else v) for k, v in args.items()}
        a = answer(lambda: ubuslink.call(ubus_path, method, args))
        b = answer(lambda: jsonrpc.call(rpc_path, method, args))
        assert a == b, "%s %s %r:\n  ubus:     %r\n  json-rpc: %r" % (method, label, args, a, b)
        statuses.add(a[0])
        if method in NEED_A_RECORD and label == "required only":
            assert a[:2] == (4, "no anomaly 1"), a
        if a[0] == 0:
            succeeded.add(method)
            if isinstance(a[2], dict) and isinstance(a[2].get("id"), int):
                last_id = a[2]["id"]
        methods.add(method)
    assert methods == set(api.METHODS) | {"nosuch"}
    assert succeeded == set(api.METHODS) - NEED_A_RECORD - NEED_A_LAN, set(api.METHODS) - succeeded
    # the walk really met success, bad input, unknown ids and unknown methods
    assert {0, 2, 3, 4} <= statuses, statuses
    # neither agent logged a handler bug
    for home in (over_ubus, over_rpc):
        assert "failed:" not in home.agent_log(), home.agent_log()
