"""The agent's link to ubusd: owns the socket, serves object `spin`.

ubus.Service (sans-IO) speaks the protocol; this part does the I/O around
it, the way umqtt.robust layers reconnecting on umqtt.simple. It connects
to `ubus_socket` (the configured path, or OpenWrt's default and then the
older /var/run/ubus.sock), puts the socket in the agent's poll loop,
registers `spin` with the signature of the method table, answers each call
through `api.call` and writes DATA then STATUS. When ubusd goes away (EOF,
a socket error, bytes we cannot read) the part drops everything and connects
again with backoff; a new HELLO registers the object again (ubusd hands out
new ids). Events the agent emits (`agent.emit`) go out as ubus events while
registered; REMOVE_OBJECT goes out on stop.

Also here, for `spin call` and tests: a small blocking Client and
`call(socket_path, method, args, timeout)`.
"""

import os

from . import api, plat, ubus

socket = plat.sockets()  # socket's names without `import socket` (plat.sockets)

DEFAULT_SOCKET = "/var/run/ubus/ubus.sock"
OLD_SOCKET = "/var/run/ubus.sock"            # OpenWrt before 21.02 (GL.iNet 3.x)
BACKOFF = (0.1, 0.2, 0.5, 1, 2, 3)           # seconds between tries while ubusd is away
SEND_TIMEOUT = 5                             # a ubusd that takes no bytes for this long is gone
OBJECT = "spin"
EAGAIN = 11


def find_socket(cfg):
    """The ubusd socket that exists: the configured one, and for the default
    also the older path; None when there is none (no ubus on this host)."""
    path = cfg.get("ubus_socket") or DEFAULT_SOCKET
    paths = [path, OLD_SOCKET] if path == DEFAULT_SOCKET else [path]
    for p in paths:
        try:
            os.stat(p)
            return p
        except OSError:
            pass
    return None


class UbusLink:
    """Agent part: object `spin` on ubus, kept registered."""

    def __init__(self, path=None):
        self.path = path
        self.agent = None
        self.sock = None
        self.service = None
        self.timer = None
        self.tries = 0
        self.registered = 0      # how many times ubusd accepted the object
        self.was_ready = False
        self.stopped = False

    # -- agent part --

    def start(self, agent):
        self.agent = agent
        agent.listeners.append(self.on_event)
        self.connect()

    def stop(self, agent):
        self.stopped = True
        if self.on_event in agent.listeners:
            agent.listeners.remove(self.on_event)
        if self.timer is not None:
            agent.loop.cancel(self.timer)
            self.timer = None
        if self.service is not None and self.sock is not None:
            try:
                self._write(self.service.stop())
            except ubus.ProtocolError:
                pass
        self._close()

    # -- connection --

    def connect(self):
        self.timer = None
        if self.stopped:
            return
        cfg = self.agent.cfg
        path = self.path or find_socket(cfg) or cfg.get("ubus_socket") or DEFAULT_SOCKET
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(plat.unix_address(path))
        except OSError as e:
            s.close()
            self._retry("cannot connect to ubusd at %s: %s" % (path, e))
            return
        s.settimeout(SEND_TIMEOUT)
        self.sock = s
        self.was_ready = False
        self.service = ubus.Service(OBJECT, api.signature(), self._call, log=plat.warn)
        self.agent.loop.add_reader(s, self._readable)

    def _call(self, method, args):
        return api.call(self.agent, method, args)

    def _readable(self):
        sock = self.sock
        if sock is None:
            return
        try:
            data = sock.recv(65536)
        except OSError as e:
            if e.errno == EAGAIN:
                return
            self._drop("ubusd connection failed: %s" % e)
            return
        try:
            out = self.service.receive(data)
        except ubus.ProtocolError as e:
            self._drop("ubus: %s" % e)
            return
        if out:
            self._write(out)
            if self.sock is None:      # the write failed and dropped the connection
                return
        if not data:
            self._drop("ubusd closed the connection")
            return
        if self.service is not None and self.service.ready and not self.was_ready:
            self.was_ready = True
            self.registered += 1
            self.tries = 0
            self.agent.errors.pop("ubus", None)
            plat.info("ubus: object %s registered (id %08x)" % (OBJECT, self.service.objid))

    def _write(self, data):
        if not data or self.sock is None:
            return
        try:
            self.sock.sendall(data)
        except OSError as e:
            self._drop("ubusd takes no data: %s" % e)

    def _close(self):
        if self.sock is not None:
            self.agent.loop.remove_reader(self.sock)
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self.service = None

    def _drop(self, reason):
        self._close()
        self._retry(reason)

    def _retry(self, reason):
        if self.stopped:
            return
        if self.tries == 0:      # one line per outage, not one per try
            plat.warn(reason + "; trying again")
        self.agent.errors["ubus"] = reason
        if self.timer is not None:     # one reconnect pending at a time
            self.agent.loop.cancel(self.timer)
        delay = BACKOFF[min(self.tries, len(BACKOFF) - 1)]
        self.tries += 1
        self.timer = self.agent.loop.call_later(delay, self.connect)

    # -- events --

    def on_event(self, name, data):
        """agent.emit listener: the event goes out as a ubus event."""
        if self.service is None or not self.service.ready:
            return
        try:
            out = self.service.emit(name, data)
        except ubus.LocalProtocolError as e:
            plat.warn("ubus: event %s not sent: %s" % (name, e))
            return
        self._write(out)


# -- a blocking client (spin call, tests) ----------------------------------

class UbusError(Exception):
    def __init__(self, status, message=None):
        message = message or ubus.STATUS_NAMES.get(status, "status %d" % status)
        super().__init__("%s (%s)" % (message, ubus.STATUS_NAMES.get(status, status)))
        self.status = status
        self.message = message


class Client:
    """One blocking connection to ubusd."""

    def __init__(self, path, timeout=5):
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(plat.unix_address(path))
        except OSError as e:
            self.sock.close()
            raise UbusError(10, "cannot connect to ubusd at %s: %s" % (path, e))
        self.conn = ubus.Connection()
        self.heard = []          # (name, data) of events not yet taken
        self.listener = None
        ev = self._next()
        if not isinstance(ev, ubus.Hello):
            raise UbusError(10, "ubusd did not say hello")

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _next(self):
        while True:
            ev = self.conn.next_event()
            if ev is not None:
                return ev
            try:
                data = self.sock.recv(65536)
            except OSError as e:   # socket.timeout is an OSError
                raise UbusError(7, "no answer from ubusd: %s" % (e or "timeout"))
            self.conn.receive_data(data)

    def _send(self, data):
        self.sock.sendall(data)

    def _request(self, pair):
        seq, data = pair
        self._send(data)
        while True:
            ev = self._next()
            if isinstance(ev, ubus.Reply):
                if ev.seq == seq:
                    return ev
            elif isinstance(ev, ubus.Event):
                self._heard(ev)
            elif isinstance(ev, ubus.Invoke):
                self._send(self.conn.reply(ev, 3))
            elif isinstance(ev, ubus.Closed):
                raise UbusError(10, "ubusd closed the connection")

    def _heard(self, ev):
        self.heard.append((ev.name, ev.data))
        self._send(self.conn.reply(ev, ubus.OK))

    def lookup(self, path=None):
        """[{path, id, type, signature}] like `ubus -v list [path]`."""
        r = self._request(self.conn.lookup(path))
        if r.status == 4:
            return []
        if r.status:
            raise UbusError(r.status)
        return [{"path": m.get(ubus.A_OBJPATH), "id": m.get(ubus.A_OBJID),
                 "type": m.get(ubus.A_OBJTYPE), "signature": m.get(ubus.A_SIGNATURE) or {}}
                for m in r.messages]

    def invoke(self, objid, method, args=None):
        """-> (status, [DATA tables])"""
        r = self._request(self.conn.invoke(objid, method, args or {}))
        return r.status, r.tables()

    def call(self, obj, method, args=None):
        """Reply of obj.method(args), or UbusError with the status and the
        reason the service gave."""
        found = [o for o in self.lookup(obj) if o["path"] == obj]
        if not found:
            raise UbusError(4, "no ubus object %s" % obj)
        status, tables = self.invoke(found[0]["id"], method, args)
        if status:
            reason = None
            for t in tables:
                if isinstance(t.get("error"), str):
                    reason = t["error"]
            raise UbusError(status, reason)
        return tables[0] if tables else None

    def send(self, name, data=None):
        r = self._request(self.conn.send_event(name, data or {}))
        if r.status:
            raise UbusError(r.status)

    def listen(self, pattern):
        """Receive events matching pattern ('spin.*') from now on."""
        if self.listener is None:
            r = self._request(self.conn.add_object(None))
            if r.status:
                raise UbusError(r.status)
            self.listener = r.messages[0].get(ubus.A_OBJID)
        r = self._request(self.conn.register_events(self.listener, pattern))
        if r.status:
            raise UbusError(r.status)

    def next_event(self, timeout=None):
        """(name, data) of the next event heard, or None after timeout."""
        if self.heard:
            return self.heard.pop(0)
        self.sock.settimeout(timeout if timeout is not None else self.timeout)
        try:
            while not self.heard:
                try:
                    ev = self._next()
                except UbusError as e:
                    if e.status == 7:
                        return None
                    raise
                if isinstance(ev, ubus.Event):
                    self._heard(ev)
                elif isinstance(ev, ubus.Invoke):
                    self._send(self.conn.reply(ev, 3))
                elif isinstance(ev, ubus.Closed):
                    raise UbusError(10, "ubusd closed the connection")
            return self.heard.pop(0)
        finally:
            self.sock.settimeout(self.timeout)


def call(socket_path, method, args=None, timeout=5, obj=OBJECT):
    """One call over ubus (what `ubus call spin METHOD ARGS` does): the reply,
    or UbusError(status, reason)."""
    with Client(socket_path, timeout) as c:
        return c.call(obj, method, args)


def parts(cfg):
    """The agent's ubus part, when this host has a ubusd socket."""
    return [UbusLink()] if find_socket(cfg) else []


def caller(cfg, timeout=10):
    """(method, args) -> reply over ubus for `spin call`; errors come out as
    jsonrpc.RemoteError so the CLI treats both transports alike."""
    from . import jsonrpc
    path = find_socket(cfg)

    def call_one(method, args):
        try:
            return call(path, method, args, timeout)
        except UbusError as e:
            raise jsonrpc.RemoteError(e.status, e.message)
    return call_one
