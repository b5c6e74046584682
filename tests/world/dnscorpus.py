"""Capture the DNS corpus (tests/data/dns/) from real servers in the home.

    python3 -m tests.world.dnscorpus [OUTDIR]      (default tests/data/dns, as root)

Builds the simulated home with the laptop alone, starts BIND, NSD and
unbound in its internet (tests/world/dnsservers.py), and for each server
(those three, the router's dnsmasq and the internet's dnsmasq)
captures on the router's br-lan (`tcpdump -i br-lan -w SERVER.pcap`) while
the laptop asks it with dig, its own stub: UDP with EDNS (dig's 1232-byte
buffer), UDP without EDNS, a 4096-byte buffer (answers past the MTU leave
in IP fragments), TCP after a truncated answer, TCP asked for; over IPv4
(through the router's NAT) and IPv6.

Beside each pcap, SERVER.json holds what dig printed for every question and
the mappings derived from it, independently of dnssnoop: from the question
name, the CNAMEs of the answer section (a DNAME's synthesized CNAME among
them) to every A and AAAA record reached; the TTL the smallest on the way;
names as dig writes them (RFC 1035 presentation), lowercased. `others` are
the addresses of the authority and additional sections (glue, the MX's
host) and of records the chain does not reach: they must not be mapped.

malformed.pcap is made from the captured answers, each cut or bent so that
it is no longer a valid message (see MUTATIONS): nothing in it may map.
"""

import json
import os
import signal
import struct
import subprocess
import sys

from tests.world import dnsservers as ds
from tests.world.home import LAN4_ROUTER, LAN6_ROUTER, REPO, RESOLVER4, RESOLVER6, Home

ADDRESSES = dict(ds.SERVERS, **{"dnsmasq-router": (LAN4_ROUTER, LAN6_ROUTER),
                                "dnsmasq": (RESOLVER4, RESOLVER6)})

# (server, name, type, dig options, server family); the comment says what it shows
QUERIES = {
    "bind": [
        ("www.bind-zone.example", "A", [], 4),                # 6 CNAMEs across two zones, recursion
        ("www.bind-zone.example", "AAAA", [], 6),
        ("many.bind-zone.example", "A", ["+noedns"], 4),      # truncated, again over TCP
        ("many.bind-zone.example", "A", ["+bufsize=4096"], 4),     # IPv4 fragments
        ("many.bind-zone.example", "AAAA", ["+bufsize=4096"], 6),  # IPv6 fragments
        ("many.bind-zone.example", "ANY", ["+tcp"], 4),       # TCP from the start
        ("host.old.bind-zone.example", "A", [], 4),           # DNAME
        ("mIxEd.CaSe.BIND-zone.example", "A", [], 6),         # mixed case
        (r"dot\.inside.bind-zone.example", "A", [], 4),       # a dot inside a label
        (r"with\032space.bind-zone.example", "A", [], 4),     # a space
        (r"semi\;colon.bind-zone.example", "AAAA", [], 6),    # a semicolon
        ("zero.bind-zone.example", "A", [], 4),               # TTL 0
        ("short.bind-zone.example", "A", [], 4),              # TTL 7
        ("x.sub.bind-zone.example", "A", ["+norec"], 4),      # a referral: glue only
        ("bind-zone.example", "MX", [], 4),                   # addresses in additional
        ("bind-zone.example", "NS", [], 6),
        ("nothere.bind-zone.example", "A", [], 4),            # NXDOMAIN
        # DNSSEC (the zone is signed): an RRSIG beside each RRset
        ("c6.bind-zone.example", "AAAA", ["+dnssec"], 6),
        ("many.bind-zone.example", "A", ["+dnssec"], 4),      # TC, TCP
        ("www.bind-zone.example", "A", ["+dnssec", "+bufsize=4096"], 4),
    ],
    "nsd": [
        ("big.nsd-zone.example", "A", [], 4),                 # 200 A: truncated, TCP
        ("big.nsd-zone.example", "A", ["+bufsize=4096"], 4),  # IPv4 fragments
        ("big.nsd-zone.example", "A", ["+bufsize=4096"], 6),  # IPv6 fragments
        ("host.nsd-zone.example", "A", [], 6),
        ("host.nsd-zone.example", "AAAA", ["+noedns"], 4),
        ("c1.nsd-zone.example", "A", [], 4),                  # a CNAME out of the zone: nothing to map
        ("Upper.CASE.nsd-zone.example", "A", [], 4),
        ("nsd-zone.example", "MX", [], 4),
        ("ns.nsd-zone.example", "A", ["+tcp"], 6),
    ],
    # the home's own dnsmasq servers (tests/world/home.py): the router's
    # resolver (answers from the router itself, forwarded to the internet's),
    # and the internet's, authoritative for ZONE and LARGE
    "dnsmasq-router": [
        ("www.example-shop.com", "A", [], 4),                 # two CNAMEs
        ("www.example-shop.com", "AAAA", [], 6),
        ("video.example-tube.com", "A", ["+noedns"], 4),      # two addresses
        ("many-tcp.example-cdn.net", "A", ["+noedns"], 4),    # TC, TCP through the router
        ("laptop.lan", "A", [], 4),                           # a DHCP name, from the lease
        ("nothere.example.com", "A", [], 4),                  # NXDOMAIN
    ],
    "dnsmasq": [
        ("many-frag.example-cdn.net", "A", ["+bufsize=4096"], 4),  # IPv4 fragments
        ("many-frag.example-cdn.net", "A", ["+bufsize=4096"], 6),  # IPv6 fragments
        ("cloud.example-cam.com", "AAAA", [], 6),
        ("social.example.com", "A", ["+tcp"], 4),
    ],
    "unbound": [
        ("www.bind-zone.example", "A", [], 4),
        ("www.bind-zone.example", "AAAA", ["+noedns"], 6),
        ("host.old.bind-zone.example", "AAAA", [], 4),        # DNAME, synthesized by unbound
        ("many.bind-zone.example", "A", ["+noedns"], 4),      # TC, TCP
        ("many.bind-zone.example", "AAAA", ["+bufsize=4096"], 6),  # fits one IPv6 packet
        ("big.nsd-zone.example", "A", [], 6),                 # TC, TCP over IPv6
        ("big.nsd-zone.example", "A", ["+bufsize=4096"], 6),  # IPv6 fragments
        ("big.nsd-zone.example", "A", ["+bufsize=4096"], 4),  # IPv4 fragments
        ("MIXED.case.bind-zone.example", "A", [], 4),
        (r"dot\.inside.bind-zone.example", "A", [], 6),
        (r"with\032space.bind-zone.example", "A", [], 4),
        ("zero.bind-zone.example", "A", [], 4),
        ("bind-zone.example", "MX", [], 4),
        ("nothere.nsd-zone.example", "A", [], 4),
        ("www.bind-zone.example", "AAAA", ["+dnssec"], 6),   # the signed links' RRSIGs too
    ],
}

CAPTURE_FILTER = "not arp and not icmp6 and not (udp port 67 or udp port 68)"


# -- what dig printed -> mappings ----------------------------------------------

def dig_sections(text):
    """dig's output -> {section: [(owner, ttl, type, data)]}, the server's
    transport ("UDP"/"TCP") and whether the UDP answer was truncated."""
    sections = {}
    current = None
    transport = None
    for line in text.splitlines():
        if line.startswith(";; ") and line.endswith(" SECTION:"):
            current = line[3:-len(" SECTION:")].lower()
            sections.setdefault(current, [])
            continue
        if line.startswith(";; SERVER:"):
            transport = line.rsplit("(", 1)[1].rstrip(")")
        if not line.strip() or line.startswith(";"):
            if not line.strip():
                current = None
            if current == "question" and line.startswith(";"):
                sections["question"].append(line[1:].split()[0])
            continue
        if current is None:
            continue
        owner, ttl, cls, rtype, data = line.split(None, 4)
        sections[current].append((_name(owner), int(ttl), rtype, data.strip()))
    return sections, transport, ";; Truncated, retrying in TCP mode." in text


def _name(text):
    text = text.lower()
    return text[:-1] if len(text) > 1 and text.endswith(".") else text


def mappings(sections, client):
    """[client, address, question, ttl] for each A/AAAA the chain reaches,
    and the addresses that are anywhere else in the message."""
    qname = _name(sections["question"][0])
    answer = sections.get("answer", [])
    cnames = {}
    for owner, ttl, rtype, data in answer:
        if rtype == "CNAME" and owner not in cnames:
            cnames[owner] = (_name(data), ttl)
    chain = {qname: None}
    name = qname
    while name in cnames and cnames[name][0] not in chain:
        target, ttl = cnames[name]
        prev = chain[name]
        chain[target] = ttl if prev is None else min(prev, ttl)
        name = target
    found, others = [], []
    for owner, ttl, rtype, data in answer:
        if rtype in ("A", "AAAA"):
            if owner in chain:
                cap = chain[owner]
                found.append([client, data, qname, ttl if cap is None else min(cap, ttl)])
            else:
                others.append(data)
    for sec in ("authority", "additional"):
        for owner, ttl, rtype, data in sections.get(sec, []):
            if rtype in ("A", "AAAA"):
                others.append(data)
    return found, others


# -- capturing ---------------------------------------------------------------------

def capture(home, server, pcap):
    tcpdump = home.popen("router", ["tcpdump", "-i", "br-lan", "--immediate-mode", "-U", "-s", "0", "-w", pcap,
                                    CAPTURE_FILTER], label="tcpdump-" + server,
                         log=home.path("tcpdump-%s.log" % server))
    log = home.path("tcpdump-%s.log" % server)
    home.wait_for(lambda: os.path.exists(log) and "listening on" in open(log).read(),
                  timeout=10, what="tcpdump listening on br-lan")
    laptop = home.devices["laptop"]
    asked = []
    for name, rtype, opts, family in QUERIES[server]:
        addr = ADDRESSES[server][0 if family == 4 else 1]
        argv = ["dig", "+time=3", "+tries=1", "@" + addr, name, rtype] + opts
        out = home.sh("laptop", *argv)
        sections, transport, truncated = dig_sections(out)
        client = laptop.ip4 if family == 4 else laptop.ip6
        found, others = mappings(sections, client)
        asked.append({"ask": " ".join(argv[3:]), "transport": transport,
                      "truncated_first": truncated,
                      "answer": [list(r) for r in sections.get("answer", [])],
                      "mappings": found, "others": others})
    # --immediate-mode: each packet reaches tcpdump at once (else the kernel
    # holds them up to a second in a block, and SIGINT loses that block);
    # -U: and it writes each to the file at once
    tcpdump.send_signal(signal.SIGINT)
    tcpdump.wait(10)
    return asked


def server_version(home, server):
    argv = {"bind": ["named", "-v"], "nsd": ["nsd", "-v"], "unbound": ["unbound", "-V"],
            "dnsmasq": ["dnsmasq", "--version"], "dnsmasq-router": ["dnsmasq", "--version"]}[server]
    p = subprocess.run(argv, capture_output=True, text=True)
    return (p.stdout + p.stderr).strip().splitlines()[0]


# -- malformed.pcap: real answers made invalid -----------------------------------------

def read_pcap(path):
    """The Ethernet frames of a pcap file (the same format the core test reads)."""
    data = open(path, "rb").read()
    magic = struct.unpack("<I", data[:4])[0]
    order = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    pos = 24
    while pos + 16 <= len(data):
        sec, usec, caplen, _ = struct.unpack(order + "IIII", data[pos:pos + 16])
        yield sec, usec, data[pos + 16:pos + 16 + caplen]
        pos += 16 + caplen


def write_pcap(path, frames):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for sec, usec, frame in frames:
            f.write(struct.pack("<IIII", sec, usec, len(frame), len(frame)))
            f.write(frame)


def _checksum(header):
    s = 0
    for i in range(0, len(header), 2):
        s += (header[i] << 8) | header[i + 1]
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def _rebuild4(frame, dns):
    """An IPv4/UDP frame with its DNS message replaced, every length and the
    IP checksum made right again: only the DNS message is wrong."""
    ihl = (frame[14] & 15) * 4
    ip = bytearray(frame[14:14 + ihl])
    udp = bytearray(frame[14 + ihl:14 + ihl + 8])
    struct.pack_into(">H", ip, 2, ihl + 8 + len(dns))
    struct.pack_into(">H", ip, 10, 0)
    struct.pack_into(">H", ip, 10, _checksum(ip))
    struct.pack_into(">H", udp, 4, 8 + len(dns))
    struct.pack_into(">H", udp, 6, 0)  # no UDP checksum: allowed over IPv4
    return frame[:14] + bytes(ip) + bytes(udp) + dns


def _answers4(path):
    """Whole IPv4 UDP answers from port 53 with at least one A record."""
    for sec, usec, frame in read_pcap(path):
        if frame[12:14] != b"\x08\x00" or frame[23] != 17 or (frame[20] & 0x3F) or frame[21]:
            continue
        ihl = (frame[14] & 15) * 4
        udp = frame[14 + ihl:]
        if udp[:2] != b"\x00\x35":
            continue
        dns = udp[8:struct.unpack(">H", udp[4:6])[0]]
        if struct.unpack(">H", dns[6:8])[0] and not dns[2] & 2:
            yield sec, usec, frame, dns


def _last_record_start(dns):
    """Where the message's last record begins: walk every section's records."""
    qd, an, ns, ar = struct.unpack(">HHHH", dns[4:12])
    pos = 12
    pos = _skip_name(dns, pos) + 4
    start = pos
    for _ in range(an + ns + ar):
        start = pos
        pos = _skip_name(dns, pos)
        pos += 10 + struct.unpack(">H", dns[pos + 8:pos + 10])[0]
    return start


def _skip_name(dns, pos):
    while dns[pos]:
        if dns[pos] & 0xC0:
            return pos + 2
        pos += 1 + dns[pos]
    return pos + 1


def _first_a_rdlength(dns):
    """The offset of the first A record's RDLENGTH in the answer section."""
    pos = _skip_name(dns, 12) + 4
    for _ in range(struct.unpack(">H", dns[6:8])[0]):
        pos = _skip_name(dns, pos)
        rtype = struct.unpack(">H", dns[pos:pos + 2])[0]
        if rtype == 1:
            return pos + 8
        pos += 10 + struct.unpack(">H", dns[pos + 8:pos + 10])[0]
    return None


def _cut_in_last_record(dns):
    # cut inside the message's last record (the OPT or an additional A)
    return dns[:_last_record_start(dns) + 3]


def _a_of_nine_bytes(dns):
    # the first A record says its data is 9 bytes long (RFC 1035: it is 4)
    at = _first_a_rdlength(dns)
    return None if at is None else dns[:at] + b"\x00\x09" + dns[at + 2:]


def _one_more_record(dns):
    # the header counts one more additional record than the message holds
    return dns[:10] + struct.pack(">H", struct.unpack(">H", dns[10:12])[0] + 1) + dns[12:]


def _trailing_bytes(dns):
    # bytes past the last record inside the UDP payload
    return dns + b"\x00\x00\x00\x00"


MUTATIONS = [_cut_in_last_record, _a_of_nine_bytes, _one_more_record, _trailing_bytes]


def malformed(pcaps, out):
    frames = []
    for path in pcaps:
        for sec, usec, frame, dns in _answers4(path):
            for mutate in MUTATIONS:
                bent = mutate(dns)
                if bent is not None:
                    frames.append((sec, usec, _rebuild4(frame, bent)))
    write_pcap(out, frames)
    return len(frames)


def main(outdir):
    os.makedirs(outdir, exist_ok=True)
    lacking = ds.missing()
    if lacking:
        sys.exit("dnscorpus: missing %s (tools/apt-packages.txt; `make deps`)" % ", ".join(lacking))
    pcaps = []
    with Home(devices=["laptop"], traffic=False) as home:
        ds.start(home)
        for server in QUERIES:
            pcap = os.path.join(outdir, server + ".pcap")
            asked = capture(home, server, pcap)
            head = {"pcap": server + ".pcap", "server": server_version(home, server),
                    "address": list(ADDRESSES[server]), "client": "laptop"}
            with open(os.path.join(outdir, server + ".json"), "w") as f:
                # one line a question: small, and a re-capture's diff reads by question
                f.write(json.dumps(head)[:-1] + ', "queries": [\n')
                f.write(",\n".join(json.dumps(q) for q in asked) + "\n]}\n")
            pcaps.append(pcap)
            print("%s: %d questions, %d mappings, %d bytes" % (
                server, len(asked), sum(len(q["mappings"]) for q in asked), os.path.getsize(pcap)))
    n = malformed(pcaps, os.path.join(outdir, "malformed.pcap"))
    print("malformed: %d messages" % n)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "tests", "data", "dns"))
