"""Blocks in the kernel: one owned nft table, or own iptables chains + ipsets.

Theory of operation
-------------------
The block store (`blocks`) holds the owner's decisions; the agent knows
which addresses each device has. `plan(state)` turns both into *elements*
(set name -> [(element, owner)]) and a few *rules* that sets cannot express
(a port or protocol). `render(state)` turns the plan into the whole text of
`table inet spin` and `render_iptables(state, hooks)` into ipset and
iptables-restore input. Both are pure: same state, same text, so a golden
test can pin them down and `spin firewall print` shows exactly what is
loaded.

Rules of this module:

* Own one table (or two chains and our ipsets, by name) and touch nothing
  else. Every rule carries a `spin:` comment; every set element names its
  owner ("block 7", "quarantine <mac>") so counters can be read back per
  block.
* Apply in one transaction: `nft -f -` with "declare, delete, define in
  full", so the text is right whether the table exists or not and a failed
  load leaves the old table as it was. iptables: `ipset restore` (new set,
  swap, destroy) then one `iptables-restore --noflush` per family.
* Our chains only drop or return, never accept: fw4 / firewall3 still
  decide about everything we let through. They run before fw4's filter
  chains (priority filter - 10) or first in FORWARD/INPUT.
* Allow beats block and quarantine: allowed devices and remotes return
  first, and the store never puts an allowed device into a drop set.
* Quarantine: forward drops the device both ways; input lets everybody
  reach DHCP, DNS and ICMP on the router (fw4 still decides) and drops
  everything else from a quarantined device. A blocked device keeps the
  router (forward only): the owner must not lock out their own laptop.
* Routed traffic only: LAN peers on the same bridge never pass the inet
  forward hook (no br_netfilter on OpenWrt).
"""

import struct
import sys

from . import addr, plat

socket = plat.sockets()  # socket's names without `import socket` (plat.sockets)

TABLE = "spin"
PRIORITY = "filter - 10"
IPT_CHAINS = ("spin_forward", "spin_input")
IPSET_PREFIX = "spin_"

# Sets: name -> (element kind, nft type, interval, ipset type or None).
# Kinds: mac, v4, v6 (addresses or prefixes), pair4/pair6 (device address .
# remote prefix), pairmac4/pairmac6 (device MAC . remote prefix). Sets
# without an ipset type become one iptables rule per element: MAC and pair
# ipset types are optional kernel modules (missing on this kernel and on
# some routers), while xt_mac and plain rules always exist.
SETS = (
    ("allow_mac", "mac", "ether_addr", False, None),
    ("allow_v4", "v4", "ipv4_addr", True, "hash:net"),
    ("allow_v6", "v6", "ipv6_addr", True, "hash:net"),
    ("q_mac", "mac", "ether_addr", False, None),
    ("q_v4", "v4", "ipv4_addr", False, "hash:ip"),
    ("q_v6", "v6", "ipv6_addr", False, "hash:ip"),
    ("blk_mac", "mac", "ether_addr", False, None),
    ("blk_v4", "v4", "ipv4_addr", False, "hash:ip"),
    ("blk_v6", "v6", "ipv6_addr", False, "hash:ip"),
    ("dst_v4", "v4", "ipv4_addr", True, "hash:net"),
    ("dst_v6", "v6", "ipv6_addr", True, "hash:net"),
    ("pairmac_v4", "pairmac4", "ether_addr . ipv4_addr", True, None),
    ("pairmac_v6", "pairmac6", "ether_addr . ipv6_addr", True, None),
    ("pair_v4", "pair4", "ipv4_addr . ipv4_addr", True, None),
    ("pair_v6", "pair6", "ipv6_addr . ipv6_addr", True, None),
)
SET_KIND = {s[0]: s[1] for s in SETS}

# The forward chain: (set, direction, verdict, comment). Order matters:
# allows first, then the drops.
FORWARD = (
    ("allow_mac", "src", "return", "allowed device"),
    ("allow_v4", "src", "return", "allowed address"),
    ("allow_v4", "dst", "return", "allowed address"),
    ("allow_v6", "src", "return", "allowed address"),
    ("allow_v6", "dst", "return", "allowed address"),
    ("q_mac", "src", "drop", "quarantined device"),
    ("q_v4", "src", "drop", "quarantined device"),
    ("q_v4", "dst", "drop", "quarantined device"),
    ("q_v6", "src", "drop", "quarantined device"),
    ("q_v6", "dst", "drop", "quarantined device"),
    ("blk_mac", "src", "drop", "blocked device"),
    ("blk_v4", "src", "drop", "blocked device"),
    ("blk_v4", "dst", "drop", "blocked device"),
    ("blk_v6", "src", "drop", "blocked device"),
    ("blk_v6", "dst", "drop", "blocked device"),
    ("dst_v4", "dst", "drop", "blocked destination"),
    ("dst_v4", "src", "drop", "blocked destination"),
    ("dst_v6", "dst", "drop", "blocked destination"),
    ("dst_v6", "src", "drop", "blocked destination"),
    ("pairmac_v4", "src,dst", "drop", "blocked destination of a device"),
    ("pair_v4", "src,dst", "drop", "blocked destination of a device"),
    ("pair_v4", "dst,src", "drop", "blocked destination of a device"),
    ("pairmac_v6", "src,dst", "drop", "blocked destination of a device"),
    ("pair_v6", "src,dst", "drop", "blocked destination of a device"),
    ("pair_v6", "dst,src", "drop", "blocked destination of a device"),
)

# The input chain: what a quarantined device may still ask the router.
# These return for everybody (fw4 decides as before); what is left from a
# quarantined device is dropped.
INPUT = (
    ("q_mac", "src", "drop", "quarantined device reaches only DHCP, DNS, ICMP"),
    ("q_v4", "src", "drop", "quarantined device reaches only DHCP, DNS, ICMP"),
    ("q_v6", "src", "drop", "quarantined device reaches only DHCP, DNS, ICMP"),
)
OPEN_NFT = (
    ("udp dport { 53, 67, 547 } return", "DHCP and DNS stay open"),
    ("tcp dport 53 return", "DNS stays open"),
    ("meta l4proto { icmp, ipv6-icmp } return", "ICMP stays open"),
)
OPEN_IPT = {
    4: ("-p udp -m multiport --dports 53,67 -j RETURN", "-p tcp --dport 53 -j RETURN",
        "-p icmp -j RETURN"),
    6: ("-p udp -m multiport --dports 53,547 -j RETURN", "-p tcp --dport 53 -j RETURN",
        "-p ipv6-icmp -j RETURN"),
}

NFT_SELECTOR = {
    ("mac", "src"): "ether saddr",
    ("v4", "src"): "ip saddr", ("v4", "dst"): "ip daddr",
    ("v6", "src"): "ip6 saddr", ("v6", "dst"): "ip6 daddr",
    ("pair4", "src,dst"): "ip saddr . ip daddr", ("pair4", "dst,src"): "ip daddr . ip saddr",
    ("pair6", "src,dst"): "ip6 saddr . ip6 daddr", ("pair6", "dst,src"): "ip6 daddr . ip6 saddr",
    ("pairmac4", "src,dst"): "ether saddr . ip daddr",
    ("pairmac6", "src,dst"): "ether saddr . ip6 daddr",
}
KIND_FAMILY = {"mac": (4, 6), "v4": (4,), "v6": (6,), "pair4": (4,), "pair6": (6,),
               "pairmac4": (4,), "pairmac6": (6,)}


# -- addresses ------------------------------------------------------------

def family(ip_text):
    return 6 if ":" in ip_text else 4


def span(prefix):
    """'192.0.2.0/24' or an address -> (family, first, last) as ints."""
    ip_text, _, bits = prefix.partition("/")
    fam = family(ip_text)
    width = 128 if fam == 6 else 32
    n = addr.parse_ipv6(ip_text) if fam == 6 else addr.parse_ipv4(ip_text)
    size = width - (int(bits) if bits else width)
    lo = (n >> size) << size
    return fam, lo, lo | ((1 << size) - 1)


def overlaps(a, b):
    fa, la, ha = span(a)
    fb, lb, hb = span(b)
    return fa == fb and la <= hb and lb <= ha


def contains(prefix, ip_text):
    fa, la, ha = span(prefix)
    fb, lb, _ = span(ip_text)
    return fa == fb and la <= lb <= ha


def normal_prefix(text):
    """Normalise a remote: host bits cleared, /32 and /128 dropped (that is
    how nft prints them back)."""
    ip = addr.parse_remote(text)
    if "/" not in ip:
        return ip
    fam, lo, _ = span(ip)
    bits = int(ip.partition("/")[2])
    if fam == 4:
        ip_text = "%d.%d.%d.%d" % (lo >> 24, (lo >> 16) & 255, (lo >> 8) & 255, lo & 255)
        return ip_text if bits == 32 else "%s/%d" % (ip_text, bits)
    ip_text = addr.format_ipv6(lo)
    return ip_text if bits == 128 else "%s/%d" % (ip_text, bits)


def usable(ip):
    """Addresses worth a set element: link-local ones never cross the
    forward hook."""
    return not ip.lower().startswith("fe80:")


# -- plan: state -> elements and rules (pure) ------------------------------

def device_ips(state, mac):
    ips = (state.get("devices") or {}).get(mac) or []
    return sorted(ip for ip in ips if usable(ip))


def _add(elements, name, elem, owner):
    # first owner wins: nft refuses duplicates and overlapping intervals in
    # one set, and a packet is counted once anyway
    kind = SET_KIND[name]
    for other, _ in elements[name]:
        if other == elem:
            return
        if kind in ("v4", "v6") and "/" in elem + other and overlaps(elem, other):
            return
        if kind.startswith("pair") and other[0] == elem[0] and overlaps(other[1], elem[1]):
            return
    elements[name].append((elem, owner))


def plan(state):
    """Elements {set: [(element, owner)]} and port rules
    [(block, device MAC, device ips)] from the state."""
    elements = {s[0]: [] for s in SETS}
    allowed_macs = set()
    for a in state.get("allows") or ():
        if a.get("mac"):
            mac = a["mac"]
            allowed_macs.add(mac)
            _add(elements, "allow_mac", mac, "allow " + mac)
            for ip in device_ips(state, mac):
                _add(elements, "allow_v%d" % family(ip), ip, "allow " + mac)
        elif a.get("remote"):
            r = a["remote"]
            _add(elements, "allow_v%d" % family(r), r, "allow " + r)
    for q in state.get("quarantines") or ():
        mac = q["mac"]
        if mac in allowed_macs:
            continue
        owner = "quarantine " + mac
        _add(elements, "q_mac", mac, owner)
        for ip in device_ips(state, mac):
            _add(elements, "q_v%d" % family(ip), ip, owner)
    rules = []
    for b in sorted(state.get("blocks") or (), key=lambda b: b["id"]):
        mac = b.get("mac")
        if mac in allowed_macs:
            continue
        owner = "block %d" % b["id"]
        ips = device_ips(state, mac) if mac else ([b["ip"]] if b.get("ip") else [])
        remote = b.get("remote")
        if b.get("port") or b.get("proto"):
            rules.append((b, mac, ips))
        elif remote is None:
            if mac:
                _add(elements, "blk_mac", mac, owner)
            for ip in ips:
                _add(elements, "blk_v%d" % family(ip), ip, owner)
        elif not mac and not ips:
            _add(elements, "dst_v%d" % family(remote), remote, owner)
        else:
            fam = family(remote)
            if mac:
                _add(elements, "pairmac_v%d" % fam, (mac, remote), owner)
            for ip in ips:
                if family(ip) == fam:
                    _add(elements, "pair_v%d" % fam, (ip, remote), owner)
    return elements, rules


# -- nft ------------------------------------------------------------------

def _nft_elem(elem):
    return elem if isinstance(elem, str) else "%s . %s" % elem


L4_NFT = {None: "meta l4proto { tcp, udp }", "tcp": "meta l4proto tcp",
          "udp": "meta l4proto udp", "icmp": "meta l4proto { icmp, ipv6-icmp }"}


def _nft_port_rules(b, mac, ips):
    """Matches for one block with a port or protocol. Outbound matches the
    device's MAC (one rule for both families) and its addresses, inbound
    its addresses only (a target's MAC is not known in forward)."""
    remote, port, proto = b.get("remote"), b.get("port"), b.get("proto")
    l4 = L4_NFT[proto]
    dport = " th dport %d" % port if port else ""
    sport = " th sport %d" % port if port else ""
    out = []
    fams = (family(remote),) if remote else (4, 6)
    if mac:
        to = " %s daddr %s" % ("ip" if fams[0] == 4 else "ip6", remote) if remote else ""
        out.append("ether saddr %s%s %s%s" % (mac, to, l4, dport))
    for fam in fams:
        ipk = "ip" if fam == 4 else "ip6"
        to = " %s daddr %s" % (ipk, remote) if remote else ""
        frm = " %s saddr %s" % (ipk, remote) if remote else ""
        fam_ips = [ip for ip in ips if family(ip) == fam]
        if fam_ips:
            dev = "{ %s }" % ", ".join(fam_ips)
            out.append("%s saddr %s%s %s%s" % (ipk, dev, to, l4, dport))
            out.append("%s daddr %s%s %s%s" % (ipk, dev, frm, l4, sport))
        elif not mac and not ips and remote:
            out.append("%s %s%s" % (to.strip(), l4, dport))
            out.append("%s %s%s" % (frm.strip(), l4, sport))
    if not mac and not ips and not remote:
        # a port or protocol for every device, both directions
        out.append(l4 + dport)
        if sport:
            out.append(l4 + sport)
    return out


def _nft_sets(lines, elements, names):
    """The sets named, each with its elements and their owners."""
    for name, kind, ntype, interval, _ in SETS:
        if name not in names:
            continue
        lines.append("\tset %s {" % name)
        lines.append("\t\ttype %s" % ntype)
        if interval:
            lines.append("\t\tflags interval")
        if name.startswith("allow"):
            # allowed prefixes may overlap; they need no counters
            if interval:
                lines.append("\t\tauto-merge")
        else:
            lines.append("\t\tcounter")
        elems = elements[name]
        if elems:
            lines.append("\t\telements = {")
            for elem, owner in elems:
                lines.append('\t\t\t%s comment "%s",' % (_nft_elem(elem), owner))
            lines.append("\t\t}")
        lines.append("\t}")


def render(state):
    """The whole `table inet spin` as nft -f text. Pure."""
    elements, rules = plan(state)
    lines = [
        "# spin-lite: generated from the block store; replaced as a whole",
        "table inet %s" % TABLE,
        "delete table inet %s" % TABLE,
        "table inet %s {" % TABLE,
    ]
    _nft_sets(lines, elements, [s[0] for s in SETS])
    lines.append("\tchain forward {")
    lines.append("\t\ttype filter hook forward priority %s; policy accept;" % PRIORITY)
    for name, direction, verdict, comment in FORWARD:
        sel = NFT_SELECTOR[(SET_KIND[name], direction)]
        lines.append('\t\t%s @%s %s comment "spin: %s"' % (sel, name, verdict, comment))
    for b, mac, ips in rules:
        for match in _nft_port_rules(b, mac, ips):
            lines.append('\t\t%s counter drop comment "spin: block %d"' % (match, b["id"]))
    lines.append("\t}")
    lines.append("\tchain input {")
    lines.append("\t\ttype filter hook input priority %s; policy accept;" % PRIORITY)
    for rule, comment in OPEN_NFT:
        lines.append('\t\t%s comment "spin: %s"' % (rule, comment))
    for name, direction, verdict, comment in INPUT:
        sel = NFT_SELECTOR[(SET_KIND[name], direction)]
        lines.append('\t\t%s @%s %s comment "spin: %s"' % (sel, name, verdict, comment))
    lines.append("\t}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def nft_rule_count(state):
    """Rules in (forward, input) of the rendered table: the cheap check
    that the table is still whole."""
    _, rules = plan(state)
    extra = sum(len(_nft_port_rules(b, mac, ips)) for b, mac, ips in rules)
    return len(FORWARD) + extra, len(OPEN_NFT) + len(INPUT)


BRIDGE_RULES = (
    ("ether saddr @q_mac drop", "quarantined device reaches no other device"),
    ("ether daddr @q_mac drop", "no device reaches a quarantined one"),
)

# The LAN watch: a device's new connection attempts to its LAN peers,
# which cross the bridge and never reach conntrack (no br_netfilter on
# OpenWrt). `ct state new` needs nf_conntrack_bridge, which many router
# kernels lack ("Protocol error"), so each attempt is written as a key into
# a dynamic set with a timeout instead: the agent reads the set once a scan
# and counts the keys it has not seen before (lanwatch). `update` rather
# than `add` refreshes the timeout, so a peer the device keeps talking to
# stays one key instead of coming back as "new" once a timeout.
# Sets: (name, nft address type, destination selector).
LAN_WATCH_SETS = (
    ("lan_seen4", "ipv4_addr", "ip daddr"),
    ("lan_seen6", "ipv6_addr", "ip6 daddr"),
)
# Rules: (set, match, comment). Unicast only (the group bit of the
# destination MAC clear): discovery, DHCP, mDNS and SSDP go to multicast
# or broadcast and are nobody's attempt. TCP: a SYN without ACK (the
# first packet of an attempt, and its retransmits: the same key). UDP:
# every datagram, its key refreshed, so a new destination is new once;
# but not the unicast answers of name and discovery services (a Pi-hole
# answering DNS, a TV answering SSDP): with no conntrack on the bridge an
# answer looks like an attempt to the asker's ever new ephemeral port, and
# a LAN resolver would look like a port scanner.
LAN_UNICAST = "ether daddr & 01:00:00:00:00:00 == 00:00:00:00:00:00"
LAN_ANSWER_PORTS = (53, 67, 68, 123, 137, 138, 547, 1900, 3702, 5353, 5355)
LAN_UDP = "udp sport != { %s }" % ", ".join(str(p) for p in LAN_ANSWER_PORTS)
# Rules: (set, match, key, comment); key None: the attempt's own
# (source MAC, destination, protocol, port). And ARP: a sweep of the LAN
# asks, by broadcast, who has each address, also the many that nobody
# has, which no TCP or UDP packet ever reaches; each asked address is a
# key of protocol 0 ("ip" as nft prints it), port 0. A device asks for its
# router and a few peers; a sweep asks for hundreds.
ARP_KEY = "ether saddr . arp daddr ip . 0 . 0"
LAN_WATCH_RULES = (
    ("lan_seen4", LAN_UNICAST + " tcp flags & (syn | ack) == syn", None, "LAN attempt (TCP, IPv4)"),
    ("lan_seen4", LAN_UNICAST + " " + LAN_UDP, None, "LAN attempt (UDP, IPv4)"),
    ("lan_seen4", "arp operation request", ARP_KEY, "LAN address asked for (ARP)"),
    ("lan_seen6", LAN_UNICAST + " tcp flags & (syn | ack) == syn", None, "LAN attempt (TCP, IPv6)"),
    ("lan_seen6", LAN_UNICAST + " " + LAN_UDP, None, "LAN attempt (UDP, IPv6)"),
)


# On a bridged access point (option bridge_uplink) the clients' traffic to
# the internet crosses the bridge between a client's port and the uplink
# and never passes an inet hook, so the rows of the inet forward chain that
# name remotes hold there too, and quarantine lets through across the
# uplink what the router's input chain leaves open to a quarantined device.
# A frame's way: out (a client's port to the uplink), in (back), None
# (either: an allow only ends our chain early).
UPLINK_WAY = {"out": 'iifname != "%(up)s" oifname "%(up)s" ',
              "in": 'iifname "%(up)s" oifname != "%(up)s" ', None: ""}
# (set, direction, way): rows of FORWARD, in FORWARD's order.
UPLINK_FORWARD = (
    ("allow_mac", "src", None),
    ("allow_v4", "src", None), ("allow_v4", "dst", None),
    ("allow_v6", "src", None), ("allow_v6", "dst", None),
    ("dst_v4", "dst", "out"), ("dst_v4", "src", "in"),
    ("dst_v6", "dst", "out"), ("dst_v6", "src", "in"),
    ("pairmac_v4", "src,dst", "out"), ("pair_v4", "src,dst", "out"), ("pair_v4", "dst,src", "in"),
    ("pairmac_v6", "src,dst", "out"), ("pair_v6", "src,dst", "out"), ("pair_v6", "dst,src", "in"),
)
# (way, match, comment): before the quarantine's drops. The router keeps
# DHCP, DNS and ICMP on itself open to a quarantined device (INPUT,
# OPEN_NFT) and never cuts its ARP; here the router is somewhere behind the
# uplink, so DNS and ICMP are open to the LAN prefixes (lan_net), and the
# rows that need them are left out when there are none. IPv4 only (as the
# bridge counters): the rest of a quarantined device's frames is dropped.
UPLINK_QUARANTINE_OPEN = (
    ("out", "ether saddr @q_mac ether type arp", "quarantined device still resolves the LAN (ARP)"),
    ("in", "ether daddr @q_mac ether type arp", "quarantined device still resolves the LAN (ARP)"),
    ("out", "ether saddr @q_mac udp dport 67", "quarantined device keeps its lease (DHCP)"),
    ("in", "ether daddr @q_mac udp sport 67", "quarantined device keeps its lease (DHCP)"),
    ("out", "ether saddr @q_mac ip daddr %(lan)s udp dport 53", "quarantined device keeps DNS on the LAN"),
    ("out", "ether saddr @q_mac ip daddr %(lan)s tcp dport 53", "quarantined device keeps DNS on the LAN"),
    ("in", "ether daddr @q_mac ip saddr %(lan)s udp sport 53", "quarantined device keeps DNS on the LAN"),
    ("in", "ether daddr @q_mac ip saddr %(lan)s tcp sport 53", "quarantined device keeps DNS on the LAN"),
    ("out", "ether saddr @q_mac ip daddr %(lan)s meta l4proto icmp", "quarantined device keeps ICMP on the LAN"),
    ("in", "ether daddr @q_mac ip saddr %(lan)s meta l4proto icmp", "quarantined device keeps ICMP on the LAN"),
)


def uplink_of(cfg, lan_nets=()):
    """(uplink port, the LAN's IPv4 prefixes) on an access point, or None
    on a router (no bridge_uplink). The prefixes are lan_net's, else
    lan_nets (the agent's, read from lan_ifname's addresses)."""
    up = cfg.get("bridge_uplink")
    if not up:
        return None
    return up, [normal_prefix(n) for n in cfg.get("lan_net") or lan_nets or () if family(n) == 4]


def _uplink_lines(uplink):
    """The quarantine's openings and the remotes' rows across the uplink."""
    up, lan = uplink
    keys = {"up": up, "lan": "{ %s }" % ", ".join(lan)}
    opens, rows = [], []
    for way, match, comment in UPLINK_QUARANTINE_OPEN:
        if lan or "%(lan)s" not in match:
            opens.append('\t\t%s%s return comment "spin: %s"' % (UPLINK_WAY[way] % keys, match % keys, comment))
    verdicts = dict(((n, d), (v, c)) for n, d, v, c in FORWARD)
    for name, direction, way in UPLINK_FORWARD:
        verdict, comment = verdicts[(name, direction)]
        sel = NFT_SELECTOR[(SET_KIND[name], direction)]
        rows.append('\t\t%s%s @%s %s comment "spin: %s"' % (UPLINK_WAY[way] % keys, sel, name, verdict, comment))
    return opens, rows


def bridge_rule_count(watch, uplink=None):
    """Rules in the bridge table's forward chain as render_bridge makes it."""
    n = len(BRIDGE_RULES) + (len(LAN_WATCH_RULES) if watch else 0)
    if uplink:
        opens, rows = _uplink_lines(uplink)
        n += len(opens) + len(rows)
    return n


def _lan_watch_lines(watch):
    """The watch's sets and rules; watch = (size, timeout seconds)."""
    size, timeout = watch
    sets, rules = [], []
    selector = {}
    for name, ntype, daddr in LAN_WATCH_SETS:
        selector[name] = daddr
        sets += ["\tset %s {" % name,
                 "\t\ttype ether_addr . %s . inet_proto . inet_service" % ntype,
                 "\t\tflags dynamic, timeout",
                 "\t\ttimeout %ds" % timeout,
                 "\t\tsize %d" % size,
                 "\t}"]
    for name, match, key, comment in LAN_WATCH_RULES:
        key = key or "ether saddr . %s . meta l4proto . th dport" % selector[name]
        rules.append('\t\t%s update @%s { %s } comment "spin: %s"' % (match, name, key, comment))
    return sets, rules


def lan_watch_of(cfg):
    """(set size, timeout seconds) for the LAN watch from the config, or
    None when it is off. The timeout outlasts three scans, so a key lives
    to be read even when scans are far apart."""
    if not cfg.get("lan_watch", True):
        return None
    size = cfg.get("lan_watch_size") or 4096
    return size, max(60, 3 * (cfg.get("scan_interval") or 5))


def render_bridge(state, watch=None, uplink=None):
    """`table bridge spin`: quarantined devices cut off from their LAN
    peers on the same bridge, which never pass the inet forward hook, and,
    with watch = (size, timeout seconds), the LAN watch after them (a
    quarantined device's frames are dropped before they are counted).
    With uplink = (port, LAN prefixes), on an access point, the blocks of
    remotes across the uplink last (see UPLINK_FORWARD).
    Loaded in a transaction of its own: it needs kmod-nft-bridge, and a
    router without it must still get table inet spin. Pure."""
    elements, _ = plan(state)
    watch_sets, watch_rules = _lan_watch_lines(watch) if watch else ([], [])
    opens, rows = _uplink_lines(uplink) if uplink else ([], [])
    lines = [
        "# spin-lite: quarantine across the LAN bridge; replaced as a whole",
        "table bridge %s" % TABLE,
        "delete table bridge %s" % TABLE,
        "table bridge %s {" % TABLE,
        "\tset q_mac {",
        "\t\ttype ether_addr",
        "\t\tcounter",
    ]
    if elements["q_mac"]:
        lines.append("\t\telements = {")
        for elem, owner in elements["q_mac"]:
            lines.append('\t\t\t%s comment "%s",' % (elem, owner))
        lines.append("\t\t}")
    lines.append("\t}")
    if uplink:
        _nft_sets(lines, elements, [n for n, _, _ in UPLINK_FORWARD])
    lines.extend(watch_sets)
    lines.append("\tchain forward {")
    lines.append("\t\ttype filter hook forward priority %s; policy accept;" % PRIORITY)
    lines.extend(opens)
    for rule, comment in BRIDGE_RULES:
        lines.append('\t\t%s comment "spin: %s"' % (rule, comment))
    lines.extend(watch_rules)
    lines.extend(rows)
    lines.append("\t}")
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- iptables + ipset -----------------------------------------------------

IPT_SELECTOR = {"src": "src", "dst": "dst"}


def _ipt_elem_match(kind, direction, elem):
    if kind == "mac":
        return "-m mac --mac-source %s" % elem
    if kind in ("v4", "v6"):
        return ("-s %s" if direction == "src" else "-d %s") % elem
    if kind.startswith("pairmac"):
        return "-m mac --mac-source %s -d %s" % elem
    dev, remote = elem
    if direction == "src,dst":
        return "-s %s -d %s" % (dev, remote)
    return "-d %s -s %s" % (dev, remote)


def _ipt_port_rules(b, mac, ips, fam):
    remote, port, proto = b.get("remote"), b.get("port"), b.get("proto")
    if remote and family(remote) != fam:
        return []
    protos = [proto] if proto else ["tcp", "udp"]
    fam_ips = [ip for ip in ips if family(ip) == fam]
    outs, ins = [], []
    if mac:
        outs.append("-m mac --mac-source %s" % mac)
    for ip in fam_ips:
        outs.append("-s %s" % ip)
        ins.append("-d %s" % ip)
    if not mac and not ips:
        outs.append("")
        ins.append("")
    out = []
    for p in protos:
        if p == "icmp" and fam == 6:
            p = "ipv6-icmp"
        pm = "-p %s" % p
        dp = " --dport %d" % port if port else ""
        sp = " --sport %d" % port if port else ""
        for m in outs:
            out.append(" ".join(x for x in (m, "-d %s" % remote if remote else "", pm + dp) if x))
        for m in ins:
            out.append(" ".join(x for x in (m, "-s %s" % remote if remote else "", pm + sp) if x))
    unique = []
    for r in out:
        if r not in unique:
            unique.append(r)
    return unique


def _ipt_rule(chain, match, verdict, comment):
    return '-A %s %s -m comment --comment "spin: %s" -j %s' % (
        chain, match, comment, "DROP" if verdict == "drop" else "RETURN")


def ipset_name(name):
    # ipset names are limited to 31 characters and global to the host
    return IPSET_PREFIX + name


def render_ipset(state):
    """ipset restore input: each set rebuilt under a new name and swapped
    in, so a reader never sees a half-filled set."""
    elements, _ = plan(state)
    lines = []
    for name, kind, _, _, itype in SETS:
        if itype is None:
            continue
        real = ipset_name(name)
        opts = "%s family %s" % (itype, "inet6" if kind == "v6" else "inet")
        opts += " comment" if name.startswith("allow") else " counters comment"
        lines.append("create %s_n %s" % (real, opts))
        lines.append("flush %s_n" % real)
        for elem, owner in elements[name]:
            lines.append('add %s_n %s comment "%s"' % (real, elem, owner))
        lines.append("create %s %s" % (real, opts))
        lines.append("swap %s_n %s" % (real, real))
        lines.append("destroy %s_n" % real)
    return "\n".join(lines) + "\n"


def _ipt_chain_rules(state, fam):
    elements, rules = plan(state)
    fwd, inp = [], []
    for table, chain, out in ((FORWARD, "spin_forward", fwd), (INPUT, "spin_input", inp)):
        for name, direction, verdict, comment in table:
            kind = SET_KIND[name]
            if fam not in KIND_FAMILY[kind]:
                continue
            itype = [s[4] for s in SETS if s[0] == name][0]
            if itype is not None:
                out.append(_ipt_rule(chain, "-m set --match-set %s %s" % (ipset_name(name), direction),
                                     verdict, comment))
                continue
            for elem, owner in elements[name]:
                if kind.startswith("pair") and family(elem[1]) != fam:
                    continue
                out.append(_ipt_rule(chain, _ipt_elem_match(kind, direction, elem), verdict, owner))
        if chain == "spin_forward":
            for b, mac, ips in rules:
                for m in _ipt_port_rules(b, mac, ips, fam):
                    out.append(_ipt_rule(chain, m, "drop", "block %d" % b["id"]))
    open_rules = ["-A spin_input %s" % r for r in OPEN_IPT[fam]]
    return fwd, [r.replace(" -j RETURN", ' -m comment --comment "spin: open to all" -j RETURN')
                 for r in open_rules] + inp


def render_iptables(state, fam, hooks=None):
    """iptables-restore --noflush input for one family. hooks: the rules
    (as iptables-save prints them) by which FORWARD and INPUT already jump
    to our chains; they are deleted and one jump is put back on top, all in
    one commit."""
    hooks = hooks or {}
    fwd, inp = _ipt_chain_rules(state, fam)
    lines = ["*filter", ":spin_forward - [0:0]", ":spin_input - [0:0]"]
    for base, chain in (("FORWARD", "spin_forward"), ("INPUT", "spin_input")):
        for rule in hooks.get(base, ()):
            lines.append("-D" + rule[2:])
        lines.append('-I %s 1 -m comment --comment "spin: hook" -j %s' % (base, chain))
    lines.extend(fwd)
    lines.extend(inp)
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def ipt_rule_count(state, fam):
    fwd, inp = _ipt_chain_rules(state, fam)
    return len(fwd), len(inp)


def parse_iptables_save(text):
    """iptables-save -c text -> {chain: [(packets, rule text)]} for the
    filter table."""
    chains = {}
    in_filter = False
    for line in text.split("\n"):
        if line.startswith("*"):
            in_filter = line == "*filter"
            continue
        if not in_filter:
            continue
        if line.startswith(":"):
            chains.setdefault(line[1:].split(" ")[0], [])
            continue
        packets = 0
        if line.startswith("["):
            head, _, line = line.partition("] ")
            packets = int(head[1:].split(":")[0])
        if line.startswith("-A "):
            chain = line.split(" ")[1]
            chains.setdefault(chain, []).append((packets, line))
    return chains


def _owner_of_comment(rule):
    """'block 7' from an iptables-save line with --comment "spin: block 7"."""
    i = rule.find('--comment "spin: ')
    if i < 0:
        return None
    return rule[i + len('--comment "spin: '):].partition('"')[0]


# -- backends -------------------------------------------------------------

def _save_rejected(run_dir, name, text, err):
    try:
        plat.makedirs(run_dir)
        plat.write_atomic(run_dir + "/" + name, text)
        plat.write_atomic(run_dir + "/" + name + ".err", err)
    except OSError:
        pass


def _text(b):
    return b.decode("utf-8", "replace") if isinstance(b, bytes) else b


CT_PROC = "/proc/net/nf_conntrack"


def forget_connections(ips, remote=None):
    """Delete conntrack entries so established (and offloaded) flows stop
    now rather than when they time out: the device's own (original source,
    or reply source for what came in), or only those with the remote.

    With the `conntrack` tool (package conntrack on OpenWrt) per address;
    without it, OpenWrt's kernel (patch 600-netfilter_conntrack_flush)
    deletes every entry of an address written into /proc/net/nf_conntrack,
    which for a destination block of one device means all of that device's
    connections: they reconnect, the blocked one cannot."""
    argvs = []
    for ip in ips:
        fam = ["-f", "ipv6"] if ":" in ip else []
        if remote is not None:
            if family(remote) != family(ip):
                continue
            argvs.append(fam + ["-s", ip, "-d", remote])
            argvs.append(fam + ["--reply-src", remote, "-d", ip])
        else:
            argvs.append(fam + ["-s", ip])
            argvs.append(fam + ["--reply-src", ip])
    if not ips and remote is not None:
        fam = ["-f", "ipv6"] if ":" in remote else []
        argvs.append(fam + ["-d", remote])
        argvs.append(fam + ["--reply-src", remote])
    for argv in argvs:
        rc, _, _ = plat.run(["conntrack", "-D"] + argv, quiet=True)  # it prints every entry it deletes
        if rc == 127:
            break
    else:
        return
    targets = list(ips) or ([remote] if remote and "/" not in remote else [])
    for ip_text in targets:
        try:
            with open(CT_PROC, "w") as f:
                f.write(ip_text + "\n")
        except OSError:
            return


# nfnetlink: the ruleset generation, a number the kernel moves with every
# committed nftables transaction in this network namespace
NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_GETGEN = 16
NFT_MSG_NEWGEN = 15
NFTA_GEN_ID = 1


def nft_generation():
    """The nftables ruleset generation, or None when it cannot be read.

    One netlink round trip (~0.1 ms) where listing the table costs an nft
    process and a JSON parse (~4 ms): while the generation stands still,
    nobody has touched any table since we last looked."""
    try:
        s = socket.socket(plat.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    except OSError:
        return None
    try:
        s.bind(plat.netlink_address())
        msg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN
        # nlmsghdr, then nfgenmsg: family (unspec), version 0, res_id 0
        s.send(struct.pack("IHHII", 20, msg_type, 1, 1, 0) + struct.pack("BBH", 0, 0, 0))
        data = s.recv(4096)
    except OSError:
        return None
    finally:
        s.close()
    if len(data) < 20 or struct.unpack_from("H", data, 4)[0] & 0xFF != NFT_MSG_NEWGEN:
        return None
    off, end = 20, struct.unpack_from("I", data, 0)[0]
    while off + 4 <= min(end, len(data)):
        alen, atype = struct.unpack_from("HH", data, off)
        if alen < 4:
            break
        if atype & 0x3FFF == NFTA_GEN_ID and alen >= 8:
            return struct.unpack_from(">I", data, off + 4)[0]
        off += (alen + 3) & ~3
    return None


class Nft:
    """table inet spin through nft -f - (one transaction per change), and
    table bridge spin when the kernel has nft bridge support."""
    name = "nft"
    forget = staticmethod(forget_connections)

    def __init__(self, cfg):
        self.nft = cfg.get("nft_cmd") or "nft"
        self.run_dir = cfg.get("run_dir") or "/tmp/spin"
        self.bridge = None    # None: not tried, True: loaded, text: why not
        self.lan_watch = lan_watch_of(cfg)  # (size, timeout) or None: off
        self.watch = None     # the same for the LAN watch in the bridge table
        self.uplink = uplink_of(cfg)  # (port, LAN prefixes) on an access point, else None
        self.verified = None  # (ruleset generation, state) last found intact

    def _load(self, text, name):
        rc, out, err = plat.run([self.nft, "-f", "-"], stdin=text.encode())
        if rc != 0:
            _save_rejected(self.run_dir, name, text, err)
            return "nft: " + _text(err).strip()
        return None

    def apply(self, state):
        err = self._load(render(state), "firewall.rejected.nft")
        if err is None and self.bridge in (None, True):
            self._apply_bridge(state)
        return err

    def _apply_bridge(self, state):
        """The bridge table with the LAN watch, or without it when this
        kernel refuses the watch (no dynamic sets, no concatenations): the
        watch only counts, quarantine across the bridge must not wait on it."""
        watch = self.lan_watch if self.watch in (None, True) else None
        berr = self._load(render_bridge(state, watch, self.uplink), "firewall.rejected.bridge.nft")
        if berr is not None and watch:
            plat.warn("firewall: no LAN watch in table bridge spin: " + berr)
            self.watch = berr
            watch = None
            berr = self._load(render_bridge(state, None, self.uplink), "firewall.rejected.bridge.nft")
        if berr is not None:
            # not fatal: quarantine still holds for routed traffic
            plat.warn("firewall: no table bridge spin (LAN peers of a quarantined"
                      " device are not cut off): " + berr)
        elif watch:
            self.watch = True
        self.bridge = berr or True

    def lan_seen(self):
        """The bridge table as nft lists it (the LAN watch's sets among it),
        or the reason it cannot be read: one nft process a scan."""
        if self.bridge is not True or self.watch is not True:
            return None, self.lan_unseen()
        rc, out, err = plat.run([self.nft, "-j", "list", "table", "bridge", TABLE])
        if rc != 0:
            return None, "nft list table bridge %s: %s" % (TABLE, _text(err).strip())
        try:
            return plat.json.loads(_text(out))["nftables"], None
        except (ValueError, KeyError) as e:
            return None, "nft list table bridge %s: unreadable (%s)" % (TABLE, e)

    def lan_unseen(self):
        """Why LAN-to-LAN attempts are not counted, or None while they are."""
        if self.lan_watch is None:
            return "lan_watch is off"
        if self.bridge not in (None, True):
            return "no table bridge spin: " + self.bridge
        if self.watch not in (None, True):
            return "the kernel refused the watch: " + self.watch
        if self.bridge is None or self.watch is None:
            return "the bridge table is not loaded yet"
        return None

    def check(self, state):
        """nft -c of table inet spin and, on an access point (where the
        blocks of remotes live in it), of table bridge spin."""
        texts = [render(state)]
        if self.uplink:
            texts.append(render_bridge(state, self.lan_watch if self.watch in (None, True) else None,
                                       self.uplink))
        for text in texts:
            rc, out, err = plat.run([self.nft, "-c", "-f", "-"], stdin=text.encode())
            if rc != 0:
                return _text(err).strip()
        return None

    def _listing(self, family="inet"):
        rc, out, err = plat.run([self.nft, "-j", "list", "table", family, TABLE])
        if rc != 0:
            return None
        try:
            return plat.json.loads(_text(out))["nftables"]
        except (ValueError, KeyError):
            return None

    def intact(self, state):
        """True when our table is there with every chain and rule (and the
        bridge table, when this kernel took it). The listing is skipped
        while the ruleset generation has not moved since it was last whole."""
        gen = nft_generation()
        key = (gen, nft_rule_count(state), self.bridge, self.watch)
        if gen is not None and key == self.verified:
            return True
        self.verified = None
        if not self._whole(state):
            return False
        self.verified = key
        return True

    def _whole(self, state):
        items = self._listing()
        if items is None:
            return False
        counts = {"forward": 0, "input": 0}
        sets = 0
        for item in items:
            rule = item.get("rule")
            if rule and rule.get("chain") in counts:
                counts[rule["chain"]] += 1
            if "set" in item:
                sets += 1
        if (counts["forward"], counts["input"]) != nft_rule_count(state) or sets != len(SETS):
            return False
        if self.bridge is True or (self.bridge is None and self.uplink):
            # not loaded by this process (spin firewall check): on an access
            # point the table must be there, with or without the LAN watch
            items = self._listing("bridge")
            rules = sum(1 for i in items if "rule" in i) if items is not None else None
            watch = (self.watch is True,) if self.watch is not None else (True, False)
            if rules not in [bridge_rule_count(w and self.lan_watch, self.uplink) for w in watch]:
                return False
        return True

    def counters(self):
        """{owner: packets} from set element counters and rule counters."""
        items = self._listing()
        if items is None:
            return None
        if self.bridge is True:
            items = items + (self._listing("bridge") or [])
        got = {}
        for item in items:
            s = item.get("set")
            if s:
                for e in s.get("elem") or ():
                    e = e.get("elem") if isinstance(e, dict) else None
                    if not isinstance(e, dict) or "comment" not in e:
                        continue
                    c = e.get("counter") or {}
                    got[e["comment"]] = got.get(e["comment"], 0) + c.get("packets", 0)
            r = item.get("rule")
            if r and (r.get("comment") or "").startswith("spin: block "):
                owner = r["comment"][6:]
                for ex in r.get("expr") or ():
                    if "counter" in ex:
                        got[owner] = got.get(owner, 0) + ex["counter"].get("packets", 0)
        return got

    def remove(self):
        plat.run([self.nft, "delete", "table", "bridge", TABLE])
        rc, _, err = plat.run([self.nft, "delete", "table", "inet", TABLE])
        return None if rc == 0 or b"No such file" in err else _text(err).strip()


class Iptables:
    """Own chains spin_forward/spin_input jumped to first from FORWARD and
    INPUT (iptables and ip6tables), and spin_* ipsets.

    Binary names come from `iptables_cmd` (default: iptables-legacy when it
    is installed, as firewall3 on OpenWrt 21.02 is legacy; else iptables);
    the ip6tables, -save and -restore names are derived from it."""
    name = "iptables"
    forget = staticmethod(forget_connections)

    def __init__(self, cfg):
        base = cfg.get("iptables_cmd") or default_iptables()
        six = "ip6" + base[2:] if base.startswith("iptables") else base
        self.cmd = {4: base, 6: six}
        # a router without ip6tables (an optional package on OpenWrt) still
        # gets its IPv4 rules
        self.families = (4, 6) if _which(six + "-restore") else (4,)
        self.ipset = cfg.get("ipset_cmd") or "ipset"
        self.run_dir = cfg.get("run_dir") or "/tmp/spin"

    def _save(self, fam):
        rc, out, err = plat.run([self.cmd[fam] + "-save", "-c", "-t", "filter"])
        if rc != 0:
            return None
        return parse_iptables_save(_text(out))

    def _hooks(self, chains):
        hooks = {}
        for base, ours in (("FORWARD", "spin_forward"), ("INPUT", "spin_input")):
            hooks[base] = [r for _, r in chains.get(base, ()) if r.endswith("-j " + ours)]
        return hooks

    def apply(self, state):
        text = render_ipset(state)
        rc, _, err = plat.run([self.ipset, "-exist", "restore"], stdin=text.encode())
        if rc != 0:
            _save_rejected(self.run_dir, "firewall.rejected.ipset", text, err)
            return "ipset: " + _text(err).strip()
        for fam in self.families:
            chains = self._save(fam) or {}
            text = render_iptables(state, fam, self._hooks(chains))
            rc, _, err = plat.run([self.cmd[fam] + "-restore", "--noflush"], stdin=text.encode())
            if rc != 0:
                _save_rejected(self.run_dir, "firewall.rejected.ipt%d" % fam, text, err)
                return "%s-restore: %s" % (self.cmd[fam], _text(err).strip())
        return None

    def check(self, state):
        """iptables-restore --test of both families (it needs our ipsets to
        exist, as they do once the agent has loaded them)."""
        for fam in self.families:
            chains = self._save(fam) or {}
            text = render_iptables(state, fam, self._hooks(chains))
            rc, _, err = plat.run([self.cmd[fam] + "-restore", "--test", "--noflush"],
                                  stdin=text.encode())
            if rc != 0:
                return "%s-restore: %s" % (self.cmd[fam], _text(err).strip())
        return None

    def intact(self, state):
        for fam in self.families:
            chains = self._save(fam)
            if chains is None:
                return False
            for base, ours in (("FORWARD", "spin_forward"), ("INPUT", "spin_input")):
                rules = chains.get(base) or []
                if not rules or not rules[0][1].endswith("-j " + ours):
                    return False
                if len(self._hooks(chains)[base]) != 1:
                    return False
            want = ipt_rule_count(state, fam)
            have = (len(chains.get("spin_forward") or ()), len(chains.get("spin_input") or ()))
            if "spin_forward" not in chains or "spin_input" not in chains or have != want:
                return False
        return True

    def lan_seen(self):
        return None, self.lan_unseen()

    def lan_unseen(self):
        # firewall3 routers have neither br_netfilter nor our nft bridge
        # table: frames between two LAN ports pass no hook we own
        return ("LAN-to-LAN traffic (firewall3/iptables backend: frames between devices"
                " on the bridge pass no iptables hook)")

    def counters(self):
        got = {}
        for fam in self.families:
            chains = self._save(fam)
            if chains is None:
                return None
            for packets, rule in chains.get("spin_forward", []) + chains.get("spin_input", []):
                owner = _owner_of_comment(rule)
                if owner and (owner.startswith("block ") or owner.startswith("quarantine ")):
                    got[owner] = got.get(owner, 0) + packets
        rc, out, _ = plat.run([self.ipset, "save"])
        if rc != 0:
            return got
        for line in _text(out).split("\n"):
            if not line.startswith("add " + IPSET_PREFIX) or " packets " not in line:
                continue
            packets = int(line.split(" packets ")[1].split(" ")[0])
            owner = line.partition(' comment "')[2].rstrip('"')
            if owner:
                got[owner] = got.get(owner, 0) + packets
        return got

    def remove(self):
        errors = []
        for fam in self.families:
            chains = self._save(fam) or {}
            lines = ["*filter"]
            for base, ours in (("FORWARD", "spin_forward"), ("INPUT", "spin_input")):
                for rule in self._hooks(chains)[base]:
                    lines.append("-D" + rule[2:])
                if ours in chains:
                    lines.append("-F %s" % ours)
                    lines.append("-X %s" % ours)
            lines.append("COMMIT")
            rc, _, err = plat.run([self.cmd[fam] + "-restore", "--noflush"],
                                  stdin=("\n".join(lines) + "\n").encode())
            if rc != 0:
                errors.append(_text(err).strip())
        for name, _, _, _, itype in SETS:
            if itype is None:
                continue
            for n in (ipset_name(name), ipset_name(name) + "_n"):
                plat.run([self.ipset, "-exist", "destroy", n])
        return "; ".join(errors) or None


class Off:
    """firewall=none: monitor only; blocks are kept but not enforced."""
    name = "none"

    def __init__(self, cfg):
        pass

    def apply(self, state):
        return None

    def check(self, state):
        return None

    def intact(self, state):
        return True

    def counters(self):
        return {}

    def lan_seen(self):
        return None, self.lan_unseen()

    def lan_unseen(self):
        return "firewall is none (monitor only): no bridge table to count LAN-to-LAN attempts"

    def forget(self, ips, remote=None):
        return None

    def remove(self):
        return None


def _which(name):
    import os
    for d in (os.getenv("PATH") or "/usr/sbin:/usr/bin:/sbin:/bin").split(":"):
        try:
            os.stat(d + "/" + name)
            return True
        except OSError:
            pass
    return False


def default_iptables():
    return "iptables-legacy" if _which("iptables-legacy") else "iptables"


BACKENDS = {"nft": Nft, "iptables": Iptables, "none": Off}


def choose(cfg):
    """The backend for cfg['firewall']: auto = nft when nft and fw4 are
    there (OpenWrt >= 22.03), else iptables + ipset (firewall3), else none."""
    want = cfg.get("firewall") or "auto"
    if want == "auto":
        if _which("nft") and _which("fw4"):
            want = "nft"
        elif _which(default_iptables()) and _which("ipset"):
            want = "iptables"
        elif _which("nft"):
            want = "nft"
        else:
            want = "none"
    cls = BACKENDS.get(want)
    if cls is None:
        sys.stderr.write("spin: firewall=%r unknown, monitoring only\n" % want)
        cls = Off
    return cls(cfg)


def remove_all(backend):
    """Delete everything we own (package removal, `spin firewall flush`)."""
    return backend.remove()
