"""Least privilege: the agent as user spin with CAP_NET_ADMIN and
CAP_NET_RAW, nothing else.

First what the kernel does, for real in a network namespace: nft,
iptables, ipset and conntrack work for a process that is not root only
with ambient CAP_NET_ADMIN (the capabilities procd's ujail gives the
agent, which its children inherit), and what a non-root agent can and
cannot read or write. Then the router: the ipk installed in the chroot
router (tests/router), procd's definition of the agent, and the agent
started the way procd with ujail starts it (tests/router/procd.py) in a
network namespace with the real nft, talking to the ubusd stand-in with
ubusd's ACLs on: it runs as spin, owns its files, blocks a device, and
the kernel's ruleset shows it.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from spin_lite import ubuslink
from tests.router import chroot
from tests.test_initscript import installed, with_python39
from tests.world.ubusd import StandIn

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOBODY = "65534"
AMBIENT = ["--inh-caps=+net_admin,+net_raw", "--ambient-caps=+net_admin,+net_raw"]
CAP_NET_ADMIN_RAW = (1 << 12) | (1 << 13)
SPIN_UID = 385


def ns_run(name, *argv):
    return subprocess.run(["ip", "netns", "exec", name] + list(argv), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True)


def as_nobody(name, caps, *argv):
    """argv in the namespace as uid/gid 65534, with or without the two
    capabilities as ambient ones."""
    return ns_run(name, "setpriv", "--reuid=" + NOBODY, "--regid=" + NOBODY, "--clear-groups",
                  *((AMBIENT if caps else []) + list(argv)))


@pytest.fixture
def router(tmp_path):
    if os.geteuid() != 0:
        pytest.fail("the router is a chroot: run the tests as root")
    return chroot.make_root(str(tmp_path / "router"))


@pytest.fixture
def netns():
    if os.geteuid() != 0:
        pytest.fail("needs root for a network namespace")
    name = "spin-priv-%d" % os.getpid()
    subprocess.run(["ip", "netns", "add", name], check=True)
    yield name
    subprocess.run(["ip", "netns", "del", name])


def test_firewall_tools_work_for_a_non_root_process_only_with_ambient_cap_net_admin(netns):
    tools = [
        ("nft", "add", "table", "inet", "spin"),
        ("iptables", "-w", "-N", "spin_forward"),
        ("ipset", "create", "spin_blocked4", "hash:ip"),
        ("conntrack", "-L"),
    ]
    for argv in tools:
        r = as_nobody(netns, False, *argv)
        assert r.returncode != 0, (argv, r.stdout)
    assert "spin" not in ns_run(netns, "nft", "list", "tables").stdout
    assert "spin_forward" not in ns_run(netns, "iptables", "-w", "-S").stdout
    for argv in tools:
        r = as_nobody(netns, True, *argv)
        assert r.returncode == 0, (argv, r.stdout)
    assert "table inet spin" in ns_run(netns, "nft", "list", "tables").stdout
    assert "-N spin_forward" in ns_run(netns, "iptables", "-w", "-S").stdout
    assert ns_run(netns, "ipset", "list", "-n").stdout.split() == ["spin_blocked4"]


def test_iptables_legacy_needs_its_lock_file_readable_by_the_agents_group(netns):
    """firewall3's iptables (legacy) flocks /var/run/xtables.lock, opened
    read-only; root's first iptables creates it 0600. Here on a /run of
    the command's own (`ip netns exec` gives it a mount namespace), so the
    host's lock is not touched."""
    script = ('mount -t tmpfs none /run && : > /run/xtables.lock && chmod 600 /run/xtables.lock && '
              '"$@" iptables-legacy -w -N spin_a; echo "0600 $?"; '
              'chgrp %s /run/xtables.lock && chmod 0640 /run/xtables.lock && '
              '"$@" iptables-legacy -w -N spin_b; echo "0640 $?"' % NOBODY)
    r = ns_run(netns, "sh", "-c", script, "sh", "setpriv", "--reuid=" + NOBODY, "--regid=" + NOBODY,
               "--clear-groups", *AMBIENT)
    assert "can't open lock file" in r.stdout
    assert [line for line in r.stdout.splitlines() if line.startswith("06")] == ["0600 4", "0640 0"]
    chains = ns_run(netns, "iptables-legacy", "-w", "-S").stdout
    assert "-N spin_b" in chains and "-N spin_a" not in chains


def test_what_a_non_root_agent_may_read_and_write_in_proc(netns):
    """A network namespace's sysctls grant CAP_NET_ADMIN what they grant
    root (net/sysctl_net.c), so the agent turns nf_conntrack_acct on
    itself; the conntrack table is 0440 root:root, readable by group spin
    only once the init script (root) has given it that group."""
    acct = "/proc/sys/net/netfilter/nf_conntrack_acct"
    table = "/proc/net/nf_conntrack"
    write = "echo 1 > %s" % acct
    assert as_nobody(netns, False, "sh", "-c", write).returncode != 0
    assert as_nobody(netns, True, "sh", "-c", write).returncode == 0
    assert as_nobody(netns, True, "cat", table).returncode != 0
    host_group = os.stat(table).st_gid
    assert ns_run(netns, "chgrp", NOBODY, table).returncode == 0
    assert as_nobody(netns, False, "cat", table).returncode == 0
    # per namespace: the host's table keeps its group
    assert os.stat(table).st_gid == host_group


# -- the router -------------------------------------------------------------

LAN_DEVICE = "02:00:00:00:00:0a"
ARP = ("IP address       HW type     Flags       HW address            Mask     Device\n"
       "192.168.1.10     0x1         0x2         %s     *        br-lan\n" % LAN_DEVICE)
CONFIG = """config spin 'main'
	option enabled '1'
	option scan_interval '1'
	option lan_ifname 'br-lan'
	list lan_net '192.168.1.0/24'
	option arp_file '/snapshot/arp'
	option firewall 'nft'
	option dns_snoop '1'
	option ctevents '1'
	option lan_watch '0'
	option detect '0'
	option www_dir ''
"""


def in_router(netns, root, argv):
    """argv in the router's root inside the namespace, with the
    namespace's /proc and /sys (`ip netns exec` gives the command a
    mount namespace of its own: the mounts go away with it)."""
    script = 'mount --rbind /proc "$1/proc" && mount --rbind /sys "$1/sys" && exec chroot "$@"'
    return ["ip", "netns", "exec", netns, "sh", "-c", script, "sh", root] + list(argv)


def router_with_ujail(root, ipks):
    """The router with procd-ujail (its work done by the procd stand-in
    with setpriv), the real nft and Python 3.9, and spin installed."""
    with open(os.path.join(root, "sbin", "ujail"), "w") as f:
        f.write("#!/bin/sh\n# procd-ujail is installed; tests/router/procd.py does its work\nexit 127\n")
    os.chmod(os.path.join(root, "sbin", "ujail"), 0o755)
    chroot.add_program(root, "setpriv", "/usr/bin/setpriv")
    return installed(root, ipks["spin"])


def test_with_ujail_procd_gets_the_agent_as_user_spin_with_two_capabilities(router, ipks):
    rt = router_with_ujail(router, ipks)
    assert "spin:x:%d:%d:spin:/var/run/spin:/bin/false" % (SPIN_UID, SPIN_UID) in \
        open(os.path.join(router, "etc", "passwd")).read().splitlines()
    assert "spin:x:%d:spin" % SPIN_UID in open(os.path.join(router, "etc", "group")).read().splitlines()
    agent = rt.procd.running[("spin", "agent")]
    assert agent["jail"] == {"name": "spin"}     # no namespaces: identity and capabilities only
    assert agent["user"] == "spin" and agent["group"] == "spin"
    assert agent["capabilities"] == "/etc/capabilities/spin.json"
    assert agent["no_new_privs"] is True
    caps = rt.procd.capabilities(agent["capabilities"])
    assert caps == {s: ["net_admin", "net_raw"] for s in ("bounding", "effective", "inheritable",
                                                          "permitted", "ambient")}
    assert rt.procd.exec_argv(agent) == [
        "/usr/bin/setpriv", "--reuid", str(SPIN_UID), "--regid", str(SPIN_UID), "--init-groups",
        "--bounding-set", "-all,+net_admin,+net_raw", "--inh-caps", "-all,+net_admin,+net_raw",
        "--ambient-caps", "-all,+net_admin,+net_raw", "--no-new-privs",
        "/usr/bin/spin", "agent", "-c", "/etc/config/spin"]
    # its directories and config, handed over by the init script (root)
    for path in ("etc/spin", "var/run/spin"):
        assert os.stat(os.path.join(router, path)).st_uid == SPIN_UID, path
    for path in ("etc/config/spin", "var/run/xtables.lock"):
        st = os.stat(os.path.join(router, path))
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, SPIN_UID, 0o640), path


def test_without_ujail_the_agent_runs_as_root_rather_than_without_capabilities(router, ipks):
    """procd applies `capabilities` only through ujail; `user` alone is a
    setuid that keeps none, and an agent without CAP_NET_ADMIN could not
    block anything. The init script then declares neither: root, as
    wpad does."""
    rt = installed(router, ipks["spin"])
    agent = rt.procd.running[("spin", "agent")]
    assert not set(agent) & {"jail", "user", "group", "capabilities", "no_new_privs"}
    assert rt.procd.exec_argv(agent) == agent["command"]
    # what the stand-in does with `user` when procd has no ujail
    bare = dict(agent, user="spin", capabilities="/etc/capabilities/spin.json", jail={"name": "spin"})
    assert rt.procd.exec_argv(bare) == ["/usr/bin/setpriv", "--reuid", str(SPIN_UID), "--regid",
                                        str(SPIN_UID), "--init-groups"] + agent["command"]


def proc_status(pid):
    fields = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v.strip()
    return fields


def wait_for(cond, what, agent, log, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        assert agent.poll() is None, "agent ended: " + open(log).read()
        assert time.monotonic() < deadline, "%s: %s" % (what, open(log).read())
        time.sleep(0.2)


class Home:
    """The router in a network namespace: br-lan with the laptop in its
    ARP table, the real nft, Python 3.9, the ubusd stand-in with ubusd's
    ACLs, and the agent started as procd would start the definition the
    init script sent."""

    def __init__(self, router, rt, netns, firewall="nft"):
        self.router, self.rt, self.netns = router, rt, netns
        for d in ("proc", "sys", "snapshot", "var/run/ubus"):
            os.makedirs(os.path.join(router, d), exist_ok=True)
        with open(os.path.join(router, "snapshot", "arp"), "w") as f:
            f.write(ARP)
        with open(os.path.join(router, "etc", "config", "spin"), "w") as f:
            f.write(CONFIG.replace("option firewall 'nft'", "option firewall '%s'" % firewall))
        self.firewall = firewall
        for argv in (["link", "add", "br-lan", "type", "bridge"],
                     ["addr", "add", "192.168.1.1/24", "dev", "br-lan"], ["link", "set", "br-lan", "up"]):
            assert ns_run(netns, "ip", *argv).returncode == 0
        # the config changed: LuCI's Save & Apply runs reload; the init
        # script (root) hands over what the agent needs, here in the namespace
        r = subprocess.run(in_router(netns, router, ["/etc/init.d/spin", "reload"]), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True)
        assert r.returncode == 0, r.stdout
        rt.sync()
        self.sock = os.path.join(router, "var", "run", "ubus", "ubus.sock")
        self.rpc = os.path.join(router, "var", "run", "spin", "rpc.sock")
        self.log = os.path.join(router, "tmp", "agent.log")
        self.ubusd = self.agent = self.out = None

    def __enter__(self):
        self.ubusd = StandIn(self.sock, acl_dir=os.path.join(self.router, "usr", "share", "acl.d"),
                             etc=os.path.join(self.router, "etc")).start()
        definition = self.rt.procd.running[("spin", "agent")]
        env = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONHOME=/py39/usr"]
        env += ["%s=%s" % kv for kv in sorted(definition.get("env", {}).items())]
        self.out = open(self.log, "w")
        argv = ["/usr/bin/env", "-i"] + env + self.rt.procd.exec_argv(definition)
        self.agent = subprocess.Popen(in_router(self.netns, self.router, argv),
                                      stdout=self.out, stderr=subprocess.STDOUT)
        self.wait(lambda: os.path.exists(self.rpc), "JSON-RPC socket")
        self.wait(lambda: (_status(self.sock) or {}).get("devices", 0) >= 1, "spin on ubus, with the laptop")
        return self

    def __exit__(self, *exc):
        if self.agent.poll() is None:
            self.agent.kill()
            self.agent.wait()
        self.out.close()
        self.ubusd.stop()

    def wait(self, cond, what):
        return wait_for(cond, what, self.agent, self.log)

    def status(self):
        return _status(self.sock)

    def stop(self):
        self.agent.send_signal(signal.SIGTERM)
        assert self.agent.wait(timeout=30) == 0, open(self.log).read()

    def blocks_the_laptop(self):
        """block on ubus; the kernel's set holds the MAC, the event goes out."""
        listener = ubuslink.Client(self.sock)
        try:
            listener.listen("spin.*")
            ubuslink.call(self.sock, "block", {"mac": LAN_DEVICE})
            if self.firewall == "nft":
                ruleset = ns_run(self.netns, "nft", "list", "set", "inet", "spin", "blk_mac").stdout
            else:
                ruleset = ns_run(self.netns, "iptables-legacy", "-w", "-S").stdout.lower()
                assert "-a forward -m comment --comment \"spin: hook\" -j spin_forward" in ruleset, ruleset
            assert LAN_DEVICE in ruleset, ruleset
            name, data = self.wait(lambda: listener.next_event(1), "event spin.block")
            assert name == "spin.block" and data["action"] == "block" and data["block"]["mac"] == LAN_DEVICE
        finally:
            listener.close()


def assert_every_part_works(status):
    for part in ("conntrack", "acct", "ubus", "dns", "events", "firewall"):
        assert part not in status["errors"], status["errors"]
    assert status["acct"] is True
    assert status["events"]["state"] == "on", status["events"]     # ctnetlink: CAP_NET_ADMIN
    assert status["names"]["dns"] == "on", status["names"]         # packet socket: CAP_NET_RAW


def test_procd_story_the_agent_runs_as_spin_and_blocks_a_device(router, ipks, netns):
    with_python39(router)
    rt = router_with_ujail(router, ipks)
    chroot.add_program(router, "nft", "/usr/sbin/nft")
    # compiled by the postinst (root): the agent, spin, could not write it
    pycache = os.path.join(router, "usr", "lib", "spin", "spin_lite", "__pycache__")
    assert os.path.exists(os.path.join(pycache, "agent.cpython-39.pyc"))
    with Home(router, rt, netns) as home:
        # who the agent is: spin, two capabilities, also for its children
        st = proc_status(home.agent.pid)
        assert st["Uid"].split() == [str(SPIN_UID)] * 4 and st["Gid"].split() == [str(SPIN_UID)] * 4
        for s in ("CapEff", "CapPrm", "CapBnd", "CapAmb"):
            assert int(st[s], 16) == CAP_NET_ADMIN_RAW, (s, st[s])
        assert st["NoNewPrivs"] == "1"
        sock_st = os.stat(home.rpc)
        assert (sock_st.st_uid, sock_st.st_mode & 0o777) == (SPIN_UID, 0o600)
        # on ubus as user spin, which the ACL lets own `spin` and send spin.*
        status = home.status()
        assert_every_part_works(status)
        assert status["privileges"] == {"uid": SPIN_UID, "capabilities": ["net_admin", "net_raw"]}

        home.blocks_the_laptop()
        blocks = os.path.join(router, "etc", "spin", "blocks.json")
        assert os.stat(blocks).st_uid == SPIN_UID
        assert [b["mac"] for b in json.load(open(blocks))["blocks"]] == [LAN_DEVICE]
        home.stop()
    assert not [f for f in os.listdir(pycache) if os.stat(os.path.join(pycache, f)).st_uid != 0]
    r = chroot.remove(router, "spin")
    assert r.returncode == 0, r.stdout
    assert not os.path.exists(pycache)


def with_iptables_legacy(root):
    """firewall3's tools in the router: iptables/ip6tables-legacy (one
    multi-call binary and the extensions it loads) and ipset."""
    multi = os.path.realpath(shutil.which("iptables-legacy"))
    chroot.add_program(root, multi, "/usr/sbin/xtables-legacy-multi")
    for name in ("iptables", "ip6tables"):
        for suffix in ("-legacy", "-legacy-save", "-legacy-restore"):
            os.symlink("xtables-legacy-multi", os.path.join(root, "usr", "sbin", name + suffix))
    chroot.add_program(root, "ipset", "/usr/sbin/ipset")
    extensions = "/usr/lib/x86_64-linux-gnu/xtables"
    if not os.path.isdir(extensions):
        pytest.skip("no %s: where are iptables' extensions on this host?" % extensions)
    shutil.copytree(extensions, os.path.join(root, extensions.lstrip("/")))
    # Debian's build locks /run/xtables.lock, OpenWrt's /var/run/xtables.lock
    # (--with-xt-lock-name), which the init script hands to group spin
    os.symlink("var/run", os.path.join(root, "run"))
    # as the firewall's own iptables (START=19) leaves it before spin (95)
    lock = os.path.join(root, "var", "run", "xtables.lock")
    open(lock, "w").close()
    os.chmod(lock, 0o600)


def test_procd_story_on_firewall3_the_agent_as_spin_blocks_with_iptables(router, ipks, netns):
    with_python39(router)
    rt = router_with_ujail(router, ipks)
    with_iptables_legacy(router)
    with Home(router, rt, netns, firewall="iptables") as home:
        assert proc_status(home.agent.pid)["Uid"].split() == [str(SPIN_UID)] * 4
        assert_every_part_works(home.status())
        assert home.status()["firewall"]["backend"] == "iptables", home.status()["firewall"]
        home.blocks_the_laptop()
        home.stop()


def test_procd_story_without_ujail_the_agent_runs_as_root_and_says_so(router, ipks, netns):
    with_python39(router)
    rt = installed(router, ipks["spin"])
    chroot.add_program(router, "nft", "/usr/sbin/nft")
    with Home(router, rt, netns) as home:
        assert proc_status(home.agent.pid)["Uid"].split() == ["0"] * 4
        status = home.status()
        assert_every_part_works(status)
        # "all" on a router; this test host's root lacks some (its bounding set)
        caps = status["privileges"]["capabilities"]
        assert status["privileges"]["uid"] == 0
        assert caps == "all" or {"net_admin", "net_raw", "sys_admin", "dac_override"} <= set(caps), caps
        home.blocks_the_laptop()
        home.stop()
    # nothing was handed to spin: the conntrack table stays root's
    assert "spin" not in ns_run(netns, "ls", "-l", "/proc/net/nf_conntrack").stdout


def _status(sock):
    try:
        return ubuslink.call(sock, "status")
    except ubuslink.UbusError:
        return None


# -- ubusd's ACLs, with the stand-in ------------------------------------------

def as_spin_on_ubus(sock, script):
    """A Python client run as uid/gid 385 (spin in the router's passwd)."""
    env = dict(os.environ, PYTHONPATH=os.path.join(TOP, "src") + os.pathsep + TOP)
    r = subprocess.run(["setpriv", "--reuid=%d" % SPIN_UID, "--regid=%d" % SPIN_UID, "--clear-groups",
                        sys.executable, "-c", script, sock], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, universal_newlines=True)
    assert r.returncode == 0, r.stdout
    return json.loads(r.stdout)


ACL_PROBE = """
import json, sys
from spin_lite import ubuslink
c = ubuslink.Client(sys.argv[1])
out = {}
for path in ("spin", "network"):
    out["publish " + path] = c._request(c.conn.add_object(path, {"status": {}})).status
for name in ("spin.block", "network.interface"):
    try:
        c.send(name, {})
        out["send " + name] = 0
    except ubuslink.UbusError as e:
        out["send " + name] = e.status
print(json.dumps(out))
"""


def test_ubusd_acl_lets_user_spin_own_spin_and_send_spin_events_only(router, ipks):
    installed(router, ipks["spin"])
    acl_dir = os.path.join(router, "usr", "share", "acl.d")
    # pytest's tmp_path is root's alone (0700): the socket where spin can reach it
    run = tempfile.mkdtemp(prefix="spin-priv-ubus-")
    os.chmod(run, 0o755)
    sock = os.path.join(run, "ubus.sock")
    try:
        with StandIn(sock, acl_dir=acl_dir, etc=os.path.join(router, "etc")):
            assert as_spin_on_ubus(sock, ACL_PROBE) == {
                "publish spin": 0, "publish network": 2, "send spin.block": 0, "send network.interface": 6}
        # without the package's ACL file user spin may do none of it
        os.unlink(os.path.join(acl_dir, "spin.json"))
        with StandIn(sock, acl_dir=acl_dir, etc=os.path.join(router, "etc")):
            assert as_spin_on_ubus(sock, ACL_PROBE) == {
                "publish spin": 2, "publish network": 2, "send spin.block": 6, "send network.interface": 6}
    finally:
        shutil.rmtree(run, ignore_errors=True)
