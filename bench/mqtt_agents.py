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

Only one controller: several controllers through shared subscriptions
are not built (README "MQTT" says why a home's view cannot be split by
message).
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


def inside(work, n):
    from spin_lite import agent, jsonrpc, mqtt
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * n + 256)), hard))
    conf = os.path.join(work, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write("user root\nallow_anonymous true\npersistence false\nlistener 1883 127.0.0.1\n"
                "max_queued_messages 100000\nmax_inflight_messages 100\n")
    mlog = open(os.path.join(work, "mosquitto.log"), "wb")
    mosq = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", conf],
                            stdout=mlog, stderr=mlog)
    sock = os.path.join(work, "controller.sock")
    with open(os.path.join(work, "controller.conf"), "w") as f:
        f.write("config spin 'main'\n\toption mqtt_broker '127.0.0.1:1883'\n"
                "\toption rpc_socket '%s'\n\toption www_dir ''\n" % sock)
    ctl = subprocess.Popen([sys.executable, "-m", "spin_lite", "controller", "-c",
                            os.path.join(work, "controller.conf")],
                           stdout=open(os.path.join(work, "controller.log"), "wb"), stderr=subprocess.STDOUT,
                           env=dict(os.environ, PYTHONPATH=run.SRC))

    def status():
        return jsonrpc.call(sock, "status")
    try:
        t0 = time.time()
        while not os.path.exists(sock) and time.time() - t0 < 20:
            time.sleep(0.1)
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
        while status()["mqtt"]["state"] != "up":
            time.sleep(0.1)
        started = int(time.time())
        seqs = [0] * n
        # the burst: every agent at once
        t0 = time.time()
        for i, c in enumerate(clients):
            seqs[i] += 1
            c.publish("spin/home/a%d/digest" % i, digest(i, seqs[i], started), qos=1)
            if i % 50 == 0:
                loop.run_once(0)
        sent_s = time.time() - t0
        while status()["digests"] < n and time.time() - t0 < 120:
            loop.run_once(10)
        s = status()
        burst_s = time.time() - t0
        run.out("  burst: %d digests published in %.2f s, merged in %.2f s: %.0f digests/s;"
                " lag p50 %.3f s, p99 %.3f s; controller RSS %.1f MB"
                % (n, sent_s, burst_s, s["digests"] / burst_s, s["lag_p50"], s["lag_p99"], s["rss_kb"] / 1024.0))
        # steady: one digest per agent per minute, for STEADY_S
        period = 60.0 / n
        t0 = time.time()
        k = 0
        while time.time() - t0 < STEADY_S:
            due = t0 + k * period
            if time.time() >= due:
                i = k % n
                seqs[i] += 1
                clients[i].publish("spin/home/a%d/digest" % i, digest(i, seqs[i], started), qos=1)
                k += 1
            loop.run_once(max(0, int((due - time.time()) * 1000)))
        want = n + k
        while status()["digests"] < want and time.time() - t0 < STEADY_S + 60:
            loop.run_once(10)
        s = status()
        # the steady digests' own lags: each agent's last one, of those that sent again
        lags = sorted(a["lag"] for a in jsonrpc.call(sock, "agents")["agents"]
                      if int(a["agent"][1:]) < min(k, n))
        p50, p99 = lags[len(lags) // 2], lags[min(len(lags) - 1, int(0.99 * len(lags)))]
        run.out("  steady: %d digests in %d s (%.1f/s), all merged: %s; lag p50 %.3f s, p99 %.3f s;"
                " controller RSS %.1f MB; %d devices, %d agents, repeats %d"
                % (k, STEADY_S, k / STEADY_S, s["digests"] >= want, p50, p99,
                   s["rss_kb"] / 1024.0, s["devices"], s["agents"], s["repeats"]))
        for c in clients:
            c.stop()
    finally:
        ctl.send_signal(signal.SIGTERM)
        mosq.send_signal(signal.SIGTERM)
        for p in (ctl, mosq):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--inside"]:
        sys.exit(inside(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1000))
    if not shutil.which("mosquitto") and not os.path.exists("/usr/sbin/mosquitto"):
        run.out("mqtt_agents: mosquitto is not installed (tools/apt-packages.txt)")
        sys.exit(0)
    sys.exit(run.in_namespace("mqttagents", __file__, sys.argv[1:2]))
