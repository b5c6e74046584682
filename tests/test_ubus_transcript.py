"""Playing ubusd's side of a recorded exchange against our service.

In tests/data/ubus-transcript.jsonl, connection 1 is a python-ubus service
that registered object `spin` (echo, devices, typed, fail), listened for
spin.* events, answered five calls and one event, and removed its objects.
Here ubus.Service meets the very bytes ubusd sent it, and must send what the
real service sent: the same registration (signature encoding included), DATA
then STATUS for each call, statuses 2, 3 and 9 where the real one gave them,
the event acknowledged, the same REMOVE_OBJECTs at the end.

One deliberate difference: a failed call also carries its reason as DATA
{"error": ...} before the STATUS (the issue asks for a message with status
2; python-ubus sends none). The STATUS bytes are the recorded ones.
"""

import json
import os

from spin_lite import ubus

TRANSCRIPT = os.path.join(os.path.dirname(__file__), "data", "ubus-transcript.jsonl")

SIGNATURE = {
    "echo": {"x": ubus.BSTRING},
    "devices": {},
    "typed": {"i": ubus.INT32, "b": ubus.INT8, "t": ubus.BTABLE, "a": ubus.ARRAY,
              "s": ubus.BSTRING, "big": ubus.INT64, "d": ubus.DOUBLE},
    "fail": {},
}

# python-ubus sent the handler's "note": "" as UNSPEC (null) on the wire; we
# send "" as a STRING, so the reply that gives the recorded bytes has None
CAMERA = {"devices": [{"mac": "aa:bb:cc:dd:ee:01", "name": "camera", "ips": ["192.168.8.10", "fd00::10"],
                       "bytes": 123456789012, "blocked": False, "rate": 1.5, "note": None}]}


def recorded_service(method, args):
    """The recorded service's four methods, as (status, reply, message)."""
    if method not in SIGNATURE:
        return 3, None, "no method %r" % method
    for name in args:
        if name not in SIGNATURE[method]:
            return 2, None, "unknown argument %r" % name
    if method == "echo":
        return 0, {"x": args.get("x")}, None
    if method == "devices":
        return 0, CAMERA, None
    if method == "typed":
        return 0, dict(args), None
    return 9, None, "internal error in fail"


def connection_one():
    with open(TRANSCRIPT) as f:
        recs = [json.loads(line) for line in f if line.strip()]
    return [r for r in recs if r["conn"] == 1]


def split(stream):
    framer = ubus.Framer()
    framer.feed(stream)
    out = []
    while True:
        m = framer.next()
        if m is None:
            assert not framer.buf
            return out
        out.append(m)


def play():
    """Feed ubusd's messages one by one; return (what we sent, events heard, service)."""
    events = []
    service = ubus.Service("spin", SIGNATURE, recorded_service, patterns=["spin.*"],
                           on_event=lambda name, data: events.append((name, data)))
    sent = b""
    stopped = False
    for rec in connection_one():
        if rec["dir"] == "from_ubusd":
            sent += service.receive(bytes.fromhex(rec["hex"]))
        elif rec["type"] == ubus.REMOVE_OBJECT and not stopped:
            sent += service.stop()      # the recorded service was stopped here
            stopped = True
    return sent, events, service


def test_the_service_sends_what_the_recorded_service_sent():
    sent, events, service = play()
    expected = [bytes.fromhex(r["hex"]) for r in connection_one() if r["dir"] == "to_ubusd"]
    ours = split(sent)
    extra = []
    i = 0
    for msg in ours:
        raw = ubus.encode_message(msg)
        if i < len(expected) and raw == expected[i]:
            i += 1
            continue
        extra.append(msg)
    assert i == len(expected), "stopped matching at recorded message %d: %r" % (
        i, ubus.decode_message(expected[i]))
    # the only additions: the reasons of the three failed calls
    assert [(m.type, m.get(ubus.A_DATA)) for m in extra] == [
        (ubus.DATA, {"error": "unknown argument 'y'"}),
        (ubus.DATA, {"error": "no method 'nosuch'"}),
        (ubus.DATA, {"error": "internal error in fail"}),
    ]
    assert events == [("spin.alert", {"mac": "aa:bb:cc:dd:ee:01", "reason": "scan"})]


def test_registration_and_statuses_in_detail():
    sent, _, service = play()
    ours = split(sent)
    add = ours[0]
    assert add.type == ubus.ADD_OBJECT and add.get(ubus.A_OBJPATH) == "spin"
    assert add.get(ubus.A_SIGNATURE) == SIGNATURE
    register = ours[2]
    assert register.get(ubus.A_METHOD) == "register"
    assert register.get(ubus.A_DATA) == {"object": 1136023512, "pattern": "spin.*"}
    statuses = [(m.get(ubus.A_STATUS), m.peer) for m in ours if m.type == ubus.STATUS]
    # echo, devices, typed answered 0; wrong argument 2; unknown method 3;
    # the handler that raised 9; the event acknowledged 0 to ubusd (peer 0)
    assert statuses == [(0, 3549002684), (0, 1056174585), (0, 4145254161), (2, 1456270758),
                        (3, 335418910), (9, 2033067896), (0, 0)]
    assert [m.type for m in ours[-2:]] == [ubus.REMOVE_OBJECT, ubus.REMOVE_OBJECT]
    assert service.ready


def test_an_oversized_reply_is_refused_with_a_clear_status_and_not_sent():
    def huge(method, args):
        return 0, {"flows": ["203.0.113.%d" % (i % 250) for i in range(120000)]}, None

    recs = [r for r in connection_one() if r["dir"] == "from_ubusd"]
    service = ubus.Service("spin", SIGNATURE, huge, patterns=["spin.*"])
    for rec in recs[:6]:                      # hello, registration, listener
        service.receive(bytes.fromhex(rec["hex"]))
    assert service.ready
    out = split(service.receive(bytes.fromhex(recs[6]["hex"])))   # the echo INVOKE
    assert [m.type for m in out] == [ubus.DATA, ubus.STATUS]
    assert out[1].get(ubus.A_STATUS) == ubus.NO_MEMORY
    assert "limit/offset" in out[0].get(ubus.A_DATA)["error"]
    assert all(len(ubus.encode_message(m)) < 4096 for m in out)


def test_a_connection_that_speaks_nonsense_raises_and_stops():
    service = ubus.Service("spin", SIGNATURE, recorded_service)
    service.receive(bytes.fromhex(connection_one()[0]["hex"]))
    try:
        service.receive(bytes.fromhex("00020001000000000000000c0300000c00000001"))
    except ubus.RemoteProtocolError as e:
        assert "attribute" in str(e)
    else:
        raise AssertionError("a DATA with a broken attribute was accepted")
    assert service.conn.state == ubus.ERROR
