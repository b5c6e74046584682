"""Real DNS servers in the simulated home's internet: BIND, NSD, unbound.

The DNS corpus (tests/data/dns/) is captured from them and the story test
(tests/test_dnscorpus_home.py) asks them live. Each server gets addresses
of its own on the wan namespace's lo, beside the zone's dnsmasq:

    nsd      198.51.100.54  2001:db8:53::54  authoritative for NSD_ZONE
    named    198.51.100.55  2001:db8:53::55  authoritative for BIND_ZONE, and
                                             recursive (NSD_ZONE by static-stub)
    unbound  198.51.100.56  2001:db8:53::56  recursive only (both zones by stub-zone)

The zones are written so one answer crosses both: www.bind-zone.example is
a chain of six CNAMEs that alternate between the two zones (each link
answered by a different server, the TTLs differ along the way), old.bind-
zone.example is a DNAME into nsd-zone.example, many. and big. hold more
records than a UDP answer can (truncated, then TCP; or IP fragments with a
4096-byte EDNS buffer), and there are AAAA records, mixed case, labels
holding a dot, a space and a semicolon, a TTL-0 record, a delegation with
glue, and MX/NS answers whose addresses come in the additional section.
BIND signs its zone (dnssec-policy default): asked with +dnssec, every
RRset of its answers comes with its RRSIG.

The addresses lie in 198.19.0.0/16 (dropped by the internet, SCAN_NET) and
2001:db8:2::/48 (unrouted in wan): a device may send to them and the flows
stay in the router's conntrack, unanswered.
"""

import os
import shutil

NSD4, NSD6 = "198.51.100.54", "2001:db8:53::54"
BIND4, BIND6 = "198.51.100.55", "2001:db8:53::55"
UNBOUND4, UNBOUND6 = "198.51.100.56", "2001:db8:53::56"
SERVERS = {"nsd": (NSD4, NSD6), "bind": (BIND4, BIND6), "unbound": (UNBOUND4, UNBOUND6)}

BIND_ZONE = "bind-zone.example"
NSD_ZONE = "nsd-zone.example"
GLUE4 = "198.19.99.53"  # ns.sub.bind-zone.example: glue, never a device's remote

# many.bind-zone.example: 100 A and 50 AAAA (about 3.3 KB); big.nsd-zone.example: 200 A
MANY4 = ["198.19.1.%d" % i for i in range(1, 101)]
MANY6 = ["2001:db8:2:1::%x" % i for i in range(1, 51)]
BIG4 = ["198.19.%d.%d" % (10 + i // 100, 1 + i % 100) for i in range(200)]

BIND_ZONE_TEXT = r"""$TTL 300
@        SOA   ns hostmaster 1 3600 600 86400 300
@        NS    ns
ns       A     198.51.100.55
ns       AAAA  2001:db8:53::55
@        MX    10 mail
mail     A     198.19.0.25
mail     AAAA  2001:db8:2::25
; the long chain: www -> c1.nsd -> c2 -> c3.nsd -> c4 -> c5.nsd -> c6
www      CNAME c1.nsd-zone.example.
c2 900   CNAME c3.nsd-zone.example.
c4       CNAME c5.nsd-zone.example.
c6       A     198.19.0.6
c6       AAAA  2001:db8:2::6
; host.old.bind-zone.example is host.nsd-zone.example
old      DNAME nsd-zone.example.
MiXeD.CaSe A   198.19.0.7
dot\.inside A  198.19.0.8
with\032space A 198.19.0.9
semi\;colon AAAA 2001:db8:2::9
zero 0   A     198.19.0.10
short 7  A     198.19.0.11
v6only   AAAA  2001:db8:2::12
; a delegation: the NS and its glue come in authority and additional
sub      NS    ns.sub
ns.sub   A     198.19.99.53
"""

NSD_ZONE_TEXT = r"""$ORIGIN nsd-zone.example.
$TTL 600
@        SOA   ns hostmaster 1 3600 600 86400 300
@        NS    ns
ns       A     198.51.100.54
@        MX    10 mx
mx       A     198.19.0.26
c1       CNAME c2.bind-zone.example.
c3 120   CNAME c4.bind-zone.example.
c5 3600  CNAME c6.bind-zone.example.
host     A     198.19.0.13
host     AAAA  2001:db8:2::13
UPPER.Case A   198.19.0.14
"""


def zone_texts():
    many = "".join("many     A     %s\n" % a for a in MANY4)
    many += "".join("many     AAAA  %s\n" % a for a in MANY6)
    big = "".join("big      A     %s\n" % a for a in BIG4)
    return BIND_ZONE_TEXT + many, NSD_ZONE_TEXT + big


def missing():
    """The programs these servers need that this machine lacks."""
    return [b for b in ("named", "nsd", "unbound", "dig") if shutil.which(b) is None]


def start(home, which=("nsd", "bind", "unbound")):
    """Start the servers in the home's wan namespace; wait until each
    answers. Their processes belong to the home (stopped on down())."""
    d = home.path("dns")
    os.makedirs(d, exist_ok=True)
    bind_zone, nsd_zone = zone_texts()
    with open(os.path.join(d, "bind-zone.db"), "w") as f:
        f.write("$ORIGIN %s.\n" % BIND_ZONE + bind_zone)
    with open(os.path.join(d, "nsd-zone.db"), "w") as f:
        f.write(nsd_zone)
    for name in which:
        for a in SERVERS[name]:
            home.sh("wan", "ip", "addr", "add", "%s/%d" % (a, 128 if ":" in a else 32), "dev", "lo")
    for name in which:
        STARTERS[name](home, d)
    for name in which:
        addr4 = SERVERS[name][0]
        probe = NSD_ZONE if name == "nsd" else BIND_ZONE
        home.wait_for(lambda: _answers(home, addr4, probe), timeout=20,
                      what="%s answering on %s" % (name, addr4))


def _answers(home, server, zone):
    out = home.sh("wan", "dig", "+dnssec", "+time=1", "+tries=1", "@" + server, zone, "SOA", check=False)
    # BIND signs its zone a moment after loading it: wait for the signatures
    return "hostmaster" in out and (zone != BIND_ZONE or "RRSIG" in out)


def _nsd(home, d):
    conf = os.path.join(d, "nsd.conf")
    with open(conf, "w") as f:
        f.write("""server:
    ip-address: %s
    ip-address: %s
    username: ""
    chroot: ""
    zonesdir: "%s"
    database: ""
    zonelistfile: "%s/nsd.zonelist"
    xfrdfile: "%s/nsd.xfrd"
    xfrdir: "%s"
    pidfile: "%s/nsd.pid"
    logfile: "%s/nsd.log"
    server-count: 1
    verbosity: 1
    # as large UDP answers as the device's EDNS buffer allows: past the MTU they leave in fragments
    ipv4-edns-size: 4096
    ipv6-edns-size: 4096
remote-control:
    control-enable: no
zone:
    name: %s
    zonefile: nsd-zone.db
""" % (NSD4, NSD6, d, d, d, d, d, d, NSD_ZONE))
    home.popen("wan", ["nsd", "-d", "-c", conf], label="nsd", log=home.path("nsd.log"))


def _named(home, d):
    conf = os.path.join(d, "named.conf")
    with open(conf, "w") as f:
        f.write("""options {
    directory "%s";
    pid-file "%s/named.pid";
    session-keyfile "%s/session.key";
    listen-on { %s; };
    listen-on-v6 { %s; };
    recursion yes;
    allow-query { any; };
    allow-recursion { any; };
    dnssec-validation no;
    // answers up to 4 KB over UDP when the device's EDNS buffer allows
    max-udp-size 4096;
    edns-udp-size 4096;
    minimal-responses no;
    notify no;
    // labels holding a dot, a space, a semicolon: legal DNS, not host names
    check-names primary ignore;
};
controls { };
// signed (RRSIG beside every answer's records, with +dnssec): answers grow
zone "%s" { type primary; file "%s/bind-zone.db"; dnssec-policy default;
    inline-signing yes; key-directory "%s"; };
zone "%s" { type static-stub; server-addresses { %s; }; };
""" % (d, d, d, BIND4, BIND6, BIND_ZONE, d, d, NSD_ZONE, NSD4))
    home.popen("wan", ["named", "-g", "-n", "1", "-c", conf], label="named", log=home.path("named.log"))


def _unbound(home, d):
    conf = os.path.join(d, "unbound.conf")
    with open(conf, "w") as f:
        f.write("""server:
    interface: %s
    interface: %s
    username: ""
    chroot: ""
    directory: "%s"
    pidfile: "%s/unbound.pid"
    do-daemonize: no
    use-syslog: no
    logfile: ""
    num-threads: 1
    access-control: 0.0.0.0/0 allow
    access-control: ::/0 allow
    module-config: "iterator"
    # as large UDP answers as the device's EDNS buffer allows
    max-udp-size: 4096
    edns-buffer-size: 4096
    # the servers it asks live on 198.51.100.0/24 and 2001:db8::/32: allowed
    do-not-query-localhost: yes
stub-zone:
    name: "%s"
    stub-addr: %s
stub-zone:
    name: "%s"
    stub-addr: %s
remote-control:
    control-enable: no
""" % (UNBOUND4, UNBOUND6, d, d, BIND_ZONE, BIND4, NSD_ZONE, NSD4))
    home.popen("wan", ["unbound", "-d", "-c", conf], label="unbound", log=home.path("unbound.log"))


STARTERS = {"nsd": _nsd, "bind": _named, "unbound": _unbound}
