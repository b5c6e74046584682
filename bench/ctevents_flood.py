#!/usr/bin/env python3
"""The conntrack event source under a flood of 2,000 new flows a second.

In a network namespace of its own (sl-ctev-<pid>, removed at the end):
the bench home of run.py (br-lan, 250 devices, a 16,384-entry table
written with ctnetlink, so a snapshot costs what it costs in a busy home),
then the agent (Agent.start: its parts, ctevents on, scan every 5 s) runs
its own poll loop while a second process floods the table: every 10 ms it
writes 20 flows of LAN devices to remotes (a telnet scan's SYN, answered
by a RST: one packet each way, no SEEN_REPLY) with IPCTNL_MSG_CT_NEW and
deletes them 100 ms later with IPCTNL_MSG_CT_DELETE. The kernel sends a
NEW and a DESTROY event for each, as for a real refused attempt; a flow
lives 0.1 s, so snapshots see almost none of them.

Prints, over the flood: events read per second, CPU seconds per minute of
the event reader (Events._read, inside the agent's process) beside the
snapshot scan's (Scanner.scan), lost events (ENOBUFS), flows counted
against flows made, and the agent's RSS before and after. Never fails on
a figure.
"""

import os
import socket
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SRC = os.path.join(ROOT, "src")
for p in (SRC, HERE):
    if p not in sys.path:
        sys.path.insert(0, p)

RATE = 2000  # new flows a second
SECONDS = 30
TICK = 0.01  # the flood writes RATE * TICK flows a tick
LIFE = 0.1  # seconds a flooded flow lives
SCAN_INTERVAL = 5


def out(line=""):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


# -- the flood (its own process, in the namespace) --------------------------------------

def delete_message(seq, family, proto, orig):
    import ctfill
    payload = struct.pack("BBH", family, 0, 0) + ctfill.nest(
        ctfill.CTA_TUPLE_ORIG, ctfill.tuple_attrs(family, proto, *orig))
    return struct.pack("IHHII", 16 + len(payload), (ctfill.NFNL_SUBSYS_CTNETLINK << 8) | 2,
                       ctfill.NLM_F_REQUEST, seq, 0) + payload


def flood(rate, seconds, devices):
    """Write and delete rate flows a second for seconds; prints how many."""
    import ctfill
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, ctfill.NETLINK_NETFILTER)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.bind((0, 0))
    s.setblocking(False)
    per_tick = max(1, int(rate * TICK))
    made = errors = 0
    pending = []  # (due, message) of the deletes to send
    seq = 0
    t0 = time.monotonic()
    next_tick = t0
    while True:
        now = time.monotonic()
        if now - t0 >= seconds and not pending:
            break
        if now - t0 < seconds and now >= next_tick:
            batch = []
            dels = []
            for _ in range(per_tick):
                k = made
                made += 1
                dev = devices[k % len(devices)]
                remote = "198.18.%d.%d" % ((k >> 8) & 255, k & 255 or 1)
                sport = 1024 + (k * 7) % 60000
                e = {"family": socket.AF_INET, "proto": 6, "orig": (dev, remote, sport, 23),
                     "reply": (remote, ctfill.WAN4, 23, sport), "status": 0,
                     "tcp_state": ctfill.TCP_STATES["SYN_SENT"], "counters": (1, 60, 1, 40)}
                seq += 1
                m = ctfill.message(seq, e)
                # no ACK asked: errors still come back, and are counted
                batch.append(m[:6] + struct.pack("H", struct.unpack_from("H", m, 6)[0]
                                                  & ~ctfill.NLM_F_ACK) + m[8:])
                seq += 1
                dels.append(delete_message(seq, socket.AF_INET, 6, e["orig"]))
            s.send(b"".join(batch))
            pending.append((now + LIFE, b"".join(dels)))
            next_tick += TICK
        while pending and pending[0][0] <= now:
            s.send(pending.pop(0)[1])
        try:
            while True:
                data = s.recv(1 << 16)
                off = 0
                while off + 20 <= len(data):
                    n, t = struct.unpack_from("IH", data, off)
                    if t == ctfill.NLMSG_ERROR and struct.unpack_from("i", data, off + 16)[0]:
                        errors += 1
                    off += max(16, (n + 3) & ~3)
        except OSError:
            pass
        wait = min([next_tick - time.monotonic()] + [d - time.monotonic() for d, _ in pending[:1]])
        if wait > 0:
            time.sleep(wait)
    out("%d %d %.3f" % (made, errors, time.monotonic() - t0))


# -- the agent under the flood (in the namespace) ----------------------------------------

class Clock:
    """CPU seconds spent inside a function, wrapped around it."""

    def __init__(self, fn):
        self.fn = fn
        self.cpu = 0.0
        self.calls = 0

    def __call__(self, *args):
        c = time.process_time()
        try:
            return self.fn(*args)
        finally:
            self.cpu += time.process_time() - c
            self.calls += 1


def inside(work):
    import ctfill
    import run
    from spin_lite import agent as agent_mod
    with open("/proc/sys/net/netfilter/nf_conntrack_acct", "w") as f:
        f.write("1\n")
    entries, devs = ctfill.home_table(run.FLOWS, run.DEVICES)
    run.build_home(devs, work)
    ctfill.insert(entries)
    cfg = run.agent_config(work)
    cfg["conntrack_file"] = "/proc/net/nf_conntrack"
    cfg["scan_interval"] = SCAN_INTERVAL
    cfg["firewall"] = "none"
    cfg["max_flows"] = 65536
    agent = agent_mod.Agent(cfg)
    agent.start()
    ev = agent.events
    if ev is None or ev.sock is None:
        out("ctevents: the event source did not open: %s" % (ev.state if ev else "no part"))
        return 1
    reader = ev._read = Clock(ev._read)
    scanner = agent.scanner
    scan = scanner.scan = Clock(scanner.scan)
    for _ in range(3):  # settle: the first scans after start
        agent.loop.run_once(100)
    rss0 = agent_mod.plat.rss_kb()
    ev0 = ev.reader.events
    unseen0 = ev.unseen
    reader.cpu = scan.cpu = 0.0
    reader.calls = scan.calls = 0
    before = new_flows(agent)
    env = dict(os.environ, PYTHONPATH=SRC + ":" + HERE)
    gen = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--flood", str(RATE), str(SECONDS),
                            ",".join(d[1] for d in devs)], stdout=subprocess.PIPE, env=env)
    c0 = time.process_time()
    w0 = time.monotonic()
    while gen.poll() is None:
        agent.loop.run_once(100)
    for _ in range(10):  # the last deletes' events
        agent.loop.run_once(50)
    wall = time.monotonic() - w0
    total_cpu = time.process_time() - c0
    made, errors, flood_s = gen.stdout.read().split()
    made, errors = int(made), int(errors)
    events = ev.reader.events - ev0
    counted = new_flows(agent) - before
    rss1 = agent_mod.plat.rss_kb()
    per_min = 60.0 / wall
    out("flood: %d flows made in %.1f s (%.0f/s; %d refused by the kernel), table %d entries + the flood,"
        " scan every %d s" % (made, float(flood_s), made / float(flood_s), errors, len(entries),
                              SCAN_INTERVAL))
    out("events read: %d (%.0f/s), unseen flows reported %d, lost (ENOBUFS) %d, malformed %d"
        % (events, events / wall, ev.unseen - unseen0, ev.lost, ev.reader.malformed))
    out("new flows the agent counted: %d of %d made (%.1f%%)" % (counted, made, 100.0 * counted / max(1, made)))
    out("CPU s/min: event reader %.2f (%d wake-ups), snapshot scan %.2f (%d scans), agent in all %.2f"
        % (reader.cpu * per_min, reader.calls, scan.cpu * per_min, scan.calls, total_cpu * per_min))
    out("event reader: %.1f us per event" % (1e6 * reader.cpu / max(1, events)))
    out("RSS: %d KB before the flood, %d KB after (%+d KB)" % (rss0, rss1, rss1 - rss0))
    return 0


def new_flows(agent):
    """New connections the agent counted so far, all devices, all buckets."""
    n = 0
    for mac in list(agent.digests.devices):
        h = agent.digests.history(mac, 60)
        n += sum(p["conns"] for p in h["points"]) + h["current"]["conns"]
    return n


# -- host side --------------------------------------------------------------------------

def main():
    import run
    return run.in_namespace("ctev", __file__)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--flood":
        flood(int(sys.argv[2]), float(sys.argv[3]), sys.argv[4].split(","))
        sys.exit(0)
    if len(sys.argv) > 1 and sys.argv[1] == "--inside":
        sys.exit(inside(sys.argv[2]))
    sys.exit(main())
