"""A bridged access point in the home: a namespace between some devices
and the router, as a Wi-Fi AP bridging its clients into the LAN.

    ap = AccessPoint(home, "ap1", ["laptop"]).up()
    ap.ns            # <tag>-ap1: br-lan with ports `uplink` (to the router's br-lan)
                     # and the devices' cables, 192.168.8.2/24 for its own agent
    ap.start_agent(**options)   # spin agent there, its own config, socket and log
                                # (an option None: left out, the agent's default)

The devices keep their addresses and MACs (DHCP still comes from the
router, through the bridge). No routing, no NAT, no conntrack of the
clients' traffic here: what an AP's agent sees comes from its bridge.
"""

import os
import sys

from tests.world.home import SRC

AP_ADDRESSES = {"ap1": "192.168.8.2", "ap2": "192.168.8.3"}


class AccessPoint:
    def __init__(self, home, name, devices):
        self.home = home
        self.name = name
        self.ns = home.ns(name)
        self.devices = list(devices)
        self.address = AP_ADDRESSES[name]
        self.agent = None
        self.dir = home.path(name)

    def up(self):
        h = self.home
        router = h.ns("router")
        h.sh(None, "ip", "netns", "add", self.ns)
        h.namespaces.append(self.ns)
        h._script(self.ns, [
            "ip link set lo up",
            "sysctl -q -e -w net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-ip6tables=0",
            "ip link add br-lan type bridge forward_delay 0 stp_state 0 mcast_snooping 0",
            "ip link set br-lan up",
        ])
        # the uplink: a cable from the AP's bridge into the router's
        port = "%s-up" % self.name
        h.sh(None, "ip", "-n", router, "link", "add", port, "type", "veth", "peer", "name", "uplink",
             "netns", self.ns)
        h.sh(None, "ip", "-n", router, "link", "set", port, "master", "br-lan", "up")
        h.sh(None, "ip", "-n", self.ns, "link", "set", "uplink", "master", "br-lan", "up")
        h.sh(None, "ip", "-n", self.ns, "addr", "add", self.address + "/24", "dev", "br-lan")
        # each device's cable moves from the router's bridge to the AP's
        for name in self.devices:
            dev = h.devices[name]
            h.sh(None, "ip", "-n", router, "link", "set", dev.port, "nomaster")
            h.sh(None, "ip", "-n", router, "link", "set", dev.port, "netns", self.ns)
            h.sh(None, "ip", "-n", self.ns, "link", "set", dev.port, "master", "br-lan", "up")
        os.makedirs(self.dir, exist_ok=True)
        return self

    def move(self, name, other):
        """The device walks over to another access point: its cable moves
        from this AP's bridge to that one's (its address and MAC stay)."""
        port = self.home.devices[name].port
        self.home.sh(None, "ip", "-n", self.ns, "link", "set", port, "nomaster")
        self.home.sh(None, "ip", "-n", self.ns, "link", "set", port, "netns", other.ns)
        self.home.sh(None, "ip", "-n", other.ns, "link", "set", port, "master", "br-lan", "up")
        self.devices.remove(name)
        other.devices.append(name)

    def start_agent(self, **options):
        cfg = {"state_dir": os.path.join(self.dir, "state"), "run_dir": os.path.join(self.dir, "run"),
               "rpc_socket": os.path.join(self.dir, "rpc.sock"), "lan_ifname": "br-lan",
               "lan_net": "192.168.8.0/24", "leases_file": os.path.join(self.dir, "none"),
               "dhcp_config": os.path.join(self.dir, "none"), "scan_interval": 1,
               "firewall": "none", "lan_watch": 0, "dns_snoop": 0, "ctevents": 0,
               "bridge_uplink": "uplink", "mqtt_agent": self.name}
        cfg.update(options)
        cfg = {k: v for k, v in cfg.items() if v is not None}  # None: the agent's default
        path = os.path.join(self.dir, "spin")
        with open(path, "w") as f:
            f.write("config spin 'main'\n")
            for k, v in cfg.items():
                f.write("\toption %s '%s'\n" % (k, v))
        self.agent = self.home.popen(self.name, [sys.executable, "-u", "-m", "spin_lite", "agent", "-c", path],
                                     label="agent-" + self.name, log=os.path.join(self.dir, "agent.log"),
                                     env={"PYTHONPATH": SRC, "PYTHONDONTWRITEBYTECODE": "1"})
        self.home.wait_for(lambda: os.path.exists(cfg["rpc_socket"]), timeout=15,
                           what="%s's agent" % self.name)
        return self.agent

    def call(self, method, args=None):
        from spin_lite import jsonrpc
        return jsonrpc.call(os.path.join(self.dir, "rpc.sock"), method, args or {})
