"""spin on a router, from `opkg install` to `opkg remove`.

The router is a chroot with busybox (OpenWrt's shell), the real ipk
unpacked into it, and stand-ins for rc.common and procd that follow their
documented behaviour (tests/router/). What procd would do with the
service definitions the init script sends is decided by tests/router/procd.py.
The last story removes spin's firewall state for real, with nft,
iptables and ipset inside a network namespace.
"""

import os
import shutil
import signal
import subprocess

import pytest

from tests.router import chroot
from tests.router.procd import Procd, read_log, service_messages

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HUP = int(signal.SIGHUP)

AGENT = {
    "command": ["/usr/bin/spin", "agent", "-c", "/etc/config/spin"],
    "file": ["/etc/config/spin"],
    "reload_signal": HUP,
    "respawn": ["3600", "5", "5"],
    "stdout": True,
    "stderr": True,
    "term_timeout": 10,
    # the shipped heap_size, for spin-micropython's launcher
    "env": {"SPIN_HEAP_KB": "8192"},
}
RELOAD_ON_SPIN_CONFIG = ["config.change", ["if", ["eq", "package", "spin"],
                                           ["run_script", "/etc/init.d/spin", "reload"]], 1000]


@pytest.fixture
def router(tmp_path):
    if os.geteuid() != 0:
        pytest.fail("the router is a chroot: run the tests as root")
    root = str(tmp_path / "router")
    chroot.make_root(root)
    return root


class Router:
    """The router's procd as the tests see it."""

    def __init__(self, root):
        self.root = root
        self.procd = Procd(root)
        self.seen = 0

    def init(self, verb):
        r = chroot.run(self.root, ["/etc/init.d/spin", verb])
        assert r.returncode == 0, r.stdout
        return self.sync()

    def sync(self):
        """Feed procd the messages sent since last time; return them."""
        msgs = service_messages(read_log(os.path.join(self.root, "tmp", "procd.log")))
        new = msgs[self.seen:]
        self.seen = len(msgs)
        for method, msg in new:
            self.procd.apply(method, msg)
        return new

    def config(self, old, new):
        path = os.path.join(self.root, "etc", "config", "spin")
        text = open(path).read()
        assert old in text
        with open(path, "w") as f:
            f.write(text.replace(old, new))

    def calls(self):
        return chroot.calls(self.root)


def installed(root, ipk, **kw):
    r = chroot.install(root, ipk, **kw)
    assert r.returncode == 0, r.stdout
    rt = Router(root)
    rt.sync()
    return rt


def test_opkg_install_registers_the_firewall_hook_enables_and_starts_the_agent(router, ipks):
    os.makedirs(os.path.join(router, "tmp", "luci-modulecache"))
    open(os.path.join(router, "tmp", "luci-indexcache.1a2b"), "w").close()
    rt = installed(router, ipks["spin"])

    # uci-defaults ran once and are gone; on firewall3 (no /sbin/fw4) the
    # include runs on reloads too
    assert not os.path.exists(os.path.join(router, "etc", "uci-defaults", "90-spin"))
    calls = rt.calls()
    batch = calls[calls.index("uci -q batch") + 1:]
    assert "\tset firewall.spin=include" in batch
    assert "\tset firewall.spin.type='script'" in batch
    assert "\tset firewall.spin.path='/usr/share/spin/firewall.include'" in batch
    assert "\tset firewall.spin.reload='1'" in batch
    assert "uci -q commit firewall" in calls
    # enabled at boot, started now, LuCI's caches cleared
    assert os.readlink(os.path.join(router, "etc/rc.d/S95spin")) == "../init.d/spin"
    assert os.readlink(os.path.join(router, "etc/rc.d/K10spin")) == "../init.d/spin"
    assert rt.procd.actions == [("start", "spin", "agent")]
    assert os.listdir(os.path.join(router, "tmp")).count("luci-indexcache.1a2b") == 0
    assert not os.path.exists(os.path.join(router, "tmp", "luci-modulecache"))


def test_the_sysctl_file_is_applied_at_install_as_default_postinst_does(router, ipks):
    rt = installed(router, ipks["spin"])
    calls = rt.calls()
    # nf_conntrack_acct on now, not at the next boot; before uci-defaults,
    # in default_postinst's order
    assert "sysctl restart" in calls
    assert calls.index("sysctl restart") < calls.index("uci -q batch")


def test_without_a_firewall_config_the_hook_waits_for_the_next_boot_and_says_so(router, ipks):
    os.remove(os.path.join(router, "etc", "config", "firewall"))
    r = chroot.install(router, ipks["spin"])
    assert r.returncode == 0, r.stdout
    assert "no /etc/config/firewall" in r.stdout and "next boot" in r.stdout
    assert "uci: Entry not found" not in r.stdout
    calls = chroot.calls(router)
    assert "uci -q batch" not in calls
    # kept: uci-defaults that fail run again at the next boot
    hook = os.path.join(router, "etc", "uci-defaults", "90-spin")
    assert os.path.exists(hook)
    # the next boot, with a firewall installed meanwhile
    with open(os.path.join(router, "etc", "config", "firewall"), "w") as f:
        f.write("config defaults\n")
    r = chroot.run(router, ["/bin/sh", "-c", "cd /etc/uci-defaults && ( . ./90-spin ) && rm -f 90-spin"])
    assert r.returncode == 0, r.stdout
    assert not os.path.exists(hook)
    assert "\tset firewall.spin=include" in chroot.calls(router)


def test_on_fw4_the_include_is_marked_fw4_compatible(router, ipks):
    with open(os.path.join(router, "sbin", "fw4"), "w") as f:
        f.write("#!/bin/sh\nexit 0\n")
    os.chmod(os.path.join(router, "sbin", "fw4"), 0o755)
    rt = installed(router, ipks["spin"])
    calls = rt.calls()
    assert "\tset firewall.spin.fw4_compatible='1'" in calls
    assert "\tset firewall.spin.reload='1'" not in calls


def test_procd_gets_one_agent_with_respawn_syslog_and_a_reload_trigger(router, ipks):
    rt = installed(router, ipks["spin"])
    msgs = service_messages(read_log(os.path.join(router, "tmp", "procd.log")))
    assert msgs == [("set", {
        "name": "spin",
        "script": "/etc/init.d/spin",
        "instances": {"agent": AGENT},
        "triggers": [RELOAD_ON_SPIN_CONFIG],
    })]
    assert rt.procd.actions == [("start", "spin", "agent")]


def test_save_and_apply_sends_hup_so_the_agent_keeps_its_history(router, ipks):
    """LuCI's Save & Apply changes /etc/config/spin and fires config.change
    for `spin`: procd runs `/etc/init.d/spin reload`. The definition is the
    same but the config file's checksum is not, and the instance has a
    reload_signal: procd sends HUP instead of restarting the agent."""
    rt = installed(router, ipks["spin"])
    rt.config("option scan_interval '5'", "option scan_interval '2'")
    rt.init("reload")
    assert rt.procd.actions == [("start", "spin", "agent"), ("signal", "spin", "agent", HUP)]
    # a reload with nothing changed leaves the agent alone
    rt.init("reload")
    assert rt.procd.actions[2:] == []


def test_a_changed_heap_size_applies_at_the_next_start_of_the_micropython_agent(router, ipks):
    """MicroPython takes its heap once, at start. procd answers a changed
    definition with the reload signal (instance_restart), so the running
    agent keeps its heap and its history; procd keeps the new env, and
    the next start (restart, respawn, boot) has the new heap."""
    rt = installed(router, ipks["spin-micropython"])
    assert rt.procd.actions == [("start", "spin", "agent")]
    rt.config("option heap_size '8192'", "option heap_size '12288'")
    rt.init("reload")
    assert rt.procd.actions[1:] == [("signal", "spin", "agent", HUP)]
    assert rt.procd.running[("spin", "agent")]["env"] == {"SPIN_HEAP_KB": "12288"}
    rt.init("restart")
    assert rt.procd.actions[2:] == [("stop", "spin", "agent"), ("start", "spin", "agent")]
    assert rt.procd.running[("spin", "agent")]["env"] == {"SPIN_HEAP_KB": "12288"}


def test_disabling_in_the_config_stops_the_agent_and_takes_its_rules_away(router, ipks):
    rt = installed(router, ipks["spin"])
    rt.config("option enabled '1'", "option enabled '0'")
    rt.init("reload")
    assert rt.procd.actions[1:] == [("stop", "spin", "agent")]
    assert "nft delete table inet spin" in rt.calls()
    rt.config("option enabled '0'", "option enabled '1'")
    rt.init("reload")
    assert rt.procd.actions[2:] == [("start", "spin", "agent")]


def test_stop_ends_the_agent_and_removes_spins_firewall_state(router, ipks):
    rt = installed(router, ipks["spin"])
    rt.init("stop")
    assert rt.procd.actions[1:] == [("stop", "spin", "agent")]
    calls = rt.calls()
    assert "nft delete table inet spin" in calls
    assert "nft delete table bridge spin" in calls
    for tool in ("iptables", "ip6tables"):
        for table in ("raw", "mangle", "nat", "filter"):
            assert "%s -w -t %s -S" % (tool, table) in calls
    assert "ipset list -n" in calls
    # marked before procd's TERM, so the agent restores nothing meanwhile
    # and removes what it restored as it ends (tests/test_firewall_home.py)
    run_dir = [line.split("'")[1] for line in open(os.path.join(router, "etc/config/spin"))
               if "option run_dir" in line] or ["/var/run/spin"]
    assert os.path.exists(os.path.join(router, run_dir[0].lstrip("/"), "stopping"))


def test_the_firewall_hook_pokes_the_agent_and_never_fails_the_firewall(router, ipks):
    rt = installed(router, ipks["spin"])
    # fw4 sources it from `sh -c`; UCI functions are off in there
    r = chroot.run(router, ["/bin/sh", "-c", "config() { exit 1; }; . /usr/share/spin/firewall.include"])
    assert r.returncode == 0, r.stdout
    assert rt.calls()[-2] == "ubus -t 5 call spin reapply"
    # agent not running: ubus fails, the firewall carries on
    with open(os.path.join(router, "usr", "sbin", "ubus"), "w") as f:
        f.write("#!/bin/sh\nexit 4\n")
    r = chroot.run(router, ["/bin/sh", "-c", ". /usr/share/spin/firewall.include"])
    assert r.returncode == 0


def test_upgrade_keeps_it_enabled_and_restarts_it(router, ipks):
    rt = installed(router, ipks["spin"])
    r = chroot.run(router, ["/bin/sh", "/usr/lib/opkg/info/spin.prerm", "upgrade"], {"PKG_UPGRADE": "1"})
    assert r.returncode == 0, r.stdout
    assert "uci -q delete firewall.spin" not in rt.calls()
    rt.sync()
    rt2 = chroot.install(router, ipks["spin"], upgrade=True)
    assert rt2.returncode == 0, rt2.stdout
    rt.sync()
    assert rt.procd.actions == [("start", "spin", "agent"), ("stop", "spin", "agent"),
                                ("start", "spin", "agent")]
    assert os.path.lexists(os.path.join(router, "etc/rc.d/S95spin"))


def test_opkg_remove_leaves_no_hook_no_boot_link_and_no_agent(router, ipks):
    rt = installed(router, ipks["spin"])
    r = chroot.remove(router, "spin")
    assert r.returncode == 0, r.stdout
    rt.sync()
    calls = rt.calls()
    assert "uci -q delete firewall.spin" in calls
    assert "nft delete table inet spin" in calls
    assert rt.procd.actions == [("start", "spin", "agent"), ("stop", "spin", "agent")]
    assert not os.listdir(os.path.join(router, "etc", "rc.d"))
    for path in ("etc/init.d/spin", "usr/bin/spin", "usr/lib/spin/spin_lite/agent.py",
                 "usr/share/spin/firewall.include"):
        assert not os.path.exists(os.path.join(router, path)), path


def test_luci_app_install_clears_luci_caches_and_reloads_rpcd(router, ipks):
    installed(router, ipks["spin"])
    open(os.path.join(router, "tmp", "luci-indexcache"), "w").close()
    rt = installed(router, ipks["luci-app-spin"])
    assert not os.path.exists(os.path.join(router, "tmp", "luci-indexcache"))
    assert "rpcd reload" in rt.calls()
    assert os.path.exists(os.path.join(router, "usr/share/rpcd/acl.d/luci-app-spin.json"))


# -- for real: the firewall state that stop and opkg remove take away -------

def ns(name, *argv, check=True):
    return subprocess.run(["ip", "netns", "exec", name] + list(argv), check=check,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)


def test_clean_removes_every_spin_table_chain_and_set_and_nothing_else():
    """In a namespace: spin's nft table, iptables/ip6tables chains hooked
    into FORWARD and INPUT (one jump carries a comment with spaces), and an
    ipset a rule still uses; beside them a VPN's chain and set and fw4's
    table. `/etc/init.d/spin clean` (what stop and opkg remove run) leaves
    only the others."""
    if os.geteuid() != 0:
        pytest.fail("needs root for a network namespace")
    name = "spin-pkg-%d" % os.getpid()
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        ns(name, "nft", "add table inet spin")
        ns(name, "nft", "add chain inet spin forward { type filter hook forward priority -10 ; }")
        ns(name, "nft", "add table inet fw4")
        ns(name, "ipset", "create", "spin_blocked4", "hash:ip")
        ns(name, "ipset", "create", "vpn_hosts", "hash:ip")
        for ipt in ("iptables", "ip6tables"):
            ns(name, ipt, "-w", "-N", "spin_forward")
            ns(name, ipt, "-w", "-N", "spin_input")
            ns(name, ipt, "-w", "-A", "spin_forward", "-j", "DROP")
            ns(name, ipt, "-w", "-I", "FORWARD", "-m", "comment", "--comment", "spin: hook 'forward'",
               "-j", "spin_forward")
            ns(name, ipt, "-w", "-I", "INPUT", "-j", "spin_input")
            ns(name, ipt, "-w", "-N", "vpn_forward")
            ns(name, ipt, "-w", "-A", "FORWARD", "-j", "vpn_forward")
        ns(name, "iptables", "-w", "-A", "spin_forward", "-m", "set", "--match-set", "spin_blocked4",
           "src", "-j", "DROP")
        ns(name, "iptables", "-w", "-t", "mangle", "-N", "spin_mark")
        ns(name, "iptables", "-w", "-t", "mangle", "-A", "PREROUTING", "-j", "spin_mark")

        env = dict(os.environ, IPKG_INSTROOT=os.path.join(TOP, "tests", "router", "root"))
        r = subprocess.run(["ip", "netns", "exec", name, "busybox", "sh",
                            os.path.join(env["IPKG_INSTROOT"], "etc", "rc.common"),
                            os.path.join(TOP, "files", "etc", "init.d", "spin"), "clean"],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
        assert r.returncode == 0, r.stdout

        tables = ns(name, "nft", "list", "tables").stdout
        assert "inet fw4" in tables and "spin" not in tables, tables
        sets = ns(name, "ipset", "list", "-n").stdout.split()
        assert sets == ["vpn_hosts"]
        for ipt in ("iptables", "ip6tables"):
            for table in ("filter", "mangle"):
                rules = ns(name, ipt, "-w", "-t", table, "-S").stdout
                assert "spin" not in rules, (ipt, table, rules)
            assert "-A FORWARD -j vpn_forward" in ns(name, ipt, "-w", "-S").stdout
    finally:
        subprocess.run(["ip", "netns", "del", name])


# -- the packaged agent itself, on the Python of GL.iNet 4.x -----------------

LAPTOP_FLOW = ("ipv4     2 tcp      6 431999 ESTABLISHED src=192.168.1.10 dst=203.0.113.5 sport=40000 "
               "dport=443 packets=10 bytes=1000 src=203.0.113.5 dst=192.168.1.10 sport=443 dport=40000 "
               "packets=12 bytes=9000 [ASSURED] mark=0 zone=0 use=2\n")
ARP = ("IP address       HW type     Flags       HW address            Mask     Device\n"
       "192.168.1.10     0x1         0x2         02:00:00:00:00:0a     *        br-lan\n")
TEST_CONFIG = """config spin 'main'
	option scan_interval '1'
	list lan_net '192.168.1.0/24'
	option conntrack_file '/snapshot/nf_conntrack'
	option arp_file '/snapshot/arp'
	option firewall 'none'
	option dns_snoop '0'
	option ubus_socket ''
	option www_dir ''
"""


def with_python39(root):
    """Debian bullseye's Python 3.9 (tests/cross/run.py makes it) under
    /py39 in the router, and /usr/bin/python3 running it with its own C
    library, as the launcher expects to find python3."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("cross_run", os.path.join(TOP, "tests", "cross", "run.py"))
    cross = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cross)
    sysroot, _ = cross.sysroot("py39")
    subprocess.run(["cp", "-a", sysroot, os.path.join(root, "py39")], check=True)
    with open(os.path.join(root, "usr", "bin", "python3"), "w") as f:
        f.write("#!/bin/sh\nexport PYTHONHOME=\"${PYTHONHOME:-/py39/usr}\"\n"
                "exec /py39/lib64/ld-linux-x86-64.so.2 --library-path "
                "/py39/lib/x86_64-linux-gnu:/py39/usr/lib/x86_64-linux-gnu /py39/usr/bin/python3.9 \"$@\"\n")
    os.chmod(os.path.join(root, "usr", "bin", "python3"), 0o755)


def spin_call(root, *args):
    import json
    r = chroot.run(root, ["/usr/bin/spin", "call", "-c", "/etc/config/spin.test"] + list(args),
                   {"PYTHONHOME": "/py39/usr"})
    assert r.returncode == 0, r.stdout
    return json.loads(r.stdout)


def seen(history):
    """(bytes out, bytes in) over the open bucket and the closed ones, so a
    minute turning over between two calls changes nothing."""
    buckets = [history["current"]] + [p for p in history["points"] if p]
    return (sum(b.get("bytes_out", 0) for b in buckets), sum(b.get("bytes_in", 0) for b in buckets))


def test_the_packaged_agent_runs_on_python_3_9_and_a_hup_keeps_its_history(router, ipks):
    """The launcher, the .py files and the CLI exactly as the ipk installs
    them, on Python 3.9: the agent sees the laptop's connection, keeps it
    through the HUP procd sends on Save & Apply, and stops on TERM."""
    import time
    installed(router, ipks["spin"])
    with_python39(router)
    # OpenWrt's package CI runs package/spin/test.sh on the target after install
    subprocess.run(["cp", os.path.join(TOP, "package", "spin", "test.sh"), os.path.join(router, "tmp")], check=True)
    version = [f for f in os.listdir(os.path.dirname(ipks["spin"])) if f.startswith("spin_")][0].split("_")[1]
    for asked, rc in ((version, 0), ("9.9.9-1", 1)):
        r = chroot.run(router, ["/bin/sh", "/tmp/test.sh", "spin", asked], {"PYTHONHOME": "/py39/usr"})
        assert r.returncode == rc, r.stdout
    os.makedirs(os.path.join(router, "snapshot"))
    with open(os.path.join(router, "snapshot", "nf_conntrack"), "w") as f:
        f.write(LAPTOP_FLOW)
    with open(os.path.join(router, "snapshot", "arp"), "w") as f:
        f.write(ARP)
    with open(os.path.join(router, "etc", "config", "spin.test"), "w") as f:
        f.write(TEST_CONFIG)
    log = open(os.path.join(router, "tmp", "agent.log"), "w")
    agent = subprocess.Popen(["chroot", router, "/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                              "PYTHONHOME=/py39/usr", "/usr/bin/spin", "agent", "-c", "/etc/config/spin.test"],
                             stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(router, "var", "run", "spin", "rpc.sock")):
            assert agent.poll() is None, open(log.name).read()
            assert time.monotonic() < deadline, open(log.name).read()
            time.sleep(0.2)
        # the launcher exec'd Python: procd's signals reach the agent itself
        cmdline = open("/proc/%d/cmdline" % agent.pid, "rb").read().split(b"\0")
        assert b"/py39/usr/bin/python3.9" in cmdline and b"-u" in cmdline and b"spin_lite" in cmdline
        while spin_call(router, "status")["devices"] < 1:
            assert time.monotonic() < deadline, open(log.name).read()
            time.sleep(0.2)
        before = seen(spin_call(router, "history", '{"mac": "02:00:00:00:00:0a", "minutes": 5}'))
        assert before == (1000, 9000)
        uptime = spin_call(router, "status")["uptime"]

        agent.send_signal(signal.SIGHUP)
        while "reloaded" not in open(log.name).read():
            assert agent.poll() is None, open(log.name).read()
            assert time.monotonic() < deadline, open(log.name).read()
            time.sleep(0.2)
        after = seen(spin_call(router, "history", '{"mac": "02:00:00:00:00:0a", "minutes": 5}'))
        assert after == before
        assert spin_call(router, "status")["uptime"] >= uptime
        assert open(log.name).read().count("configuration reloaded") == 1

        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=30) == 0, open(log.name).read()
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        log.close()


# -- the packaged agent on MicroPython (spin-micropython) ---------------------

def with_micropython(root):
    """A standalone MicroPython Unix port with ffi (like OpenWrt's package)
    as /usr/bin/micropython in the router, with the libraries it links.
    The PyPI port runs inside CPython and cannot be copied into a root."""
    mpy = os.environ.get("SPIN_MPY_FFI") or shutil.which("micropython")
    if mpy is None or open(mpy, "rb").read(4) != b"\x7fELF":
        pytest.skip("no standalone micropython binary (the PyPI port is a CPython extension): "
                    "set SPIN_MPY_FFI to one built from MicroPython's sources (README)")
    if subprocess.run([mpy, "-c", "import ffi"], stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL).returncode:
        pytest.skip("%s has no ffi, which OpenWrt's micropython has" % mpy)
    shutil.copy2(mpy, os.path.join(root, "usr", "bin", "micropython"))
    for line in chroot.sh("ldd", mpy).splitlines():
        words = line.split()
        lib = words[2] if "=>" in words and len(words) > 2 else words[0]
        if lib.startswith("/"):
            dest = os.path.join(root, lib.lstrip("/"))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copy2(os.path.realpath(lib), dest)


def mpy_call(root, *args):
    import json
    r = chroot.run(root, ["/usr/bin/spin", "call", "-c", "/etc/config/spin.test"] + list(args))
    assert r.returncode == 0, r.stdout
    return json.loads(r.stdout)


def test_spin_micropython_runs_the_agent_on_micropython_with_the_uci_heap(router, ipks):
    """The variant's files exactly as its ipk installs them, on a router
    without python3: the init script's instance starts the launcher,
    which execs micropython on /usr/lib/spin with the heap from UCI; the
    agent sees the laptop's connection, keeps it through HUP and stops
    on TERM."""
    import time
    rt = installed(router, ipks["spin-micropython"])
    assert not os.path.exists(os.path.join(router, "usr", "bin", "python3"))
    with_micropython(router)
    subprocess.run(["cp", os.path.join(TOP, "package", "spin", "test.sh"), os.path.join(router, "tmp")], check=True)
    version = [f for f in os.listdir(os.path.dirname(ipks["spin"])) if f.startswith("spin_")][0].split("_")[1]
    for asked, rc in ((version, 0), ("9.9.9-1", 1)):
        r = chroot.run(router, ["/bin/sh", "/tmp/test.sh", "spin-micropython", asked])
        assert r.returncode == rc, r.stdout
    instance = rt.procd.running[("spin", "agent")]
    assert instance["command"] == AGENT["command"]
    assert instance["env"] == {"SPIN_HEAP_KB": "8192"}

    os.makedirs(os.path.join(router, "snapshot"))
    with open(os.path.join(router, "snapshot", "nf_conntrack"), "w") as f:
        f.write(LAPTOP_FLOW)
    with open(os.path.join(router, "snapshot", "arp"), "w") as f:
        f.write(ARP)
    with open(os.path.join(router, "etc", "config", "spin.test"), "w") as f:
        f.write(TEST_CONFIG)
    log = open(os.path.join(router, "tmp", "agent.log"), "w")
    # what procd runs: the instance's command with the instance's env
    env = ["%s=%s" % kv for kv in sorted(instance["env"].items())]
    agent = subprocess.Popen(["chroot", router, "/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"]
                             + env + ["/usr/bin/spin", "agent", "-c", "/etc/config/spin.test"],
                             stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(router, "var", "run", "spin", "rpc.sock")):
            assert agent.poll() is None, open(log.name).read()
            assert time.monotonic() < deadline, open(log.name).read()
            time.sleep(0.2)
        # the launcher exec'd MicroPython: procd's signals reach the agent itself
        cmdline = open("/proc/%d/cmdline" % agent.pid, "rb").read().split(b"\0")
        assert cmdline[:5] == [b"/usr/bin/micropython", b"-X", b"heapsize=8192K", b"-m", b"spin_lite"], cmdline
        environ = open("/proc/%d/environ" % agent.pid, "rb").read().split(b"\0")
        assert b"MICROPYPATH=/usr/lib/spin:.frozen:/usr/lib/micropython" in environ
        while mpy_call(router, "status")["devices"] < 1:
            assert time.monotonic() < deadline, open(log.name).read()
            time.sleep(0.2)
        before = seen(mpy_call(router, "history", '{"mac": "02:00:00:00:00:0a", "minutes": 5}'))
        assert before == (1000, 9000)

        agent.send_signal(signal.SIGHUP)
        while "reloaded" not in open(log.name).read():
            assert agent.poll() is None, open(log.name).read()
            assert time.monotonic() < deadline, open(log.name).read()
            time.sleep(0.2)
        assert seen(mpy_call(router, "history", '{"mac": "02:00:00:00:00:0a", "minutes": 5}')) == before

        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=30) == 0, open(log.name).read()
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        log.close()


def test_the_micropython_launcher_refuses_a_heap_that_is_not_a_number(router, ipks):
    installed(router, ipks["spin-micropython"])
    r = chroot.run(router, ["/usr/bin/spin", "call", "status"], {"SPIN_HEAP_KB": "8M"})
    assert r.returncode == 2
    assert "SPIN_HEAP_KB is a number of KB, not '8M'" in r.stdout
