"""What the controller's detector costs (issue 15 item 4).

    python3 bench/controller_detect.py [DEVICES]     (250 by default; no root)

In one process: two agents' detectors (an access point and the router
behind it) fed the same flows of a home of DEVICES busy devices (each
opens 20 new connections a scan to 20 addresses; one is a telnet scanner
at 800 a scan), then what the agents publish after each scan (`figures`,
detect.scan_to_obj as JSON) and what the controller does with both
(Controller.on_figures, close_scan). Printed per scan: the bytes of one
agent's figures message, the agent's own end_scan time, the agent's
encoding time and the controller's time, as ratios to the agent's
end_scan measured in the same run (the machine may be busy: ratios hold).
"""

import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(os.path.dirname(HERE), "src")]

from spin_lite import config, controller, detect, mqttlink  # noqa: E402

SCANS = 12


def main(devices=250):
    macs = ["02:00:00:%02x:%02x:%02x" % (i >> 16 & 255, i >> 8 & 255, i & 255) for i in range(1, devices + 1)]
    agents = {"ap1": detect.Detector({}), "router": detect.Detector({})}
    cfg = config.defaults()
    cfg["mqtt_broker"] = "127.0.0.1"
    c = controller.Home(cfg)
    sent = []
    c.publish_order = lambda agent, order: sent.append(agent)
    c.message("spin/home/ap1/status", b'{"v":1,"agent":"ap1","state":"online","role":"ap"}', True)
    t_scan = t_enc = t_ctl = 0.0
    size = 0
    for n in range(SCANS):
        now = 1700000000.0 + 5 * n
        for name, det in agents.items():
            for k, mac in enumerate(macs):
                flows = 800 if k == 0 else 20
                for i in range(flows):
                    remote = "198.%d.%d.%d" % (18 + k % 2, (n * flows + i) // 250 % 250, i % 250 + 1)
                    det.flow(mac, remote, 23 if k == 0 else 443, b"tcp", 600, 0 if k == 0 else 4000, 5,
                             0 if k == 0 else 6, True, k == 0, False, detect.PUBLIC)
            t0 = time.perf_counter()
            det.end_scan(now, 5, {}, None)
            t1 = time.perf_counter()
            msg = mqttlink.figures_message(det, name, 0, lambda m: 0, int(now))
            payload = json.dumps(msg, separators=(",", ":")).encode()
            t2 = time.perf_counter()
            c.message("spin/home/%s/figures" % name, payload, False)
            t3 = time.perf_counter()
            t_scan += t1 - t0
            t_enc += t2 - t1
            t_ctl += t3 - t2
            size = len(payload)
        t0 = time.perf_counter()
        c.close_scan()
        t_ctl += time.perf_counter() - t0
    per = 2 * SCANS
    print("== the controller's detector: %d busy devices, 2 agents, %d scans (load %s)"
          % (devices, SCANS, open("/proc/loadavg").read().split()[0]))
    print("  figures message of one agent: %.1f KB a scan (%d B a device)" % (size / 1024.0, size // devices))
    print("  agent end_scan %.1f ms a scan; encoding its figures %.1f ms (%.2fx of end_scan)"
          % (t_scan / per * 1e3, t_enc / per * 1e3, t_enc / t_scan))
    print("  controller, both agents' figures in + its own scan: %.1f ms a scan (%.2fx of one agent's end_scan)"
          % (t_ctl / SCANS * 1e3, t_ctl / SCANS / (t_scan / per)))
    print("  verdicts: %s; quarantine orders: %s" % (sorted(set(v["rule"] for v in c.verdicts)), sent))
    return 0 if sent == ["ap1"] else 1


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 250))
