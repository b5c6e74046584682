"""An access point's bridge sets as nft -j prints them -> clients and flows
(src/spin_lite/bridgecount.py). Pure: runs under MicroPython too."""

from spin_lite import bridgecount


def elem(parts, packets=None, nbytes=None):
    e = {"val": {"concat": parts}, "expires": 599}
    if packets is not None:
        e["counter"] = {"packets": packets, "bytes": nbytes}
    return {"elem": e}


def table(clients, out, back):
    return [{"metainfo": {"version": "1.0.6"}},
            {"set": {"family": "bridge", "name": "clients", "table": "spinap", "elem": clients}},
            {"set": {"family": "bridge", "name": "out", "table": "spinap", "elem": out}},
            {"set": {"family": "bridge", "name": "in", "table": "spinap", "elem": back}}]


def test_a_connection_is_its_frames_out_and_back():
    items = table([elem(["02:00:00:00:00:0A", "192.168.8.187"])],
                  [elem(["192.168.8.187", 40000, "203.0.113.10", "tcp", 80], 6, 363),
                   elem(["192.168.8.187", 5353, "198.51.100.53", "udp", 53], 1, 60)],
                  [elem(["192.168.8.187", 40000, "203.0.113.10", "tcp", 80], 5, 2904)])
    clients, flows = bridgecount.parse(items)
    assert clients == {"192.168.8.187": "02:00:00:00:00:0a"}
    assert flows == {("192.168.8.187", "203.0.113.10", b"tcp", 80, 40000): [363, 6, 2904, 5],
                     ("192.168.8.187", "198.51.100.53", b"udp", 53, 5353): [60, 1, 0, 0]}


def test_what_is_not_a_flow_is_left_out():
    items = table([elem(["02:00:00:00:00:0a"])],
                  [elem(["192.168.8.187", 1, "203.0.113.10", "icmp", 80], 1, 1),
                   elem(["192.168.8.187", "x", "203.0.113.10", "tcp", 80], 1, 1),
                   elem(["192.168.8.187", 1, "203.0.113.10", "tcp", 80]),
                   {"elem": "junk"}, "junk"],
                  None)
    assert bridgecount.parse(items) == ({}, {})
    assert bridgecount.parse(None) == ({}, {})
