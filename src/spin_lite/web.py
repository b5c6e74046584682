"""The visualizer on the agent's own HTTP listener, for hosts without LuCI.

Two things are added to the JSON-RPC server (jsonrpc.Server.routes), and
only when that listener is on:

* GET of static files from `www_dir`, laid out as on a router's /www:
  /spin/index.html (the standalone page), /luci-static/resources/... (the
  LuCI views and the shared drawing code). Nothing outside www_dir is ever
  read: a path with an empty, dot or dot-dot segment, or an extension not
  in TYPES, is 404.
* POST /ubus, speaking what uhttpd-mod-ubus speaks, so the same LuCI views
  (and the standalone page, which runs them through a small LuCI-like
  loader) call the agent exactly as they call rpcd on a router:
  {"method":"call","params":[session, "spin", method, args]} ->
  {"result":[status, data]} (just [status] when the call failed), and
  {"method":"list","params":["spin"]} -> {"result":{"spin":{method:{arg:type}}}}.
  uhttpd adds `ubus_rpc_session` to the arguments; so do we (the api ignores
  it). There is no rpcd here, so no session or ACL check: this listener is a
  unix socket with mode 0600 or loopback, or it needs the bearer token
  (the page's own files do not: the page asks the owner for the token).
* GET /capture/N.pcap: a capture's file (capture.Captures), guarded the
  same way as /ubus.
"""

from . import api, plat

json = plat.json

TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "application/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "json": "application/json",
    "svg": "image/svg+xml",
    "png": "image/png",
    "ico": "image/x-icon",
}

MAX_FILE = 1 << 20

# the names uhttpd gives blobmsg types in a "list" reply
LIST_TYPES = {"string": "string", "int": "number", "bool": "boolean", "table": "object",
              "array": "array", "mac": "string", "ip": "string", "remote": "string"}

# JSON-RPC errors as uhttpd sends them (uhttpd ubus.c: a frame it cannot
# read, or call params that are not [sid, object, method, {args}], is a
# parse error; args that already carry ubus_rpc_session are refused)
ERR_PARSE = (-32700, "Parse error")
ERR_PARAMS = (-32602, "Invalid parameters")
ERR_METHOD = (-32601, "Method not found")
ERR_OBJECT = (-32000, "Object not found")


def static_file(root, path):
    """(code, body, content type) for a GET of path under root."""
    path = path.split("?")[0]
    if path.endswith("/"):
        path += "index.html"
    parts = path.split("/")[1:]
    for p in parts:
        # a NUL would reach open() (ValueError), never a file
        if p in ("", ".", "..") or p.startswith(".") or "\0" in p:
            return 404, b"not found\n", "text/plain"
    ext = parts[-1].rpartition(".")[2].lower()
    if ext not in TYPES:
        return 404, b"not found\n", "text/plain"
    data = plat.read_file(root.rstrip("/") + "/" + "/".join(parts))
    if data is None or len(data) > MAX_FILE:
        return 404, b"not found\n", "text/plain"
    return 200, data, TYPES[ext]


def signature_for_list(methods=None):
    """{method: {arg: type name}} as uhttpd answers "list", of a method
    table (the agent's api.METHODS unless told)."""
    out = {}
    for name, (schema, _, _) in (methods or api.METHODS).items():
        out[name] = {arg: LIST_TYPES[spec[0]] for arg, spec in schema.items()}
    return out


def _error(rid, err):
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": err[0], "message": err[1]}}


def ubus_one(agent, req, call=None, methods=None):
    """One uhttpd-style JSON-RPC request object -> its response object.
    call and methods: the table it dispatches on (api.call and api.METHODS
    unless told: the controller gives its own)."""
    if not isinstance(req, dict) or req.get("jsonrpc") != "2.0" or not isinstance(req.get("method"), str):
        return _error(req.get("id") if isinstance(req, dict) else None, ERR_PARSE)
    rid = req.get("id")
    params = req.get("params")
    if req["method"] == "list":
        if params is None or params == []:
            return {"jsonrpc": "2.0", "id": rid, "result": ["spin"]}
        if not isinstance(params, list):
            return {"jsonrpc": "2.0", "id": rid, "result": ["spin"]}
        result = {}
        for obj in params:
            if obj == "spin":
                result["spin"] = signature_for_list(methods)
        return {"jsonrpc": "2.0", "id": rid, "result": result}
    if req["method"] != "call":
        return _error(rid, ERR_METHOD)
    if (not isinstance(params, list) or len(params) < 4 or not all(isinstance(p, str) for p in params[:3])
            or not isinstance(params[3], dict)):
        return _error(rid, ERR_PARSE)
    sid, obj, method, args = params[0], params[1], params[2], params[3]
    if "ubus_rpc_session" in args:
        return _error(rid, ERR_PARAMS)
    if obj != "spin":
        return _error(rid, ERR_OBJECT)
    args = dict(args)
    args["ubus_rpc_session"] = sid
    status, reply, message = (call or api.call)(agent, method, args)
    if status:
        # ubus carries no message with a status; keep it where an admin looks
        plat.warn("ubus call spin.%s: %s" % (method, message))
        return {"jsonrpc": "2.0", "id": rid, "result": [status]}
    return {"jsonrpc": "2.0", "id": rid, "result": [0, reply if reply is not None else {}]}


def ubus_route(agent, method, headers, body, call=None, methods=None):
    if method != "POST":
        return 405, json.dumps({"error": "POST a JSON-RPC request"}), "application/json"
    try:
        req = json.loads(body)
    except (ValueError, UnicodeError, RuntimeError):  # RuntimeError: nested too deep (RecursionError)
        return 200, json.dumps({"jsonrpc": "2.0", "id": None,
                                "error": {"code": -32700, "message": "Parse error"}}), "application/json"
    if isinstance(req, list):
        out = [ubus_one(agent, r, call, methods) for r in req]
    else:
        out = ubus_one(agent, req, call, methods)
    return 200, json.dumps(out), "application/json"


def capture_route(agent, method, headers, body):
    """GET /capture/N.pcap: capture N's file (a running one: what it holds
    so far). Not public: beyond loopback it needs the token like the API."""
    if method not in ("GET", "HEAD"):
        return 405, b"GET only\n", "text/plain"
    name = headers.get(":path", "")[len("/capture/"):]
    cid = name[:-5]
    part = getattr(agent, "captures", None)
    # not str.isdigit: it takes '²', which int() refuses
    if (part is None or not name.endswith(".pcap") or not cid or len(cid) > 9
            or [c for c in cid if c not in "0123456789"]):
        return 404, b"not found\n", "text/plain"
    found = part.file_of(int(cid))
    data = plat.read_file(found[0]) if found else None
    if data is None:
        return 404, b"not found\n", "text/plain"
    return 200, data, "application/vnd.tcpdump.pcap"


class Files:
    """GET of the page's files. Public: a listener that needs a token for
    the API still hands out the page that asks for it (the files are the
    same for everyone; the data is what the token guards). A class, not a
    function with an attribute: MicroPython's functions take none."""

    public = True

    def __init__(self, root):
        self.root = root

    def __call__(self, agent, method, headers, body):
        if method not in ("GET", "HEAD"):
            return 405, b"GET only\n", "text/plain"
        return static_file(agent.cfg.get("www_dir") or self.root, headers.get(":path", ""))


class Ubus:
    """POST /ubus on another method table than the agent's (the
    controller's); a class for MicroPython, as Files."""

    def __init__(self, call, methods):
        self.call = call
        self.methods = methods

    def __call__(self, agent, method, headers, body):
        return ubus_route(agent, method, headers, body, self.call, self.methods)


def serve_page(server, root, route=ubus_route):
    """The page's routes on a JSON-RPC server: /ubus (route), and the
    files under root when there is one."""
    server.routes["/ubus"] = route
    server.routes["/ubus/"] = route   # LuCI appends "/spin.devices" to the URL
    if root:
        files = Files(root)
        for prefix in ("/spin/", "/luci-static/"):
            server.routes[prefix] = files


class Web:
    """An agent part: adds its routes to the JSON-RPC server, if there is one."""

    def start(self, agent):
        server = None
        for p in agent.parts:
            if hasattr(p, "routes"):
                server = p
        if server is None:
            return
        server.routes["/capture/"] = capture_route
        serve_page(server, agent.cfg.get("www_dir") or "")
