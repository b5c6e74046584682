#!/usr/bin/env python3
"""The LAN watch's cost: per bridged packet, and per scan's read.

Three namespaces of our own: a "router" with br-lan and two bridge ports,
and two devices on them. Device A floods device B with UDP (the watch's
worst case: every datagram is an `update` of the set) and, in the same
rounds, with TCP SYNs to many ports (every packet a new key until the set
is full). Each round runs the same flood three ways, interleaved:

  none    no table bridge spin at all
  quar    table bridge spin with the quarantine rules only (watch off)
  watch   the same table with the LAN watch (lan_watch 1)

and prints, per mode, the sender's kernel CPU per packet (the veth's
transmit runs the bridge and its hooks in the sender's context) and its
packets per second, medians of the rounds, with the ratios watch/quar and
watch/none. Then the read: the sets filled to their size (2 x 4,096
keys), `nft -j list table bridge spin` plus lanwatch.parse and Seen.news,
as the agent does once a scan.

Numbers move 1.5x between days on these machines; the ratios hold.
"""

import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SRC = os.path.join(ROOT, "src")
sys.path.insert(0, SRC)

from spin_lite import firewall, lanwatch  # noqa: E402

ROUNDS = 11
PACKETS = 100000
SIZE = 4096
A_MAC, B_MAC = "02:00:00:00:0b:01", "02:00:00:00:0b:02"
A_IP, B_IP = "192.168.77.10", "192.168.77.20"

# the sender: as fast as one Python loop goes; prints its own CPU split
FLOOD = """
import resource, socket, sys, time
kind, n, host = sys.argv[1], int(sys.argv[2]), sys.argv[3]
# getrusage: the scheduler's own CPU time, finer than times()'s clock ticks
t0 = resource.getrusage(resource.RUSAGE_SELF); w0 = time.perf_counter()
if kind == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((host, 5001))
    data = b"x" * 64
    for _ in range(n):
        try:
            s.send(data)
        except OSError:
            pass
else:
    # SYNs to ever new ports: a non-blocking connect sends one SYN
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.connect_ex((host, 1 + i % 65000))
        s.close()
w = time.perf_counter() - w0; t1 = resource.getrusage(resource.RUSAGE_SELF)
print(t1.ru_stime - t0.ru_stime, t1.ru_utime - t0.ru_utime, w)
"""


def sh(argv, stdin=None, check=True):
    p = subprocess.run(argv, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if check and p.returncode:
        raise RuntimeError("%s: %s" % (" ".join(argv), p.stderr.decode().strip()))
    return p.stdout


def out(line=""):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Lan:
    def __init__(self):
        tag = "lvb%d" % os.getpid()
        self.r, self.a, self.b = tag + "-r", tag + "-a", tag + "-b"

    def up(self):
        for ns in (self.r, self.a, self.b):
            sh(["ip", "netns", "add", ns])
            sh(["ip", "-n", ns, "link", "set", "lo", "up"])
        sh(["ip", "-n", self.r, "link", "add", "br-lan", "type", "bridge",
            "forward_delay", "0", "stp_state", "0"])
        sh(["ip", "netns", "exec", self.r, "sysctl", "-q", "-e", "-w",
            "net.bridge.bridge-nf-call-iptables=0"], check=False)
        for ns, mac, ip, port in ((self.a, A_MAC, A_IP, "v-a"), (self.b, B_MAC, B_IP, "v-b")):
            sh(["ip", "-n", self.r, "link", "add", port, "type", "veth", "peer", "name", "eth0",
                "address", mac, "netns", ns])
            sh(["ip", "-n", self.r, "link", "set", port, "master", "br-lan", "up"])
            sh(["ip", "-n", ns, "addr", "add", ip + "/24", "dev", "eth0"])
            sh(["ip", "-n", ns, "link", "set", "eth0", "up"])
        sh(["ip", "-n", self.r, "link", "set", "br-lan", "up"])
        sh(["ip", "-n", self.a, "neigh", "replace", B_IP, "lladdr", B_MAC, "dev", "eth0",
            "nud", "permanent"])
        sh(["ip", "-n", self.b, "neigh", "replace", A_IP, "lladdr", A_MAC, "dev", "eth0",
            "nud", "permanent"])
        # B drops what it gets without answering: no port unreachable, no
        # RST, so the flood's cost is the way there
        sh(["ip", "netns", "exec", self.b, "nft", "-f", "-"],
           b"table inet sink {\n chain input {\n  type filter hook input priority -300;"
           b" policy drop;\n }\n}\n")

    def down(self):
        for ns in (self.r, self.a, self.b):
            subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)

    def nft(self, *argv, stdin=None):
        return sh(["ip", "netns", "exec", self.r, "nft"] + list(argv), stdin)

    def mode(self, name):
        self.nft("delete", "table", "bridge", "spin") if self.has_table() else None
        if name == "none":
            return
        watch = (SIZE, 60) if name == "watch" else None
        self.nft("-f", "-", stdin=firewall.render_bridge({}, watch).encode())

    def has_table(self):
        p = subprocess.run(["ip", "netns", "exec", self.r, "nft", "list", "table", "bridge", "spin"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return p.returncode == 0

    def flood(self, kind, n):
        o = sh(["ip", "netns", "exec", self.a, sys.executable, "-c", FLOOD, kind, str(n), B_IP])
        system, user, wall = (float(x) for x in o.split())
        return system, user, wall


MODES = ("none", "quar", "watch")


def measure(lan, kind, n):
    got = {m: [] for m in MODES}
    for _ in range(ROUNDS):
        for m in MODES:
            lan.mode(m)
            system, user, wall = lan.flood(kind, n)
            got[m].append((system / n * 1e9, n / wall))
    return {m: (statistics.median(v[0] for v in got[m]), statistics.median(v[1] for v in got[m]))
            for m in MODES}


def report(kind, res):
    for m in MODES:
        out("   %-5s %6.0f ns kernel CPU/packet  %8.0f packets/s" % ((m,) + res[m]))
    w, q, z = res["watch"], res["quar"], res["none"]
    out("   watch/quar: CPU %.2fx, pps %.2fx; watch/none: CPU %.2fx, pps %.2fx;"
        " the watch adds %.0f ns/packet" % (w[0] / q[0], w[1] / q[1], w[0] / z[0], w[1] / z[1],
                                            w[0] - q[0]))


def read_cost(lan):
    """CPU (ms) of the nft process listing the table, median of the rounds."""
    cpu = []
    for _ in range(ROUNDS):
        c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        sh(["ip", "netns", "exec", lan.r, "nft", "-j", "list", "table", "bridge", "spin"])
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime)
    return statistics.median(cpu) * 1000


def fill_and_read(lan):
    """The sets empty (a quiet home), then full: what a scan's read costs."""
    lan.mode("watch")
    out("   no keys: nft list %.1f ms CPU a scan" % read_cost(lan))
    for name, ip in (("lan_seen4", "10.%d.%d.%d"), ("lan_seen6", "fd00:77::%x:%x:%x")):
        elems = []
        for i in range(SIZE):
            host = ip % (i >> 16, (i >> 8) & 255, i & 255)
            elems.append("%s . %s . tcp . %d" % (A_MAC, host, 1 + i % 1000))
        lan.nft("-f", "-", stdin=("add element bridge spin %s { %s }\n"
                                  % (name, ", ".join(elems))).encode())
    listing, cpu, parse, news, sizes = [], [], [], [], []
    seen = lanwatch.Seen(2 * SIZE)
    for _ in range(ROUNDS):
        c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        raw = sh(["ip", "netns", "exec", lan.r, "nft", "-j", "list", "table", "bridge", "spin"])
        t1 = time.perf_counter()
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime)
        items = __import__("json").loads(raw)["nftables"]
        keys, full, _ = lanwatch.parse(items)
        t2 = time.perf_counter()
        seen.news(keys)
        t3 = time.perf_counter()
        listing.append(t1 - t0)
        parse.append(t2 - t1)
        news.append(t3 - t2)
        sizes.append((len(raw), len(keys), full))
    out("   %d keys (%d KB of JSON, %d sets full): nft list %.1f ms (%.1f ms CPU), json + parse"
        " %.1f ms, new-key memory %.1f ms a scan" % (sizes[0][1], sizes[0][0] // 1024, sizes[0][2],
                                             statistics.median(listing) * 1000,
                                             statistics.median(cpu) * 1000,
                                             statistics.median(parse) * 1000,
                                             statistics.median(news) * 1000))


def main():
    if os.geteuid() != 0:
        out("lan_watch: needs root (network namespaces, nft)")
        return 1
    lan = Lan()
    try:
        lan.up()
        out("LAN watch, %d rounds, medians (lan_watch_size %d)" % (ROUNDS, SIZE))
        out(" UDP flood to one LAN peer, %d datagrams a round:" % PACKETS)
        report("udp", measure(lan, "udp", PACKETS))
        out(" TCP SYNs to new ports of one LAN peer, %d a round:" % (PACKETS // 5))
        report("syn", measure(lan, "syn", PACKETS // 5))
        out(" the read, once a scan:")
        fill_and_read(lan)
    finally:
        lan.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
