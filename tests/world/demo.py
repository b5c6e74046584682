"""`make demo`: the simulated home with the agent, and `spin top` live.

    python3 -m tests.world.demo [--firewall nft|iptables] [--scan-after S] [--no-scan]

Builds the home (router, internet, camera, speaker, thermostat, laptop,
bulb), starts the agent in the router namespace, and runs `spin top` in the
foreground. After --scan-after seconds (default 60) the bulb turns into a
telnet scanner. Ctrl-C stops top and tears the whole home down.
"""

import argparse
import os
import sys
import threading

from tests.world.home import SRC, Home, HomeError
from tests.world.webproxy import forward

WWW = os.path.join(os.path.dirname(SRC), "luci-app-spin", "htdocs")


def main():
    ap = argparse.ArgumentParser(description="the simulated home with spin-lite, live")
    ap.add_argument("--firewall", default="nft", choices=["nft", "iptables", "iptables-legacy"])
    ap.add_argument("--scan-after", type=float, default=60, help="seconds until the bulb scans")
    ap.add_argument("--no-scan", action="store_true", help="the bulb stays a bulb")
    ap.add_argument("--scan-interval", type=int, default=2)
    ap.add_argument("--web-port", type=int, default=8080, help="127.0.0.1 port of the visualizer")
    a = ap.parse_args()
    # traffic starts after the agent: it turns conntrack byte counting on, and
    # the camera's one long upload would otherwise never be counted
    home = Home(firewall=a.firewall, agent=True, traffic=False,
                config={"scan_interval": a.scan_interval, "www_dir": WWW})
    try:
        home.up()
    except HomeError as e:
        sys.exit("demo: %s" % e)
    try:
        for name in home.devices:
            home.start_traffic(name)
        print("home %s up in %.1f s; files in %s" % (home.tag, home.started_in, home.dir))
        try:
            web = forward(home.rpc_socket, a.web_port)
        except OSError:
            web = forward(home.rpc_socket, 0)   # that port is taken: any free one
        print("the visualizer: %s/spin/   (LuCI's views, served by the agent)" % web.url)
        print("agent log: %s   (removed at exit; SPIN_KEEP_HOME=1 keeps it)" % home.agent_log)
        print("from another shell: PYTHONPATH=%s python3 -m spin_lite call -c %s devices"
              % (SRC, home.agent_config))
        if not a.no_scan:
            timer = threading.Timer(a.scan_after, home.scan, ("bulb", True))
            timer.daemon = True
            timer.start()
            print("the bulb starts scanning telnet in %d s" % a.scan_after)
        top = home.popen("router", [sys.executable, "-m", "spin_lite", "top", "-c", home.agent_config],
                         label="spin-top", env={"PYTHONPATH": SRC}, foreground=True)
        top.wait()
    except KeyboardInterrupt:
        pass
    finally:
        print("\ndemo: tearing the home down")
        home.down()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    main()
