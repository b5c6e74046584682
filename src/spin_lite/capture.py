"""Full captures of one device's traffic, bounded, as standard pcap files.

SPIN's capture put the MAC the browser sent into a shell command line
(research/spin.md): a MAC of `;rm -rf /` ran. Here the MAC is parsed
(addr.parse_mac) before anything starts, and the capture program gets an
argument list, never a shell (plat.spawn). /tmp on a router is RAM, so
every capture is bounded three ways: time (`seconds`, at most
capture_seconds_max), size (`max_kb`, at most capture_kb_max: the file
is cut at the last whole packet under it) and free space (below
capture_free_kb on the directory's filesystem it stops, reason "space"),
and at most capture_max run at once.

Packets are taken by MAC on the LAN interface (br-lan): both directions,
IPv4 and IPv6, before NAT, so a device's traffic is whole.

* With tcpdump (OpenWrt's tcpdump-mini): `tcpdump -i br-lan -w FILE
  ether host MAC`, watched once a second (size, space, time, exit).
* Without it (or on MicroPython, whose children cannot run beside the
  agent): an AF_PACKET socket of our own with a classic BPF filter on
  the MAC, read from the agent's poll loop, written as pcap by us; the
  kernel's drops (PACKET_STATISTICS) are counted and shown.

`watch {mac}` keeps a device's last packets (watch_packets of them, the
first WATCH_SNAP bytes of each) in a ring, off unless asked, so that an
anomaly the detector opens for it carries them as a small pcap (the
`anomaly` record's `pcap`), listed and downloaded like any capture.

A capture stops for: time, size, space, owner (capture_stop), device (the
device left the agent's table), agent (the agent stopped) or, when the
program fails, error. Nothing runs, no timer either, while no capture
does: the scan pays nothing for this part.
"""

import struct

from . import addr, dnssnoop, plat
from .errors import ApiError, INVALID_ARGUMENT, NOT_FOUND

ETH_P_ALL = 0x0003
SOCK_RAW = 3            # whole frames, Ethernet header included (pcap LINKTYPE_ETHERNET)
SNAPLEN = 65535
RECV = 65536 + 64       # a GSO frame from the host's own stack may pass 64 KB; cut there
BATCH = 64              # packets per wake-up, so a flood cannot starve the loop
WATCH_S = 1             # seconds between checks of the running captures
RECORD = 16             # bytes of a pcap record header
EAGAIN = 11
# a capture_data reply: 96 KB as base64 is 128 KB, within the 256 KB any reply may take
CHUNK = 96 * 1024
KEEP_RECORDS = 64       # finished captures listed; the oldest record (not its file, if kept) goes


def pcap_header(snaplen):
    """A pcap file's header: version 2.4, microseconds, Ethernet frames."""
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, 1)


PCAP_HEADER = pcap_header(SNAPLEN)


def pcap_record(t, caplen, length):
    """The header of one packet record: wall time t, bytes kept, bytes sent."""
    sec = int(t)
    return struct.pack("<IIII", sec, int((t - sec) * 1000000), caplen, length)


def mac_filter(mac):
    """Classic BPF that passes frames from or to mac: `ether host MAC`."""
    b = bytes(int(x, 16) for x in mac.split(":"))
    hi = (b[0] << 8) | b[1]
    lo = (b[2] << 24) | (b[3] << 16) | (b[4] << 8) | b[5]
    rows = (
        ("", "ld [k]", 8, None, None),            # source MAC, last four bytes
        ("", "jeq #k", lo, None, "dst"),
        ("", "ldh [k]", 6, None, None),           # source MAC, first two
        ("", "jeq #k", hi, "keep", "dst"),
        ("dst", "ld [k]", 2, None, None),         # destination MAC, last four
        ("", "jeq #k", lo, None, "drop"),
        ("", "ldh [k]", 0, None, None),           # destination MAC, first two
        ("", "jeq #k", hi, "keep", "drop"),
        ("keep", "ret #k", SNAPLEN, None, None),
        ("drop", "ret #k", 0, None, None),
    )
    return dnssnoop.program(rows)


def tcpdump_argv(program, ifname, path, mac, seconds):
    """The capture program's argument list. mac is already parsed (six hex
    pairs), path is ours, seconds a checked number: nothing here comes
    from the caller as text."""
    # -U: each packet reaches the file at once, so its size is the bound we
    # watch; -Z root: Debian's tcpdump would otherwise drop to a user that
    # cannot write into our 0700 directory; -s 0: whole packets. -G/-W 1:
    # tcpdump ends itself (at its next packet) 2 s after the agent would
    # have stopped it, should the agent be killed and leave it behind
    return [program, "-i", ifname, "-n", "-U", "-s", "0", "-Z", "root",
            "-G", str(seconds + 2), "-W", "1", "-w", path, "ether", "host", mac]


def whole_records(path, limit, offset=24):
    """(packets, end) of the whole pcap records in path from offset on
    whose end stays within limit bytes: a header walk, no packet is read."""
    packets = 0
    try:
        f = open(path, "rb")
    except OSError:
        return 0, offset
    try:
        f.seek(offset)
        while True:
            head = f.read(RECORD)
            if len(head) < RECORD:
                break
            caplen = struct.unpack("<I", head[8:12])[0]
            if offset + RECORD + caplen > limit:
                break
            f.seek(offset + RECORD + caplen)
            offset += RECORD + caplen
            packets += 1
    finally:
        f.close()
    return packets, offset


def cut(path, size):
    """Truncate path to size bytes (after tcpdump, at a record boundary)."""
    if file_size(path) > size:
        f = open(path, "r+b")
        try:
            f.truncate(size)
        finally:
            f.close()


def file_size(path):
    import os
    try:
        return os.stat(path)[6]
    except OSError:
        return 0


class Capture:
    """One capture: what the owner asked, what it holds, how it ended."""

    def __init__(self, cid, mac, name, path, seconds, max_bytes, now_wall, now_ms):
        self.id = cid
        self.mac = mac
        self.name = name
        self.path = path
        self.seconds = seconds
        self.max_bytes = max_bytes
        self.start = now_wall
        self.deadline = now_ms + seconds * 1000
        self.end = None
        self.bytes = 0
        self.packets = 0
        self.drops = 0
        self.state = "running"
        self.why = None
        self.tool = None
        self.child = None    # tcpdump's handle
        self.sock = None     # or our own socket and file
        self.out = None
        self.walked = 24     # tcpdump's file: the records counted so far end here
        self.listening = False

    def ready(self):
        """True once packets reach the file: tcpdump says "listening on"
        when its socket is open (packets before that are not seen)."""
        if not self.listening and self.child is not None:
            err = plat.read_file(self.path[:-5] + ".err") or b""
            self.listening = b"listening on" in err
        return self.listening

    def info(self):
        return {"id": self.id, "mac": self.mac, "device": self.name, "start": int(self.start),
                "end": int(self.end) if self.end is not None else None, "seconds": self.seconds,
                "max_kb": self.max_bytes // 1024, "bytes": self.bytes, "packets": self.packets,
                "drops": self.drops, "state": self.state, "why": self.why, "tool": self.tool,
                "file": self.path.rpartition("/")[2], "listening": self.ready()}


SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
WATCH_SNAP = 256        # bytes kept of each watched packet: its headers, what an alert needs


def open_socket(ifname, mac):
    """A non-blocking AF_PACKET socket on ifname with whole frames from or
    to mac. Raises OSError."""
    socket = plat.sockets()
    sock = socket.socket(plat.AF_PACKET, SOCK_RAW, 0)
    try:
        # protocol 0 until bound: nothing arrives before the filter is on
        plat.attach_filter(sock, mac_filter(mac))
        sock.bind(plat.packet_address(ifname, ETH_P_ALL))
        sock.setblocking(False)
        index = plat.read_file("/sys/class/net/%s/ifindex" % ifname)
        if index is not None:
            # promiscuous while this socket lives (the kernel counts its
            # users and undoes it at close), as tcpdump is: frames the
            # bridge forwards between two LAN devices reach br-lan too
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP,
                            struct.pack("iHH8s", int(index), PACKET_MR_PROMISC, 0, b""))
    except OSError:
        sock.close()
        raise
    return sock


class Watch:
    """The last `size` packets of one device (their first WATCH_SNAP
    bytes), in a ring of fixed length: what an anomaly then carries as a
    small pcap. Memory: size x (WATCH_SNAP + a few dozen bytes)."""

    def __init__(self, mac, size, sock):
        self.mac = mac
        self.ring = [None] * size
        self.next = 0
        self.seen = 0
        self.drops = 0
        self.sock = sock

    def add(self, t, data):
        # (time, original length, first bytes)
        self.ring[self.next] = (t, len(data), data[:WATCH_SNAP])
        self.next = (self.next + 1) % len(self.ring)
        self.seen += 1

    def packets(self):
        """The ring's packets, oldest first."""
        n = len(self.ring)
        return [p for p in (self.ring[(self.next + i) % n] for i in range(n)) if p is not None]

    def pcap(self):
        out = [pcap_header(WATCH_SNAP)]
        for t, length, data in self.packets():
            out.append(pcap_record(t, len(data), length))
            out.append(data)
        return b"".join(out)

    def info(self):
        return {"mac": self.mac, "packets": min(self.seen, len(self.ring)), "size": len(self.ring),
                "seen": self.seen, "drops": self.drops}


class Captures:
    """Agent part: the captures, their files and the API's capture methods."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.items = {}
        self.next_id = 1
        self.dir = None
        self.timer = None
        self.agent = None
        self.watches = {}

    # -- the part -----------------------------------------------------------

    def start(self, agent):
        self.agent = agent
        agent.captures = self
        self.dir = self.directory(agent.cfg)
        plat.makedirs(self.dir)
        plat.chmod(self.dir, 0o700)
        if not agent.cfg["capture_keep"]:
            self._sweep()

    @staticmethod
    def directory(cfg):
        return (cfg["capture_dir"] or cfg["run_dir"].rstrip("/") + "/captures").rstrip("/")

    def _sweep(self):
        """Files a previous run left (it was killed): nobody lists them."""
        import os
        try:
            names = os.listdir(self.dir)
        except OSError:
            return
        for n in names:
            if n.startswith("capture-") and (n.endswith(".pcap") or n.endswith(".err")):
                plat.remove(self.dir + "/" + n)

    def reload(self, agent):
        self.cfg = agent.cfg
        new = self.directory(agent.cfg)
        if new != self.dir and not self.running():
            self.dir = new
            plat.makedirs(self.dir)
            plat.chmod(self.dir, 0o700)

    def after_scan(self, agent, now_ms):
        # a device gone from the table (max_devices, or its neighbour
        # entry aged out) ends its capture, saying so
        for c in self.running():
            if agent.devices.get(c.mac) is None:
                self.finish(c, "device")
        for mac in list(self.watches):
            w = self.watches[mac]
            st = plat.packet_stats(w.sock)
            if st is not None:
                w.drops += st[1]
            if agent.devices.get(mac) is None:
                self.unwatch(mac)

    def stop(self, agent):
        for mac in list(self.watches):
            self.unwatch(mac)
        for c in self.running():
            self.finish(c, "agent")
        if not self.cfg["capture_keep"]:
            for c in self.items.values():
                self._remove_files(c)

    def status(self):
        return {"running": len(self.running()), "listed": len(self.items), "watching": len(self.watches)}

    # -- the API ------------------------------------------------------------

    def running(self):
        return [c for c in self.items.values() if c.state == "running"]

    def begin(self, mac, seconds, max_kb):
        cfg = self.cfg
        if cfg["capture_max"] < 1:
            raise ApiError(INVALID_ARGUMENT, "captures are off (capture_max 0)")
        if seconds is None:
            seconds = min(60, cfg["capture_seconds_max"])
        if not 1 <= seconds <= cfg["capture_seconds_max"]:
            raise ApiError(INVALID_ARGUMENT, "seconds: %d is outside 1..%d (capture_seconds_max)"
                           % (seconds, cfg["capture_seconds_max"]))
        if max_kb is None:
            max_kb = cfg["capture_kb_max"]
        if not 1 <= max_kb <= cfg["capture_kb_max"]:
            raise ApiError(INVALID_ARGUMENT, "max_kb: %d is outside 1..%d (capture_kb_max)"
                           % (max_kb, cfg["capture_kb_max"]))
        mac = addr.parse_mac(mac)  # the API parsed it already; a second look costs nothing
        d = self.agent.devices.get(mac)
        if d is None:
            raise ApiError(NOT_FOUND, "no device %s" % mac)
        if plat.read_file("/sys/class/net/%s/ifindex" % cfg["lan_ifname"]) is None or "/" in cfg["lan_ifname"]:
            # said now, not as a capture that fails a moment later
            raise ApiError(NOT_FOUND, "cannot capture: no interface %s (lan_ifname)" % cfg["lan_ifname"])
        if len(self.running()) >= cfg["capture_max"]:
            raise ApiError(INVALID_ARGUMENT, "%d captures are running, the most at once "
                           "(capture_max)" % cfg["capture_max"])
        free = plat.free_kb(self.dir)
        if free is not None and free < cfg["capture_free_kb"]:
            raise ApiError(INVALID_ARGUMENT, "%s has %d KB free, under capture_free_kb %d"
                           % (self.dir, free, cfg["capture_free_kb"]))
        cid = self.next_id
        self.next_id += 1
        c = Capture(cid, mac, d.name, "%s/capture-%d.pcap" % (self.dir, cid), seconds,
                    max_kb * 1024, plat.wall(), plat.monotonic_ms())
        self._open(c)
        self.items[cid] = c
        self._forget_old()
        if self.timer is None:
            self.timer = self.agent.loop.call_later(WATCH_S, self._watch)
        return c.info()

    def halt(self, cid):
        c = self._get(cid)
        if c.state == "running":
            self.finish(c, "owner")
        return c.info()

    def delete(self, cid):
        c = self._get(cid)
        if c.state == "running":
            self.finish(c, "owner")
        self._remove_files(c)
        del self.items[cid]
        return {"id": cid, "deleted": True}

    def listing(self):
        return {"captures": [self.items[k].info() for k in sorted(self.items)],
                "running": len(self.running()), "max": self.cfg["capture_max"],
                "seconds_max": self.cfg["capture_seconds_max"], "kb_max": self.cfg["capture_kb_max"]}

    def chunk(self, cid, offset):
        """Bytes offset.. of a capture's file, at most CHUNK of them, as
        base64: a download through the API (ubus, JSON-RPC), which is how
        LuCI fetches it (rpcd gives no other way into the agent)."""
        import binascii
        c = self._get(cid)
        size = file_size(c.path)
        if offset > size:
            raise ApiError(INVALID_ARGUMENT, "offset: %d is past the file's %d bytes" % (offset, size))
        f = open(c.path, "rb")
        try:
            f.seek(offset)
            data = f.read(CHUNK)
        finally:
            f.close()
        return {"id": cid, "offset": offset, "size": size, "length": len(data),
                "more": offset + len(data) < size,
                "data": binascii.b2a_base64(data).decode().replace("\n", "")}

    # -- the pre-trigger ring (watch) ----------------------------------------

    def watch(self, mac, packets):
        cfg = self.cfg
        if packets is None:
            packets = cfg["watch_packets"]
        if not 1 <= packets <= cfg["watch_packets"]:
            raise ApiError(INVALID_ARGUMENT, "packets: %d is outside 1..%d (watch_packets)"
                           % (packets, cfg["watch_packets"]))
        if self.agent.devices.get(mac) is None:
            raise ApiError(NOT_FOUND, "no device %s" % mac)
        old = self.watches.get(mac)
        if old is None and len(self.watches) >= cfg["watch_max"]:
            raise ApiError(INVALID_ARGUMENT, "%d devices are watched, the most at once (watch_max)"
                           % cfg["watch_max"])
        if old is not None:
            self.unwatch(mac)
        try:
            sock = open_socket(cfg["lan_ifname"], mac)
        except OSError as e:
            raise ApiError(NOT_FOUND, "cannot watch on %s: %s" % (cfg["lan_ifname"], e))
        w = Watch(mac, packets, sock)
        self.watches[mac] = w
        self.agent.loop.add_reader(sock, lambda: self._watched(w))
        return w.info()

    def unwatch(self, mac):
        w = self.watches.pop(mac, None)
        if w is None:
            raise ApiError(NOT_FOUND, "%s is not watched" % mac)
        self.agent.loop.remove_reader(w.sock)
        w.sock.close()
        return w.info()

    def watching(self):
        return {"watching": [self.watches[m].info() for m in sorted(self.watches)],
                "max": self.cfg["watch_max"], "packets_max": self.cfg["watch_packets"]}

    def _watched(self, w):
        for _ in range(BATCH):
            try:
                data, _ = plat.packet_recv(w.sock, RECV)
            except OSError:
                return
            w.add(plat.wall(), data)

    def dump(self, mac, why):
        """The watched device's last packets as a finished capture (listed,
        downloadable, deleted like the others): its info, or None when
        the device is not watched, the ring is empty or space is short."""
        w = self.watches.get(mac)
        if w is None or not w.seen:
            return None
        data = w.pcap()
        free = plat.free_kb(self.dir)
        if free is not None and free - len(data) // 1024 < self.cfg["capture_free_kb"]:
            plat.warn("capture: no room for %s's packets behind %s" % (mac, why))
            return None
        cid = self.next_id
        self.next_id += 1
        d = self.agent.devices.get(mac)
        c = Capture(cid, mac, d.name if d is not None else "", "%s/capture-%d.pcap" % (self.dir, cid),
                    0, len(data), plat.wall(), plat.monotonic_ms())
        old = plat.umask(0o177)
        try:
            plat.write_atomic(c.path, data)
        finally:
            if old is not None:
                plat.umask(old)
        plat.chmod(c.path, 0o600)
        c.bytes = len(data)
        c.packets = len(w.packets())
        c.drops = w.drops
        c.tool = "watch"
        c.listening = True
        c.end = c.start
        c.state = "done"
        c.why = why
        self.items[cid] = c
        self._forget_old()
        return c.info()

    def file_of(self, cid):
        """(path, capture) of a capture's file for a download, or None."""
        c = self.items.get(cid)
        if c is None:
            return None
        return c.path, c

    def _get(self, cid):
        c = self.items.get(cid)
        if c is None:
            raise ApiError(NOT_FOUND, "no capture %d" % cid)
        return c

    def _forget_old(self):
        done = sorted(k for k, c in self.items.items() if c.state != "running")
        for k in done[:max(0, len(self.items) - KEEP_RECORDS)]:
            self._remove_files(self.items.pop(k))

    def _remove_files(self, c):
        plat.remove(c.path)
        plat.remove(c.path[:-5] + ".err")

    # -- running one --------------------------------------------------------

    def _open(self, c):
        program = self.cfg["capture_tcpdump"]
        if program:
            try:
                c.child = plat.spawn(tcpdump_argv(program, self.cfg["lan_ifname"], c.path, c.mac, c.seconds),
                                     c.path[:-5] + ".err")
            except OSError as e:  # not installed: our own socket does it
                plat.warn_once("capture-tcpdump", "capture: %s: %s; capturing with a socket"
                               % (program, e))
                c.child = None
            if c.child is not None:
                c.tool = "tcpdump"
                return
        try:
            sock = open_socket(self.cfg["lan_ifname"], c.mac)
        except OSError as e:
            raise ApiError(NOT_FOUND, "cannot capture on %s: %s" % (self.cfg["lan_ifname"], e))
        old = plat.umask(0o177)
        try:
            c.out = open(c.path, "wb")
        finally:
            if old is not None:
                plat.umask(old)
        plat.chmod(c.path, 0o600)
        c.out.write(PCAP_HEADER)
        c.bytes = len(PCAP_HEADER)
        c.sock = sock
        c.tool = "socket"
        c.listening = True
        self.agent.loop.add_reader(sock, lambda: self._readable(c))

    def _readable(self, c):
        if c.sock is None:
            return
        for _ in range(BATCH):
            try:
                data, _ = plat.packet_recv(c.sock, RECV)
            except OSError as e:
                if e.errno != EAGAIN:
                    self.finish(c, "error: %s" % e, failed=True)
                return
            n = len(data)
            if c.bytes + RECORD + n > c.max_bytes:
                self.finish(c, "size")
                return
            c.out.write(pcap_record(plat.wall(), n, n))
            c.out.write(data)
            c.bytes += RECORD + n
            c.packets += 1

    def _watch(self):
        """Once a second while any capture runs: time, size, space, exit."""
        self.timer = None
        now = plat.monotonic_ms()
        free = plat.free_kb(self.dir)
        for c in self.running():
            if c.child is not None:
                self._follow(c)
                if c.state != "running":
                    continue
            if c.sock is not None:
                self._count_drops(c)
            if c.bytes >= c.max_bytes:
                self.finish(c, "size")
            elif free is not None and free < self.cfg["capture_free_kb"]:
                self.finish(c, "space")
            elif now >= c.deadline:
                self.finish(c, "time")
        if self.running():
            self.timer = self.agent.loop.call_later(WATCH_S, self._watch)

    def _follow(self, c):
        """tcpdump's file so far: count the new records; a child that ended
        by itself failed (its stderr says why)."""
        packets, c.walked = whole_records(c.path, c.max_bytes, c.walked)
        c.packets += packets
        c.bytes = max(c.walked, file_size(c.path))
        if plat.reap(c.child) is not None:
            err = (plat.read_file(c.path[:-5] + ".err") or b"").decode("utf-8", "replace")
            self.finish(c, "error: %s" % (err.strip().split("\n")[-1][:200] or "exited"), failed=True)

    def _count_drops(self, c):
        st = plat.packet_stats(c.sock)
        if st is not None:
            c.drops += st[1]

    def finish(self, c, why, failed=False):
        if c.state != "running":
            return
        if c.child is not None:
            plat.end(c.child)
            err = (plat.read_file(c.path[:-5] + ".err") or b"").decode("utf-8", "replace")
            c.drops += _dropped(err)
            packets, c.walked = whole_records(c.path, c.max_bytes, c.walked)
            c.packets += packets
            if file_size(c.path) > c.walked:
                cut(c.path, c.walked)  # the last packet that crossed max_kb goes
            c.bytes = file_size(c.path)
            c.child = None
        if c.sock is not None:
            self._count_drops(c)
            self.agent.loop.remove_reader(c.sock)
            c.sock.close()
            c.sock = None
            c.out.close()
            c.out = None
        c.end = plat.wall()
        c.why = why
        c.state = "failed" if failed else ("done" if why == "time" else "stopped")


def _dropped(err):
    """tcpdump's "N packets dropped by kernel" line, as a number."""
    for line in err.split("\n"):
        words = line.split()
        if len(words) >= 5 and words[1:5] == ["packets", "dropped", "by", "kernel"]:
            try:
                return int(words[0])
            except ValueError:
                return 0
    return 0
