"""The agent: one process, one thread, one poll loop (nlbwmon.c in spirit).

It wires the sources (conntrack, neighbours, leases) to the model
(devices, digests) on a scan timer, and serves the method table through
whatever parts are configured (JSON-RPC now; ubus, firewall, DNS names
join as parts). A part is any object with optional start(agent),
after_scan(agent, now_ms), reload(agent) and stop(agent) methods.
"""

import select
import sys

from . import config, conntrack, ctevents, detect, devices, digest, leases, neigh, plat, privileges
from . import __version__

ACCT_SYSCTL = "/proc/sys/net/netfilter/nf_conntrack_acct"
CONNTRACK_MAX = "/proc/sys/net/netfilter/nf_conntrack_max"
CONNTRACK_COUNT = "/proc/sys/net/netfilter/nf_conntrack_count"
TABLE_FULL = 0.99   # of nf_conntrack_max: the kernel drops new connections at 100 %


class Loop:
    """poll() over readers plus a handful of timers (a list: there are few,
    and MicroPython has no heapq built in)."""

    def __init__(self):
        self.poll = select.poll()
        self.readers = {}
        self.timers = []
        self.running = False

    def add_reader(self, obj, callback):
        fd = plat.poll_fd(obj)
        self.poll.register(obj, select.POLLIN)
        self.readers[fd] = (obj, callback)

    def remove_reader(self, obj):
        fd = plat.poll_fd(obj)
        if fd in self.readers:
            del self.readers[fd]
            try:
                self.poll.unregister(obj)
            except (OSError, KeyError, ValueError):
                pass

    def want_write(self, obj, on):
        """Also wake a reader's callback when obj is writable (a connect
        under way, bytes the socket did not take yet): the MQTT link."""
        self.poll.modify(obj, select.POLLIN | (select.POLLOUT if on else 0))

    def call_later(self, seconds, fn):
        handle = [plat.monotonic_ms() + int(seconds * 1000), fn]
        self.timers.append(handle)
        return handle

    def cancel(self, handle):
        if handle in self.timers:
            self.timers.remove(handle)

    def run_once(self, max_wait_ms=1000):
        now = plat.monotonic_ms()
        wait = max_wait_ms
        for due, _ in self.timers:
            wait = min(wait, max(0, due - now))
        try:
            events = self.poll.poll(wait)
        except OSError as e:
            if e.errno != 4:  # EINTR: a signal; its byte is in the wakeup fd
                raise
            events = []
        for obj, ev in events:
            entry = self.readers.get(plat.poll_fd(obj))
            if entry is not None:
                try:
                    entry[1]()
                except Exception as e:  # one bad peer or packet must not end the agent
                    plat.warn("reader failed: %s: %s" % (type(e).__name__, e))
        now = plat.monotonic_ms()
        for handle in [h for h in self.timers if h[0] <= now]:
            if handle in self.timers:
                self.timers.remove(handle)
                handle[1]()

    def run(self):
        self.running = True
        while self.running:
            self.run_once()


class Agent:
    def __init__(self, cfg, config_path=None, warnings=()):
        self.cfg = cfg
        self.config_path = config_path
        self.warnings = list(warnings)
        self.loop = Loop()
        self.listeners = []
        self.parts = []
        self.started = plat.wall()
        now = plat.monotonic_ms()
        self.devices = devices.Devices(cfg["max_devices"])
        self.digests = digest.Digests(cfg, now, self.started)
        self.router_ips = set()
        self.lan_nets = []
        self.scanner = None
        self.static = {}
        self.acct = None
        self.rates = {}
        self.last_scan_ms = None
        self.scan_ms = 0
        self.scans = 0
        self.unattributed = 0
        self.errors = {}
        self.stopping = False
        self.reload_wanted = False
        self.names = None  # names.Names sets itself here when it starts
        self.blocks = None  # and blocks.Blocks here
        self.anomalies = None  # and anomalies.Anomalies here
        self.lanwatch = None  # and lanwatch.LanWatch here
        self.detector = detect.Detector(cfg) if cfg["detect"] else None
        self.verdicts = []  # the last scan's, for the parts' after_scan (anomalies)
        self.table_max = None  # nf_conntrack_max, for the detector's table_hog rule
        self.events = None  # and ctevents.Events here
        self.captures = None  # and capture.Captures here
        self.mqtt = None  # and mqttlink.Link here, when a broker is configured
        self.mqtt_missing = None  # why not, when its package is not installed
        self.bridgecount = None  # and bridgecount.BridgeCounts, on an access point

    # -- parts --------------------------------------------------------------

    def build_parts(self):
        from . import anomalies, blocks, capture, jsonrpc, lanwatch, names
        self.parts.append(ctevents.Events(self.cfg))  # flows that end between scans
        self.parts.append(blocks.Blocks(self.cfg))
        # after blocks: it quarantines through them, and sees their expiry first
        self.parts.append(anomalies.Anomalies(self.cfg))
        self.parts.append(lanwatch.LanWatch(self.cfg))  # LAN-to-LAN attempts, from blocks' backend
        self.parts.append(names.Names(self.cfg))  # DNS names, owner names, ignore list
        self.parts.append(capture.Captures(self.cfg))  # a device's packets as pcap, on request
        if self.cfg["bridge_uplink"]:
            from . import bridgecount  # an access point: its clients' flows from the bridge
            self.parts.append(bridgecount.BridgeCounts(self.cfg))
        if self.cfg["mqtt_broker"]:
            self._add_mqtt()
        if self.cfg["rpc_socket"] or self.cfg["rpc_listen"]:
            self.parts.append(jsonrpc.Server())
            from . import web  # the visualizer page and /ubus, on that same listener
            self.parts.append(web.Web())
        from . import ubuslink  # object `spin` on ubus, where this host has ubusd
        self.parts.extend(ubuslink.parts(self.cfg))

    def _add_mqtt(self):
        # the client (and ssl, for TLS) only when a broker is set, and only
        # where package spin-mqtt put it: a router without it still counts,
        # blocks and quarantines, and says why it does not publish
        try:
            from . import mqttlink
        except ImportError as e:
            why = ("spin.mqtt_broker is set but the MQTT link is not installed"
                   " (opkg install spin-mqtt): MQTT off (%s)" % e)
            plat.warn(why)
            self.warnings.append(why)
            self.mqtt_missing = why
            return
        self.parts.append(mqttlink.Link(self.cfg))

    def emit(self, name, data):
        for fn in list(self.listeners):
            try:
                fn(name, data)
            except Exception as e:  # a broken listener must not stop the scan
                plat.warn("event listener failed on %s: %s" % (name, e))

    def _each_part(self, method, *args):
        for p in self.parts:
            fn = getattr(p, method, None)
            if fn is None:
                continue
            try:
                fn(self, *args)
            except Exception as e:
                self.errors[type(p).__name__] = "%s: %s" % (method, e)
                plat.warn("%s.%s failed: %s" % (type(p).__name__, method, e))

    # -- the data path ------------------------------------------------------

    def enable_acct(self):
        """Byte counters need nf_conntrack_acct=1; say so when we cannot."""
        try:
            with open(ACCT_SYSCTL, "w") as f:
                f.write("1\n")
            self.acct = True
        except OSError as e:
            cur = plat.read_file(ACCT_SYSCTL)
            self.acct = bool(cur and cur.strip() == b"1")
            if not self.acct:
                self.errors["acct"] = "cannot turn on %s: %s" % (ACCT_SYSCTL, e)
                plat.warn(self.errors["acct"])

    def read_network(self):
        """Our own addresses and the LAN prefixes that make a device."""
        try:
            addrs = neigh.read_addresses()
        except OSError as e:
            self.errors["addresses"] = str(e)
            addrs = []
        self.router_ips = set(ip for _, ip, _ in addrs)
        nets = list(self.cfg["lan_net"])
        if not nets:
            idx = neigh.ifindex(self.cfg["lan_ifname"])
            nets = neigh.lan_prefixes(addrs, idx) if idx is not None else []
            if not nets:
                self.errors["lan"] = "no addresses on %s and no lan_net set" % self.cfg["lan_ifname"]
        if nets:
            self.errors.pop("lan", None)
        self.lan_nets = nets
        lan = conntrack.Lan(nets, self.router_ips)
        if self.scanner is None:
            self.scanner = conntrack.Scanner(lan, self.cfg["max_flows"])
        else:
            self.scanner.lan = lan

    def refresh_devices(self, now_wall):
        neighbours = neigh.read_neighbours(self.cfg["arp_file"], self.cfg["lan_ifname"])
        lease_map = leases.read(self.cfg["leases_file"])
        fresh = self.devices.update(neighbours, lease_map, self.static,
                                    self.router_ips, now_wall)
        for mac in list(self.digests.devices):
            if mac not in self.devices.table:
                self.digests.forget(mac)
        if self.detector is not None:
            for mac in list(self.detector.devices):
                if mac not in self.devices.table:
                    self.detector.forget(mac)
        return fresh

    def account(self, ip, remote, port, proto, bo, bi, po, pi, new, unreplied, refused=False):
        """One flow's news (new, or its counters moved) from any source:
        the snapshot scanner calls it per changed line, and a source that
        sees flows end between snapshots may too (refused: a TCP attempt
        answered by a reset, which a snapshot never holds). Everything per
        device that counts flows is fed from here, so nothing counts twice."""
        mac = self.devices.by_ip.get(ip)
        if mac is None:
            self.unattributed += 1
            return
        self.digests.add(mac, remote, port, bo, bi, po, pi, new, unreplied)
        names = self.names
        if names is not None and remote in names.endpoints.table:
            # a flow of the first snapshot began at a time nobody knows
            names.flow_seen(remote, new and self.last_scan_ms is not None)
        # the first scan reports every flow already in the table as new:
        # minutes or days of them are no rate, so the detector starts after it
        if self.detector is not None and self.last_scan_ms is not None:
            kind = detect.classify(remote, self.router_ips, self.devices.by_ip)
            self.detector.flow(mac, remote, port, proto, bo, bi, po, pi, new, unreplied,
                               refused, kind)

    def scan(self):
        t0 = plat.monotonic_ms()
        now_wall = plat.wall()
        self.check_table()
        fresh = self.refresh_devices(now_wall)
        by_ip = self.devices.by_ip
        digests = self.digests
        before = {}
        for mac, d in digests.devices.items():
            before[mac] = (d.open[0], d.open[1])
        if self.events is not None:
            # flows that ended since the last scan leave the table first:
            # the snapshot's sweep would otherwise lose their last bytes
            self.events.drain()
        try:
            live = self.scanner.scan_file(self.cfg["conntrack_file"], self.account)
            self.errors.pop("conntrack", None)
        except OSError as e:
            live = {}
            self.errors["conntrack"] = "%s: %s" % (self.cfg["conntrack_file"], e)
        # parts that are sources too (the LAN watch) bring their news now,
        # so it joins this scan's figures rather than the next one's
        self._each_part("collect", plat.monotonic_ms())
        if self.devices.found:
            # devices those sources found (an access point's clients) are
            # announced below with those of the neighbour table
            fresh += [m for m in self.devices.found if m in self.devices.table]
            self.devices.found = []
        now = plat.monotonic_ms()
        dt = (now - self.last_scan_ms) / 1000.0 if self.last_scan_ms else 0
        self.last_scan_ms = now
        per_mac = {}
        for ip, n in live.items():
            mac = by_ip.get(ip)
            if mac is not None:
                per_mac[mac] = per_mac.get(mac, 0) + n
        for d in self.devices.table.values():
            n = per_mac.get(d.mac, 0)
            d.live = n
            dd = digests.devices.get(d.mac)
            if dd is None:
                self.rates[d.mac] = (0, 0)
                continue
            b = before.get(d.mac, (0, 0))
            moved = (dd.open[0] - b[0], dd.open[1] - b[1])
            if n or moved[0] or moved[1]:
                d.last_seen = now_wall
            self.rates[d.mac] = (int(moved[0] / dt), int(moved[1] / dt)) if dt > 0 else (0, 0)
        if self.detector is not None:
            # before the parts' after_scan: the response reads them there
            try:
                self.verdicts = self.detector.end_scan(now_wall, dt, per_mac, self.table_max)
                self.errors.pop("detect", None)
            except Exception as e:  # a detector bug must not cost the digests their scan
                self.verdicts = []
                self.errors["detect"] = "%s: %s" % (type(e).__name__, e)
                plat.warn("detector failed: %s" % self.errors["detect"])
        for mac in fresh:
            self.emit("spin.device", self.device_info(mac))
        closed = digests.tick(now, now_wall)
        if closed:
            self.emit("spin.digest", self.flow_digest(closed[-1]))
        self.scans += 1
        self.scan_ms = plat.monotonic_ms() - t0
        self._each_part("after_scan", now)

    def flow_digest(self, n):
        """The closed bucket n of every device: what an agent publishes."""
        out = []
        for mac in self.digests.devices:
            b = self.digests.closed(mac, n)
            b["mac"] = mac
            if self.names:
                self.names.label_bucket(b)["domains"] = self.names.closed_domains_of(mac, n)
            out.append(b)
        return {"t": self.digests.clock.label(n),
                "bucket_seconds": self.digests.bucket_ms // 1000, "devices": out}

    # -- reading (the API's read methods land here) -------------------------

    def status(self):
        s = self.scanner
        return {
            "version": __version__,
            "uptime": int(plat.wall() - self.started),
            "scans": self.scans,
            "scan_interval": self.cfg["scan_interval"],
            "last_scan_ms": self.scan_ms,
            "flows": s.seen if s else 0,
            "flows_skipped": s.skipped if s else 0,
            # flows seen in the last scan that the full flow table could not
            # keep (max_flows): counted as new connections, without bytes
            "flows_dropped": s.dropped if s else 0,
            # flows the table stopped at below max_flows: the heap (on
            # MicroPython, heap_size) had no room to grow it; 0: never
            "flow_table_heap_limit": s.heap_limited if s else 0,
            # flows that began before accounting was on carry no byte
            # counters until they end (the kernel adds them at creation)
            "flows_without_counters": s.uncounted if s else 0,
            "malformed_lines": s.malformed if s else 0,
            "unattributed": self.unattributed,
            "devices": len(self.devices.table),
            "devices_dropped": self.devices.dropped,
            "acct": bool(self.acct),
            "conntrack_has_counters": bool(s and s.acct),
            "lan": self.lan_nets,
            "router_ips": sorted(self.router_ips),
            "bucket_seconds": self.digests.bucket_ms // 1000,
            "digest_remotes_folded": self.digests.folded,
            "digest_remote_table": len(self.digests.table),
            "digest_top_dropped": self.digests.table.full,
            "rss_kb": plat.rss_kb(),
            # uid 0 with every capability: procd had no ujail (README: Privileges)
            "privileges": privileges.current(),
            "errors": dict(self.errors),
            "warnings": self.warnings[-20:],
            "names": self.names.status() if self.names else None,
            "firewall": self.blocks.status() if self.blocks else None,
            "anomalies": self.anomalies.status() if self.anomalies else None,
            "visibility": (self.lanwatch.status() if self.lanwatch
                           else {"lan": "not seen: no LAN watch", "lan_attempts": 0,
                                 "lan_watch_full": 0}),
            "detect": self.detect_status(),
            "events": self.events.status() if self.events else {"state": "off: not started"},
            "captures": self.captures.status() if self.captures else None,
            "mqtt": (self.mqtt.status() if self.mqtt
                     else {"state": "off", "error": self.mqtt_missing} if self.mqtt_missing else None),
            "bridge": self.bridgecount.status() if self.bridgecount else None,
        }

    def detect_status(self):
        if self.detector is None:
            return {"on": False, "mode": self.cfg["detect_mode"]}
        s = self.detector.status()
        s["table_max"] = self.table_max
        return s

    def device_info(self, mac):
        d = self.devices.get(mac)
        if d is None:
            return None
        cur = self.digests.current(mac)
        # the open bucket and the last closed one: a camera streaming
        # since hours has a top destination in the first second of a minute
        recent = {"top": self.digests.recent_top(mac)}
        if self.names:
            dd = self.digests.devices.get(mac)
            self.names.label_bucket(cur, per_remote=dd.per_remote if dd else {})
            self.names.label_bucket(recent)
        rate = self.rates.get(mac, (0, 0))
        return {
            "mac": d.mac, "name": d.name, "hostname": d.hostname,
            "static_name": d.static_name, "owner_name": d.owner_name,
            "ips": sorted(d.ips), "first_seen": int(d.first_seen),
            "last_seen": int(d.last_seen), "connections": d.live,
            "rate_out": rate[0], "rate_in": rate[1],
            "bucket": cur,
            "recent": recent,
            # by whom and why: an automatic one names its anomaly
            "quarantine": self.blocks.quarantine_of(mac) if self.blocks else None,
        }

    def device_page(self, offset, limit):
        """One page of devices in MAC order and how many there are: only
        the page is built and labelled."""
        macs = sorted(self.devices.table)
        return [self.device_info(mac) for mac in macs[offset:offset + limit]], len(macs)

    def flow_page(self, mac, offset, limit):
        """One page of live flows, heaviest first, and how many there are;
        read fresh from the table: the scan keeps no per-flow records
        (memory), and an API call can afford one more read. Only the page
        becomes dicts and gets names."""
        data = b"".join(conntrack.read_chunks(self.cfg["conntrack_file"]))
        flows, _ = conntrack.parse(data, self.scanner.lan)
        data = None
        mine = []
        for f in flows:
            owner = self.devices.mac_for(f.device_ip)
            if owner is None or (mac is not None and owner != mac):
                continue
            mine.append((-(f.bytes_out + f.bytes_in), len(mine), owner, f))
        flows = None
        mine.sort(key=lambda t: (t[0], t[1]))
        total = len(mine)
        end = total if limit is None else offset + limit
        out = []
        for _, _, owner, f in mine[offset:end]:
            d = f.as_dict()
            d["mac"] = owner
            if self.names:
                self.names.label_flow(d)
            out.append(d)
        return out, total

    def history(self, mac, minutes):
        h = self.digests.history(mac, minutes)
        h["mac"] = mac
        return self.names.label_history(h) if self.names else h

    # destinations drawn, all devices together, beyond the blocked and allowed
    # ones: with 512 devices a per-device limit alone would not bound the
    # reply. An edge and its endpoint node take at most ~550 bytes (IPv6,
    # one 253-character name and its domain): 400 of them stay near 220 KB
    # (tests/test_reply_bounds.py measures it). Past 400 devices only the
    # blocked and allowed are drawn; "others" still counts everything.
    GRAPH_EDGES = 400

    def graph(self, mac=None, limit=20):
        """Devices and the remotes they talk to, edges weighted by bytes in
        the open bucket plus the last closed one; a remote blocked for a
        device stays, at 0 bytes, when its traffic has aged out.

        Bounded by design: per device the `limit` heaviest destinations
        (fewer when many devices share GRAPH_EDGES; the reply's "limit"
        says how many), plus every remote
        blocked for it or allowed; the rest is one summary per device in
        "others": {mac: {"count", "bytes"}} (bytes exact; the count is
        estimated past digest_remotes remotes in a bucket). `mac` draws that device
        alone. Ignored remotes are neither drawn nor counted. An endpoint
        node's bytes are those of the edges drawn to it; it carries its
        newest name only (the picture shows one; flows have them all)."""
        nodes = []
        edges = []
        others = {}
        remotes = {}
        last = self.digests.open_n - 1
        macs = [mac] if mac is not None else list(self.digests.devices)
        macs = [m for m in macs if m in self.digests.devices and self.devices.get(m) is not None]
        if macs:
            limit = min(limit, self.GRAPH_EDGES // len(macs))
        allowed = self.blocks.allowed_remotes() if self.blocks else ()
        ignored = self.names.is_ignored if self.names else None
        for m in macs:
            dd = self.digests.devices[m]
            d = self.devices.get(m)
            nodes.append({"id": m, "kind": "device", "name": d.name, "ips": sorted(d.ips)})
            weight = dict(dd.per_remote)
            if dd.fine.holds(last):
                for r, b in dd.fine.top_list(last):
                    weight[r] = weight.get(r, 0) + b
            pinned = set(self.blocks.blocked_remotes(m)) if self.blocks else set()
            for r in pinned:
                weight.setdefault(r, 0)
            for r in allowed:
                if r in weight:
                    pinned.add(r)
            rest = []
            for r, b in weight.items():
                if ignored is not None and ignored(r):
                    continue
                if r in pinned:
                    edges.append({"from": m, "to": r, "bytes": b})
                    remotes[r] = remotes.get(r, 0) + b
                else:
                    rest.append((b, r))
            rest.sort(reverse=True)
            for b, r in rest[:limit]:
                edges.append({"from": m, "to": r, "bytes": b})
                remotes[r] = remotes.get(r, 0) + b
            # the digest itself keeps a bounded number of remotes by name
            # (digest_remotes): the rest are already one sum, and their
            # number is the distinct count's estimate less those kept
            left = dd.others
            for b, _ in rest[limit:]:
                left += b
            unnamed = max(0, dd.remote_count() - len(dd.per_remote)) if dd.others else 0
            others[m] = {"count": max(0, len(rest) - limit) + unnamed, "bytes": left}
        for r, b in remotes.items():
            nodes.append({"id": r, "kind": "endpoint", "bytes": b})
        g = {"nodes": nodes, "edges": edges, "others": others, "limit": limit}
        if self.names is None:
            return g
        g = self.names.label_graph(g)
        for n in g["nodes"]:
            if n.get("names"):
                n["names"] = n["names"][:1]
        return g

    # -- running ------------------------------------------------------------

    def read_table_max(self):
        raw = plat.read_file(CONNTRACK_MAX)
        try:
            self.table_max = int(raw.strip()) if raw else None
        except ValueError:
            self.table_max = None

    def check_table(self):
        """nf_conntrack_max may change at any time (sysctl), and a full
        table drops every new connection, blocked or not: read both each
        scan so the detector's table_hog rule and `status` say what holds."""
        self.read_table_max()
        raw = plat.read_file(CONNTRACK_COUNT)
        try:
            count = int(raw.strip()) if raw else None
        except ValueError:
            count = None
        if count is not None and self.table_max and count >= self.table_max * TABLE_FULL:
            self.errors["conntrack_table"] = ("full: %d of %d entries (nf_conntrack_max); new "
                                              "connections are dropped" % (count, self.table_max))
        else:
            self.errors.pop("conntrack_table", None)

    def start(self):
        self.read_table_max()
        self.enable_acct()
        self.read_network()
        self.static = config.static_hosts(self.cfg["dhcp_config"])
        self.build_parts()
        self._each_part("start")
        self.scan()
        self._schedule()

    def _schedule(self):
        def tick():
            if self.stopping:
                return
            try:
                self.scan()
            except Exception as e:  # one bad scan must not end the agent
                self.errors["scan"] = "%s: %s" % (type(e).__name__, e)
                plat.warn("scan failed: %s: %s" % (type(e).__name__, e))
            self._schedule()
        self.loop.call_later(self.cfg["scan_interval"], tick)

    def reload(self):
        """SIGHUP: read the configuration again, keep every digest."""
        if self.config_path is None:
            return
        cfg, warnings = config.load(self.config_path)
        for w in warnings:
            plat.warn(w)
        kept = ("bucket_seconds", "fine_buckets", "coarse_buckets", "coarse_factor", "top_remotes",
                "digest_remotes", "digest_remote_table")
        for k in kept:
            if cfg[k] != self.cfg[k]:
                plat.warn("%s changed: takes effect after a restart (history is kept)" % k)
                cfg[k] = self.cfg[k]
        self.cfg = cfg
        self.warnings = warnings
        self.read_network()
        self.read_table_max()
        self.static = config.static_hosts(cfg["dhcp_config"])
        if not cfg["detect"]:
            self.detector = None
            self.verdicts = []
        elif self.detector is None:
            self.detector = detect.Detector(cfg)
        else:
            self.detector.configure(cfg)  # new thresholds, every baseline kept
        self._each_part("reload")
        plat.info("configuration reloaded")

    def stop(self):
        self.stopping = True
        self.loop.running = False

    def run(self):
        plat.tune_gc()
        wake = plat.install_signals(self.stop, self._want_reload)
        if wake is not None:
            self.loop.add_reader(wake, lambda: self._woken(wake))
        self.start()
        plat.info("agent %s running: lan %s, scan every %ds"
                  % (__version__, " ".join(self.lan_nets) or "?", self.cfg["scan_interval"]))
        try:
            self.loop.run()
        finally:
            self._each_part("stop")
            plat.info("agent stopped")

    def _want_reload(self):
        self.reload_wanted = True

    def _woken(self, wake):
        plat.drain(wake)
        if self.reload_wanted:
            self.reload_wanted = False
            self.reload()


def main(config_path):
    cfg, warnings = config.load(config_path)
    for w in warnings:
        plat.warn(w)
    agent = Agent(cfg, config_path, warnings)
    try:
        agent.run()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "/etc/config/spin"))
