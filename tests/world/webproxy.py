"""A TCP port on the host that leads to the agent's unix socket.

The agent runs inside the router namespace and listens on a unix socket
in the home's directory. Unix sockets are named in the filesystem, not in
a network namespace, so a process on the host can connect to it; a
browser cannot, so this forwards 127.0.0.1:PORT to that socket, one
thread per connection (a test or a demo has a handful).

    python3 -m tests.world.webproxy /tmp/spin-home-.../rpc.sock [PORT]
"""

import os
import socket
import sys
import threading


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

    def __init__(self, path, port=0, host="127.0.0.1"):
        self.path = path
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
