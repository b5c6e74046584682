"""The agent's RSS with MQTT publishing off, on (digests), and on with
the detector's figures, and what the MQTT client costs to import (issue 15).

    python3 bench/mqtt_rss.py      (root: a network namespace of its own)

In its own namespace: the bench's home table (16,384 flows, 250 devices,
bench/ctfill.py), a mosquitto on loopback, and the agent living a
simulated hour (bench/rss_probe.py: one scan a minute, every device
moving) in fresh `python3 -S` processes: mqtt_broker empty and publishing
every digest, each with the detector off and on (on, the agent also
publishes each scan's figures for a controller's detector). Then the import cost, in
fresh interpreters: the agent's modules, plus mqtt and mqttlink, plus ssl
(TLS), on CPython, and the heap MicroPython takes for mqtt and mqttlink.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE]

import run  # noqa: E402  (the bench's namespace, home and probe)

IMPORTS = ("import spin_lite.agent", "import spin_lite.agent, spin_lite.mqttlink",
           "import spin_lite.agent, spin_lite.mqttlink, ssl")
RSS_LINE = ("d=open('/proc/self/status').read();"
            "print('{\"rss_kb\": %s}' % [l.split()[1] for l in d.splitlines() if l.startswith('VmRSS')][0])")
MPY = ("import gc\ngc.collect(); a = gc.mem_alloc()\nfrom spin_lite import agent\n"
       "gc.collect(); b = gc.mem_alloc()\nfrom spin_lite import mqttlink\n"
       "gc.collect(); c = gc.mem_alloc()\nprint('{\"agent\": %d, \"mqtt\": %d}' % (b - a, c - b))\n")


def broker(work):
    conf = os.path.join(work, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write("user root\nallow_anonymous true\npersistence false\nlistener 1883 127.0.0.1\n")
    log = open(os.path.join(work, "mosquitto.log"), "wb")
    p = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", conf],
                         stdout=log, stderr=log)
    for _ in range(100):
        if b"running" in open(os.path.join(work, "mosquitto.log"), "rb").read():
            return p
        time.sleep(0.05)
    return p


def inside(work):
    import ctfill
    run.out("== agent RSS, MQTT off / on / on with figures (%d flows, %d devices, 62 simulated minutes;"
            " load %s)" % (run.FLOWS, run.DEVICES, open("/proc/loadavg").read().split()[0]))
    with open("/proc/sys/net/netfilter/nf_conntrack_acct", "w") as f:
        f.write("1\n")
    entries, devs = ctfill.home_table(run.FLOWS, run.DEVICES)
    run.build_home(devs, work)
    ctfill.insert(entries)
    with open("/proc/net/nf_conntrack", "rb") as f:
        text = f.read()
    cfg = run.agent_config(work)
    cfg.update(ctevents=False, dns_snoop=False, firewall="none", rpc_socket="", ubus_socket="")
    snaps = run.moved_snapshots(text, 62, work, share=0.1, name="part")
    mosq = broker(work)
    on = {"mqtt_broker": "127.0.0.1:1883", "mqtt_agent": "bench"}
    # with the detector on, the agent also publishes each scan's figures
    # (mqttlink, topic figures); off, digests alone: the figures' cost is
    # what MQTT adds with the detector on beyond what it adds without
    runs = (("MQTT off, detector off", {"detect": False}),
            ("MQTT on,  detector off (digests)", dict(on, detect=False)),
            ("MQTT off, detector on", {"detect": True}),
            ("MQTT on,  detector on (digests + figures)", dict(on, detect=True)))
    rows = {}
    try:
        for i, (label, extra) in enumerate(runs):
            spec = os.path.join(work, "probe-%d.json" % i)
            with open(spec, "w") as f:
                json.dump({"cfg": dict(cfg, **extra), "snaps": snaps, "buckets": 62, "pump": True}, f)
            rows[label] = run.probe([sys.executable, "-S", os.path.join(HERE, "rss_probe.py"), spec], work)
    finally:
        mosq.send_signal(signal.SIGTERM)
        mosq.wait(10)
    for label, _ in runs:
        r = rows[label] or {}
        if "error" in r or "rss_kb" not in r:
            run.out("  %-42s failed: %s" % (label, r.get("error")))
            continue
        m = r.get("mqtt") or {}
        run.out("  %-42s RSS %5.1f MB (peak %.1f; after imports %.1f)%s"
                % (label, r["rss_kb"] / 1024.0, r["hwm_kb"] / 1024.0, r["import_kb"] / 1024.0,
                   "   digests %d (last %.1f KB), sent %d, figures %d, dropped %d, state %s"
                   % (m.get("seq", 0), m.get("digest_bytes", 0) / 1024.0, m.get("sent", 0),
                      m.get("figures_sent", 0), m.get("dropped", 0), m.get("state")) if m else ""))

    def mb(label):
        return (rows.get(label) or {}).get("rss_kb", 0) / 1024.0
    labels = [label for label, _ in runs]
    if all(mb(label) for label in labels):
        digests = mb(labels[1]) - mb(labels[0])
        with_figures = mb(labels[3]) - mb(labels[2])
        run.out("  MQTT adds: %+.1f MB without the detector (digests), %+.1f MB with it (digests +"
                " figures): the figures %+.1f MB; on / off with the detector %.2fx"
                % (digests, with_figures, with_figures - digests, mb(labels[3]) / mb(labels[2])))
    return 0


def imports():
    run.out("== import cost of the MQTT link (fresh `python3 -S`, median of 3)")
    base = None
    for code in IMPORTS:
        kbs = sorted((run.probe([sys.executable, "-S", "-c", code + "\n" + RSS_LINE], HERE) or {})
                     .get("rss_kb", 0) for _ in range(3))
        kb = kbs[1]
        base = base or kb
        run.out("  %-50s %6.1f MB  (+%.1f MB)" % (code, kb / 1024.0, (kb - base) / 1024.0))
    mpy = shutil.which("micropython")
    if mpy:
        p = subprocess.run([mpy, "-c", MPY], env=dict(os.environ, MICROPYPATH=run.SRC),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        try:
            r = json.loads(p.stdout.decode().strip().splitlines()[-1])
            run.out("  MicroPython heap: the agent's modules %.1f KB, mqtt + mqttlink %.1f KB more"
                    % (r["agent"] / 1024.0, r["mqtt"] / 1024.0))
        except (ValueError, IndexError, KeyError):
            run.out("  MicroPython: %s" % p.stderr.decode(errors="replace")[-200:])


if __name__ == "__main__":
    if sys.argv[1:2] == ["--inside"]:
        sys.exit(inside(sys.argv[2]))
    imports()
    if not shutil.which("mosquitto") and not os.path.exists("/usr/sbin/mosquitto"):
        run.out("mqtt_rss: mosquitto is not installed (tools/apt-packages.txt)")
        sys.exit(0)
    sys.exit(run.in_namespace("mqtt", __file__))
