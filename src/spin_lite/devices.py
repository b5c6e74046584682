"""The device table: one entry per MAC seen on the LAN.

A device's addresses come from the neighbour tables and its lease; its
name is the owner's (set through the API) if any, else the static DHCP
host name, else the hostname it sent with its lease. The router itself is
never a device (its addresses are not in its own neighbour table, and
addresses of the router are refused), and neighbours are read from the
LAN interface only, so the WAN gateway is not one either.
"""


class Device:
    __slots__ = ("mac", "ips", "hostname", "static_name", "owner_name",
                 "first_seen", "last_seen", "live")

    def __init__(self, mac, now):
        self.mac = mac
        self.ips = set()
        self.hostname = None
        self.static_name = None
        self.owner_name = None
        self.first_seen = now
        self.last_seen = now
        self.live = 0

    @property
    def name(self):
        return self.owner_name or self.static_name or self.hostname


class Devices:
    def __init__(self, limit):
        self.limit = limit
        self.table = {}
        self.by_ip = {}
        self.dropped = 0
        self.owners = {}  # mac -> the owner's name (names.Names keeps and saves it)
        self.found = []   # MACs learn() added since the scan last took them

    def get(self, mac):
        return self.table.get(mac)

    def mac_for(self, ip):
        return self.by_ip.get(ip)

    def update(self, neighbours, leases, static, router_ips, now):
        """Refresh from {ip: mac}, {mac: (ip, hostname)}, {mac: name}.
        Returns the MACs that were not known before."""
        fresh = []
        ips = {}
        for ip, mac in neighbours.items():
            if ip not in router_ips:
                ips.setdefault(mac, set()).add(ip)
        for mac, (ip, _) in leases.items():
            if ip not in router_ips:
                ips.setdefault(mac, set()).add(ip)
        for mac, addrs in ips.items():
            d = self.table.get(mac)
            if d is None:
                d = self.table[mac] = Device(mac, now)
                fresh.append(mac)
            d.ips = addrs
        for d in self.table.values():
            lease = leases.get(d.mac)
            d.hostname = lease[1] if lease else d.hostname
            d.static_name = static.get(d.mac)
            d.owner_name = self.owners.get(d.mac)
        by_ip = {}
        for d in self.table.values():
            for ip in d.ips:
                by_ip[ip] = d.mac
        self.by_ip = by_ip
        self._bound()
        return fresh

    def learn(self, mac, ip, now):
        """A device a source finds by itself (an access point's bridge has
        no neighbour table of its clients): its MAC and an address. A new
        MAC waits in found for the scan to announce it, as update's are."""
        d = self.table.get(mac)
        if d is None:
            d = self.table[mac] = Device(mac, now)
            self.found.append(mac)
        d.ips.add(ip)
        self.by_ip[ip] = mac

    def _bound(self):
        while len(self.table) > self.limit:
            oldest = min(self.table.values(), key=lambda d: d.last_seen)
            del self.table[oldest.mac]
            self.dropped += 1

    def seen(self, mac, now, live):
        d = self.table.get(mac)
        if d is not None:
            d.last_seen = now
            d.live = live
