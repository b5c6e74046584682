"""The method table over JSON-RPC 2.0 on HTTP, for hosts without ubus.

A listener on a unix socket (mode 0600: only root may call) and/or on
host:port. Loopback needs nothing more; any other address needs the
configured token as `Authorization: Bearer <token>`, and a call without it
gets 401 and changes nothing. Requests are read without blocking from the
agent's poll loop, bounded in size, one request per connection.

Errors carry the ubus status as their code, so both transports answer the
same: {"code": 2, "message": "...", "data": {"status": 2,
"status_name": "INVALID_ARGUMENT"}}. The JSON-RPC protocol errors keep
their standard codes (-32700 parse error, -32600 invalid request).
"""

import os

from . import api, plat

socket = plat.sockets()  # socket's names without `import socket` (plat.sockets)

json = plat.json

MAX_REQUEST = 1 << 20
LOOPBACK = ("127.0.0.1", "::1", "localhost")


class RemoteError(Exception):
    def __init__(self, status, message):
        super().__init__("%s (%s)" % (message, api.STATUS_NAMES.get(status, status)))
        self.status = status
        self.message = message


def split_hostport(text):
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def error_obj(status, message):
    return {"code": status, "message": message,
            "data": {"status": status, "status_name": api.STATUS_NAMES.get(status, str(status))}}


def handle_rpc(agent, body, table=None):
    """A JSON-RPC request body (bytes) -> response object (or list), on
    api.METHODS or (the controller's) another method table."""
    try:
        req = json.loads(body)
    except (ValueError, UnicodeError):
        return {"jsonrpc": "2.0", "id": None,
                "error": {"code": -32700, "message": "parse error: body is not JSON"}}
    except RuntimeError:  # RecursionError (MicroPython: RuntimeError): '[[[[...' a thousand deep
        return {"jsonrpc": "2.0", "id": None,
                "error": {"code": -32700, "message": "parse error: JSON nested too deep"}}
    if isinstance(req, list):
        if not req:
            return {"jsonrpc": "2.0", "id": None,
                    "error": {"code": -32600, "message": "empty batch"}}
        return [one_call(agent, r, table) for r in req]
    return one_call(agent, req, table)


def one_call(agent, req, table=None):
    if not isinstance(req, dict) or not isinstance(req.get("method"), str):
        return {"jsonrpc": "2.0", "id": None,
                "error": {"code": -32600, "message": "invalid request: need an object with a method"}}
    rid = req.get("id")
    params = req.get("params")
    if params is None:
        params = {}
    status, reply, message = api.call(agent, req["method"], params, table)
    if status:
        return {"jsonrpc": "2.0", "id": rid, "error": error_obj(status, message)}
    return {"jsonrpc": "2.0", "id": rid, "result": reply}


# -- HTTP framing (just enough of it) -------------------------------------

REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
           405: "Method Not Allowed", 413: "Payload Too Large"}


def parse_request(buf):
    """(method, path, headers, body) once buf holds a whole request, None
    while more is needed; ValueError on a request we will not read."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > 16384:
            raise ValueError("headers too long")
        return None
    try:
        # headers are ASCII (RFC 9110); MicroPython knows no latin-1
        head = buf[:end].decode("utf-8").split("\r\n")
    except UnicodeError:
        raise ValueError("headers are not text")
    parts = head[0].split(" ")
    if len(parts) != 3:
        raise ValueError("bad request line")
    headers = {}
    for line in head[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        raise ValueError("bad content-length")
    if length < 0 or length > MAX_REQUEST:
        raise ValueError("too large")
    if len(buf) < end + 4 + length:
        return None
    return parts[0], parts[1], headers, buf[end + 4:end + 4 + length]


def response(code, body, ctype="application/json"):
    if not isinstance(body, bytes):
        body = body.encode()
    head = "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n" \
           "Cache-Control: no-store\r\nConnection: close\r\n\r\n" % (
               code, REASONS.get(code, "OK"), ctype, len(body))
    return head.encode() + body


class Server:
    """An agent part: listens, reads requests from the loop, answers."""

    def __init__(self):
        self.listeners = []
        self.conns = {}
        # path -> fn(agent, method, headers, body) -> (code, body, ctype); a key
        # ending in "/" also takes every path under it; headers[":path"] is the path
        self.routes = {}

    def start(self, agent):
        cfg = agent.cfg
        if cfg["rpc_socket"]:
            self._listen_unix(agent, cfg["rpc_socket"])
        if cfg["rpc_listen"]:
            host, port = split_hostport(cfg["rpc_listen"])
            if host not in LOOPBACK and not cfg["token"]:
                raise ValueError("rpc_listen %s is not loopback: set option token" % cfg["rpc_listen"])
            self._listen_tcp(agent, host, port, host not in LOOPBACK)

    def _listen_unix(self, agent, path):
        plat.makedirs(path.rpartition("/")[0])
        try:
            os.remove(path)
        except OSError:
            pass
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = plat.umask(0o177)
        if old is None:
            # no umask here (MicroPython without ffi): nobody but root may
            # enter the directory, so the socket's own mode cannot matter
            # in the moment between bind and chmod. Only our own run_dir
            # is ours to close like that (never /tmp)
            where = path.rpartition("/")[0]
            if where.rstrip("/") != agent.cfg["run_dir"].rstrip("/"):
                s.close()
                raise ValueError("rpc_socket %s: this interpreter has no umask; put the socket "
                                 "in run_dir (%s), which is made 0700" % (path, agent.cfg["run_dir"]))
            plat.chmod(where, 0o700)
        try:
            s.bind(plat.unix_address(path))
        finally:
            if old is not None:
                plat.umask(old)
        if old is None:
            plat.chmod(path, 0o600)
        s.listen(16)
        s.setblocking(False)
        self.listeners.append((s, False, path))
        agent.loop.add_reader(s, lambda: self._accept(agent, s, False))

    def _listen_tcp(self, agent, host, port, need_token):
        ai = socket.getaddrinfo(host, port)[0]
        s = socket.socket(ai[0], socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(ai[-1])
        s.listen(16)
        s.setblocking(False)
        self.listeners.append((s, need_token, None))
        agent.loop.add_reader(s, lambda: self._accept(agent, s, need_token))

    def _accept(self, agent, s, need_token):
        try:
            conn, _ = s.accept()
        except OSError:
            return
        conn.setblocking(False)
        self.conns[plat.poll_fd(conn)] = [conn, b"", need_token, plat.monotonic_ms()]
        agent.loop.add_reader(conn, lambda: self._read(agent, conn))

    def _read(self, agent, conn):
        entry = self.conns.get(plat.poll_fd(conn))
        if entry is None:
            return
        try:
            data = conn.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._close(agent, conn)
            return
        entry[1] += data
        try:
            req = parse_request(entry[1])
        except ValueError as e:
            self._answer(agent, conn, response(413 if "large" in str(e) else 400,
                                                json.dumps({"error": str(e)})))
            return
        if req is None:
            return
        self._answer(agent, conn, self.respond(agent, req, entry[2]))

    def respond(self, agent, req, need_token):
        method, path, headers, body = req
        path = path.split("?")[0]
        route = self.routes.get(path) or self.routes.get(path[:path.find("/", 1) + 1])
        # a route marked public (the web page's own files) needs no token
        if need_token and not getattr(route, "public", False) \
                and headers.get("authorization", "") != "Bearer " + agent.cfg["token"]:
            return response(401, json.dumps({"error": "missing or wrong bearer token"}))
        if route is not None:
            headers[":path"] = path
            code, out, ctype = route(agent, method, headers, body)
            return response(code, out, ctype)
        if path not in ("/", "/rpc"):
            return response(404, json.dumps({"error": "no such path"}))
        if method != "POST":
            return response(405, json.dumps({"error": "POST a JSON-RPC request"}))
        return response(200, json.dumps(handle_rpc(agent, body)))

    def _answer(self, agent, conn, data):
        # replies are small and the peer is local: finish the write blocking
        try:
            conn.setblocking(True)
            conn.settimeout(5)
            while data:
                n = conn.send(data)
                data = data[n:]
        except OSError:
            pass
        self._close(agent, conn)

    def _close(self, agent, conn):
        agent.loop.remove_reader(conn)
        self.conns.pop(plat.poll_fd(conn), None)
        try:
            conn.close()
        except OSError:
            pass

    def after_scan(self, agent, now_ms):
        # a peer that never finishes its request is dropped after 30 s
        for fd, entry in list(self.conns.items()):
            if now_ms - entry[3] > 30000:
                self._close(agent, entry[0])

    def stop(self, agent):
        for entry in list(self.conns.values()):
            self._close(agent, entry[0])
        for s, _, path in self.listeners:
            agent.loop.remove_reader(s)
            s.close()
            if path:
                try:
                    os.remove(path)
                except OSError:
                    pass
        self.listeners = []


# -- client ---------------------------------------------------------------

def post(address, body, token=None, timeout=10, path="/"):
    """POST body to address (a unix socket path or host:port) -> (code, body)."""
    if address.startswith("/"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target = plat.unix_address(address)
        host = "localhost"
    else:
        host, port = split_hostport(address)
        ai = socket.getaddrinfo(host, port)[0]
        s = socket.socket(ai[0], socket.SOCK_STREAM)
        target = ai[-1]
    try:
        s.settimeout(timeout)
        s.connect(target)
        head = "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n" \
               "Content-Length: %d\r\nConnection: close\r\n" % (path, host, len(body))
        if token:
            head += "Authorization: Bearer %s\r\n" % token
        data = head.encode() + b"\r\n" + body
        while data:
            n = s.send(data)
            data = data[n:]
        chunks = []
        while True:
            c = s.recv(65536)
            if not c:
                break
            chunks.append(c)
    finally:
        s.close()
    raw = b"".join(chunks)
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        raise OSError(5, "no HTTP answer from %s" % address)
    code = int(raw[:end].split(b" ")[1])
    return code, raw[end + 4:]


def call(address, method, args=None, token=None, timeout=10):
    """Call one method; returns its reply or raises RemoteError."""
    req = {"jsonrpc": "2.0", "id": 1, "method": method, "params": args or {}}
    code, body = post(address, json.dumps(req).encode(), token, timeout)
    if code != 200:
        raise RemoteError(api.PERMISSION_DENIED if code == 401 else api.UNKNOWN_ERROR,
                          "HTTP %d: %s" % (code, body.decode("utf-8", "replace")))
    reply = json.loads(body)
    err = reply.get("error")
    if err:
        status = err.get("data", {}).get("status", api.INVALID_COMMAND) if isinstance(err.get("data"), dict) \
            else api.INVALID_COMMAND
        raise RemoteError(status, err.get("message", ""))
    return reply.get("result")
