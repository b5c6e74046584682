"""A home router's conntrack table, written into the kernel with ctnetlink.

`conntrack -I` costs ~1 ms an entry; one IPCTNL_MSG_CT_NEW message per
entry, a few hundred per send(), fills 16,384 entries in well under a
second. Run this inside the benchmark's own network namespace only.

The mix (`home_table`) is what a busy home looks like from the router:
250 devices on 192.168.8.2-251 (a quarter of them with an fd00:8::/64
address too), mostly TCP ESTABLISHED to a few thousand remotes with a
popular few, NATed to the WAN address; UDP (DNS to the router, QUIC, NTP),
ICMP and ICMPv6 pings, [UNREPLIED] attempts, closing TCP states, a few
port forwards and the router's own flows. Remotes are in the benchmark
ranges 198.18.0.0/15 and 2001:db8::/32; nothing is ever sent to them.

Message layout (include/uapi/linux/netfilter/nfnetlink_conntrack.h):

    nlmsghdr  u32 len | u16 type (NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_NEW)
              | u16 flags | u32 seq | u32 pid
    nfgenmsg  u8 family | u8 version | be16 res_id
    CTA_TUPLE_ORIG, CTA_TUPLE_REPLY   nested: CTA_TUPLE_IP {src, dst},
                                      CTA_TUPLE_PROTO {num, ports | icmp id/type/code}
    CTA_STATUS (be32), CTA_TIMEOUT (be32), CTA_PROTOINFO {TCP {state}},
    CTA_COUNTERS_ORIG / _REPLY {packets be64, bytes be64}
"""

import random
import socket
import struct

NETLINK_NETFILTER = 12
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_NEW = 0
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLMSG_ERROR = 2
NLA_F_NESTED = 0x8000

CTA_TUPLE_ORIG = 1
CTA_TUPLE_REPLY = 2
CTA_STATUS = 3
CTA_PROTOINFO = 4
CTA_TIMEOUT = 7
CTA_COUNTERS_ORIG = 9
CTA_COUNTERS_REPLY = 10
CTA_TUPLE_IP = 1
CTA_TUPLE_PROTO = 2
CTA_PROTOINFO_TCP = 1
CTA_PROTOINFO_TCP_STATE = 1
CTA_COUNTERS_PACKETS = 1
CTA_COUNTERS_BYTES = 2

# CTA_IP_* (src, dst) by family; CTA_PROTO_* (id, type, code) by ICMP flavour
IP_ATTRS = {socket.AF_INET: (1, 2), socket.AF_INET6: (3, 4)}
ICMP_ATTRS = {1: (4, 5, 6), 58: (7, 8, 9)}

# status bits: the kernel (6.x) confirms a new entry before applying
# CTA_STATUS and refuses (EBUSY) a status that would clear CONFIRMED
IPS_SEEN_REPLY = 2
IPS_ASSURED = 4
IPS_CONFIRMED = 8

TCP_STATES = {"SYN_SENT": 1, "ESTABLISHED": 3, "FIN_WAIT": 4, "CLOSE_WAIT": 5,
              "LAST_ACK": 6, "TIME_WAIT": 7, "CLOSE": 8}

LAN4 = "192.168.8.%d"
LAN6 = "fd00:8::%x"
ROUTER4 = "192.168.8.1"
ROUTER6 = "fd00:8::1"
WAN4 = "192.0.2.2"
TIMEOUT = 7200  # long enough that nothing expires during the benchmark

# share of the table, by kind of flow (sums to 1)
MIX = (
    ("tcp4_established", 0.62),
    ("tcp6_established", 0.10),
    ("tcp_closing", 0.04),
    ("tcp_unreplied", 0.035),
    ("udp_dns", 0.06),
    ("udp_quic", 0.05),
    ("udp6_quic", 0.02),
    ("udp_ntp", 0.01),
    ("udp_unreplied", 0.02),
    ("icmp", 0.015),
    ("icmp6", 0.005),
    ("inbound", 0.005),
    ("router_own", 0.02),
)

# (port, weight) of remote services
TCP_PORTS = ((443, 80), (80, 8), (5228, 2), (8883, 2), (993, 2), (853, 1), (8080, 1),
             (22, 1), (5222, 1), (1935, 1), (554, 1))


def attr(t, data):
    n = 4 + len(data)
    return struct.pack("HH", n, t) + data + b"\0" * (-n % 4)


def nest(t, *parts):
    return attr(t | NLA_F_NESTED, b"".join(parts))


def tuple_attrs(family, proto, src, dst, a, b, c=0):
    """a, b = ports; for ICMP a = id, b = type, c = code."""
    s, d = IP_ATTRS[family]
    ip = nest(CTA_TUPLE_IP, attr(s, socket.inet_pton(family, src)),
              attr(d, socket.inet_pton(family, dst)))
    if proto in ICMP_ATTRS:
        i, ty, co = ICMP_ATTRS[proto]
        pr = nest(CTA_TUPLE_PROTO, attr(1, bytes([proto])), attr(i, struct.pack(">H", a)),
                  attr(ty, bytes([b])), attr(co, bytes([c])))
    else:
        pr = nest(CTA_TUPLE_PROTO, attr(1, bytes([proto])), attr(2, struct.pack(">H", a)),
                  attr(3, struct.pack(">H", b)))
    return ip + pr


def message(seq, e):
    """One IPCTNL_MSG_CT_NEW for entry e (a dict from home_table; its
    "timeout", when it has one, instead of TIMEOUT)."""
    fam = e["family"]
    body = (nest(CTA_TUPLE_ORIG, tuple_attrs(fam, e["proto"], *e["orig"]))
            + nest(CTA_TUPLE_REPLY, tuple_attrs(fam, e["proto"], *e["reply"]))
            + attr(CTA_STATUS, struct.pack(">I", e["status"] | IPS_CONFIRMED))
            + attr(CTA_TIMEOUT, struct.pack(">I", e.get("timeout", TIMEOUT))))
    if e["proto"] == 6:
        body += nest(CTA_PROTOINFO, nest(CTA_PROTOINFO_TCP,
                                         attr(CTA_PROTOINFO_TCP_STATE, bytes([e["tcp_state"]]))))
    po, bo, pr, br = e["counters"]
    body += nest(CTA_COUNTERS_ORIG, attr(CTA_COUNTERS_PACKETS, struct.pack(">Q", po)),
                 attr(CTA_COUNTERS_BYTES, struct.pack(">Q", bo)))
    body += nest(CTA_COUNTERS_REPLY, attr(CTA_COUNTERS_PACKETS, struct.pack(">Q", pr)),
                 attr(CTA_COUNTERS_BYTES, struct.pack(">Q", br)))
    payload = struct.pack("BBH", fam, 0, 0) + body
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    return struct.pack("IHHII", 16 + len(payload), (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW,
                       flags, seq, 0) + payload


def insert(entries, batch=400):
    """Write entries into this namespace's conntrack table, `batch`
    messages per send(). Returns {errno: count} of refused entries."""
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((0, 0))
    errors = {}
    try:
        for start in range(0, len(entries), batch):
            part = entries[start:start + batch]
            s.send(b"".join(message(start + i + 1, e) for i, e in enumerate(part)))
            acks = 0
            while acks < len(part):
                data = s.recv(1 << 20)
                off = 0
                while off + 16 <= len(data):
                    n, t = struct.unpack_from("IH", data, off)
                    if n < 16:
                        break
                    if t == NLMSG_ERROR:
                        acks += 1
                        err = struct.unpack_from("i", data, off + 16)[0]
                        if err:
                            errors[-err] = errors.get(-err, 0) + 1
                    off += (n + 3) & ~3
    finally:
        s.close()
    return errors


# -- the home -------------------------------------------------------------------

def _weighted(rng, table):
    total = sum(w for _, w in table)
    x = rng.random() * total
    for v, w in table:
        x -= w
        if x < 0:
            return v
    return table[-1][0]


def home_table(n=16384, devices=250, seed=8):
    """(entries, device list). A device is (mac, ipv4, ipv6 or None, hostname)."""
    rng = random.Random(seed)
    devs = []
    for i in range(devices):
        ip6 = LAN6 % (0x100 + i) if i % 4 == 0 else None
        devs.append(("02:5b:00:00:%02x:%02x" % (i >> 8, i & 255), LAN4 % (i + 2), ip6,
                     "device-%03d" % i))
    # a few busy devices (laptops, TVs), many quiet ones (plugs, sensors)
    weight = [rng.paretovariate(1.2) for _ in devs]
    dev_cum = _cumulative(weight)
    dev6 = [d for d in devs if d[2]]
    dev6_cum = _cumulative([1.0] * len(dev6))
    # remotes: a popular few (CDNs, clouds), a long tail; Zipf-like
    remotes4 = ["198.%d.%d.%d" % (18 + (k >> 16 & 1), k >> 8 & 255, k & 255)
                for k in rng.sample(range(1, 1 << 17), 4000)]
    remotes6 = ["2001:db8:%x::%x" % (k >> 4, k & 15 or 1) for k in rng.sample(range(1, 1 << 16), 800)]
    r4_cum = _cumulative([1.0 / (k + 1) ** 0.9 for k in range(len(remotes4))])
    r6_cum = _cumulative([1.0 / (k + 1) ** 0.9 for k in range(len(remotes6))])
    origs = set()
    replies = set()
    nat_port = [20000]
    entries = []
    kinds = []
    for kind, share in MIX:
        kinds += [kind] * int(round(share * n))
    kinds = (kinds + ["tcp4_established"] * n)[:n]
    rng.shuffle(kinds)

    def pick(cum, items):
        return items[_search(cum, rng.random() * cum[-1])]

    def add(kind, family, proto, orig, reply, status, state=0):
        ko = (proto, orig[0], orig[1], orig[2], orig[3], orig[4] if len(orig) > 4 else 0)
        kr = (proto, reply[0], reply[1], reply[2], reply[3], reply[4] if len(reply) > 4 else 0)
        if ko in origs or kr in replies:
            return False
        origs.add(ko)
        replies.add(kr)
        replied = status & IPS_SEEN_REPLY
        po = rng.randint(1, 4000)
        bo = po * rng.randint(60, 900)
        pr = rng.randint(1, 6000) if replied else 0
        br = pr * rng.randint(60, 1400)
        entries.append({"kind": kind, "family": family, "proto": proto, "orig": orig,
                        "reply": reply, "status": status, "tcp_state": state,
                        "counters": (po, bo, pr, br)})
        return True

    def nat():
        nat_port[0] = nat_port[0] + 1 if nat_port[0] < 65000 else 20000
        return nat_port[0]

    for kind in kinds:
        while True:
            d = pick(dev_cum, devs)
            sport = rng.randint(32768, 60999)
            if kind in ("tcp4_established", "tcp_closing", "tcp_unreplied"):
                r = pick(r4_cum, remotes4)
                port = _weighted(rng, TCP_PORTS)
                state, status = "ESTABLISHED", IPS_SEEN_REPLY | IPS_ASSURED
                if kind == "tcp_closing":
                    state = rng.choice(("TIME_WAIT", "TIME_WAIT", "FIN_WAIT", "CLOSE_WAIT",
                                        "LAST_ACK", "CLOSE"))
                elif kind == "tcp_unreplied":
                    r = "198.19.%d.%d" % (rng.randint(0, 255), rng.randint(1, 254))
                    state, status = "SYN_SENT", 0
                np_ = nat()
                ok = add(kind, socket.AF_INET, 6, (d[1], r, sport, port),
                         (r, WAN4, port, np_), status, TCP_STATES[state])
            elif kind == "tcp6_established":
                d = pick(dev6_cum, dev6)
                r = pick(r6_cum, remotes6)
                port = _weighted(rng, TCP_PORTS)
                ok = add(kind, socket.AF_INET6, 6, (d[2], r, sport, port), (r, d[2], port, sport),
                         IPS_SEEN_REPLY | IPS_ASSURED, TCP_STATES["ESTABLISHED"])
            elif kind == "udp_dns":
                ok = add(kind, socket.AF_INET, 17, (d[1], ROUTER4, sport, 53),
                         (ROUTER4, d[1], 53, sport), IPS_SEEN_REPLY)
            elif kind in ("udp_quic", "udp_ntp", "udp_unreplied"):
                r = pick(r4_cum, remotes4)
                port = {"udp_quic": 443, "udp_ntp": 123}.get(kind) or rng.choice((443, 3478, 19302, 5353))
                status = IPS_SEEN_REPLY | IPS_ASSURED if kind == "udp_quic" else IPS_SEEN_REPLY
                if kind == "udp_unreplied":
                    status = 0
                ok = add(kind, socket.AF_INET, 17, (d[1], r, sport, port), (r, WAN4, port, nat()), status)
            elif kind == "udp6_quic":
                d = pick(dev6_cum, dev6)
                r = pick(r6_cum, remotes6)
                ok = add(kind, socket.AF_INET6, 17, (d[2], r, sport, 443), (r, d[2], 443, sport),
                         IPS_SEEN_REPLY | IPS_ASSURED)
            elif kind == "icmp":
                r = pick(r4_cum, remotes4)
                ident = rng.randint(1, 65535)
                ok = add(kind, socket.AF_INET, 1, (d[1], r, ident, 8, 0), (r, WAN4, ident, 0, 0),
                         IPS_SEEN_REPLY)
            elif kind == "icmp6":
                d = pick(dev6_cum, dev6)
                r = pick(r6_cum, remotes6)
                ident = rng.randint(1, 65535)
                ok = add(kind, socket.AF_INET6, 58, (d[2], r, ident, 128, 0), (r, d[2], ident, 129, 0),
                         IPS_SEEN_REPLY)
            elif kind == "inbound":
                # a port forward: the internet opens, a LAN device answers
                r = pick(r4_cum, remotes4)
                port = rng.choice((8443, 32400, 25565))
                ok = add(kind, socket.AF_INET, 6, (r, WAN4, sport, port), (d[1], r, port, sport),
                         IPS_SEEN_REPLY | IPS_ASSURED, TCP_STATES["ESTABLISHED"])
            else:  # router_own: dnsmasq's upstream queries, NTP, updates
                r = pick(r4_cum, remotes4)
                port = rng.choice((53, 53, 53, 123, 443))
                proto = 6 if port == 443 else 17
                ok = add(kind, socket.AF_INET, proto, (WAN4, r, sport, port), (r, WAN4, port, sport),
                         IPS_SEEN_REPLY, TCP_STATES["ESTABLISHED"] if proto == 6 else 0)
            if ok:
                break
    return entries, devs


def _cumulative(weights):
    out = []
    t = 0.0
    for w in weights:
        t += w
        out.append(t)
    return out


def _search(cum, x):
    lo, hi = 0, len(cum) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if cum[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo
