"""A reply never exceeds one ubus message (1 MiB): ubusd disconnects a
client that sends more, so a big home must page, and a reply that still
does not fit is refused with a clear status instead of being sent.

A home with 1000 chatty devices is served through the real method table
(api.call) and ubus.Service, sans-IO, with ubusd's side played by hand.
"""

from spin_lite import api, ubus

HELLO = ubus.encode_message(ubus.Message(ubus.HELLO, 0, 0x1234))


class BigHome:
    """Just what `devices` reads: 1000 devices with long names and many IPs
    (names of `name_len`: 8,000 make even a legal page too big for ubus)."""

    def __init__(self, name_len=1500):
        self.name_len = name_len

    def device_list(self):
        return [{"mac": "02:00:00:00:%02x:%02x" % (i >> 8, i & 255), "name": "device %d " % i + "x" * self.name_len,
                 "ips": ["192.168.%d.%d" % (i >> 8, i & 255), "fd00::%x" % i]} for i in range(1000)]

    def device_page(self, offset, limit):
        every = self.device_list()
        return every[offset:offset + limit], len(every)

    def device_info(self, mac):
        return {"mac": mac}

    def graph(self, mac, limit):
        """A graph that ignores its bounds (a bug): the refusal must still
        advise what graph takes, not limit/offset it has not got."""
        return {"nodes": [{"id": "x" * 1000, "kind": "endpoint"} for _ in range(1200)], "edges": [], "others": {}}


def serve(calls, name_len=1500):
    """Register `spin`, then answer each (method, args); -> [(status, table)]."""
    home = BigHome(name_len)
    service = ubus.Service("spin", api.signature(), lambda m, a: api.call(home, m, a))
    service.receive(HELLO)
    objid = 0x5151
    service.receive(ubus.encode_message(ubus.Message(ubus.DATA, 1, 0, [(ubus.A_OBJID, objid), (ubus.A_OBJTYPE, 7)])))
    service.receive(ubus.encode_message(ubus.Message(ubus.STATUS, 1, 0, [(ubus.A_STATUS, 0)])))
    assert service.ready
    out = []
    for seq, (method, args) in enumerate(calls, 2):
        inv = ubus.Message(ubus.INVOKE, seq, 0x77, [(ubus.A_OBJID, objid), (ubus.A_METHOD, method),
                                                    (ubus.A_USER, "root"), (ubus.A_GROUP, "root"),
                                                    (ubus.A_DATA, args)])
        sent = service.receive(ubus.encode_message(inv))
        framer = ubus.Framer()
        framer.feed(sent)
        msgs = []
        while True:
            m = framer.next()
            if m is None:
                break
            msgs.append(m)
        assert len(sent) <= ubus.MAX_MESSAGE * len(msgs)
        assert all(len(ubus.encode_message(m)) <= ubus.MAX_MESSAGE for m in msgs)
        assert msgs[-1].type == ubus.STATUS and msgs[-1].seq == seq and msgs[-1].peer == 0x77
        data = [m.get(ubus.A_DATA) for m in msgs if m.type == ubus.DATA]
        out.append((msgs[-1].get(ubus.A_STATUS), data[0] if data else None))
    return out


def test_a_big_home_pages_its_devices_and_an_oversized_page_is_refused_not_sent():
    biggest, first, over = serve([
        ("devices", {"limit": 150}),
        ("devices", {"limit": 100}),
        ("devices", {"limit": 151}),
    ], name_len=8000)
    status, table = biggest
    assert status == ubus.NO_MEMORY      # 150 devices of 8 KB each are too many for one message
    assert "limit/offset" in table["error"]
    status, table = first
    assert status == 0 and len(table["devices"]) == 100
    assert table["remaining"] == 900 and table["total"] == 1000
    status, table = over
    assert status == 2                   # a page is at most api.DEVICES_PAGE_MAX


def test_the_owner_walks_all_pages():
    pages = serve([("devices", {"offset": off}) for off in range(0, 1000, 150)])
    assert [s for s, _ in pages] == [0] * 7
    assert [t["remaining"] for _, t in pages] == [850, 700, 550, 400, 250, 100, 0]
    macs = [d["mac"] for _, t in pages for d in t["devices"]]
    assert len(set(macs)) == 1000


def test_a_refusal_advises_what_the_method_takes():
    (status, table), = serve([("graph", {"limit": 5})])
    assert status == ubus.NO_MEMORY
    assert "limit" in table["error"] and "mac" in table["error"] and "offset" not in table["error"]
