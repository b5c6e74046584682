"""The `spin` command: run the agent, call its API, watch the home live.

    spin agent [-c CONFIG]            run the agent in the foreground
    spin call [-c CONFIG] METHOD [JSON]
    spin top [-c CONFIG] [-n COUNT]   live table of devices, one refresh a scan

Arguments are read by hand (argparse is not in MicroPython's Unix port).
"""

import sys

from . import config, plat

json = plat.json

DEFAULT_CONFIG = "/etc/config/spin"

USAGE = """usage: spin agent [-c CONFIG]
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


def cmd_agent(argv):
    from . import agent
    opts, _ = options(argv, ("-c",))
    return agent.main(opts.get("-c", DEFAULT_CONFIG))


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
        sys.stderr.write("spin: cannot reach the agent: %s\n" % e)
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


def top_table(devices, width=100):
    """Rows of the live view, busiest first."""
    rows = [("NAME", "IP", "OUT/s", "IN/s", "CONNS", "OUT", "IN", "TOP ENDPOINT")]
    devs = sorted(devices, key=lambda d: -(d["rate_out"] + d["rate_in"]))
    for d in devs:
        ips = [ip for ip in d["ips"] if ":" not in ip] or d["ips"] or ["-"]
        top = d["bucket"]["top"]
        names = d["bucket"].get("names") or {}
        rows.append((
            (d["name"] or d["mac"])[:20], ips[0], human(d["rate_out"]), human(d["rate_in"]),
            str(d["connections"]), human(d["bucket"]["bytes_out"]), human(d["bucket"]["bytes_in"]),
            names.get(top[0][0], top[0][0]) if top else "-",
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for r in rows:
        lines.append("  ".join(r[i].ljust(widths[i]) for i in range(len(r)))[:width])
    return "\n".join(lines)


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
                body = top_table(devs)
                head = "spin-lite %s  devices %d  flows %d  scan %d ms  (Ctrl-C quits)" % (
                    status["version"], status["devices"], status["flows"], status["last_scan_ms"])
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
    if verb == "print":
        if backend.name == "iptables":
            sys.stdout.write("### ipset -exist restore\n" + firewall.render_ipset(state))
            for fam in (4, 6):
                sys.stdout.write("### %s-restore --noflush\n" % backend.cmd[fam])
                sys.stdout.write(firewall.render_iptables(state, fam))
        else:
            sys.stdout.write(firewall.render(state))
            sys.stdout.write(firewall.render_bridge(state, getattr(backend, "lan_watch", None)))
        return 0
    err = backend.check(state)
    whole = backend.intact(state)
    sys.stdout.write("%s: rules %s; loaded %s\n" % (
        backend.name, "accepted" if err is None else "refused: " + err,
        "and whole" if whole else "no (or not whole)"))
    return 0 if err is None and whole else 1


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


COMMANDS = {"agent": cmd_agent, "call": cmd_call, "top": cmd_top, "firewall": cmd_firewall}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        sys.stderr.write(USAGE)
        sys.exit(2)
    sys.exit(COMMANDS[argv[0]](argv[1:]))
