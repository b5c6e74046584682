"""Capture real /proc/net/nf_conntrack snapshots from the simulated home.

    python3 -m tests.world.capture [OUTDIR]      (default tests/data)

Writes ctevents.txt (the router's ctnetlink NEW and DESTROY event
messages, in hex, around a /proc snapshot of the same flows; see
record_events()), conntrack-noacct.txt (net.netfilter.nf_conntrack_acct=0, the kernel's
default), conntrack-acct.txt (=1: packets= bytes= on each direction) and
conntrack-timestamp.txt (acct and nf_conntrack_timestamp=1: delta-time=). For
each, the router's table is flushed, the sysctl set, and the same traffic made:
the home's own profiles plus the odd cases the parser must meet (see
EXTRAS_RULESET and odd_traffic()). The sysctl is only touched here; in the
tests, turning it on is the agent's job.
"""

import os
import sys
import time

from tests.world.home import REPO, Home

# ct mark and ct zone on some flows, so their extras show in /proc. The label
# rule is there to show that labels never do: the kernel prints mark, secctx
# (only with an LSM context), zone and delta-time, not labels.
EXTRAS_RULESET = """\
table inet capture_extras {
	chain raw_prerouting {
		type filter hook prerouting priority raw; policy accept;
		ip protocol 253 ct zone set 7
	}
	chain mangle_forward {
		type filter hook forward priority mangle; policy accept;
		udp dport 7 ct mark set 0x2a
		tcp dport 9001 ct label set 1
	}
}
"""

RAW_SEND = """
import socket, sys
proto, dst, payload = int(sys.argv[1]), sys.argv[2], bytes.fromhex(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
s.sendto(payload, (dst, 0))
"""

UDP_SEND = """
import socket, sys
dst, port = sys.argv[1], int(sys.argv[2])
fam = socket.AF_INET6 if ':' in dst else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.settimeout(1)
s.sendto(b'capture', (dst, port))
try:
    s.recv(100)
except OSError:
    pass
"""

TCP_SYN = """
import socket, sys
dst, port = sys.argv[1], int(sys.argv[2])
fam = socket.AF_INET6 if ':' in dst else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.setblocking(False)
s.connect_ex((dst, port))
import time; time.sleep(0.3)
"""

TCP_GET = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
s.sendall(b'4096\\n')
while s.recv(65536):
    pass
"""


def odd_traffic(home):
    py = sys.executable
    # icmp (answered) and icmp to the dropped scan range ([UNREPLIED])
    home.sh("camera", "busybox", "ping", "-c", "2", "-W", "1", "203.0.113.10", check=False)
    home.sh("camera", "busybox", "ping", "-c", "1", "-W", "1", "198.18.0.9", check=False)
    # icmpv6 (answered; no NAT66, so the device's ULA shows on both sides)
    home.sh("laptop", "busybox", "ping", "-6", "-c", "2", "-W", "1", "2001:db8:1::7", check=False)
    # udp over IPv6, answered by the echo service; and unanswered (nothing routes it)
    home.sh("camera", py, "-c", UDP_SEND, "2001:db8:1::10", "7", check=False)
    home.sh("camera", py, "-c", UDP_SEND, "2001:db8:dead::1", "9999", check=False)
    # tcp over IPv6 to a dead address: SYN_SENT [UNREPLIED]
    home.sh("laptop", py, "-c", TCP_SYN, "2001:db8:dead::2", "443", check=False)
    # GRE (proto 47, version 0 header + a byte) and an unassigned protocol (253, zone 7)
    gre = "00000800" + "450000140000000040010000c0000201cb007115"   # GRE v0 carrying an IPv4 header
    home.sh("speaker", py, "-c", RAW_SEND, "47", "203.0.113.20", gre, check=False)
    home.sh("speaker", py, "-c", RAW_SEND, "253", "203.0.113.21", "cafe", check=False)
    # a download from the speaker's source port: ct label 1
    home.sh("speaker", py, "-c", TCP_GET, "203.0.113.20", "9001", check=False)
    # the bulb's ct-marked udp echo
    home.sh("bulb", py, "-c", UDP_SEND, "203.0.113.40", "7", check=False)


def snapshot(home, acct, timestamp=0):
    home.sh("router", "sysctl", "-qw", "net.netfilter.nf_conntrack_acct=%d" % acct,
            "net.netfilter.nf_conntrack_timestamp=%d" % timestamp)
    home.sh("router", "conntrack", "-F", check=False)
    home.scan("bulb", True)
    time.sleep(0.5)         # a short scan: a few hundred [UNREPLIED] SYN_SENT
    home.scan("bulb", False)
    odd_traffic(home)
    time.sleep(4)           # camera streams, thermostat polls, speaker bursts, laptop browses
    return home.conntrack()


RECORDER = """
import binascii, os, sys
from spin_lite import ctevents, plat
stop = sys.argv[1]
s = plat.netlink_listener(ctevents.NETLINK_NETFILTER, ctevents.GROUPS, 1 << 22)
s.setblocking(True)
s.settimeout(0.2)
out = sys.stdout
out.write("ready\\n")
out.flush()
while True:
    try:
        out.write("msg " + binascii.hexlify(s.recv(65536)).decode() + "\\n")
    except OSError:
        if os.path.exists(stop):
            break
out.flush()
"""


def record_events(home):
    """The router's ctnetlink events while the odd traffic runs, a snapshot
    of /proc in the middle, and the DESTROY of every flow at the end
    (conntrack -F): text of `proc LINE` and `msg HEX` lines."""
    home.sh("router", "sysctl", "-qw", "net.netfilter.nf_conntrack_acct=1",
            "net.netfilter.nf_conntrack_timestamp=0")
    home.sh("router", "conntrack", "-F", check=False)
    stop = home.path("recorder.stop")
    log = home.path("recorder.log")
    rec = home.popen("router", [sys.executable, "-u", "-c", RECORDER, stop], label="recorder",
                     env={"PYTHONPATH": os.path.join(REPO, "src")}, log=log)
    home.wait_for(lambda: os.path.exists(log) and b"ready" in open(log, "rb").read(),
                  timeout=10, what="the event recorder")
    odd_traffic(home)
    # a few attempts refused with a reset (closed ports on a server)
    for port in (1001, 1002):
        home.sh("bulb", sys.executable, "-c", TCP_SYN, "203.0.113.10", str(port), check=False)
        home.sh("laptop", sys.executable, "-c", TCP_SYN, "2001:db8:1::10", str(port), check=False)
    time.sleep(1)
    proc = home.conntrack()
    home.sh("router", "conntrack", "-F", check=False)
    time.sleep(0.5)
    open(stop, "w").close()
    rec.wait(5)
    with open(log) as f:
        msgs = "".join(ln for ln in f if ln.startswith("msg "))
    lines = ["# python3 -m tests.world.capture: the router's ctnetlink events (hex),",
             "# with a /proc/net/nf_conntrack snapshot taken while the flows lived"]
    lines += ["proc " + ln for ln in proc.splitlines() if ln.strip()]
    return "\n".join(lines) + "\n" + msgs


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "tests", "data")
    os.makedirs(out, exist_ok=True)
    with Home(rates={"camera": 300000}) as home:
        home.sh("router", "nft", "-f", "-", input=EXTRAS_RULESET)
        time.sleep(1)
        with open(os.path.join(out, "ctevents.txt"), "w") as f:
            f.write(record_events(home))
        if os.environ.get("CAPTURE_ONLY") == "ctevents":
            return
        for acct, ts, name in ((0, 0, "conntrack-noacct.txt"), (1, 0, "conntrack-acct.txt"),
                               (1, 1, "conntrack-timestamp.txt")):
            text = snapshot(home, acct, ts)
            with open(os.path.join(out, name), "w") as f:
                f.write(text)
            print("%s: %d lines" % (name, len(text.splitlines())))
        print({n: (d.ip4, d.ip6) for n, d in home.devices.items()})


if __name__ == "__main__":
    main()
