"""An access point's agent finds a device on its bridge: the real Agent
object scans (conntrack, neighbours and leases empty, as on an AP) with
BridgeCounts as its source, nft answering from a listing written here.
A device found there is announced with spin.device as a router's agent
announces one from its neighbour table."""

from spin_lite import agent as agent_mod
from spin_lite import bridgecount, config, plat

LAPTOP = "02:00:00:00:00:04"


def listing(clients, out):
    def elem(parts, packets=None):
        e = {"val": {"concat": parts}}
        if packets is not None:
            e["counter"] = {"packets": packets, "bytes": packets * 100}
        return {"elem": e}
    return plat.json.dumps({"nftables": [
        {"set": {"family": "bridge", "name": "clients", "table": "spinap",
                 "elem": [elem(c) for c in clients]}},
        {"set": {"family": "bridge", "name": "out", "table": "spinap",
                 "elem": [elem(f, n) for f, n in out]}},
        {"set": {"family": "bridge", "name": "in", "table": "spinap", "elem": []}}]}).encode()


def make_agent(tmp_path, monkeypatch, answer):
    empty = tmp_path / "empty"
    empty.write_text("")
    cfg = config.defaults()
    cfg.update(state_dir=str(tmp_path / "state"), run_dir=str(tmp_path / "run"), firewall="none",
               conntrack_file=str(empty), arp_file=str(empty), leases_file=str(empty),
               lan_net=["192.168.8.0/24"], bridge_uplink="uplink", detect=0)
    monkeypatch.setattr(plat, "run", lambda argv, stdin=None, timeout=30:
                        (0, answer[0], b"") if argv[:3] == ["nft", "-j", "list"] else (0, b"", b""))
    a = agent_mod.Agent(cfg)
    a.read_network()
    part = bridgecount.BridgeCounts(cfg)
    a.parts.append(part)
    part.start(a)
    a.heard = []
    a.listeners.append(lambda name, data: a.heard.append((name, data)))
    return a


def test_a_device_found_on_the_bridge_is_announced_once(tmp_path, monkeypatch):
    answer = [listing([], [])]
    a = make_agent(tmp_path, monkeypatch, answer)
    a.scan()
    assert [n for n, _ in a.heard if n == "spin.device"] == []
    answer[0] = listing([[LAPTOP, "192.168.8.104"]],
                        [(["192.168.8.104", 40000, "203.0.113.7", "tcp", 80], 3)])
    a.scan()
    told = [d for n, d in a.heard if n == "spin.device"]
    assert [d["mac"] for d in told] == [LAPTOP], a.heard
    assert told[0]["ips"] == ["192.168.8.104"]
    a.scan()
    assert [d["mac"] for n, d in a.heard if n == "spin.device"] == [LAPTOP], "announced again"
