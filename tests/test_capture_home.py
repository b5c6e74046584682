"""The owner captures a device's packets: stories in the simulated home.

The camera streams to its cloud (100 KB/s here), the speaker pulls its
bursts beside it. The agent runs in the router namespace with real
tcpdump (through a wrapper that logs every argument list it is given)
and then with its own AF_PACKET socket; Debian's tshark reads the files.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from tests.test_web_standalone import WWW
from tests.web.browser import Browser, available
from tests.world.home import DEVICES, SRC, Home
from tests.world.webproxy import forward

pytestmark = pytest.mark.netns

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAMERA, SPEAKER, THERMOSTAT = DEVICES["camera"][0], DEVICES["speaker"][0], DEVICES["thermostat"][0]
HOSTILE = [";rm -rf /", "02:00:00:00:00:01;rm -rf /", "02:00:00:00:00:01 -w /etc/passwd",
           "-w/etc/passwd", "$(reboot)", "02:00:00:00:00:01\n-w/etc/passwd", "02 00 00 00 00 01",
           "`touch /tmp/pwned`", "-i lo"]
CONFIG = {"capture_max": 2, "capture_seconds_max": 30, "capture_kb_max": 4096, "capture_free_kb": 1024}


def tool_wrapper(home):
    """A tcpdump that writes each argument list it is given, one argument a
    line, before it becomes the real one."""
    path = home.path("tcpdump")
    with open(path, "w") as f:
        f.write("#!/bin/sh\nfor a in \"$@\"; do printf '%%s\\n' \"$a\"; done >> %s\necho --- >> %s\n"
                "exec %s \"$@\"\n" % (home.path("tcpdump.argv"), home.path("tcpdump.argv"),
                                      shutil.which("tcpdump")))
    os.chmod(path, 0o755)
    return path


def tshark(*args):
    p = subprocess.run(["tshark", "-n"] + list(args), capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout


def frames(path):
    """(eth.src, eth.dst, ip src, ip dst, frame length) of every frame."""
    out = tshark("-r", path, "-T", "fields", "-E", "separator=/t", "-e", "eth.src", "-e", "eth.dst",
                 "-e", "ip.src", "-e", "ip.dst", "-e", "ipv6.src", "-e", "ipv6.dst", "-e", "frame.len",
                 "-e", "tcp.port")
    rows = []
    for line in out.splitlines():
        f = line.split("\t")
        f += [""] * (8 - len(f))
        rows.append((f[0], f[1], f[2] or f[4], f[3] or f[5], int(f[6]), f[7]))
    return rows


def total_bytes(home, mac):
    h = home.call("history", {"mac": mac, "minutes": 60})
    rows = list(h["points"]) + [h["current"]]
    return sum(p["bytes_out"] + p["bytes_in"] for p in rows if p)


def capture(home, cid):
    for c in home.call("captures")["captures"]:
        if c["id"] == cid:
            return c
    return None


def status_of(home, method, args):
    from spin_lite.jsonrpc import RemoteError
    try:
        home.call(method, args)
    except RemoteError as e:
        return e.status, str(e)
    return 0, ""


def download(home, path):
    """GET path from the agent's unix socket, as the standalone page would: (code, body)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(home.rpc_socket)
    s.sendall(b"GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" % path.encode())
    raw = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        raw += chunk
    s.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def capture_file(home, c):
    return os.path.join(home.path("run", "captures"), c["file"])


@pytest.fixture(scope="module")
def home():
    with Home(firewall="nft", agent=False, rates={"camera": 100000}) as h:
        h.start_agent(capture_tcpdump=tool_wrapper(h), www_dir=WWW, **CONFIG)
        h.wait_for(lambda: len(h.call("devices")["devices"]) == len(DEVICES), timeout=30,
                   what="every device in the agent's table")
        yield h


def settled(home, mac):
    """The device's digest total once two scans in a row add nothing."""
    last = [None, None]

    def same():
        scans = home.call("status")["scans"]
        if scans == last[1]:
            return None
        now = total_bytes(home, mac)
        was, last[0], last[1] = last[0], now, scans
        return (now,) if was == now else None  # a tuple: 0 bytes is an answer too
    return home.wait_for(same, timeout=20, what="the camera's digest to settle")[0]


def test_the_camera_captured_for_a_window_holds_its_packets_only_and_its_digests_bytes(home):
    home.stop_traffic("camera")
    before = settled(home, CAMERA)
    speaker_before = json.load(open(home.path("traffic-speaker.json")))["bytes_in"]
    c = home.call("capture_start", {"mac": CAMERA, "seconds": 10})
    assert c["state"] == "running" and c["tool"] == "tcpdump" and c["device"] == "camera"
    home.wait_for(lambda: capture(home, c["id"])["listening"], timeout=10, what="tcpdump to listen")
    home.start_traffic("camera")
    home.wait_for(lambda: json.load(open(home.path("traffic-camera.json"))).get("bytes_out", 0) > 300000,
                  timeout=15, what="the camera's upload")
    home.sh("camera", "busybox", "ping", "-6", "-c", "2", "fd00:8::1")
    home.stop_traffic("camera")
    done = home.wait_for(lambda: (lambda x: x if x["state"] != "running" else None)(capture(home, c["id"])),
                         timeout=20, what="the capture to end")
    assert (done["state"], done["why"]) == ("done", "time")
    after = settled(home, CAMERA)
    # the speaker pulled a burst while the camera was captured
    assert json.load(open(home.path("traffic-speaker.json")))["bytes_in"] > speaker_before

    path = capture_file(home, done)
    # the owner downloads it from the page: the same bytes as the file
    code, body = download(home, "/capture/%d.pcap" % c["id"])
    assert code == 200 and body == open(path, "rb").read()
    # and through the API, page by page, as LuCI fetches it over ubus
    import base64
    got, offset = b"", 0
    while True:
        part = home.call("capture_data", {"id": c["id"], "offset": offset})
        got += base64.b64decode(part["data"])
        offset += part["length"]
        if not part["more"]:
            break
    assert got == body and part["size"] == len(body)
    assert status_of(home, "capture_data", {"id": c["id"], "offset": len(body) + 1})[0] == 2
    assert download(home, "/capture/999.pcap")[0] == 404 and download(home, "/capture/../spin")[0] == 404
    st = os.stat(path)
    assert st.st_mode & 0o777 == 0o600 and os.stat(os.path.dirname(path)).st_mode & 0o777 == 0o700
    rows = frames(path)
    assert len(rows) == done["packets"] > 20  # veth passes TSO frames of up to 64 KB whole
    cam = home.devices["camera"]
    spk = home.devices["speaker"]
    for src, dst, ipsrc, ipdst, _, _ in rows:
        assert CAMERA in (src, dst), (src, dst)
        assert SPEAKER not in (src, dst)
        assert spk.ip4 not in (ipsrc, ipdst) and spk.ip6 not in (ipsrc, ipdst)
    assert any(cam.ip6 in (r[2], r[3]) for r in rows), "no IPv6 packet of the camera"
    assert any(cam.ip4 in (r[2], r[3]) for r in rows)
    # the upload's bytes at the IP layer (what conntrack counts) against the digest
    upload = sum(n - 14 for _, _, _, _, n, ports in rows if "9000" in ports.split(","))
    moved = after - before
    assert moved > 300000
    print("capture %d bytes, digest %d bytes" % (upload, moved))
    assert abs(upload - moved) <= 0.1 * moved, (upload, moved)


def test_a_50_kb_limit_stops_the_streaming_camera_with_reason_size(home):
    home.start_traffic("camera")
    c = home.call("capture_start", {"mac": CAMERA, "seconds": 30, "max_kb": 50})
    done = home.wait_for(lambda: (lambda x: x if x["state"] != "running" else None)(capture(home, c["id"])),
                         timeout=20, what="the capture to end")
    assert (done["state"], done["why"]) == ("stopped", "size")
    path = capture_file(home, done)
    assert 40 * 1024 < os.path.getsize(path) <= 50 * 1024 == done["max_kb"] * 1024
    assert len(frames(path)) == done["packets"]  # whole packets: tshark reads it to the end
    home.call("capture_delete", {"id": c["id"]})
    assert not os.path.exists(path) and capture(home, c["id"]) is None


def test_the_third_capture_is_refused_and_unknown_ids_are_not_found(home):
    a = home.call("capture_start", {"mac": CAMERA, "seconds": 30})
    b = home.call("capture_start", {"mac": SPEAKER, "seconds": 30})
    status, why = status_of(home, "capture_start", {"mac": THERMOSTAT, "seconds": 30})
    assert status == 2 and "capture_max" in why
    assert [c["mac"] for c in home.call("captures")["captures"] if c["state"] == "running"] == [CAMERA, SPEAKER]
    stopped = home.call("capture_stop", {"id": a["id"]})
    assert (stopped["state"], stopped["why"]) == ("stopped", "owner")
    c = home.call("capture_start", {"mac": THERMOSTAT, "seconds": 30})  # room again
    for cid in (b["id"], c["id"]):
        home.call("capture_stop", {"id": cid})
    assert status_of(home, "capture_stop", {"id": 9999})[0] == 4
    assert status_of(home, "capture_delete", {"id": 9999})[0] == 4
    for args in ({"mac": CAMERA, "seconds": 31}, {"mac": CAMERA, "seconds": 0},
                 {"mac": CAMERA, "max_kb": 4097}, {"mac": CAMERA, "seconds": "10"}):
        assert status_of(home, "capture_start", args)[0] == 2, args
    assert status_of(home, "capture_start", {"mac": "02:00:00:00:00:99"})[0] == 4
    assert not [c for c in home.call("captures")["captures"] if c["state"] == "running"]


def test_hostile_macs_are_refused_and_no_process_ever_sees_them(home):
    log = home.path("tcpdump.argv")
    seen_before = open(log).read() if os.path.exists(log) else ""
    listed = len(home.call("captures")["captures"])
    for mac in HOSTILE:
        status, _ = status_of(home, "capture_start", {"mac": mac})
        assert status == 2, mac
        # nothing alive holds it now
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    argv = open("/proc/%s/cmdline" % pid, "rb").read().decode("utf-8", "replace")
                except OSError:
                    continue
                assert mac.strip() not in argv.replace("\0", " "), (pid, argv)
    assert len(home.call("captures")["captures"]) == listed
    # and no tcpdump was ever given anything but a parsed MAC and our own file
    assert (open(log).read() if os.path.exists(log) else "") == seen_before
    runs = [r.strip("\n").split("\n") for r in seen_before.split("---\n") if r.strip()]
    assert runs
    captures = home.path("run", "captures")
    for argv in runs:
        assert argv[:-4] == ["-i", "br-lan", "-n", "-U", "-s", "0", "-Z", "root", "-G", argv[9], "-W", "1",
                             "-w"]
        assert argv[9] in ("12", "32", "5")  # seconds + 2 of the captures above
        assert argv[-4].startswith(captures + "/capture-") and argv[-3:-1] == ["ether", "host"]
        assert argv[-1] in (CAMERA, SPEAKER, THERMOSTAT)


def test_the_owner_captures_the_camera_from_the_page_and_downloads_the_file(home):
    why = available()
    if why:
        pytest.fail("no browser: " + why)
    home.start_traffic("camera")
    with forward(home.rpc_socket) as fw, Browser() as b:
        b.goto(fw.url + "/spin/?view=captures")
        b.wait("document.querySelector('#spin-capture-form')")
        b.eval("document.getElementById('spin-capture-mac').value = '%s'" % CAMERA)
        b.eval("document.getElementById('spin-capture-seconds').value = '3'")
        b.click("#spin-capture-form button[type=submit]")
        c = home.wait_for(lambda: [x for x in home.call("captures")["captures"]
                                   if x["mac"] == CAMERA and x["seconds"] == 3], what="the page's capture")[-1]
        row = "#spin-capture-table tr[data-id='%d']" % c["id"]
        b.wait("(document.querySelector(\"%s\") || {dataset: {}}).dataset.state == 'done'" % row, timeout=20)
        b.click(row + " [data-action=download]")
        b.wait("document.getElementById('spin-capture-file')")
        size = b.eval("fetch(document.getElementById('spin-capture-file').href).then(r => r.arrayBuffer())"
                      ".then(a => a.byteLength)")
        done = capture(home, c["id"])
        assert size == done["bytes"] == os.path.getsize(capture_file(home, done)) > 24
        assert b.logs() == []
        b.click(row + " [data-action=delete]")
        b.wait("!document.querySelector(\"%s\")" % row)
        assert capture(home, c["id"]) is None
        # the Devices page starts a capture of the camera with one click: a
        # minute, or capture_seconds_max when that is less
        b.goto(fw.url + "/spin/?view=devices")
        b.click("tr[data-mac='%s'] [data-action=capture]" % CAMERA)
        b.wait("document.querySelector('.spin-capture-started')")
        cid = b.eval("+document.querySelector('.spin-capture-started').dataset.id")
        started = capture(home, cid)
        assert (started["mac"], started["seconds"], started["state"]) == (CAMERA, 30, "running")
        assert "camera for 30 seconds" in b.eval("document.querySelector('.spin-capture-started').innerText")
        home.call("capture_delete", {"id": cid})


def test_without_tcpdump_the_agents_socket_captures_and_a_full_filesystem_stops_it(home):
    small = home.path("small")
    os.mkdir(small)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1536k", "tmpfs", small], check=True)
    try:
        home.stop_agent()
        home.start_agent(capture_tcpdump="", capture_dir=small, rpc_listen="192.168.8.1:8099",
                         token="s3cret-owner", **CONFIG)
        home.wait_for(lambda: home.call("device", {"mac": CAMERA}), timeout=15, what="the camera")
        home.start_traffic("camera")
        c = home.call("capture_start", {"mac": CAMERA, "seconds": 30})
        assert c["tool"] == "socket"
        # the laptop pings the camera: frames the bridge forwards between
        # two LAN ports, which br-lan sees only while it is promiscuous
        home.sh("laptop", "busybox", "ping", "-c", "2", "-W", "1", home.devices["camera"].ip4)
        done = home.wait_for(lambda: (lambda x: x if x["state"] != "running" else None)(capture(home, c["id"])),
                             timeout=20, what="the capture to end")
        assert (done["state"], done["why"]) == ("stopped", "space")
        path = os.path.join(small, done["file"])
        assert os.stat(path).st_mode & 0o777 == 0o600
        rows = frames(path)
        assert len(rows) == done["packets"] > 20 and done["drops"] >= 0
        assert all(CAMERA in (r[0], r[1]) for r in rows)
        laptop = home.devices["laptop"].ip4
        assert [r for r in rows if r[2] == laptop and r[3] == home.devices["camera"].ip4], "no LAN-to-LAN frame"
        # from the LAN the file needs the token, as the API does
        url = "http://192.168.8.1:8099/capture/%d.pcap" % c["id"]
        out = home.sh("laptop", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url)
        assert out == "401"
        got = home.path("got.pcap")
        home.sh("laptop", "curl", "-sf", "-H", "Authorization: Bearer s3cret-owner", "-o", got, url)
        assert open(got, "rb").read() == open(path, "rb").read()
        # too little room left to start another
        status, why = status_of(home, "capture_start", {"mac": CAMERA})
        assert status == 2 and "capture_free_kb" in why
        # the agent stops: its files go (capture_keep off)
        home.stop_agent()
        assert not os.path.exists(path)
    finally:
        home.stop_agent()
        for _ in range(50):
            if subprocess.run(["umount", small]).returncode == 0:
                break
            time.sleep(0.1)


def test_an_alert_about_a_watched_device_carries_its_last_packets(home):
    from tests.test_anomalies import DRIVER, say, silence, verdict
    home.stop_agent()
    home.verdicts = home.path("verdicts.json")
    home.write_agent_config(capture_tcpdump="", watch_packets=64, **CONFIG)
    home.agent = home.popen("router", [sys.executable, "-u", "-c", DRIVER, SRC, home.agent_config, home.verdicts],
                            label="agent", log=home.agent_log, env={"PYTHONPATH": SRC + ":" + REPO})
    home.wait_for(home._agent_answers, timeout=15, what="the agent's RPC socket")
    home.wait_for(lambda: home.call("device", {"mac": CAMERA}), timeout=15, what="the camera")
    assert status_of(home, "watch", {"mac": CAMERA, "packets": 65})[0] == 2
    assert status_of(home, "unwatch", {"mac": CAMERA})[0] == 4
    assert home.call("watch", {"mac": CAMERA})["size"] == 64
    home.start_traffic("camera")
    home.wait_for(lambda: home.call("watching")["watching"][0]["packets"] == 64, timeout=15,
                  what="a full ring of the camera's packets")
    say(home, verdict(CAMERA, severity="alert"))
    try:
        rec = home.wait_for(lambda: [r for r in home.call("anomalies", {"mac": CAMERA})["anomalies"]
                                     if r.get("pcap")], timeout=15, what="the camera's anomaly")[0]
    finally:
        silence(home)
    assert home.call("anomaly", {"id": rec["id"]})["pcap"] == rec["pcap"]
    assert rec["pcap"]["packets"] == 64
    c = capture(home, rec["pcap"]["id"])
    assert (c["state"], c["why"], c["tool"]) == ("done", "anomaly %d" % rec["id"], "watch")
    path = capture_file(home, c)
    assert os.stat(path).st_mode & 0o777 == 0o600
    rows = frames(path)
    assert len(rows) == 64 and all(CAMERA in (r[0], r[1]) for r in rows)
    assert download(home, "/capture/%d.pcap" % c["id"]) == (200, open(path, "rb").read())
    home.call("unwatch", {"mac": CAMERA})
    assert home.call("watching")["watching"] == []
