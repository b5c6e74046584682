"""ubus on the wire, sans-IO: bytes in, events out; requests in, bytes out.

This module never touches a socket (STYLE §4, h11). Its owner feeds what the
socket gave with `Connection.receive_data(chunk)` (b"" for EOF), takes
events with `next_event()` until it returns None, and writes the bytes that
the request methods (`add_object`, `invoke`, `reply`, ...) return. Sockets,
timers and reconnecting live in `ubuslink`. The codec is written in the
subset MicroPython shares (struct without '=' or '?').

Frame layout (all integers big-endian), from ubusd's wire protocol:

    0      1      2             4                           8
    +------+------+-------------+---------------------------+
    | ver  | type |     seq     |           peer            |  message header
    +------+------+-------------+---------------------------+
    |E| id (7)  |        length incl. these 4 bytes (24)     |  blob attr, id 0:
    +-------------------------------------------------------+  the payload
    | ubus attribute | ubus attribute | ...                 |  (not extended)
    +-------------------------------------------------------+

    ubus attribute: blob header (E=0, id = STATUS/OBJPATH/...), value,
                    zero padding to a multiple of 4 (not counted in length)

    blobmsg value (inside DATA and SIGNATURE), E=1, id = blobmsg type:
    +----------+-------------+------------+------+---------+-------+-----+
    | hdr (4)  | namelen(16) | name bytes | NUL  | pad to 4| value | pad |
    +----------+-------------+------------+------+---------+-------+-----+

Theory of operation. A client connects and ubusd speaks first: HELLO tells
the client its peer id. Every request the client makes (LOOKUP, INVOKE,
ADD_OBJECT, REMOVE_OBJECT) carries a new `seq`; ubusd answers with zero or
more DATA messages and exactly one STATUS with that seq. The connection keeps
those requests in `pending` by seq, gathers the DATA and hands out one
`Reply` when the STATUS arrives. In the other direction ubusd delivers
INVOKEs (a caller wants one of our methods; `peer` is the caller) and, on an
object registered for events, INVOKEs whose method is an event name. Each
one is owed exactly one answer: `reply()` gives DATA (when there is a
value) then STATUS, with the INVOKE's seq and peer, which ubusd relays.

Rules: everything that changes protocol state happens in `Connection`,
checked against the TRANSITIONS table; a message the table does not allow
raises RemoteProtocolError naming type, state and seq (the owner drops the
connection and builds a new one), while a misuse by our own code (replying
twice, a message over 1 MiB) raises LocalProtocolError and changes nothing.
Input is never checked with assert.
"""

import struct

MAX_MESSAGE = 1024 * 1024  # UBUS_MAX_MSGLEN: ubusd disconnects a client that sends more
HEADER = 8                 # version, type, seq, peer

# -- message types (explicit ids) -----------------------------------------

HELLO = 0
STATUS = 1
DATA = 2
PING = 3
LOOKUP = 4
INVOKE = 5
ADD_OBJECT = 6
REMOVE_OBJECT = 7
SUBSCRIBE = 8
UNSUBSCRIBE = 9
NOTIFY = 10
MONITOR = 11

MESSAGE_NAMES = {
    0: "HELLO", 1: "STATUS", 2: "DATA", 3: "PING", 4: "LOOKUP", 5: "INVOKE",
    6: "ADD_OBJECT", 7: "REMOVE_OBJECT", 8: "SUBSCRIBE", 9: "UNSUBSCRIBE",
    10: "NOTIFY", 11: "MONITOR",
}

# -- ubus attributes: (id, name, kind) --------------------------------------

U32 = "u32"
U8 = "u8"
STRING = "string"
TABLE = "table"    # a list of blobmsg values, decoded to a dict
RAW = "raw"        # kept as bytes

A_STATUS = 1
A_OBJPATH = 2
A_OBJID = 3
A_METHOD = 4
A_OBJTYPE = 5
A_SIGNATURE = 6
A_DATA = 7
A_TARGET = 8
A_ACTIVE = 9
A_NO_REPLY = 10
A_SUBSCRIBERS = 11
A_USER = 12
A_GROUP = 13

ATTRS = (
    (1, "STATUS", U32),
    (2, "OBJPATH", STRING),
    (3, "OBJID", U32),
    (4, "METHOD", STRING),
    (5, "OBJTYPE", U32),
    (6, "SIGNATURE", TABLE),
    (7, "DATA", TABLE),
    (8, "TARGET", U32),
    (9, "ACTIVE", U8),
    (10, "NO_REPLY", U8),
    (11, "SUBSCRIBERS", RAW),
    (12, "USER", STRING),
    (13, "GROUP", STRING),
)
ATTR_KIND = {a[0]: a[2] for a in ATTRS}
ATTR_NAMES = {a[0]: a[1] for a in ATTRS}

# -- blobmsg types (explicit ids) -------------------------------------------

UNSPEC = 0
ARRAY = 1
BTABLE = 2
BSTRING = 3
INT64 = 4
INT32 = 5
INT16 = 6
INT8 = 7   # booleans
DOUBLE = 8

BLOBMSG_TYPES = (
    (0, "unspec"), (1, "array"), (2, "table"), (3, "string"), (4, "int64"),
    (5, "int32"), (6, "int16"), (7, "bool"), (8, "double"),
)
BLOBMSG_NAMES = {t[0]: t[1] for t in BLOBMSG_TYPES}

# fixed-size blobmsg integers: type -> (struct format, size)
INT_FORMATS = {INT64: (">q", 8), INT32: (">i", 4), INT16: (">h", 2), INT8: (">b", 1)}

# -- status codes -----------------------------------------------------------

STATUS_NAMES = {
    0: "OK", 1: "INVALID_COMMAND", 2: "INVALID_ARGUMENT", 3: "METHOD_NOT_FOUND",
    4: "NOT_FOUND", 5: "NO_DATA", 6: "PERMISSION_DENIED", 7: "TIMEOUT",
    8: "NOT_SUPPORTED", 9: "UNKNOWN_ERROR", 10: "CONNECTION_FAILED",
    11: "NO_MEMORY", 12: "PARSE_ERROR", 13: "SYSTEM_ERROR",
}
OK = 0
NO_MEMORY = 11

EVENT_OBJECT = 1   # ubusd's own object: methods `send` and `register`


class ProtocolError(Exception):
    pass


class RemoteProtocolError(ProtocolError):
    """ubusd (or whoever is on the socket) sent bytes we cannot accept:
    drop the connection and build a new one."""


class LocalProtocolError(ProtocolError):
    """Our own code misused the connection; nothing was sent or changed."""


class TooBig(LocalProtocolError):
    def __init__(self, size):
        super().__init__(   # MicroPython has no Exception.__init__ to call by name
            "message of %d bytes is larger than ubus allows (%d)" % (size, MAX_MESSAGE))
        self.size = size


class Typed:
    """A value with an explicit blobmsg type, for where the C side insists
    on one (ubusd reads `object` of `register` as INT32 even above 2**31)."""
    __slots__ = ("type", "value")

    def __init__(self, type, value):
        self.type = type
        self.value = value


# -- blobmsg codec ----------------------------------------------------------

def _pad(n):
    return (n + 3) & ~3


def _zeros(n):
    return b"\0" * n


def _blob(ext, aid, body):
    """One blob attribute: header, body, zero padding."""
    n = 4 + len(body)
    if n > 0xFFFFFF:
        raise TooBig(n)
    word = (0x80000000 if ext else 0) | (aid << 24) | n
    return struct.pack(">I", word) + body + _zeros(_pad(n) - n)


def _typed_value(value):
    """(blobmsg type, value bytes) the way the C tools turn JSON into
    blobmsg: booleans INT8, integers INT32 when they fit else INT64."""
    if value is None:
        return UNSPEC, b""
    if isinstance(value, bool):
        return INT8, b"\1" if value else b"\0"
    if isinstance(value, int):
        if -0x80000000 <= value <= 0x7FFFFFFF:
            return INT32, struct.pack(">i", value)
        if -0x8000000000000000 <= value <= 0x7FFFFFFFFFFFFFFF:
            return INT64, struct.pack(">q", value)
        raise LocalProtocolError("integer %d does not fit in 64 bits" % value)
    if isinstance(value, float):
        return DOUBLE, struct.pack(">d", value)
    if isinstance(value, str):
        return BSTRING, value.encode() + b"\0"
    if isinstance(value, dict):
        return BTABLE, encode_table(value)
    if isinstance(value, (list, tuple)):
        return ARRAY, b"".join([encode_value("", v) for v in value])
    if isinstance(value, Typed):
        t = value.type
        if t in INT_FORMATS:
            fmt, size = INT_FORMATS[t]
            bits = size * 8
            v = int(value.value) & ((1 << bits) - 1)   # unsigned ids keep their bits
            if v >= 1 << (bits - 1):
                v -= 1 << bits
            return t, struct.pack(fmt, v)
        if t == DOUBLE:
            return DOUBLE, struct.pack(">d", float(value.value))
        if t == UNSPEC:
            return UNSPEC, b""
        t2, data = _typed_value(value.value)
        if t2 != t:
            raise LocalProtocolError("%r is not a blobmsg %s" % (value.value, BLOBMSG_NAMES.get(t, t)))
        return t, data
    raise LocalProtocolError("cannot send a %s over ubus" % type(value).__name__)


def encode_value(name, value):
    """One named blobmsg attribute."""
    t, data = _typed_value(value)
    nb = name.encode()
    hdr = _pad(2 + len(nb) + 1)
    return _blob(True, t, struct.pack(">H", len(nb)) + nb + _zeros(hdr - 2 - len(nb)) + data)


def encode_table(table):
    parts = []
    for k in table:
        if not isinstance(k, str):
            raise LocalProtocolError("table key %r is not a string" % (k,))
        parts.append(encode_value(k, table[k]))
    return b"".join(parts)


def _attr_header(buf, pos, end):
    """(extended, id, length, next position) of the blob attribute at pos."""
    if end - pos < 4:
        raise RemoteProtocolError("attribute header cut short at offset %d" % pos)
    word = struct.unpack_from(">I", buf, pos)[0]
    n = word & 0xFFFFFF
    if n < 4 or pos + n > end:
        raise RemoteProtocolError("attribute at offset %d has bad length %d" % (pos, n))
    return word >> 31, (word >> 24) & 0x7F, n, min(pos + _pad(n), end)


def _cstring(buf, start, end, what):
    raw = bytes(buf[start:end])
    if not raw or raw[-1] != 0:
        raise RemoteProtocolError("%s is not NUL-terminated" % what)
    try:
        return raw[:-1].decode()
    except UnicodeError:
        raise RemoteProtocolError("%s is not UTF-8" % what)


# tables and arrays inside each other: what LuCI and the ubus CLI send is a
# few deep; a peer's thousand-deep nesting would end in RecursionError
MAX_DEPTH = 32


def decode_values(buf, pos, end, named=True, depth=0):
    """The blobmsg values in buf[pos:end] as [(name, value)]."""
    if depth > MAX_DEPTH:
        raise RemoteProtocolError("blobmsg nested deeper than %d at offset %d" % (MAX_DEPTH, pos))
    out = []
    while pos < end:
        ext, t, n, nxt = _attr_header(buf, pos, end)
        if not ext:
            raise RemoteProtocolError("blobmsg value at offset %d is not extended" % pos)
        stop = pos + n
        if n < 7:
            raise RemoteProtocolError("blobmsg value at offset %d too short" % pos)
        namelen = struct.unpack_from(">H", buf, pos + 4)[0]
        vstart = pos + 4 + _pad(2 + namelen + 1)
        if vstart > stop:
            raise RemoteProtocolError("blobmsg name at offset %d runs past its value" % pos)
        name = _cstring(buf, pos + 6, pos + 7 + namelen, "blobmsg name")
        out.append((name, _decode_typed(buf, t, vstart, stop, depth)))
        pos = nxt
    return out


def _decode_typed(buf, t, start, stop, depth=0):
    size = stop - start
    if t == BSTRING:
        return _cstring(buf, start, stop, "blobmsg string")
    if t == BTABLE:
        d = {}
        for k, v in decode_values(buf, start, stop, True, depth + 1):
            d[k] = v
        return d
    if t == ARRAY:
        return [v for _, v in decode_values(buf, start, stop, True, depth + 1)]
    if t in INT_FORMATS:
        fmt, want = INT_FORMATS[t]
        if size != want:
            raise RemoteProtocolError("blobmsg %s of %d bytes" % (BLOBMSG_NAMES[t], size))
        v = struct.unpack_from(fmt, buf, start)[0]
        return bool(v) if t == INT8 else v
    if t == DOUBLE:
        if size != 8:
            raise RemoteProtocolError("blobmsg double of %d bytes" % size)
        return struct.unpack_from(">d", buf, start)[0]
    if t == UNSPEC:
        return None
    raise RemoteProtocolError("unknown blobmsg type %d" % t)


def decode_table(data):
    """bytes of a blobmsg table body -> dict (for tests and tools)."""
    d = {}
    for k, v in decode_values(data, 0, len(data)):
        d[k] = v
    return d


# -- messages ---------------------------------------------------------------

class Message:
    """One ubus message. attrs is [(attribute id, value)] in wire order
    (ubusd's INVOKE puts DATA after USER and GROUP; order is kept so a
    message re-encodes to the same bytes)."""
    __slots__ = ("type", "seq", "peer", "attrs")

    def __init__(self, type, seq=0, peer=0, attrs=()):
        self.type = type
        self.seq = seq
        self.peer = peer
        self.attrs = list(attrs)

    def get(self, aid, default=None):
        for k, v in self.attrs:
            if k == aid:
                return v
        return default

    def __repr__(self):
        parts = ["%s seq=%d peer=%d" % (MESSAGE_NAMES.get(self.type, self.type), self.seq, self.peer)]
        for k, v in self.attrs:
            parts.append("%s=%r" % (ATTR_NAMES.get(k, k), v))
        return "<" + " ".join(parts) + ">"


def _encode_attr(aid, value):
    kind = ATTR_KIND.get(aid, RAW)
    if kind == U32:
        body = struct.pack(">I", value & 0xFFFFFFFF)
    elif kind == U8:
        body = struct.pack(">B", value & 0xFF)
    elif kind == STRING:
        body = value.encode() + b"\0"
    elif kind == TABLE:
        body = encode_table(value)
    else:
        body = bytes(value)
    return _blob(False, aid, body)


def encode_message(msg):
    payload = b"".join([_encode_attr(k, v) for k, v in msg.attrs])
    out = struct.pack(">BBHI", 0, msg.type, msg.seq & 0xFFFF, msg.peer & 0xFFFFFFFF) + _blob(False, 0, payload)
    if len(out) > MAX_MESSAGE:
        raise TooBig(len(out))
    return out


def _decode_attr(buf, aid, start, stop):
    kind = ATTR_KIND.get(aid, RAW)
    size = stop - start
    if kind == U32:
        if size != 4:
            raise RemoteProtocolError("%s of %d bytes" % (ATTR_NAMES[aid], size))
        return struct.unpack_from(">I", buf, start)[0]
    if kind == U8:
        if size != 1:
            raise RemoteProtocolError("%s of %d bytes" % (ATTR_NAMES[aid], size))
        return buf[start]
    if kind == STRING:
        return _cstring(buf, start, stop, ATTR_NAMES[aid])
    if kind == TABLE:
        d = {}
        for k, v in decode_values(buf, start, stop):
            d[k] = v
        return d
    return bytes(buf[start:stop])


def frame_length(buf):
    """Length of the whole message at the start of buf, or None while fewer
    than 12 bytes are there."""
    if len(buf) < HEADER + 4:
        return None
    return HEADER + _pad(struct.unpack_from(">I", buf, HEADER)[0] & 0xFFFFFF)


def decode_message(buf):
    """One whole message (exactly frame_length bytes) -> Message."""
    if len(buf) < HEADER + 4:
        raise RemoteProtocolError("message shorter than its header")
    version, mtype, seq, peer = struct.unpack_from(">BBHI", buf, 0)
    if version != 0:
        raise RemoteProtocolError("ubus protocol version %d" % version)
    ext, aid, n, _ = _attr_header(buf, HEADER, len(buf))
    if ext or aid != 0:
        raise RemoteProtocolError("%s seq=%d: payload is not attribute 0" % (MESSAGE_NAMES.get(mtype, mtype), seq))
    pos, end = HEADER + 4, HEADER + n
    attrs = []
    while pos < end:
        ext, aid, an, nxt = _attr_header(buf, pos, end)
        attrs.append((aid, _decode_attr(buf, aid, pos + 4, pos + an)))
        pos = nxt
    return Message(mtype, seq, peer, attrs)


class Framer:
    """Splits a byte stream into messages, holding at most one partial
    message, and refusing a header that announces more than max_message."""

    def __init__(self, max_message=MAX_MESSAGE):
        self.buf = bytearray()
        self.max_message = max_message

    def feed(self, data):
        self.buf.extend(data)

    def next(self):
        """The next whole Message, or None until its last byte is here."""
        n = frame_length(self.buf)
        if n is None:
            return None
        if n > self.max_message:
            raise RemoteProtocolError("peer announced a message of %d bytes (limit %d)" % (n, self.max_message))
        if len(self.buf) < n:
            return None
        msg = decode_message(memoryview(self.buf)[:n])
        self.buf = self.buf[n:]
        return msg


# -- connection state machine (client side) ---------------------------------

WAIT_HELLO = "WAIT_HELLO"   # connected, ubusd has not spoken yet
READY = "READY"             # HELLO seen: requests may go out, INVOKEs come in
CLOSED = "CLOSED"           # EOF from ubusd
ERROR = "ERROR"             # ubusd sent something we could not accept

IN = "in"
OUT = "out"

# (state, direction, message type) -> next state. Anything absent is illegal.
TRANSITIONS = {
    (WAIT_HELLO, IN, HELLO): READY,
    (READY, IN, DATA): READY,
    (READY, IN, STATUS): READY,
    (READY, IN, INVOKE): READY,
    (READY, IN, NOTIFY): READY,        # a subscriber came or went
    (READY, IN, UNSUBSCRIBE): READY,
    (READY, OUT, LOOKUP): READY,
    (READY, OUT, INVOKE): READY,
    (READY, OUT, ADD_OBJECT): READY,
    (READY, OUT, REMOVE_OBJECT): READY,
    (READY, OUT, DATA): READY,         # answers to INVOKE
    (READY, OUT, STATUS): READY,
}


class Hello:
    __slots__ = ("peer",)

    def __init__(self, peer):
        self.peer = peer


class Reply:
    """The end of one of our requests: its STATUS and the DATA before it."""
    __slots__ = ("seq", "request", "status", "messages")

    def __init__(self, seq, request, status, messages):
        self.seq = seq
        self.request = request      # the Message we sent
        self.status = status
        self.messages = messages    # DATA messages, in order

    def tables(self):
        """The DATA tables of an INVOKE's answer."""
        return [m.get(A_DATA) for m in self.messages if m.get(A_DATA) is not None]


class Invoke:
    """A caller wants one of our methods; answer with Connection.reply."""
    __slots__ = ("seq", "peer", "objid", "method", "args", "user", "group")

    def __init__(self, msg):
        self.seq = msg.seq
        self.peer = msg.peer
        self.objid = msg.get(A_OBJID)
        self.method = msg.get(A_METHOD)
        self.args = msg.get(A_DATA) or {}
        self.user = msg.get(A_USER)
        self.group = msg.get(A_GROUP)


class Event(Invoke):
    """An event delivered to one of our listener objects; the method is the
    event name. Acknowledge it with Connection.reply(ev, OK)."""
    __slots__ = ()

    @property
    def name(self):
        return self.method

    @property
    def data(self):
        return self.args


class Closed:
    __slots__ = ()


class Connection:
    """Client side of one ubusd connection; see the module docstring."""

    def __init__(self, max_message=MAX_MESSAGE):
        self.state = WAIT_HELLO
        self.framer = Framer(max_message)
        self.peer = None        # our client id, from HELLO
        self.seq = 0
        self.pending = {}       # seq -> request Message, until its STATUS
        self.gathered = {}      # seq -> DATA messages received so far
        self.objects = {}       # objid -> path (None: an anonymous listener)
        self.owed = {}          # (peer, seq, objid) -> True: INVOKEs not yet answered
        self.eof = False

    # -- receiving --

    def receive_data(self, data):
        if not data:
            self.eof = True
        else:
            self.framer.feed(data)

    def _step(self, direction, mtype, seq):
        nxt = TRANSITIONS.get((self.state, direction, mtype))
        if nxt is None:
            text = "%s %s in state %s (seq %d)" % (
                "received" if direction == IN else "cannot send",
                MESSAGE_NAMES.get(mtype, mtype), self.state, seq)
            if direction == IN:
                self.state = ERROR
                raise RemoteProtocolError(text)
            raise LocalProtocolError(text)
        self.state = nxt

    def next_event(self):
        """The next event, or None when more bytes are needed."""
        if self.state in (CLOSED, ERROR):
            return None
        try:
            msg = self.framer.next()
        except RemoteProtocolError:
            self.state = ERROR
            raise
        if msg is None:
            if self.eof:
                self.state = CLOSED
                return Closed()
            return None
        self._step(IN, msg.type, msg.seq)
        t = msg.type
        if t == HELLO:
            self.peer = msg.peer
            return Hello(msg.peer)
        if t == DATA or t == STATUS:
            req = self.pending.get(msg.seq)
            if req is None:
                self.state = ERROR
                raise RemoteProtocolError("received %s in state READY (seq %d): no request with that seq"
                                          % (MESSAGE_NAMES[t], msg.seq))
            if t == DATA:
                self.gathered[msg.seq].append(msg)
                return self.next_event()
            del self.pending[msg.seq]
            data = self.gathered.pop(msg.seq)
            status = msg.get(A_STATUS, 0)
            if status == OK:
                self._completed(req, data)
            return Reply(msg.seq, req, status, data)
        if t == INVOKE:
            objid = msg.get(A_OBJID)
            if objid not in self.objects:
                self.state = ERROR
                raise RemoteProtocolError("received INVOKE in state READY (seq %d) for object %r that is not ours"
                                          % (msg.seq, objid))
            self.owed[(msg.peer, msg.seq, objid)] = True
            if self.objects[objid] is None:
                return Event(msg)
            return Invoke(msg)
        return self.next_event()   # NOTIFY / UNSUBSCRIBE: nothing for us to do

    def _completed(self, req, data):
        if req.type == ADD_OBJECT:
            for m in data:
                objid = m.get(A_OBJID)
                if objid is not None:
                    self.objects[objid] = req.get(A_OBJPATH)
        elif req.type == REMOVE_OBJECT:
            self.objects.pop(req.get(A_OBJID), None)

    # -- sending --

    def _request(self, mtype, peer, attrs):
        self._step_check(mtype)
        self.seq = self.seq % 0xFFFF + 1      # 1..65535; 0 is HELLO's
        msg = Message(mtype, self.seq, peer, attrs)
        out = encode_message(msg)
        self.state = TRANSITIONS[(self.state, OUT, mtype)]
        self.pending[msg.seq] = msg
        self.gathered[msg.seq] = []
        return msg.seq, out

    def _step_check(self, mtype):
        if (self.state, OUT, mtype) not in TRANSITIONS:
            raise LocalProtocolError("cannot send %s in state %s" % (MESSAGE_NAMES[mtype], self.state))

    def add_object(self, path, signature=None):
        """Register object `path` with {method: {arg: blobmsg type}}, or an
        anonymous object (path None) to receive events. -> (seq, bytes)"""
        attrs = []
        if path is not None:
            attrs.append((A_OBJPATH, path))
            sig = {}
            for m in signature or {}:
                sig[m] = {a: Typed(INT32, t) for a, t in signature[m].items()}
            attrs.append((A_SIGNATURE, sig))
        return self._request(ADD_OBJECT, 0, attrs)

    def remove_object(self, objid):
        return self._request(REMOVE_OBJECT, 0, [(A_OBJID, objid)])

    def lookup(self, path=None):
        """Find objects; None lists them all, 'a.*' by prefix."""
        return self._request(LOOKUP, 0, [] if path is None else [(A_OBJPATH, path)])

    def invoke(self, objid, method, args=None):
        return self._request(INVOKE, objid, [(A_OBJID, objid), (A_METHOD, method), (A_DATA, args or {})])

    def send_event(self, name, data=None):
        return self.invoke(EVENT_OBJECT, "send", {"id": name, "data": data or {}})

    def register_events(self, objid, pattern):
        """Deliver events matching pattern ('spin.*') to anonymous object objid."""
        return self.invoke(EVENT_OBJECT, "register", {"object": Typed(INT32, objid), "pattern": pattern})

    def reply(self, invoke, status=OK, data=None):
        """Answer an Invoke or Event: DATA (when data is not None), then
        STATUS. Raises TooBig, owing the answer still, when DATA does not
        fit in one message."""
        key = (invoke.peer, invoke.seq, invoke.objid)
        if key not in self.owed:
            raise LocalProtocolError("INVOKE seq %d from peer %d was already answered" % (invoke.seq, invoke.peer))
        self._step_check(STATUS)
        out = b""
        if data is not None:
            out = encode_message(Message(DATA, invoke.seq, invoke.peer,
                                         [(A_OBJID, invoke.objid), (A_DATA, data)]))
        out += encode_message(Message(STATUS, invoke.seq, invoke.peer,
                                      [(A_STATUS, status), (A_OBJID, invoke.objid)]))
        del self.owed[key]
        return out


# -- a served object (policy on top of Connection, still sans-IO) -----------

class Service:
    """Serves one object and (optionally) listens for events, over one
    Connection: `receive(bytes) -> bytes to write`. On HELLO it registers
    the object, then the listener and its patterns; each INVOKE goes to
    `call(method, args) -> (status, reply, message)` and is answered with
    DATA then STATUS. A failed call's message travels as DATA {"error": ...}
    before its STATUS, which the `ubus` CLI prints and LuCI ignores."""

    def __init__(self, path, signature, call, patterns=(), on_event=None, log=None):
        self.path = path
        self.signature = signature
        self.call = call
        self.patterns = list(patterns)
        self.on_event = on_event
        self.log = log or (lambda text: None)
        self.conn = Connection()
        self.objid = None
        self.listener = None
        self.waiting = 0        # registrations not yet confirmed

    @property
    def ready(self):
        return self.objid is not None and self.waiting == 0

    def receive(self, data):
        self.conn.receive_data(data)
        out = []
        while True:
            ev = self.conn.next_event()
            if ev is None or isinstance(ev, Closed):
                return b"".join(out)
            if isinstance(ev, Hello):
                self.waiting = 1
                out.append(self.conn.add_object(self.path, self.signature)[1])
                if self.patterns:
                    self.waiting += 1
                    out.append(self.conn.add_object(None)[1])
            elif isinstance(ev, Reply):
                out.append(self._on_reply(ev))
            elif isinstance(ev, Event):
                if self.on_event is not None:
                    self.on_event(ev.name, ev.data)
                out.append(self.conn.reply(ev, OK))
            else:
                out.append(self.answer(ev))

    def _on_reply(self, ev):
        req = ev.request
        if req.type == ADD_OBJECT:
            self.waiting -= 1
            if ev.status != OK:
                raise LocalProtocolError("ubusd refused object %s: status %d %s"
                                         % (req.get(A_OBJPATH), ev.status, STATUS_NAMES.get(ev.status, "")))
            objid = ev.messages[0].get(A_OBJID) if ev.messages else None
            if objid is None:
                raise RemoteProtocolError("ubusd accepted object %s (seq %d) but gave it no id"
                                          % (req.get(A_OBJPATH) or "(events)", ev.seq))
            if req.get(A_OBJPATH) is not None:
                self.objid = objid
                return b""
            self.listener = objid
            out = []
            for p in self.patterns:
                self.waiting += 1
                out.append(self.conn.register_events(objid, p)[1])
            return b"".join(out)
        if req.type == INVOKE and req.get(A_OBJID) == EVENT_OBJECT:
            method = req.get(A_METHOD)
            if method == "register":
                self.waiting -= 1
            if ev.status != OK:
                self.log("ubus: event %s %s answered status %d" % (method, (req.get(A_DATA) or {}).get("id", ""), ev.status))
        return b""

    # what to ask for instead when a reply does not fit: advice that works
    LESS = {"graph": "ask for less with limit (destinations per device) or mac",
            "history": "ask for less with mac or minutes"}

    def answer(self, inv):
        """Call the method and answer: DATA + STATUS, or a clear refusal
        when the reply would not fit in one ubus message."""
        status, reply, message = self.call(inv.method, inv.args)
        if status != OK:
            return self.conn.reply(inv, status, {"error": message} if message else None)
        try:
            return self.conn.reply(inv, OK, reply)
        except TooBig as e:
            self.log("ubus: %s reply refused: %d bytes" % (inv.method, e.size))
            return self.conn.reply(inv, NO_MEMORY, {
                "error": "reply of %d bytes does not fit in one ubus message (%d); %s"
                         % (e.size, MAX_MESSAGE, self._less(inv.method))})
        except MemoryError:   # MicroPython's fixed heap can run out before the size check
            self.log("ubus: %s reply refused: out of memory" % inv.method)
            return self.conn.reply(inv, NO_MEMORY, {
                "error": "reply too large to build; %s" % self._less(inv.method)})
        except LocalProtocolError as e:   # a value ubus cannot carry: a handler bug
            self.log("ubus: %s reply cannot be encoded: %s" % (inv.method, e))
            return self.conn.reply(inv, 9, {"error": "internal error in %s" % inv.method})

    def _less(self, method):
        return self.LESS.get(method, "ask for less with limit/offset")

    def emit(self, name, data):
        """Bytes of a ubus event, or b"" when not registered yet."""
        if self.conn.state != READY:
            return b""
        return self.conn.send_event(name, data)[1]

    def stop(self):
        """REMOVE_OBJECT for everything we registered."""
        out = []
        if self.conn.state == READY:
            for objid in (self.objid, self.listener):
                if objid is not None and objid in self.conn.objects:
                    out.append(self.conn.remove_object(objid)[1])
        return b"".join(out)
