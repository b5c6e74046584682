"""The fault matrix (issue 13 item 3): faults injected in the simulated
home, on both firewall backends, with the agent's blocks and quarantines
watched through real packets.

    python3 -m tests.faults [--backend nft|iptables] [--only FAULT ...]
                            [--scan-interval 5] [--flood-minutes 10]   (as root; `make faults`)

Every fault runs in a home whose camera is blocked and whose bulb is
quarantined (permanently, by the owner). For each it prints the blocks
and quarantines lost (the agent's store forgot them, or the kernel lets
the device through once the fault is over: must be 0), the time from the
fault to the moment the agent answers, says `firewall ok` and the camera
and the bulb are held again, and what `status` said meanwhile.

Held means a TCP connect from the device to the internet gets nowhere
within PROBE_S while the speaker, at the same moment, connects: so a slow
machine cannot pass for a block.

procd is modelled as tests/router/procd.py and the init script describe
it: an instance that exits is started again RESPAWN_S (procd's
respawn_timeout default, 5 s) later; stop runs stop_service (the
`stopping` mark, then `clean`) before it sends TERM.

The stories in tests/test_faults.py run the quick faults with these same
functions; the conntrack-full fault and the 10-minute flood run only
here (`nf_conntrack_max` may be written in the root namespace only, so
that fault saves the host's value, lowers it for some seconds and puts it
back).
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time

from tests.world import home as world
from tests.world.home import Home, HomeError

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
INIT_SCRIPT = os.path.join(REPO, "files", "etc", "init.d", "spin")
RESPAWN_S = 5          # procd's respawn_timeout (system.@service[0] default)
PROBE_S = 0.7          # a connect that has not succeeded by then is held
CONNTRACK_MAX = "/proc/sys/net/netfilter/nf_conntrack_max"
WALLCLOCK_C = os.path.join(HERE, "world", "wallclock.c")   # the clock jump (no libfaketime: see there)

CAMERA_TO = ("203.0.113.10", 80)      # cloud.example-cam.com
BULB_TO = ("203.0.113.40", 80)        # time.example-bulb.com
SPEAKER_TO = ("203.0.113.20", 80)     # the control: not blocked

PROBE = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(float(sys.argv[3]))
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print("open")
except OSError as e:
    print("closed")
"""

# 100,000 new flows a minute: UDP datagrams to addresses of the scan range
# (the internet drops them, so each stays an unreplied conntrack entry for
# the kernel's 30 s), a batch every 0.1 s, until the flag file goes
FLOOD = """
import os, socket, sys, time
per_min, flag = int(sys.argv[1]), sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
n, t0 = 0, time.monotonic()
while os.path.exists(flag):
    due = int((time.monotonic() - t0) * per_min / 60)
    while n < due:
        a = 198 * 2 ** 24 + 18 * 2 ** 16 + (n * 7919) % 2 ** 17
        try:
            s.sendto(b"x", (socket.inet_ntoa(a.to_bytes(4, "big")), 1024 + n % 50000))
        except OSError:
            pass
        n += 1
    time.sleep(0.1)
print(n)
"""


# -- reading the home --------------------------------------------------------

class Matrix:
    """One home with the decisions every fault must keep: the camera
    blocked, the bulb quarantined."""

    def __init__(self, home):
        self.home = home
        self.camera = home.devices["camera"].mac
        self.bulb = home.devices["bulb"].mac
        self.block_id = None

    def furnish(self):
        h = self.home
        h.wait_for(lambda: self.answer("device", {"mac": self.camera}) and
                   self.answer("device", {"mac": self.bulb}),
                   timeout=30, what="the camera and the bulb known to the agent")
        self.block_id = h.call("block", {"mac": self.camera, "note": "fault matrix"})["id"]
        h.call("quarantine", {"mac": self.bulb, "reason": "fault matrix"})
        h.wait_for(lambda: self.held() == (True, True), timeout=20,
                   what="the camera blocked and the bulb quarantined")
        return self

    def answer(self, method, args=None):
        """The agent's reply, or None when it does not answer (down, busy)."""
        try:
            return self.home.call(method, args)
        except Exception:
            return None

    def agent_pid(self):
        p = self.home.agent
        return p.pid if p is not None and p.poll() is None else None

    def probe(self, dev, target):
        return subprocess.Popen(self.home._argv(dev, [sys.executable, "-c", PROBE, target[0],
                                                      str(target[1]), str(PROBE_S)]),
                                stdout=subprocess.PIPE, text=True)

    def held(self):
        """(camera blocked, bulb quarantined) as packets show them, at one
        moment; None when the speaker could not connect either (the test
        proves nothing then)."""
        ps = [self.probe("camera", CAMERA_TO), self.probe("bulb", BULB_TO),
              self.probe("speaker", SPEAKER_TO)]
        out = [p.communicate()[0].strip() for p in ps]
        if out[2] != "open":
            return None
        return out[0] == "closed", out[1] == "closed"

    def decisions(self):
        """(the camera's block is in the store, the bulb's quarantine is)."""
        listing = self.answer("blocks")
        if listing is None:
            return None
        return (any(b["id"] == self.block_id and b["mac"] == self.camera for b in listing["blocks"]),
                any(q["mac"] == self.bulb for q in listing["quarantines"]))

    def say(self, status=None):
        """What `status` says, in a few words."""
        s = self.answer("status") if status is None else status
        if s is None:
            return "no answer"
        fw = s.get("firewall") or {}
        words = ["firewall " + str(fw.get("firewall"))]
        errs = sorted(s.get("errors") or {})
        if errs:
            words.append("errors: " + ",".join(errs))
        return "; ".join(words)

    def healthy(self):
        s = self.answer("status")
        return s is not None and (s.get("firewall") or {}).get("firewall") == "ok"

    def recover(self, t0, timeout=60, also=None, seen=None):
        """Seconds from t0 until the agent is healthy and both devices are
        held again (and `also()` holds); what status said meanwhile goes
        into seen. An agent that died meanwhile is respawned as procd does."""
        seen = seen if seen is not None else []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.home.agent is not None and self.home.agent.poll() is not None:
                note(seen, "agent exited %s" % self.home.agent.returncode)
                respawn(self.home)
            said = self.say()
            note(seen, said)
            if said == "firewall ok" or said.startswith("firewall ok;"):
                h = self.held()
                if h == (True, True) and (also is None or also()):
                    return round(time.monotonic() - t0, 1)
                if h is not None and h != (True, True):
                    note(seen, "not held: %s" % ("camera" if not h[0] else "bulb"))
            time.sleep(0.1)
        raise HomeError("no recovery within %ss; status said %s" % (timeout, " -> ".join(seen)))

    def lost(self):
        """(blocks lost, quarantines lost): not in the store, or not held."""
        d = self.decisions() or (False, False)
        h = None
        for _ in range(3):
            h = self.held()
            if h is not None:
                break
        h = h or (False, False)
        return int(not (d[0] and h[0])), int(not (d[1] and h[1]))


def note(seen, said):
    if said not in seen:
        seen.append(said)


def respawn(home, delay=RESPAWN_S):
    """procd's respawn: the instance exited; start it again delay s later."""
    if home.agent is not None:
        home.agent.wait()
    time.sleep(delay)
    home.start_agent(wait=False)


def conntrack_open(pid):
    """True while the process has the conntrack table open (a scan)."""
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                if os.readlink("/proc/%d/fd/%s" % (pid, fd)).endswith("nf_conntrack"):
                    return True
            except OSError:
                pass
    except OSError:
        pass
    return False


def at_scan(home, action, timeout=15):
    """Run action() the moment the agent is seen reading the conntrack
    table; True if a scan was caught (else action runs at the timeout)."""
    pid = home.agent.pid
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if conntrack_open(pid):
            action()
            return True
    action()
    return False


def row(fault, m, recover_s, seen, notes="", **facts):
    """A line of the table; facts are what the stories check."""
    r = {"fault": fault, "backend": m.home.firewall, "recover_s": recover_s,
         "meanwhile": " -> ".join(seen), "note": notes}
    r.update(facts)
    return r


# -- the faults ---------------------------------------------------------------

def kill9_mid_scan(m):
    """kill -9 while a scan reads the table; procd respawns it RESPAWN_S later."""
    h = m.home
    caught = at_scan(h, lambda: os.kill(h.agent.pid, signal.SIGKILL))
    t0 = time.monotonic()
    h.agent.wait()
    seen = []
    down = m.held()       # the rules are the kernel's: they hold with no agent
    note(seen, "no answer")
    respawn(h)
    secs = m.recover(t0, seen=seen)
    return row("kill -9 mid-scan", m, secs, seen,
               "%s; held while down: %s; procd respawn after %d s"
               % ("caught mid-scan" if caught else "no scan caught", down == (True, True), RESPAWN_S),
               held_while_down=down == (True, True))


def hup_storm(m):
    """100 SIGHUPs in one second."""
    h = m.home
    before = h.agent_log_tail(100000).count("configuration reloaded")
    seen = []
    t0 = time.monotonic()
    for i in range(100):
        if h.agent.poll() is not None:
            break
        h.agent.send_signal(signal.SIGHUP)
        if i % 25 == 24:
            note(seen, m.say())
        time.sleep(0.01)
    secs = m.recover(t0, seen=seen)
    # the reloads are read only after the agent answered: every HUP is in by then
    reloads = h.agent_log_tail(100000).count("configuration reloaded") - before
    return row("SIGHUP storm (100 in 1 s)", m, secs, seen,
               "%d reloads for 100 HUPs; agent pid unchanged: %s"
               % (reloads, h.agent.returncode is None), reloads=reloads, pid=h.agent.pid)


def ubusd_restart(m):
    """ubusd goes away and comes back (the stand-in, run again)."""
    from spin_lite import ubuslink
    from tests.world.ubusd import StandIn
    h = m.home
    path = h.path("ubus.sock")
    ubusd = StandIn(path, h.path("ubusd.log")).start()

    def on_ubus():
        try:
            return ubuslink.call(path, "status", {}, timeout=2)["scans"] >= 0
        except Exception:
            return False
    try:
        h.stop_agent()
        h.start_agent(ubus_socket=path)
        h.wait_for(on_ubus, timeout=20, what="object spin on ubus")
        seen = []
        t0 = time.monotonic()
        ubusd.stop()
        note(seen, m.say())
        ubusd.start()
        secs = m.recover(t0, also=on_ubus, seen=seen)
        registered = m.answer("status")
    finally:
        h.stop_agent()
        ubusd.stop()
        h.start_agent()
    return row("ubusd restart", m, secs, seen,
               "spin answers on ubus again; errors after: %s"
               % sorted((registered or {}).get("errors") or {}),
               errors_after=sorted((registered or {}).get("errors") or {}))


def _fw_poke(m):
    """What the firewall include does after fw4/fw3 loaded its rules
    (files/usr/share/spin/firewall.include: `ubus call spin reapply`)."""
    m.answer("reapply")


def _fw4_load(h):
    h.sh("router", "nft", "-f", "-", input=world.FW4_RULESET)


def _fw3_load(h, noflush=False):
    v4, v6 = world.IPTABLES[h.firewall]
    extra = ["--noflush"] if noflush else []
    h.sh("router", v4, *extra, input=world.FW3_RULES)
    h.sh("router", v6, *extra, input="*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n"
                                     ":OUTPUT ACCEPT [0:0]\nCOMMIT\n")


def _fw3_builtin_flush(h):
    # firewall3's reload: the rules of the built-in chains go (spin's jumps
    # with them), its own chains are filled again; other chains stay
    ipt = {"iptables": "iptables", "iptables-legacy": "iptables-legacy"}[h.firewall]
    for fam in (ipt, "ip6" + ipt[2:]):
        for table, chains in (("filter", ("INPUT", "FORWARD", "OUTPUT")),
                              ("nat", ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"))):
            if fam.startswith("ip6") and table == "nat":
                continue
            for c in chains:
                h.sh("router", fam, "-w", "-t", table, "-F", c)


def _fw3_wipe(h):
    # firewall3's stop / the flush of a restart: every table emptied, every
    # chain deleted, policies ACCEPT (ipsets are firewall3's only when it
    # made them: spin's stay)
    v4, v6 = world.IPTABLES[h.firewall]
    empty = "".join("*%s\nCOMMIT\n" % t for t in ("raw", "mangle", "nat", "filter"))
    h.sh("router", v4, input=empty)
    h.sh("router", v6, input=empty.replace("*nat\nCOMMIT\n", ""))


def firewall_reload(m):
    """fw4 reload (table inet fw4 replaced) / fw3 reload (built-in chains
    flushed and refilled), then the include's poke."""
    h = m.home
    seen = []
    t0 = time.monotonic()
    if h.firewall == "nft":
        _fw4_load(h)
    else:
        _fw3_builtin_flush(h)
        _fw3_load(h, noflush=True)
    _fw_poke(m)
    secs = m.recover(t0, seen=seen)
    return row("firewall reload (+ include)", m, secs, seen, restores(m))


def firewall_restart(m):
    """fw4 restart (delete table inet fw4, load) / fw3 restart (flush
    everything, load), then the include's poke."""
    h = m.home
    seen = []
    t0 = time.monotonic()
    if h.firewall == "nft":
        h.sh("router", "nft", "delete", "table", "inet", "fw4")
        _fw4_load(h)
    else:
        _fw3_wipe(h)
        _fw3_load(h)
    _fw_poke(m)
    secs = m.recover(t0, seen=seen)
    return row("firewall restart (+ include)", m, secs, seen, restores(m))


def firewall_stop_start(m):
    """`/etc/init.d/firewall stop` (fw4 flush: every table of every family
    deleted; fw3: everything flushed) with no include, then start with it.
    With the firewall stopped there is no NAT either: the internet routes
    the LAN meanwhile, so the probes still tell a block from no route."""
    h = m.home
    seen = []
    h.sh("wan", "ip", "route", "add", world.LAN4_PREFIX, "via", world.WAN4_ROUTER)
    try:
        t0 = time.monotonic()
        if h.firewall == "nft":
            h.sh("router", "nft", "flush", "ruleset")
        else:
            _fw3_wipe(h)
        after_stop = m.recover(t0, seen=seen)     # the scan's self-check alone
    finally:
        t1 = time.monotonic()
        if h.firewall == "nft":
            _fw4_load(h)
        else:
            _fw3_load(h)
        _fw_poke(m)
        h.sh("wan", "ip", "route", "del", world.LAN4_PREFIX, "via", world.WAN4_ROUTER)
    after_start = m.recover(t1, seen=seen)
    return row("firewall stop, then start", m, after_stop, seen,
               "stop: restored by the self-check in %.1f s; start (+ include): %.1f s; %s"
               % (after_stop, after_start, restores(m)), after_start=after_start)


def restores(m):
    s = m.answer("status") or {}
    return "restores so far: %s" % (s.get("firewall") or {}).get("restores")


def _mount(*argv):
    subprocess.run(["mount"] + list(argv), check=True, capture_output=True)


def _umount(path):
    subprocess.run(["umount", "-l", path], capture_output=True)


def tmp_full(m):
    """run_dir (/tmp/spin on a router) on a full tmpfs: reload, a new block,
    the rules flushed and restored, a restart."""
    h = m.home
    tmp = h.path("tmpfs")
    os.makedirs(tmp, exist_ok=True)
    _mount("-t", "tmpfs", "-o", "size=256k,nr_inodes=64", "tmpfs", tmp)
    seen = []
    try:
        h.stop_agent()
        h.start_agent(run_dir=tmp + "/spin")
        fd = os.open(os.path.join(tmp, "fill"), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        h.reload_agent()
        speaker = h.devices["speaker"].mac
        extra = h.call("block", {"mac": speaker, "note": "while /tmp is full"})["id"]
        h.call("unblock", {"id": extra})
        t0 = time.monotonic()
        _flush_spin(h)
        secs = m.recover(t0, seen=seen)
        h.stop_agent()            # the names part saves endpoints.json here
        h.start_agent()
        note(seen, m.say())
        alive = m.held() == (True, True)
    finally:
        h.stop_agent()
        _umount(tmp)
        h.start_agent()
    return row("/tmp full (run_dir)", m, secs, seen,
               "flushed rules restored with /tmp full; block+unblock worked; "
               "restart with /tmp full: held %s" % alive, held_after_restart=alive)


def _flush_spin(h):
    """Take spin's rules away behind the agent's back."""
    if h.firewall == "nft":
        h.sh("router", "nft", "flush", "ruleset")
        _fw4_load(h)
    else:
        _fw3_wipe(h)
        _fw3_load(h)


def _read_only(path, pid=None):
    """path read-only, on the host or (pid) in that process's mount
    namespace: `ip netns exec` gives the agent a copy of the host's mounts
    when it starts, and on this host no mount propagates into it later."""
    pre = ["nsenter", "-t", str(pid), "-m"] if pid else []
    for argv in (["mount", "--bind", path, path], ["mount", "-o", "remount,bind,ro", path]):
        subprocess.run(pre + argv, check=True, capture_output=True)


def _writable(path, pid=None):
    pre = ["nsenter", "-t", str(pid), "-m"] if pid else []
    subprocess.run(pre + ["umount", path], capture_output=True)


def etc_read_only(m):
    """state_dir (/etc/spin) turns read-only under the running agent: a new
    decision is refused with a clear error and nothing changes; a restart
    with it read-only keeps every decision; writable again, decisions work."""
    from spin_lite import jsonrpc
    h = m.home
    state = h.path("state")
    os.makedirs(state, exist_ok=True)
    seen = []
    refused = []
    speaker = h.devices["speaker"].mac
    _read_only(state, m.agent_pid())
    _read_only(state)            # for the agent's next start
    try:
        for method, args in (("block", {"mac": speaker}), ("quarantine", {"mac": speaker}),
                             ("name", {"mac": speaker, "name": "Kitchen speaker"})):
            try:
                h.call(method, args)
                refused.append("%s accepted" % method)
            except jsonrpc.RemoteError as e:
                refused.append("%s: %s" % (method, e.status))
        listing = m.answer("blocks") or {}
        scans = (m.answer("status") or {}).get("scans", 0)
        h.wait_for(lambda: (m.answer("status") or {}).get("scans", 0) > scans, timeout=30,
                   what="a scan after the refused name")
        named = (m.answer("device", {"mac": speaker}) or {}).get("owner_name")
        unchanged = ((len(listing.get("blocks", [])), len(listing.get("quarantines", [])))
                     == (1, 1) and named is None)
        t0 = time.monotonic()
        h.stop_agent()
        h.start_agent(wait=False)
        secs = m.recover(t0, seen=seen)
    finally:
        _writable(state)
        if m.agent_pid():
            _writable(state, m.agent_pid())
    later = h.call("block", {"mac": speaker, "note": "writable again"})["id"]
    h.call("unblock", {"id": later})
    return row("/etc read-only (state)", m, secs, seen,
               "while read-only: %s; store unchanged: %s; restart kept everything; "
               "writable again: block+unblock worked" % (", ".join(refused), unchanged),
               refused=refused, unchanged=unchanged)


def clock_jumps(m):
    """The wall clock jumps +1 day and -1 day (for the agent only, by
    tests/world/wallclock.c; the host clock is untouched), and NTP arrives after a boot with the clock a day behind:
    a one-hour block made before NTP must survive a restart after it."""
    h = m.home
    shim = h.path("wallclock.so")
    if not os.path.exists(shim):
        subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", shim, WALLCLOCK_C, "-ldl"],
                       check=True, capture_output=True)
    offset = h.path("wall-offset")

    def clock(spec):
        with open(offset, "w") as f:
            f.write("%d\n" % {"+0": 0, "+1d": 86400, "-1d": -86400}[spec])
    clock("+0")
    h.agent_env = {"LD_PRELOAD": shim, "SPIN_WALL_OFFSET_FILE": offset}
    thermo = h.devices["thermostat"].mac
    seen = []
    try:
        clock("-1d")                  # the router booted without NTP
        h.stop_agent()
        h.start_agent()
        timed = h.call("block", {"mac": thermo, "minutes": 60, "note": "before NTP"})["id"]
        labels = []
        for spec in ("+0", "+1d", "+0", "-1d", "+0"):   # NTP, then jumps either way
            clock(spec)
            scans = (m.answer("status") or {}).get("scans", 0)
            h.wait_for(lambda: (m.answer("status") or {}).get("scans", 0) >= scans + 2,
                       timeout=30, what="two scans after the clock jumped %s" % spec)
            note(seen, m.say())
            labels.append(_newest_label(m))
        t0 = time.monotonic()
        h.stop_agent()                # a restart after NTP (crash, upgrade, respawn)
        h.start_agent()

        def timed_kept():
            b = [x for x in (m.answer("blocks") or {}).get("blocks", []) if x["id"] == timed]
            return bool(b)
        secs = m.recover(t0, also=timed_kept, timeout=30, seen=seen)
        kept = timed_kept()
        if kept:
            h.call("unblock", {"id": timed})
    finally:
        clock("+0")
        h.agent_env = {}
        h.stop_agent()
        h.start_agent()
    shifts = [round((b - a) / 86400.0, 2) for a, b in zip(labels, labels[1:]) if a and b]
    return row("clock +-1 day (NTP at boot)", m, secs, seen,
               "1-hour block made before NTP kept after a restart: %s; history labels moved by "
               "%s days" % (kept, shifts), kept=kept, shifts=shifts)


def _newest_label(m):
    hist = m.answer("history", {"mac": m.camera, "minutes": 2}) or {}
    return (hist.get("current") or {}).get("t")


def leftovers(h):
    """spin's tables, chains, sets and socket still there."""
    out = []
    tables = h.sh("router", "nft", "list", "tables", check=False)
    out += [line.strip() for line in tables.splitlines() if " spin" in line]
    for ipt in ("iptables", "ip6tables"):
        for cmd in (ipt + "-save", ipt + "-legacy-save"):
            text = h.sh("router", cmd, check=False)
            out += ["%s: %s" % (cmd, line) for line in text.splitlines()
                    if line.startswith(":spin") or "-j spin" in line]
    sets = h.sh("router", "ipset", "list", "-n", check=False)
    out += ["ipset " + s for s in sets.split() if s.startswith("spin")]
    if os.path.exists(h.rpc_socket):
        out.append("socket " + h.rpc_socket)
    return out


def stop_mid_scan(m):
    """`/etc/init.d/spin stop` while a scan runs: stop_service (the mark,
    then clean) and procd's TERM; nothing of spin may be left behind. Then
    a start brings every decision back."""
    h = m.home
    run_dir = h.write_agent_config()["run_dir"]

    def stop_service():
        os.makedirs(run_dir, exist_ok=True)
        open(os.path.join(run_dir, "stopping"), "w").close()
        h.sh("router", "sh", "-c", ". %s; clean" % INIT_SCRIPT)
    caught = at_scan(h, stop_service)
    code = h.stop_agent()
    left = leftovers(h)
    seen = [m.say()]
    t0 = time.monotonic()
    h.start_agent(wait=False)        # start_service: the agent deletes the mark
    secs = m.recover(t0, seen=seen)
    return row("stop during a scan, then start", m, secs, seen,
               "%s; exit %s; left behind: %s" % ("caught mid-scan" if caught else "no scan caught",
                                                code, ", ".join(left) or "nothing"),
               left=left, exit=code)


def conntrack_full(m):
    """The conntrack table full: nf_conntrack_max (global: only the root
    namespace may write it) lowered to the router's count + 2,000 for a
    few seconds while the laptop floods; then put back."""
    h = m.home
    old = open(CONNTRACK_MAX).read().strip()
    count_file = "/proc/sys/net/netfilter/nf_conntrack_count"
    low = int(h.sh("router", "cat", count_file).strip()) + 2000
    flag = h.path("flood.on")
    seen = []
    said = None
    laptop = h.devices["laptop"].mac
    h.call("allow", {"mac": laptop})     # the detector would quarantine the flood (see flood)
    try:
        with open(CONNTRACK_MAX, "w") as f:
            f.write("%d\n" % low)
        open(flag, "w").close()
        gen = h.popen("laptop", [sys.executable, "-c", FLOOD, "30000", flag], label="flood")
        h.wait_for(lambda: int(h.sh("router", "cat", count_file)) >= low - 5, timeout=30,
                   what="the router's conntrack table full")
        scans = (m.answer("status") or {}).get("scans", 0)
        h.wait_for(lambda: (m.answer("status") or {}).get("scans", 0) >= scans + 2, timeout=30,
                   what="two scans with the table full")
        s = m.answer("status") or {}
        note(seen, m.say(s))
        said = (s.get("errors") or {}).get("conntrack_table")
        held = m.held()
        extra = h.call("block", {"mac": h.devices["speaker"].mac, "note": "table full"})["id"]
        h.call("unblock", {"id": extra})
    finally:
        with open(CONNTRACK_MAX, "w") as f:
            f.write(old + "\n")
        if os.path.exists(flag):
            os.unlink(flag)
        h.call("disallow", {"mac": laptop})
    t0 = time.monotonic()
    gen.wait(10)
    secs = m.recover(t0, seen=seen,
                     also=lambda: "conntrack_table" not in ((m.answer("status") or {}).get("errors") or {}))
    return row("conntrack table full", m, secs, seen,
               "table full at %d entries for seconds; held meanwhile: %s; status: %s; a block+unblock "
               "worked; host nf_conntrack_max %s put back: %s"
               % (low, held, said, old, open(CONNTRACK_MAX).read().strip() == old), said=said)


def flood(m, minutes=10, per_min=100000):
    """100,000 new flows a minute for `minutes`: RSS must stay flat."""
    h = m.home
    laptop = h.devices["laptop"].mac
    # allowed: else the detector quarantines the flooding laptop within
    # seconds (it did, in the first run) and the flows never reach conntrack
    h.call("allow", {"mac": laptop})
    flag = h.path("flood.on")
    open(flag, "w").close()
    gen = h.popen("laptop", [sys.executable, "-c", FLOOD, str(per_min), flag],
                  label="flood", log=h.path("flood.log"))
    count_file = "/proc/sys/net/netfilter/nf_conntrack_count"
    live = []
    samples = []
    seen = []
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < minutes * 60:
            time.sleep(min(15, max(1, minutes * 60 / 4)))
            samples.append((round(time.monotonic() - t0), rss_kb(m.agent_pid())))
            live.append(int(h.sh("router", "cat", count_file).strip()))
            s = m.answer("status")
            note(seen, m.say(s))
    finally:
        os.unlink(flag)
        h.call("disallow", {"mac": laptop})
    gen.wait(30)
    with open(h.path("flood.log")) as f:
        sent = int((f.read().split() or ["0"])[-1])
    held = m.held()
    s = m.answer("status") or {}
    first = [kb for t, kb in samples if t >= 60][:1] or [samples[0][1]]
    last = samples[-1][1]
    peak = max(kb for _, kb in samples)
    secs = m.recover(time.monotonic(), seen=seen)
    return row("%d new flows/min for %g min" % (per_min, minutes), m, secs, seen,
               "sent %d; conntrack entries %d-%d; RSS at 1 min %.1f MB, at end %.1f MB, peak %.1f MB "
               "(growth %+.1f MB); held at end %s; flows_dropped %s of %s seen, last scan %s ms"
               % (sent, min(live[1:] or live), max(live), first[0] / 1024, last / 1024, peak / 1024,
                  (last - first[0]) / 1024, held, s.get("flows_dropped"),
                  s.get("flows"), s.get("last_scan_ms")),
               rss_growth_kb=last - first[0], live=live)


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, TypeError):
        pass
    return 0


# name -> (function, runs in make test too)
FAULTS = [
    ("kill9", kill9_mid_scan),
    ("hup", hup_storm),
    ("ubusd", ubusd_restart),
    ("fw-reload", firewall_reload),
    ("fw-restart", firewall_restart),
    ("fw-stop", firewall_stop_start),
    ("tmp", tmp_full),
    ("etc", etc_read_only),
    ("conntrack", conntrack_full),
    ("clock", clock_jumps),
    ("stop", stop_mid_scan),
    ("flood", flood),
]


def run_fault(m, fn, **kw):
    """One fault as a row of the table, with what was lost once it was over."""
    try:
        r = fn(m, **kw)
    except Exception as e:
        r = row(fn.__name__, m, None, [], "FAILED: %s: %s" % (type(e).__name__, str(e)[:300]))
        if m.home.agent is None or m.home.agent.poll() is not None:
            m.home.start_agent()
    r["blocks_lost"], r["quarantines_lost"] = m.lost()
    return r


def table(rows):
    lines = ["| fault | backend | blocks lost | quarantines lost | recovered in | status meanwhile | notes |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        rec = "-" if r["recover_s"] is None else "%.1f s" % r["recover_s"]
        lines.append("| %s | %s | %d | %d | %s | %s | %s |"
                     % (r["fault"], "fw4 (nft)" if r["backend"] == "nft" else "fw3 (iptables)",
                        r["blocks_lost"], r["quarantines_lost"], rec, r["meanwhile"], r["note"]))
    return "\n".join(lines)


def agent_config(backend, scan_interval):
    """The agent's options in a home of this firewall. In the "iptables"
    home firewall3's rules go through Debian's iptables (iptables-nft); the
    agent would pick iptables-legacy (what OpenWrt's firewall3 uses), and a
    firewall3 reload or stop there would never touch spin's chains: so the
    agent is given the home's binary."""
    cfg = {"scan_interval": scan_interval}
    if backend != "nft":
        cfg["iptables_cmd"] = world.IPTABLES[backend][0].replace("-restore", "")
    return cfg


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", action="append", choices=["nft", "iptables", "iptables-legacy"])
    ap.add_argument("--only", action="append", choices=[n for n, _ in FAULTS])
    ap.add_argument("--scan-interval", type=int, default=5)
    ap.add_argument("--flood-minutes", type=float, default=10)
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("the fault matrix needs root (network namespaces)")
    rows = []
    t_all = time.monotonic()
    load = open("/proc/loadavg").read().split()[0]
    for backend in args.backend or ["nft", "iptables"]:
        with Home(firewall=backend, agent=True, config=agent_config(backend, args.scan_interval)) as h:
            m = Matrix(h).furnish()
            for name, fn in FAULTS:
                if args.only and name not in args.only:
                    continue
                kw = {"minutes": args.flood_minutes} if name == "flood" else {}
                r = run_fault(m, fn, **kw)
                rows.append(r)
                print("%-30s %-8s lost %d/%d  %s  %s | %s" % (
                    r["fault"], backend, r["blocks_lost"], r["quarantines_lost"],
                    r["recover_s"], r["meanwhile"], r["note"]), flush=True)
    print()
    print("scan_interval %d s; load average %s at start, %s at end; %.0f s in all"
          % (args.scan_interval, load, open("/proc/loadavg").read().split()[0], time.monotonic() - t_all))
    print(table(rows))
    os.makedirs(os.path.join(REPO, "tests", "artifacts"), exist_ok=True)
    with open(os.path.join(REPO, "tests", "artifacts", "faults.json"), "w") as f:
        json.dump(rows, f, indent=1)
    return 1 if any(r["blocks_lost"] or r["quarantines_lost"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
