"""Traffic of one simulated device, run inside its namespace (stdlib only).

    python3 traffic.py PROFILE --home DIR --name NAME [--rate N] [--interval S]

Profiles (what a real one of these does on a home network):
  camera      steady TCP upload to its cloud (--rate bytes/s, default 1.5 MB/s)
  speaker     a burst of download every --interval s (--rate bytes per burst);
              every 4th round it also asks the internet's resolver directly
              (bypassing the router's DNS) for config.example-music.com
  thermostat  a fresh TCP connection with one HTTP GET every --interval s
              (default 3); `polls` in its status counts the connections made
  laptop      every --interval s resolves many names through the router's DNS
              (A and AAAA; every other round over IPv6 to fd00:8::1) and
              fetches a page from each address (v4 and v6)
  bulb        quiet: one small UDP packet every --interval s (default 30). While
              the file DIR/NAME.scan exists it scans telnet like Mirai: non-
              blocking connect() to tcp/23 of distinct addresses in 198.18.0.0/15
              (the internet drops them), --scan-rate per second (default 300)

Every profile keeps counters in DIR/traffic-NAME.json. Every loop is bounded:
--max-seconds (default 6 h), and the process dies with its parent.
"""

import argparse
import ctypes
import errno
import json
import os
import random
import signal
import socket
import struct
import sys
import time

RESOLVER4 = "198.51.100.53"      # home.RESOLVER4 (kept literal: stdlib only, no import)
ROUTER6 = "fd00:8::1"            # home.LAN6_ROUTER: the router's DNS over IPv6
SCAN_BASE = (198 << 24) | (18 << 16)   # 198.18.0.0/15
SCAN_SIZE = 1 << 17

NAMES = {
    "camera": "cloud.example-cam.com",
    "speaker": "stream.example-music.com",
    "speaker_direct": "config.example-music.com",
    "thermostat": "api.example-thermo.com",
    "bulb": "time.example-bulb.com",
    "telnet": "telnet.example-bulb.com",
}
LAPTOP_NAMES = ["www.example-shop.com", "news.example.org", "mail.example.org",
                "video.example-tube.com", "search.example.net", "social.example.com",
                "weather.example.net", "files.example.com"]


class Device:
    def __init__(self, args):
        self.args = args
        self.home = args.home
        self.name = args.name
        self.stats = {"profile": args.profile, "started": time.time()}
        self.deadline = time.monotonic() + args.max_seconds
        self.parent = os.getppid()
        self._saved = 0.0
        self.dns = self.lease().get("dns", "").split(" ")[0] or "192.168.8.1"

    def lease(self):
        try:
            with open(os.path.join(self.home, "dhcp-%s.env" % self.name)) as f:
                return dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
        except OSError:
            return {}

    def alive(self):
        return time.monotonic() < self.deadline and os.getppid() == self.parent

    def add(self, key, n=1):
        self.stats[key] = self.stats.get(key, 0) + n

    def save(self, force=True):
        now = time.monotonic()
        if not force and now - self._saved < 0.5:
            return
        self._saved = now
        path = os.path.join(self.home, "traffic-%s.json" % self.name)
        with open(path + ".tmp", "w") as f:
            json.dump(self.stats, f)
        os.replace(path + ".tmp", path)

    def sleep(self, seconds):
        end = time.monotonic() + seconds
        while self.alive() and time.monotonic() < end:
            time.sleep(min(0.2, max(0.0, end - time.monotonic())))

    def resolve(self, name, qtype=1, server=None):
        """Ask server (default: the router from DHCP) for name; return addresses."""
        try:
            addrs = query(server or self.dns, name, qtype)
        except OSError:
            addrs = []
        self.add("dns_queries")
        self.save(False)
        return addrs

    def resolve_until(self, name):
        while self.alive():
            addrs = self.resolve(name)
            if addrs:
                return addrs[0]
            self.sleep(1)
        sys.exit(0)


# -- a DNS client of thirty lines ---------------------------------------------

def query(server, name, qtype=1, timeout=2.0):
    qid = random.randrange(65536)
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", qtype, 1)
    fam = socket.AF_INET6 if ":" in server else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(q, (server, 53))
        data = s.recv(4096)
    finally:
        s.close()
    rid, flags, qd, an = struct.unpack(">HHHH", data[:8])
    if rid != qid or flags & 0xf:
        return []
    pos = 12
    for _ in range(qd):
        pos = _skip_name(data, pos) + 4
    out = []
    for _ in range(an):
        pos = _skip_name(data, pos)
        rtype, _, _, rdlen = struct.unpack(">HHIH", data[pos:pos + 10])
        pos += 10
        rdata = data[pos:pos + rdlen]
        pos += rdlen
        if rtype == 1 and rdlen == 4:
            out.append(socket.inet_ntop(socket.AF_INET, rdata))
        elif rtype == 28 and rdlen == 16:
            out.append(socket.inet_ntop(socket.AF_INET6, rdata))
    return out


def _skip_name(data, pos):
    while True:
        n = data[pos]
        if n == 0:
            return pos + 1
        if n & 0xc0 == 0xc0:
            return pos + 2
        pos += n + 1


def http_get(addr, path="/512", port=80, timeout=5.0):
    """One fresh TCP connection, one GET; returns bytes received."""
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    got = 0
    try:
        s.connect((addr, port))
        s.sendall(("GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" % (path, addr)).encode())
        while True:
            data = s.recv(65536)
            if not data:
                break
            got += len(data)
    finally:
        s.close()
    return got


# -- profiles ----------------------------------------------------------------------

def camera(d):
    rate = d.args.rate or 1500000
    addr = d.resolve_until(NAMES["camera"])
    chunk = b"c" * 16384
    while d.alive():
        try:
            s = socket.create_connection((addr, 9000), timeout=5)
        except OSError:
            d.add("errors")
            d.sleep(1)
            continue
        d.add("connections")
        t0 = time.monotonic()
        sent = 0
        try:
            while d.alive():
                # pace to `rate`: send when behind schedule, else sleep
                ahead = sent / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(min(ahead, 0.1))
                    continue
                s.sendall(chunk)
                sent += len(chunk)
                d.add("bytes_out", len(chunk))
                d.save(False)
        except OSError:
            d.add("errors")
        finally:
            s.close()
        d.save()
        d.sleep(1)


def speaker(d):
    burst = d.args.rate or 1000000
    interval = d.args.interval or 8
    rounds = 0
    while d.alive():
        if rounds % 4 == 0:
            direct = d.resolve(NAMES["speaker_direct"], server=RESOLVER4)
            if direct:
                d.add("direct_dns")
                try:
                    d.add("bytes_in", http_get(direct[0], "/256"))
                except OSError:
                    d.add("errors")
        rounds += 1
        addrs = d.resolve(NAMES["speaker"])
        if addrs:
            try:
                s = socket.create_connection((addrs[0], 9001), timeout=5)
                s.sendall(b"%d\n" % burst)
                while True:
                    data = s.recv(65536)
                    if not data:
                        break
                    d.add("bytes_in", len(data))
                s.close()
                d.add("bursts")
            except OSError:
                d.add("errors")
        d.save()
        d.sleep(interval)


def thermostat(d):
    interval = d.args.interval or 3
    addr = d.resolve_until(NAMES["thermostat"])
    d.stats["remote"] = addr
    while d.alive():
        fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect((addr, 80))
            d.add("polls")      # a new connection, whatever happens next
            d.save()
            s.sendall(b"GET /64 HTTP/1.0\r\nHost: api.example-thermo.com\r\n\r\n")
            while s.recv(4096):
                pass
        except OSError:
            d.add("errors")
        finally:
            s.close()
        d.save()
        d.sleep(interval)


def laptop(d):
    interval = d.args.interval or 2
    rounds = 0
    while d.alive():
        # every other round asks the router over IPv6, as dual-stack hosts do
        server = ROUTER6 if rounds % 2 else None
        rounds += 1
        for name in LAPTOP_NAMES:
            if not d.alive():
                break
            addrs = d.resolve(name, 1, server) + d.resolve(name, 28, server)
            d.add("lookups")
            for addr in addrs:
                try:
                    d.add("bytes_in", http_get(addr, "/2048"))
                    d.add("connections")
                except OSError:
                    d.add("errors")
        d.save()
        d.sleep(interval)


def bulb(d):
    interval = d.args.interval or 30
    flag = os.path.join(d.home, "%s.scan" % d.name)
    addr = d.resolve_until(NAMES["bulb"])
    next_ping = 0.0
    while d.alive():
        if os.path.exists(flag):
            scan(d, flag)
            continue
        if time.monotonic() >= next_ping:
            next_ping = time.monotonic() + interval
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(1)
            try:
                s.sendto(b"bulb:on:" + b"0" * 40, (addr, 7))
                d.add("udp_sent")
                s.recv(512)
                d.add("udp_replies")
            except OSError:
                pass
            s.close()
            d.save()
        time.sleep(0.2)


def scan(d, flag):
    """Mirai's telnet scan: SYNs to tcp/23 of many addresses, never waiting."""
    rate = d.args.scan_rate
    limit = d.args.scan_limit
    d.stats["scanning"] = True
    d.add("scan_rounds")
    try:
        telnet = d.resolve(NAMES["telnet"])
        if telnet:
            s = socket.create_connection((telnet[0], 23), timeout=3)
            s.recv(64)
            s.close()
            d.add("telnet_logins")
    except OSError:
        pass
    start = d.stats.get("scan_next", random.randrange(SCAN_SIZE))
    pending = []     # (close_at, socket): at most rate * 2 open at once
    t0 = time.monotonic()
    n = 0
    while d.alive() and os.path.exists(flag) and d.stats.get("scan_attempts", 0) < limit:
        due = int((time.monotonic() - t0) * rate) - n
        for _ in range(max(0, min(due, 50))):
            ip = socket.inet_ntoa(struct.pack(">I", SCAN_BASE + (start + n) % SCAN_SIZE))
            n += 1
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            err = s.connect_ex((ip, 23))
            if err in (0, errno.EINPROGRESS):
                d.add("scan_attempts")
            else:
                d.add("scan_errors")
            pending.append((time.monotonic() + 2.0, s))
        while pending and (pending[0][0] < time.monotonic() or len(pending) > rate * 2):
            pending.pop(0)[1].close()
        d.stats["scan_next"] = (start + n) % SCAN_SIZE
        d.save(False)
        time.sleep(0.01)
    for _, s in pending:
        s.close()
    d.stats["scanning"] = False
    d.save()
    while d.alive() and os.path.exists(flag):
        time.sleep(0.2)       # the limit was reached: stay quiet until switched off


PROFILES = {"camera": camera, "speaker": speaker, "thermostat": thermostat,
            "laptop": laptop, "bulb": bulb}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("profile", choices=sorted(PROFILES))
    ap.add_argument("--home", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--rate", type=int, default=0)
    ap.add_argument("--interval", type=float, default=0)
    ap.add_argument("--scan-rate", type=int, default=300)
    ap.add_argument("--scan-limit", type=int, default=50000)
    ap.add_argument("--max-seconds", type=float, default=6 * 3600)
    args = ap.parse_args()
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)     # PR_SET_PDEATHSIG
    except OSError:
        pass
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    d = Device(args)
    d.save()
    try:
        PROFILES[args.profile](d)
    except KeyboardInterrupt:
        pass
    finally:
        d.save()


if __name__ == "__main__":
    main()
