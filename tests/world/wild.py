"""The wild internet: big public ranges routed into the wan namespace, where
most addresses never answer and a few answer as real hosts would.

The router's default route already sends every public address to wan; what
wan does with an address that is not its own decides what the router's
conntrack sees. This module gives wan a policy per range (a table of data,
WILD below), rendered as one nft table: an answering address is redirected
(DNAT, so the reply comes back from the address asked) to a local port where
`python3 wild.py serve` accepts and echoes, or to a closed port (the kernel
answers RST); every other address of the ranges is dropped (the attempt
stays [UNREPLIED] in the router's conntrack, as most of Mirai's do).

    range            who lives there                 answers
    11.0.0.0/8       the random internet a scanner   1 in 32 SYN-ACK, 1 in 32 RST,
                     picks from                      web ports 1 in 4 SYN-ACK
    12.0.0.0/9       P2P peers                       every other address (TCP echo, UDP echo)
    12.128.0.0/9     game peers                      all (UDP echo, TCP echo)
    13.0.0.0/24      a CDN (updates)                 tcp/443 served by the HTTP service, udp/123
    14.0.0.0/8       endpoints no device used        any TCP port: the upload sink
    15.0.0.80        one host that answers a flood   any TCP port: SYN-ACK

Used from the host: `install(home)` once the home is up. Stdlib only.
"""

import os
import select
import socket
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

WILD_NET = "11.0.0.0/8"
PEER_NET = "12.0.0.0/9"
GAME_NET = "12.128.0.0/9"
CDN_NET = "13.0.0.0/24"
NEW_NET = "14.0.0.0/8"
VICTIM4 = "15.0.0.80"
CDN_HOSTS = ["13.0.0.1", "13.0.0.2", "13.0.0.3", "13.0.0.4"]

# the local ports the redirected addresses land on (nothing of services.py)
TCP_ANSWER = 7100       # accept, echo what comes, close at EOF
TCP_CLOSED = 7101       # nobody listens: the kernel sends RST
UDP_ANSWER = 7102       # echo
HTTP = 80               # services.py: GET /N answers N bytes
SINK = 9000             # services.py: reads and discards

WEB_PORTS = "{ 80, 443, 8080, 8081 }"

# (match, action): the first rule that matches a new connection decides;
# nft evaluates them in this order. An unmatched address of a range is dropped.
WILD = [
    # the random internet: web ports answer more often than telnet does
    ("ip daddr %s tcp dport %s ip daddr & 0.0.0.3 == 0.0.0.0" % (WILD_NET, WEB_PORTS), TCP_ANSWER),
    ("ip daddr %s ip protocol tcp ip daddr & 0.0.0.31 == 0.0.0.1" % WILD_NET, TCP_ANSWER),
    ("ip daddr %s ip protocol tcp ip daddr & 0.0.0.31 == 0.0.0.2" % WILD_NET, TCP_CLOSED),
    # P2P peers: half of them are gone (NAT, churn) and never answer
    ("ip daddr %s ip protocol tcp ip daddr & 0.0.0.1 == 0.0.0.0" % PEER_NET, TCP_ANSWER),
    ("ip daddr %s ip protocol udp ip daddr & 0.0.0.1 == 0.0.0.0" % PEER_NET, UDP_ANSWER),
    ("ip daddr %s ip protocol tcp" % GAME_NET, TCP_ANSWER),
    ("ip daddr %s ip protocol udp" % GAME_NET, UDP_ANSWER),
    ("ip daddr %s tcp dport 443" % CDN_NET, HTTP),
    ("ip daddr %s udp dport 123" % CDN_NET, UDP_ANSWER),
    ("ip daddr %s ip protocol tcp" % NEW_NET, SINK),
    ("ip daddr %s ip protocol tcp" % VICTIM4, TCP_ANSWER),
]
RANGES = [WILD_NET, PEER_NET, GAME_NET, CDN_NET, NEW_NET, VICTIM4]


def ruleset():
    """The wan namespace's nft table for the wild ranges."""
    nat = "\n".join("\t\t%s redirect to :%d" % (m, port) for m, port in WILD)
    return ("table ip world_wild\nflush table ip world_wild\n"
            "table ip world_wild {\n"
            "\tchain dstnat {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n"
            "%s\n\t}\n"
            # after dstnat: what was redirected has wan's own address by now
            "\tchain drop_rest {\n\t\ttype filter hook prerouting priority filter; policy accept;\n"
            "\t\tip daddr { %s } drop\n\t}\n}\n" % (nat, ", ".join(RANGES)))


def install(home):
    """Load the ranges' policy into wan and start the answering hosts."""
    home.sh("wan", "nft", "-f", "-", input=ruleset())
    p = home.popen("wan", [sys.executable, "-u", os.path.join(HERE, "wild.py"), "serve"],
                   label="wan-wild", log=home.path("wan-wild.log"))
    home.wait_for(lambda: p.poll() is not None or _listening(home), timeout=10,
                  what="the wild internet's answering hosts (wild.py serve)")
    if p.poll() is not None:
        raise RuntimeError("wild.py serve exited: see %s" % home.path("wan-wild.log"))
    return p


def _listening(home):
    out = home.sh("wan", "ss", "-Hltn", "sport = :%d" % TCP_ANSWER, check=False)
    return str(TCP_ANSWER) in out


# -- inside wan: the answering hosts (one select loop) -------------------------

def serve():
    try:
        import ctypes
        import signal
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)    # PR_SET_PDEATHSIG
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    except (OSError, ImportError):
        pass
    lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind(("0.0.0.0", TCP_ANSWER))
    lst.listen(4096)
    lst.setblocking(False)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", UDP_ANSWER))
    udp.setblocking(False)
    conns = set()
    while True:
        ready = select.select([lst, udp] + list(conns), [], [], 1.0)[0]
        for s in ready:
            if s is lst:
                _accept(lst, conns)
            elif s is udp:
                _echo_udp(udp)
            else:
                _echo_tcp(s, conns)


def _accept(lst, conns):
    for _ in range(256):
        try:
            c, _ = lst.accept()
        except OSError:
            return
        if len(conns) >= 800:       # a flood: answer the handshake, then hang up
            c.close()
            continue
        c.setblocking(False)
        conns.add(c)


def _echo_udp(udp):
    for _ in range(256):
        try:
            data, peer = udp.recvfrom(2048)
        except OSError:
            return
        try:
            udp.sendto(data, peer)
        except OSError:
            pass


def _echo_tcp(c, conns):
    try:
        data = c.recv(65536)
        if data:
            c.send(data)
            return
    except OSError:
        pass
    conns.discard(c)
    c.close()


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        serve()
    else:
        sys.exit("usage: wild.py serve   (inside the wan namespace)")
