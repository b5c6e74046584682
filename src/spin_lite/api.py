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

OK = 0
INVALID_COMMAND = 1
INVALID_ARGUMENT = 2
METHOD_NOT_FOUND = 3
NOT_FOUND = 4
NO_DATA = 5
PERMISSION_DENIED = 6
UNKNOWN_ERROR = 9

STATUS_NAMES = {
    0: "OK", 1: "INVALID_COMMAND", 2: "INVALID_ARGUMENT", 3: "METHOD_NOT_FOUND",
    4: "NOT_FOUND", 5: "NO_DATA", 6: "PERMISSION_DENIED", 9: "UNKNOWN_ERROR",
}

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
# a device is up to ~1.3 KB (long names, three addresses, its bucket's top
# remotes and domains): 150 a page stay near 200 KB
DEVICES_PAGE_MAX = 150


class ApiError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


# -- argument types -------------------------------------------------------

HEX = "0123456789abcdef"


def parse_mac(value):
    mac = value.lower().replace("-", ":")
    parts = mac.split(":")
    if len(parts) != 6:
        raise ValueError("not a MAC address")
    for p in parts:
        if len(p) != 2 or p[0] not in HEX or p[1] not in HEX:
            raise ValueError("not a MAC address")
    return mac


def parse_ipv4(value):
    parts = value.split(".")
    if len(parts) != 4:
        raise ValueError("not an IPv4 address")
    n = 0
    for p in parts:
        if not p.isdigit() or len(p) > 3 or int(p) > 255:
            raise ValueError("not an IPv4 address")
        n = (n << 8) | int(p)
    return n


def parse_ipv6(value):
    """IPv6 text -> int. Accepts '::' and an embedded IPv4 tail."""
    if value.count("::") > 1 or not value or "%" in value:
        raise ValueError("not an IPv6 address")
    if "." in value:
        head, _, v4 = value.rpartition(":")
        n4 = parse_ipv4(v4)
        value = "%s:%x:%x" % (head, n4 >> 16, n4 & 0xFFFF)
    if "::" in value:
        left, right = value.split("::")
        lw = left.split(":") if left else []
        rw = right.split(":") if right else []
        missing = 8 - len(lw) - len(rw)
        if missing < 1:
            raise ValueError("not an IPv6 address")
        words = lw + ["0"] * missing + rw
    else:
        words = value.split(":")
    if len(words) != 8:
        raise ValueError("not an IPv6 address")
    n = 0
    for w in words:
        if not w or len(w) > 4:
            raise ValueError("not an IPv6 address")
        for c in w.lower():
            if c not in HEX:
                raise ValueError("not an IPv6 address")
        n = (n << 16) | int(w, 16)
    return n


def format_ipv6(n):
    words = ["%x" % ((n >> (16 * (7 - i))) & 0xFFFF) for i in range(8)]
    # the longest run of two or more zero words becomes '::' (RFC 5952)
    best, best_len, i = -1, 1, 0
    while i < 8:
        if words[i] == "0":
            j = i
            while j < 8 and words[j] == "0":
                j += 1
            if j - i > best_len:
                best, best_len = i, j - i
            i = j
        else:
            i += 1
    if best < 0:
        return ":".join(words)
    return ":".join(words[:best]) + "::" + ":".join(words[best + best_len:])


def ipv6_from_bytes(raw):
    """16 bytes off the wire -> normalised text."""
    n = 0
    for b in raw:
        n = (n << 8) | b
    return format_ipv6(n)


def parse_ip(value):
    """Normalised text of an IPv4 or IPv6 address, or ValueError."""
    if ":" in value:
        return format_ipv6(parse_ipv6(value))
    n = parse_ipv4(value)
    return "%d.%d.%d.%d" % (n >> 24, (n >> 16) & 255, (n >> 8) & 255, n & 255)


def parse_remote(value):
    """An address or a CIDR prefix, normalised: '203.0.113.0/24'."""
    if "/" not in value:
        return parse_ip(value)
    addr, _, bits = value.partition("/")
    ip = parse_ip(addr)
    limit = 128 if ":" in ip else 32
    if not bits.isdigit() or int(bits) > limit:
        raise ValueError("bad prefix length")
    return ip + "/" + str(int(bits))


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

def _blocks(agent):
    part = getattr(agent, "blocks", None)
    if part is None:
        raise ApiError(NOT_FOUND, "blocking is not running in this agent")
    return part


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


# -- handlers: names and the ignore list (the part is names.Names) -------

def _names(agent):
    part = getattr(agent, "names", None)
    if part is None:
        raise ApiError(NOT_FOUND, "names are not running in this agent")
    return part


def h_name(agent, a):
    return _names(agent).name(agent, a["mac"], a["name"])


def h_ignore(agent, a):
    return _names(agent).ignore(a["remote"])


def h_unignore(agent, a):
    return _names(agent).unignore(a["remote"])


def h_ignored(agent, a):
    return {"ignored": _names(agent).ignored_list()}


BLOCK_ARGS = {"mac": ("mac", None, None), "ip": ("ip", None, None),
              "remote": ("remote", None, None), "port": ("int", None, (1, 65535)),
              "proto": ("string", None, 8), "minutes": ("int", None, (1, 60 * 24 * 366)),
              "note": ("string", "", 200)}
TARGET_ARGS = {"mac": ("mac", None, None), "remote": ("remote", None, None)}


PAGING = {"limit": ("int", None, (1, PAGE_MAX)), "offset": ("int", 0, (0, 10000000))}


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
    "name": ({"mac": ("mac", REQUIRED, None), "name": ("string", REQUIRED, 64)}, h_name, True),
    "ignore": ({"remote": ("remote", REQUIRED, None)}, h_ignore, True),
    "unignore": ({"remote": ("remote", REQUIRED, None)}, h_unignore, True),
    "ignored": ({}, h_ignored, False),
}


def dispatch(agent, method, args):
    """Call a method. Returns the reply dict; raises ApiError."""
    entry = METHODS.get(method)
    if entry is None:
        raise ApiError(METHOD_NOT_FOUND, "no method %r" % method)
    schema, handler, _ = entry
    checked = validate(schema, args)
    return handler(agent, checked)


def call(agent, method, args):
    """dispatch() as (status, reply, message) for transports: a handler bug
    becomes UNKNOWN_ERROR with one line on stderr and the agent goes on."""
    try:
        return OK, dispatch(agent, method, args), None
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
