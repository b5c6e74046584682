"""The controller: the agents of a home as one view, for many homes (`spin controller`).

It runs on any Linux host (a NAS), reads the same UCI file as an agent
(mqtt_* to reach the broker, with mqtt_username its own user, by default
`controller`; rpc_listen/rpc_socket and token for its API; the homes it
serves in controller_homes, '+' for all), subscribes to spin/<home>/+/...
of each home it holds (a Controller holds a Home each; a group of
controllers shares the homes out whole: Controller below) and keeps, per
home:

* per agent: online or offline (its retained status and last will), the
  last digest's bucket and sequence number, digests received, repeats
  ignored, gaps (sequence numbers it never got), and the lag between the
  end of the last bucket and its arrival (`agents`);
* per device, by MAC, whoever reports it: one timeline of buckets (the
  same minute seen by two agents, a router and the access point in front
  of it, is the same traffic: each figure is the larger of the two, never
  their sum), its name and addresses, and its current agent: the one whose
  digest saw it move last. A device that roams from one access point to
  another stays one device.

It serves the API's read methods on that view (status, devices, device,
history, graph; each with the home it is about) and the orders (quarantine, release, block, unblock)
over JSON-RPC, token-guarded off loopback as the agent's listener is;
an order goes on MQTT to the device's current agent, and its answer
(ack) is kept under `orders`. An agent's anomaly that asks for a
quarantine its own detector did not carry out (detect_mode alert there)
becomes a quarantine order to that agent, which has just seen the
device; once per device until the owner releases it.

It also runs the agents' detector (detect.py) on the merged figures:
an agent with a detector publishes, after each scan, what each busy
device did in it (`figures`: the Scan its end_scan closed); the
controller adds up one agent's scans, takes the larger of two agents'
views of one device (the same flows, as for digests), and every
scan_interval closes a scan of its own Detector on them. A verdict of
severity quarantine (with the controller's detect_mode quarantine)
becomes a quarantine order to the agent that sees the device: of the
agents that fed it, an access point before a router, then the one that
counted more. Thresholds are the controller's detect_threshold, so an
agent may run detect_mode alert with its own.
"""

import sys

from . import __version__, api, config, detect, mqtt, mqttlink, plat, scans
from .addr import parse_mac
from .digest import crc32, mix
from .errors import ApiError, INVALID_ARGUMENT, NOT_FOUND

json = plat.json

TIMELINE = 60  # buckets kept per device
LAGS_KEPT = 256  # a home's latest lags (bucket end -> merged), for p50/p99 in status
SEEN_KEPT = 512  # (agent, started, seq) of recent digests, to tell a repeat
ORDERS_KEPT = 200
# the detector's rules (detect.RULES) the controller cannot judge as an
# agent does, each with why. None now: every rule's figures travel in
# `figures` (the scan's counters, distinct remotes, tops, failed
# scanner-port attempts, examples, the table share). tests/test_controller.py
# reads it: a rule neither judged alike on both nor named here fails there.
NOT_JUDGED = {}
FIGURES = ("bytes_out", "bytes_in", "packets_out", "packets_in", "conns", "unreplied",
           "remotes", "ports")


def check_row(row):
    """One device of a digest, or ValueError: a MAC, counters that are
    whole numbers, a top list of [remote, bytes]."""
    if not isinstance(row, dict) or not isinstance(row.get("mac"), str):
        raise ValueError("a device without a MAC")
    parse_mac(row["mac"])
    for k in FIGURES:
        v = row.get(k, 0)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError("%s of %s: %r" % (k, row["mac"], v))
    top = row.get("top") or []
    if not isinstance(top, list) or not all(
            isinstance(x, list) and len(x) == 2 and isinstance(x[0], str) and isinstance(x[1], int)
            for x in top):
        raise ValueError("top of %s" % row["mac"])


class Device:
    __slots__ = ("mac", "agent", "agents", "timeline", "name", "ips", "last_t", "last_bytes", "heard")

    def __init__(self, mac):
        self.mac = mac
        self.agent = None
        self.agents = {}  # agent -> last bucket time it reported the device in
        self.timeline = {}  # bucket time -> {figure: value, "top": [[remote, bytes]]}
        self.name = None
        self.ips = []
        self.last_t = -1
        self.last_bytes = -1
        self.heard = plat.wall()  # when an agent last named it (the controller's clock)


class Orders:
    """What api.h_quarantine & co. call on agent.blocks: each becomes an
    order on MQTT to the agent that sees the device."""

    def __init__(self, controller):
        self.c = controller
        self.sent = {}  # order id -> {"agent", "method", "args", "ack"}
        self.order_ids = []
        self.n = 0

    def _send(self, method, args, agent=None):
        mac = args.get("mac")
        if agent is None:
            d = self.c.devices.get(mac) if mac else None
            if d is None or d.agent is None:
                raise ApiError(NOT_FOUND, "no agent sees %s" % (mac or "that device"))
            agent = d.agent
        self.n += 1
        oid = "c%d-%d" % (int(self.c.started), self.n)
        clean = dict((k, v) for k, v in args.items() if v is not None and v != "")
        self.c.publish_order(agent, {"id": oid, "method": method, "args": clean})
        self.sent[oid] = {"id": oid, "agent": agent, "method": method, "args": clean, "ack": None}
        self.order_ids.append(oid)
        if len(self.order_ids) > ORDERS_KEPT:
            self.sent.pop(self.order_ids.pop(0), None)
        return {"order": oid, "agent": agent}

    def quarantine(self, a):
        return self._send("quarantine", a)

    def release(self, mac):
        self.c.quarantining.pop(mac, None)  # the owner's word: the next finding may order again
        return self._send("release", {"mac": mac})

    def block(self, a):
        if not a.get("mac"):
            raise ApiError(INVALID_ARGUMENT, "mac: the controller blocks per device (name one)")
        return self._send("block", a)

    def unblock(self, bid):
        raise ApiError(INVALID_ARGUMENT, "unblock: block ids belong to an agent; call that agent")

    def listing(self):
        return {"orders": [self.sent[i] for i in self.order_ids]}

    def acked(self, ack):
        rec = self.sent.get(ack.get("id"))
        if rec is not None:
            rec["ack"] = ack

    def quarantine_of(self, mac):
        return None


class Home:
    """The merged view of one home: its agents, devices, orders and the
    detector on their figures. A Controller holds one per home it serves;
    alone (link None, as the tests build it) it merges what it is handed."""

    def __init__(self, cfg, name=None, link=None):
        self.cfg = cfg
        self.name = name or cfg["mqtt_home"]
        self.link = link
        self.loop = link.loop if link is not None else None
        self.started = link.started if link is not None else plat.wall()
        self.closed = False  # no longer held: its detector's tick stops
        self.agents = {}
        self.devices = {}
        self.seen = {}
        self.seen_order = []
        self.digests = 0
        self.repeats = 0
        self.malformed = 0
        self.lags = []
        self.quarantining = {}  # mac -> order id the controller sent on an anomaly
        self.blocks = Orders(self)
        self.names = None
        self.anomalies = None
        self.errors = {}
        self.detector = detect.Detector(cfg) if cfg["detect"] else None
        self.pending = {}  # mac -> {agent: detect.Scan since the last close}
        self.pending_seconds = {}  # agent -> seconds its scans since then covered
        self.pending_live = {}  # mac -> {agent: (its conntrack entries, that agent's table size)}
        self.closed_at = None
        self.verdicts = []  # the controller detector's latest, newest last

    def publish_order(self, agent, order):
        if self.link is None:
            raise ApiError(NOT_FOUND, "the broker is not reachable now; order not sent")
        self.link.publish_order(self.name, agent, order)

    def message(self, topic, payload, retain):
        parts = topic.split("/")
        if len(parts) != 4 or parts[0] != "spin" or parts[1] != self.name:
            return
        agent, what = parts[2], parts[3]
        if what == "cmd" or not config.topic_word(agent):
            return
        try:
            msg = json.loads(payload)
            if not isinstance(msg, dict):
                raise ValueError("not an object")
            handler = HANDLERS.get(what)
            if handler is not None:
                handler(self, agent, msg)
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeError, RuntimeError) as e:
            self.malformed += 1
            self.errors["message"] = "%s from %s: %s" % (what, agent, e)

    def _agent(self, name):
        a = self.agents.get(name)
        if a is None:
            a = self.agents[name] = {"agent": name, "home": self.name, "state": "unknown", "role": None, "version": None,
                                     "digests": 0, "repeats": 0, "gaps": 0, "last_seq": 0,
                                     "started": None, "last_digest": None, "lag": None,
                                     "last_heard": None}
        a["last_heard"] = int(plat.wall())
        return a

    def on_status(self, agent, msg):
        a = self._agent(agent)
        a["state"] = "online" if msg.get("state") == "online" else "offline"
        if msg.get("version"):
            a["version"] = str(msg["version"])
        if msg.get("role") in ("ap", "router"):
            a["role"] = msg["role"]

    def on_digest(self, agent, msg):
        if msg.get("v") != mqttlink.SCHEMA:
            raise ValueError("digest schema %r" % msg.get("v"))
        rows = msg["devices"]
        if not isinstance(rows, list):
            raise ValueError("devices is not a list")
        for row in rows:
            check_row(row)  # all of it, before any of it is merged
        seq, started = int(msg["seq"]), int(msg.get("started", 0))
        t_end = float(msg["t"]) + float(msg.get("bucket_seconds", 60))
        t = int(msg["t"])
        key = (agent, started, seq)
        a = self._agent(agent)
        if key in self.seen:
            a["repeats"] += 1  # QoS 1: the broker may hand a message over twice
            self.repeats += 1
            return
        self.seen[key] = 1
        self.seen_order.append(key)
        if len(self.seen_order) > SEEN_KEPT:
            self.seen.pop(self.seen_order.pop(0), None)
        if a["started"] != started:
            # an agent first heard of, or restarted: gaps count from here
            a["started"] = started
            a["last_seq"] = seq - 1
        if seq > a["last_seq"] + 1:
            a["gaps"] += seq - a["last_seq"] - 1
        a["last_seq"] = max(a["last_seq"], seq)
        a["digests"] += 1
        a["last_digest"] = t
        a["lag"] = round(plat.wall() - t_end, 3)
        self.lags.append(a["lag"])
        if len(self.lags) > LAGS_KEPT:
            self.lags.pop(0)
        self.digests += 1
        for row in rows:
            self.merge(agent, t, row)

    def merge(self, agent, t, row):
        mac = parse_mac(row["mac"])  # checked in check_row: here its written form
        d = self._device(mac)
        if len(row) == 1:  # here, idle in this bucket
            d.agents[agent] = max(d.agents.get(agent, -1), t)
            if d.agent is None:
                d.agent = agent
            return
        b = d.timeline.get(t)
        if b is None:
            b = d.timeline[t] = {"t": t, "top": []}
            if len(d.timeline) > TIMELINE:
                del d.timeline[min(d.timeline)]
        moved = 0
        for k in FIGURES:
            v = int(row.get(k, 0))
            b[k] = max(b.get(k, 0), v)  # two agents on one path see the same flows
            if k in ("bytes_out", "bytes_in"):
                moved += v
        if len(row.get("top") or ()) and (not b["top"] or moved >= sum(x[1] for x in b["top"])):
            b["top"] = [[str(r), int(n)] for r, n in row["top"]]
        d.agents[agent] = max(d.agents.get(agent, -1), t)
        # the current agent: the newest bucket it moved in; within one
        # bucket an access point before the router behind it (it is nearer
        # the device: its orders cut the device off on the AP's bridge),
        # then the agent that saw more of it
        near = self._role(agent) == "ap"
        if t > d.last_t or (t == d.last_t and (near, moved) > (self._role(d.agent) == "ap", d.last_bytes)):
            d.agent, d.last_t, d.last_bytes = agent, t, moved

    def _device(self, mac):
        """The device of that MAC, made if new; heard now. Past max_devices
        the longest unheard is forgotten, as an agent's table does."""
        d = self.devices.get(mac)
        if d is None:
            d = self.devices[mac] = Device(mac)
            while len(self.devices) > self.cfg["max_devices"]:
                self.forget_device(min(self.devices.values(), key=lambda x: x.heard).mac)
        d.heard = plat.wall()
        return d

    def forget_device(self, mac):
        self.devices.pop(mac, None)
        self.pending.pop(mac, None)
        self.quarantining.pop(mac, None)

    def forget(self, horizon):
        """Forget the devices no agent has named since horizon (wall time),
        and the agents offline and unheard since then."""
        for mac in [m for m, d in self.devices.items() if d.heard < horizon]:
            self.forget_device(mac)
        for name in [n for n, a in self.agents.items()
                     if a["state"] != "online" and a["last_heard"] < horizon]:
            del self.agents[name]
            self.pending_seconds.pop(name, None)

    def _role(self, agent):
        a = self.agents.get(agent)
        return a["role"] if a else None

    def on_device(self, agent, msg):
        self._agent(agent)
        info = msg.get("device") or {}
        if msg.get("event") != "appeared" or not isinstance(msg.get("mac"), str):
            return
        mac = parse_mac(msg["mac"])
        name, ips = info.get("name"), info.get("ips")
        if name is not None and not isinstance(name, str) or \
                ips is not None and not (isinstance(ips, list) and all(isinstance(i, str) for i in ips)):
            raise ValueError("device of %s" % mac)
        d = self._device(mac)
        d.agent = d.agent or agent
        d.name = name or d.name
        d.ips = ips or d.ips

    def on_anomaly(self, agent, msg):
        rec = msg["anomaly"]
        if rec.get("severity") != "quarantine" or rec.get("action") == "quarantined":
            return
        mac = rec.get("mac")
        if not isinstance(mac, str) or self.cfg["detect_mode"] != "quarantine":
            return
        if mac in self.quarantining:
            return  # ordered already: an escalation of the same finding
        # the agent that reported it has just seen the device misbehave: it
        # sees it now (the device's current agent may be the router behind
        # that AP, whose digest of this minute came first)
        target = agent
        reason = ("%s (seen by %s)" % (rec.get("rule", "anomaly"), agent))[:200]
        try:
            self.quarantining[mac] = self.blocks._send("quarantine", {"mac": mac, "reason": reason},
                                                       target)["order"]
        except ApiError as e:
            self.errors["order"] = e.message

    def on_figures(self, agent, msg):
        """An agent's last scan, per busy device: checked whole, then kept
        for the controller's next scan."""
        v = msg.get("v")
        if isinstance(v, bool) or v not in scans.TAKEN or not isinstance(msg.get("devices"), list):
            raise ValueError("figures: schema %r (taken: %s), or no devices"
                             % (v, ", ".join(str(x) for x in scans.TAKEN)))
        got = []
        for row in msg["devices"]:
            if not isinstance(row, dict) or not isinstance(row.get("mac"), str):
                raise ValueError("figures: a device without a MAC")
            got.append((parse_mac(row["mac"]), scans.from_obj(row, v),
                        scans.count(row.get("live", 0), "live")))
        tmax = scans.count(msg.get("table_max", 0), "table_max")
        seconds = msg.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= 3600:
            raise ValueError("figures: seconds %r" % (seconds,))
        self._agent(agent)
        if self.detector is None:
            return
        self.pending_seconds[agent] = self.pending_seconds.get(agent, 0) + seconds
        for mac, scan, live in got:
            if live and tmax:  # the agent's table share: the latest, per agent
                self.pending_live.setdefault(mac, {})[agent] = (live, tmax)
            views = self.pending.setdefault(mac, {})
            if agent in views:
                scans.merge(views[agent], scan, False)  # a later scan of the same agent
            else:
                views[agent] = scan

    def close_scan(self, now=None):
        """One scan of the controller's detector on what the agents sent
        since the last; quarantine orders for its verdicts. now: the wall
        time (the tick's, by default)."""
        now = plat.wall() if now is None else now
        # the seconds the agents' scans covered (two scans of an agent in
        # one of ours are twice the time, not twice the rate), else ours
        seconds = max(self.pending_seconds.values()) if self.pending_seconds else \
            (now - self.closed_at if self.closed_at is not None else self.cfg["scan_interval"])
        self.closed_at = now
        pending, self.pending, self.pending_seconds = self.pending, {}, {}
        # table_hog: per device the agent whose table it fills most (the
        # router and an AP hold tables of their own: never their sum)
        live, tmax = {}, {}
        for mac, views in self.pending_live.items():
            n, m = max(views.values(), key=lambda v: v[0] / v[1])
            live[mac], tmax[mac] = n, m
        self.pending_live = {}
        seers = {}
        for mac, views in pending.items():
            merged = None
            for agent in sorted(views):
                if merged is None:
                    merged = views[agent]
                else:
                    scans.merge(merged, views[agent], True)  # one device, two views of its flows
            scans.feed(self.detector, mac, merged)
            seers[mac] = max(views, key=lambda a: (self._role(a) == "ap", sum(views[a].c), a))
        verdicts = self.detector.end_scan(now, seconds, live, tmax)
        for v in verdicts:
            self.verdicts.append({"mac": v["mac"], "rule": v["rule"], "severity": v["severity"],
                                  "t": int(now), "agent": seers.get(v["mac"])})
            if v["severity"] == "quarantine":
                self._order_quarantine(v, seers.get(v["mac"]))
        del self.verdicts[:-ORDERS_KEPT]

    def _order_quarantine(self, verdict, agent):
        mac = verdict["mac"]
        if self.cfg["detect_mode"] != "quarantine" or mac in self.quarantining or agent is None:
            return
        reason = ("%s (controller's detector, seen by %s)" % (verdict["rule"], agent))[:200]
        try:
            self.quarantining[mac] = self.blocks._send("quarantine", {"mac": mac, "reason": reason},
                                                       agent)["order"]
        except ApiError as e:
            self.errors["order"] = e.message

    def start_detector(self):
        if self.detector is None:
            return
        every = max(1, self.cfg["scan_interval"])

        def tick():
            if self.closed:
                return  # the home went to another controller, or was forgotten
            try:
                self.close_scan()
                self.errors.pop("detect", None)
            except Exception as e:  # a detector bug must not stop the merged view
                self.errors["detect"] = "%s: %s" % (type(e).__name__, e)
            self.loop.call_later(every, tick)
        self.loop.call_later(every, tick)

    def on_ack(self, agent, msg):
        self._agent(agent)
        self.blocks.acked(msg)

    # -- the view, as the API's read handlers ask for it ----------------------------

    def status(self):
        return {"home": self.name, "agents": len(self.agents),
                "devices": len(self.devices), "digests": self.digests, "repeats": self.repeats,
                "malformed": self.malformed, "lag_p50": lag_at(self.lags, 0.5),
                "lag_p99": lag_at(self.lags, 0.99), "errors": dict(self.errors),
                "detect": dict(self.detector.status(), verdicts=self.verdicts[-20:])
                if self.detector else {"on": False}}

    def device_info(self, mac):
        d = self.devices.get(mac)
        if d is None:
            return None
        last = d.timeline[max(d.timeline)] if d.timeline else None
        return {"mac": mac, "name": d.name, "ips": d.ips, "agent": d.agent,
                "agents": dict(d.agents), "bucket": last, "quarantine": None}

    def device_page(self, offset, limit):
        macs = sorted(self.devices)
        return [self.device_info(m) for m in macs[offset:offset + limit]], len(macs)

    def history(self, mac, minutes):
        d = self.devices.get(mac)
        points = [d.timeline[t] for t in sorted(d.timeline)] if d else []
        return {"mac": mac, "points": points[-max(1, minutes):]}

    def graph(self, mac=None, limit=20):
        macs = [mac] if mac else sorted(self.devices)
        nodes, edges, remotes = [], [], {}
        for m in macs:
            d = self.devices[m]
            nodes.append({"id": m, "kind": "device", "name": d.name, "ips": d.ips})
            last = d.timeline[max(d.timeline)] if d.timeline else {"top": []}
            for r, b in last["top"][:limit]:
                edges.append({"from": m, "to": r, "bytes": b})
                remotes[r] = remotes.get(r, 0) + b
        nodes += [{"id": r, "kind": "endpoint", "bytes": b} for r, b in remotes.items()]
        return {"nodes": nodes, "edges": edges, "others": {}, "limit": limit}

    def agent_list(self):
        return {"agents": [self.agents[n] for n in sorted(self.agents)]}


def lag_at(lags, q):
    """Seconds from a bucket's end to its merge, at quantile q of the
    latest LAGS_KEPT digests of a home (or of all, in a controller's
    status); None before any."""
    if not lags:
        return None
    xs = sorted(lags)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


HANDLERS = {"status": Home.on_status, "digest": Home.on_digest,
            "device": Home.on_device, "anomaly": Home.on_anomaly,
            "ack": Home.on_ack, "figures": Home.on_figures}

MEMBERS = "spin-controllers"  # spin-controllers/<group>/<id>: retained while a controller lives
HOMES_KEPT = 10000  # homes a controller knows of (named by a status), held or not
HOME_FILTER = "spin/%s/+/+"
SUBSCRIBE_AT_ONCE = 100  # filters a SUBSCRIBE or UNSUBSCRIBE carries


def wanted_homes(cfg):
    """controller_homes: None for every home the broker names ('+'), else
    the list (empty: mqtt_home alone)."""
    homes = cfg["controller_homes"]
    if "+" in homes:
        return None
    return list(homes) or [cfg["mqtt_home"]]


def owner(home, members):
    """Rendezvous hashing: the member whose hash of home/member is the
    highest holds the home. A member that comes or goes moves only the
    homes it wins or held; each controller computes it alone, the same.
    crc32 is linear (two members' sums differ alike for every home): mixed."""
    return max(members, key=lambda m: (mix(crc32(("%s/%s" % (home, m)).encode())), m))


class Controller:
    """One process, one MQTT connection, the homes it holds (a Home each).

    Alone (no group) it holds every home it serves. In a group (--share
    GROUP --id NAME) each member says it lives by a retained message on
    spin-controllers/<group>/<id> that its last will (and a clean stop)
    empties, and holds the homes owner() gives it among the live members:
    it subscribes spin/<home>/+/+ for those only, so a home's whole view
    is in one controller, and takes or gives up homes when a member comes
    or goes (a dead one's within its keepalive and a half)."""

    def __init__(self, cfg, group=None, name=None):
        self.cfg = cfg
        self.group = group
        self.id = name or cfg["mqtt_agent"] or cfg["mqtt_username"] or "controller"
        from .agent import Loop  # the agent's poll loop: no other event loop to learn
        self.loop = Loop()
        self.started = plat.wall()
        self.wanted = wanted_homes(cfg)
        self.forget_after = cfg["controller_forget"] * 3600
        self.known = {}  # home -> {"agents": {agent: online?}, "heard": wall}, from status messages
        self.homes = {}  # home -> Home: the homes held here
        self.members = {}  # other live members of the group: id -> when heard
        self.settled = group is None  # in a group: once the members' retained messages are in
        self.left = {}  # homes unsubscribed since the last connect (a session's leftovers)
        self.homes_refused = 0
        self.parts = []
        self.errors = {}
        self.client = None
        if self.wanted is not None:
            for home in self.wanted:
                self.known[home] = {"agents": {}, "heard": self.started}
        self.rebalance()

    # -- MQTT ------------------------------------------------------------------

    def member_topic(self):
        return "%s/%s/%s" % (MEMBERS, self.group, self.id)

    def connect(self):
        cfg = self.cfg
        host, port = mqttlink.split_broker(cfg["mqtt_broker"])
        user = cfg["mqtt_username"] or "controller"
        tls = (cfg["mqtt_ca"], cfg["mqtt_cert"], cfg["mqtt_key"]) if cfg["mqtt_ca"] else None
        will = (self.member_topic(), b"", True) if self.group else None
        self.client = c = mqtt.Client(
            self.loop, host, port, "spin-controller-%s-%s" % (self.group or "alone", self.id),
            keepalive=cfg["mqtt_keepalive"], username=user, password=cfg["mqtt_password"] or None,
            will=will, tls=tls, max_packet=1 << 24, clean=False)
        c.on_up = self.on_up
        c.on_message = self.message
        c.on_pong = lambda cl: self.settle()
        c.start()
        for home in self.homes.values():
            home.start_detector()
        every = max(60, min(3600, self.forget_after // 24))
        self.loop.call_later(every, lambda: self._sweep(every))

    def on_up(self, client):
        self.left = {}
        filters = [HOME_FILTER % h for h in sorted(self.homes)]
        if self.wanted is None:
            filters.insert(0, "spin/+/+/status")  # small and retained: which homes there are
        if self.group:
            # who else lives: their retained messages come before the answer
            # to the ping below, then this controller takes its homes
            self.members = {}
            self.settled = False
            client.subscribe([("%s/%s/+" % (MEMBERS, self.group), 0)])
            client.publish(self.member_topic(), plat.dumps(
                {"v": 1, "id": self.id, "state": "online", "started": int(self.started)}), qos=1, retain=True)
        self._subscribe(filters)
        if self.group:
            client.ping()

    def _subscribe(self, filters):
        for i in range(0, len(filters), SUBSCRIBE_AT_ONCE):
            if self.client is not None:
                self.client.subscribe([(f, 1) for f in filters[i:i + SUBSCRIBE_AT_ONCE]])

    def _unsubscribe(self, filters):
        for i in range(0, len(filters), SUBSCRIBE_AT_ONCE):
            if self.client is not None:
                self.client.unsubscribe(filters[i:i + SUBSCRIBE_AT_ONCE])

    def settle(self):
        if not self.settled:
            self.settled = True
            self.rebalance()

    def publish_order(self, home, agent, order):
        topic = "spin/%s/%s/cmd" % (home, agent)
        if self.client is None or self.client.publish(topic, plat.dumps(order), qos=1) is None:
            raise ApiError(NOT_FOUND, "the broker is not reachable now; order not sent")

    def message(self, topic, payload, retain):
        parts = topic.split("/")
        if parts[0] == MEMBERS:
            if len(parts) == 3 and parts[1] == self.group:
                self.on_member(parts[2], payload)
            return
        if len(parts) != 4 or parts[0] != "spin" or not config.topic_word(parts[1]):
            return
        name = parts[1]
        if parts[3] == "status" and config.topic_word(parts[2]):
            self.learn(name, parts[2], payload)
        home = self.homes.get(name)
        if home is not None:
            home.message(topic, payload, retain)
        elif parts[3] != "status" and self.settled and name not in self.left and len(self.left) < HOMES_KEPT:
            # a subscription this session kept from before (a restart, a
            # home given up): not ours now
            self.left[name] = True
            self._unsubscribe([HOME_FILTER % name])

    def on_member(self, member, payload):
        if member == self.id or not config.topic_word(member):
            return
        try:
            alive = bool(payload) and json.loads(payload).get("state") == "online"
        except (ValueError, AttributeError, UnicodeError) as e:
            self.errors["member"] = "%s: %s" % (member, e)  # not a word of a member: changes nothing
            return
        if alive == (member in self.members):
            return
        if alive:
            self.members[member] = plat.wall()
        else:
            self.members.pop(member, None)  # its will, or its clean stop
        self.rebalance()

    def learn(self, name, agent, payload):
        """A status names a home (and whether that agent is online)."""
        if self.wanted is not None and name not in self.wanted:
            return
        try:
            online = json.loads(payload).get("state") == "online"
        except (ValueError, AttributeError, UnicodeError):
            return  # the home's view counts it malformed, if held here
        k = self.known.get(name)
        if k is None:
            if len(self.known) >= HOMES_KEPT:
                self.homes_refused += 1
                self.errors["homes"] = "%d homes known already; %s left out" % (HOMES_KEPT, name)
                return
            k = self.known[name] = {"agents": {}, "heard": 0}
        if online or agent in k["agents"]:
            k["agents"][agent] = online
        k["heard"] = plat.wall()
        if name not in self.homes:
            self.rebalance([name])

    # -- which homes are held here ---------------------------------------------

    def live(self):
        return sorted(set(self.members) | {self.id})

    def rebalance(self, names=None):
        """Hold the homes (of names, else all known) that owner() gives this
        controller, give up the others."""
        if not self.settled:
            return
        members = self.live()
        take, drop = [], []
        for name in sorted(self.known if names is None else names):
            mine = owner(name, members) == self.id
            if mine and name not in self.homes:
                take.append(name)
            elif not mine and name in self.homes:
                drop.append(name)
        for name in drop:
            self.homes.pop(name).closed = True
        for name in take:
            home = self.homes[name] = Home(self.cfg, name, self)
            if self.client is not None:
                home.start_detector()
            self.left.pop(name, None)
        self._unsubscribe([HOME_FILTER % n for n in drop])
        self._subscribe([HOME_FILTER % n for n in take])

    def forget(self, now=None):
        """What no agent has said for controller_forget hours: devices,
        offline agents, and (with controller_homes '+') homes with neither."""
        horizon = (plat.wall() if now is None else now) - self.forget_after
        for name, home in list(self.homes.items()):
            home.forget(horizon)
        if self.wanted is not None:
            return
        gone = [n for n, k in self.known.items() if k["heard"] < horizon and not any(k["agents"].values())
                and not (n in self.homes and (self.homes[n].agents or self.homes[n].devices))]
        held = [n for n in gone if n in self.homes]
        for name in gone:
            del self.known[name]
        for name in held:
            self.homes.pop(name).closed = True
        self._unsubscribe([HOME_FILTER % n for n in held])

    def _sweep(self, every):
        try:
            self.forget()
            self.errors.pop("forget", None)
        except Exception as e:  # a bug here must not stop the merged views
            self.errors["forget"] = "%s: %s" % (type(e).__name__, e)
        self.loop.call_later(every, lambda: self._sweep(every))

    def stop(self):
        farewell = mqtt.publish_packet(self.member_topic(), b"", 0, True) if self.group else b""
        if self.client is not None:
            self.client.stop(farewell)

    # -- the API: each method about one home --------------------------------------

    def pick(self, name):
        """The home a call is about: the one named, or the only one held."""
        if name is None:
            if len(self.homes) == 1:
                return list(self.homes.values())[0]
            raise ApiError(INVALID_ARGUMENT, "home: this controller holds %s; name one"
                           % (said(sorted(self.homes)) if self.homes else "no home yet"))
        home = self.homes.get(name)
        if home is None:
            held = ("; controller %s holds it" % owner(name, self.live())) if self.group else ""
            raise ApiError(NOT_FOUND, "home %s is not held here%s (here: %s)"
                           % (name, held, said(sorted(self.homes)) or "none"))
        return home

    def status(self, name=None):
        out = {"version": __version__, "role": "controller", "id": self.id, "group": self.group,
               "members": self.live() if self.group else None, "homes": sorted(self.homes),
               "homes_known": len(self.known), "homes_refused": self.homes_refused,
               "uptime": int(plat.wall() - self.started), "rss_kb": plat.rss_kb(),
               "mqtt": self.client.status() if self.client else None}
        if name is not None or len(self.homes) == 1:
            out.update(self.pick(name).status())
            out["errors"].update(self.errors)
            return out
        homes = list(self.homes.values())
        lags = [x for h in homes for x in h.lags]
        for key in ("digests", "repeats", "malformed"):
            out[key] = sum(getattr(h, key) for h in homes)
        out.update(agents=sum(len(h.agents) for h in homes), devices=sum(len(h.devices) for h in homes),
                   lag_p50=lag_at(lags, 0.5), lag_p99=lag_at(lags, 0.99), errors=dict(self.errors))
        return out

    def agent_list(self, name=None):
        homes = [self.pick(name)] if name is not None else [self.homes[n] for n in sorted(self.homes)]
        return {"homes": sorted(self.homes),
                "agents": [h.agents[n] for h in homes for n in sorted(h.agents)]}


def said(names, most=20):
    """A list of names for a message, the first `most` of them."""
    more = " and %d more" % (len(names) - most) if len(names) > most else ""
    return ", ".join(names[:most]) + more


def on_home(handler):
    return lambda c, a: handler(c.pick(a.pop("home")), a)


# the API's table, less what only an agent can answer, plus `agents`;
# each method takes the home it is about (the only one held, when not given)
HOME_ARG = {"home": ("string", None, 64)}
SERVED = ("devices", "device", "history", "graph", "blocks", "block", "unblock",
          "quarantine", "release")
METHODS = dict((m, (api._with(api.METHODS[m][0], HOME_ARG), on_home(api.METHODS[m][1]), api.METHODS[m][2]))
               for m in SERVED)
METHODS["status"] = (HOME_ARG, lambda c, a: c.status(a["home"]), False)
METHODS["agents"] = (HOME_ARG, lambda c, a: c.agent_list(a["home"]), False)


def call(controller, method, args):
    """api.call on the controller's table, for the page's /ubus."""
    return api.call(controller, method, args, METHODS)


def rpc_route(controller, method, headers, body):
    """JSON-RPC 2.0 on / and /rpc, on the controller's table."""
    if method != "POST":
        return 405, json.dumps({"error": "POST a JSON-RPC request"}), "application/json"
    from . import jsonrpc
    return 200, json.dumps(jsonrpc.handle_rpc(controller, body, METHODS)), "application/json"


def routes(server, cfg):
    """JSON-RPC on / and /rpc; the standalone page (www_dir) with its /ubus
    on the controller's table. The server guards all but the page's files
    with the token off loopback, as the agent's listener does."""
    from . import web
    server.routes["/"] = server.routes["/rpc"] = rpc_route
    web.serve_page(server, cfg["www_dir"], web.Ubus(call, METHODS))


def main(config_path, share=None, name=None):
    cfg, warnings = config.load(config_path)
    for w in warnings:
        plat.warn(w)
    if not cfg["mqtt_broker"]:
        plat.warn("%s: set mqtt_broker: the controller reads its agents there" % config_path)
        return 2
    from . import jsonrpc
    if share and not (config.topic_word(share) and name and config.topic_word(name)):
        plat.warn("--share GROUP needs --id NAME, both letters, digits, - or _")
        return 2
    c = Controller(cfg, share, name)
    if cfg["rpc_socket"] or cfg["rpc_listen"]:
        server = jsonrpc.Server()
        routes(server, cfg)
        server.start(c)
        c.parts.append(server)
    c.connect()
    wake = plat.install_signals(lambda: setattr(c.loop, "running", False), lambda: None)
    if wake is not None:
        c.loop.add_reader(wake, lambda: plat.drain(wake))
    plat.info("controller %s %s for %s on %s" % (
        __version__, c.id, "every home" if c.wanted is None else "home " + said(c.wanted),
        cfg["mqtt_broker"] + (" in group %s" % share if share else "")))
    try:
        c.loop.run()
    except KeyboardInterrupt:
        pass
    finally:
        c.stop()
        for p in c.parts:
            p.stop(c)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "/etc/config/spin"))
