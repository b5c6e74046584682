"""The one method table: name -> (argument schema, handler), transport-free.

ubus, JSON-RPC and the CLI all call `dispatch(agent, method, args)`. The
ubus signature (`ubus -v list spin`), validation and the docs come from
METHODS and nowhere else. A schema maps each argument to
(type, default, limit): default REQUIRED means the caller must give it,
None means optional with no value; limit is (min, max) for ints and the
longest length for strings.

Errors say whose fault they are: ApiError(status, message) for the
caller's input (ubus status 2 INVALID_ARGUMENT, 4 NOT_FOUND); anything
else a handler raises is a bug, answered with 9 UNKNOWN_ERROR.
"""

from .addr import parse_ip, parse_mac, parse_remote
# the transports answer with these; the parts below the interface raise them
from .errors import (ApiError, INVALID_ARGUMENT, INVALID_COMMAND, METHOD_NOT_FOUND,  # noqa: F401
                     NO_DATA, NOT_FOUND, OK, PERMISSION_DENIED, STATUS_NAMES, UNKNOWN_ERROR)

REQUIRED = object()

# what uhttpd adds to every call that comes from the web (after rpcd's ACL check)
IGNORED_ARGS = ("ubus_rpc_session",)

# argument type -> blobmsg type announced in the ubus signature
BLOBMSG_TYPES = {"string": 3, "int": 5, "bool": 7, "table": 2, "array": 1,
                 "mac": 3, "ip": 3, "remote": 3}

PAGE_MAX = 1000
# a labelled flow is up to ~1.5 KB (IPv6, four names near 253 characters,
# domain, service): 150 of them stay near 230 KB as blobmsg, under the
# 256 KB any reply may take (DESIGN §9; tests/test_reply_bounds.py)
FLOWS_PAGE_MAX = 150
GRAPH_LIMIT_MAX = 200
# an anomaly record is at most ~1.35 KB (text ≤ 400 characters, ≤ 12 figures
# and thresholds, ≤ 5 example remotes and ports): a page of 100 of the
# largest is 135 KB as ubus blobmsg (tests/test_anomalies.py measures it)
ANOMALIES_PAGE_MAX = 100
# a device is up to ~1.3 KB (long names, three addresses, its bucket's top
# remotes and domains): 150 a page stay near 200 KB
DEVICES_PAGE_MAX = 150


def _check(name, kind, limit, value):
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ApiError(INVALID_ARGUMENT, "%s: expected a whole number" % name)
        if limit and not (limit[0] <= value <= limit[1]):
            raise ApiError(INVALID_ARGUMENT, "%s: %d is outside %d..%d" % (name, value, limit[0], limit[1]))
        return value
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):  # ubus CLI sends INT8/INT32
            return bool(value)
        raise ApiError(INVALID_ARGUMENT, "%s: expected true or false" % name)
    if kind == "table":
        if not isinstance(value, dict):
            raise ApiError(INVALID_ARGUMENT, "%s: expected an object" % name)
        return value
    if kind == "array":
        if not isinstance(value, list):
            raise ApiError(INVALID_ARGUMENT, "%s: expected an array" % name)
        return value
    if not isinstance(value, str):
        raise ApiError(INVALID_ARGUMENT, "%s: expected a string" % name)
    if kind == "string":
        if limit and len(value) > limit:
            raise ApiError(INVALID_ARGUMENT, "%s: longer than %d characters" % (name, limit))
        return value
    parser = {"mac": parse_mac, "ip": parse_ip, "remote": parse_remote}[kind]
    try:
        return parser(value.strip())
    except ValueError as e:
        raise ApiError(INVALID_ARGUMENT, "%s: %r is %s" % (name, value, e))


def validate(schema, args):
    """Checked copy of args with defaults filled in, or ApiError naming the
    first bad argument."""
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ApiError(INVALID_ARGUMENT, "arguments must be an object")
    for name in args:
        if name not in schema and name not in IGNORED_ARGS:
            raise ApiError(INVALID_ARGUMENT, "unknown argument %r" % name)
    out = {}
    for name, spec in schema.items():
        kind, default, limit = spec
        if name in args and args[name] is not None:
            out[name] = _check(name, kind, limit, args[name])
        elif default is REQUIRED:
            raise ApiError(INVALID_ARGUMENT, "missing argument %r" % name)
        else:
            out[name] = default
    return out


def page(items, args, key, most=PAGE_MAX):
    """Apply limit/offset; say how many remain so callers can page on."""
    offset = args.get("offset") or 0
    limit = args.get("limit") or most
    chunk = items[offset:offset + limit]
    return {key: chunk, "total": len(items), "offset": offset,
            "remaining": max(0, len(items) - offset - len(chunk))}


# -- handlers: read -------------------------------------------------------

def h_status(agent, a):
    return agent.status()


def h_devices(agent, a):
    offset = a["offset"] or 0
    chunk, total = agent.device_page(offset, a["limit"] or DEVICES_PAGE_MAX)
    return {"devices": chunk, "total": total, "offset": offset,
            "remaining": max(0, total - offset - len(chunk))}


def h_device(agent, a):
    d = agent.device_info(a["mac"])
    if d is None:
        raise ApiError(NOT_FOUND, "no device %s" % a["mac"])
    return d


def h_flows(agent, a):
    if a["mac"] is not None and agent.device_info(a["mac"]) is None:
        raise ApiError(NOT_FOUND, "no device %s" % a["mac"])
    offset = a["offset"] or 0
    limit = a["limit"] or FLOWS_PAGE_MAX
    chunk, total = agent.flow_page(a["mac"], offset, limit)
    return {"flows": chunk, "total": total, "offset": offset,
            "remaining": max(0, total - offset - len(chunk))}


def h_history(agent, a):
    if a["mac"] is not None and agent.device_info(a["mac"]) is None:
        raise ApiError(NOT_FOUND, "no device %s" % a["mac"])
    return agent.history(a["mac"], a["minutes"])


def h_graph(agent, a):
    if a["mac"] is not None and agent.device_info(a["mac"]) is None:
        raise ApiError(NOT_FOUND, "no device %s" % a["mac"])
    return agent.graph(a["mac"], a["limit"])


# -- handlers: blocks (the store and firewall part is blocks.Blocks) -----

def running(agent, attr, why):
    """The agent's part that answers a group of methods, or NOT_FOUND
    saying why (an agent started without it)."""
    part = getattr(agent, attr, None)
    if part is None:
        raise ApiError(NOT_FOUND, why)
    return part


def _blocks(agent):
    return running(agent, "blocks", "blocking is not running in this agent")


def h_block(agent, a):
    return _blocks(agent).block(a)


def h_unblock(agent, a):
    return _blocks(agent).unblock(a["id"])


def h_blocks(agent, a):
    return _blocks(agent).listing()


def h_quarantine(agent, a):
    return _blocks(agent).quarantine(a)


def h_release(agent, a):
    return _blocks(agent).release(a["mac"])


def h_allow(agent, a):
    return _blocks(agent).allow(a)


def h_disallow(agent, a):
    return _blocks(agent).disallow(a)


def h_reapply(agent, a):
    part = _blocks(agent)
    part.apply("reapply")
    return part.status()


# -- handlers: anomalies (the detector's records; the part is anomalies.Anomalies)

def _anomalies(agent):
    return running(agent, "anomalies", "the anomaly response is not running in this agent")


def h_anomalies(agent, a):
    return page(_anomalies(agent).listing(a["mac"]), a, "anomalies", ANOMALIES_PAGE_MAX)


def h_anomaly(agent, a):
    return _anomalies(agent).record(a["id"])


def h_keep(agent, a):
    return _anomalies(agent).keep(a["id"])


def h_mute(agent, a):
    return _anomalies(agent).mute(a["mac"], a["rule"], a["minutes"])


def h_unmute(agent, a):
    return _anomalies(agent).unmute(a["mac"], a["rule"])


def h_mutes(agent, a):
    return {"mutes": _anomalies(agent).mute_list()}


# -- handlers: names and the ignore list (the part is names.Names) -------

def _names(agent):
    return running(agent, "names", "names are not running in this agent")


def h_name(agent, a):
    return _names(agent).name(agent, a["mac"], a["name"])


def h_ignore(agent, a):
    return _names(agent).ignore(a["remote"])


def h_unignore(agent, a):
    return _names(agent).unignore(a["remote"])


def h_ignored(agent, a):
    return {"ignored": _names(agent).ignored_list()}


# -- handlers: captures (the part is capture.Captures) --------------------

def _captures(agent):
    return running(agent, "captures", "captures are not running in this agent")


def h_capture_start(agent, a):
    return _captures(agent).begin(a["mac"], a["seconds"], a["max_kb"])


def h_capture_stop(agent, a):
    return _captures(agent).halt(a["id"])


def h_capture_delete(agent, a):
    return _captures(agent).delete(a["id"])


def h_capture_data(agent, a):
    return _captures(agent).chunk(a["id"], a["offset"])


def h_watch(agent, a):
    return _captures(agent).watch(a["mac"], a["packets"])


def h_unwatch(agent, a):
    return _captures(agent).unwatch(a["mac"])


def h_watching(agent, a):
    return _captures(agent).watching()


def h_captures(agent, a):
    return _captures(agent).listing()


BLOCK_ARGS = {"mac": ("mac", None, None), "ip": ("ip", None, None),
              "remote": ("remote", None, None), "port": ("int", None, (1, 65535)),
              "proto": ("string", None, 8), "minutes": ("int", None, (1, 60 * 24 * 366)),
              "note": ("string", "", 200)}
TARGET_ARGS = {"mac": ("mac", None, None), "remote": ("remote", None, None)}


PAGING = {"limit": ("int", None, (1, PAGE_MAX)), "offset": ("int", 0, (0, 10000000))}
ID = ("int", REQUIRED, (1, 2 ** 31 - 1))
MUTE_ARGS = {"mac": ("mac", REQUIRED, None), "rule": ("string", REQUIRED, 40)}


def _with(base, extra):
    d = dict(base)
    d.update(extra)
    return d


# name: (schema, handler, writes)
METHODS = {
    "status": ({}, h_status, False),
    "devices": ({"limit": ("int", None, (1, DEVICES_PAGE_MAX)), "offset": PAGING["offset"]}, h_devices, False),
    "device": ({"mac": ("mac", REQUIRED, None)}, h_device, False),
    "flows": ({"mac": ("mac", None, None), "limit": ("int", None, (1, FLOWS_PAGE_MAX)),
               "offset": PAGING["offset"]}, h_flows, False),
    "history": ({"mac": ("mac", None, None), "minutes": ("int", 60, (1, 60 * 24 * 7))}, h_history, False),
    "graph": ({"mac": ("mac", None, None), "limit": ("int", 20, (1, GRAPH_LIMIT_MAX))}, h_graph, False),
    "block": (BLOCK_ARGS, h_block, True),
    "unblock": ({"id": ("int", REQUIRED, (1, 2 ** 31 - 1))}, h_unblock, True),
    "blocks": ({}, h_blocks, False),
    "quarantine": ({"mac": ("mac", REQUIRED, None), "minutes": ("int", None, (1, 60 * 24 * 366)),
                    "reason": ("string", "", 200)}, h_quarantine, True),
    "release": ({"mac": ("mac", REQUIRED, None)}, h_release, True),
    "allow": (TARGET_ARGS, h_allow, True),
    "disallow": (TARGET_ARGS, h_disallow, True),
    "reapply": ({}, h_reapply, True),
    "anomalies": ({"mac": ("mac", None, None), "limit": ("int", None, (1, ANOMALIES_PAGE_MAX)),
                   "offset": PAGING["offset"]}, h_anomalies, False),
    "anomaly": ({"id": ID}, h_anomaly, False),
    "mutes": ({}, h_mutes, False),
    "keep": ({"id": ID}, h_keep, True),
    "mute": (_with(MUTE_ARGS, {"minutes": ("int", None, (1, 60 * 24 * 366))}), h_mute, True),
    "unmute": (MUTE_ARGS, h_unmute, True),
    "name": ({"mac": ("mac", REQUIRED, None), "name": ("string", REQUIRED, 64)}, h_name, True),
    "ignore": ({"remote": ("remote", REQUIRED, None)}, h_ignore, True),
    "unignore": ({"remote": ("remote", REQUIRED, None)}, h_unignore, True),
    "ignored": ({}, h_ignored, False),
    # the part checks seconds and max_kb against capture_seconds_max and
    # capture_kb_max; these limits only keep absurd numbers out
    "capture_start": ({"mac": ("mac", REQUIRED, None), "seconds": ("int", None, (1, 86400)),
                       "max_kb": ("int", None, (1, 1 << 30))}, h_capture_start, True),
    "capture_stop": ({"id": ID}, h_capture_stop, True),
    "capture_delete": ({"id": ID}, h_capture_delete, True),
    "captures": ({}, h_captures, False),
    # on the write side: whole packets are for those who may capture them
    "watch": ({"mac": ("mac", REQUIRED, None), "packets": ("int", None, (1, 1 << 20))}, h_watch, True),
    "unwatch": ({"mac": ("mac", REQUIRED, None)}, h_unwatch, True),
    "watching": ({}, h_watching, False),
    "capture_data": ({"id": ID, "offset": ("int", 0, (0, 1 << 31))}, h_capture_data, True),
}


def dispatch(agent, method, args, table=None):
    """Call a method of table (METHODS; the controller serves a table of
    its own). Returns the reply dict; raises ApiError."""
    entry = (METHODS if table is None else table).get(method)
    if entry is None:
        raise ApiError(METHOD_NOT_FOUND, "no method %r" % method)
    schema, handler, _ = entry
    checked = validate(schema, args)
    return handler(agent, checked)


def call(agent, method, args, table=None):
    """dispatch() as (status, reply, message) for transports: a handler bug
    becomes UNKNOWN_ERROR with one line on stderr and the agent goes on."""
    try:
        return OK, dispatch(agent, method, args, table), None
    except ApiError as e:
        return e.status, None, e.message
    except Exception as e:  # a bug in a handler must not stop the agent
        import sys
        sys.stderr.write("spin: %s failed: %s: %s\n" % (method, type(e).__name__, e))
        return UNKNOWN_ERROR, None, "internal error in %s" % method


def signature():
    """{method: {arg: blobmsg type}} for ubus ADD_OBJECT."""
    sig = {}
    for name, (schema, _, _) in METHODS.items():
        sig[name] = {arg: BLOBMSG_TYPES[spec[0]] for arg, spec in schema.items()}
    return sig
