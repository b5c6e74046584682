"""The fuzz targets: every parser of outside input, bytes in, properties out.

One target per parser the router meets from outside (issue 13 item 2):

    conntrack  /proc/net/nf_conntrack text -> Scanner.scan and parse
    dns        IP packets (fragments, TCP streams) -> dnssnoop.Reader.feed
    dnsframe   one Ethernet frame -> its ethertype and IP packet -> Reader.feed
    ubus       bytes from ubusd -> ubus.Service (framer, blobmsg, state machine)
    uci        /etc/config/spin text -> config.parse_uci, config.load, static_hosts
    http       an HTTP request -> jsonrpc.parse_request, Server.respond
               (JSON-RPC, uhttpd-style /ubus, the page's files)
    api        a method and random arguments -> api.dispatch on a real agent
    mqtt       bytes from the broker -> mqtt.Reader, mqtt.decode, and each
               PUBLISH on the agent's cmd topic -> mqttlink.Link's orders
    controller what agents publish -> controller.Home.message

A target is a callable taking bytes. It returns when the input was handled
as the parser promises and raises otherwise: an exception other than the
parser's own error type escapes, or an AssertionError names the property
that failed (bounded state, well-formed output, no invented DNS mapping,
bad input changing nothing). The same targets run under hypothesis in
`make test` (tests/test_fuzz.py) and under atheris, coverage-guided, in
`make fuzz` (tools/fuzz.py). Inputs that drive several steps (packets,
snapshots, chunks) carry them in the bytes themselves, so a crash found is
one file that replays it.
"""

import os
import struct
import tempfile

from spin_lite import addr, api, config, conntrack, dnssnoop, jsonrpc, mqtt, mqttlink, ubus, web

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "data", "fuzz")


class Draw:
    """Choices taken from the front of the input, like libFuzzer's
    FuzzedDataProvider: any bytes are a valid draw, and an exhausted input
    draws zeros (so a short input is a small, simple case)."""

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def byte(self):
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def below(self, n):
        v = self.byte() | (self.byte() << 8) if n > 256 else self.byte()
        return v % n

    def raw(self, n):
        out = self.data[self.pos:self.pos + n]
        self.pos += len(out)
        return out

    def rest(self):
        out = self.data[self.pos:]
        self.pos = len(self.data)
        return out


# -- conntrack ----------------------------------------------------------------

LAN_NETS = ["192.168.8.0/24", "fd00:8::/64"]
ROUTER_IPS = {"192.168.8.1", "fd00:8::1", "192.0.2.2"}
SNAPSHOT = b"\f"  # snapshots of one input are separated by a form feed
CHUNKS = (32768, 61, 4096, 997)  # odd sizes: lines cut anywhere


def _normal(ip):
    return isinstance(ip, str) and addr.parse_ip(ip) == ip


def _check_flow_report(ip, remote, port, proto, bo, bi, po, pi, new, unreplied, refused=False):
    """What Agent.account may rely on, whatever the line said."""
    assert _normal(ip), ip
    assert _normal(remote), remote
    assert isinstance(port, int) and 0 <= port <= 65535, port
    assert isinstance(proto, bytes) and proto, proto
    for v in (bo, bi):
        assert isinstance(v, int) and 0 <= v < 1 << 64, v
    for v in (po, pi):
        assert isinstance(v, int) and 0 <= v < 1 << 32, v
    assert new in (True, False) and unreplied in (True, False)


def conntrack_target(data):
    lan = conntrack.Lan(LAN_NETS, ROUTER_IPS)
    sc = conntrack.Scanner(lan, max_flows=16)
    for n, snap in enumerate(data.split(SNAPSHOT)[:8]):
        size = CHUNKS[n % len(CHUNKS)]
        live = sc.scan([snap[i:i + size] for i in range(0, len(snap), size)], _check_flow_report)
        assert sc.used <= sc.max_flows
        assert sum(live.values()) <= sc.seen
        for ip, count in live.items():
            assert _normal(ip) and count > 0
        assert len(lan.cache) <= 8193
    flows, bad = conntrack.parse(data, lan)
    assert bad >= 0
    for f in flows:
        _check_flow_report(f.device_ip, f.remote, f.remote_port, f.proto.encode(), f.bytes_out,
                           f.bytes_in, f.packets_out, f.packets_in, True, not f.replied)
        assert 0 <= f.device_port <= 65535


# -- DNS ------------------------------------------------------------------------

# a packet of the dns target: 2-byte length, one control byte (how far the
# clock moves, which ethertype the frame claimed), then the packet
STEPS = (0, 0, 1, 31, 61)
TYPES = (None, 0x0800, 0x86DD, 0x0806)


def packets_of(data):
    """[(seconds later, ethertype, packet)] from a dns target input."""
    out = []
    pos = 0
    while pos + 3 <= len(data) and len(out) < 64:
        n = (data[pos] << 8) | data[pos + 1]
        ctl = data[pos + 2]
        pkt = data[pos + 3:pos + 3 + n]
        pos += 3 + n
        out.append((STEPS[(ctl >> 2) % len(STEPS)], TYPES[ctl & 3], pkt))
    return out


def packets_to_bytes(packets):
    """The inverse of packets_of, for seeds: [(step index, type index, packet)]."""
    out = b""
    for step, etype, pkt in packets:
        out += struct.pack(">HB", len(pkt), (step << 2) | etype) + pkt
    return out


def _ref_name(msg, pos, hops=0):
    """An independent, lenient reader of a name -> ([labels], position after).
    Any pointer is followed (up to 64 hops): looser than the snoop, which
    only lets them point back, so whatever the snoop reads, it reads too."""
    labels = []
    end = None
    while True:
        b = msg[pos]  # IndexError: the name runs off the message
        if b == 0:
            return labels, (end if end is not None else pos + 1)
        if b >= 0xC0:
            hops += 1
            if hops > 64:
                raise ValueError("pointer chase")
            if end is None:
                end = pos + 2
            pos = ((b & 0x3F) << 8) | msg[pos + 1]
            continue
        if b >= 0x40:
            raise ValueError("label type")
        if pos + 1 + b > len(msg):
            raise ValueError("label past the end")
        labels.append(msg[pos + 1:pos + 1 + b].lower())
        pos += 1 + b


def reference_mappings(msg):
    """Every (address text, asked name as lowercased labels) the message may
    justify: a response with no error, one question, and A/AAAA records of
    class IN in the answer section whose owner is the question or reached
    from it through CNAMEs there. Raises for a message it cannot read to the
    end of its answers."""
    _, flags, qd, an = struct.unpack_from(">HHHH", msg, 0)
    if not flags & 0x8000 or flags & 0x7A0F or qd != 1:
        return set()
    qname, pos = _ref_name(msg, 12)
    pos += 4
    cnames = []
    addrs = []
    for _ in range(an):
        owner, pos = _ref_name(msg, pos)
        rtype, rclass, _, rdlen = struct.unpack_from(">HHIH", msg, pos)
        pos += 10
        rdata = msg[pos:pos + rdlen]
        if len(rdata) != rdlen:
            raise ValueError("record past the end")
        if rclass == 1 and rtype == 1 and rdlen == 4:
            addrs.append((tuple(owner), "%d.%d.%d.%d" % tuple(rdata)))
        elif rclass == 1 and rtype == 28 and rdlen == 16:
            addrs.append((tuple(owner), addr.ipv6_from_bytes(rdata)))
        elif rclass == 1 and rtype == 5:
            cnames.append((tuple(owner), tuple(_ref_name(msg, pos)[0])))
        pos += rdlen
    reached = {tuple(qname)}
    grew = True
    while grew:
        grew = False
        for owner, target in cnames:
            if owner in reached and target not in reached:
                reached.add(target)
                grew = True
    return set((ip, tuple(qname)) for owner, ip in addrs if owner in reached)


def labels_of(name):
    """The snoop's presentation text back to lowercased wire labels
    (RFC 1035 §5.1: \\X is X, \\DDD a byte)."""
    if name == ".":
        return ()
    labels = []
    cur = bytearray()
    i = 0
    while i < len(name):
        c = name[i]
        if c == "\\":
            if name[i + 1:i + 4].isdigit() and len(name[i + 1:i + 4]) == 3:
                cur.append(int(name[i + 1:i + 4]))
                i += 4
            else:
                cur.append(ord(name[i + 1]))
                i += 2
            continue
        if c == ".":
            labels.append(bytes(cur))
            cur = bytearray()
        else:
            cur += c.encode()
        i += 1
    labels.append(bytes(cur))
    return tuple(labels)


class RecordedDns:
    """Wraps dnssnoop.parse_dns while a target runs: every message the
    reader parsed and what it mapped from it, for the oracle."""

    def __init__(self):
        self.calls = []
        self.real = dnssnoop.parse_dns

    def __enter__(self):
        def recording(msg, counts):
            out = self.real(msg, counts)
            self.calls.append((bytes(msg), out))
            return out
        dnssnoop.parse_dns = recording
        return self

    def __exit__(self, *exc):
        dnssnoop.parse_dns = self.real


def _held(reader):
    n = 0
    for d in reader.frags.values():
        n += sum(len(b) for _, b in d[2])
    for s in reader.streams.values():
        n += len(s[2])
    return n


def _check_reader(reader):
    assert "parser_error" not in reader.counts, reader.counts
    assert reader.held == _held(reader), (reader.held, _held(reader))
    assert 0 <= reader.held <= reader.max_bytes
    assert len(reader.frags) <= reader.datagrams
    assert len(reader.streams) <= reader.max_streams


def _check_mappings(rec, answers):
    """No invented mapping: each one is in a valid answer record of a
    message the reader took from the input."""
    mapped = []
    for msg, out in rec.calls:
        if not out:
            continue
        justified = reference_mappings(msg)
        for ip, name, ttl in out:
            assert (ip, labels_of(name)) in justified, (ip, name, msg.hex())
            assert 0 <= ttl <= 0x7FFFFFFF
            mapped.append((ip, name))
    assert sorted(mapped) == sorted((a[1], a[2]) for a in answers), (mapped, answers)
    for client, _, _, _ in answers:
        assert _normal(client), client


def dns_target(data):
    reader = dnssnoop.Reader(datagrams=4, streams=4, max_bytes=4096)
    now = 1000
    answers = []
    with RecordedDns() as rec:
        for step, etype, pkt in packets_of(data):
            now += step
            answers += reader.feed(pkt, now, etype)
            _check_reader(reader)
    _check_mappings(rec, answers)


ETH_HEAD = 14


def dnsframe_target(data):
    """What a SOCK_RAW reader would do: the ethertype from the frame (one
    802.1Q tag skipped), the rest is the IP packet. A single packet on its
    own: every mapped address's bytes must be in the frame."""
    etype = (data[12] << 8) | data[13] if len(data) >= ETH_HEAD else None
    start = ETH_HEAD
    if etype == 0x8100 and len(data) >= ETH_HEAD + 4:
        etype = (data[16] << 8) | data[17]
        start += 4
    reader = dnssnoop.Reader()
    with RecordedDns() as rec:
        answers = reader.feed(data[start:], 0, etype)
    _check_reader(reader)
    _check_mappings(rec, answers)
    for _, ip, _, _ in answers:
        raw = bytes(addr.parse_ipv6(ip).to_bytes(16, "big")) if ":" in ip else \
            bytes(int(p) for p in ip.split("."))
        assert raw in data, ip


# -- ubus -------------------------------------------------------------------------

SIGNATURE = {"echo": {"x": ubus.BSTRING}, "typed": {"i": ubus.INT32, "t": ubus.BTABLE}}


def _echo(method, args):
    """The service's handler: every decoded value goes back out encoded."""
    if method not in SIGNATURE:
        return 3, None, "no method %r" % (method,)
    return 0, dict(args), None


def ubus_target(data):
    """data[0] picks the chunk size the socket hands over, the rest is what
    ubusd sent. Only ubus.ProtocolError may come out (ubuslink drops and
    rebuilds the connection on it)."""
    heard = []
    service = ubus.Service("spin", SIGNATURE, _echo, patterns=["spin.*"],
                           on_event=lambda name, ev: heard.append(name))
    size = CHUNKS[data[0] % len(CHUNKS)] if data else 1
    stream = data[1:]
    try:
        for i in range(0, len(stream), size):
            out = service.receive(stream[i:i + size])
            assert isinstance(out, bytes)
            assert len(service.conn.framer.buf) <= ubus.MAX_MESSAGE + size
            assert not service.conn.owed  # every INVOKE answered at once
            assert len(service.conn.pending) <= 3 + len(service.patterns)
        service.receive(b"")
    except ubus.ProtocolError:
        pass
    try:
        ubus.decode_table(stream)
    except ubus.RemoteProtocolError:
        pass


# -- UCI ------------------------------------------------------------------------

KINDS = {"int": int, "bool": bool, "str": str, "list": list}


class Scratch:
    """One file under a temporary directory, rewritten per input."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="spin-fuzz-")
        self.path = os.path.join(self.dir, "spin")

    def write(self, data):
        with open(self.path, "wb") as f:
            f.write(data)
        return self.path


_scratch = []


def uci_target(data):
    if not _scratch:
        _scratch.append(Scratch())
    sections, warnings = config.parse_uci(data.decode("utf-8", "replace"))
    for stype, name, opts in sections:
        assert isinstance(stype, str) and (name is None or isinstance(name, str))
        for k, v in opts.items():
            assert isinstance(k, str)
            assert isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))
    assert all(isinstance(w, str) for w in warnings)
    path = _scratch[0].write(data)
    cfg, warnings = config.load(path)
    assert set(cfg) == set(config.OPTIONS)
    for k, (kind, _, _) in config.OPTIONS.items():
        v = cfg[k]
        assert type(v) is KINDS[kind], (k, v)
        if kind == "int":
            assert v >= 0, (k, v)
        if kind == "list":
            assert all(isinstance(x, str) for x in v), (k, v)
    hosts = config.static_hosts(path)
    for mac, name in hosts.items():
        assert isinstance(mac, str) and isinstance(name, str), (mac, name)


# -- a real agent, for the API and HTTP targets -----------------------------------

CAMERA, LAPTOP = "02:00:00:00:00:01", "02:00:00:00:00:04"
FLOWS = (b"ipv4     2 tcp      6 117 ESTABLISHED src=192.168.8.101 dst=203.0.113.10 sport=40000 dport=443 "
         b"packets=6 bytes=400 src=203.0.113.10 dst=192.0.2.2 sport=443 dport=40000 packets=4 bytes=300 "
         b"[ASSURED] mark=0 zone=0 use=2\n"
         b"ipv4     2 udp      17 20 src=192.168.8.104 dst=198.51.100.53 sport=5353 dport=53 packets=1 "
         b"bytes=60 [UNREPLIED] src=198.51.100.53 dst=192.0.2.2 sport=53 dport=5353 packets=0 bytes=0 "
         b"mark=0 zone=0 use=2\n")


class Home:
    """The real Agent (not started: no scans, no sockets) with its blocks,
    anomalies and names parts and the web routes, as the API sees it; the
    firewall is off (the store is what the API changes). Rebuilt when its
    decisions pile up, so a long run's memory stays flat."""

    def __init__(self):
        from spin_lite import agent as agent_mod
        from spin_lite import anomalies, blocks, devices, firewall, names
        self.root = tempfile.mkdtemp(prefix="spin-fuzz-home-")
        www = os.path.join(self.root, "www")
        os.makedirs(os.path.join(www, "spin"))
        with open(os.path.join(www, "spin", "index.html"), "w") as f:
            f.write("<html>spin</html>\n")
        cfg = config.defaults()
        cfg.update(state_dir=os.path.join(self.root, "state"), run_dir=os.path.join(self.root, "run"),
                   firewall="none", dns_snoop=False, www_dir=www, token="s3cret", rpc_socket="")
        cfg["conntrack_file"] = os.path.join(self.root, "nf_conntrack")
        with open(cfg["conntrack_file"], "wb") as f:
            f.write(FLOWS)
        a = agent_mod.Agent(cfg)
        a.router_ips = set(ROUTER_IPS)
        a.scanner = conntrack.Scanner(conntrack.Lan(LAN_NETS, ROUTER_IPS), 64)  # as start() builds it
        for mac, ip in ((CAMERA, "192.168.8.101"), (LAPTOP, "192.168.8.104")):
            d = a.devices.table[mac] = devices.Device(mac, 0)
            d.ips = {ip}
            a.devices.by_ip[ip] = mac
        a.parts.append(blocks.Blocks(cfg, firewall.Off(cfg)))
        a.parts.append(anomalies.Anomalies(cfg))
        a.parts.append(names.Names(cfg))
        for p in a.parts:
            p.start(a)
        self.server = jsonrpc.Server()
        a.parts.append(self.server)
        web.Web().start(a)
        self.agent = a
        self.calls = 0

    def decisions(self):
        """What the owner decided, as every read method shows it: the state
        a refused call must leave as it was."""
        a = self.agent
        return [api.dispatch(a, m, {}) for m in ("blocks", "mutes", "ignored", "anomalies")] + [
            dict(a.names.owners)]


_home = []


def home():
    if not _home or _home[0].calls > 2000:
        _home[:] = [Home()]
    h = _home[0]
    h.calls += 1
    return h


# -- HTTP and JSON-RPC -------------------------------------------------------------

def _check_response(raw):
    end = raw.find(b"\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 ") and end > 0, raw[:80]
    head = raw[:end].decode().split("\r\n")
    code = int(head[0].split(" ")[1])
    assert code in jsonrpc.REASONS, code
    length = [h for h in head if h.startswith("Content-Length: ")]
    assert len(length) == 1 and int(length[0][16:]) == len(raw) - end - 4
    return code, raw[end + 4:]


def http_target(data):
    """data[0]: does the listener need the token (a non-loopback one); the
    rest is what the peer sent. parse_request may refuse with ValueError
    (answered 400/413); whatever it accepts is answered with a whole HTTP
    response, and a JSON-RPC body with JSON."""
    h = home()
    need_token = bool(data[:1]) and data[0] & 1 == 1
    buf = data[1:]
    try:
        req = jsonrpc.parse_request(buf)
    except ValueError:
        return
    if req is None:
        return
    method, path, headers, body = req
    assert isinstance(body, bytes) and len(body) == int(headers.get("content-length", "0"))
    code, out = _check_response(h.server.respond(h.agent, req, need_token))
    if code == 200 and path.split("?")[0] in ("/", "/rpc", "/ubus") and method == "POST":
        jsonrpc.json.loads(out)
    reply = jsonrpc.handle_rpc(h.agent, body)
    jsonrpc.json.dumps(reply)


# -- the API -----------------------------------------------------------------------

# values of every type an argument may meet from ubus or JSON
VALUES = (None, True, False, 0, 1, -1, 2 ** 31, 2 ** 63, -2 ** 63, 1.5, float("nan"), "", " ",
          "02:00:00:00:00:01", "02-00-00-00-00-04", "02:00:00:00:00:0g", "192.168.8.101",
          "203.0.113.7", "203.0.113.0/24", "2001:db8::1", "2001:db8::/129", "::ffff:1.2.3.4",
          "tcp", "udp", "icmp", "outbound_scan", "x" * 300, "\u0661.\u0662.\u0663.\u0664", "1.2.3.4\n",
          [], [1], {}, {"a": 1}, "camera", 60, 1000, 2 ** 31 - 1)


def _value(draw):
    k = draw.below(len(VALUES) + 3)
    if k < len(VALUES):
        return VALUES[k]
    if k == len(VALUES):
        return draw.below(70000) - 5000
    if k == len(VALUES) + 1:
        return draw.raw(draw.below(40)).decode("utf-8", "replace")
    return draw.below(2 ** 16) * 2 ** 16


def api_args(draw):
    names = sorted(api.METHODS)
    method = names[draw.below(len(names))] if draw.below(16) else draw.raw(8).decode("utf-8", "replace")
    schema = api.METHODS.get(method, ({},))[0]
    args = {}
    for arg in sorted(schema):
        if draw.below(4):
            args[arg] = _value(draw)
    if not draw.below(8):
        args[draw.raw(6).decode("utf-8", "replace")] = _value(draw)
    if not draw.below(16):
        args = [args] if draw.below(2) else "args"
    return method, args


def api_target(data):
    h = home()
    draw = Draw(data)
    for _ in range(4):
        method, args = api_args(draw)
        before = h.decisions()
        try:
            reply = api.dispatch(h.agent, method, args)
        except api.ApiError as e:
            assert e.status in api.STATUS_NAMES and e.status != api.UNKNOWN_ERROR, (method, args, e.message)
            assert isinstance(e.message, str) and e.message
            assert h.decisions() == before, (method, args)
            continue
        jsonrpc.json.dumps(reply)
        if not api.METHODS[method][2]:
            assert h.decisions() == before, (method, args)


# -- MQTT: what the broker sends the agent ------------------------------------------

MQTT_CMD = "spin/home/router/cmd"
MQTT_CHUNKS = (16384, 1, 7, 300)


def _mqtt_link(h):
    link = getattr(h, "mqtt_link", None)
    if link is None:
        cfg = dict(h.agent.cfg)
        cfg.update(mqtt_broker="127.0.0.1", mqtt_agent="router", mqtt_queue=8)
        link = h.mqtt_link = mqttlink.Link(cfg)
        link.agent = h.agent
        link.name = "router"
        link.base = "spin/home/router/"  # no client: queue() only keeps what it would send
    return link


def mqtt_target(data):
    """data[0] picks the chunk size the socket hands over; the rest is the
    stream from the broker. Only ProtocolError may come out of the parser;
    what it decodes is what a client may rely on; each order on the cmd
    topic is answered on ack with a known status, and a refused one changes
    no decision."""
    h = home()
    link = _mqtt_link(h)
    size = MQTT_CHUNKS[data[0] % len(MQTT_CHUNKS)] if data else 1
    stream = data[1:]
    reader = mqtt.Reader(max_packet=mqttlink.ORDER_MAX + 1024)
    for at in range(0, len(stream), size):
        try:
            packets = reader.feed(stream[at:at + size])
        except mqtt.ProtocolError:
            return  # the client drops the connection here
        assert len(reader.buf) <= reader.max_packet + 5 + size
        for kind, flags, body in packets:
            try:
                p = mqtt.decode(kind, flags, body)
            except mqtt.ProtocolError:
                return
            assert p[0] in ("connack", "publish", "puback", "suback", "pingresp"), p
            if p[0] != "publish":
                continue
            _, topic, payload, qos, retain, pid = p
            assert isinstance(topic, str) and "+" not in topic and "#" not in topic
            assert qos in (0, 1) and (pid > 0) == (qos == 1) and pid < 65536
            before = h.decisions()
            link.ring = []
            link.waiting = [0, 0]
            link.ring_bytes = 0
            link._message(MQTT_CMD if topic.startswith("c") else topic, payload, retain)
            if not link.ring:
                assert not topic.startswith("c")
                continue
            topic_out, ack = link.ring[-1][:2]
            assert topic_out == "spin/home/router/ack"
            ack = jsonrpc.json.loads(ack)
            assert ack["status"] in api.STATUS_NAMES and ack["status"] != api.UNKNOWN_ERROR, ack
            if ack["status"]:
                assert ack["message"] and h.decisions() == before, ack


CONTROLLER_TOPICS = ("status", "digest", "device", "anomaly", "ack", "block", "cmd", "figures")
_controller = []


def controller_target(data):
    """data[0]: the agent (of four) and the topic; the rest its payload.
    A message is merged whole or not at all: one the controller refuses
    counts as malformed and leaves the view as it was."""
    from spin_lite import controller
    if not _controller or _controller[0].digests > 5000:
        cfg = config.defaults()
        cfg.update(mqtt_broker="127.0.0.1", detect_mode="alert")
        _controller[:] = [controller.Home(cfg)]
    c = _controller[0]
    pick = data[0] if data else 0
    topic = "spin/home/a%d/%s" % (pick & 3, CONTROLLER_TOPICS[(pick >> 2) % len(CONTROLLER_TOPICS)])
    view = lambda: jsonrpc.json.dumps([c.digests, c.repeats, sorted(c.devices),  # noqa: E731
                                       [c.device_info(m) for m in sorted(c.devices)],
                                       [[m, sorted((a, s.c) for a, s in c.pending[m].items())]
                                        for m in sorted(c.pending)]], sort_keys=True)
    before, bad = view(), c.malformed
    c.message(topic, data[1:], False)
    if c.malformed > bad:
        assert view() == before, topic
    for m in c.devices:
        assert addr.parse_mac(m) == m, m
    assert len(c.lags) <= controller.LAGS_KEPT and len(c.seen) <= controller.SEEN_KEPT
    if c.pending and (c.digests + c.malformed) % 64 == 0:
        c.close_scan()  # what figures left for the controller's detector: never a crash
        assert len(c.verdicts) <= controller.ORDERS_KEPT


TARGETS = {
    "conntrack": conntrack_target,
    "dns": dns_target,
    "dnsframe": dnsframe_target,
    "ubus": ubus_target,
    "uci": uci_target,
    "http": http_target,
    "api": api_target,
    "mqtt": mqtt_target,
    "controller": controller_target,
}


def corpus(name):
    """(file name, bytes) of the kept inputs of one target: seeds, and every
    crash found (tests/data/fuzz/<name>/)."""
    where = os.path.join(CORPUS, name)
    if not os.path.isdir(where):
        return []
    out = []
    for fn in sorted(os.listdir(where)):
        with open(os.path.join(where, fn), "rb") as f:
            out.append((fn, f.read()))
    return out
