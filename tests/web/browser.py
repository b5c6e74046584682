"""Headless Chromium for tests, driven through tests/web/driver.mjs.

    with Browser() as b:
        b.page(width=390, height=844, mobile=True)
        b.goto(url)
        b.wait("document.querySelectorAll('.spin-device').length == 5")
        b.click("[data-action=block]")

Each call is one JSON line to the node driver and one answer back; a
failure in the page raises BrowserError with the driver's message and the
page's console errors, so a failing test says what the page saw.
"""

import json
import os
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
ARTIFACTS = os.path.join(REPO, "tests", "artifacts")


class BrowserError(Exception):
    pass


def available():
    """None when a browser can run here, else why not."""
    if not os.path.exists("/usr/bin/chromium"):
        return "Debian package chromium is not installed (tools/apt-packages.txt)"
    if not os.path.isdir(os.path.join(REPO, "node_modules", "playwright-core")):
        return "npm package playwright-core is not installed (package.json; run make deps)"
    return None


class Browser:
    def __init__(self):
        self.proc = subprocess.Popen(["node", os.path.join(HERE, "driver.mjs")], cwd=REPO,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        self.n = 0
        self.page()

    def call(self, op, **kw):
        self.n += 1
        kw.update(op=op, id=self.n)
        try:
            self.proc.stdin.write(json.dumps(kw) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise BrowserError("the browser driver is gone: %s" % self.proc.stderr.read()[-2000:])
        line = self.proc.stdout.readline()
        if not line:
            raise BrowserError("the browser driver stopped: %s" % self.proc.stderr.read()[-2000:])
        out = json.loads(line)
        if not out["ok"]:
            logs = self.call("logs") if op != "logs" else []
            raise BrowserError("%s failed: %s\npage console: %s" % (op, out["error"], "\n".join(logs) or "-"))
        return out["value"]

    def page(self, width=1280, height=800, mobile=False, dark=False, scale=1):
        return self.call("page", width=width, height=height, mobile=mobile, dark=dark, scale=scale)

    def goto(self, url):
        return self.call("goto", url=url)

    def eval(self, js):
        return self.call("eval", js=js)

    def wait(self, js, timeout=10):
        return self.call("wait", js=js, timeout=int(timeout * 1000))

    def click(self, selector, timeout=10):
        return self.call("click", selector=selector, timeout=int(timeout * 1000))

    def click_load(self, selector, timeout=10):
        """Click something that loads a page, and wait for that load."""
        return self.call("clickLoad", selector=selector, timeout=int(timeout * 1000))

    def fill(self, selector, value):
        return self.call("fill", selector=selector, value=value)

    def press(self, selector, key):
        return self.call("press", selector=selector, key=key)

    def reload(self):
        return self.call("reload")

    def logs(self):
        return self.call("logs")

    def screenshot(self, name, full_page=False):
        os.makedirs(ARTIFACTS, exist_ok=True)
        path = os.path.join(ARTIFACTS, name)
        self.call("screenshot", path=path, fullPage=full_page)
        return path

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"op": "close"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
