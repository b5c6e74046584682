"""Answers larger than a packet, from real dnsmasq servers: asked without
EDNS, the router's resolver truncates the answer and the laptop asks again
over TCP; asked with EDNS, the internet's resolver sends one UDP datagram
that leaves in IP fragments. Every one of the 200 addresses of each answer
must be named: the flows the laptop then opens to them say so."""

import json
import sys

import pytest

from tests.world.home import LAN4_ROUTER, LARGE, RESOLVER4, Home

pytestmark = pytest.mark.netns

# the laptop's side: a stub resolver as a C library has one (UDP first,
# TCP when truncated), then one UDP packet to a sample of the addresses
ASK = r'''
import json, socket, struct, sys
def query(name, edns):
    q = struct.pack(">HHHHHH", 4242, 0x0100, 1, 0, 0, 1 if edns else 0)
    q += b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0\0\1\0\1"
    if edns:
        q += b"\0\0\x29\x10\0\0\0\0\0\0\0"  # OPT: 4096-byte answers over UDP
    return q
def records(m):
    an = struct.unpack(">H", m[6:8])[0]
    pos = 12
    while m[pos]: pos += m[pos] + 1
    pos += 5
    out = []
    for _ in range(an):
        pos += 2 if m[pos] & 0xC0 else 0
        t, _, _, n = struct.unpack(">HHIH", m[pos:pos + 10]); pos += 10
        if t == 1: out.append(socket.inet_ntoa(m[pos:pos + 4]))
        pos += n
    return out
server, name, edns = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(5)
u.sendto(query(name, edns), (server, 53))
m = u.recv(65535)
tc = bool(m[2] & 2)
if tc:
    t = socket.create_connection((server, 53), timeout=5)
    q = query(name, False)
    t.sendall(struct.pack(">H", len(q)) + q)
    want = struct.unpack(">H", t.recv(2, socket.MSG_WAITALL))[0]
    m = b""
    while len(m) < want:
        m += t.recv(want - len(m))
    t.close()
addrs = records(m)
for a in addrs[::20] + addrs[-1:]:
    u.sendto(b"x", (a, 9))
print(json.dumps({"truncated": tc, "size": len(m), "addrs": addrs}))
'''


@pytest.fixture(scope="module")
def home():
    with Home(agent=True, traffic=False) as h:
        yield h


def ask(home, server, name, edns):
    out = home.sh("laptop", sys.executable, "-c", ASK, server, name, "1" if edns else "0")
    return json.loads(out)


def named(home):
    mac = home.devices["laptop"].mac
    return {f["remote"]: f["names"] for f in home.call("flows", {"mac": mac})["flows"]}


@pytest.mark.parametrize("server, name, edns, path", [
    (LAN4_ROUTER, "many-tcp.example-cdn.net", False, "tcp_messages"),
    (RESOLVER4, "many-frag.example-cdn.net", True, "reassembled"),
])
def test_every_address_of_a_large_answer_is_named(home, server, name, edns, path):
    got = ask(home, server, name, edns)
    assert sorted(got["addrs"]) == sorted(LARGE[name]) and got["size"] > 3000
    assert got["truncated"] == (not edns)   # the path the answer really took
    sample = got["addrs"][::20] + got["addrs"][-1:]

    def all_named():
        n = named(home)
        return all(n.get(a) == [name] for a in sample) and n
    home.wait_for(all_named, timeout=30, what="every sampled address named %s" % name)
    counts = home.call("status")["names"]["dns_counts"]
    assert counts.get(path, 0) >= 1, counts
    assert "malformed" not in counts, counts
