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
