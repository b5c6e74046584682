"""A small MQTT 3.1.1 client, driven by the agent's poll loop.

Only imported when a broker is configured (option mqtt_broker). It
speaks 3.1.1, not 5: every broker has it, its packets are a third of
5's to parse (no properties), and mosquitto gives 3.1.1 clients the
shared subscriptions (`$share/group/...`). What it does: CONNECT with
username, password and a last will; PUBLISH at QoS 0 or 1, retained or
not; SUBSCRIBE and UNSUBSCRIBE (a controller takes and gives up homes);
PINGREQ keepalive, and a ping on demand (its answer comes after whatever
the broker sent before it); reconnect with a doubling backoff; TLS through
`plat.tls_wrap` (CA file, optional client certificate).

It never blocks: the socket is non-blocking, the connect completes in
the loop (woken for writing while it is under way or while bytes wait),
and publish() only appends to a bounded buffer. What the broker sends
goes through a strict parser (`Reader`, `decode`): a packet a 3.1.1
broker may not send us, a length or flag out of place, a topic that is
not UTF-8 or holds a wildcard, drops the connection with a note and
changes nothing else; the client connects again after its backoff.

The common subset of CPython and MicroPython: struct with '>' only,
OSError tested by errno (plat.would_block), no select.POLLOUT name
needed here (the loop owns poll).
"""

import struct

from . import plat

# packet types (the high nibble of the first byte)
CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14

PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"

CONNACK_REASONS = {
    1: "unacceptable protocol version", 2: "client id rejected", 3: "server unavailable",
    4: "bad user name or password", 5: "not authorised",
}

MAX_PACKET = 1 << 18  # what we accept from the broker (an order is < 1 KB)
MAX_BUFFER = 1 << 20  # bytes waiting for the socket; past it publish() refuses
MAX_TOPIC = 512


class ProtocolError(ValueError):
    """The broker sent something MQTT 3.1.1 does not allow here."""


# -- encoding ---------------------------------------------------------------

def varlen(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def text(s):
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    if len(b) > 65535:
        raise ValueError("MQTT string longer than 65535 bytes")
    return struct.pack(">H", len(b)) + b


def packet(first, body):
    return bytes([first]) + varlen(len(body)) + body


def connect_packet(client_id, keepalive, username=None, password=None, will=None, clean=True):
    """will: (topic, payload bytes, retain) or None; will QoS is 1. An
    agent asks for a clean session (its ring, not the broker, keeps what
    it owes); a controller keeps its session, so what agents published
    while it was away waits for it at the broker."""
    flags = 0x02 if clean else 0
    tail = text(client_id)
    if will is not None:
        flags |= 0x04 | (1 << 3) | (0x20 if will[2] else 0)
        tail += text(will[0]) + text(will[1])
    if username:
        flags |= 0x80
        tail += text(username)
        if password:
            flags |= 0x40
            tail += text(password)
    body = text("MQTT") + bytes([4, flags]) + struct.pack(">H", keepalive) + tail
    return packet(CONNECT << 4, body)


def publish_packet(topic, payload, qos=0, retain=False, pid=0, dup=False):
    first = (PUBLISH << 4) | (qos << 1) | (1 if retain else 0) | (0x08 if dup and qos else 0)
    body = text(topic) + (struct.pack(">H", pid) if qos else b"") + payload
    return packet(first, body)


def subscribe_packet(pid, topics):
    """topics: [(filter, max qos)]."""
    body = struct.pack(">H", pid)
    for t, q in topics:
        body += text(t) + bytes([q])
    return packet((SUBSCRIBE << 4) | 0x02, body)


def unsubscribe_packet(pid, filters):
    body = struct.pack(">H", pid)
    for t in filters:
        body += text(t)
    return packet((UNSUBSCRIBE << 4) | 0x02, body)


def puback_packet(pid):
    return packet(PUBACK << 4, struct.pack(">H", pid))


# -- decoding (strict) ------------------------------------------------------

class Reader:
    """Bytes from the broker -> [(type, flags, body)], whole packets only."""

    def __init__(self, max_packet=MAX_PACKET):
        self.buf = b""
        self.max_packet = max_packet

    def feed(self, data):
        self.buf += data
        out = []
        while True:
            buf = self.buf
            if len(buf) < 2:
                return out
            n = 0
            shift = 0
            i = 1
            while True:
                if i >= len(buf):
                    return out  # the length is not all here yet
                b = buf[i]
                n |= (b & 0x7F) << shift
                i += 1
                if not b & 0x80:
                    break
                shift += 7
                if i > 4:
                    raise ProtocolError("remaining length longer than 4 bytes")
            if i > 2 and buf[i - 1] == 0:
                raise ProtocolError("remaining length not in its shortest form")
            if n > self.max_packet:
                raise ProtocolError("packet of %d bytes is over %d" % (n, self.max_packet))
            if len(buf) < i + n:
                return out
            out.append((buf[0] >> 4, buf[0] & 0x0F, buf[i:i + n]))
            self.buf = buf[i + n:]


def _pid(body):
    pid = struct.unpack(">H", body[:2])[0]
    if pid == 0:
        raise ProtocolError("packet id 0")
    return pid


def check_topic(topic, wildcards=False):
    """A topic name's text, or ProtocolError."""
    try:
        t = topic.decode("utf-8") if not isinstance(topic, str) else topic
    except UnicodeError:
        raise ProtocolError("topic is not UTF-8")
    if not t or len(t) > MAX_TOPIC or "\x00" in t:
        raise ProtocolError("empty, long or NUL topic")
    if not wildcards and ("+" in t or "#" in t):
        raise ProtocolError("wildcard in a published topic")
    return t


def decode(kind, flags, body):
    """One packet a broker may send a client -> a tuple:
    ("connack", session_present, code) | ("publish", topic, payload, qos,
    retain, pid) | ("puback", pid) | ("suback", pid, [codes]) | ("unsuback", pid)
    | ("pingresp",)."""
    if kind == PUBLISH:
        qos = (flags >> 1) & 3
        if qos > 1:
            raise ProtocolError("PUBLISH at QoS %d: we subscribe at 1 at most" % qos)
        if qos == 0 and flags & 0x08:
            raise ProtocolError("DUP set on a QoS 0 PUBLISH")
        if len(body) < 2:
            raise ProtocolError("PUBLISH without a topic")
        tl = struct.unpack(">H", body[:2])[0]
        at = 2 + tl
        if at + (2 if qos else 0) > len(body):
            raise ProtocolError("PUBLISH topic runs past the packet")
        topic = check_topic(body[2:at])
        pid = 0
        if qos:
            pid = _pid(body[at:at + 2])
            at += 2
        return ("publish", topic, body[at:], qos, bool(flags & 1), pid)
    if flags != 0:
        raise ProtocolError("flags %d on packet type %d" % (flags, kind))
    if kind == CONNACK:
        if len(body) != 2 or body[0] > 1:
            raise ProtocolError("CONNACK of %d bytes, flags %r" % (len(body), body[:1]))
        if body[1] > 5:
            raise ProtocolError("CONNACK return code %d" % body[1])
        return ("connack", bool(body[0]), body[1])
    if kind == PUBACK:
        if len(body) != 2:
            raise ProtocolError("PUBACK of %d bytes" % len(body))
        return ("puback", _pid(body))
    if kind == SUBACK:
        if len(body) < 3:
            raise ProtocolError("SUBACK of %d bytes" % len(body))
        codes = list(body[2:])
        for c in codes:
            if c not in (0, 1, 2, 0x80):
                raise ProtocolError("SUBACK code %d" % c)
        return ("suback", _pid(body), codes)
    if kind == UNSUBACK:
        if len(body) != 2:
            raise ProtocolError("UNSUBACK of %d bytes" % len(body))
        return ("unsuback", _pid(body))
    if kind == PINGRESP:
        if body:
            raise ProtocolError("PINGRESP with a body")
        return ("pingresp",)
    raise ProtocolError("packet type %d is not one a broker sends a client" % kind)


# -- the broker's address, from its name, without waiting ---------------------

HOSTS = "/etc/hosts"
RESOLV_CONF = "/etc/resolv.conf"
QUERY_SECONDS = 2  # a nameserver's time to answer before the next is asked
QUERY_ROUNDS = 2  # passes over the nameservers before the lookup fails
MAX_TTL = 86400
RCODES = {1: "format error", 2: "server failure", 3: "no such name", 4: "not implemented",
          5: "refused"}


def literal(host):
    """The address text when host is one (it needs no lookup), else None."""
    from . import addr
    try:
        return addr.parse_ip(host)
    except ValueError:
        return None


def hosts_address(text, name):
    """The first address /etc/hosts gives name, or None."""
    name = name.lower()
    for line in text.split("\n"):
        words = line.split("#")[0].split()
        if len(words) > 1 and name in [w.lower() for w in words[1:]] and literal(words[0]):
            return literal(words[0])
    return None


def nameservers(text):
    """The nameservers of resolv.conf, in order (the resolver's three at most)."""
    out = []
    for line in text.split("\n"):
        words = line.split()
        if len(words) > 1 and words[0] == "nameserver" and literal(words[1]) and len(out) < 3:
            out.append(literal(words[1]))
    return out


def question(name, qtype):
    out = b""
    for label in name.rstrip(".").split("."):
        b = label.encode()
        if not 0 < len(b) < 64:
            raise ValueError("%r is not a host name" % name)
        out += bytes([len(b)]) + b
    return out + b"\x00" + struct.pack(">HH", qtype, 1)


def query_packet(qid, q):
    """A recursive query (RD) of one question."""
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + q


def answer(msg, qid, q):
    """A resolver's answer to query (qid, question bytes q) -> (addresses
    [(text, ttl)], rcode), or ValueError for a message that is not that
    answer (another id or question, a query, a fault): such a message is
    ignored. dnssnoop's strict parser reads the records."""
    from . import dnssnoop
    if len(msg) < 12 + len(q) or struct.unpack(">H", msg[:2])[0] != qid:
        raise ValueError("not the answer to our query")
    flags = struct.unpack(">H", msg[2:4])[0]
    if not flags & 0x8000 or msg[12:12 + len(q)].lower() != q.lower():
        raise ValueError("not the answer to our question")
    if flags & 15:
        return [], flags & 15
    if flags & 0x0200:
        raise ValueError("truncated answer")  # a broker with too many addresses for UDP
    try:
        return [(a, t) for a, _, t in dnssnoop.parse_dns(msg, {})], 0
    except dnssnoop.Malformed as e:
        raise ValueError("malformed answer: %s" % e)


class Lookup:
    """Name -> address from the loop: a literal address as it is, then
    /etc/hosts, then an A and an AAAA query over UDP to each nameserver of
    /etc/resolv.conf in turn (QUERY_SECONDS each, QUERY_ROUNDS passes).
    An answer is kept for its TTL. What is not the answer to our query (a
    stray or forged datagram, a malformed one) is counted and ignored, so
    a bad answer changes nothing; a socket connected to the nameserver
    takes datagrams from it only."""

    def __init__(self, loop, hosts=HOSTS, resolv_conf=RESOLV_CONF, seconds=QUERY_SECONDS, port=53):
        self.loop = loop
        self.port = port
        self.hosts = hosts
        self.resolv_conf = resolv_conf
        self.seconds = seconds
        self.cache = {}  # name -> (address, until ms)
        self.sock = None
        self.timer = None
        self.bad_answers = 0
        self.queries = 0

    def resolve(self, name, done):
        """done(address, "") or done(None, why), maybe before this returns."""
        self.cancel()
        a = literal(name)
        if a is None:
            a = hosts_address((plat.read_file(self.hosts) or b"").decode("utf-8", "replace"), name)
        kept = self.cache.get(name.lower())
        if a is None and kept is not None and kept[1] > plat.monotonic_ms():
            a = kept[0]
        if a is not None:
            done(a, "")
            return
        servers = nameservers((plat.read_file(self.resolv_conf) or b"").decode("utf-8", "replace"))
        if not servers:
            done(None, "no nameserver in %s" % self.resolv_conf)
            return
        try:
            self.questions = [question(name, 1), question(name, 28)]
        except ValueError as e:
            done(None, str(e))
            return
        self.name = name
        self.done = done
        self.tries = servers * QUERY_ROUNDS
        self.servers = servers
        self.why = {}
        self._ask()

    def _ask(self):
        self._close()
        if not self.tries:
            why = "; ".join("%s: %s" % (ns, self.why.get(ns, "no answer")) for ns in self.servers)
            self.done(None, why)
            return
        ns = self.tries.pop(0)
        import os
        socket = plat.sockets()
        self.ns = ns
        self.ids = [struct.unpack(">H", os.urandom(2))[0] for _ in self.questions]
        self.got = {}  # qtype index -> addresses
        try:
            ai = socket.getaddrinfo(ns, self.port)[0]  # a literal: nothing to look up
            self.sock = socket.socket(ai[0], socket.SOCK_DGRAM)
            self.sock.setblocking(False)
            self.sock.connect(ai[-1])
            for qid, q in zip(self.ids, self.questions):
                self.sock.send(query_packet(qid, q))
        except OSError as e:
            self.why[ns] = "send: %s" % e
            self._ask()
            return
        self.queries += 1
        self.loop.add_reader(self.sock, self._readable)
        self.timer = self.loop.call_later(self.seconds, self._timeout)

    def _readable(self):
        for _ in range(16):
            try:
                msg = self.sock.recv(4096)
            except OSError as e:
                if not plat.would_block(e):  # ECONNREFUSED: nobody at port 53 there
                    self.why[self.ns] = "recv: %s" % e
                    self._ask()
                return
            for i in range(len(self.ids)):
                try:
                    found, rcode = answer(msg, self.ids[i], self.questions[i])
                except ValueError:
                    continue
                self._answered(i, found, rcode)
                return
            self.bad_answers += 1

    def _answered(self, i, found, rcode):
        if rcode == 3:  # no such name: another nameserver would say the same
            self._finish(None, "%s: no such name (at %s)" % (self.name, self.ns))
            return
        if rcode:
            self.why[self.ns] = RCODES.get(rcode, "rcode %d" % rcode)
            self._ask()
            return
        self.got[i] = found
        if self.got.get(0) or len(self.got) == len(self.ids):  # IPv4 first, as getaddrinfo
            self._take()

    def _take(self):
        found = self.got.get(0) or self.got.get(1)
        if not found:
            self._finish(None, "%s has no address (at %s)" % (self.name, self.ns))
            return
        ttl = min(MAX_TTL, min(t for _, t in found))
        self.cache[self.name.lower()] = (found[0][0], plat.monotonic_ms() + ttl * 1000)
        self._finish(found[0][0], "")

    def _timeout(self):
        self.timer = None
        if self.got.get(1):  # an IPv6 address, and no word on IPv4: take it
            self._take()
        else:
            self._ask()

    def _finish(self, address, why):
        self.cancel()
        self.done(address, why)

    def _close(self):
        if self.timer is not None:
            self.loop.cancel(self.timer)
            self.timer = None
        if self.sock is not None:
            self.loop.remove_reader(self.sock)
            self.sock.close()
            self.sock = None

    def cancel(self):
        self.tries = []
        self._close()


# -- the client ---------------------------------------------------------------

class Client:
    """One connection to one broker, kept up from the loop.

    on_up(client) runs after each CONNACK (subscribe and publish status
    there); on_message(topic, payload) for each PUBLISH received;
    on_ack(pid) when the broker acknowledges our QoS 1 PUBLISH;
    on_pong(client) for each PINGRESP (keepalive's and ping()'s);
    on_down(client, why) when the connection is lost."""

    def __init__(self, loop, host, port, client_id, keepalive=60, username=None,
                 password=None, will=None, tls=None, max_packet=MAX_PACKET,
                 backoff_min=1, backoff_max=60, clean=True):
        self.loop = loop
        self.host = host
        self.port = port
        self.client_id = client_id
        self.keepalive = keepalive
        self.username = username
        self.password = password
        self.will = will
        self.tls = tls  # (ca_file, cert_file or "", key_file or "") or None
        self.max_packet = max_packet
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.backoff = backoff_min
        self.clean = clean
        self.lookup = Lookup(loop)
        self.address = ""  # the broker's, from its name
        self.on_up = None
        self.on_message = None
        self.on_ack = None
        self.on_pong = None
        self.on_down = None
        self.sock = None  # what we read and write: the TCP socket, or TLS over it
        self.raw = None  # the TCP socket, which the loop polls (MicroPython's TLS socket has no fd)
        self.state = "down"  # down | resolving | connecting | handshake | connack | up
        self.out = b""
        self.reader = None
        self.next_pid = 0
        self.inflight = {}  # pid -> None (QoS 1 publishes awaiting PUBACK)
        self.subscribing = {}  # pid -> None: (UN)SUBSCRIBEs the broker has not answered yet
        self.timers = []
        self.last_in = 0
        self.last_out = 0
        self.stopped = False
        self.writing = False
        # counters for status
        self.connects = 0
        self.drops = 0
        self.malformed = 0
        self.received = 0
        self.published = 0
        self.acked = 0
        self.last_error = ""

    # -- lifecycle ----------------------------------------------------------

    def start(self):
        self.stopped = False
        self._connect()

    def stop(self, farewell=b""):
        """farewell: packets to send before DISCONNECT (best effort, at once)."""
        self.stopped = True
        self.lookup.cancel()
        if self.state == "up" and self.sock is not None:
            try:
                self.sock.setblocking(True)
                self.raw.settimeout(2)  # MicroPython's TLS socket has no settimeout; its TCP one has
                data = self.out + farewell + DISCONNECT_PACKET
                while data:
                    n = self.sock.send(data)
                    if not n:
                        break
                    data = data[n:]
            except OSError:
                pass
        self._close()

    def _later(self, seconds, fn):
        h = self.loop.call_later(seconds, fn)
        self.timers.append(h)
        return h

    def _cancel_timers(self):
        for h in self.timers:
            self.loop.cancel(h)
        self.timers = []

    def _connect(self):
        self._cancel_timers()
        if self.stopped:
            return
        self.state = "resolving"
        self.lookup.resolve(self.host, self._resolved)

    def _resolved(self, address, why):
        if self.stopped:
            return
        if address is None:
            self.state = "down"
            self._retry("cannot resolve %s: %s" % (self.host, why))
            return
        self.address = address
        socket = plat.sockets()  # here: the codec above also runs where there are no sockets (WebAssembly)
        try:
            ai = socket.getaddrinfo(address, self.port)[0]  # an address: nothing to look up
            s = socket.socket(ai[0], socket.SOCK_STREAM)
        except OSError as e:
            self._retry("socket for %s: %s" % (address, e))
            return
        s.setblocking(False)
        try:
            s.connect(ai[-1])
        except OSError as e:
            if not plat.would_block(e):
                s.close()
                self._retry("connect: %s" % e)
                return
        self.sock = self.raw = s
        self.state = "connecting"
        self.out = b""
        self.reader = Reader(self.max_packet)
        self.inflight = {}
        self.subscribing = {}
        self.loop.add_reader(s, self._ready)
        self._want_write(True)
        # a broker that takes the TCP connection but never answers
        self._later(max(10, self.keepalive), lambda: self._drop("no CONNACK in time")
                    if self.state != "up" else None)

    def _retry(self, why):
        self.last_error = why
        delay = self.backoff
        self.backoff = min(self.backoff_max, self.backoff * 2)
        self._later(delay, self._connect)

    def _close(self):
        self._cancel_timers()
        if self.sock is not None:
            self.loop.remove_reader(self.raw)
            for s in (self.sock, self.raw):
                try:
                    s.close()
                except OSError:
                    pass
        self.sock = self.raw = None
        self.writing = False
        self.state = "down"
        self.out = b""
        self.inflight = {}

    def _drop(self, why, malformed=False):
        if self.sock is None:
            return
        was_up = self.state == "up"
        self.drops += 1
        if malformed:
            self.malformed += 1
        plat.warn("mqtt %s:%d: %s" % (self.host, self.port, why))
        self._close()
        self._retry(why)
        if self.on_down is not None:
            self.on_down(self, why, was_up)

    # -- the loop's callback ----------------------------------------------------

    def _want_write(self, on):
        if on != self.writing and self.sock is not None:
            self.writing = on
            self.loop.want_write(self.raw, on)

    def _ready(self):
        if self.sock is None:
            return
        if self.state == "connecting":
            if self.tls:
                try:
                    self.sock = plat.tls_wrap(self.sock, self.host, *self.tls)
                    if hasattr(self.sock, "fileno"):
                        # CPython's TLS socket took the fd over (the TCP one is
                        # detached); MicroPython's has none: poll the TCP one
                        self.raw = self.sock
                except (OSError, ValueError) as e:
                    self._drop("TLS: %s" % e)
                    return
                self.state = "handshake"
            else:
                self._send_connect()
        if self.state == "handshake":
            try:
                done = plat.tls_handshake(self.sock)
            except OSError as e:
                if not plat.would_block(e):
                    self._drop("TLS handshake: %s" % e)
                    return
                self._want_write(plat.tls_wants_write(e))
                return
            if not done:
                return
            self._send_connect()
        if not self._flush():
            return
        self._receive()

    def _send_connect(self):
        self.state = "connack"
        self.out = connect_packet(self.client_id, self.keepalive, self.username,
                                  self.password, self.will, self.clean) + self.out

    def _flush(self):
        while self.out:
            try:
                n = self.sock.send(self.out)
            except OSError as e:
                if plat.would_block(e):
                    self._want_write(True)
                    return True
                self._drop("send: %s" % e)
                return False
            if n is None:  # MicroPython's TLS socket: it would block
                self._want_write(True)
                return True
            if not n:
                break
            self.out = self.out[n:]
            self.last_out = plat.monotonic_ms()
        self._want_write(False)
        return True

    def _receive(self):
        # TLS may hold decrypted bytes poll cannot see: read until it would block
        for _ in range(64):
            try:
                data = self.sock.recv(16384)
            except OSError as e:
                if plat.would_block(e):
                    return
                self._drop("recv: %s" % e)
                return
            if data is None:  # MicroPython's TLS socket: nothing more for now
                return
            if not data:
                self._drop("the broker closed the connection")
                return
            self.last_in = plat.monotonic_ms()
            try:
                for kind, flags, body in self.reader.feed(data):
                    self._handle(decode(kind, flags, body))
                    if self.sock is None:
                        return
            except ProtocolError as e:
                self._drop("malformed packet from the broker: %s" % e, malformed=True)
                return

    def _handle(self, p):
        kind = p[0]
        if self.state == "connack":
            if kind != "connack":
                raise ProtocolError("%s before CONNACK" % kind)
            if p[2] != 0:
                why = "refused: %s" % CONNACK_REASONS.get(p[2], p[2])
                self.drops += 1
                plat.warn("mqtt %s:%d: %s" % (self.host, self.port, why))
                self._close()
                self._retry(why)
                return
            self.state = "up"
            self.connects += 1
            self.backoff = self.backoff_min
            self.last_error = ""
            self._cancel_timers()
            self._keepalive_timer()
            if self.on_up is not None:
                self.on_up(self)
            self._flush()
            return
        if kind == "connack":
            raise ProtocolError("a second CONNACK")
        if kind == "publish":
            _, topic, payload, qos, retain, pid = p
            self.received += 1
            if qos:
                self.out += puback_packet(pid)
                self._flush()
            if self.on_message is not None:
                self.on_message(topic, payload, retain)
        elif kind == "puback":
            if p[1] in self.inflight:
                del self.inflight[p[1]]
                self.acked += 1
                if self.on_ack is not None:
                    self.on_ack(p[1])
        elif kind == "suback" or kind == "unsuback":
            self.subscribing.pop(p[1], None)
            if kind == "suback" and 0x80 in p[2]:
                self.last_error = "a subscription was refused (ACL?)"
                plat.warn("mqtt %s:%d: %s" % (self.host, self.port, self.last_error))
        elif kind == "pingresp":
            if self.on_pong is not None:
                self.on_pong(self)

    def _keepalive_timer(self):
        if not self.keepalive:
            return
        period = max(1, self.keepalive // 2)

        def tick():
            if self.state != "up":
                return
            now = plat.monotonic_ms()
            if now - self.last_in > self.keepalive * 1500:
                self._drop("no word from the broker for %d s" % (self.keepalive * 3 // 2))
                return
            self.out += PINGREQ_PACKET
            self._flush()
            self._later(period, tick)
        self._later(period, tick)

    # -- sending --------------------------------------------------------------

    def is_up(self):
        return self.state == "up"

    def room(self):
        return len(self.out) < MAX_BUFFER

    def publish(self, topic, payload, qos=0, retain=False):
        """Queue a PUBLISH; returns its packet id (QoS 1), 0 (QoS 0), or
        None when the connection is not up or its buffer is full."""
        if self.state != "up" or not self.room():
            return None
        pid = 0
        if qos:
            pid = self._new_pid()
            self.inflight[pid] = None
        if not isinstance(payload, bytes):
            payload = payload.encode("utf-8")
        self.out += publish_packet(topic, payload, qos, retain, pid)
        self.published += 1
        self._flush()
        return pid

    def subscribe(self, topics):
        """topics: [(filter, max qos)]; the packet id, None when not up."""
        return self._ask(subscribe_packet, topics)

    def unsubscribe(self, filters):
        return self._ask(unsubscribe_packet, filters)

    def _ask(self, make, what):
        if self.state != "up":
            return None
        pid = self._new_pid()
        self.subscribing[pid] = None  # until its SUBACK or UNSUBACK
        self.out += make(pid, what)
        self._flush()
        return pid

    def ping(self):
        """A PINGREQ now: on_pong says when the broker has answered it, so
        after all it sent before (the retained messages of a SUBSCRIBE)."""
        if self.state != "up":
            return False
        self.out += PINGREQ_PACKET
        self._flush()
        return True

    def _new_pid(self):
        for _ in range(65535):
            self.next_pid = self.next_pid % 65535 + 1
            if self.next_pid not in self.inflight and self.next_pid not in self.subscribing:
                return self.next_pid
        raise ValueError("no free packet id")

    def status(self):
        return {"state": self.state, "broker": "%s:%d" % (self.host, self.port),
                "address": self.address, "bad_dns_answers": self.lookup.bad_answers,
                "tls": bool(self.tls), "connects": self.connects, "drops": self.drops,
                "malformed": self.malformed, "received": self.received,
                "published": self.published, "acked": self.acked,
                "inflight": len(self.inflight), "subscribing": len(self.subscribing),
                "last_error": self.last_error}
