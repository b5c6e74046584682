"""The `spin` command: run the agent, call its API, watch the home live.

    spin agent [-c CONFIG]            run the agent in the foreground
    spin controller [-c CONFIG] [--share GROUP --id NAME]
                                      merge each home's agents read from MQTT;
                                      --share: the homes shared out among a group
    spin call [-c CONFIG] METHOD [JSON]
    spin top [-c CONFIG] [-n COUNT]   live table of devices, one refresh a scan

Arguments are read by hand (argparse is not in MicroPython's Unix port).
"""

import os
import sys

from . import config, plat

json = plat.json

# SPIN_CONFIG names another default: the demo's home and tests set it,
# so the README's `spin call ...` lines work there as they do on a router
DEFAULT_CONFIG = os.getenv("SPIN_CONFIG") or "/etc/config/spin"

USAGE = """usage: spin agent [-c CONFIG]
       spin controller [-c CONFIG] [--share GROUP --id NAME]
       spin call [-c CONFIG] METHOD [JSON-ARGS]
       spin top [-c CONFIG] [-n COUNT]
       spin firewall print|check|flush [-c CONFIG]
"""


def options(argv, flags):
    """Split argv into ({flag: value}, positional); flags take one value."""
    opts = {}
    rest = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in flags:
            if i + 1 >= len(argv):
                raise SystemExit("spin: %s needs a value" % a)
            opts[a] = argv[i + 1]
            i += 2
        elif a in ("-h", "--help"):
            sys.stdout.write(USAGE)
            raise SystemExit(0)
        else:
            rest.append(a)
            i += 1
    return opts, rest


def caller(cfg):
    """A function (method, args) -> reply over the transport that is there:
    ubus where this host has ubusd, else JSON-RPC on the agent's socket."""
    from . import jsonrpc, ubuslink
    if ubuslink.find_socket(cfg):
        return ubuslink.caller(cfg)
    address = cfg["rpc_socket"] or cfg["rpc_listen"]
    if not address:
        raise SystemExit("spin: neither rpc_socket nor rpc_listen is configured")
    token = cfg["token"] if cfg["rpc_listen"] and not cfg["rpc_socket"] else None
    return lambda method, args: jsonrpc.call(address, method, args, token)


def where(cfg):
    """The address `caller` tries, for the error that says it failed."""
    from . import ubuslink
    sock = ubuslink.find_socket(cfg)
    if sock:
        return "ubus %s" % sock
    return cfg["rpc_socket"] or cfg["rpc_listen"]


def cmd_agent(argv):
    from . import agent
    opts, _ = options(argv, ("-c",))
    return agent.main(opts.get("-c", DEFAULT_CONFIG))


def cmd_controller(argv):
    try:
        from . import controller
    except ImportError as e:  # a router's spin package does not carry it
        plat.warn("spin controller: %s (on OpenWrt: opkg install spin-controller)" % e)
        return 1
    opts, _ = options(argv, ("-c", "--share", "--id"))
    return controller.main(opts.get("-c", DEFAULT_CONFIG), opts.get("--share"), opts.get("--id"))


def cmd_call(argv):
    from . import jsonrpc
    opts, rest = options(argv, ("-c",))
    if not rest:
        raise SystemExit(USAGE)
    args = {}
    if len(rest) > 1:
        try:
            args = json.loads(rest[1])
        except ValueError:
            raise SystemExit("spin: arguments must be a JSON object: %s" % rest[1])
    cfg, _ = config.load(opts.get("-c", DEFAULT_CONFIG))
    try:
        reply = caller(cfg)(rest[0], args)
    except jsonrpc.RemoteError as e:
        sys.stderr.write("spin: %s: %s\n" % (rest[0], e))
        return e.status or 1
    except OSError as e:
        path = opts.get("-c", DEFAULT_CONFIG)
        origin = path if plat.read_file(path) is not None else "defaults: there is no %s; give -c CONFIG" % path
        sys.stderr.write("spin: cannot reach the agent at %s (%s): %s\n" % (where(cfg), origin, e))
        return 10
    sys.stdout.write(pretty(reply) + "\n")
    return 0


def pretty(obj):
    try:
        return json.dumps(obj, indent=2, sort_keys=True)
    except TypeError:  # MicroPython's json has no indent
        return json.dumps(obj)


def human(n):
    for unit in ("B", "K", "M", "G", "T"):
        if n < 1024 or unit == "T":
            return ("%d%s" % (n, unit)) if unit == "B" else ("%.1f%s" % (n, unit))
        n /= 1024.0


def all_devices(call):
    """Every device, page after page (a reply holds at most one page)."""
    devs = []
    while True:
        page = call("devices", {"offset": len(devs)})
        devs.extend(page["devices"])
        if not page["remaining"] or not page["devices"]:
            return devs


# the marks of `spin top`'s first column, strongest first: a device in
# quarantine, a device blocked whole, a device with some traffic blocked
MARKS = (("Q", "quarantined"), ("B", "blocked"), ("b", "partly blocked"))
MARK_RANK = {m: i for i, (m, _) in enumerate(MARKS)}


def _stronger(marks, key, mark):
    old = marks.get(key)
    if old is None or MARK_RANK[mark] < MARK_RANK[old]:
        marks[key] = mark


def device_marks(listing, devices):
    """{mac: mark} from the `blocks` reply: "Q" quarantined, "B" blocked
    whole (by MAC or by one of its addresses), "b" some destinations or
    ports blocked; a block not in force (the device is allowed) marks
    nothing."""
    marks = {}
    by_ip = {}
    for d in devices:
        for ip in d.get("ips") or []:
            by_ip[ip] = d["mac"]
    for b in listing.get("blocks") or []:
        if b.get("active") is False:
            continue
        mac = b.get("mac") or by_ip.get(b.get("ip"))
        if not mac:
            continue   # a destination blocked for every device
        whole = not (b.get("remote") or b.get("port") or b.get("proto"))
        _stronger(marks, mac, "B" if whole else "b")
    for q in listing.get("quarantines") or []:
        _stronger(marks, q["mac"], "Q")
    return marks


def top_table(devices, width=100, marks=None):
    """Rows of the live view, busiest first; marks ({mac: "Q"|"B"|"b"})
    fill the first column."""
    marks = marks or {}
    rows = [("!", "NAME", "IP", "OUT/s", "IN/s", "CONNS", "OUT", "IN", "TOP ENDPOINT")]
    devs = sorted(devices, key=lambda d: -(d["rate_out"] + d["rate_in"]))
    for d in devs:
        ips = [ip for ip in d["ips"] if ":" not in ip] or d["ips"] or ["-"]
        recent = d.get("recent") or d["bucket"]  # the open minute and the one before
        top = recent["top"]
        names = recent.get("names") or {}
        rows.append((
            marks.get(d["mac"], " "),
            (d["name"] or d["mac"])[:20], ips[0], human(d["rate_out"]), human(d["rate_in"]),
            str(d["connections"]), human(d["bucket"]["bytes_out"]), human(d["bucket"]["bytes_in"]),
            names.get(top[0][0], top[0][0]) if top else "-",
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for r in rows:
        lines.append("  ".join(r[i].ljust(widths[i]) for i in range(len(r)))[:width].rstrip())
    used = sorted(set(marks.get(d["mac"]) for d in devs) - {None}, key=lambda m: MARK_RANK[m])
    if used:
        lines.append("")
        lines.append("  ".join("%s %s" % (m, dict(MARKS)[m]) for m in used))
    return "\n".join(lines)


def top_head(status):
    """The first line: the agent, and the detector's open alerts and
    quarantines when the agent runs its response (status "anomalies")."""
    head = "spin-lite %s  devices %d  flows %d  scan %d ms" % (
        status["version"], status["devices"], status["flows"], status["last_scan_ms"])
    seen = status.get("anomalies")
    if seen:
        head += "  alerts %d open, %d in quarantine" % (seen.get("open", 0), seen.get("quarantined", 0))
    return head + "  (Ctrl-C quits)"


def top_marks(call, devices):
    """The marks for one refresh: `blocks` asked once; an agent that
    cannot answer it still gets its table, unmarked, and says so."""
    from . import jsonrpc
    try:
        return device_marks(call("blocks", {}), devices), ""
    except (OSError, jsonrpc.RemoteError) as e:
        return {}, "  (blocks unknown: %s)" % e


def cmd_top(argv):
    from . import jsonrpc
    import time
    opts, _ = options(argv, ("-c", "-n"))
    cfg, _ = config.load(opts.get("-c", DEFAULT_CONFIG))
    count = int(opts.get("-n", "0"))
    call = caller(cfg)
    shown = 0
    try:
        while True:
            try:
                status = call("status", {})
                devs = all_devices(call)
                marks, why = top_marks(call, devs)
                body = top_table(devs, marks=marks)
                head = top_head(status) + why
            except (OSError, jsonrpc.RemoteError) as e:
                head, body = "spin-lite: waiting for the agent (%s)" % e, ""
                status = {"scan_interval": 2}
            sys.stdout.write("\x1b[H\x1b[2J" + head + "\n\n" + body + "\n")
            sys.stdout.flush()
            shown += 1
            if count and shown >= count:
                return 0
            time.sleep(status["scan_interval"])
    except KeyboardInterrupt:
        return 0


FIREWALL_USAGE = """usage: spin firewall print|check|flush [-c CONFIG]
  print   the rules the agent loads (device addresses asked from a running agent)
  check   whether the kernel accepts them (nft -c) and whether they are loaded whole
  flush   delete spin's table / chains / ipsets (a running agent puts them back)
"""


def cmd_firewall(argv):
    """`spin firewall print|check|flush`: the rules as the store renders
    them, asking the running agent for device addresses; here, not in
    `firewall`, because the renderer must not know the transports."""
    from . import blocks, firewall
    opts, argv = options(argv, ("-c",))
    cfg = config.load(opts.get("-c", DEFAULT_CONFIG))[0]
    verb = argv[0] if argv else ""
    if verb not in ("print", "check", "flush"):
        sys.stderr.write(FIREWALL_USAGE)
        return 2
    part = blocks.Blocks(cfg)
    backend = part.backend
    state = part.state()
    if verb == "flush":
        err = firewall.remove_all(backend)
        sys.stdout.write("%s: %s\n" % (backend.name, err or "removed"))
        return 1 if err else 0
    state["devices"] = _agent_addresses(cfg, state["devices"])
    if getattr(backend, "uplink", None) and not backend.uplink[1]:
        # an access point without lan_net: the prefixes the agent read
        backend.uplink = firewall.uplink_of(cfg, _agent_lan(cfg))
    if verb == "print":
        if backend.name == "iptables":
            sys.stdout.write("### ipset -exist restore\n" + firewall.render_ipset(state))
            for fam in (4, 6):
                sys.stdout.write("### %s-restore --noflush\n" % backend.cmd[fam])
                sys.stdout.write(firewall.render_iptables(state, fam))
        else:
            sys.stdout.write(firewall.render(state))
            sys.stdout.write(firewall.render_bridge(state, getattr(backend, "lan_watch", None),
                                                    getattr(backend, "uplink", None)))
        return 0
    err = backend.check(state)
    whole = backend.intact(state)
    sys.stdout.write("%s: rules %s; loaded %s\n" % (
        backend.name, "accepted" if err is None else "refused: " + err,
        "and whole" if whole else "no (or not whole)"))
    return 0 if err is None and whole else 1


def _agent_lan(cfg):
    """The LAN prefixes the running agent read from lan_ifname, or []."""
    address = cfg.get("rpc_socket") or cfg.get("rpc_listen")
    try:
        from . import jsonrpc
        return jsonrpc.call(address, "status", {}, cfg.get("token") or None).get("lan") or []
    except Exception:  # no agent: said already by _agent_addresses
        return []


def _agent_addresses(cfg, macs):
    """{mac: ips} from the running agent, or empty lists when it is not."""
    address = cfg.get("rpc_socket") or cfg.get("rpc_listen")
    if not address:
        return macs
    try:
        from . import jsonrpc
        out = {}
        for mac in macs:
            d = jsonrpc.call(address, "device", {"mac": mac}, cfg.get("token") or None)
            out[mac] = d.get("ips") or []
        return out
    except Exception as e:  # no agent: render without addresses, and say so
        sys.stderr.write("spin: agent not reachable (%s); device addresses left out\n" % e)
        return macs


COMMANDS = {"agent": cmd_agent, "controller": cmd_controller, "call": cmd_call, "top": cmd_top, "firewall": cmd_firewall}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        sys.stderr.write(USAGE)
        sys.exit(2)
    sys.exit(COMMANDS[argv[0]](argv[1:]))
