"""The controller: many agents of one home as one view (`spin controller`).

It runs on any Linux host (a NAS), reads the same UCI file as an agent
(mqtt_* to reach the broker, with mqtt_username its own user, by default
`controller`; rpc_listen/rpc_socket and token for its API), subscribes to
spin/<home>/+/... and keeps:

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
history, graph) and the orders (quarantine, release, block, unblock)
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
from .errors import ApiError, INVALID_ARGUMENT, NOT_FOUND

json = plat.json

TIMELINE = 60  # buckets kept per device
LAGS_KEPT = 1024  # the latest lags (bucket end -> merged), for p50/p99 in status
SEEN_KEPT = 512  # (agent, started, seq) of recent digests, to tell a repeat
ORDERS_KEPT = 200
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
    __slots__ = ("mac", "agent", "agents", "timeline", "name", "ips", "last_t", "last_bytes")

    def __init__(self, mac):
        self.mac = mac
        self.agent = None
        self.agents = {}  # agent -> last bucket time it reported the device in
        self.timeline = {}  # bucket time -> {figure: value, "top": [[remote, bytes]]}
        self.name = None
        self.ips = []
        self.last_t = -1
        self.last_bytes = -1


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


class Controller:
    def __init__(self, cfg, share=None, name=None):
        self.cfg = cfg
        # share: a shared subscription group (the broker hands each message to
        # one controller of the group): load shared, but each one's view is
        # partial, since a home's digests are split by message, not by home
        self.share = share
        self.name = name
        from .agent import Loop  # the agent's poll loop: no other event loop to learn
        self.loop = Loop()
        self.started = plat.wall()
        self.home = cfg["mqtt_home"]
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
        self.parts = []
        self.errors = {}
        self.client = None
        self.detector = detect.Detector(cfg) if cfg["detect"] else None
        self.pending = {}  # mac -> {agent: detect.Scan since the last close}
        self.pending_seconds = {}  # agent -> seconds its scans since then covered
        self.pending_live = {}  # mac -> {agent: (its conntrack entries, that agent's table size)}
        self.closed_at = None
        self.verdicts = []  # the controller detector's latest, newest last

    # -- MQTT ------------------------------------------------------------------

    def connect(self):
        cfg = self.cfg
        host, port = mqttlink.split_broker(cfg["mqtt_broker"])
        user = cfg["mqtt_username"] or "controller"
        tls = (cfg["mqtt_ca"], cfg["mqtt_cert"], cfg["mqtt_key"]) if cfg["mqtt_ca"] else None
        self.client = c = mqtt.Client(
            self.loop, host, port, "spin-controller-%s-%s" % (self.home, self.name or cfg["mqtt_agent"] or user),
            keepalive=cfg["mqtt_keepalive"], username=user, password=cfg["mqtt_password"] or None,
            tls=tls, max_packet=1 << 24, clean=False)
        topic = "spin/%s/+/+" % self.home
        if self.share:
            topic = "$share/%s/%s" % (self.share, topic)
        c.on_up = lambda cl: cl.subscribe([(topic, 1)])
        c.on_message = self.message
        c.start()

    def publish_order(self, agent, order):
        topic = "spin/%s/%s/cmd" % (self.home, agent)
        if self.client is None or self.client.publish(topic, plat.dumps(order), qos=1) is None:
            raise ApiError(NOT_FOUND, "the broker is not reachable now; order not sent")

    def message(self, topic, payload, retain):
        parts = topic.split("/")
        if len(parts) != 4 or parts[0] != "spin" or parts[1] != self.home:
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
            a = self.agents[name] = {"agent": name, "state": "unknown", "role": None, "version": None,
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
        d = self.devices.get(mac)
        if d is None:
            d = self.devices[mac] = Device(mac)
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
        d = self.devices.get(mac)
        if d is None:
            d = self.devices[mac] = Device(mac)
            d.agent = agent
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
        if msg.get("v") != mqttlink.SCHEMA or not isinstance(msg.get("devices"), list):
            raise ValueError("figures: schema %r, or no devices" % msg.get("v"))
        got = []
        for row in msg["devices"]:
            if not isinstance(row, dict) or not isinstance(row.get("mac"), str):
                raise ValueError("figures: a device without a MAC")
            got.append((parse_mac(row["mac"]), scans.from_obj(row),
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

    def close_scan(self):
        """One scan of the controller's detector on what the agents sent
        since the last; quarantine orders for its verdicts."""
        now = plat.wall()
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
        return {"version": __version__, "role": "controller", "home": self.home, "share": self.share,
                "uptime": int(plat.wall() - self.started), "agents": len(self.agents),
                "devices": len(self.devices), "digests": self.digests, "repeats": self.repeats,
                "malformed": self.malformed, "lag_p50": self.lag_at(0.5), "lag_p99": self.lag_at(0.99),
                "mqtt": self.client.status() if self.client else None,
                "rss_kb": plat.rss_kb(), "errors": dict(self.errors),
                "detect": dict(self.detector.status(), verdicts=self.verdicts[-20:])
                if self.detector else {"on": False}}

    def lag_at(self, q):
        """Seconds from a bucket's end to its merge, at quantile q of the
        latest LAGS_KEPT digests (None before any)."""
        if not self.lags:
            return None
        xs = sorted(self.lags)
        return xs[min(len(xs) - 1, int(q * len(xs)))]

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


HANDLERS = {"status": Controller.on_status, "digest": Controller.on_digest,
            "device": Controller.on_device, "anomaly": Controller.on_anomaly,
            "ack": Controller.on_ack, "figures": Controller.on_figures}

# the API's table, less what only an agent can answer, plus `agents`
SERVED = ("status", "devices", "device", "history", "graph", "blocks", "block", "unblock",
          "quarantine", "release")
METHODS = dict((m, api.METHODS[m]) for m in SERVED)
METHODS["agents"] = ({}, lambda c, a: c.agent_list(), False)


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
    c.start_detector()
    wake = plat.install_signals(lambda: setattr(c.loop, "running", False), lambda: None)
    if wake is not None:
        c.loop.add_reader(wake, lambda: plat.drain(wake))
    plat.info("controller %s for home %s on %s" % (__version__, c.home, cfg["mqtt_broker"]))
    try:
        c.loop.run()
    except KeyboardInterrupt:
        pass
    finally:
        c.client.stop()
        for p in c.parts:
            p.stop(c)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "/etc/config/spin"))
