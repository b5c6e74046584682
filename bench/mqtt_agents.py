"""Many agents in many homes, one broker, one and two controllers (issue 15 item 6).

    python3 bench/mqtt_agents.py [AGENTS [HOMES]]   (root: a namespace of its own; 1,000 in 100 by default)

In its own network namespace: a mosquitto on loopback, `spin controller`
(controller_homes '+') in its own process, and AGENTS MQTT connections
from this process (the project's own client, in one poll loop), spread
over HOMES homes, each agent with five devices and its retained status.
First a burst: every agent publishes one digest at once; then a steady
phase of 30 s at the rate of one digest per agent per minute. Printed:
the controllers' throughput (digests merged per second in the burst),
end-to-end lag (publish -> merged) at p50/p99, each controller's RSS,
and whether a home was split.

Then the same with two controllers in one group (`spin controller
--share bench --id cN`): each holds the homes the rendezvous hash gives
it (README "MQTT"); no home split means the homes they hold are
disjoint, cover every home, and their devices add up to what the agents
publish (a device is only merged where its home is held).
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
STEADY_S = int(os.environ.get("STEADY_S", 30))


def topic(k, homes, what):
    return "spin/h%d/a%d/%s" % (k % homes, k, what)


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
    """k controllers (k > 1: one group sharing the homes); their sockets."""
    procs, socks = [], []
    for j in range(k):
        sock = os.path.join(work, "controller-%d-%d.sock" % (k, j))
        conf = os.path.join(work, "controller-%d-%d.conf" % (k, j))
        with open(conf, "w") as f:
            f.write("config spin 'main'\n\toption mqtt_broker '127.0.0.1:1883'\n"
                    "\toption rpc_socket '%s'\n\toption www_dir ''\n\tlist controller_homes '+'\n"
                    "\toption mqtt_keepalive '30'\n" % sock)
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


def split(statuses, homes, n):
    """What says no home is split: held homes disjoint, all held, and the
    devices merged add up to what the agents publish."""
    held = [h for s in statuses for h in s["homes"]]
    whole = len(held) == len(set(held)) == homes
    devices = sum(s["devices"] for s in statuses)
    return "homes held %s, disjoint and all: %s; devices %s = %d published: %s" % (
        "/".join(str(len(s["homes"])) for s in statuses), whole,
        "+".join(str(s["devices"]) for s in statuses), n * DEVICES_EACH, devices == n * DEVICES_EACH)


def phase(loop, clients, socks, seqs, started, homes):
    """The burst and the steady phase against the controllers at socks."""
    from spin_lite import jsonrpc
    n = len(clients)
    k = len(socks)

    def statuses():
        return [jsonrpc.call(s, "status") for s in socks]

    def merged():
        return sum(s["digests"] for s in statuses())

    def settled():
        st = statuses()
        held = [h for s in st for h in s["homes"]]
        return all(s["mqtt"]["state"] == "up" and not s["mqtt"]["subscribing"] for s in st) and \
            len(held) == len(set(held)) == homes and sum(s["agents"] for s in st) == n
    t0 = time.time()
    while time.time() - t0 < 60:
        try:
            if settled():
                break
        except OSError:
            pass
        loop.run_once(100)
    run.out("  %d controller%s: every home held, subscribed, and every agent's status in after %.1f s"
            % (k, "s" if k > 1 else "", time.time() - t0))
    base = merged()
    t0 = time.time()
    for i, c in enumerate(clients):
        seqs[i] += 1
        c.publish(topic(i, homes, "digest"), digest(i, seqs[i], started), qos=1)
        if i % 50 == 0:
            loop.run_once(0)
    sent_s = time.time() - t0
    while merged() - base < n and time.time() - t0 < 120:
        loop.run_once(10)
    burst_s = time.time() - t0
    st = statuses()
    if merged() - base < n:
        run.out("  burst: %d of %d merged; repeats %s, malformed %s, errors %s" % (
            merged() - base, n, [s["repeats"] for s in st], [s["malformed"] for s in st],
            [s["errors"] for s in st]))
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
            clients[i].publish(topic(i, homes, "digest"), digest(i, seqs[i], started), qos=1)
            sent += 1
        loop.run_once(max(0, int((due - time.time()) * 1000)))
    while merged() - base < sent and time.time() - t0 < STEADY_S + 60:
        loop.run_once(10)
    lags = sorted(a["lag"] for s in socks for h in jsonrpc.call(s, "status")["homes"]
                  for a in jsonrpc.call(s, "agents", {"home": h})["agents"]
                  if int(a["agent"][1:]) < min(sent, n) and a["lag"] is not None)
    st = statuses()
    run.out("  %d controller%s, steady: %d digests in %d s (%.1f/s), all merged: %s; lag p50 %.3f s,"
            " p99 %.3f s; controller RSS %s MB"
            % (k, "s" if k > 1 else "", sent, STEADY_S, sent / STEADY_S, merged() - base >= sent,
               lags[len(lags) // 2], lags[min(len(lags) - 1, int(0.99 * len(lags)))],
               "/".join("%.1f" % (s["rss_kb"] / 1024.0) for s in st)))
    run.out("  %d controller%s: %s" % (k, "s" if k > 1 else "", split(st, homes, n)))


def inside(work, n, homes):
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
            status = json.dumps({"v": 1, "agent": "a%d" % i, "state": "online"})
            c.on_up = lambda cl, t=topic(i, homes, "status"), m=status: cl.publish(t, m, qos=1, retain=True)
            c.start()
            clients.append(c)
        while sum(1 for c in clients if c.is_up()) < n and time.time() - t0 < 120:
            loop.run_once(20)
        up = sum(1 for c in clients if c.is_up())
        run.out("== %d agents in %d homes (%d connected in %.1f s), %d devices each, load %s"
                % (n, homes, up, time.time() - t0, DEVICES_EACH, open("/proc/loadavg").read().split()[0]))
        started = int(time.time())
        seqs = [0] * n
        for k in (1, 2):
            procs, socks = start_controllers(work, k)
            try:
                phase(loop, clients, socks, seqs, started, homes)
            finally:
                stop(procs)
        for c in clients:
            c.stop()
    finally:
        stop([mosq])
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--inside"]:
        sys.exit(inside(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1000,
                        int(sys.argv[4]) if len(sys.argv) > 4 else 100))
    if not shutil.which("mosquitto") and not os.path.exists("/usr/sbin/mosquitto"):
        run.out("mqtt_agents: mosquitto is not installed (tools/apt-packages.txt)")
        sys.exit(0)
    sys.exit(run.in_namespace("mqttagents", __file__, sys.argv[1:3]))
