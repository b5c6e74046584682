"""An access point's clients, counted on its bridge (option bridge_uplink).

A bridged access point routes nothing: its clients' traffic crosses
lan_ifname between a client's port and the uplink, and never reaches
conntrack (conntrack in the bridge family needs nf_conntrack_bridge,
absent from many router kernels and from the test kernel). So the agent
counts it in nft: `table bridge spinap` writes every IPv4 TCP or UDP
frame from a client to the uplink into dynamic set `out`, keyed client
address . its port . remote . protocol . remote port (one connection, as
conntrack would have it), every frame back into `in` under the same key,
and each client's MAC . address into `clients` (nft 1.0.6 cannot list a
set of six fields back, so the MAC has a set of its own); each element has a counter and lives 10 minutes
past its last frame (max_flows of them at most). A client asking for a
lease sends from 0.0.0.0, nobody's address: it is left out of both.

Every scan the part reads both sets (one `nft -j list table`), and each
key's growth since the last read becomes one flow's news for
Agent.account, as a conntrack line's would: a key the last read did not
hold is a new connection, unreplied while nothing came back. The client
becomes a device by its MAC and address (an access point has no DHCP
server and no neighbour table of its clients). What this cannot see:
ICMP, IPv6 (not yet), traffic between two clients of the same access
point, and what a radio forwards between its own stations.

Nothing here fails the scan: a read that fails says why in status.
"""

from . import plat

json = plat.json

TABLE = "spinap"
PROTOS = {"tcp": b"tcp", "udp": b"udp", 6: b"tcp", 17: b"udp"}

RULESET = """table bridge spinap {
	set clients {
		type ether_addr . ipv4_addr
		size 1024
		flags dynamic,timeout
		timeout 10m
	}
	set out {
		type ipv4_addr . inet_service . ipv4_addr . inet_proto . inet_service
		size %(size)d
		flags dynamic,timeout
		timeout 10m
		counter
	}
	set in {
		type ipv4_addr . inet_service . ipv4_addr . inet_proto . inet_service
		size %(size)d
		flags dynamic,timeout
		timeout 10m
		counter
	}
	chain forward {
		type filter hook forward priority -5; policy accept;
		iifname != "%(up)s" oifname "%(up)s" ip saddr != 0.0.0.0 update @clients { ether saddr . ip saddr } comment "spin: who is behind this AP"
		iifname != "%(up)s" oifname "%(up)s" ip saddr != 0.0.0.0 meta l4proto { tcp, udp } update @out { ip saddr . th sport . ip daddr . meta l4proto . th dport } comment "spin: a client's frames out"
		iifname "%(up)s" oifname != "%(up)s" ether type ip meta l4proto { tcp, udp } update @in { ip daddr . th dport . ip saddr . meta l4proto . th sport } comment "spin: frames back to a client"
	}
}
"""


def _elems(s):
    for e in s.get("elem") or ():
        e = e.get("elem", e) if isinstance(e, dict) else None
        if not isinstance(e, dict):
            continue
        val = e.get("val")
        parts = val.get("concat") if isinstance(val, dict) else None
        if isinstance(parts, list):
            yield parts, e.get("counter")


def parse(items):
    """nft -j list table bridge spinap -> ({client address: mac},
    {key: [bytes out, packets out, bytes in, packets in]}), key (client,
    remote, proto, remote port, client port)."""
    clients = {}
    flows = {}
    for item in items or ():
        s = item.get("set") if isinstance(item, dict) else None
        if not s:
            continue
        if s.get("name") == "clients":
            for parts, _ in _elems(s):
                if len(parts) == 2:
                    clients[str(parts[1])] = str(parts[0]).lower()
            continue
        if s.get("name") not in ("out", "in"):
            continue
        at = 0 if s["name"] == "out" else 2
        for parts, counter in _elems(s):
            if len(parts) != 5 or not isinstance(counter, dict):
                continue
            client, cport, remote, proto, port = parts
            proto = PROTOS.get(proto)
            if proto is None or not isinstance(port, int) or not isinstance(cport, int):
                continue
            key = (str(client), str(remote), proto, port, cport)
            row = flows.get(key)
            if row is None:
                row = flows[key] = [0, 0, 0, 0]
            row[at] = int(counter.get("bytes", 0))
            row[at + 1] = int(counter.get("packets", 0))
    return clients, flows


class BridgeCounts:
    """The agent part (an access point's source of flows)."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.last = {}
        self.state = "off: not started"
        self.reads = 0
        self.failed = 0

    def start(self, agent):
        agent.bridgecount = self
        size = max(64, self.cfg["max_flows"])
        text = RULESET % {"size": size, "up": self.cfg["bridge_uplink"]}
        plat.run(["nft", "delete", "table", "bridge", TABLE])
        rc, _, err = plat.run(["nft", "-f", "-"], stdin=text.encode())
        if rc:
            self.state = "off: nft: %s" % err.decode("utf-8", "replace").strip()[:200]
            plat.warn("bridge counters: %s" % self.state)
            return
        self.state = "on"

    def collect(self, agent, now_ms):
        if self.state != "on":
            return
        rc, out, err = plat.run(["nft", "-j", "list", "table", "bridge", TABLE])
        if rc:
            self.failed += 1
            agent.errors["bridge"] = err.decode("utf-8", "replace").strip()[:200]
            return
        try:
            items = json.loads(out).get("nftables")
        except (ValueError, AttributeError):
            self.failed += 1
            return
        agent.errors.pop("bridge", None)
        self.reads += 1
        clients, flows = parse(items)
        now_wall = plat.wall()
        table = agent.devices
        for client, mac in clients.items():
            table.learn(mac, client, now_wall)
        first = agent.last_scan_ms is None
        for key, row in flows.items():
            client, remote, proto, port, _ = key
            if client not in clients:
                continue  # its client entry timed out first: the next frame brings it back
            was = self.last.get(key)
            new = was is None and row[1] > 0
            if was is None:
                was = (0, 0, 0, 0)
            moved = [max(0, row[i] - was[i]) for i in range(4)]
            if not (new or moved[0] or moved[2]):
                continue
            agent.account(client, remote, port, proto, moved[0], moved[2], moved[1], moved[3],
                          new and not first, new and row[3] == 0)
        self.last = dict((k, tuple(v)) for k, v in flows.items())
        table._bound()

    def stop(self, agent):
        plat.run(["nft", "delete", "table", "bridge", TABLE])

    def status(self):
        return {"state": self.state, "flows": len(self.last), "reads": self.reads,
                "failed": self.failed}
