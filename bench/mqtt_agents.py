"""Many agents, one broker, one controller (issue 15 item 6, in part).

    python3 bench/mqtt_agents.py [AGENTS]     (root: a namespace of its own; 1,000 by default)

In its own network namespace: a mosquitto on loopback, `spin controller`
in its own process, and AGENTS MQTT connections from this process (the
project's own client, in one poll loop), each an agent of the home with
five devices. First a burst: every agent publishes one digest at once;
then a steady phase of 30 s at the rate of one digest per agent per
minute. Printed: the controller's throughput (digests merged per second
in the burst), end-to-end lag (publish -> merged, from the controller's
own p50/p99 over its latest 1,024 digests) and the controller's RSS.

Then the same with two controllers in one shared subscription group
(`spin controller --share bench --id cN`): the broker hands each digest
to one of them, so the load is split, and so is the home: each one's
view holds only the digests it got (README "MQTT").
"""

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE]

import run  # noqa: E402

DEVICES_EACH = 5
STEADY_S = 30


def digest(k, seq, started):
    name = "a%d" % k
    now = time.time()
    devs = [{"mac": "02:00:%02x:%02x:00:%02x" % (k >> 8, k & 255, i),
             "bytes_out": 1000 * i, "bytes_in": 20000 * i, "packets_out": 10 * i, "packets_in": 20 * i,
             "conns": i, "unreplied": 0, "remotes": i, "ports": 1, "top": [["203.0.113.%d" % i, 21000 * i]]}
            for i in range(1, DEVICES_EACH + 1)]
    # t + bucket_seconds = now: the controller's lag is publish -> merged
    return json.dumps({"v": 1, "agent": name, "started": started, "seq": seq, "t": now - 1,
                       "bucket_seconds": 1, "devices": devs}, separators=(",", ":"))


def start_controllers(work, k):
    """k controllers (k > 1: one shared subscription group); their sockets."""
    procs, socks = [], []
    for j in range(k):
        sock = os.path.join(work, "controller-%d-%d.sock" % (k, j))
        conf = os.path.join(work, "controller-%d-%d.conf" % (k, j))
        with open(conf, "w") as f:
            f.write("config spin 'main'\n\toption mqtt_broker '127.0.0.1:1883'\n"
                    "\toption rpc_socket '%s'\n\toption www_dir ''\n" % sock)
        argv = [sys.executable, "-m", "spin_lite", "controller", "-c", conf]
        if k > 1:
            argv += ["--share", "bench", "--id", "c%d" % j]
        procs.append(subprocess.Popen(argv, stdout=open(conf + ".log", "wb"), stderr=subprocess.STDOUT,
                                      env=dict(os.environ, PYTHONPATH=run.SRC)))
        socks.append(sock)
    return procs, socks


def stop(procs):
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def phase(loop, clients, socks, seqs, started):
    """The burst and the steady phase against the controllers at socks."""
    from spin_lite import jsonrpc
    n = len(clients)
    k = len(socks)

    def statuses():
        return [jsonrpc.call(s, "status") for s in socks]

    def merged():
        return sum(s["digests"] for s in statuses())
    t0 = time.time()
    while time.time() - t0 < 20:
        try:
            if all(s["mqtt"]["state"] == "up" for s in statuses()):
                break
        except OSError:
            pass
        time.sleep(0.1)
    time.sleep(0.5)  # their SUBSCRIBE reached the broker
    base = merged()
    t0 = time.time()
    for i, c in enumerate(clients):
        seqs[i] += 1
        c.publish("spin/home/a%d/digest" % i, digest(i, seqs[i], started), qos=1)
        if i % 50 == 0:
            loop.run_once(0)
    sent_s = time.time() - t0
    while merged() - base < n and time.time() - t0 < 120:
        loop.run_once(10)
    burst_s = time.time() - t0
    st = statuses()
    run.out("  %d controller%s, burst: %d digests published in %.2f s, merged in %.2f s: %.0f digests/s;"
            " lag p50 %s s, p99 %s s; controller RSS %s MB"
            % (k, "s" if k > 1 else "", n, sent_s, burst_s, (merged() - base) / burst_s,
               "/".join("%.3f" % s["lag_p50"] for s in st), "/".join("%.3f" % s["lag_p99"] for s in st),
               "/".join("%.1f" % (s["rss_kb"] / 1024.0) for s in st)))
    period = 60.0 / n
    base = merged()
    t0 = time.time()
    sent = 0
    while time.time() - t0 < STEADY_S:
        due = t0 + sent * period
        if time.time() >= due:
            i = sent % n
            seqs[i] += 1
            clients[i].publish("spin/home/a%d/digest" % i, digest(i, seqs[i], started), qos=1)
            sent += 1
        loop.run_once(max(0, int((due - time.time()) * 1000)))
    while merged() - base < sent and time.time() - t0 < STEADY_S + 60:
        loop.run_once(10)
    lags = sorted(a["lag"] for s in socks for a in jsonrpc.call(s, "agents")["agents"]
                  if int(a["agent"][1:]) < min(sent, n) and a["lag"] is not None)
    st = statuses()
    run.out("  %d controller%s, steady: %d digests in %d s (%.1f/s), all merged: %s; lag p50 %.3f s,"
            " p99 %.3f s; controller RSS %s MB; devices %s (each controller's view)"
            % (k, "s" if k > 1 else "", sent, STEADY_S, sent / STEADY_S, merged() - base >= sent,
               lags[len(lags) // 2], lags[min(len(lags) - 1, int(0.99 * len(lags)))],
               "/".join("%.1f" % (s["rss_kb"] / 1024.0) for s in st), "/".join(str(s["devices"]) for s in st)))


def inside(work, n):
    from spin_lite import agent, mqtt
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * n + 256)), hard))
    conf = os.path.join(work, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write("user root\nallow_anonymous true\npersistence false\nlistener 1883 127.0.0.1\n"
                "max_queued_messages 100000\nmax_inflight_messages 100\n")
    mlog = open(os.path.join(work, "mosquitto.log"), "wb")
    mosq = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", conf],
                            stdout=mlog, stderr=mlog)
    try:
        time.sleep(0.5)
        loop = agent.Loop()
        t0 = time.time()
        clients = []
        for i in range(n):
            c = mqtt.Client(loop, "127.0.0.1", 1883, "bench-%d" % i, keepalive=300)
            c.start()
            clients.append(c)
        while sum(1 for c in clients if c.is_up()) < n and time.time() - t0 < 120:
            loop.run_once(20)
        up = sum(1 for c in clients if c.is_up())
        run.out("== %d agents (%d connected in %.1f s), %d devices each, load %s"
                % (n, up, time.time() - t0, DEVICES_EACH, open("/proc/loadavg").read().split()[0]))
        started = int(time.time())
        seqs = [0] * n
        for k in (1, 2):
            procs, socks = start_controllers(work, k)
            try:
                phase(loop, clients, socks, seqs, started)
            finally:
                stop(procs)
        for c in clients:
            c.stop()
    finally:
        stop([mosq])
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--inside"]:
        sys.exit(inside(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1000))
    if not shutil.which("mosquitto") and not os.path.exists("/usr/sbin/mosquitto"):
        run.out("mqtt_agents: mosquitto is not installed (tools/apt-packages.txt)")
        sys.exit(0)
    sys.exit(run.in_namespace("mqttagents", __file__, sys.argv[1:2]))
