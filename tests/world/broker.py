"""A real mosquitto for the home, as an owner would set it up for spin.

It runs in one of the home's namespaces with a password file (one user
per agent, one for the controller), the ACL that README "MQTT" documents,
no anonymous access, and persistence on, so that a restart keeps the
controller's session and what was queued for it.

    broker = Broker(home, users={"router": "pw1", "controller": "pw2"})
    broker.start()         # waits until it listens
    broker.restart()       # SIGTERM (it saves its state), then start again
"""

import os
import shutil
import signal
import subprocess
import time

from tests.world.home import HomeError

# README "MQTT": each agent writes under its own name only (the broker's
# %u is the user name, which is the agent's name), reads its orders; the
# controllers read every agent of every home, write their orders and say
# they live on spin-controllers/ (a group shares the homes)
ACL = """\
user controller
topic read spin/#
topic write spin/+/+/cmd
topic readwrite spin-controllers/#

"""
AGENT_ACL = """\
pattern write spin/{home}/%u/status
pattern write spin/{home}/%u/digest
pattern write spin/{home}/%u/device
pattern write spin/{home}/%u/anomaly
pattern write spin/{home}/%u/figures
pattern write spin/{home}/%u/block
pattern write spin/{home}/%u/ack
pattern read spin/{home}/%u/cmd
"""


def mosquitto():
    return shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def available():
    return os.path.exists(mosquitto()) and shutil.which("mosquitto_passwd") is not None


def make_certificates(where, name="127.0.0.1"):
    """A test CA, a broker certificate it signed for `name` (an IP
    address SAN) and a client certificate: (ca.pem, server.pem,
    server.key, client.pem, client.key)."""
    os.makedirs(where, exist_ok=True)

    def ssl(*argv):
        subprocess.run(["openssl"] + list(argv), cwd=where, check=True, capture_output=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=spin test CA")
    ssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=" + name)
    with open(os.path.join(where, "san"), "w") as f:
        f.write("subjectAltName=IP:%s\n" % name)
    ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "san")
    ssl("req", *ec, "-keyout", "client.key", "-out", "client.csr", "-subj", "/CN=router")
    ssl("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "client.pem", "-days", "2")
    for key in ("server.key", "client.key"):
        os.chmod(os.path.join(where, key), 0o600)
    return tuple(os.path.join(where, f) for f in ("ca.pem", "server.pem", "server.key",
                                                  "client.pem", "client.key"))


class Broker:
    def __init__(self, home, users, ns="router", port=1883, home_name="home", tls=None, homes=()):
        self.home = home
        self.users = dict(users)
        self.ns = ns
        self.port = port
        self.home_name = home_name
        self.homes = [home_name] + list(homes)  # the homes whose agents the ACL lets in
        # (ca, cert, key, ...) of the broker's TLS listener on port+1, which
        # asks every client for a certificate that CA signed
        self.tls = tls
        self.dir = home.path("broker")
        self.proc = None
        self.log = os.path.join(self.dir, "mosquitto.log")
        self.starts = 0

    def write(self):
        os.makedirs(os.path.join(self.dir, "db"), exist_ok=True)
        pw = os.path.join(self.dir, "passwd")
        open(pw, "w").close()
        for user, password in self.users.items():
            subprocess.run(["mosquitto_passwd", "-b", pw, user, password], check=True,
                           capture_output=True)
        os.chmod(pw, 0o600)
        with open(os.path.join(self.dir, "acl"), "w") as f:
            f.write(ACL + "".join(AGENT_ACL.format(home=h) for h in self.homes))
        lines = ["user root", "per_listener_settings false", "allow_anonymous false",
                 "password_file %s/passwd" % self.dir, "acl_file %s/acl" % self.dir,
                 "persistence true", "persistence_location %s/db/" % self.dir,
                 "autosave_interval 1", "log_dest stderr",
                 "log_type error", "log_type warning", "log_type notice", "log_type information",
                 "log_type subscribe",
                 "connection_messages true", "listener %d" % self.port]
        if self.tls:
            ca, cert, key = self.tls[:3]
            lines += ["listener %d" % (self.port + 1), "cafile %s" % ca, "certfile %s" % cert,
                      "keyfile %s" % key, "require_certificate true"]
        with open(os.path.join(self.dir, "mosquitto.conf"), "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self, timeout=10):
        if self.starts == 0:
            self.write()
        self.starts += 1
        mark = "--- start %d\n" % self.starts
        with open(self.log, "a") as f:
            f.write(mark)
        self.proc = self.home.popen(self.ns, [mosquitto(), "-c", os.path.join(self.dir, "mosquitto.conf")],
                                    label="mosquitto", log=self.log)
        deadline = time.monotonic() + timeout
        while True:
            text = open(self.log, errors="replace").read().split(mark)[-1]
            if "running" in text and "listen socket on port %d" % self.port in text:
                return self
            if self.proc.poll() is not None:
                raise HomeError("mosquitto exited with %s:\n%s" % (self.proc.returncode, text[-2000:]))
            if time.monotonic() > deadline:
                raise HomeError("mosquitto did not start in %ss:\n%s" % (timeout, text[-2000:]))
            time.sleep(0.05)

    def stop(self, timeout=10):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # it saves its database on the way out
        self.proc.wait(timeout)

    def restart(self):
        self.stop()
        return self.start()

    def log_text(self):
        return open(self.log, errors="replace").read()

    def client(self, tool, *argv, user=None, password=None, timeout=10, check=False):
        """Run mosquitto_pub/mosquitto_sub in the broker's namespace; the
        CompletedProcess (text)."""
        args = [tool, "-h", "127.0.0.1", "-p", str(self.port)]
        if user is not None:
            args += ["-u", user]
        if password is not None:
            args += ["-P", password]
        return subprocess.run(self.home._argv(self.ns, args + list(argv)), capture_output=True,
                              text=True, timeout=timeout, check=check)

    def subscriber(self, topic, user, password, client_id, out):
        """mosquitto_sub in the background, one line per message (topic and
        payload), with a persistent session (-c) at QoS 1: what the broker
        queued for it while it was away comes when it is back."""
        args = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(self.port), "-u", user, "-P", password,
                "-i", client_id, "-c", "-q", "1", "-v", "-t", topic]
        return self.home.popen(self.ns, args, label="sub-" + client_id, log=out)
