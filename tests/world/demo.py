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


def spin_command(home):
    """A `spin` in the home's files, calling this home's agent: the
    README's examples name `spin`, which only a router has installed."""
    bindir = os.path.join(home.dir, "bin")
    os.makedirs(bindir, exist_ok=True)
    path = os.path.join(bindir, "spin")
    with open(path, "w") as f:
        f.write("#!/bin/sh\nexport PYTHONPATH=%s\nexport SPIN_CONFIG=%s\nexec %s -m spin_lite \"$@\"\n"
                % (SRC, home.agent_config, sys.executable))
    os.chmod(path, 0o755)
    return bindir


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
        bindir = spin_command(home)
        print("from another shell, the README's `spin ...` lines work after:")
        print("    export PATH=%s:$PATH" % bindir)
        print("    spin call devices; spin top")
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
