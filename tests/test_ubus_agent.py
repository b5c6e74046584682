"""The agent on ubus: a home router's owner, LuCI and the `ubus` CLI reach
spin-lite through object `spin`.

ubusd itself is the stand-in of tests/world/ubusd.py (written from the
recorded protocol; OpenWrt's ubusd does not run here). The agent runs as it
would on the router, as a child process, but reads its home from small
files: a camera and a laptop in the ARP table and DHCP leases, and a few
connections in a conntrack snapshot.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from spin_lite import api, jsonrpc, ubus, ubuslink

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CAMERA = "02:00:00:00:00:0a"
LAPTOP = "02:00:00:00:00:0b"
THERMOSTAT = "02:00:00:00:00:0c"

ARP_HEAD = "IP address       HW type     Flags       HW address            Mask     Device\n"


def arp_line(ip, mac):
    return "%-16s 0x1         0x2         %s     *        br-test\n" % (ip, mac)


CONNTRACK = "".join(
    "ipv4     2 tcp      6 431999 ESTABLISHED src=%s dst=%s sport=%d dport=443 packets=10 bytes=%d "
    "src=%s dst=198.51.100.2 sport=443 dport=%d packets=8 bytes=9000 [ASSURED] mark=0 zone=0 use=2\n"
    % (src, dst, port, 1500 + port, dst, port)
    for src, dst, port in [("192.168.8.10", "203.0.113.7", 40000), ("192.168.8.10", "203.0.113.8", 40001),
                           ("192.168.8.11", "198.51.100.20", 50000)])


class Home:
    """A temp directory with the files the agent reads, and the agent.
    As a context manager: the agent started and its object spin on ubus,
    then stopped again (also when it never got there)."""

    def __init__(self, base, ubus_socket, rpc=True, scan=3600, bucket=60):
        self.base = base
        os.makedirs(base, exist_ok=True)
        self.ubus_socket = ubus_socket
        self.rpc_socket = os.path.join(base, "rpc.sock") if rpc else ""
        self.config = os.path.join(base, "spin")
        self.write("arp", ARP_HEAD + arp_line("192.168.8.10", CAMERA) + arp_line("192.168.8.11", LAPTOP))
        self.write("leases", "9999999999 %s 192.168.8.10 camera *\n9999999999 %s 192.168.8.11 laptop *\n"
                   % (CAMERA, LAPTOP))
        self.write("conntrack", CONNTRACK)
        self.write("dhcp", "")
        lines = ["config spin 'main'",
                 "\toption scan_interval '%d'" % scan,
                 "\toption bucket_seconds '%d'" % bucket,
                 "\toption lan_ifname 'br-test'",
                 "\tlist lan_net '192.168.8.0/24'",
                 "\toption firewall 'none'",
                 "\toption rpc_socket '%s'" % self.rpc_socket,
                 "\toption ubus_socket '%s'" % ubus_socket]
        for key, name in (("conntrack_file", "conntrack"), ("arp_file", "arp"), ("leases_file", "leases"),
                          ("dhcp_config", "dhcp"), ("state_dir", "state"), ("run_dir", "run")):
            lines.append("\toption %s '%s'" % (key, os.path.join(base, name)))
        self.write("spin", "\n".join(lines) + "\n")
        self.proc = None

    def write(self, name, text):
        with open(os.path.join(self.base, name), "w") as f:
            f.write(text)

    def start(self):
        env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))
        self.log = open(os.path.join(self.base, "agent.log"), "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "spin_lite", "agent", "-c", self.config],
                                     cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        return self

    def stop(self):
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
            self.log.close()

    def __enter__(self):
        self.start()
        try:
            wait_for("object spin on ubus", lambda: spin_on_ubus(self.ubus_socket), home=self)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    def agent_log(self):
        with open(os.path.join(self.base, "agent.log"), "rb") as f:
            return f.read().decode("utf-8", "replace")


def wait_for(what, fn, seconds=15, home=None):
    """Poll fn until it returns something true; the limit only keeps a broken
    agent from hanging the run (no timing is asserted). On giving up, the
    agent's log says why."""
    end = time.monotonic() + seconds
    while True:
        try:
            got = fn()
        except (OSError, ubuslink.UbusError, jsonrpc.RemoteError):
            got = None
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError("gave up waiting for %s%s" % (what, "; agent log:\n" + home.agent_log() if home else ""))
        time.sleep(0.05)


def spin_on_ubus(path):
    with ubuslink.Client(path) as c:
        return [o for o in c.lookup("spin") if o["path"] == "spin"]


@pytest.fixture
def agent(tmp_path, ubusd):
    with Home(str(tmp_path / "home"), ubusd.path, scan=1, bucket=2) as home:
        yield home


def test_the_agent_registers_spin_and_ubus_list_shows_real_argument_types(agent, ubusd):
    found = spin_on_ubus(ubusd.path)
    sig = found[0]["signature"]
    assert set(sig) == set(api.METHODS)
    assert sig["device"] == {"mac": ubus.BSTRING}
    assert sig["devices"] == {"limit": ubus.INT32, "offset": ubus.INT32}
    assert sig["history"] == {"mac": ubus.BSTRING, "minutes": ubus.INT32}
    for method, (schema, _, _) in api.METHODS.items():
        assert sig[method] == {a: api.BLOBMSG_TYPES[spec[0]] for a, spec in schema.items()}, method


def test_the_owner_lists_devices_pages_them_and_meets_clear_errors(agent, ubusd):
    path = ubusd.path
    devices = ubuslink.call(path, "devices", {})
    assert sorted(d["name"] for d in devices["devices"]) == ["camera", "laptop"]
    first = ubuslink.call(path, "devices", {"limit": 1})
    assert len(first["devices"]) == 1 and first["remaining"] == 1 and first["total"] == 2
    second = ubuslink.call(path, "devices", {"limit": 1, "offset": 1})
    assert second["remaining"] == 0 and second["devices"][0]["mac"] != first["devices"][0]["mac"]
    # what uhttpd adds to every call from LuCI is accepted and ignored
    cam = ubuslink.call(path, "device", {"mac": CAMERA, "ubus_rpc_session": "0123456789abcdef" * 2})
    assert cam["name"] == "camera" and "192.168.8.10" in cam["ips"]
    cases = [("device", {"mac": "02:00:00"}, 2, "mac"),
             ("device", {}, 2, "missing"),
             ("devices", {"colour": "red"}, 2, "colour"),
             ("devices", {"limit": 100000}, 2, "limit"),
             ("device", {"mac": "02:00:00:00:00:99"}, 4, "02:00:00:00:00:99"),
             ("nosuch", {}, 3, "nosuch")]
    for method, args, status, word in cases:
        with pytest.raises(ubuslink.UbusError) as e:
            ubuslink.call(path, method, args)
        assert e.value.status == status, (method, args)
        assert word in e.value.message, e.value.message
    assert ubuslink.call(path, "status", {})["devices"] == 2   # and it keeps serving


def test_events_reach_a_listener(agent, ubusd):
    with ubuslink.Client(ubusd.path) as listener:
        listener.listen("spin.*")
        # a thermostat joins the network
        agent.write("arp", ARP_HEAD + arp_line("192.168.8.10", CAMERA) + arp_line("192.168.8.11", LAPTOP)
                    + arp_line("192.168.8.12", THERMOSTAT))
        seen = {}
        end = time.monotonic() + 20
        while ("spin.device" not in seen or "spin.digest" not in seen) and time.monotonic() < end:
            ev = listener.next_event(timeout=1)
            if ev is not None:
                seen.setdefault(ev[0], []).append(ev[1])
    assert [d["mac"] for d in seen.get("spin.device", [])] == [THERMOSTAT], seen.keys()
    digest = seen["spin.digest"][0]
    assert digest["bucket_seconds"] == 2
    assert set(d["mac"] for d in digest["devices"]) <= {CAMERA, LAPTOP, THERMOSTAT}


def test_ubusd_restarts_and_the_agent_is_back(agent, ubusd):
    before = spin_on_ubus(ubusd.path)[0]["id"]
    ubusd.restart()
    again = wait_for("spin registered again after the restart", lambda: spin_on_ubus(ubusd.path), home=agent)
    assert again[0]["id"] != before         # a new ubusd hands out new ids
    assert ubuslink.call(ubusd.path, "device", {"mac": CAMERA})["name"] == "camera"
    assert "registered" in agent.agent_log().split("ubusd closed the connection")[-1]


def test_stopping_the_agent_removes_its_object(agent, ubusd, tmp_path):
    agent.stop()

    def removed():
        # the agent exits right after sending it; the stand-in logs it when
        # it gets to read it (a real ubusd drops a closed client's objects
        # anyway: the log line is what tells the two apart)
        with open(str(tmp_path / "ubusd.log")) as f:
            return " REMOVE_OBJECT " in f.read()

    wait_for("ubusd to log the agent's REMOVE_OBJECT", removed)
    assert spin_on_ubus(ubusd.path) == []


def test_spin_call_talks_ubus_when_ubusd_is_there(tmp_path, ubusd):
    with Home(str(tmp_path / "home"), ubusd.path, rpc=False) as home:   # no JSON-RPC at all
        env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))
        ok = subprocess.run([sys.executable, "-m", "spin_lite", "call", "-c", home.config, "device",
                             '{"mac": "%s"}' % CAMERA], cwd=ROOT, env=env, capture_output=True, text=True)
        assert ok.returncode == 0, ok.stderr
        assert '"camera"' in ok.stdout
        bad = subprocess.run([sys.executable, "-m", "spin_lite", "call", "-c", home.config, "device",
                              '{"mac": "nonsense"}'], cwd=ROOT, env=env, capture_output=True, text=True)
        assert bad.returncode != 0 and "not a MAC address" in bad.stderr


def test_while_ubusd_is_away_the_agent_says_so_and_keeps_serving_json_rpc(agent, ubusd):
    ubusd.stop()
    down = wait_for("status to report ubus down",
                    lambda: jsonrpc.call(agent.rpc_socket, "status", {})["errors"].get("ubus"), home=agent)
    assert "ubusd" in down
    assert jsonrpc.call(agent.rpc_socket, "device", {"mac": CAMERA})["name"] == "camera"
    ubusd.start()
    wait_for("spin back on ubus", lambda: spin_on_ubus(ubusd.path), home=agent)
    wait_for("status to clear the ubus error",
             lambda: "ubus" not in jsonrpc.call(agent.rpc_socket, "status", {})["errors"], home=agent)
    assert ubuslink.call(ubusd.path, "device", {"mac": CAMERA})["name"] == "camera"
