"""What the agent says to a broker and how strictly it reads the answer
(src/spin_lite/mqtt.py), and the orders it takes (mqttlink.parse_order).
Pure: runs under MicroPython too."""

from spin_lite import mqtt, mqttlink
from spin_lite.errors import ApiError


def one(data):
    packets = mqtt.Reader().feed(data)
    assert len(packets) == 1
    return mqtt.decode(*packets[0])


def refused(data):
    try:
        for p in mqtt.Reader(max_packet=1024).feed(data):
            mqtt.decode(*p)
    except mqtt.ProtocolError as e:
        return str(e)
    raise AssertionError("accepted %r" % data)


def test_the_connect_packet_carries_credentials_and_the_will():
    p = mqtt.connect_packet("spin-home-router", 60, "router", "pw",
                            ("spin/home/router/status", b'{"state":"offline"}', True))
    assert p[0] == 0x10
    body = p[2:]  # one length byte: it is short
    assert p[1] == len(body)
    assert body[:7] == b"\x00\x04MQTT\x04"
    # user, password, will retain, will QoS 1, will, clean session
    assert body[7] == 0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02
    assert body[8:10] == b"\x00\x3c"
    assert body.endswith(b"\x00\x06router\x00\x02pw")


def test_lengths_use_the_variable_form():
    assert mqtt.varlen(0) == b"\x00"
    assert mqtt.varlen(127) == b"\x7f"
    assert mqtt.varlen(128) == b"\x80\x01"
    assert mqtt.varlen(16384) == b"\x80\x80\x01"
    big = mqtt.publish_packet("spin/x", b"a" * 20000, qos=1, pid=7)
    assert one(big) == ("publish", "spin/x", b"a" * 20000, 1, False, 7)


def test_what_a_broker_sends_is_read_back_in_any_cut():
    stream = (b"\x20\x02\x00\x00" + b"\x90\x03\x00\x01\x01" + b"\xd0\x00" + b"\x40\x02\x00\x09"
              + mqtt.publish_packet("spin/home/router/cmd", b"{}", qos=1, retain=True, pid=3)
              + b"\xb0\x02\x00\x04")
    want = [("connack", False, 0), ("suback", 1, [1]), ("pingresp",), ("puback", 9),
            ("publish", "spin/home/router/cmd", b"{}", 1, True, 3), ("unsuback", 4)]
    for size in (1, 2, 3, 7, len(stream)):
        r = mqtt.Reader()
        got = []
        for at in range(0, len(stream), size):
            got += [mqtt.decode(*p) for p in r.feed(stream[at:at + size])]
        assert got == want, size
        assert r.buf == b""


def test_packets_a_broker_may_not_send_are_refused():
    cases = [
        b"\x10\x00",                      # CONNECT: a client's packet
        b"\x82\x00",                      # SUBSCRIBE
        b"\xa2\x00",                      # UNSUBSCRIBE
        b"\xb0\x03\x00\x01\x00",          # UNSUBACK too long
        b"\xb0\x02\x00\x00",              # UNSUBACK packet id 0
        b"\xb2\x02\x00\x01",              # UNSUBACK with flags
        b"\x21\x02\x00\x00",              # CONNACK with flags
        b"\x20\x03\x00\x00\x00",          # CONNACK too long
        b"\x20\x02\x02\x00",              # CONNACK ack flags other than session present
        b"\x20\x02\x00\x06",              # return code past 5
        b"\x40\x02\x00\x00",              # PUBACK packet id 0
        b"\x40\x01\x00",                  # PUBACK short
        b"\xd0\x01\x00",                  # PINGRESP with a body
        b"\x90\x03\x00\x01\x03",          # SUBACK code 3
        b"\x34\x05\x00\x01a\x00\x01",     # PUBLISH at QoS 2
        b"\x36\x05\x00\x01a\x00\x01",     # QoS 3
        b"\x38\x03\x00\x01a",             # DUP on QoS 0
        b"\x30\x03\x00\x05a",             # topic past the packet
        b"\x30\x03\x00\x01#",             # wildcard in a topic name
        b"\x30\x03\x00\x01\xff",          # topic not UTF-8
        b"\x30\x02\x00\x00",              # empty topic
        b"\x32\x05\x00\x01a\x00\x00",     # QoS 1 with packet id 0
        b"\x30\xff\xff\xff\xff\x01",      # length of five bytes
        b"\x30\x80\x00",                  # length not in its shortest form
        b"\x30\x81\x08" + b"a" * 1025,    # over the packet limit
        b"\xf0\x00",                      # reserved type
    ]
    for data in cases:
        assert refused(data), data


def test_an_order_is_an_id_a_method_and_its_arguments():
    oid, method, args = mqttlink.parse_order(
        b'{"id": "o-1", "method": "quarantine", "args": {"mac": "02:00:00:00:00:05"}}')
    assert (oid, method, args) == ("o-1", "quarantine", {"mac": "02:00:00:00:00:05"})
    bad = [b"{", b"[]", b'{"method": "release", "args": {"mac": "02:00:00:00:00:05"}}',
           b'{"id": true, "method": "release"}',
           b'{"id": "x", "method": "release", "args": {"mac": "02:00:00:00:00:05"}, "at": 1}',
           b'{"id": "x", "method": "release", "args": {"mac": "nope"}}',
           b'{"id": "x", "method": "release", "args": {"mac": "02:00:00:00:00:05", "why": 1}}',
           b'{"id": "x", "method": "name", "args": {"mac": "02:00:00:00:00:05", "name": "n"}}',
           b'{"id": "x", "method": "block", "args": {"port": 99999}}',
           b'{"id": "' + b"x" * 65 + b'", "method": "release"}',
           b"[" * 5000]
    for payload in bad:
        try:
            mqttlink.parse_order(payload)
        except ApiError as e:
            assert e.status in (2, 3) and e.message
            continue
        raise AssertionError("accepted %r" % payload)


def test_a_digest_message_names_idle_devices_by_their_mac_alone():
    d = {"t": 120, "bucket_seconds": 60, "devices": [
        {"mac": "02:00:00:00:00:01", "t": 120, "bytes_out": 10, "bytes_in": 0, "top": []},
        {"mac": "02:00:00:00:00:02", "t": 120, "bytes_out": 0, "bytes_in": 0, "top": []}]}
    m = mqttlink.compact_digest(d, "router", 4)
    assert m == {"v": 1, "agent": "router", "started": 0, "seq": 4, "t": 120, "bucket_seconds": 60,
                 "devices": [{"mac": "02:00:00:00:00:01", "bytes_out": 10, "bytes_in": 0, "top": []},
                             {"mac": "02:00:00:00:00:02"}]}
    # the digest itself is left as it was: the agent's spin.digest event
    # handed the same one to its other listeners
    assert d["devices"][0]["t"] == 120 and len(d["devices"]) == 2


def test_a_figures_message_names_busy_devices_and_table_hogs_only():
    from spin_lite import detect
    det = detect.Detector({})
    busy, hog, idle = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03"
    live = {hog: 500, idle: 10}
    assert mqttlink.figures_message(det, "ap1", 8192, lambda m: live.get(m, 0), 7) is None
    det.flow(busy, "198.51.100.1", 23, b"tcp", 60, 0, 1, 0, True, True, False, detect.PUBLIC)
    det.flow(idle, "198.51.100.2", 443, b"tcp", 60, 60, 1, 1, False, False, False, detect.PUBLIC)
    det.end_scan(1000.0, 5, live, 8192)
    det.end_scan(1005.0, 5, live, 8192)  # busy was busy in the scan before: idle in this one
    det.flow(busy, "198.51.100.3", 2323, b"tcp", 60, 0, 1, 0, True, True, False, detect.PUBLIC)
    det.end_scan(1010.0, 5, live, 8192)  # the hog holds 500 entries it opened before
    m = mqttlink.figures_message(det, "ap1", 8192, lambda m: live.get(m, 0), 1010)
    rows = dict((r["mac"], r) for r in m["devices"])
    assert (m["v"], m["agent"], m["t"], m["seconds"], m["table_max"]) == (2, "ap1", 1010, 5, 8192)
    assert sorted(rows) == [busy, hog]  # idle holds 10 of 8,192: under a twentieth
    assert rows[busy]["c"][detect.SCANNER_FAILED] == 1 and len(rows[busy]["slow"]) == 1
    assert rows[busy]["ex_slow"] == ["198.51.100.3"] and rows[busy]["ex_slow_ports"] == [2323]
    assert rows[hog]["live"] == 500 and "live" not in rows[busy]


def ring(queue):
    link = mqttlink.Link({"mqtt_queue": queue})
    link.base = "spin/home/router/"  # no client: the ring only keeps what it owes
    return link


def test_while_the_broker_is_away_the_oldest_digests_go_and_are_counted():
    link = ring(3)
    for seq in range(1, 6):
        link.queue("digest", {"seq": seq})
    for n in range(300):
        link.queue("device", {"n": n})  # a burst of events costs no digest
    digests = [e[1] for e in link.ring if e[3]]
    assert digests == [b'{"seq":3}', b'{"seq":4}', b'{"seq":5}'] or \
        digests == [b'{"seq": 3}', b'{"seq": 4}', b'{"seq": 5}']
    assert link.dropped == 2 and link.events_dropped == 300 - mqttlink.EVENTS_KEPT
    assert link.waiting == [mqttlink.EVENTS_KEPT, 3]
    assert link.ring_bytes == sum(len(e[1]) for e in link.ring)


def test_the_ring_holds_its_bytes_whatever_the_count():
    link = ring(1000)
    big = {"devices": "x" * 300000}
    for _ in range(12):
        link.queue("digest", big)
    assert link.ring_bytes <= mqttlink.QUEUE_BYTES and link.dropped == 12 - link.waiting[1]
    assert link.waiting[1] == mqttlink.QUEUE_BYTES // len(link.ring[0][1])
