"""The agent's poll loop outlives a reader that fails: a malformed request
or packet costs one log line, never the agent (and with it the firewall's
self-check and the monitoring)."""

import socket

from spin_lite import agent


def test_a_reader_that_raises_is_logged_and_the_loop_goes_on(capsys):
    loop = agent.Loop()
    a, b = socket.socketpair()
    fired = []

    def broken():
        a.recv(16)
        raise LookupError("unknown encoding: latin-1")

    loop.add_reader(a, broken)
    loop.call_later(0, lambda: fired.append(1))
    b.send(b"x")
    loop.run_once(max_wait_ms=1000)
    assert fired == [1]
    assert "reader failed: LookupError" in capsys.readouterr().err
    a.close()
    b.close()
