"""Configuration: a small UCI file reader and one table of defaults.

The agent reads /etc/config/spin itself (no `uci` binary, no libuci), so
the same code runs on a router, a Debian host and MicroPython. Every option
has its default, type and meaning in OPTIONS; an unknown or invalid option
gives a warning that names the section and option, and the default is used.
"""

from . import detect, plat

# name: (type, default, meaning)
OPTIONS = {
    "enabled": ("bool", True, "run the agent at all"),
    "scan_interval": ("int", 5, "seconds between conntrack scans"),
    "bucket_seconds": ("int", 60, "length of one history bucket"),
    "fine_buckets": ("int", 60, "buckets kept at full resolution"),
    "coarse_factor": ("int", 30, "fine buckets folded into one coarse bucket"),
    "coarse_buckets": ("int", 48, "coarse buckets kept"),
    "top_remotes": ("int", 3, "top remotes by bytes kept per bucket"),
    "digest_remotes": ("int", 64, "remotes kept with their bytes in a device's open bucket; the rest count under others"),
    "digest_remote_table": ("int", 4096, "remote addresses the top lists of all rings can name (at most 65535)"),
    "max_devices": ("int", 512, "devices kept; the longest unseen is dropped"),
    "max_flows": ("int", 65536, "flows tracked between scans"),
    "lan_ifname": ("str", "br-lan", "LAN interface: its prefixes decide who is a device"),
    "lan_net": ("list", [], "LAN prefixes (CIDR); empty: read from lan_ifname"),
    "conntrack_file": ("str", "/proc/net/nf_conntrack", "conntrack table"),
    "ctevents": ("bool", True, "also listen to conntrack events (netlink), so flows that end between two scans are counted: attempts refused with a reset, short UDP exchanges; off or without CAP_NET_ADMIN: snapshots alone"),
    "arp_file": ("str", "/proc/net/arp", "IPv4 neighbour table"),
    "leases_file": ("str", "/tmp/dhcp.leases", "dnsmasq lease file"),
    "dhcp_config": ("str", "/etc/config/dhcp", "static DHCP hosts (UCI)"),
    "state_dir": ("str", "/etc/spin", "persisted user decisions"),
    "run_dir": ("str", "/var/run/spin", "runtime files"),
    "rpc_socket": ("str", "/var/run/spin/rpc.sock", "JSON-RPC on a unix socket (mode 0600); empty: off"),
    "rpc_listen": ("str", "", "JSON-RPC on host:port; other than loopback needs token"),
    "token": ("str", "", "bearer token for a non-loopback rpc_listen"),
    "www_dir": ("str", "/www", "visualizer files (luci-app-spin's htdocs) served on the JSON-RPC listener; empty: off"),
    "ubus_socket": ("str", "/var/run/ubus/ubus.sock", "ubusd socket"),
    "firewall": ("str", "auto", "auto | nft | iptables | none"),
    "lan_watch": ("bool", True, "count new LAN-to-LAN connection attempts per device in table bridge spin (nft backend)"),
    "lan_watch_size": ("int", 4096, "attempts (device . peer . protocol . port) the LAN watch holds at once; past it new ones go uncounted"),
    "iptables_cmd": ("str", "", "iptables binary; empty: iptables-legacy when present (firewall3), else iptables"),
    "quarantine_minutes": ("int", 15, "minutes an automatic quarantine lasts unless the owner keeps it"),
    "quarantine_holdoff": ("int", 60, "minutes after the owner releases a device in which the same rule only alerts (0: none)"),
    "max_anomalies": ("int", 200, "anomaly records kept; the oldest is dropped and counted"),
    "dns_snoop": ("bool", True, "read DNS answers on lan_ifname to name endpoints"),
    "max_endpoints": ("int", 4096, "remote addresses whose DNS names are kept; least recently used dropped"),
    "endpoints_bytes": ("int", 1048576, "estimated bytes the endpoint names may take; least recently used dropped"),
    "names_per_endpoint": ("int", 4, "DNS names kept per remote address"),
    "dns_grace": ("int", 60, "seconds after a DNS record's TTL ran out in which a new flow to its address still takes its name"),
    "dns_hold": ("int", 600, "seconds a name stays after the last traffic of flows begun while its record was valid"),
    "dns_ttl_max": ("int", 86400, "seconds a DNS record counts as valid at most, whatever its TTL"),
    "detect": ("bool", True, "watch each device for scans, floods and other signs of infection"),
    "detect_mode": ("str", "quarantine", "quarantine | alert: what the detector's near-certain findings do (alert: never quarantine)"),
    "detect_threshold": ("list", [], "per-rule thresholds, 'rule.name=value' (README: Detection)"),
    "heap_size": ("int", 8192, "KB of heap the agent takes on MicroPython (package spin-micropython), at its next start"),
    "capture_max": ("int", 2, "device captures running at once (0: captures off)"),
    "capture_seconds_max": ("int", 600, "longest capture, seconds"),
    "capture_kb_max": ("int", 4096, "largest capture file, KB"),
    "capture_free_kb": ("int", 8192, "KB that stay free on the capture directory's filesystem: a capture stops below it (reason space)"),
    "capture_dir": ("str", "", "capture files (directory 0700, files 0600); empty: captures/ under run_dir"),
    "capture_keep": ("bool", False, "keep capture files when the agent stops"),
    "watch_max": ("int", 4, "devices whose last packets are kept at once (watch), for the anomalies they may raise"),
    "watch_packets": ("int", 256, "packets kept per watched device (256 bytes of each)"),
    "capture_tcpdump": ("str", "tcpdump", "program that captures (OpenWrt's tcpdump-mini); empty or not installed: the agent's own AF_PACKET capture"),
    "mqtt_broker": ("str", "", "MQTT broker host:port (1883 when no port) the agent publishes to and takes orders from; empty: no MQTT"),
    "mqtt_home": ("str", "home", "the home's name in topics spin/<home>/<agent>/... (letters, digits, - and _)"),
    "mqtt_agent": ("str", "", "this agent's name in topics and its MQTT user's usual name; empty: the hostname"),
    "mqtt_username": ("str", "", "MQTT user name (the broker's password file); empty: none"),
    "mqtt_password": ("str", "", "MQTT password"),
    "mqtt_ca": ("str", "", "CA certificate file: set, the broker is reached over TLS and its certificate checked"),
    "mqtt_cert": ("str", "", "client certificate file for TLS (optional)"),
    "mqtt_key": ("str", "", "client certificate's key file (optional)"),
    "mqtt_keepalive": ("int", 60, "seconds between MQTT keepalives (5..3600)"),
    "bridge_uplink": ("str", "", "on a bridged access point: lan_ifname's port to the router; set, the agent counts its clients' IPv4 flows in nft table bridge spinap and (firewall nft) enforces blocks of remotes and quarantine across it in table bridge spin"),
    "mqtt_queue": ("int", 60, "messages (digests first) kept while the broker is away; the oldest dropped and counted"),
    "controller_homes": ("list", [], "the homes a controller serves: names, or '+' for every home whose agents publish a status; empty: mqtt_home"),
    "controller_forget": ("int", 24, "hours after which a controller forgets a device no agent has named, an agent offline, a home with neither (the agent's own history spans 24 h)"),
}

DETECT_MODES = ("quarantine", "alert")


class ConfigError(Exception):
    pass


def defaults():
    return {k: (list(v[1]) if v[0] == "list" else v[1]) for k, v in OPTIONS.items()}


def parse_uci(text):
    """Parse UCI text into [(type, name, {option: value or [values]})].

    Supports `config TYPE ['NAME']`, `option K 'V'`, `list K 'V'`, quotes
    of either kind, backslash escapes and comments. Lines it cannot read
    are returned as warnings, never fatal."""
    sections = []
    warnings = []
    cur = None
    for n, line in enumerate(text.split("\n"), 1):
        try:
            words = _split_words(line)
        except ConfigError as e:
            warnings.append("line %d: %s" % (n, e))
            continue
        if not words:
            continue
        kw = words[0]
        if kw == "config" and len(words) in (2, 3):
            cur = (words[1], words[2] if len(words) == 3 else None, {})
            sections.append(cur)
        elif kw in ("option", "list") and len(words) == 3 and cur is not None:
            opts = cur[2]
            if kw == "option":
                opts[words[1]] = words[2]
            else:
                v = opts.get(words[1])
                if not isinstance(v, list):
                    v = [] if v is None else [v]
                v.append(words[2])
                opts[words[1]] = v
        elif kw == "package":
            continue
        else:
            warnings.append("line %d: cannot read %r" % (n, line.strip()))
    return sections, warnings


def _split_words(line):
    words = []
    i = 0
    n = len(line)
    while i < n:
        c = line[i]
        if c in " \t\r":
            i += 1
            continue
        if c == "#":
            break
        word = ""
        while i < n and line[i] not in " \t\r":
            c = line[i]
            if c in "'\"":
                end = line.find(c, i + 1)
                if end < 0:
                    raise ConfigError("unterminated quote")
                word += line[i + 1:end]
                i = end + 1
            elif c == "\\" and i + 1 < n:
                word += line[i + 1]
                i += 2
            else:
                word += c
                i += 1
        words.append(word)
    return words


def _convert(kind, value):
    if kind == "list":
        return value if isinstance(value, list) else [value]
    if isinstance(value, list):
        raise ConfigError("is a list, expected one value")
    if kind == "int":
        try:
            v = int(value)
        except ValueError:
            raise ConfigError("%r is not a whole number" % value)
        if v < 0:
            raise ConfigError("%r is negative" % value)
        return v
    if kind == "bool":
        if value in ("1", "yes", "on", "true", "enabled"):
            return True
        if value in ("0", "no", "off", "false", "disabled"):
            return False
        raise ConfigError("%r is not a boolean" % value)
    return value


def load(path):
    """Read the `config spin` section of a UCI file. Returns (cfg, warnings);
    a missing file gives the defaults and one warning."""
    cfg = defaults()
    data = plat.read_file(path)
    if data is None:
        return cfg, ["%s: not found, using defaults" % path]
    sections, warnings = parse_uci(data.decode("utf-8", "replace"))
    for stype, sname, opts in sections:
        if stype != "spin":
            continue
        label = "spin.%s" % (sname or "@spin")
        for key, value in opts.items():
            spec = OPTIONS.get(key)
            if spec is None:
                warnings.append("%s: unknown option %r ignored" % (label, key))
                continue
            try:
                cfg[key] = _convert(spec[0], value)
            except ConfigError as e:
                warnings.append("%s.%s: %s; using %r" % (label, key, e, spec[1]))
    for key in ("scan_interval", "bucket_seconds", "fine_buckets", "coarse_factor",
                "coarse_buckets", "top_remotes", "max_devices", "digest_remotes",
                "digest_remote_table", "endpoints_bytes", "lan_watch_size",
                "capture_seconds_max", "capture_kb_max", "watch_packets"):
        if cfg[key] < 1:
            warnings.append("spin.%s: must be at least 1; using %r" % (key, OPTIONS[key][1]))
            cfg[key] = OPTIONS[key][1]
    if cfg["detect_mode"] not in DETECT_MODES:
        warnings.append("spin.detect_mode: %r is not one of %s; using %r"
                        % (cfg["detect_mode"], " | ".join(DETECT_MODES), OPTIONS["detect_mode"][1]))
        cfg["detect_mode"] = OPTIONS["detect_mode"][1]
    _check_mqtt(cfg, warnings)
    _, bad = detect.parse_thresholds(cfg["detect_threshold"])
    warnings.extend("spin.%s" % w for w in bad)
    return cfg, warnings


def topic_word(text):
    """A name that may stand between slashes of a topic: no wildcard, no slash."""
    return 0 < len(text) <= 64 and all(c.isalpha() or c.isdigit() or c in "-_" for c in text)


def _check_mqtt(cfg, warnings):
    for key in ("mqtt_home", "mqtt_agent"):
        if cfg[key] and not topic_word(cfg[key]):
            warnings.append("spin.%s: %r is not 1..64 letters, digits, - or _; using %r"
                            % (key, cfg[key], OPTIONS[key][1]))
            cfg[key] = OPTIONS[key][1]
    if not cfg["mqtt_home"]:
        cfg["mqtt_home"] = OPTIONS["mqtt_home"][1]
    broker = cfg["mqtt_broker"]
    if broker:
        host, sep, port = broker.rpartition(":")
        ok = bool(host.strip("[]")) and port.isdigit() and 0 < int(port) < 65536 if sep \
            else bool(broker) and ":" not in broker
        if not ok:
            warnings.append("spin.mqtt_broker: %r is not host or host:port; MQTT off" % broker)
            cfg["mqtt_broker"] = ""
    if not 5 <= cfg["mqtt_keepalive"] <= 3600:
        warnings.append("spin.mqtt_keepalive: %d is outside 5..3600; using 60" % cfg["mqtt_keepalive"])
        cfg["mqtt_keepalive"] = 60
    homes = [h for h in cfg["controller_homes"] if h == "+" or topic_word(h)]
    if homes != cfg["controller_homes"]:
        warnings.append("spin.controller_homes: %r: each must be '+' or 1..64 letters, digits, - or _; "
                        "using %r" % (cfg["controller_homes"], homes))
        cfg["controller_homes"] = homes
    if cfg["controller_forget"] < 1:
        warnings.append("spin.controller_forget: must be at least 1 (hour); using 24")
        cfg["controller_forget"] = 24
    if cfg["mqtt_queue"] < 1:
        warnings.append("spin.mqtt_queue: must be at least 1; using %r" % OPTIONS["mqtt_queue"][1])
        cfg["mqtt_queue"] = OPTIONS["mqtt_queue"][1]


def static_hosts(path):
    """Static DHCP hosts from /etc/config/dhcp: {mac: name}."""
    data = plat.read_file(path)
    if data is None:
        return {}
    sections, _ = parse_uci(data.decode("utf-8", "replace"))
    hosts = {}
    for stype, _, opts in sections:
        # `list name` is a list: no one name to give the device
        if stype != "host" or not isinstance(opts.get("name"), str) or "mac" not in opts:
            continue
        macs = opts["mac"]
        if not isinstance(macs, list):
            macs = macs.split()
        for mac in macs:
            hosts[mac.lower()] = opts["name"]
    return hosts
