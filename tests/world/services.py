"""The internet's services, run inside the wan namespace (stdlib only).

One process, one thread per service, every service on every wan address
(dual-stack sockets on ::), except telnet, which answers on one address only:

  tcp/80    HTTP: GET /N answers N bytes (default 512), POST reads the body
            and answers its length (an upload sink)
  tcp/9000  sink: reads and discards (the camera's steady upload)
  tcp/9001  source: the client sends "N\\n" and gets N bytes (the speaker)
  udp/7     echo (the bulb's rare packet)
  tcp/23    telnet banner on --telnet ADDRESS (what a Mirai-like scan wants)

Counters go to --status as JSON once a second, so the tests can see what the
internet received. The process ends on SIGTERM or when its parent dies.
"""

import argparse
import ctypes
import http.server
import json
import os
import select
import signal
import socket
import socketserver
import threading
import time

COUNTS = {"http_get": 0, "http_post_bytes": 0, "sink_bytes": 0, "source_bytes": 0,
          "udp_echo": 0, "telnet": 0}
LOCK = threading.Lock()


def count(key, n=1):
    with LOCK:
        COUNTS[key] += n


class DualStack(socketserver.ThreadingMixIn, socketserver.TCPServer):
    address_family = socket.AF_INET6
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


class Telnet(DualStack):
    address_family = socket.AF_INET

    def server_bind(self):
        socketserver.TCPServer.server_bind(self)


class HTTPServer(DualStack, http.server.HTTPServer):
    pass


class Web(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        try:
            n = min(int(self.path.strip("/").split("?")[0] or 512), 64 << 20)
        except ValueError:
            n = 512
        count("http_get")
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(n))
        self.send_header("Connection", "close")
        self.end_headers()
        chunk = b"x" * 65536
        while n > 0:
            self.wfile.write(chunk[:n])
            n -= min(n, 65536)

    def do_POST(self):
        left = int(self.headers.get("Content-Length") or 0)
        got = 0
        while left > 0:
            data = self.rfile.read(min(left, 65536))
            if not data:
                break
            got += len(data)
            left -= len(data)
        count("http_post_bytes", got)
        body = ("%d\n" % got).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


class Sink(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            data = self.request.recv(65536)
            if not data:
                return
            count("sink_bytes", len(data))


class Source(socketserver.StreamRequestHandler):
    def handle(self):
        try:
            n = min(int(self.rfile.readline(32) or 0), 256 << 20)
        except ValueError:
            return
        chunk = b"m" * 65536
        while n > 0:
            k = min(n, 65536)
            self.wfile.write(chunk[:k])
            count("source_bytes", k)
            n -= k


class TelnetBanner(socketserver.BaseRequestHandler):
    def handle(self):
        count("telnet")
        self.request.sendall(b"\r\nlogin: ")
        self.request.settimeout(5)
        try:
            self.request.recv(256)
        except OSError:
            pass


def udp_echo(addresses, port):
    # one socket per address: an unbound UDP socket would answer from the
    # address of the route back (192.0.2.1), and the router's conntrack would
    # never see the reply of the flow it NATed
    socks = []
    for addr in addresses:
        s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((addr, port))
        socks.append(s)
    while True:
        for s in select.select(socks, [], [])[0]:
            data, peer = s.recvfrom(2048)
            count("udp_echo")
            s.sendto(data, peer)


def serve(server):
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--telnet", required=True, help="the one address answering tcp/23")
    ap.add_argument("--addresses", required=True, help="comma-separated: UDP echo binds each")
    ap.add_argument("--status", required=True, help="JSON counters, rewritten every second")
    ap.add_argument("--http", type=int, default=80)
    ap.add_argument("--sink", type=int, default=9000)
    ap.add_argument("--source", type=int, default=9001)
    ap.add_argument("--echo", type=int, default=7)
    a = ap.parse_args()
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)
    except OSError:
        pass
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    serve(HTTPServer(("::", a.http), Web))
    serve(DualStack(("::", a.sink), Sink))
    serve(DualStack(("::", a.source), Source))
    serve(Telnet((a.telnet, 23), TelnetBanner))
    threading.Thread(target=udp_echo, args=(a.addresses.split(","), a.echo), daemon=True).start()
    while True:
        with LOCK:
            data = json.dumps(COUNTS)
        with open(a.status + ".tmp", "w") as f:
            f.write(data)
        os.replace(a.status + ".tmp", a.status)
        time.sleep(1)


if __name__ == "__main__":
    main()
