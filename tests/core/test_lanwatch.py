"""The LAN watch's reading side: nft's listing of table bridge spin in,
new LAN-to-LAN attempts out (runs under MicroPython too)."""

from spin_lite import lanwatch

BULB = "02:00:00:00:00:05"
LAPTOP = "02:00:00:00:00:04"


def elem(mac, host, proto, port, expires=59):
    return {"elem": {"val": {"concat": [mac, host, proto, port]}, "expires": expires}}


def listing(v4, v6=(), size=4096):
    """The shape `nft -j list table bridge spin` prints (nft 1.0.6)."""
    return [
        {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
        {"table": {"family": "bridge", "name": "spin", "handle": 2}},
        {"set": {"family": "bridge", "name": "q_mac", "table": "spin", "type": "ether_addr",
                 "elem": [{"elem": {"val": BULB, "comment": "quarantine " + BULB}}]}},
        {"set": {"family": "bridge", "name": "lan_seen4", "table": "spin", "size": size,
                 "type": ["ether_addr", "ipv4_addr", "inet_proto", "inet_service"],
                 "flags": ["timeout"], "timeout": 60, "elem": list(v4)}},
        {"set": {"family": "bridge", "name": "lan_seen6", "table": "spin", "size": size,
                 "type": ["ether_addr", "ipv6_addr", "inet_proto", "inet_service"],
                 "flags": ["timeout"], "timeout": 60, "elem": list(v6)}},
        {"chain": {"family": "bridge", "table": "spin", "name": "forward"}},
    ]


def sweep(n, port=23):
    return [elem(BULB, "192.168.8.%d" % (10 + i), "tcp", port) for i in range(n)]


def test_only_the_watch_sets_are_read_and_protocols_come_as_bytes():
    items = listing([elem(LAPTOP, "192.168.8.101", "udp", 53), elem(BULB, "192.168.8.9", 132, 80)],
                    [elem(LAPTOP, "fd00:8::10", "tcp", 443)])
    keys, full, bad = lanwatch.parse(items)
    assert sorted(keys) == sorted([(LAPTOP, "192.168.8.101", 53, b"udp"),
                                   (BULB, "192.168.8.9", 80, b"132"),
                                   (LAPTOP, "fd00:8::10", 443, b"tcp")])
    assert (full, bad) == (0, 0)


def test_keys_that_are_not_four_parts_are_counted_not_fed():
    items = listing([elem(BULB, "192.168.8.9", "tcp", 23), {"elem": {"val": "nonsense"}},
                     {"concat": [BULB, "192.168.8.10", "tcp", "telnet"]}])
    keys, _, bad = lanwatch.parse(items)
    assert keys == [(BULB, "192.168.8.9", 23, b"tcp")] and bad == 2
    assert lanwatch.parse(None) == ([], 0, 0)
    assert lanwatch.parse([{"set": {"name": "lan_seen4"}}]) == ([], 0, 0)


def test_a_set_at_its_size_is_reported_full():
    _, full, _ = lanwatch.parse(listing(sweep(8), size=8))
    assert full == 1
    _, full, _ = lanwatch.parse(listing(sweep(7), size=8))
    assert full == 0


def test_a_key_is_new_once_while_it_stays_and_new_again_after_it_went():
    seen = lanwatch.Seen(100)
    first, _, _ = lanwatch.parse(listing(sweep(3)))
    assert len(seen.news(first)) == 3
    assert seen.news(first) == [], "a key still in the set was counted twice"
    more, _, _ = lanwatch.parse(listing(sweep(5)))
    assert [k[1] for k in seen.news(more)] == ["192.168.8.13", "192.168.8.14"]
    gone, _, _ = lanwatch.parse(listing(sweep(5)[1:]))
    assert seen.news(gone) == []
    back, _, _ = lanwatch.parse(listing(sweep(5)))
    assert [k[1] for k in seen.news(back)] == ["192.168.8.10"], "a key that timed out and came back"


def test_one_peer_is_one_attempt_and_a_sweep_names_every_host():
    seen = lanwatch.Seen(1000)
    items = listing(sweep(22) + [elem(LAPTOP, "192.168.8.101", "tcp", 8080)])
    fresh = seen.news(lanwatch.parse(items)[0])
    hosts = {}
    for mac, host, port, proto in fresh:
        hosts.setdefault(mac, set()).add(host)
    assert len(hosts[BULB]) == 22 and hosts[LAPTOP] == {"192.168.8.101"}


def test_the_memory_holds_small_ints_and_never_more_than_its_cap():
    seen = lanwatch.Seen(10)
    keys = lanwatch.parse(listing(sweep(30), [elem(LAPTOP, "fd00:8::%x" % i, "udp", 5000)
                                              for i in range(1, 30)]))[0]
    assert len(seen.news(keys)) == 59
    assert len(seen.last) == 10
    for k in seen.last:
        assert 0 <= k < (1 << 30)


def test_folding_tells_apart_what_differs_in_one_field():
    base = (BULB, "192.168.8.10", 23, b"tcp")
    others = [("02:00:00:00:00:06", "192.168.8.10", 23, b"tcp"), (BULB, "192.168.8.11", 23, b"tcp"),
              (BULB, "192.168.8.10", 24, b"tcp"), (BULB, "192.168.8.10", 23, b"udp"),
              (BULB, "fd00:8::10", 23, b"tcp")]
    folded = set(lanwatch.fold(k) for k in [base] + others)
    assert len(folded) == 6


def test_the_same_key_read_twice_folds_the_same_and_texts_are_not_parsed():
    a = (BULB, "fd00:8::10", 23, b"tcp")
    assert lanwatch.fold(a) == lanwatch.fold((BULB, "fd00:8::10", 23, b"tcp"))
    # an address nft would never print still folds (no parse, no error)
    assert 0 <= lanwatch.fold((BULB, "not-an-ip", 23, b"tcp")) < (1 << 30)


class Backend:
    """What the part asks of the firewall backend (Nft, Iptables, Off)."""

    def __init__(self, items, why=None):
        self.items, self.why = items, why

    def lan_seen(self):
        return (None, self.why) if self.why else (self.items, None)


class Recorder:
    """A test double of the detector's one LAN method (the shared interface)."""

    def __init__(self):
        self.calls = []

    def lan_attempt(self, mac, host, port, proto):
        self.calls.append((mac, host, port, proto))


class Agent:
    def __init__(self, backend, detector=None):
        self.blocks = type("Blocks", (), {})()
        self.blocks.backend = backend
        self.detector = detector
        self.lanwatch = None


def test_the_part_feeds_the_detector_each_new_attempt_once_and_counts_them():
    backend = Backend(listing(sweep(4)))
    agent = Agent(backend, Recorder())
    part = lanwatch.LanWatch({"lan_watch_size": 16})
    part.start(agent)
    assert agent.lanwatch is part
    part.collect(agent, 0)
    part.collect(agent, 5000)
    assert sorted(agent.detector.calls) == sorted(lanwatch.parse(backend.items)[0])
    s = part.status()
    assert s["lan"] == "bridge set" and s["lan_attempts"] == 4 and s["lan_watch_full"] == 0


def test_without_a_detector_the_part_still_counts():
    agent = Agent(Backend(listing(sweep(2))), None)
    part = lanwatch.LanWatch({})
    part.collect(agent, 0)
    assert part.status()["lan_attempts"] == 2


def test_what_cannot_be_seen_is_said_and_a_failed_read_forgets_nothing():
    backend = Backend(listing(sweep(3)))
    agent = Agent(backend, Recorder())
    part = lanwatch.LanWatch({})
    part.collect(agent, 0)
    backend.why = "nft list table bridge spin: busy"
    part.collect(agent, 5000)
    assert part.status()["lan"] == "not seen: nft list table bridge spin: busy"
    backend.why = None
    part.collect(agent, 10000)
    assert len(agent.detector.calls) == 3 and part.status()["lan"] == "bridge set"
    fw3 = Agent(Backend(None, "LAN-to-LAN traffic (firewall3/iptables backend)"))
    part = lanwatch.LanWatch({})
    part.collect(fw3, 0)
    assert part.status()["lan"].startswith("not seen: LAN-to-LAN traffic")
