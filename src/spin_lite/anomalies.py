"""The staged response to the detector's verdicts: alert, quarantine for a
bounded time, release by itself unless the owner keeps it.

Theory of operation. The detector (`detect`) says, every scan, which rules
hold for which device (`agent.verdicts`, plain dicts); it keeps no memory
of what was done about them. This part turns that stream into anomaly
records, one open record per (device, rule), and decides per verdict what
to do with the table POLICY below: the first row whose fact holds decides,
and a verdict that passes every row quarantines the device through
`agent.blocks`, where the owner's own decisions live too (one store, one
firewall). The owner always wins: an allowed device is never quarantined
automatically, a device the owner released is not quarantined again for
the same rule within `quarantine_holdoff` minutes, and a mute ("this is
normal") silences a rule for a device altogether.

The policy functions (decide, new_record, merge, the mute list) are pure
and run under MicroPython's unit tests; the class `Anomalies` is the part
that reads the agent, calls blocks and keeps the mutes in
state_dir/anomalies.json. Records are kept in memory only (bounded by
max_anomalies, the oldest dropped and counted): the quarantine they caused
is persisted by blocks, with its reason naming the rule and the anomaly id,
and after a restart a record is made again from it (without figures), so
`keep` and `release` still work. The file keeps the mutes, the owner's
recent releases (the hold-off must survive a restart) and the next id, so
that an id never means two anomalies. It is written when one of those
changes, never per scan.
"""

from . import detect, errors, plat

ApiError = errors.ApiError
INVALID = errors.INVALID_ARGUMENT
NOT_FOUND = errors.NOT_FOUND

# what `mute` accepts: the detector's own rule names (a mute of a name the
# detector never uses would be silent)
RULES = detect.RULES

EXAMPLES_MAX = 5      # remotes and ports kept per record: a page of 100 stays small
FIGURES_MAX = 12      # numbers kept per record in figures and in thresholds
TEXT_MAX = 400
NAME_MAX = 40         # characters of a figure's name
REMOTE_MAX = 64       # characters of an example remote (a name, or an IPv6 address)
REASON_MAX = 200      # what the `quarantine` API accepts as a reason
QUIET_S = 600         # an alert whose rule has not held for this long is over
CLOSED = ("released", "expired")

# Why a verdict is not answered with a quarantine, checked in this order.
# (fact, action, words for the owner, appended to the record's text)
POLICY = (
    ("muted", "muted", ""),
    ("asks_alert", "alerted", ""),
    ("monitor", "monitor", "Monitor-only mode: nothing is quarantined automatically."),
    ("allowed", "alerted", "Not quarantined: the owner allowed this device."),
    ("held_off", "alerted", "Not quarantined: the owner released it from quarantine a short while ago."),
    ("in_quarantine", "alerted", "It is already in quarantine."),
    ("no_firewall", "alerted", "Not quarantined: blocking is not running."),
)


def facts(verdict, mode, muted, allowed, held_off, in_quarantine, no_firewall=False):
    """The facts POLICY reads, as one dict (named, so a test reads as a story)."""
    return {"muted": muted, "asks_alert": verdict.get("severity") != "quarantine",
            "monitor": mode == "alert", "allowed": allowed, "held_off": held_off,
            "in_quarantine": in_quarantine, "no_firewall": no_firewall}


def decide(known):
    """(action, why) for one verdict: the first POLICY row whose fact holds,
    else a quarantine."""
    for fact, action, why in POLICY:
        if known.get(fact):
            return action, why
    return "quarantined", ""


def _numbers(d):
    out = {}
    if not isinstance(d, dict):
        return out
    for k in sorted(d)[:FIGURES_MAX]:
        v = d[k]
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[str(k)[:NAME_MAX]] = v
    return out


def _examples(ex):
    ex = ex if isinstance(ex, dict) else {}
    remotes = [str(r)[:REMOTE_MAX] for r in (ex.get("remotes") or [])][:EXAMPLES_MAX]
    ports = [p for p in (ex.get("ports") or []) if isinstance(p, int)][:EXAMPLES_MAX]
    return {"remotes": remotes, "ports": ports}


def words(name, verdict, why=""):
    """The record's text: the device's name first, then the detector's words."""
    text = str(verdict.get("text") or verdict.get("rule") or "")
    if name:
        text = "%s: %s" % (name, text)
    if why:
        text += " " + why
    return text[:TEXT_MAX]


def new_record(ident, verdict, name, now_wall, scan):
    """An anomaly record (the API's shape) for a verdict seen the first time."""
    return {"id": ident, "mac": verdict["mac"], "device": name or "",
            "rule": verdict["rule"], "layer": verdict.get("layer") or "A",
            "severity": verdict.get("severity") or "alert",
            "text": words(name, verdict),
            "figures": _numbers(verdict.get("figures")),
            "thresholds": _numbers(verdict.get("thresholds")),
            "window": verdict.get("window") or 0,
            "examples": _examples(verdict.get("examples")),
            "first": int(now_wall), "last": int(now_wall), "first_scan": scan,
            "scans": 1, "action": "alerted", "state": "open", "until": None}


def merge(rec, verdict, now_wall):
    """A later verdict of the same open record: it held once more; each
    figure keeps its worst value, examples fill up to EXAMPLES_MAX."""
    rec["last"] = int(now_wall)
    rec["scans"] += 1
    figures = rec["figures"]
    for k, v in _numbers(verdict.get("figures")).items():
        if k in figures or len(figures) < FIGURES_MAX:
            figures[k] = max(figures.get(k, v), v)
    if verdict.get("severity") == "quarantine":
        rec["severity"] = "quarantine"
    ex = _examples(verdict.get("examples"))
    for key in ("remotes", "ports"):
        have = rec["examples"][key]
        for x in ex[key]:
            if x not in have and len(have) < EXAMPLES_MAX:
                have.append(x)
    return rec


def is_open(rec):
    return rec["state"] not in CLOSED


# -- mutes: [{"mac", "rule", "created", "until" (wall seconds or None)}] ----

def live_mutes(mutes, now_wall):
    return [m for m in mutes if m.get("until") is None or m["until"] > now_wall]


def muted(mutes, mac, rule, now_wall):
    for m in mutes:
        if m["mac"] == mac and m["rule"] == rule and (m.get("until") is None or m["until"] > now_wall):
            return True
    return False


def read_mutes(store):
    """The mutes of a parsed anomalies.json, or ValueError saying what is wrong."""
    if not isinstance(store, dict) or not isinstance(store.get("mutes"), list):
        raise ValueError("no mutes list")
    if not isinstance(store.get("next_id", 1), int):
        raise ValueError("next_id is not a number")
    out = []
    for m in store["mutes"]:
        if not isinstance(m, dict) or not isinstance(m.get("mac"), str) or not isinstance(m.get("rule"), str):
            raise ValueError("a mute without mac or rule: %r" % (m,))
        until = m.get("until")
        if until is not None and not isinstance(until, (int, float)):
            raise ValueError("a mute with a bad until: %r" % (until,))
        out.append({"mac": m["mac"], "rule": m["rule"], "created": m.get("created") or 0, "until": until})
    return out


def read_released(store):
    """{(mac, rule): wall seconds} of the owner's releases in a parsed
    anomalies.json (a file of an older version has none)."""
    out = {}
    for r in store.get("released") or ():
        if not isinstance(r, dict) or not isinstance(r.get("at"), (int, float)):
            raise ValueError("a release without its time: %r" % (r,))
        out[(str(r.get("mac")), str(r.get("rule")))] = r["at"]
    return out


def adopted(q):
    """The record of an automatic quarantine that blocks kept across a
    restart (the records themselves live in memory): what the quarantine
    says of it, so `keep` and `release` still find it. The figures are gone."""
    reason = q.get("reason") or ""
    text = reason.partition("): ")[2] or reason
    kept = q.get("expires") is None
    return {"id": q["anomaly"], "mac": q["mac"], "device": "",
            "rule": q.get("rule") or "", "layer": "A", "severity": "quarantine",
            "text": text, "figures": {}, "thresholds": {}, "window": 0,
            "examples": {"remotes": [], "ports": []},
            "first": q.get("created") or 0, "last": q.get("created") or 0, "first_scan": 0,
            "scans": 0, "action": "quarantined", "state": "kept" if kept else "quarantined",
            "until": q.get("expires")}


class Anomalies:
    """Agent part: records, the policy applied to each scan's verdicts, and
    the API's anomaly methods (api.py calls the methods below)."""
    name = "anomalies"

    def __init__(self, cfg):
        self.cfg = cfg
        self.path = (cfg.get("state_dir") or "/etc/spin") + "/anomalies.json"
        self.records = []        # oldest first, at most max_anomalies
        self.open = {}           # (mac, rule) -> its open record
        self.released = {}       # (mac, rule) -> wall seconds the owner released it
        self.mutes = []
        self.next_id = 1
        self.saved = None
        self.dropped = 0
        self.agent = None
        self.load()

    # -- the file -----------------------------------------------------------

    def load(self):
        data = plat.read_file(self.path)
        if data is None:
            return
        try:
            store = plat.json.loads(data.decode())
            self.mutes = read_mutes(store)
            self.released = read_released(store)
            self.next_id = store.get("next_id", 1)
        except (ValueError, AttributeError, UnicodeError) as e:
            # the detector keeps working, and the owner sees why their mutes are gone
            plat.keep_bad(self.path, data, e, ", no mutes")
            self.mutes = []
            self.released = {}
            return
        self.saved = self._text()

    def _text(self):
        # releases are kept so that a restart does not undo the owner's
        # decision by quarantining again within the hold-off
        released = [{"mac": k[0], "rule": k[1], "at": int(t)} for k, t in sorted(self.released.items())]
        return plat.json.dumps({"version": 1, "next_id": self.next_id, "mutes": self.mutes,
                                "released": released})

    def save(self):
        text = self._text()
        if text == self.saved:
            return
        plat.write_state(self.path, text)
        self.saved = text

    def persist(self, undo):
        """Save an owner's mute, or undo it: a mute the router would forget
        at the next restart is refused rather than half made."""
        try:
            self.save()
        except OSError as e:
            undo()
            raise ApiError(errors.UNKNOWN_ERROR, "cannot save %s: %s" % (self.path, e))

    # -- part ---------------------------------------------------------------

    def start(self, agent):
        self.agent = agent
        agent.anomalies = self
        agent.listeners.append(self.heard)
        self.adopt(getattr(agent, "blocks", None))

    def adopt(self, blocks):
        """Records for the automatic quarantines blocks still holds."""
        if blocks is None:
            return
        for q in blocks.store["quarantines"]:
            ident = q.get("anomaly")
            if not isinstance(ident, int) or any(r["id"] == ident for r in self.records):
                continue
            rec = adopted(q)
            rec["device"] = blocks.name_of(q["mac"]) or ""
            self.records.append(rec)
            self.open[(rec["mac"], rec["rule"])] = rec
            self.next_id = max(self.next_id, ident + 1)
        self.records.sort(key=lambda r: r["id"])

    def reload(self, agent):
        self.cfg = agent.cfg
        while len(self.records) > self._most():
            self._drop_oldest()

    def stop(self, agent):
        if self.heard in agent.listeners:
            agent.listeners.remove(self.heard)

    def _setting(self, key, default, least=1):
        """A whole-number option; its default when it is missing or too small."""
        v = self.cfg.get(key, default)
        return v if isinstance(v, int) and v >= least else default

    def _most(self):
        return self._setting("max_anomalies", 200)

    def after_scan(self, agent, now_ms):
        now = plat.wall()
        self._expire_mutes(now)
        for v in getattr(agent, "verdicts", None) or ():
            if isinstance(v, dict) and v.get("mac") and v.get("rule"):
                self.verdict(v, now)
        for rec in list(self.open.values()):
            if rec["state"] == "open" and now - rec["last"] > QUIET_S:
                self._close(rec, "expired")
        holdoff = self._setting("quarantine_holdoff", 60, least=0) * 60
        over = [k for k, t in self.released.items() if now - t >= holdoff]
        for key in over:
            del self.released[key]
        if over:
            self._save_quietly()

    # -- one verdict ----------------------------------------------------------

    def _facts(self, v, now):
        blocks = getattr(self.agent, "blocks", None)
        mac, rule = v["mac"], v["rule"]
        holdoff = self._setting("quarantine_holdoff", 60, least=0) * 60
        t = self.released.get((mac, rule))
        return facts(v, self.cfg.get("detect_mode", "quarantine"),
                     muted(self.mutes, mac, rule, now),
                     allowed=blocks is not None and blocks.is_allowed(mac),
                     held_off=t is not None and now - t < holdoff,
                     in_quarantine=blocks is not None and blocks.quarantine_of(mac) is not None,
                     no_firewall=blocks is None)

    def verdict(self, v, now):
        key = (v["mac"], v["rule"])
        rec = self.open.get(key)
        action, why = decide(self._facts(v, now))
        if action == "muted":
            return None
        if rec is not None:
            merge(rec, v, now)
            if rec["state"] != "open" or action != "quarantined":
                return rec
            rec["text"] = words(rec["device"], v)    # what held it back no longer does
        else:
            rec = self._open(v, now, why)
            rec["action"] = action
            if action != "quarantined":
                self._emit(rec)
                return rec
        self._quarantine(rec)
        return rec

    def _name(self, mac):
        devs = getattr(self.agent, "devices", None)
        d = devs.get(mac) if devs is not None else None
        return d.name if d is not None and d.name else ""

    def _open(self, v, now, why):
        rec = new_record(self.next_id, v, self._name(v["mac"]), now, getattr(self.agent, "scans", 0))
        if why:
            rec["text"] = words(rec["device"], v, why)
        self.next_id += 1
        self._save_quietly()
        if len(self.records) >= self._most():
            self._drop_oldest()
        self.records.append(rec)
        self.open[(rec["mac"], rec["rule"])] = rec
        # a watched device's last packets: what the finding came from
        caps = getattr(self.agent, "captures", None)
        if caps is not None and rec["mac"] in caps.watches:
            dump = caps.dump(rec["mac"], "anomaly %d" % rec["id"])
            if dump is not None:
                rec["pcap"] = {"id": dump["id"], "file": dump["file"], "packets": dump["packets"]}
        return rec

    def _drop_oldest(self):
        old = self.records.pop(0)
        if self.open.get((old["mac"], old["rule"])) is old:
            del self.open[(old["mac"], old["rule"])]
        self.dropped += 1

    def _quarantine(self, rec):
        minutes = self._setting("quarantine_minutes", 15)
        reason = ("anomaly %d (%s): %s" % (rec["id"], rec["rule"], rec["text"]))[:REASON_MAX]
        try:
            self.agent.blocks.quarantine({"mac": rec["mac"], "minutes": minutes, "reason": reason,
                                          "anomaly": rec["id"], "rule": rec["rule"]})
        except ApiError as e:
            # the store refused (a group address, the router's own, cannot
            # save): an alert that says why, never a half quarantine
            rec["action"] = "alerted"
            rec["text"] = (rec["text"] + " Not quarantined: " + e.message)[:TEXT_MAX]
            self._emit(rec)
            return
        q = self.agent.blocks.quarantine_of(rec["mac"]) or {}
        rec["action"] = "quarantined"
        rec["state"] = "quarantined"
        rec["until"] = q.get("expires")
        self._emit(rec)

    def _emit(self, rec):
        if self.agent is not None:
            self.agent.emit("spin.anomaly", dict(rec))

    def _close(self, rec, state):
        rec["state"] = state
        rec["until"] = None
        key = (rec["mac"], rec["rule"])
        if self.open.get(key) is rec:
            del self.open[key]

    # -- what blocks tells (spin.quarantine events) ----------------------------

    def heard(self, name, data):
        if name != "spin.quarantine" or not isinstance(data, dict):
            return
        rec = self._quarantined_record(data.get("mac"), data.get("anomaly"))
        if rec is None:
            return
        action = data.get("action")
        if action == "release":
            self._close(rec, "released")
            self.released[(rec["mac"], rec["rule"])] = plat.wall()
            self._save_quietly()
        elif action == "expired":
            self._close(rec, "expired")

    def _quarantined_record(self, mac, ident):
        for rec in self.open.values():
            if rec["mac"] == mac and rec["state"] in ("quarantined", "kept"):
                if ident is None or rec["id"] == ident:
                    return rec
        return None

    # -- mutes ----------------------------------------------------------------

    def _save_quietly(self):
        # not an owner's call that could be refused: a warning, and the
        # next change tries again
        try:
            self.save()
        except OSError as e:
            plat.warn("cannot save %s: %s" % (self.path, e))

    def _expire_mutes(self, now):
        live = live_mutes(self.mutes, now)
        if len(live) != len(self.mutes):
            self.mutes = live
            self._save_quietly()

    # -- the API (validated arguments from api.py) ---------------------------

    def record(self, ident):
        for rec in self.records:
            if rec["id"] == ident:
                return rec
        raise ApiError(NOT_FOUND, "no anomaly %d" % ident)

    def listing(self, mac):
        """Newest first, of one device or all."""
        out = [r for r in self.records if mac is None or r["mac"] == mac]
        out.reverse()
        return out

    def keep(self, ident):
        rec = self.record(ident)
        if rec["state"] == "kept":
            return rec
        if rec["state"] != "quarantined":
            raise ApiError(INVALID, "anomaly %d is %s, not in quarantine: nothing to keep" % (ident, rec["state"]))
        self.agent.blocks.keep(rec["mac"])
        rec["state"] = "kept"
        rec["until"] = None
        return rec

    def mute(self, mac, rule, minutes):
        self._check_rule(rule)
        now = int(plat.wall())
        m = {"mac": mac, "rule": rule, "created": now,
             "until": now + minutes * 60 if minutes else None}
        before = list(self.mutes)
        self.mutes = [x for x in self.mutes if not (x["mac"] == mac and x["rule"] == rule)] + [m]

        def undo():
            self.mutes = before
        self.persist(undo)
        rec = self.open.get((mac, rule))
        if rec is not None:
            rec["action"] = "muted"
        return m

    def unmute(self, mac, rule):
        self._check_rule(rule)
        now = plat.wall()
        if not muted(self.mutes, mac, rule, now):
            raise ApiError(NOT_FOUND, "%s is not muted for %s" % (rule, mac))
        before = list(self.mutes)
        self.mutes = [x for x in self.mutes if not (x["mac"] == mac and x["rule"] == rule)]

        def undo():
            self.mutes = before
        self.persist(undo)
        return {"mac": mac, "rule": rule}

    def mute_list(self):
        return live_mutes(self.mutes, plat.wall())

    def _check_rule(self, rule):
        if rule not in RULES:
            raise ApiError(INVALID, "rule: %r is not one of %s" % (rule, ", ".join(RULES)))

    def status(self):
        now = plat.wall()
        states = [r["state"] for r in self.open.values()]
        return {"open": states.count("open"),
                "quarantined": states.count("quarantined") + states.count("kept"),
                "muted": len(live_mutes(self.mutes, now)), "dropped": self.dropped,
                "records": len(self.records)}
