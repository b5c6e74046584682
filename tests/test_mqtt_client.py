"""The MQTT client in the agent's own poll loop, against a broker that
misbehaves. mosquitto never sends a malformed packet, so here a socket of
the test plays a broken one: the client drops the connection with a
note, hands nothing on, and comes back after its backoff."""

import socket

from spin_lite import agent, mqtt


class BadBroker:
    """Answers each CONNECT with CONNACK(code), then sends `then`."""

    def __init__(self, loop, code=0, then=b"", answers=None):
        self.loop = loop
        self.answers = answers or {}  # packet type -> what each later packet of it gets back
        self.packets = []
        self.code = code
        self.then = then
        self.s = socket.socket()
        self.s.bind(("127.0.0.1", 0))
        self.s.listen(4)
        self.s.setblocking(False)
        self.port = self.s.getsockname()[1]
        self.connects = []
        self.conns = []
        loop.add_reader(self.s, self.accept)

    def accept(self):
        c, _ = self.s.accept()
        c.setblocking(False)
        self.conns.append(c)
        buf = [b""]

        def read():
            try:
                data = c.recv(4096)
            except BlockingIOError:
                return
            if not data:
                self.loop.remove_reader(c)
                return
            buf[0] += data
            if buf[0][:1] == b"\x10" and len(buf[0]) >= 2 + buf[0][1]:
                self.connects.append(buf[0])
                buf[0] = b""
                c.send(bytes([0x20, 2, 0, self.code]) + self.then)
            while len(buf[0]) >= 2 and len(buf[0]) >= 2 + buf[0][1] and buf[0][:1] != b"\x10":
                one, buf[0] = buf[0][:2 + buf[0][1]], buf[0][2 + buf[0][1]:]
                self.packets.append(one)
                answer = self.answers.get(one[0] >> 4)
                if answer is not None:
                    c.send(answer(one) if callable(answer) else answer)
        self.loop.add_reader(c, read)

    def close(self):
        for c in self.conns:
            c.close()
        self.s.close()


def run_until(loop, cond, limit=400):
    for _ in range(limit):
        if cond():
            return True
        loop.run_once(50)
    return cond()


def client(loop, port, **kw):
    c = mqtt.Client(loop, "127.0.0.1", port, "spin-home-router", keepalive=30, username="router",
                    password="pw", will=("spin/home/router/status", b"{}", True),
                    backoff_min=0.1, backoff_max=0.2, **kw)
    c.got = []
    c.on_message = lambda topic, payload, retain: c.got.append(topic)
    return c


def test_a_malformed_packet_drops_the_connection_and_nothing_else():
    loop = agent.Loop()
    # a PUBLISH whose topic holds a wildcard, then a good one behind it
    broker = BadBroker(loop, then=b"\x30\x03\x00\x01#" + mqtt.publish_packet("spin/ok", b"x"))
    c = client(loop, broker.port)
    c.start()
    try:
        assert run_until(loop, lambda: c.malformed >= 1)
        assert c.got == []  # neither the bad one nor what came behind it on that connection
        assert "wildcard" in c.last_error
        assert broker.connects[0].endswith(b"\x00\x06router\x00\x02pw")
        # it comes back by itself
        assert run_until(loop, lambda: len(broker.connects) >= 2)
        assert c.connects >= 1 and c.drops >= 1
    finally:
        c.stop()
        broker.close()


def test_a_refused_login_is_said_and_retried():
    loop = agent.Loop()
    broker = BadBroker(loop, code=5)
    c = client(loop, broker.port)
    c.start()
    try:
        assert run_until(loop, lambda: "not authorised" in c.last_error)
        assert c.state != "up" and c.connects == 0
        assert run_until(loop, lambda: len(broker.connects) >= 2)
    finally:
        c.stop()
        broker.close()


def test_no_broker_at_all_is_retried_without_blocking_the_loop():
    loop = agent.Loop()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nobody listens there now
    c = client(loop, port)
    c.start()
    try:
        assert run_until(loop, lambda: c.drops >= 2)
        assert c.state in ("down", "connecting")
    finally:
        c.stop()


# -- the broker by name: a nameserver the test plays, with bad answers first --

class Nameserver:
    """A UDP socket in the loop that answers each query with `answers(query)`
    (a list of datagrams, maybe none): a resolver that lies or says nothing."""

    def __init__(self, loop, answers):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind(("127.0.0.1", 0))
        self.s.setblocking(False)
        self.port = self.s.getsockname()[1]
        self.queries = []
        self.answers = answers
        loop.add_reader(self.s, self.read)

    def read(self):
        q, peer = self.s.recvfrom(4096)
        self.queries.append(q)
        for a in self.answers(q):
            self.s.sendto(a, peer)

    def close(self):
        self.s.close()


def reply(query, address=b"\x7f\x00\x00\x01", ttl=300, qid=None, flags=0x8180):
    """The answer a resolver gives query: one A record (for an A question)."""
    end = query.index(b"\x00", 12) + 5
    is_a = query[end - 4:end - 2] == b"\x00\x01"
    head = (qid if qid is not None else query[:2]) + bytes([flags >> 8, flags & 255])
    head += b"\x00\x01" + (b"\x00\x01" if is_a else b"\x00\x00") + b"\x00\x00\x00\x00"
    rr = b"\xc0\x0c\x00\x01\x00\x01" + ttl.to_bytes(4, "big") + b"\x00\x04" + address if is_a else b""
    return head + query[12:end] + rr


def lookup(loop, tmp_path, ns, hosts="127.0.0.1 localhost\n", seconds=2):
    (tmp_path / "hosts").write_text(hosts)
    (tmp_path / "resolv.conf").write_text("# from the WAN's DHCP\nsearch lan\nnameserver 127.0.0.1\n")
    return mqtt.Lookup(loop, str(tmp_path / "hosts"), str(tmp_path / "resolv.conf"), seconds=seconds,
                       port=ns.port)


def resolved(loop, look, name):
    got = []
    look.resolve(name, lambda address, why: got.append((address, why)))
    assert run_until(loop, lambda: got)
    return got[0]


def test_the_brokers_name_is_asked_of_the_nameserver_and_kept_for_its_ttl(tmp_path):
    loop = agent.Loop()
    ns = Nameserver(loop, lambda q: [reply(q, b"\xc0\xa8\x08\x02", ttl=300)])
    look = lookup(loop, tmp_path, ns)
    try:
        assert resolved(loop, look, "nas.lan") == ("192.168.8.2", "")
        assert len(ns.queries) == 2  # A and AAAA at once
        assert resolved(loop, look, "NAS.lan") == ("192.168.8.2", "")
        assert len(ns.queries) == 2  # from the cache, within the TTL
        # a literal address and a name of /etc/hosts ask nobody
        assert resolved(loop, look, "10.0.0.7") == ("10.0.0.7", "")
        assert resolved(loop, look, "localhost") == ("127.0.0.1", "")
        assert len(ns.queries) == 2
    finally:
        ns.close()


def test_bad_answers_change_nothing_and_the_right_one_is_taken(tmp_path):
    loop = agent.Loop()

    def liar(q):
        wrong_name = q[:12] + q[12:].replace(b"nas", b"evl")
        return [reply(q, b"\x0a\x0a\x0a\x0a", qid=bytes([q[0] ^ 1, q[1]])),  # another id
                reply(wrong_name, b"\x0a\x0a\x0a\x0b"),  # another question
                reply(q, b"\x0a\x0a\x0a\x0c")[:-2],  # cut short
                reply(q, b"\x0a\x0a\x0a\x0d", flags=0x0100),  # a query, not an answer
                reply(q, b"\xc0\xa8\x08\x02")]
    ns = Nameserver(loop, liar)
    look = lookup(loop, tmp_path, ns)
    try:
        assert resolved(loop, look, "nas.lan") == ("192.168.8.2", "")
        assert look.bad_answers >= 4
    finally:
        ns.close()


def test_a_nameserver_that_never_answers_fails_the_lookup_and_not_the_loop(tmp_path):
    loop = agent.Loop()
    ns = Nameserver(loop, lambda q: [])
    look = lookup(loop, tmp_path, ns, seconds=0.2)
    ticks = []

    def tick():  # the agent's scan, meanwhile
        ticks.append(1)
        loop.call_later(0.05, tick)
    tick()
    try:
        address, why = resolved(loop, look, "nas.lan")
        assert address is None and "127.0.0.1: no answer" in why
        assert len(ns.queries) == 4  # two passes, A and AAAA
        assert len(ticks) > 4
        # an MQTT client on that name says why it is not connected, and retries
        c = mqtt.Client(loop, "nas.lan", 1883, "spin-home-router", backoff_min=0.1, backoff_max=0.2)
        c.lookup = look
        c.start()
        assert run_until(loop, lambda: "cannot resolve nas.lan" in c.last_error)
        assert c.state in ("down", "resolving") and len(ns.queries) >= 6
        c.stop()
    finally:
        ns.close()


def test_no_such_name_is_said_at_once(tmp_path):
    loop = agent.Loop()
    ns = Nameserver(loop, lambda q: [reply(q, flags=0x8183)[:len(q)]])
    look = lookup(loop, tmp_path, ns)
    try:
        address, why = resolved(loop, look, "nas.lan")
        assert address is None and "no such name" in why
    finally:
        ns.close()


def test_ipv4_is_taken_before_ipv6_whichever_comes_first(tmp_path):
    loop = agent.Loop()

    def v6_first(q):
        if q[-4:-2] == b"\x00\x1c":  # AAAA: answered at once
            end = q.index(b"\x00", 12) + 5
            rr = b"\xc0\x0c\x00\x1c\x00\x01\x00\x00\x01\x2c\x00\x10" + b"\xfd" + b"\x00" * 14 + b"\x02"
            return [q[:2] + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + q[12:end] + rr]
        ns.held.append(q)
        return []
    ns = Nameserver(loop, v6_first)
    ns.held = []
    look = lookup(loop, tmp_path, ns)
    got = []
    look.resolve("nas.lan", lambda address, why: got.append(address))
    try:
        assert run_until(loop, lambda: len(ns.queries) == 2)
        loop.run_once(50)
        assert got == []  # the IPv6 answer waits for the IPv4 one
        ns.s.sendto(reply(ns.held[0], b"\xc0\xa8\x08\x02"), ("127.0.0.1", look.sock.getsockname()[1]))
        assert run_until(loop, lambda: got)
        assert got == ["192.168.8.2"]
    finally:
        ns.close()


def test_a_controller_gives_up_a_home_and_pings_for_the_retained_messages():
    loop = agent.Loop()
    # UNSUBACK with the UNSUBSCRIBE's packet id; PINGRESP; the second UNSUBACK is a byte too long
    acks = []
    broker = BadBroker(loop, answers={mqtt.UNSUBSCRIBE: lambda p: (b"\xb0\x02" if not acks else b"\xb0\x03")
                                      + p[2:4] + (b"\x00" if acks else b""),
                                      mqtt.PINGREQ: b"\xd0\x00"})
    c = client(loop, broker.port)
    pongs = []
    c.on_pong = lambda cl: pongs.append(1)
    c.start()
    try:
        assert run_until(loop, c.is_up)
        pid = c.unsubscribe(["spin/h7/+/+", "spin/h8/+/+"])
        assert run_until(loop, lambda: broker.packets)
        # 3.1.1 section 3.10: type 10, flags 0010, packet id, then each filter
        assert broker.packets[0] == (b"\xa2\x1c" + bytes([0, pid]) + b"\x00\x0bspin/h7/+/+"
                                     + b"\x00\x0bspin/h8/+/+")
        assert c.ping() and run_until(loop, lambda: pongs)
        assert c.status()["subscribing"] == 0  # the UNSUBACK answered it
        assert c.state == "up" and c.malformed == 0
        acks.append(1)
        c.unsubscribe(["spin/h9/+/+"])
        assert run_until(loop, lambda: c.malformed == 1)
        assert "UNSUBACK of 3 bytes" in c.last_error
    finally:
        c.stop()
        broker.close()
