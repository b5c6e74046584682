"""The decisions: blocks, quarantines, allows; kept in the kernel.

The owner makes them, and so does the detector (through the `anomalies`
part): an automatic quarantine is a quarantine record that carries the
anomaly id that caused it ("by": "detector" where it is shown), so both
kinds live in one store and the firewall renders one state. `firewall`
imports nothing of this module: it is handed the state and renders it.

The store is one JSON file under state_dir (blocks.json), written
atomically and only when a decision changes. Block ids count up and are
kept in the file, so an id means the same block after a crash or a
restart. Expiry is a wall-clock time in the file (the only clock that
survives a reboot) and a monotonic deadline in memory (so an NTP jump
while running neither ends nor extends a block).

`Blocks` is also the agent part that keeps the firewall in step with the
store: it applies the whole rule set at start, after every change, when a
device's addresses change, and when a scan finds the table gone or
incomplete (`nft flush ruleset`, `firewall stop`, a firewall3 reload).
Stop leaves the rules in place: blocks hold while the agent is down.
"""

from . import errors, firewall, plat

ApiError = errors.ApiError
INVALID = errors.INVALID_ARGUMENT
NOT_FOUND = errors.NOT_FOUND

PROTOS = ("tcp", "udp", "icmp")
BLOCK_KEYS = ("mac", "ip", "remote", "port", "proto")
RETRY_MAX_S = 60
STICKY_MAX = 16   # addresses kept per device with a decision


def router_macs():
    """MACs of the router's own interfaces (never blockable)."""
    import os
    macs = set()
    try:
        names = os.listdir("/sys/class/net")
    except OSError:
        return macs
    for n in names:
        data = plat.read_file("/sys/class/net/%s/address" % n)
        if data:
            macs.add(data.decode().strip().lower())
    macs.discard("00:00:00:00:00:00")
    return macs


def boot_clock():
    """(this boot's id, seconds since boot) from the kernel, or (None, None).
    Unlike the wall clock, seconds since boot do not jump when NTP arrives,
    and unlike the monotonic clock they mean the same in the next agent of
    this boot: a block made before NTP keeps its length across a restart."""
    bid = plat.read_file("/proc/sys/kernel/random/boot_id")
    up = plat.read_file("/proc/uptime")
    try:
        return bid.decode().strip(), float(up.decode().split()[0])
    except (AttributeError, ValueError, IndexError):
        return None, None


def empty_store():
    return {"version": 1, "next_id": 1, "blocks": [], "quarantines": [], "allows": []}


class Blocks:
    """Agent part and block store (api handlers call the methods below)."""
    name = "blocks"

    def __init__(self, cfg, backend=None):
        self.cfg = cfg
        self.path = (cfg.get("state_dir") or "/etc/spin") + "/blocks.json"
        self.backend = backend or firewall.choose(cfg)
        self.store = empty_store()
        self.saved = None
        self.deadlines = {}   # key -> monotonic ms when it expires
        self.timers = {}
        self.applied = None   # the state the kernel holds, as rendered
        self.applied_state = empty_store()
        self.error = None
        self.retry_ms = 0
        self.retry_wait = 1
        self.base = {}        # owner -> packets dropped by earlier tables
        self.known = {}       # mac -> addresses seen, oldest first
        self.restores = 0
        self.agent = None
        self.load()

    # -- the file -----------------------------------------------------------

    def load(self):
        data = plat.read_file(self.path)
        if data is None:
            return
        try:
            store = plat.json.loads(data.decode())
            for k in ("blocks", "quarantines", "allows"):
                if not isinstance(store.get(k), list):
                    raise ValueError("no %s list" % k)
            if not isinstance(store.get("next_id"), int):
                raise ValueError("no next_id")
        except (ValueError, AttributeError) as e:
            plat.keep_bad(self.path, data, e)
            return
        self.store = store
        self.saved = self._text()
        now_wall, now = plat.wall(), plat.monotonic_ms()
        boot, up = boot_clock()
        for key, rec in self._timed():
            # never longer than it was given: a router that booted without
            # NTP may believe it is years earlier than when the block began
            left = min(rec["expires"] - now_wall, rec["expires"] - rec["created"])
            ends = rec.get("up_expires")
            if boot is not None and rec.get("boot") == boot and isinstance(ends, (int, float)):
                # the same boot: the clock since boot knows, whatever NTP
                # did to the wall clock since the decision (a block made
                # before NTP arrived is not over when the clock jumps a day)
                left = min(ends - up, rec["expires"] - rec["created"])
            # `created` is stored cut to the second, so the block began up
            # to a second later than it says: end a second later rather
            # than early (a 1-minute block read back ended at 59 s)
            self.deadlines[key] = now + int(left * 1000) + 1000

    def _text(self):
        return plat.json.dumps(self.store)

    def save(self):
        text = self._text()
        if text == self.saved:
            return
        plat.write_state(self.path, text)
        self.saved = text

    def persist(self, before):
        """Save a decision, or undo it: a decision the router would forget
        at the next restart is refused rather than half made."""
        try:
            self.save()
        except OSError as e:
            self.store = plat.json.loads(before)
            raise ApiError(errors.UNKNOWN_ERROR, "cannot save %s: %s" % (self.path, e))

    def _timed(self):
        for b in self.store["blocks"]:
            if b.get("expires"):
                yield ("block", b["id"]), b
        for q in self.store["quarantines"]:
            if q.get("expires"):
                yield ("quarantine", q["mac"]), q

    # -- the kernel ---------------------------------------------------------

    def addresses(self):
        """{mac: [ips]} of the devices our decisions name.

        Sticky: an address stays while its neighbour entry comes and goes
        (an idle IPv6 address drops out of the neighbour table, and the
        rules should neither flap nor let inbound traffic through), until
        another device shows up with it or the device has had more than
        STICKY_MAX since."""
        macs = set()
        for k in ("blocks", "quarantines", "allows"):
            for r in self.store[k]:
                if r.get("mac"):
                    macs.add(r["mac"])
        devs = getattr(self.agent, "devices", None)
        table = getattr(devs, "table", None) or {}
        by_ip = getattr(devs, "by_ip", None) or {}
        out = {}
        for mac in sorted(macs):
            known = self.known.get(mac) or []
            d = table.get(mac)
            for ip in sorted(d.ips) if d is not None else ():
                if ip in known:
                    known.remove(ip)
                known.append(ip)             # most recently seen last
            known = [ip for ip in known if by_ip.get(ip, mac) == mac][-STICKY_MAX:]
            self.known[mac] = known
            out[mac] = sorted(known)
        for mac in list(self.known):
            if mac not in macs:
                del self.known[mac]
        return out

    def state(self):
        s = dict(self.store)
        s["devices"] = self.addresses()
        return s

    def apply(self, why):
        state = self.state()
        seen = self.backend.counters()
        err = self.backend.apply(state)
        if err:
            self.error = err
            plat.warn("firewall (%s): %s" % (why, err))
            self.retry_ms = plat.monotonic_ms() + self.retry_wait * 1000
            self.retry_wait = min(self.retry_wait * 2, RETRY_MAX_S)
            if self.agent is not None:
                self.agent.errors["firewall"] = "error: " + err
            return err
        for owner, n in (seen or {}).items():
            self.base[owner] = self.base.get(owner, 0) + n
        self.applied = plat.json.dumps(state)
        self.applied_state = plat.json.loads(self.applied)   # a copy: the store changes
        self.error = None
        self.retry_wait = 1
        if self.agent is not None:
            self.agent.errors.pop("firewall", None)
        return None

    def dropped(self):
        now = self.backend.counters() or {}
        out = dict(self.base)
        for owner, n in now.items():
            out[owner] = out.get(owner, 0) + n
        return out

    def forget_connections(self, ips, remote=None):
        self.backend.forget(ips, remote)

    # -- part ---------------------------------------------------------------

    # -- the init script's stop ---------------------------------------------
    #
    # rc.common's stop runs stop_service (which cleans our rules away) before
    # procd sends TERM; a scan in between would restore them (after_scan's
    # self-check) and leave them with no agent. So stop_service first marks
    # run_dir/stopping: while it is there the self-check restores nothing,
    # and an agent that ends with it there takes its own rules away too (in
    # case a restore was under way when the mark appeared). A crash or kill -9
    # leaves no mark, so the rules stay and keep blocking.

    def _stop_mark(self):
        return self.cfg["run_dir"].rstrip("/") + "/stopping"

    def stopping(self):
        return plat.read_file(self._stop_mark()) is not None

    def start(self, agent):
        self.agent = agent
        agent.blocks = self
        self._uplink(agent)
        plat.remove(self._stop_mark())
        self.expire(agent)
        if not self.error:
            self.apply("start")
        for key in list(self.deadlines):
            self._arm(key)

    def after_scan(self, agent, now_ms):
        self.expire(agent)
        if self.stopping():
            return
        if self.error:
            if now_ms >= self.retry_ms:
                self.apply("retry")
            return
        # checked against what was loaded, so a flushed table is counted
        # even when a device's new address is due at the same time
        if not self.backend.intact(self.applied_state):
            self.restores += 1
            plat.warn("firewall: our rules were gone or changed; restoring")
            self.apply("restore")
        elif plat.json.dumps(self.state()) != self.applied:
            self.apply("addresses changed")

    def reload(self, agent):
        new = firewall.choose(agent.cfg)
        if new.name != self.backend.name:
            firewall.remove_all(self.backend)
            self.backend = new
        self.cfg = agent.cfg
        if getattr(self.backend, "bridge", None) not in (None, True):
            self.backend.bridge = None     # try the bridge table again
        if hasattr(self.backend, "lan_watch"):
            # the LAN watch's options, and another try if the kernel refused it
            self.backend.lan_watch = firewall.lan_watch_of(agent.cfg)
            self.backend.watch = None
        self._uplink(agent)
        self.apply("reload")

    def _uplink(self, agent):
        """On an access point: its uplink and LAN prefixes for the bridge
        table (lan_net, else the agent's, read from lan_ifname)."""
        if hasattr(self.backend, "uplink"):
            self.backend.uplink = firewall.uplink_of(agent.cfg, getattr(agent, "lan_nets", ()))

    def stop(self, agent):
        # the rules stay: blocks hold while the agent is down, and the next
        # start re-applies the same state -- unless the init script is
        # stopping the service (see stopping)
        for h in self.timers.values():
            agent.loop.cancel(h)
        self.timers = {}
        if self.stopping():
            firewall.remove_all(self.backend)

    def status(self):
        if self.backend.name == "none":
            state = "off"
        else:
            state = "error" if self.error else "ok"
        out = {"firewall": state, "backend": self.backend.name, "error": self.error,
                "blocks": len(self.store["blocks"]),
                "quarantines": len(self.store["quarantines"]),
                "allows": len(self.store["allows"]), "restores": self.restores}
        bridge = getattr(self.backend, "bridge", None)
        if bridge is not None:
            out["bridge"] = "ok" if bridge is True else bridge
        return out

    # -- expiry -------------------------------------------------------------

    def _arm(self, key):
        if self.agent is None or key not in self.deadlines:
            return
        old = self.timers.pop(key, None)
        if old is not None:
            self.agent.loop.cancel(old)
        wait = max(0, self.deadlines[key] - plat.monotonic_ms()) / 1000.0
        self.timers[key] = self.agent.loop.call_later(wait, lambda: self.expire(self.agent))

    def _disarm(self, key):
        self.deadlines.pop(key, None)
        h = self.timers.pop(key, None)
        if h is not None and self.agent is not None:
            self.agent.loop.cancel(h)

    def expire(self, agent):
        now = plat.monotonic_ms()
        due = [k for k, t in self.deadlines.items() if t <= now]
        if not due:
            return
        for key in due:
            self._disarm(key)
            kind, ident = key
            if kind == "block":
                rec = self._block(ident)
                if rec is not None:
                    self.store["blocks"].remove(rec)
                    self._emit("spin.block", {"action": "expired", "block": self.describe(rec)})
            else:
                rec = self._quarantine(ident)
                if rec is not None:
                    self.store["quarantines"].remove(rec)
                    self._emit("spin.quarantine", {"action": "expired", "mac": ident,
                                                   "reason": rec.get("reason") or "",
                                                   "anomaly": rec.get("anomaly")})
        try:
            self.save()
        except OSError as e:
            plat.warn("cannot save %s: %s" % (self.path, e))
        self.apply("expiry")

    # -- decisions (called by the api handlers) ------------------------------

    def _emit(self, name, data):
        if self.agent is not None:
            self.agent.emit(name, data)

    def _block(self, ident):
        for b in self.store["blocks"]:
            if b["id"] == ident:
                return b
        return None

    def blocked_remotes(self, mac):
        """The single addresses blocked for this device (not ranges): the
        picture keeps them after their traffic has aged out, so the owner
        still sees, and can lift, what they blocked there."""
        return [b["remote"] for b in self.store["blocks"]
                if b.get("mac") == mac and b.get("remote") and "/" not in b["remote"]]

    def allowed_remotes(self):
        """The single addresses the owner allowed: drawn for every device
        that talks to them, however light the traffic."""
        return [a["remote"] for a in self.store["allows"]
                if a.get("remote") and "/" not in a["remote"]]

    def _quarantine(self, mac):
        for q in self.store["quarantines"]:
            if q["mac"] == mac:
                return q
        return None

    def _allowed_mac(self, mac):
        return any(a.get("mac") == mac for a in self.store["allows"])

    def is_allowed(self, mac):
        """The owner allowed this device: nothing automatic may block it."""
        return self._allowed_mac(mac)

    def quarantine_of(self, mac):
        """The device's quarantine as the API shows it, or None."""
        q = self._quarantine(mac)
        if q is None:
            return None
        return {"mac": q["mac"], "name": self.name_of(q["mac"]),
                "created": q["created"], "expires": q.get("expires"),
                "reason": q.get("reason") or "",
                # who decided it: the detector's carry the anomaly's id
                "by": "detector" if q.get("anomaly") else "owner",
                "anomaly": q.get("anomaly")}

    def _router_ips(self):
        return set(getattr(self.agent, "router_ips", None) or ())

    def _check_target(self, mac=None, ip=None, remote=None):
        if mac is not None:
            if int(mac[:2], 16) & 1:
                raise ApiError(INVALID, "mac: %s is a group address, not a device" % mac)
            if mac in router_macs():
                raise ApiError(INVALID, "mac: %s is the router's own" % mac)
        for r in self._router_ips():
            if ip is not None and ip == r:
                raise ApiError(INVALID, "ip: %s is the router's own address" % ip)
            if remote is not None and firewall.contains(remote, r):
                raise ApiError(INVALID, "remote: %s holds the router's own address %s" % (remote, r))

    def _expiry(self, minutes, now):
        if not minutes:
            return None, None
        return now + minutes * 60, plat.monotonic_ms() + minutes * 60000

    def _boot_expiry(self, rec, minutes):
        """Also the end as seconds since this boot (see load)."""
        boot, up = boot_clock()
        if minutes and boot is not None:
            rec["boot"] = boot
            rec["up_expires"] = round(up + minutes * 60, 2)

    def name_of(self, mac):
        table = getattr(getattr(self.agent, "devices", None), "table", None) or {}
        d = table.get(mac)
        return d.name if d is not None and d.name else None

    def describe(self, b):
        """A block as the API shows it, with a sentence saying what it is."""
        who = "every device"
        if b.get("mac"):
            who = self.name_of(b["mac"]) or b["mac"]
        elif b.get("ip"):
            who = b["ip"]
        what = who
        if b.get("remote"):
            what += " to " + b["remote"]
        if b.get("proto") or b.get("port"):
            what += " %s%s" % (b.get("proto") or "tcp+udp",
                               "/%d" % b["port"] if b.get("port") else "")
        out = {k: b.get(k) for k in BLOCK_KEYS}
        out.update({"id": b["id"], "what": what, "created": b["created"],
                    "expires": b.get("expires"), "note": b.get("note") or "",
                    "active": not (b.get("mac") and self._allowed_mac(b["mac"]))})
        return out

    def block(self, a):
        mac, ip = a.get("mac"), a.get("ip")
        remote = firewall.normal_prefix(a["remote"]) if a.get("remote") else None
        port, proto = a.get("port"), a.get("proto")
        if mac and ip:
            raise ApiError(INVALID, "give mac or ip, not both")
        if not (mac or ip or remote or port or proto):
            raise ApiError(INVALID, "say what to block: mac, ip, remote, port or proto")
        if proto is not None:
            proto = proto.lower()
            if proto not in PROTOS:
                raise ApiError(INVALID, "proto: %r is not one of %s" % (a["proto"], ", ".join(PROTOS)))
            if proto == "icmp" and port:
                raise ApiError(INVALID, "port: icmp has no ports")
        if ip and remote and firewall.family(ip) != firewall.family(remote):
            raise ApiError(INVALID, "ip %s and remote %s are not of one family" % (ip, remote))
        self._check_target(mac, ip, remote)
        if mac and self._allowed_mac(mac):
            raise ApiError(INVALID, "%s is allowed; disallow it first" % mac)
        rec = {"mac": mac, "ip": ip, "remote": remote, "port": port, "proto": proto}
        for b in self.store["blocks"]:
            same_who = b.get("mac") == mac and b.get("ip") == ip
            if same_who and all(b.get(k) == rec[k] for k in BLOCK_KEYS):
                raise ApiError(INVALID, "already blocked: block %d" % b["id"])
            if (same_who and remote and b.get("remote") and not (port or proto)
                    and not (b.get("port") or b.get("proto")) and firewall.overlaps(remote, b["remote"])):
                raise ApiError(INVALID, "%s overlaps block %d (%s)" % (remote, b["id"], b["remote"]))
        now = int(plat.wall())
        expires, deadline = self._expiry(a.get("minutes"), now)
        rec.update({"id": self.store["next_id"], "created": now,
                    "expires": expires, "note": a.get("note") or ""})
        self._boot_expiry(rec, a.get("minutes"))
        before = self._text()
        self.store["next_id"] += 1
        self.store["blocks"].append(rec)
        self.persist(before)
        self.apply("block %d" % rec["id"])
        if deadline is not None:
            self.deadlines[("block", rec["id"])] = deadline
            self._arm(("block", rec["id"]))
        ips = self.addresses().get(mac, []) if mac else ([ip] if ip else [])
        if not (port or proto):
            self.forget_connections(ips, remote)
        self._emit("spin.block", {"action": "block", "block": self.describe(rec)})
        return {"id": rec["id"]}

    def unblock(self, ident):
        rec = self._block(ident)
        if rec is None:
            raise ApiError(NOT_FOUND, "no block %d" % ident)
        before = self._text()
        self.store["blocks"].remove(rec)
        self.persist(before)
        self._disarm(("block", ident))
        self.apply("unblock %d" % ident)
        self._emit("spin.block", {"action": "unblock", "block": self.describe(rec)})
        return {"id": ident}

    def listing(self):
        dropped = self.dropped()
        blocks = []
        for b in sorted(self.store["blocks"], key=lambda b: b["id"]):
            d = self.describe(b)
            d["dropped"] = dropped.get("block %d" % b["id"], 0)
            blocks.append(d)
        qs = []
        for q in self.store["quarantines"]:
            d = self.quarantine_of(q["mac"])
            d["dropped"] = dropped.get("quarantine " + q["mac"], 0)
            qs.append(d)
        allows = [{k: v for k, v in a.items() if v is not None} for a in self.store["allows"]]
        return {"blocks": blocks, "quarantines": qs, "allows": allows,
                "firewall": self.status()}

    def quarantine(self, a):
        """The owner's quarantine (the API's arguments), or the detector's:
        then a also holds "anomaly" (its id) and "rule", which the API's
        schema does not accept, so only the anomalies part can set them."""
        mac = a["mac"]
        self._check_target(mac)
        if self._allowed_mac(mac):
            raise ApiError(INVALID, "%s is allowed; disallow it first" % mac)
        if self._quarantine(mac) is not None:
            raise ApiError(INVALID, "%s is already in quarantine" % mac)
        now = int(plat.wall())
        expires, deadline = self._expiry(a.get("minutes"), now)
        rec = {"mac": mac, "created": now, "expires": expires,
               "reason": a.get("reason") or ""}
        if a.get("anomaly"):
            rec["anomaly"] = a["anomaly"]
            rec["rule"] = a.get("rule") or ""
        self._boot_expiry(rec, a.get("minutes"))
        before = self._text()
        self.store["quarantines"].append(rec)
        self.persist(before)
        self.apply("quarantine " + mac)
        if deadline is not None:
            self.deadlines[("quarantine", mac)] = deadline
            self._arm(("quarantine", mac))
        self.forget_connections(self.addresses().get(mac, []))
        self._emit("spin.quarantine", {"action": "quarantine", "mac": mac,
                                       "name": self.name_of(mac), "reason": rec["reason"],
                                       "expires": expires, "anomaly": rec.get("anomaly")})
        return {"mac": mac}

    def keep(self, mac):
        """The quarantine stays until the owner releases it (the owner's
        answer to an automatic one: "keep"): its expiry goes, persisted."""
        rec = self._quarantine(mac)
        if rec is None:
            raise ApiError(NOT_FOUND, "%s is not in quarantine" % mac)
        if rec.get("expires") is None:
            return self.quarantine_of(mac)
        before = self._text()
        rec["expires"] = None
        rec.pop("boot", None)
        rec.pop("up_expires", None)
        self.persist(before)
        self._disarm(("quarantine", mac))
        self._emit("spin.quarantine", {"action": "keep", "mac": mac, "name": self.name_of(mac),
                                       "reason": rec.get("reason") or "", "expires": None,
                                       "anomaly": rec.get("anomaly")})
        return self.quarantine_of(mac)

    def release(self, mac):
        rec = self._quarantine(mac)
        if rec is None:
            raise ApiError(NOT_FOUND, "%s is not in quarantine" % mac)
        before = self._text()
        self.store["quarantines"].remove(rec)
        self.persist(before)
        self._disarm(("quarantine", mac))
        self.apply("release " + mac)
        self._emit("spin.quarantine", {"action": "release", "mac": mac, "reason": rec.get("reason") or "",
                                       "anomaly": rec.get("anomaly")})
        return {"mac": mac}

    def _allow_key(self, a):
        mac = a.get("mac")
        remote = firewall.normal_prefix(a["remote"]) if a.get("remote") else None
        if bool(mac) == bool(remote):
            raise ApiError(INVALID, "give either mac or remote")
        return ("mac", mac) if mac else ("remote", remote)

    def allow(self, a):
        k, v = self._allow_key(a)
        if any(x.get(k) == v for x in self.store["allows"]):
            raise ApiError(INVALID, "%s is already allowed" % v)
        before = self._text()
        self.store["allows"].append({k: v})
        self.persist(before)
        self.apply("allow " + v)
        return {k: v}

    def disallow(self, a):
        k, v = self._allow_key(a)
        for x in self.store["allows"]:
            if x.get(k) == v:
                before = self._text()
                self.store["allows"].remove(x)
                self.persist(before)
                self.apply("disallow " + v)
                return {k: v}
        raise ApiError(NOT_FOUND, "%s is not allowed" % v)
