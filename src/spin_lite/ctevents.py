"""The conntrack events source: ctnetlink NEW and DESTROY over netlink.

A snapshot of /proc/net/nf_conntrack only holds the flows alive when it
is read. A TCP attempt refused with a RST is deleted from the table at
once, and a short UDP exchange lives less than a scan interval: a port
scan of hosts that answer RST is nearly invisible to snapshots. The
kernel tells every listener of the ctnetlink multicast groups about each
new and each deleted flow, so this source sees them all.

Division of labour with the snapshot scanner (conntrack.Scanner), so that
no flow counts twice: the snapshot stays the truth for live flows; a
DESTROY event ends a flow the scanner's table holds (its last counters
are reported as a delta and its slot freed), and reports a flow the table
never held (it lived and died between two snapshots) as a new flow with
its final counters. NEW events are only counted: the next snapshot or the
DESTROY reports the flow.

Wire format (include/uapi/linux/netfilter/nfnetlink*.h), one message:

    nlmsghdr  u32 len | u16 type (NFNL_SUBSYS_CTNETLINK << 8 | msg)
              | u16 flags | u32 seq | u32 pid          (host order)
    nfgenmsg  u8 family (2 ipv4, 10 ipv6) | u8 version | be16 res_id
    attributes (u16 len | u16 type, padded to 4), values big-endian:
      CTA_TUPLE_ORIG 1, CTA_TUPLE_REPLY 2   nested:
          CTA_TUPLE_IP 1 {CTA_IP_V4_SRC 1, _DST 2, CTA_IP_V6_SRC 3, _DST 4}
          CTA_TUPLE_PROTO 2 {CTA_PROTO_NUM 1 (u8), _SRC_PORT 2, _DST_PORT 3
              (be16), ICMP id 4 / type 5 / code 6, ICMPv6 id 7 / type 8 / code 9}
      CTA_STATUS 3 (be32: IPS_SEEN_REPLY 1 << 1, IPS_ASSURED 1 << 2)
      CTA_PROTOINFO 4 {CTA_PROTOINFO_TCP 1 {CTA_PROTOINFO_TCP_STATE 1 (u8)}}
      CTA_COUNTERS_ORIG 9, CTA_COUNTERS_REPLY 10
          {CTA_COUNTERS_PACKETS 1, _BYTES 2 (be64)}

The kernel sends a new flow as IPCTNL_MSG_CT_NEW (0) to group
NFNLGRP_CONNTRACK_NEW (1) and a deleted one as IPCTNL_MSG_CT_DELETE (2)
to NFNLGRP_CONNTRACK_DESTROY (3), with its final counters when
nf_conntrack_acct is on. A RST that refuses a SYN kills the flow before
IPS_SEEN_REPLY is set, so "refused" is read from the reply counter.

`Reader` (pure: bytes in, calls out) walks the messages of one datagram;
`Events` is the agent part that owns the socket.
"""

import struct
from binascii import hexlify

from . import conntrack, plat

NETLINK_NETFILTER = 12
GROUPS = 1 << 0 | 1 << 2  # NFNLGRP_CONNTRACK_NEW and _DESTROY
MSG_NEW = 1 << 8 | 0  # NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_NEW
MSG_DELETE = 1 << 8 | 2  # ... | IPCTNL_MSG_CT_DELETE
NLMSG_ERROR = 2
NLMSG_OVERRUN = 4
NLA_TYPE = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER

CTA_TUPLE_ORIG = 1
CTA_TUPLE_REPLY = 2
CTA_STATUS = 3
CTA_PROTOINFO = 4
CTA_COUNTERS_ORIG = 9
CTA_COUNTERS_REPLY = 10
CTA_TUPLE_IP = 1
CTA_TUPLE_PROTO = 2
IPS_SEEN_REPLY = 1 << 1
IPS_ASSURED = 1 << 2

FAMILIES = {2: 4, 10: 16}  # nfgenmsg family -> address length
TCP = 6
ICMP = 1
ICMPV6 = 58
GRE = 47
# the name /proc prints for a protocol number (l4proto_name in the
# kernel's nf_conntrack_standalone.c); any other is "unknown"
PROTO_NAMES = {1: b"icmp", 6: b"tcp", 17: b"udp", 33: b"dccp", 47: b"gre", 132: b"sctp",
               136: b"udplite", 58: b"icmpv6"}
PORTED = {6: 1, 17: 1, 33: 1, 132: 1, 136: 1}
# CTA_PROTO_* of an ICMP flavour's (id, type, code)
ICMP_ATTRS = {1: (4, 5, 6), 58: (7, 8, 9)}

TCP_STATES = ("NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT",
              "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2")


def address_text(raw):
    """Address bytes as /proc prints them: dotted IPv4, or IPv6 in full
    (%pI6: eight groups of four hex digits, no :: shortening)."""
    if len(raw) == 4:
        return b"%d.%d.%d.%d" % (raw[0], raw[1], raw[2], raw[3])
    h = hexlify(raw)
    return b":".join([h[i:i + 4] for i in range(0, 32, 4)])


def proc_key(family, proto, src, dst, p1, p2, p3):
    """The scanner's key of a flow (`line[9:16] + line[a:b]` of its /proc
    line: family number and the protocol column, then the original tuple
    up to its counters), built from an event's original tuple. p1, p2 are
    the ports (GRE: the keys); for ICMP p1 = type, p2 = code, p3 = id."""
    return text_key(family, proto, address_text(src), address_text(dst), p1, p2, p3)


def text_key(family, proto, src, dst, p1, p2, p3):
    """proc_key with the addresses already in their /proc text."""
    name = PROTO_NAMES.get(proto, b"unknown")
    head = (b"%d %s        " % (family, name))[:7]
    tup = b"src=" + src + b" dst=" + dst
    if proto in PORTED:
        return head + tup + b" sport=%d dport=%d" % (p1, p2)
    if proto in ICMP_ATTRS:
        return head + tup + b" type=%d code=%d id=%d" % (p1, p2, p3)
    if proto == GRE:
        return head + tup + b" srckey=0x%x dstkey=0x%x" % (p1, p2)
    return head + tup


def _tuple(data, off, end):
    """A nested CTA_TUPLE_* -> (src, dst, proto, p1, p2, p3), or None when
    it is malformed or lacks an address or the protocol."""
    src = dst = None
    proto = -1
    p1 = p2 = p3 = 0
    unpack = struct.unpack_from
    while off + 4 <= end:
        alen, atype = unpack("HH", data, off)
        if alen < 4 or off + alen > end:
            return None
        atype &= NLA_TYPE
        o = off + 4
        e = off + alen
        if atype == CTA_TUPLE_IP:
            while o + 4 <= e:
                blen, btype = unpack("HH", data, o)
                if blen < 4 or o + blen > e:
                    return None
                btype &= NLA_TYPE
                if btype == 1 or btype == 3:
                    src = data[o + 4:o + blen]
                elif btype == 2 or btype == 4:
                    dst = data[o + 4:o + blen]
                o += (blen + 3) & ~3
        elif atype == CTA_TUPLE_PROTO:
            while o + 4 <= e:
                blen, btype = unpack("HH", data, o)
                if blen < 4 or o + blen > e:
                    return None
                btype &= NLA_TYPE
                v = o + 4
                if btype == 1 and blen >= 5:
                    proto = data[v]
                elif (btype == 2 or btype == 3 or btype == 4 or btype == 7) and blen >= 6:
                    n = (data[v] << 8) | data[v + 1]
                    if btype == 2:
                        p1 = n
                    elif btype == 3:
                        p2 = n
                    else:
                        p3 = n  # the ICMP id
                elif (btype == 5 or btype == 8) and blen >= 5:
                    p1 = data[v]  # ICMP type
                elif (btype == 6 or btype == 9) and blen >= 5:
                    p2 = data[v]  # ICMP code
                o += (blen + 3) & ~3
        off += (alen + 3) & ~3
    if src is None or dst is None or proto < 0 or len(src) != len(dst):
        return None
    return src, dst, proto, p1, p2, p3


def _counters(data, off, end):
    """CTA_COUNTERS_* -> (packets, bytes); -1 for what is missing."""
    packets = nbytes = -1
    while off + 4 <= end:
        alen, atype = struct.unpack_from("HH", data, off)
        if alen < 4 or off + alen > end:
            return None
        atype &= NLA_TYPE
        if alen >= 12 and (atype == 1 or atype == 2):
            hi, lo = struct.unpack_from(">II", data, off + 4)
            if atype == 1:
                packets = hi << 32 | lo
            else:
                nbytes = hi << 32 | lo
        off += (alen + 3) & ~3
    return packets, nbytes


def _tcp_state(data, off, end):
    """CTA_PROTOINFO -> the TCP state number, or -1."""
    while off + 4 <= end:
        alen, atype = struct.unpack_from("HH", data, off)
        if alen < 4 or off + alen > end:
            return -1
        if atype & NLA_TYPE == 1:  # CTA_PROTOINFO_TCP
            o, e = off + 4, off + alen
            while o + 4 <= e:
                blen, btype = struct.unpack_from("HH", data, o)
                if blen < 4 or o + blen > e:
                    return -1
                if btype & NLA_TYPE == 1 and blen >= 5:
                    return data[o + 4]
                o += (blen + 3) & ~3
        off += (alen + 3) & ~3
    return -1


class Reader:
    """Walks ctnetlink datagrams: counts NEW events and hands each DESTROY,
    parsed into plain values, to a sink:

        sink(family, proto, src, dst, p1, p2, p3, reply_src, status,
             orig_packets, orig_bytes, reply_packets, reply_bytes, tcp_state)

    (src, dst: the original tuple's address bytes; p1..p3 as in proc_key;
    reply_src: the reply tuple's source, who answers, after NAT; counters
    are -1 without nf_conntrack_acct, tcp_state -1 when not told). A
    malformed message (a length past its end, a truncated attribute, a
    tuple without addresses) is counted and skipped: nothing reaches the
    sink from it."""

    def __init__(self):
        self.events = 0
        self.new = 0
        self.destroyed = 0
        self.malformed = 0
        self.errors = 0

    def feed(self, data, sink):
        off = 0
        n = len(data)
        unpack = struct.unpack_from
        while off + 16 <= n:
            ln, typ = unpack("IH", data, off)
            if ln < 16 or off + ln > n:
                self.malformed += 1  # the rest of the datagram cannot be framed
                return
            if typ == MSG_NEW:
                self.events += 1
                self.new += 1
            elif typ == MSG_DELETE:
                self.events += 1
                if self._destroy(data, off + 16, off + ln, sink):
                    self.destroyed += 1
                else:
                    self.malformed += 1
            elif typ == NLMSG_ERROR or typ == NLMSG_OVERRUN:
                self.errors += 1
            off += (ln + 3) & ~3
        if off < n and off + 16 > n and n - off >= 4:
            self.malformed += 1  # a tail too short to be a message

    def _destroy(self, data, off, end, sink):
        if off + 4 > end:
            return False
        family = data[off]
        width = FAMILIES.get(family)
        if width is None:
            return False
        off += 4
        orig = reply = None
        status = 0
        state = -1
        co = cr = (-1, -1)
        unpack = struct.unpack_from
        while off + 4 <= end:
            alen, atype = unpack("HH", data, off)
            if alen < 4 or off + alen > end:
                return False
            atype &= NLA_TYPE
            v = off + 4
            e = off + alen
            if atype == CTA_TUPLE_ORIG:
                orig = _tuple(data, v, e)
                if orig is None:
                    return False
            elif atype == CTA_TUPLE_REPLY:
                reply = _tuple(data, v, e)
                if reply is None:
                    return False
            elif atype == CTA_STATUS and alen >= 8:
                status = unpack(">I", data, v)[0]
            elif atype == CTA_COUNTERS_ORIG:
                co = _counters(data, v, e)
                if co is None:
                    return False
            elif atype == CTA_COUNTERS_REPLY:
                cr = _counters(data, v, e)
                if cr is None:
                    return False
            elif atype == CTA_PROTOINFO:
                state = _tcp_state(data, v, e)
            off += (alen + 3) & ~3
        if off < end or orig is None or reply is None or len(orig[0]) != width:
            return False
        sink(family, orig[2], orig[0], orig[1], orig[3], orig[4], orig[5], reply[0], status,
             co[0], co[1], cr[0], cr[1], state)
        return True


# -- the socket, as an agent part -------------------------------------------

EAGAIN = 11
ENOBUFS = 105
BATCH = 256  # datagrams read per wake-up: a flood of events must not starve the loop
DRAIN = 4096  # ... and before a snapshot, so that it finds the ended flows gone
RCVBUF = 4 << 20  # bytes: ~15,000 DESTROY events of ~280 B wait in it
SIDES_KEPT = 512  # addresses whose kind and text are kept
RECV = 16384  # one event is a few hundred bytes; the kernel sends one per datagram


class Events:
    """Agent part: reads ctnetlink NEW and DESTROY events and feeds the
    flows the snapshot cannot see to agent.account.

    It sets `agent.events` to itself in start; the agent calls drain()
    before each snapshot (a flow that ended is then gone from the table
    before the snapshot would sweep it, so it is not reported twice) and
    puts status() in its own under "events"."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.reader = Reader()
        self.sock = None
        self.state = "off: not started"
        self.agent = None
        self.unseen = 0
        self.ended_held = 0
        self.skipped = 0
        self.lost = 0
        self.resyncs = 0
        self.lost_since_scan = False
        self.lan = None
        self.sides = {}

    def start(self, agent):
        agent.events = self
        self.agent = agent
        if not self.cfg.get("ctevents", True):
            self.state = "off: ctevents is off in the configuration"
            return
        if not self.cfg.get("conntrack_file", "/proc/").startswith("/proc/"):
            # events tell of the kernel's table, not of a recorded one
            self.state = "off: conntrack_file is not the kernel's table"
            return
        try:
            self.sock = plat.netlink_listener(NETLINK_NETFILTER, GROUPS, RCVBUF)
        except (OSError, AttributeError) as e:
            # no CAP_NET_ADMIN, no nf_conntrack_netlink, no AF_NETLINK
            self.state = "off: cannot listen to conntrack events (%s): snapshots alone" % e
            plat.warn_once("ctevents", self.state[5:])
            self.sock = None
            return
        self.state = "on"
        agent.loop.add_reader(self.sock, self.readable)

    def readable(self, *_):
        self._read(BATCH)

    def drain(self):
        """Read what is waiting (bounded); the agent calls it before a
        snapshot. Returns whether events were lost since the last one."""
        if self.sock is not None:
            self._read(DRAIN)
        lost = self.lost_since_scan
        if lost:
            # the snapshot about to be read is the truth for live flows;
            # only the flows that lived and died in the gap are gone
            self.resyncs += 1
            self.lost_since_scan = False
        return lost

    def _read(self, bound):
        sock = self.sock
        feed = self.reader.feed
        sink = self._destroyed
        for _ in range(bound):
            try:
                data = sock.recv(RECV)
            except OSError as e:
                if e.args and e.args[0] == ENOBUFS:
                    self.lost += 1  # the kernel dropped events: the socket goes on
                    self.lost_since_scan = True
                    continue
                if e.args and e.args[0] == EAGAIN:
                    return
                # anything else would wake the loop for ever: stop listening
                self.stop(self.agent)
                self.state = "off: reading conntrack events failed (%s): snapshots alone" % e
                plat.warn(self.state[5:])
                return
            if not data:
                return
            feed(data, sink)

    def _destroyed(self, family, proto, src, dst, p1, p2, p3, reply_src, status,
                   op, ob, rp, rb, state):
        """Reader's sink: one DESTROY, seen from the device's side as the
        scanner sees it (conntrack.orient), then ended in its table."""
        scanner = self.agent.scanner
        if scanner is None:
            return
        if scanner.lan is not self.lan:
            self.lan = scanner.lan  # the LAN changed (reload): what an address is, too
            self.sides = {}
        k_src, src_ip, src_text = self._side(src)
        if k_src == conntrack.BAD or k_src == conntrack.ROUTER:
            self.skipped += 1  # the router's own flow
            return
        ported = proto in PORTED
        _, dst_ip, dst_text = self._side(dst)
        if k_src == conntrack.LAN:
            dev, remote, rport, inbound = src_ip, dst_ip, (p2 if ported else 0), False
        else:
            k_dev, dev, _ = self._side(reply_src)
            if k_dev != conntrack.LAN:
                self.skipped += 1  # WAN to WAN: not a device's flow
                return
            remote, rport, inbound = src_ip, (p1 if ported else 0), True
        if op < 0 or rp < 0:
            op = ob = rp = rb = 0  # no nf_conntrack_acct: a connection, no bytes
        key = text_key(family, proto, src_text, dst_text, p1, p2, p3)
        name = PROTO_NAMES.get(proto, b"unknown")
        d = scanner.ended(key, op, max(ob, 0), rp, max(rb, 0))
        if d is None:
            self._unseen(dev, remote, rport, name, inbound, proto, status, op, ob, rp, rb)
            return
        self.ended_held += 1
        po, bo, pi, bi = d
        if inbound:
            po, bo, pi, bi = pi, bi, po, bo
        if po or bo or pi or bi:
            self.agent.account(dev, remote, rport, name, bo, bi, po, pi, False, False)

    def _unseen(self, dev, remote, rport, name, inbound, proto, status, op, ob, rp, rb):
        """A flow no snapshot held: it lived and died between two of them.
        A RST that refuses a SYN kills the flow before IPS_SEEN_REPLY is
        set, so only the reply counter tells it from silence (without
        counters a refused attempt counts as unanswered)."""
        self.unseen += 1
        replied = status & IPS_SEEN_REPLY or rp > 0
        refused = (proto == TCP and rp > 0
                   and not status & (IPS_SEEN_REPLY | IPS_ASSURED))
        if inbound:
            op, ob, rp, rb = rp, rb, op, ob
        self.agent.account(dev, remote, rport, name, max(ob, 0), max(rb, 0), op, rp, True,
                           not replied, refused)

    def _side(self, raw):
        """(kind, ip text, /proc text) of an address's bytes: devices and
        popular remotes come back event after event, so they are kept
        (a few hundred: MicroPython's short bytes hash, DESIGN §4)."""
        hit = self.sides.get(raw)
        if hit is None:
            text = address_text(raw)
            kind, ip = self.lan.kind(b"src=" + text)
            hit = (kind, ip, text)
            if len(self.sides) >= SIDES_KEPT:
                self.sides = {}
            self.sides[raw] = hit
        return hit

    def reload(self, agent):
        self.cfg = agent.cfg
        if bool(agent.cfg.get("ctevents", True)) != (self.sock is not None):
            self.stop(agent)
            self.start(agent)

    def stop(self, agent):
        if self.sock is not None:
            agent.loop.remove_reader(self.sock)
            self.sock.close()
            self.sock = None
            self.state = "off: stopped"

    def status(self):
        r = self.reader
        st = {"state": self.state, "events": r.events, "new": r.new,
              "destroyed": r.destroyed, "unseen": self.unseen, "lost": self.lost,
              "resyncs": self.resyncs, "malformed": r.malformed}
        if self.lost:
            # lost counts overflows (each ENOBUFS), not events: the kernel does not say how many
            st["note"] = ("the kernel dropped events (ENOBUFS, %d overflows so far); the next "
                          "snapshot resynced the live flows, and only flows that began and "
                          "ended in a gap were missed" % self.lost)
        return st
