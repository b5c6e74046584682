"""The agent on MQTT: what it publishes, what it owes, the orders it takes.

A part of the agent, built only when option mqtt_broker is set (the
MQTT client, and ssl when TLS is configured, are imported then and not
otherwise). Topics, under spin/<home>/<agent>/ (README: "MQTT"):

  status   retained; {"v", "agent", "state": "online", ...}, and the last
           will {"v", "agent", "state": "offline"}, also retained
  digest   every closed bucket of every device, one message a bucket
  device   {"event": "appeared" | "left", "mac", "device"}
  anomaly  an anomaly record opened or escalated
  figures  what each busy device did in the scan just closed, as the
           detector counts it (detect.scan_to_obj), for a controller's
           detector: {"v": FIGURES_SCHEMA, "agent", "t", "seconds",
           "table_max", "devices": [...]};
           QoS 0 and only while connected (not through the ring below)
  block    a block or quarantine made, lifted or expired
  cmd      orders to this agent (subscribed): {"id", "method", "args"}
  ack      the answer to each order: {"id", "status", "status_name",
           "message", "result"}

Everything but status and figures goes through one bounded ring, in order, at QoS 1:
an entry leaves the ring when the broker acknowledges it, so a broker
that goes away and comes back gets what it missed, in order, and a
message it had not acknowledged is sent again (a controller tells a
repeat by agent and seq). When the ring holds mqtt_queue digests the
oldest digest is dropped and counted (other messages have their own
bound, EVENTS_KEPT). Publishing only appends: the scan never waits.
"""

from . import __version__, api, detect, mqtt, plat
from .errors import ApiError, INVALID_ARGUMENT, METHOD_NOT_FOUND, NOT_FOUND, STATUS_NAMES

json = plat.json

SCHEMA = 1
FIGURES_SCHEMA = 2  # figures' own: 2 added slow_scan's attempts, more examples
WINDOW = 8  # QoS 1 messages in flight at once
ORDER_METHODS = ("block", "unblock", "quarantine", "release")
ORDER_FIELDS = ("id", "method", "args")
ORDER_MAX = 4096  # bytes; an order is a few hundred
ORDERS_KEPT = 256  # answered order ids remembered, so a repeat is not done twice
EVENTS_KEPT = 256  # device, anomaly, block and ack messages waiting, beside the digests
# bytes the ring may hold whatever mqtt_queue says: a digest of 250 busy
# devices is ~80 KB (bench/mqtt_rss.py), so 60 of them would be ~5 MB
QUEUE_BYTES = 2 << 20


def split_broker(text):
    host, _, port = text.rpartition(":")
    if not host:
        return text.strip("[]"), 1883
    return host.strip("[]"), int(port)


def agent_name(cfg):
    if cfg["mqtt_agent"]:
        return cfg["mqtt_agent"]
    raw = plat.read_file("/proc/sys/kernel/hostname") or b"agent"
    name = "".join(c for c in raw.decode("utf-8", "replace").strip() if c.isalpha() or c.isdigit() or c in "-_")
    return name or "agent"


def compact_digest(d, agent, seq, started=0):
    """agent.flow_digest(n) as one compact message: a device that moved
    nothing in the bucket is its MAC alone (so a controller knows who is
    here), the bucket time is said once. d is left as it is: it may be
    the one the agent's spin.digest event handed its other listeners."""
    out = []
    for b in d["devices"]:
        if b.get("bytes_out") or b.get("bytes_in") or b.get("conns") or b.get("packets_out") \
                or b.get("packets_in"):
            b = dict(b)
            b.pop("t", None)
            out.append(b)
        else:
            out.append({"mac": b["mac"]})
    return {"v": SCHEMA, "agent": agent, "started": started, "seq": seq, "t": d["t"],
            "bucket_seconds": d["bucket_seconds"], "devices": out}


def figures_message(det, agent, tmax, live_of, t):
    """The scan det.end_scan just closed (each device's prev), per device
    busy in it or holding a twentieth of the table (table_hog); or None."""
    rows = []
    seconds = 0
    for mac, d in det.devices.items():
        live = live_of(mac)
        if d.prev.active() or (tmax and live >= tmax * 0.05):
            row = detect.scan_to_obj(d.prev)
            row["mac"] = mac
            if live and tmax:
                row["live"] = live
            rows.append(row)
            seconds = d.prev.seconds
    if not rows:
        return None
    return {"v": FIGURES_SCHEMA, "agent": agent, "t": t, "seconds": seconds, "table_max": tmax,
            "devices": rows}


def parse_order(payload):
    """An order's bytes -> (id, method, args), or ApiError (id, when one
    could be read, rides along as e.order_id)."""
    if len(payload) > ORDER_MAX:
        raise ApiError(INVALID_ARGUMENT, "order longer than %d bytes" % ORDER_MAX)
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeError):
        raise ApiError(INVALID_ARGUMENT, "order is not JSON")
    except RuntimeError:  # nested too deep (MicroPython's RecursionError)
        raise ApiError(INVALID_ARGUMENT, "order nested too deep")
    if not isinstance(obj, dict):
        raise ApiError(INVALID_ARGUMENT, "order must be an object")
    oid = obj.get("id")
    if isinstance(oid, bool) or not (isinstance(oid, str) and 0 < len(oid) <= 64
                                     or isinstance(oid, int) and 0 <= oid < 2 ** 53):
        raise ApiError(INVALID_ARGUMENT, "order id: expected a string of 1..64 characters or a number")
    for k in obj:
        if k not in ORDER_FIELDS:
            e = ApiError(INVALID_ARGUMENT, "unknown field %r in order" % k)
            e.order_id = oid
            raise e
    method = obj.get("method")
    args = obj.get("args")
    if args is None:
        args = {}
    try:
        if not isinstance(method, str) or method not in ORDER_METHODS:
            raise ApiError(METHOD_NOT_FOUND, "method %r is not an order (%s)"
                           % (method, ", ".join(ORDER_METHODS)))
        # the API's own validation, from its one table
        api.validate(api.METHODS[method][0], args)
    except ApiError as e:
        e.order_id = oid
        raise
    return oid, method, args


class Link:
    """The agent part."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.client = None
        self.ring = []  # [topic, payload bytes, pid or None, is a digest], oldest first
        self.waiting = [0, 0]  # events, digests in the ring
        self.ring_bytes = 0
        self.dropped = 0  # digests
        self.events_dropped = 0
        self.digest_bytes = 0  # the last digest message's size
        self.sent = 0
        self.seq = 0
        self.next_n = None
        self.known = set()
        self.answered = {}  # order id -> ack payload
        self.answered_order = []
        self.orders = 0
        self.orders_refused = 0
        self.figures_sent = 0
        self.figures_dropped = 0  # scans the broker was away for (or its buffer full)
        self.agent = None
        self.off = False
        self.newest = None  # the digest of the scan's spin.digest event, built once for both

    # -- lifecycle --------------------------------------------------------------

    def start(self, agent):
        cfg = self.cfg
        self.agent = agent
        self.off = False
        self.name = agent_name(cfg)
        self.base = "spin/%s/%s/" % (cfg["mqtt_home"], self.name)
        host, port = split_broker(cfg["mqtt_broker"])
        offline = plat.dumps({"v": SCHEMA, "agent": self.name, "state": "offline"}).encode()
        tls = (cfg["mqtt_ca"], cfg["mqtt_cert"], cfg["mqtt_key"]) if cfg["mqtt_ca"] else None
        self.client = c = mqtt.Client(
            agent.loop, host, port, "spin-%s-%s" % (cfg["mqtt_home"], self.name),
            keepalive=cfg["mqtt_keepalive"], username=cfg["mqtt_username"] or None,
            password=cfg["mqtt_password"] or None, will=(self.base + "status", offline, True),
            tls=tls, max_packet=ORDER_MAX + 1024)
        c.on_up = self._up
        c.on_message = self._message
        c.on_ack = self._acked
        c.on_down = self._down
        self.next_n = agent.digests.open_n
        self.known = None  # the first scan's devices are in its digest: no news
        agent.listeners.append(self._event)
        agent.mqtt = self
        c.start()

    def stop(self, agent):
        if self.client is None:
            return
        bye = plat.dumps({"v": SCHEMA, "agent": self.name, "state": "offline"}).encode()
        self.client.stop(mqtt.publish_packet(self.base + "status", bye, 0, True))

    def reload(self, agent):
        """New broker settings take effect now: the old session ends, what
        the ring holds is sent on the new one."""
        old = self.cfg
        self.cfg = agent.cfg
        if any(old[k] != agent.cfg[k] for k in agent.cfg if k.startswith("mqtt_") and k != "mqtt_queue"):
            self.stop(agent)
            agent.listeners.remove(self._event)
            if agent.cfg["mqtt_broker"]:
                self.start(agent)
            else:  # MQTT turned off: what waits is let go, nothing more is kept
                self.off = True
                self.client = None
                self.ring = []
                self.waiting = [0, 0]
                self.ring_bytes = 0

    def status(self):
        s = self.client.status() if self.client else {"state": "off"}
        s.update({"topic": self.base, "queued": len(self.ring), "queue": self.cfg["mqtt_queue"],
                  "queued_bytes": self.ring_bytes,
                  "dropped": self.dropped, "events_dropped": self.events_dropped, "sent": self.sent, "seq": self.seq,
                  "digest_bytes": self.digest_bytes,
                  "orders": self.orders, "orders_refused": self.orders_refused,
                  "figures_sent": self.figures_sent, "figures_dropped": self.figures_dropped})
        return s

    # -- the connection -----------------------------------------------------

    def _up(self, c):
        c.subscribe([(self.base + "cmd", 1)])
        online = {"v": SCHEMA, "agent": self.name, "state": "online",
                  # an access point's agent is nearer its clients than the router's
                  "role": "ap" if self.cfg.get("bridge_uplink") else "router",
                  "version": __version__, "started": int(self.agent.started),
                  "dropped": self.dropped, "seq": self.seq}
        c.publish(self.base + "status", plat.dumps(online), qos=1, retain=True)
        for e in self.ring:
            e[2] = None  # a new session: whatever was in flight goes again, in order
        self._pump()

    def _down(self, c, why, was_up):
        for e in self.ring:
            e[2] = None

    def _pump(self):
        c = self.client
        if c is None or not c.is_up():
            return
        for e in self.ring:
            if len(c.inflight) >= WINDOW:
                return
            if e[2] is None:
                pid = c.publish(e[0], e[1], qos=1)
                if pid is None:
                    return
                e[2] = pid

    def _acked(self, pid):
        for i in range(len(self.ring)):
            if self.ring[i][2] == pid:
                self.waiting[self.ring[i][3]] -= 1
                self.ring_bytes -= len(self.ring[i][1])
                del self.ring[i]
                self.sent += 1
                break
        self._pump()

    def queue(self, what, obj):
        """One message for spin/<home>/<agent>/<what>, kept until the broker
        has it. Digests and the rest have bounds of their own (mqtt_queue,
        EVENTS_KEPT): when one is full its oldest goes, counted, so a burst
        of events never costs a digest."""
        if self.off:
            return
        payload = plat.dumps(obj).encode()
        kind = 1 if what == "digest" else 0
        bound = self.cfg["mqtt_queue"] if kind else EVENTS_KEPT
        while self.waiting[kind] >= bound or (self.ring_bytes + len(payload) > QUEUE_BYTES
                                               and self.waiting[kind]):
            self._drop_oldest(kind)
        if kind:
            self.digest_bytes = len(payload)
        self.ring.append([self.base + what, payload, None, kind])
        self.waiting[kind] += 1
        self.ring_bytes += len(payload)
        self._pump()

    def _drop_oldest(self, kind):
        for i in range(len(self.ring)):
            if self.ring[i][3] == kind:  # the oldest of its kind: the newest matters most
                self.ring_bytes -= len(self.ring[i][1])
                del self.ring[i]
                break
        self.waiting[kind] -= 1
        if kind:
            self.dropped += 1
        else:
            self.events_dropped += 1

    # -- what the agent publishes ------------------------------------------------

    def after_scan(self, agent, now_ms):
        last = agent.digests.open_n - 1
        first = max(self.next_n, last - agent.digests.fine_slots + 1)
        newest, self.newest = self.newest, None
        for n in range(first, last + 1):
            d = newest if newest is not None and newest["t"] == agent.digests.clock.label(n) \
                else agent.flow_digest(n)
            self.seq += 1
            self.queue("digest", compact_digest(d, self.name, self.seq, int(agent.started)))
        self.next_n = last + 1
        self._figures(agent)
        now = set(agent.devices.table)
        if self.known is None:
            self.known = now
        for mac in sorted(now - self.known):
            self.queue("device", {"v": SCHEMA, "agent": self.name, "event": "appeared",
                                  "mac": mac, "device": agent.device_info(mac)})
        for mac in sorted(self.known - now):
            self.queue("device", {"v": SCHEMA, "agent": self.name, "event": "left", "mac": mac})
        self.known = now

    def _figures(self, agent):
        """The scan the detector just closed, for a controller's detector.
        One message a scan, none for an idle home."""
        det = agent.detector
        if det is None:
            return
        table = agent.devices.table
        msg = figures_message(det, self.name, agent.table_max or 0,
                              lambda mac: getattr(table.get(mac), "live", 0), int(plat.wall()))
        if msg is None:
            return
        # live only, QoS 0, never in the ring: a detector wants this scan, not
        # one from before a broker outage, and they must not crowd out acks
        if self.client is not None and self.client.publish(self.base + "figures", plat.dumps(msg)) is not None:
            self.figures_sent += 1
        else:
            self.figures_dropped += 1

    def _event(self, name, data):
        if name == "spin.digest":  # the bucket just closed: after_scan publishes it
            self.newest = data
        elif name == "spin.anomaly":
            self.queue("anomaly", {"v": SCHEMA, "agent": self.name, "anomaly": data})
        elif name in ("spin.block", "spin.quarantine"):
            d = dict(data)
            d["v"] = SCHEMA
            d["agent"] = self.name
            d["kind"] = name[5:]
            self.queue("block", d)

    # -- orders ----------------------------------------------------------------------

    def _message(self, topic, payload, retain):
        if topic != self.base + "cmd":
            return
        self.orders += 1
        oid = None
        try:
            if retain:
                # a retained order would run again at every reconnect
                raise ApiError(INVALID_ARGUMENT, "retained orders are refused")
            oid, method, args = parse_order(payload)
            if oid in self.answered:
                self.queue("ack", self.answered[oid])  # done already: the same answer
                return
            self._check_device(method, args)
            status, result, message = api.call(self.agent, method, args)
        except ApiError as e:
            oid = getattr(e, "order_id", oid)
            status, result, message = e.status, None, e.message
        if status:
            self.orders_refused += 1
        ack = {"v": SCHEMA, "agent": self.name, "id": oid, "status": status,
               "status_name": STATUS_NAMES.get(status, str(status)),
               "message": message or "", "result": result}
        if oid is not None:
            self.answered[oid] = ack
            self.answered_order.append(oid)
            if len(self.answered_order) > ORDERS_KEPT:
                self.answered.pop(self.answered_order.pop(0), None)
        self.queue("ack", ack)

    def _check_device(self, method, args):
        """An order names a device this agent sees (the API itself takes
        MACs never seen, for the owner's blocks ahead of time)."""
        if method == "unblock":
            return
        checked = api.validate(api.METHODS[method][0], args)
        mac = checked.get("mac")
        if mac is None and checked.get("ip") is not None:
            mac = self.agent.devices.mac_for(checked["ip"])
            if mac is None:
                raise ApiError(NOT_FOUND, "no device with address %s on this agent" % checked["ip"])
        if mac is not None and self.agent.devices.get(mac) is None:
            raise ApiError(NOT_FOUND, "no device %s on this agent" % mac)
