"""procd logs the agent's stdout as daemon.info and its stderr as
daemon.err (stdout 1 / stderr 1 in the init script): news goes to the
one, faults to the other, so `logread -l err` shows only what is wrong."""

import signal
import subprocess
import sys

from spin_lite import jsonrpc
from tests.test_agent_micropython import wait_for, write_home


def test_news_goes_to_stdout_and_faults_to_stderr(tmp_path):
    write_home(tmp_path)
    conf = tmp_path / "spin"
    # a typo in the configuration: a warning the owner must see as an error
    conf.write_text(conf.read_text() + "\toption scan_intervall '3'\n")
    out_path, err_path = tmp_path / "stdout", tmp_path / "stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        p = subprocess.Popen([sys.executable, "-u", str(tmp_path / "run.py")], stdout=out, stderr=err)
    sock = str(tmp_path / "run" / "spin.sock")
    try:
        wait_for(lambda: jsonrpc.call(sock, "status", {}), 60, "the agent to answer")
        p.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in out_path.read_text(), 30, "the reload")
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 0
    finally:
        if p.poll() is None:
            p.kill()
    news, faults = out_path.read_text(), err_path.read_text()
    for line in ("running", "configuration reloaded", "agent stopped"):
        assert line in news and line not in faults, (news, faults)
    # the typo is reported at start and again at the reload, on stderr only
    assert faults.count("scan_intervall") == 2, faults
    assert "scan_intervall" not in news
