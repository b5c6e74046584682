"""A home network in network namespaces: a router, the internet, devices.

    device ns (camera, speaker, ...)          router ns                      wan ns
    eth0 02:00:00:00:00:0N  ── veth ──  v-NAME ─┐                       ┌─ eth0 192.0.2.1
    udhcpc (hostname), SLAAC                    br-lan 192.168.8.1/24   │   2001:db8:ff::1
    traffic.py PROFILE                          fd00:8::1/64            │  lo: the "internet"
                                                dnsmasq DHCP+RA+DNS     │   203.0.113.x, 198.51.100.x,
                                                fw4-like nft or fw3-like│   2001:db8:1::x, resolver
                                                iptables, NAT (v4 only) │   198.51.100.53 (dnsmasq),
                                                wan 192.0.2.2 ──────────┘   services.py, 198.18/15 dropped
                                                the agent (start_agent)

Everything real: the kernel's bridge, routing, conntrack and NAT; dnsmasq
for DHCP/RA/DNS on the router and as the internet's authoritative DNS;
busybox udhcpc on the devices. Namespace names carry a per-run tag
(`sl<pid>-router`), so two runs never collide, and a crashed run's
leftovers are swept by the next one (`Home.sweep`).

Addresses, names and devices are tables below; tests read them (ZONE for
DNS snooping, DEVICES for MACs and hostnames).
"""

import atexit
import ctypes
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SRC = os.path.join(REPO, "src")

# -- the addresses ---------------------------------------------------------

LAN4_ROUTER = "192.168.8.1"         # GL.iNet's default LAN
LAN4_PREFIX = "192.168.8.0/24"
LAN6_ROUTER = "fd00:8::1"           # a ULA, given to devices by SLAAC (RA)
LAN6_PREFIX = "fd00:8::/64"
DHCP_RANGE = ("192.168.8.100", "192.168.8.200")

WAN4_ROUTER = "192.0.2.2"           # the router's WAN address (what NAT shows)
WAN4_GATEWAY = "192.0.2.1"          # the ISP side, in ns wan
WAN6_ROUTER = "2001:db8:ff::2"
WAN6_GATEWAY = "2001:db8:ff::1"

RESOLVER4 = "198.51.100.53"         # the internet's DNS (authoritative for ZONE)
RESOLVER6 = "2001:db8:53::53"
SCAN_NET = "198.18.0.0/15"          # routed to wan, where every packet is dropped
TELNET4 = "203.0.113.23"            # the one address that answers on tcp/23

# service ports, served on every wan address by services.py
HTTP_PORT = 80          # GET answers, POST is a sink
SINK_PORT = 9000        # TCP: reads and discards (camera upload)
SOURCE_PORT = 9001      # TCP: "N\n" -> N bytes (speaker bursts)
ECHO_PORT = 7           # UDP echo (bulb)
TELNET_PORT = 23

# What a device runs to try a TCP connection (argv: address, port,
# timeout; prints "open" or "closed <why>") and to ask a name (argv: this
# directory, server, name; prints the addresses or "failed <why>"):
# python3 -c SCRIPT inside the device's namespace
REACH = """
import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.settimeout(float(sys.argv[3]))
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print("open")
except OSError as e:
    print("closed", e)
"""

ASK = """
import sys
sys.path.insert(0, sys.argv[1])
from traffic import query
try:
    print(",".join(query(sys.argv[2], sys.argv[3], timeout=2.0)))
except OSError as e:
    print("failed", e)
"""

# The DNS zone the wan resolver serves: (name, type, value). CNAME chains of
# two links are on purpose (www.example-shop.com -> shop.edge.example-cdn.net
# -> e7.example-cdn.net): DNS snooping must follow them to the address.
ZONE = [
    ("cloud.example-cam.com", "A", "203.0.113.10"),
    ("cloud.example-cam.com", "AAAA", "2001:db8:1::10"),
    ("stream.example-music.com", "A", "203.0.113.20"),
    ("config.example-music.com", "A", "203.0.113.21"),
    ("api.example-thermo.com", "A", "203.0.113.30"),
    ("time.example-bulb.com", "A", "203.0.113.40"),
    ("telnet.example-bulb.com", "A", TELNET4),
    ("www.example-shop.com", "CNAME", "shop.edge.example-cdn.net"),
    ("shop.edge.example-cdn.net", "CNAME", "e7.example-cdn.net"),
    ("e7.example-cdn.net", "A", "203.0.113.7"),
    ("e7.example-cdn.net", "AAAA", "2001:db8:1::7"),
    ("news.example.org", "A", "198.51.100.10"),
    ("news.example.org", "AAAA", "2001:db8:1::a"),
    ("mail.example.org", "A", "198.51.100.11"),
    ("video.example-tube.com", "CNAME", "v.example-cdn.net"),
    ("v.example-cdn.net", "A", "198.51.100.20"),
    ("v.example-cdn.net", "A", "198.51.100.21"),
    ("search.example.net", "A", "198.51.100.30"),
    ("search.example.net", "AAAA", "2001:db8:1::30"),
    ("social.example.com", "CNAME", "edge.example-cdn.net"),
    ("edge.example-cdn.net", "A", "203.0.113.50"),
    ("weather.example.net", "A", "198.51.100.40"),
    ("files.example.com", "A", "203.0.113.60"),
    ("files.example.com", "AAAA", "2001:db8:1::60"),
]

ZONE_TTL = 300

# Answers too big for one packet, outside ZONE (nothing listens on their
# addresses): 200 A records each, about 3.2 KB. Asked without EDNS the
# answer is truncated and comes again over TCP; with EDNS it comes as one
# UDP datagram in IP fragments. DNS snooping must name every address.
LARGE = {
    "many-tcp.example-cdn.net": ["198.18.%d.%d" % (1 + i // 200, 1 + i % 200) for i in range(200)],
    "many-frag.example-cdn.net": ["198.18.%d.%d" % (5 + i // 200, 1 + i % 200) for i in range(200)],
}

# the domains the resolver is authoritative for: other names there are NXDOMAIN
ZONE_DOMAINS = ["example-cam.com", "example-music.com", "example-thermo.com",
                "example-bulb.com", "example-shop.com", "example-cdn.net",
                "example.org", "example-tube.com", "example.net", "example.com"]

# the names the laptop browses (resolved through the router's DNS)
LAPTOP_NAMES = ["www.example-shop.com", "news.example.org", "mail.example.org",
                "video.example-tube.com", "search.example.net", "social.example.com",
                "weather.example.net", "files.example.com"]

# The devices: name -> (mac, DHCP hostname, profile). The thermostat also has
# a static reservation (UCI `config host`) whose name differs from the
# hostname it sends, so the agent's name order can be seen.
DEVICES = {
    "camera": ("02:00:00:00:00:01", "camera", "camera"),
    "speaker": ("02:00:00:00:00:02", "speaker", "speaker"),
    "thermostat": ("02:00:00:00:00:03", "thermostat", "thermostat"),
    "laptop": ("02:00:00:00:00:04", "laptop", "laptop"),
    "bulb": ("02:00:00:00:00:05", "bulb", "bulb"),
}
# Devices a home has only when asked for (Home(devices=[...])): the
# evaluation's benign look-alikes and its smart plugs, one per attack, so
# that no attack inherits another's history.
GUESTS = {
    "console": ("02:00:00:00:01:01", "console", None),
    "tv": ("02:00:00:00:01:02", "tv", None),
    "phone": ("02:00:00:00:01:03", "phone", None),
    "nas": ("02:00:00:00:01:04", "nas", None),
}
for _i in range(1, 10):
    GUESTS["plug%d" % _i] = ("02:00:00:00:02:%02x" % _i, "plug-%d" % _i, None)
STATIC_HOSTS = [("hallway-thermostat", "02:00:00:00:00:03", "192.168.8.50")]


def resolve(name):
    """What the zone answers for name: (chain of names, [addresses]).
    The chain starts with name and follows CNAMEs."""
    chain = [name]
    for _ in range(8):
        cname = [v for n, t, v in ZONE if n == chain[-1] and t == "CNAME"]
        if not cname:
            break
        chain.append(cname[0])
    return chain, [v for n, t, v in ZONE if n == chain[-1] and t in ("A", "AAAA")]


def wan_addresses():
    """Every address the internet namespace answers on (on its lo)."""
    addrs = [v for _, t, v in ZONE if t in ("A", "AAAA")]
    addrs += [RESOLVER4, RESOLVER6, TELNET4]
    seen = []
    for a in addrs:
        if a not in seen:
            seen.append(a)
    return seen


def eui64(mac, prefix=LAN6_PREFIX):
    """The SLAAC address a device takes from its MAC (no privacy addresses)."""
    b = bytearray(int(x, 16) for x in mac.split(":"))
    b[0] ^= 2
    low = int.from_bytes(bytes(b[:3]) + b"\xff\xfe" + bytes(b[3:]), "big")
    net = ipaddress.ip_network(prefix)
    return str(ipaddress.ip_address(int(net.network_address) + low))


# -- the router's firewall, as the real ones shape it ------------------------

# firewall4 (OpenWrt >= 22.03): one table inet fw4, base chains at fw4's
# priorities, zone chains jumped to by interface, masquerade in srcnat.
FW4_RULESET = """\
table inet fw4
flush table inet fw4
table inet fw4 {
	chain input {
		type filter hook input priority filter; policy accept;
		iif "lo" accept comment "!fw4: Accept traffic from loopback"
		ct state vmap { established : accept, related : accept } comment "!fw4: Handle inbound flows"
		iifname "br-lan" jump input_lan comment "!fw4: Handle lan IPv4/IPv6 input traffic"
		iifname "wan" jump input_wan comment "!fw4: Handle wan IPv4/IPv6 input traffic"
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		ct state vmap { established : accept, related : accept } comment "!fw4: Handle forwarded flows"
		iifname "br-lan" jump forward_lan comment "!fw4: Handle lan IPv4/IPv6 forward traffic"
		iifname "wan" jump forward_wan comment "!fw4: Handle wan IPv4/IPv6 forward traffic"
	}
	chain output {
		type filter hook output priority filter; policy accept;
		oif "lo" accept comment "!fw4: Accept traffic towards loopback"
		ct state vmap { established : accept, related : accept } comment "!fw4: Handle outbound flows"
	}
	chain prerouting {
		type filter hook prerouting priority filter; policy accept;
	}
	chain input_lan {
		accept
	}
	chain input_wan {
		accept
	}
	chain forward_lan {
		accept comment "!fw4: Accept lan to wan forwarding"
	}
	chain forward_wan {
		accept
	}
	chain dstnat {
		type nat hook prerouting priority dstnat; policy accept;
	}
	chain srcnat {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan" jump srcnat_wan comment "!fw4: Handle wan IPv4/IPv6 srcnat traffic"
	}
	chain srcnat_wan {
		meta nfproto ipv4 masquerade comment "!fw4: Masquerade IPv4 wan traffic"
	}
	chain mangle_prerouting {
		type filter hook prerouting priority mangle; policy accept;
	}
	chain mangle_forward {
		type filter hook forward priority mangle; policy accept;
	}
}
"""

# firewall3 (OpenWrt 21.02, GL.iNet 4.x): iptables with zone chains and
# MASQUERADE in nat POSTROUTING; policies ACCEPT (the LAN may do anything).
FW3_RULES = """\
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:zone_wan_postrouting - [0:0]
-A POSTROUTING -o wan -m comment --comment "!fw3" -j zone_wan_postrouting
-A zone_wan_postrouting -m comment --comment "!fw3" -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:forwarding_rule - [0:0]
:zone_lan_forward - [0:0]
-A FORWARD -m comment --comment "!fw3" -j forwarding_rule
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "!fw3" -j ACCEPT
-A FORWARD -i br-lan -m comment --comment "!fw3" -j zone_lan_forward
-A zone_lan_forward -m comment --comment "!fw3: Accept lan to wan forwarding" -j ACCEPT
COMMIT
"""

# the internet drops whatever goes to the scan range, so a scanner's SYNs
# stay [UNREPLIED] in the router's conntrack (a RST would delete them)
WAN_RULESET = """\
table inet world_wan {
	chain prerouting {
		type filter hook prerouting priority raw; policy accept;
		ip daddr %s drop
	}
}
""" % SCAN_NET

# iptables: the binary each firewall flavour uses. Debian 12 points
# `iptables` at iptables-nft (update-alternatives, priority 20 over legacy's
# 10), so "iptables" here writes nft tables `ip nat`/`ip filter` through the
# xtables compat layer; "iptables-legacy" is what firewall3 on OpenWrt 21.02
# really uses (this kernel has both).
IPTABLES = {"iptables": ("iptables-restore", "ip6tables-restore"),
            "iptables-legacy": ("iptables-legacy-restore", "ip6tables-legacy-restore")}


class HomeError(Exception):
    """The home cannot be built here; the message names what is missing."""


def _pdeathsig():
    # children die with the process that started them, even after kill -9
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Device:
    """One device of the home: its namespace, MAC, DHCP hostname, addresses."""

    def __init__(self, home, name, mac, hostname, profile):
        self.home = home
        self.name = name
        self.mac = mac
        self.hostname = hostname
        self.profile = profile
        self.ns = home.ns(name)
        self.port = "v-" + name           # its bridge port in the router ns
        self.ip4 = None
        self.ip6 = eui64(mac)
        self.udhcpc = None
        self.traffic = None

    @property
    def lease_env(self):
        return os.path.join(self.home.dir, "dhcp-%s.env" % self.name)

    def lease(self):
        """What udhcpc's script saw at the last bound/renew: {ip, router, dns, ...}."""
        try:
            with open(self.lease_env) as f:
                return dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
        except FileNotFoundError:
            return {}

    def status(self):
        """The traffic profile's own counters (polls, bytes, attempts...)."""
        try:
            with open(os.path.join(self.home.dir, "traffic-%s.json" % self.name)) as f:
                return json.load(f)
        except (FileNotFoundError, ValueError):
            return {}

    def __repr__(self):
        return "<Device %s %s %s %s>" % (self.name, self.mac, self.ip4, self.ip6)


class Home:
    """The simulated home. Use as a context manager, or up()/down()."""

    PREFIX = "sl"
    _live_tags = set()       # tags of the homes this process has up

    def __init__(self, tag=None, firewall="nft", agent=False, config=None, traffic=True,
                 devices=None, rates=None, keep_dir=None, interpreter="python"):
        if interpreter not in ("python", "micropython"):
            raise ValueError("interpreter must be python or micropython, not %r" % interpreter)
        # the agent's interpreter: CPython, or MicroPython's Unix port (the
        # PyPI build in tests: no ffi, so no signals: TERM kills it outright)
        self.interpreter = interpreter
        if firewall not in ("nft", "iptables", "iptables-legacy"):
            raise ValueError("firewall must be nft, iptables or iptables-legacy, not %r" % firewall)
        # sl<pid>; up() adds a letter when this process already runs a home
        self._auto_tag = tag is None
        self.tag = tag or "%s%d" % (self.PREFIX, os.getpid())
        if not re.match(r"^[a-z0-9]+$", self.tag) or len(self.tag) > 12:
            raise ValueError("tag must be 1-12 lower-case letters/digits: %r" % self.tag)
        self.firewall = firewall
        self.with_agent = agent
        self.config = dict(config or {})
        self.with_traffic = traffic
        self.rates = dict(rates or {})
        self.keep_dir = keep_dir if keep_dir is not None else bool(os.environ.get("SPIN_KEEP_HOME"))
        names = devices if devices is not None else list(DEVICES)
        self.dir = None
        self.devices = {}
        self._names = names
        self.namespaces = []
        self.procs = []          # (label, Popen)
        self.agent = None
        self.agent_env = {}      # more environment for the agent (a fault's LD_PRELOAD)
        self._old_handlers = {}
        self._is_up = False
        self.started_in = None   # seconds up() took

    # -- names ---------------------------------------------------------------

    def ns(self, short):
        return "%s-%s" % (self.tag, short)

    def _ns(self, ns):
        if ns is None:
            return None
        if ns in self.devices:
            return self.devices[ns].ns
        return ns if ns.startswith(self.tag + "-") else self.ns(ns)

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    # -- running things in namespaces -------------------------------------------

    def _argv(self, ns, argv):
        ns = self._ns(ns)
        argv = [str(a) for a in argv]
        return argv if ns is None else ["ip", "netns", "exec", ns] + argv

    def sh(self, ns, *argv, check=True, input=None, timeout=30):
        """Run argv in namespace ns (router, wan, a device name, or None for
        the host); return stdout as text. A failure raises with its stderr."""
        p = subprocess.run(self._argv(ns, argv), input=input, capture_output=True,
                           text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise HomeError("in %s: %s failed (%d): %s" % (ns, " ".join(map(str, argv)),
                                                            p.returncode, p.stderr.strip()))
        return p.stdout

    def popen(self, ns, argv, label=None, log=None, env=None, foreground=False, **kw):
        """Start argv in namespace ns as a child that the home stops on down().
        Output goes to log (a path in the home dir) or nowhere; a foreground
        child keeps the terminal (and gets its Ctrl-C)."""
        e = dict(os.environ)
        e.update(env or {})
        if foreground:
            streams = {}
        else:
            out = open(log, "ab") if log else subprocess.DEVNULL
            streams = {"stdin": subprocess.DEVNULL, "stdout": out,
                       "stderr": subprocess.STDOUT if log else subprocess.DEVNULL}
        p = subprocess.Popen(self._argv(ns, argv), env=e, preexec_fn=_pdeathsig,
                             start_new_session=not foreground, **streams, **kw)
        if not foreground and log:
            out.close()
        self.procs.append((label or str(argv[0]), p))
        return p

    def _alive(self, label):
        """True while the child called label runs; raise with its log if it died."""
        for lab, p in self.procs:
            if lab == label and p.poll() is not None:
                log = self.path(label + ".log")
                tail = open(log, errors="replace").read()[-2000:] if os.path.exists(log) else ""
                raise HomeError("%s exited with %s\n%s" % (label, p.returncode, tail))
        return True

    def _script(self, ns, lines):
        self.sh(ns, "sh", "-ec", "\n".join(lines))

    # -- checks ------------------------------------------------------------------

    def check(self):
        """Raise HomeError naming what is missing to build the home here."""
        if os.geteuid() != 0:
            raise HomeError("the simulated home needs root (network namespaces, nft, dnsmasq); "
                            "run as root, e.g. `sudo make test`")
        need = ["ip", "dnsmasq", "busybox", "sysctl", "nft"]
        if self.firewall != "nft":
            need += list(IPTABLES[self.firewall])
        missing = [b for b in need if shutil.which(b) is None]
        if missing:
            raise HomeError("missing programs: %s (see tools/apt-packages.txt; `make deps`)"
                            % ", ".join(missing))
        p = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
        if p.returncode != 0:
            raise HomeError("`ip netns` does not work here: %s" % p.stderr.strip())
        if subprocess.run(["busybox", "udhcpc", "--help"], capture_output=True).returncode not in (0, 1):
            raise HomeError("busybox has no udhcpc applet")

    # -- up and down ---------------------------------------------------------------

    def __enter__(self):
        self.up()
        return self

    def __exit__(self, *exc):
        self.down()
        return False

    def up(self):
        t0 = time.monotonic()
        self.check()
        self.sweep()
        if self._auto_tag:
            self.tag = self._free_tag()
        elif os.path.exists("/run/netns/%s-router" % self.tag):
            raise HomeError("a home tagged %s is already up (Home.sweep(%r) removes it)"
                            % (self.tag, self.tag))
        Home._live_tags.add(self.tag)
        self.dir = tempfile.mkdtemp(prefix="spin-home-%s-" % self.tag)
        self._is_up = True
        atexit.register(self.down)
        self._trap_signals()
        try:
            for name in self._names:
                mac, hostname, profile = DEVICES[name] if name in DEVICES else GUESTS[name]
                self.devices[name] = Device(self, name, mac, hostname, profile)
            for short in ["router", "wan"] + list(self.devices):
                self.sh(None, "ip", "netns", "add", self.ns(short))
                self.namespaces.append(self.ns(short))
            self._build_wan()
            self._build_router()
            for dev in self.devices.values():
                self._build_device(dev)
            self._start_wan_services()
            self._start_router_dnsmasq()
            for dev in self.devices.values():
                self._start_dhcp(dev)
            self.wait_for(lambda: all(d.lease().get("ip") for d in self.devices.values()),
                          timeout=20, what="DHCP leases for every device")
            for dev in self.devices.values():
                dev.ip4 = dev.lease()["ip"]
            self.wait_for(self._slaac_done, timeout=20, what="SLAAC addresses (RA) on every device")
            self.wait_for(lambda: all(self.lease_hostnames().get(d.mac)
                                      for d in self.devices.values()),
                          timeout=10, what="every device in the router's lease file")
            # as on a router: the agent is up (and byte accounting on) before
            # the devices talk; a flow begun earlier never gets counters
            if self.with_agent:
                self.start_agent()
            if self.with_traffic:
                for dev in self.devices.values():
                    if dev.profile:      # a guest has none of traffic.py's
                        self.start_traffic(dev.name)
        except HomeError as e:
            # the logs go with the home dir: keep their ends in the error
            diag = self._log_tails()
            self.down()
            raise HomeError("%s%s" % (e, diag)) from None
        except BaseException:
            self.down()
            raise
        self.started_in = time.monotonic() - t0
        return self

    def _log_tails(self, lines=5):
        out = ""
        for name in sorted(os.listdir(self.dir)) if self.dir and os.path.isdir(self.dir) else []:
            if name.endswith(".log") and name != "agent.log":
                with open(self.path(name), errors="replace") as f:
                    tail = f.readlines()[-lines:]
                if tail:
                    out += "\n--- %s:\n%s" % (name, "".join(tail).rstrip())
        return out

    def down(self):
        """Stop every process and remove every namespace and file of this home.
        Safe to call twice, from atexit, or after a half-built up()."""
        if not self._is_up:
            return
        self._is_up = False
        try:
            if self.agent is not None and self.agent.poll() is None:
                self.stop_agent(timeout=3)
        except Exception:
            pass
        for _, p in reversed(self.procs):
            if p.poll() is None:
                try:
                    p.terminate()
                except OSError:
                    pass
        deadline = time.monotonic() + 3
        for _, p in self.procs:
            try:
                p.wait(max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []
        for ns in reversed(self.namespaces):
            _remove_ns(ns)
        self.namespaces = []
        if self.dir and not self.keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        self._restore_signals()
        Home._live_tags.discard(self.tag)
        try:
            atexit.unregister(self.down)
        except Exception:
            pass

    def _free_tag(self):
        base = "%s%d" % (self.PREFIX, os.getpid())
        letters = "abcdefghijklmnopqrstuvwxyz"
        for suffix in [""] + list(letters) + [a + b for a in letters for b in letters]:
            tag = base + suffix
            if tag not in Home._live_tags and not os.path.exists("/run/netns/%s-router" % tag):
                return tag
        raise HomeError("too many homes in one process")

    @classmethod
    def sweep(cls, tag=None):
        """Remove the namespaces and home dirs of tag, or (no tag) of every run
        whose process (sl<pid>) is gone. Returns the namespaces removed."""
        removed = []
        p = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
        for line in p.stdout.splitlines():
            name = line.split()[0] if line.split() else ""
            m = re.match(r"^(%s(\d+)[a-z]*|[a-z0-9]+)-" % cls.PREFIX, name)
            if not m:
                continue
            if tag is not None:
                if m.group(1) != tag:
                    continue
            elif not (m.group(2) and not _pid_alive(int(m.group(2)))):
                continue
            _remove_ns(name)
            removed.append(name)
        tmp = tempfile.gettempdir()
        for entry in os.listdir(tmp):
            m = re.match(r"^spin-home-(%s(\d+)[a-z]*|[a-z0-9]+)-" % cls.PREFIX, entry)
            if not m:
                continue
            if (tag is not None and m.group(1) == tag) or \
               (tag is None and m.group(2) and not _pid_alive(int(m.group(2)))):
                shutil.rmtree(os.path.join(tmp, entry), ignore_errors=True)
        return removed

    def _trap_signals(self):
        # SIGTERM becomes SystemExit so `with Home()` and finally blocks run;
        # SIGINT already raises KeyboardInterrupt. Only the main thread may.
        import threading
        if threading.current_thread() is not threading.main_thread():
            return

        def on_term(signum, frame):
            raise SystemExit(128 + signum)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            try:
                self._old_handlers[sig] = signal.signal(sig, on_term)
            except (ValueError, OSError):
                pass

    def _restore_signals(self):
        for sig, h in self._old_handlers.items():
            try:
                signal.signal(sig, h)
            except (ValueError, OSError, TypeError):
                pass
        self._old_handlers = {}

    # -- building ----------------------------------------------------------------------

    def _build_wan(self):
        wan = self.ns("wan")
        lines = [
            "sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0",
            "ip link set lo up",
        ]
        # the internet's addresses live on lo (this kernel may lack dummy);
        # a local address on any interface is answered from eth0 just the same
        for a in wan_addresses():
            lines.append("ip addr add %s/%d dev lo" % (a, 128 if ":" in a else 32))
        self._script(wan, lines)
        self.sh(None, "ip", "-n", self.ns("router"), "link", "add", "wan", "type", "veth",
                "peer", "name", "eth0", "netns", wan)
        self._script(wan, [
            "ip addr add %s/24 dev eth0" % WAN4_GATEWAY,
            "ip addr add %s/64 dev eth0" % WAN6_GATEWAY,
            "ip link set eth0 up",
            # no NAT66: the internet routes the ULA back to the router
            "ip -6 route add %s via %s" % (LAN6_PREFIX, WAN6_ROUTER),
        ])
        self.sh(wan, "nft", "-f", "-", input=WAN_RULESET)

    def _build_router(self):
        r = self.ns("router")
        self._script(r, [
            "sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1"
            " net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0",
            # as on OpenWrt (no br_netfilter): frames between LAN devices on
            # br-lan never reach the IP hooks or conntrack. Some kernels have
            # br_netfilter built in and on in every namespace; -e: others
            # have no such keys at all.
            "sysctl -q -e -w net.bridge.bridge-nf-call-iptables=0"
            " net.bridge.bridge-nf-call-ip6tables=0 net.bridge.bridge-nf-call-arptables=0",
            "ip link set lo up",
            "ip link add br-lan type bridge forward_delay 0 stp_state 0 mcast_snooping 0",
            "ip addr add %s/24 dev br-lan" % LAN4_ROUTER,
            "ip addr add %s/64 dev br-lan" % LAN6_ROUTER,
            "ip link set br-lan up",
            "ip addr add %s/24 dev wan" % WAN4_ROUTER,
            "ip addr add %s/64 dev wan" % WAN6_ROUTER,
            "ip link set wan up",
            "ip route add default via %s" % WAN4_GATEWAY,
            "ip -6 route add default via %s" % WAN6_GATEWAY,
        ])
        if self.firewall == "nft":
            self.sh(r, "nft", "-f", "-", input=FW4_RULESET)
        else:
            v4, v6 = IPTABLES[self.firewall]
            self.sh(r, v4, input=FW3_RULES)
            self.sh(r, v6, input="*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n"
                                 ":OUTPUT ACCEPT [0:0]\nCOMMIT\n")
        # the static reservation, as OpenWrt keeps it in /etc/config/dhcp
        with open(self.path("dhcp"), "w") as f:
            f.write("config dnsmasq\n\toption domain 'lan'\n\toption local '/lan/'\n"
                    "\toption leasefile '%s'\n\n" % self.path("dhcp.leases"))
            f.write("config dhcp 'lan'\n\toption interface 'lan'\n\toption start '100'\n"
                    "\toption limit '101'\n\toption leasetime '12h'\n\toption ra 'server'\n\n")
            for name, mac, ip in STATIC_HOSTS:
                f.write("config host\n\toption name '%s'\n\toption mac '%s'\n\toption ip '%s'\n\n"
                        % (name, mac, ip))

    def _build_device(self, dev):
        r, d = self.ns("router"), dev.ns
        self._script(d, [
            "sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0"
            " net.ipv6.conf.default.use_tempaddr=0",
            "ip link set lo up",
        ])
        self.sh(None, "ip", "-n", r, "link", "add", dev.port, "type", "veth",
                "peer", "name", "eth0", "address", dev.mac, "netns", d)
        self.sh(None, "ip", "-n", r, "link", "set", dev.port, "master", "br-lan", "up")
        self.sh(None, "ip", "-n", d, "link", "set", "eth0", "up")

    def _start_wan_services(self):
        args = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-hosts",
                "--no-resolv", "--user=root", "--pid-file=" + self.path("wan-dnsmasq.pid"),
                # dnsmasq gives its own records TTL 0 unless told; real zones don't
                "--local-ttl=%d" % ZONE_TTL,
                # answers up to 4 KB over UDP with EDNS (a big one leaves in fragments)
                "--edns-packet-max=4096",
                "--listen-address=%s,%s" % (RESOLVER4, RESOLVER6), "--bind-interfaces",
                "--log-queries", "--log-facility=" + self.path("wan-dnsmasq.log")]
        for dom in ZONE_DOMAINS:
            args.append("--local=/%s/" % dom)
        hosts = {}
        for name, t, v in ZONE:
            if t == "CNAME":
                args.append("--cname=%s,%s" % (name, v))
            else:
                hosts.setdefault(name, []).append(v)
        for name, addrs in list(hosts.items()) + list(LARGE.items()):
            for a in addrs:
                args.append("--host-record=%s,%s" % (name, a))
        self.popen("wan", args, label="wan-dnsmasq")
        self.popen("wan", [sys.executable, "-u", os.path.join(HERE, "services.py"),
                           "--telnet", TELNET4, "--addresses", ",".join(wan_addresses()), "--status", self.path("services.json")],
                   label="wan-services", log=self.path("wan-services.log"))
        self.wait_for(lambda: self._alive("wan-services") and os.path.exists(self.path("services.json")),
                      timeout=10, what="the internet's services (services.py)")

    def _start_router_dnsmasq(self):
        lo, hi = DHCP_RANGE
        args = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-hosts",
                "--no-resolv", "--user=root", "--pid-file=" + self.path("router-dnsmasq.pid"),
                "--interface=br-lan", "--bind-interfaces",
                "--server=%s" % RESOLVER4, "--domain=lan", "--local=/lan/", "--expand-hosts",
                "--dhcp-range=%s,%s,255.255.255.0,12h" % (lo, hi),
                # IPv6 by SLAAC only (like OpenWrt with odhcpd in "ra server" and
                # no DHCPv6): devices take fd00:8::EUI-64, the agent learns
                # them from the neighbour table
                "--enable-ra", "--dhcp-range=%s,ra-only,64,12h" % LAN6_PREFIX.split("/")[0],
                "--dhcp-leasefile=" + self.path("dhcp.leases"), "--dhcp-authoritative",
                "--no-ping", "--log-queries", "--log-dhcp",
                "--log-facility=" + self.path("router-dnsmasq.log")]
        for name, mac, ip in STATIC_HOSTS:
            args.append("--dhcp-host=%s,%s,%s" % (mac, ip, name))
        self.popen("router", args, label="router-dnsmasq")

    def _start_dhcp(self, dev):
        dev.udhcpc = self.popen(dev.name, [
            "busybox", "udhcpc", "-f", "-i", "eth0", "-s", os.path.join(HERE, "udhcpc.sh"),
            "-x", "hostname:%s" % dev.hostname, "-t", "30", "-T", "1", "-A", "1"],
            label="udhcpc-" + dev.name, log=self.path("dhcp-%s.log" % dev.name),
            env={"SPIN_LEASE_ENV": dev.lease_env})

    def _slaac_done(self):
        for dev in self.devices.values():
            out = self.sh(dev.name, "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "global")
            if dev.ip6 not in out:
                return False
        return True

    def renew(self, name):
        """Make the device renew its DHCP lease now (udhcpc's SIGUSR1)."""
        self.devices[name].udhcpc.send_signal(signal.SIGUSR1)

    # -- traffic ---------------------------------------------------------------------

    def start_traffic(self, name, profile=None, *extra):
        dev = self.devices[name]
        if dev.traffic is not None and dev.traffic.poll() is None:
            return dev.traffic
        argv = [sys.executable, "-u", os.path.join(HERE, "traffic.py"), profile or dev.profile,
                "--home", self.dir, "--name", name]
        if name in self.rates:
            argv += ["--rate", str(self.rates[name])]
        argv += list(extra)
        dev.traffic = self.popen(name, argv, label="traffic-" + name,
                                 log=self.path("traffic-%s.log" % name))
        return dev.traffic

    def stop_traffic(self, name):
        dev = self.devices[name]
        if dev.traffic is not None and dev.traffic.poll() is None:
            dev.traffic.terminate()
            dev.traffic.wait(5)
        dev.traffic = None

    def scan(self, name="bulb", on=True):
        """Turn the bulb (or another device's profile) into a telnet scanner."""
        flag = self.path("%s.scan" % name)
        if on:
            open(flag, "w").close()
        elif os.path.exists(flag):
            os.unlink(flag)

    # -- what the router sees ------------------------------------------------------------

    def conntrack(self):
        """The router's /proc/net/nf_conntrack as text."""
        return self.sh("router", "cat", "/proc/net/nf_conntrack")

    def leases(self):
        """The router's lease file, as lines of (expiry, mac, ip, hostname, clientid)."""
        try:
            with open(self.path("dhcp.leases")) as f:
                return [line.split() for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def lease_hostnames(self):
        return {fields[1]: fields[3] for fields in self.leases() if len(fields) >= 4}

    # -- the agent -----------------------------------------------------------------------

    @property
    def agent_config(self):
        return self.path("spin")

    @property
    def agent_log(self):
        return self.path("agent.log")

    @property
    def rpc_socket(self):
        if self.interpreter == "micropython":
            # no umask there: the socket must sit in run_dir, which it closes (0700)
            return self.path("run/rpc.sock")
        return self.path("rpc.sock")

    def write_agent_config(self, **overrides):
        cfg = {
            "leases_file": self.path("dhcp.leases"),
            "dhcp_config": self.path("dhcp"),
            "state_dir": self.path("state"),
            "run_dir": self.path("run"),
            "rpc_socket": self.rpc_socket,
            "lan_ifname": "br-lan",
            "scan_interval": 1,
            "bucket_seconds": 60,
            "firewall": "nft" if self.firewall == "nft" else "iptables",
        }
        if self.firewall != "nft":
            # the agent's rules go through the same iptables as the home's
            # firewall3 (its own default would be iptables-legacy, which a
            # Debian "iptables" home does not use)
            cfg["iptables_cmd"] = IPTABLES[self.firewall][0].replace("-restore", "")
        cfg.update(self.config)
        cfg.update(overrides)
        lines = ["config spin 'main'"]
        for k, v in cfg.items():
            if isinstance(v, (list, tuple)):
                lines += ["\tlist %s '%s'" % (k, x) for x in v]
            else:
                if isinstance(v, bool):
                    v = "1" if v else "0"
                lines.append("\toption %s '%s'" % (k, v))
        with open(self.agent_config, "w") as f:
            f.write("\n".join(lines) + "\n")
        return cfg

    def start_agent(self, wait=True, **overrides):
        """Run `spin agent` in the router namespace with a config written for
        this home; wait until its RPC socket answers."""
        if self.agent is not None and self.agent.poll() is None:
            raise HomeError("the agent is already running (pid %d)" % self.agent.pid)
        self.write_agent_config(**overrides)
        if os.path.exists(self.rpc_socket):
            os.unlink(self.rpc_socket)
        with open(self.agent_log, "ab") as log:
            log.write(b"--- start_agent %s\n" % time.strftime("%H:%M:%S").encode())
        if self.interpreter == "micropython":
            argv = [shutil.which("micropython") or "micropython", "-X", "heapsize=32M",
                    "-m", "spin_lite", "agent", "-c", self.agent_config]
            env = {"MICROPYPATH": SRC}
        else:
            argv = [sys.executable, "-u", "-m", "spin_lite", "agent", "-c", self.agent_config]
            env = {"PYTHONPATH": SRC, "PYTHONDONTWRITEBYTECODE": "1"}
        env.update(self.agent_env)
        self.agent = self.popen("router", argv, label="agent", log=self.agent_log, env=env)
        if wait:
            self.wait_for(self._agent_answers, timeout=15, what="the agent's RPC socket")
        return self.agent

    def _agent_answers(self):
        if self.agent.poll() is not None:
            raise HomeError("the agent exited with %s; its log %s ends:\n%s"
                            % (self.agent.returncode, self.agent_log, self.agent_log_tail()))
        if not os.path.exists(self.rpc_socket):
            return False
        try:
            self.call("status")
        except OSError:
            return False
        return True

    def agent_log_tail(self, n=30):
        try:
            with open(self.agent_log, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except FileNotFoundError:
            return ""

    def stop_agent(self, timeout=10):
        """SIGTERM, as procd does; returns the exit code."""
        return self._signal_agent(signal.SIGTERM, timeout)

    def kill_agent(self):
        """kill -9: the agent gets no chance to clean up."""
        return self._signal_agent(signal.SIGKILL, 5)

    def reload_agent(self):
        """SIGHUP: re-read the config, keep the history."""
        if self.agent is None or self.agent.poll() is not None:
            raise HomeError("the agent is not running")
        self.agent.send_signal(signal.SIGHUP)

    def _signal_agent(self, sig, timeout):
        p = self.agent
        if p is None or p.poll() is not None:
            return None if p is None else p.returncode
        p.send_signal(sig)
        try:
            return p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise HomeError("the agent did not stop within %ss of signal %d" % (timeout, sig))

    def call(self, method, args=None, token=None):
        """Call the agent's API over its unix socket (JSON-RPC)."""
        if SRC not in sys.path:
            sys.path.insert(0, SRC)
        from spin_lite import jsonrpc
        return jsonrpc.call(self.rpc_socket, method, args or {}, token=token)

    # -- waiting ---------------------------------------------------------------------------

    def wait_for(self, predicate, timeout=10, interval=0.05, what=None):
        """Poll predicate until it returns something true; return that. On
        timeout raise HomeError naming what was awaited."""
        deadline = time.monotonic() + timeout
        while True:
            v = predicate()
            if v:
                return v
            if time.monotonic() > deadline:
                raise HomeError("timed out after %ss waiting for %s"
                                % (timeout, what or getattr(predicate, "__name__", "a condition")))
            time.sleep(interval)


def _remove_ns(name):
    """Kill whatever still runs in namespace name, then delete it."""
    p = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
    for pid in p.stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    subprocess.run(["ip", "netns", "del", name], capture_output=True)


if __name__ == "__main__":
    # python3 -m tests.world.home sweep [TAG]: remove leftovers of crashed runs
    # (no TAG: every run whose pid is gone), or of one tag
    if len(sys.argv) in (2, 3) and sys.argv[1] == "sweep":
        for ns in Home.sweep(sys.argv[2] if len(sys.argv) == 3 else None):
            print("removed", ns)
    else:
        sys.exit("usage: python3 -m tests.world.home sweep [TAG]")
