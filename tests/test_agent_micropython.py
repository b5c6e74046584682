"""The agent itself on MicroPython's Unix port (the PyPI build: no `ffi`,
no `signal`, no os.getpid/umask/chmod), the way a router without python3
would run it: it reads a conntrack table the kernel wrote, attributes the
camera's flows to the camera, and serves JSON-RPC on a unix socket that
only root can reach, although this interpreter cannot set a umask.

What needs `ffi` (libc's umask, getpid, chmod; later fork/exec and a
signalfd) is checked where a MicroPython with `ffi` is installed, and
skipped, saying so, where it is not (CI has only the PyPI port)."""

import os
import shutil
import stat
import subprocess
import time

import pytest

from spin_lite import jsonrpc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPY = shutil.which("micropython")
CAMERA_IP, CAMERA_MAC = "192.168.8.184", "02:00:00:00:00:01"

pytestmark = pytest.mark.skipif(MPY is None, reason="no micropython command (tools/deps.sh installs it)")


# a MicroPython with ffi (OpenWrt's build has it; the PyPI port does not):
# SPIN_MPY_FFI names one built from MicroPython's own sources (README)
FFI_MPY = os.environ.get("SPIN_MPY_FFI") or MPY


def has_ffi():
    if FFI_MPY is None:
        return False
    p = subprocess.run([FFI_MPY, "-c", "import ffi"], capture_output=True, timeout=30)
    return p.returncode == 0


def need_ffi():
    if not has_ffi():
        pytest.skip("no micropython with ffi here (the PyPI port has none; OpenWrt's build has it): "
                    "set SPIN_MPY_FFI to one built from MicroPython's sources")


def write_home(tmp):
    shutil.copy(os.path.join(ROOT, "tests/data/conntrack-acct.txt"), tmp / "nf_conntrack")
    (tmp / "arp").write_text(
        "IP address       HW type     Flags       HW address            Mask     Device\n"
        "%s    0x1         0x2         %s     *        br-lan\n" % (CAMERA_IP, CAMERA_MAC))
    (tmp / "spin").write_text("\n".join([
        "config spin 'main'",
        "\toption conntrack_file '%s/nf_conntrack'" % tmp,
        "\toption arp_file '%s/arp'" % tmp,
        "\toption leases_file '%s/leases'" % tmp,
        "\toption dhcp_config '%s/dhcp'" % tmp,
        "\toption lan_net '192.168.8.0/24'",
        "\toption state_dir '%s/state'" % tmp,
        "\toption run_dir '%s/run'" % tmp,
        "\toption rpc_socket '%s/run/spin.sock'" % tmp,
        "\toption ubus_socket '%s/no-ubusd.sock'" % tmp,
        "\toption firewall 'none'",
        "\toption dns_snoop '0'",
        "\toption scan_interval '1'", ""]))
    (tmp / "run.py").write_text(
        "import sys\nsys.path.insert(0, %r)\nfrom spin_lite import agent\nagent.main(%r)\n"
        % (os.path.join(ROOT, "src"), str(tmp / "spin")))


def wait_for(fn, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        try:
            v = fn()
            if v:
                return v
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("waited %ss for %s" % (timeout, what))
        time.sleep(0.1)


@pytest.fixture
def mpy_agent(tmp_path):
    write_home(tmp_path)
    log = open(tmp_path / "agent.log", "wb")
    p = subprocess.Popen([MPY, "-X", "heapsize=8M", str(tmp_path / "run.py")],
                         stdout=log, stderr=subprocess.STDOUT)
    sock = str(tmp_path / "run" / "spin.sock")
    try:
        wait_for(lambda: jsonrpc.call(sock, "status", {}), 60, "the MicroPython agent to answer")
        yield p, tmp_path, sock
    finally:
        # no signal module here: SIGTERM takes the default action
        p.kill()
        p.wait(timeout=30)
        log.close()


def test_the_micropython_agent_counts_the_camera_and_answers_on_a_root_only_socket(mpy_agent):
    p, tmp, sock = mpy_agent
    status = jsonrpc.call(sock, "status", {})
    assert status["flows"] > 100, status
    assert status["errors"] == {}, (status["errors"], (tmp / "agent.log").read_text())
    camera = wait_for(lambda: jsonrpc.call(sock, "device", {"mac": CAMERA_MAC})["connections"],
                      30, "the camera's flows")
    assert camera > 0
    # this interpreter has no umask: the socket's directory is closed instead
    assert stat.S_IMODE(os.stat(tmp / "run").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    assert p.poll() is None


def test_without_a_umask_a_socket_outside_run_dir_is_refused_with_advice(tmp_path):
    write_home(tmp_path)
    conf = tmp_path / "spin"
    conf.write_text(conf.read_text().replace("run/spin.sock", "elsewhere/spin.sock"))
    log = tmp_path / "agent.log"
    with open(log, "wb") as out:
        p = subprocess.Popen([MPY, "-X", "heapsize=8M", str(tmp_path / "run.py")],
                             stdout=out, stderr=subprocess.STDOUT)
    try:
        said = wait_for(lambda: "rpc_socket" in log.read_text() and log.read_text(), 60, "the refusal")
        assert "put the socket in run_dir" in said, said
        assert not os.path.exists(tmp_path / "elsewhere" / "spin.sock")
        assert p.poll() is None  # the agent goes on monitoring
    finally:
        p.kill()
        p.wait(timeout=30)


def test_plat_gives_the_pid_and_a_gc_threshold_without_ffi(tmp_path):
    script = tmp_path / "p.py"
    script.write_text(
        "import sys\nsys.path.insert(0, %r)\nfrom spin_lite import plat\n"
        "print(plat.pid(), plat.tune_gc(), plat.umask(0o22))\n" % os.path.join(ROOT, "src"))
    p = subprocess.Popen([MPY, "-X", "heapsize=4M", str(script)], stdout=subprocess.PIPE)
    out = p.communicate(timeout=30)[0].split()
    assert int(out[0]) == p.pid
    # a sixteenth of the heap (gc's own bookkeeping takes a little of the 4 MB)
    assert 0.95 * (4 << 20) // 16 <= int(out[1]) <= (4 << 20) // 16
    if not subprocess.run([MPY, "-c", "import ffi"], capture_output=True).returncode == 0:
        assert out[2] == b"None"  # the caller must protect its files another way


def test_a_quiet_child_prints_megabytes_that_a_one_mb_heap_never_holds(tmp_path):
    # `conntrack -D` lists every entry it deletes: a flooding device's
    # quarantine printed a MB into the agent's heap and failed there
    script = tmp_path / "q.py"
    script.write_text(
        "import sys\nsys.path.insert(0, %r)\nfrom spin_lite import plat\n"
        "print(repr(plat.run(['sh', '-c', 'head -c 3000000 /dev/zero; echo gone >&2'], quiet=True)))\n"
        "print(repr(plat.run(['sh', '-c', 'echo said; exit 4'])))\n" % os.path.join(ROOT, "src"))
    p = subprocess.run([MPY, "-X", "heapsize=1M", str(script)], capture_output=True, text=True, timeout=60)
    assert p.stdout.splitlines() == [repr((0, b"", b"gone\n")), repr((4, b"said\n", b""))], p.stderr


def test_with_ffi_libc_gives_umask_and_pid():
    need_ffi()
    p = subprocess.run([FFI_MPY, "-c", "import sys; sys.path.insert(0, %r)\nfrom spin_lite import plat\n"
                        "old = plat.umask(0o177); print(old, plat.umask(old))" % os.path.join(ROOT, "src")],
                       capture_output=True, text=True, timeout=30)
    assert int(p.stdout.split()[1]) == 0o177


def test_with_ffi_a_child_gets_its_argv_untouched_its_stdin_and_its_exit_code(tmp_path):
    need_ffi()
    script = tmp_path / "r.py"
    script.write_text(
        "import sys\nsys.path.insert(0, %r)\nfrom spin_lite import plat\n"
        "print(repr(plat.run(['sh', '-c', 'cat; printf %%s \"$1\" >&2; exit 3', 'sh', \"a'b; touch %s\"], b'in')))\n"
        "print(repr(plat.run(['/nonexistent/nft'])[0]))\n"
        "print(repr(plat.run(['sleep', '5'], timeout=1)[0]))\n"
        "print(repr(plat.run(['sh', '-c', 'head -c 3000000 /dev/zero; echo gone >&2'], quiet=True)))\n"
        % (os.path.join(ROOT, "src"), tmp_path / "pwned"))
    out = subprocess.run([FFI_MPY, str(script)], capture_output=True, text=True, timeout=60).stdout.split("\n")
    assert out[0] == repr((3, b"in", ("a'b; touch %s" % (tmp_path / "pwned")).encode())), out
    assert not (tmp_path / "pwned").exists()  # no shell ever saw the argument
    assert out[1] == "127" and out[2] == "124", out
    assert out[3] == repr((0, b"", b"gone\n")), out  # quiet: 3 MB of stdout never in the heap


def test_with_ffi_hup_reloads_and_term_stops_cleanly(tmp_path):
    need_ffi()
    write_home(tmp_path)
    log = tmp_path / "agent.log"
    with open(log, "wb") as out:
        p = subprocess.Popen([FFI_MPY, "-X", "heapsize=8M", str(tmp_path / "run.py")],
                             stdout=out, stderr=subprocess.STDOUT)
    sock = str(tmp_path / "run" / "spin.sock")
    try:
        wait_for(lambda: jsonrpc.call(sock, "status", {}), 60, "the agent to answer")
        p.send_signal(1)
        wait_for(lambda: "configuration reloaded" in log.read_text(), 30, "the reload")
        p.terminate()
        assert p.wait(timeout=30) == 0
        assert "agent stopped" in log.read_text()
        assert not os.path.exists(sock)  # the stop ran: the socket is gone
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=30)
