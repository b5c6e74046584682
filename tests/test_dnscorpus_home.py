"""The DNS corpus made live: BIND, NSD and unbound in the home's internet
(tests/world/dnsservers.py), the laptop asks them with dig, then sends a
packet to what it was told; the agent, reading br-lan, must name each of
those flows with the name the laptop asked, whichever path the answer took
(UDP, TCP after truncation, IP fragments, IPv6) and however long the chain
(six CNAMEs across two zones, a DNAME). Glue the laptop was also given
stays unnamed."""

import sys

import pytest

from tests.world import dnsservers as ds
from tests.world.dnscorpus import dig_sections, mappings
from tests.world.home import Home

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(bool(ds.missing()), reason="needs %s" % ", ".join(ds.missing()))]

SEND = r'''
import socket, sys
for a in sys.argv[1:]:
    s = socket.socket(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"x", (a, 9))
    s.close()
'''

# (server, question, dig options, family, the path the answer takes)
ASKED = [
    ("unbound", "www.bind-zone.example A", [], 4, "udp"),
    ("unbound", "many.bind-zone.example A", ["+noedns"], 4, "tcp"),
    ("unbound", "big.nsd-zone.example A", ["+bufsize=4096"], 6, "fragments"),
    ("unbound", "host.old.bind-zone.example AAAA", [], 6, "udp"),
    ("bind", r"dot\.inside.bind-zone.example A", [], 4, "udp"),
    ("bind", "www.bind-zone.example AAAA", ["+tcp"], 6, "tcp"),
    ("nsd", "big.nsd-zone.example A", [], 4, "tcp"),
]


@pytest.fixture(scope="module")
def home():
    with Home(agent=True, traffic=False, devices=["laptop"]) as h:
        ds.start(h)
        yield h


def ask(home, server, question, opts, family):
    laptop = home.devices["laptop"]
    at = ds.SERVERS[server][0 if family == 4 else 1]
    out = home.sh("laptop", "dig", "+time=3", "+tries=1", "@" + at, *(question.split() + opts))
    sections, transport, _ = dig_sections(out)
    return mappings(sections, laptop.ip4 if family == 4 else laptop.ip6)


def flows_named(home):
    mac = home.devices["laptop"].mac
    return {f["remote"]: f["names"] for f in home.call("flows", {"mac": mac})["flows"]}


@pytest.mark.parametrize("server, question, opts, family, path", ASKED,
                         ids=["%s %s %s" % (a[0], a[1], a[4]) for a in ASKED])
def test_what_the_laptop_connects_to_is_named(home, server, question, opts, family, path):
    before = home.call("status")["names"]["dns_counts"]
    found, others = ask(home, server, question, opts, family)
    assert found, "dig got no address for %s" % question
    sample = sorted(set(m[1] for m in found))[::25][:8] + [found[-1][1]]
    home.sh("laptop", sys.executable, "-c", SEND, *sample)
    name = found[0][2]

    def all_named():
        n = flows_named(home)
        return all(n.get(a) == [name] for a in sample) and n
    got = home.wait_for(all_named, timeout=30, what="the flows to %s named %s" % (sample, name))
    for a in others:
        assert a not in got or not got[a], "%s (glue/additional) named %s" % (a, got[a])
    counts = home.call("status")["names"]["dns_counts"]
    key = {"udp": "answers", "tcp": "tcp_messages", "fragments": "reassembled"}[path]
    assert counts.get(key, 0) > before.get(key, 0), (path, counts)
    assert counts.get("parser_error", 0) == 0, counts


def test_glue_is_never_a_name(home):
    # a referral carries only the glue address; the laptop connects to it anyway
    found, others = ask(home, "bind", "x.sub.bind-zone.example A", ["+norec"], 4)
    assert found == [] and others == [ds.GLUE4]
    home.sh("laptop", sys.executable, "-c", SEND, ds.GLUE4)
    home.wait_for(lambda: ds.GLUE4 in flows_named(home), timeout=30, what="the flow to the glue address")
    assert flows_named(home)[ds.GLUE4] == []
