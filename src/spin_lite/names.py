"""Names the owner reads: devices by name, endpoints by the names asked for.

One agent part ties together what turns addresses into words:

* endpoint names: an Endpoints table (bounded LRU, see endpoints.py) fed
  by the DNS answers dnssnoop reads on the LAN, kept in
  run_dir/endpoints.json across agent restarts (a camera that resolved its
  cloud hours ago will not ask again for up to a day); run_dir is tmpfs on
  OpenWrt, so this never wears flash and a reboot starts empty;
* owner names: `name {mac, name}` stores {mac: name} in
  state_dir/names.json; the device table applies it at every refresh
  (owner name > static DHCP host > lease hostname, devices.py);
* the ignore list: addresses or prefixes left out of `graph` and of the
  digests' top lists, still counted in every total. As in SPIN, the
  router's own addresses are ignored by default; unlike SPIN, that default
  is not a copy taken once: state_dir/ignored.json keeps only the owner's
  additions and removals, so the default follows the router's addresses
  when its WAN address changes.

A broken state file is kept as FILE.bad and the agent starts without it:
names are a convenience, and monitoring must not stop for them.
"""

from . import addr, domains, endpoints, errors, plat, services
from .dnssnoop import DnsSnoop

NAME_MAX = 64
TOP_DOMAINS = 5  # registrable domains kept per device and bucket
SAVE_SECONDS = 300  # endpoint names a kill -9 can lose: those this recent


def _prefix(remote):
    """'203.0.113.0/24' -> (is_v6, network int, prefix length)."""
    ip, _, bits = remote.partition("/")
    v6 = ":" in ip
    n = addr.parse_ipv6(ip) if v6 else addr.parse_ipv4(ip)
    width = 128 if v6 else 32
    plen = int(bits) if bits else width
    return v6, n >> (width - plen), plen


class Names:
    """Agent part; api handlers call name/ignore/unignore/ignored."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.endpoints = endpoints.Endpoints(cfg["max_endpoints"], cfg["names_per_endpoint"],
                                             cfg["dns_grace"], cfg["dns_ttl_max"],
                                             cfg.get("endpoints_bytes", 1048576), cfg["dns_hold"])
        self.snoop = DnsSnoop(self.endpoints)
        state = cfg.get("state_dir") or "/etc/spin"
        self.names_path = state + "/names.json"
        self.ignore_path = state + "/ignored.json"
        self.endpoints_path = (cfg.get("run_dir") or "/var/run/spin") + "/endpoints.json"
        self.saved_learned = 0  # endpoints.learned when last written
        self.last_save = 0
        self.restored = 0
        self.bad_files = 0
        self.owners = {}
        self.added = []     # remotes the owner ignored
        self.removed = []   # router addresses the owner wants to see
        self.router_ips = set()
        self.prefixes = []  # (v6, network, plen) of added prefixes
        self.closed_domains = {}  # mac -> (bucket n, [[domain, bytes]])
        self.load()

    # -- files --------------------------------------------------------------

    def _read(self, path, check):
        data = plat.read_file(path)
        if data is None:
            return None
        try:
            value = plat.json.loads(data.decode())
            check(value)
            return value
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            plat.keep_bad(path, data, e)
            self.bad_files += 1
            return None

    def load(self):
        def names_ok(v):
            for mac, name in v.items():
                addr.parse_mac(mac)
                if not isinstance(name, str):
                    raise ValueError("name of %s is not text" % mac)
        owners = self._read(self.names_path, names_ok)
        if owners is not None:
            self.owners = owners

        def ignore_ok(v):
            for remote in v["added"] + v["removed"]:
                addr.parse_remote(remote)
        ign = self._read(self.ignore_path, ignore_ok)
        if ign is not None:
            self.added = ign["added"]
            self.removed = ign["removed"]
        self._index()

    def _save(self, path, value):
        plat.write_state(path, plat.json.dumps(value))

    def load_endpoints(self, now):
        def rows_ok(rows):
            if not isinstance(rows, list):
                raise ValueError("not a list of [ip, [names], expires, kept]")
            for row in rows:
                # an older agent wrote [ip, [names], expires]
                if not isinstance(row, list) or len(row) not in (3, 4):
                    raise ValueError("a row is not [ip, [names], expires, kept]")
                ip, names = row[0], row[1]
                addr.parse_ip(ip)
                if not isinstance(names, list) or [t for t in row[2:] if not isinstance(t, (int, float))]:
                    raise ValueError("row of %s is not [ip, [names], expires, kept]" % ip)
                for name in names:
                    if not isinstance(name, str):
                        raise ValueError("a name of %s is not text" % ip)
        rows = self._read(self.endpoints_path, rows_ok)
        if rows is not None:
            self.restored = self.endpoints.restore(rows, now, plat.wall())
        self.saved_learned = self.endpoints.learned
        self.last_save = now

    def save_endpoints(self, now):
        """Write the endpoint names when new ones were learned since the
        last write; a failed write only warns (names are a convenience)."""
        self.last_save = now
        e = self.endpoints
        if e.learned == self.saved_learned:
            return
        try:
            self._save(self.endpoints_path, e.rows(now, plat.wall()))
            self.saved_learned = e.learned
        except (OSError, MemoryError) as err:
            # MemoryError: a full table and its JSON text need about twice
            # the table's heap (MicroPython's default heap is 1-2 MB); the
            # names stay in memory, only the restart loses them
            plat.warn_once("endpoints.json", "%s not written: %r" % (self.endpoints_path, err))

    # -- part ---------------------------------------------------------------

    def start(self, agent):
        agent.names = self
        agent.devices.owners = self.owners
        agent.digests.hidden = self.is_ignored
        agent.digests.on_close = self.bucket_closed
        self.router_ips = set(agent.router_ips)
        self.snoop.start(agent)
        self.load_endpoints(self.now())  # last: a failure here leaves the snoop running

    def after_scan(self, agent, now_ms):
        self.router_ips = set(agent.router_ips)
        self.snoop.after_scan(agent, now_ms)
        if now_ms // 1000 - self.last_save >= SAVE_SECONDS:
            self.save_endpoints(now_ms // 1000)

    def reload(self, agent):
        self.cfg = agent.cfg
        e = self.endpoints
        e.size, e.per_ip = max(1, agent.cfg["max_endpoints"]), max(1, agent.cfg["names_per_endpoint"])
        e.budget = max(1, agent.cfg.get("endpoints_bytes", 1048576))
        e.grace, e.ttl_max, e.hold = (max(0, agent.cfg["dns_grace"]), max(0, agent.cfg["dns_ttl_max"]),
                                      max(0, agent.cfg["dns_hold"]))
        self.snoop.reload(agent)

    def stop(self, agent):
        self.snoop.stop(agent)
        self.save_endpoints(self.now())

    def status(self):
        st = self.snoop.status()
        st["ignored"] = len(self.ignored_list())
        st["owner_names"] = len(self.owners)
        st["endpoints_restored"] = self.restored
        st["bad_files"] = self.bad_files
        return st

    # -- endpoints ----------------------------------------------------------

    def now(self):
        return plat.monotonic_ms() // 1000

    def flow_seen(self, remote, began):
        """Agent.account's news of one flow to a named `remote`: it began,
        or moved traffic (endpoints.py says what that does to its names)."""
        self.endpoints.seen(remote, began, plat.monotonic_ms() // 1000)

    def names_for(self, ip):
        """The names devices asked for that led to ip, newest first."""
        return self.endpoints.names_for(ip, self.now())

    def endpoint(self, ip):
        """What the API shows about a remote: names, registrable domain."""
        got = self.names_for(ip)
        return {"names": got, "domain": domains.registrable(got[0]) if got else None}

    def label_flow(self, flow):
        """Add remote names, domain and service label to a flow dict."""
        flow.update(self.endpoint(flow["remote"]))
        # the service is the listening side: the device's port when the remote called in
        port = flow["device_port"] if flow.get("inbound") else flow["remote_port"]
        flow["service"] = services.label(flow["proto"], port)
        return flow

    def label_bucket(self, bucket, mac=None, per_remote=None):
        """Add {remote: first name} for the remotes in a bucket's top list,
        and the top registrable domains when they are known."""
        names = {}
        for r, _ in bucket.get("top") or ():
            got = self.names_for(r)
            if got:
                names[r] = got[0]
        bucket["names"] = names
        if per_remote is not None:
            bucket["domains"] = self.domain_counts(per_remote)
        return bucket

    def label_history(self, h):
        for p in h.get("points") or ():
            self.label_bucket(p)
        if h.get("current"):
            self.label_bucket(h["current"])
        return h

    def label_graph(self, g):
        """Ignored endpoints out of the graph, names onto the others."""
        nodes = []
        for node in g["nodes"]:
            if node.get("kind") == "endpoint":
                if self.is_ignored(node["id"]):
                    continue
                node.update(self.endpoint(node["id"]))
            nodes.append(node)
        g["nodes"] = nodes
        g["edges"] = [e for e in g["edges"] if not self.is_ignored(e["to"])]
        return g

    def domain_counts(self, per_remote):
        """{remote: bytes} -> [[registrable domain, bytes]], the largest
        TOP_DOMAINS, ignored remotes left out. A remote without a name
        counts under its address, so the shares still add up."""
        counts = {}
        for r, b in per_remote.items():
            if self.is_ignored(r):
                continue
            got = self.names_for(r)
            key = domains.registrable(got[0]) if got else r
            counts[key] = counts.get(key, 0) + b
        pairs = [[k, b] for k, b in counts.items()]
        pairs.sort(key=lambda p: -p[1])
        return pairs[:TOP_DOMAINS]

    def bucket_closed(self, mac, n, per_remote):
        """Digests call this as a bucket closes: remember the device's
        domains for the flow digest an agent publishes (only the last
        closed bucket is kept: memory stays one list per device)."""
        if per_remote:
            self.closed_domains[mac] = (n, self.domain_counts(per_remote))
        else:
            self.closed_domains.pop(mac, None)

    def closed_domains_of(self, mac, n):
        got = self.closed_domains.get(mac)
        return got[1] if got is not None and got[0] == n else []

    # -- the ignore list ----------------------------------------------------

    def _index(self):
        self.prefixes = [_prefix(r) for r in self.added if "/" in r]
        self.exact = set(r for r in self.added if "/" not in r)

    def is_ignored(self, ip):
        if ip in self.exact:
            return True
        if ip in self.router_ips and ip not in self.removed:
            return True
        if self.prefixes:
            v6 = ":" in ip
            try:
                n = addr.parse_ipv6(ip) if v6 else addr.parse_ipv4(ip)
            except ValueError:
                return False
            width = 128 if v6 else 32
            for pv6, net, plen in self.prefixes:
                if pv6 == v6 and n >> (width - plen) == net:
                    return True
        return False

    def ignored_list(self):
        out = [{"remote": r, "why": "owner"} for r in self.added]
        for ip in sorted(self.router_ips):
            if ip.startswith("127.") or ip == "::1":
                continue  # loopback: never a device's remote, only noise here
            if ip not in self.removed and ip not in self.exact:
                out.append({"remote": ip, "why": "router"})
        return out

    def _persist(self, path, value):
        """Save an owner's decision before it is made: one the router would
        forget at the next restart (/etc read-only, flash full) is refused
        with the reason, and nothing changes."""
        try:
            self._save(path, value)
        except OSError as e:
            raise errors.ApiError(errors.UNKNOWN_ERROR, "cannot save %s: %s" % (path, e))

    def _save_ignore(self, added, removed):
        self._persist(self.ignore_path, {"added": added, "removed": removed})
        self.added, self.removed = added, removed
        self._index()

    def ignore(self, remote):
        added, removed = list(self.added), list(self.removed)
        if remote in removed:
            removed.remove(remote)
        elif remote not in added and remote not in self.router_ips:
            added.append(remote)
        self._save_ignore(added, removed)
        return {"ignored": self.ignored_list()}

    def unignore(self, remote):
        added, removed = list(self.added), list(self.removed)
        if remote in added:
            added.remove(remote)
        elif remote in self.router_ips and remote not in removed:
            removed.append(remote)
        else:
            raise errors.ApiError(errors.NOT_FOUND, "%s is not ignored" % remote)
        self._save_ignore(added, removed)
        return {"ignored": self.ignored_list()}

    # -- owner names --------------------------------------------------------

    def name(self, agent, mac, name):
        d = agent.devices.get(mac)
        if d is None:
            raise errors.ApiError(errors.NOT_FOUND, "no device %s" % mac)
        name = name.strip()
        for c in name:
            if ord(c) < 32 or ord(c) == 127:
                raise errors.ApiError(errors.INVALID_ARGUMENT, "name: control characters are not allowed")
        if len(name) > NAME_MAX:
            raise errors.ApiError(errors.INVALID_ARGUMENT, "name: longer than %d characters" % NAME_MAX)
        owners = dict(self.owners)
        if name:
            owners[mac] = name
        else:
            owners.pop(mac, None)
        self._persist(self.names_path, owners)
        # in place: the devices table reads this very dict
        self.owners.clear()
        self.owners.update(owners)
        d.owner_name = name or None
        return {"mac": mac, "name": d.name, "owner_name": d.owner_name}
