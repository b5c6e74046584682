"""A TCP port on the host that leads to the agent in the router namespace.

The agent runs inside the router namespace and listens on a unix socket
in the home's directory. Unix sockets are named in the filesystem, not in
a network namespace, so a process on the host can connect to it; a
browser cannot, so this forwards 127.0.0.1:PORT to that socket, one
thread per connection (a test or a demo has a handful).

An agent that listens on TCP inside the namespace (rpc_listen on the LAN
address, with a token) is reached the same way through a small relay
started in that namespace for each connection (`forward_into`).

    python3 -m tests.world.webproxy /tmp/spin-home-.../rpc.sock [PORT]
"""

import os
import socket
import subprocess
import sys
import threading

# runs inside the namespace: stdin -> the TCP peer -> stdout
RELAY = """
import os, socket, sys, threading
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.settimeout(None)
def up():
    while True:
        d = os.read(0, 65536)
        if not d:
            break
        s.sendall(d)
    s.shutdown(socket.SHUT_WR)
threading.Thread(target=up, daemon=True).start()
while True:
    d = s.recv(65536)
    if not d:
        break
    os.write(1, d)
"""


class Relay:
    """A process in a namespace, connected to host:port there, that looks
    enough like a socket for _pipe (recv, sendall, shutdown, close)."""

    def __init__(self, ns, host, port):
        self.p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", RELAY, host, str(port)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def recv(self, n):
        return os.read(self.p.stdout.fileno(), n)

    def sendall(self, data):
        self.p.stdin.write(data)
        self.p.stdin.flush()

    def shutdown(self, how):
        try:
            self.p.stdin.close()
        except OSError:
            pass

    def close(self):
        self.shutdown(None)
        try:
            self.p.wait(5)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


def _pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Forwarder:
    """forward(127.0.0.1:port -> unix path); port 0 picks a free one."""

    def __init__(self, path, port=0, host="127.0.0.1", into=None):
        self.path = path
        self.into = into   # (namespace, host, port): a TCP listener there instead
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(64)
        self.host, self.port = self.sock.getsockname()[:2]
        self.closed = False
        self.thread = threading.Thread(target=self._serve, name="webproxy", daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "http://%s:%d" % (self.host, self.port)

    def _serve(self):
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                break
            threading.Thread(target=self._one, args=(client,), daemon=True).start()

    def _one(self, client):
        if self.into is not None:
            upstream = Relay(*self.into)
            t = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
            t.start()
            _pipe(client, upstream)
            t.join(30)
            client.close()
            upstream.close()
            return
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(self.path)
        except OSError:
            body = b"the spin agent is not running (no socket at %s)\n" % self.path.encode()
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\n"
                           b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
            client.close()
            upstream.close()
            return
        t = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
        t.start()
        _pipe(client, upstream)
        t.join(30)
        client.close()
        upstream.close()

    def close(self):
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def forward(path, port=0):
    return Forwarder(path, port)


def forward_into(ns, host, port, local_port=0):
    """127.0.0.1:local_port -> host:port as seen inside namespace ns."""
    return Forwarder(None, local_port, into=(ns, host, port))


def main(argv):
    if len(argv) < 2:
        sys.stderr.write("usage: webproxy.py SOCKET [PORT]\n")
        return 2
    f = forward(argv[1], int(argv[2]) if len(argv) > 2 else 8080)
    print("%s/spin/ -> %s" % (f.url, os.path.abspath(argv[1])), flush=True)
    try:
        f.thread.join()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
