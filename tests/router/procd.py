"""What procd makes of an init script, from the calls the stand-in
(tests/router/root/lib/functions/procd.sh) recorded.

`service_messages` rebuilds the message OpenWrt's procd.sh would send with
`ubus call service set|delete|signal`: parameter types as procd.sh's
_procd_set_param gives them (command/file/respawn arrays, env/data/limits
tables, stdout/stderr booleans, reload_signal as a signal number,
term_timeout an integer), an empty respawn filled with procd's defaults
(3600 5 5 from system.@service[0]), and procd_add_reload_trigger's
config.change trigger with its 1000 ms delay.

`Procd` applies the rules of procd's service/instance.c to a sequence of
messages: an instance not running is started; a running one whose
definition changed (command, env, files by checksum, ...) is restarted, or
sent its reload_signal when it has one; one left out of a new definition
is stopped; an unchanged one is left alone.
"""

import hashlib
import os
import signal

ARRAYS = {"command", "netdev", "file", "respawn", "watch", "watchdog"}
TABLES = {"env", "data", "limits"}
INTS = {"nice", "term_timeout"}
BOOLS = {"stdout", "stderr", "no_new_privs"}
STRINGS = {"pidfile", "user", "group", "seccomp", "capabilities", "facility", "vrf"}
RELOAD_DELAY_MS = 1000


def read_log(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


def _param(instance, kind, values):
    if kind in ARRAYS:
        instance[kind] = list(values)
    elif kind in TABLES:
        instance[kind] = dict(v.split("=", 1) if "=" in v else (v, "") for v in values)
    elif kind in INTS:
        instance[kind] = int(values[0])
    elif kind in BOOLS:
        instance[kind] = values[0] == "1"
    elif kind in STRINGS:
        instance[kind] = values[0]
    elif kind == "reload_signal":
        instance[kind] = int(signal.Signals["SIG" + values[0]])
    else:
        raise AssertionError("procd.sh has no parameter %r" % kind)


def service_messages(lines):
    """[(ubus method, message)] in the order the script sent them."""
    out = []
    service = instance = None
    seq = 0
    for words in lines:
        call, args = words[0], words[1:]
        if call == "open_service":
            service = {"name": args[0], "script": args[1] if len(args) > 1 else None,
                       "instances": {}, "triggers": []}
            seq = 0
        elif call == "open_instance":
            seq += 1
            name = args[0] if args and args[0] else "instance%d" % seq
            instance = {}
            service["instances"][name] = instance
        elif call == "set_param":
            _param(instance, args[0], args[1:])
        elif call == "append_param":
            kind = args[0]
            if kind in ARRAYS and kind in instance:
                instance[kind] += args[1:]
            else:
                _param(instance, kind, args[1:])
        elif call == "close_instance":
            if "respawn" in instance and not instance["respawn"]:
                instance["respawn"] = ["3600", "5", "5"]
            instance = None
        elif call == "reload_trigger":
            script = "/etc/init.d/%s" % service["name"]
            for package in args:
                service["triggers"].append(
                    ["config.change", ["if", ["eq", "package", package],
                                       ["run_script", script, "reload"]], RELOAD_DELAY_MS])
        elif call in ("open_triggers", "close_triggers"):
            pass
        elif call == "close_service":
            out.append((args[0], service))
            service = None
        elif call == "kill":
            msg = {"name": args[0]}
            if len(args) > 1 and args[1]:
                msg["instance"] = args[1]
            out.append(("delete", msg))
        elif call == "signal":
            msg = {"name": args[0]}
            if len(args) > 1 and args[1] not in ("", "*"):
                msg["instance"] = args[1]
            if len(args) > 2 and args[2]:
                sig = args[2]
                msg["signal"] = int(signal.Signals["SIG" + sig]) if not sig.isdigit() else int(sig)
            out.append(("signal", msg))
        else:
            raise AssertionError("stand-in logged an unknown call %r" % call)
    return out


class Procd:
    """Instances procd runs, and what it did to them."""

    def __init__(self, root):
        self.root = root            # files named by `file` are read here
        self.running = {}           # (service, instance) -> definition
        self.actions = []

    def _checksums(self, definition):
        sums = {}
        for path in definition.get("file", []):
            try:
                with open(os.path.join(self.root, path.lstrip("/")), "rb") as f:
                    sums[path] = hashlib.md5(f.read()).hexdigest()
            except OSError:
                sums[path] = None
        return sums

    def apply(self, method, msg):
        name = msg["name"]
        if method == "set":
            new = {}
            for iname, definition in msg["instances"].items():
                d = dict(definition)
                d["_files"] = self._checksums(definition)
                new[iname] = d
            for (svc, iname) in list(self.running):
                if svc == name and iname not in new:
                    del self.running[(svc, iname)]
                    self.actions.append(("stop", name, iname))
            for iname, d in new.items():
                old = self.running.get((name, iname))
                if old is None:
                    self.actions.append(("start", name, iname))
                elif old != d:
                    if old.get("reload_signal"):
                        self.actions.append(("signal", name, iname, old["reload_signal"]))
                    else:
                        self.actions.append(("restart", name, iname))
                self.running[(name, iname)] = d
        elif method == "delete":
            for (svc, iname) in list(self.running):
                if svc == name and msg.get("instance") in (None, iname):
                    del self.running[(svc, iname)]
                    self.actions.append(("stop", name, iname))
        elif method == "signal":
            for (svc, iname) in list(self.running):
                if svc == name and msg.get("instance") in (None, iname):
                    self.actions.append(("signal", name, iname, msg.get("signal", int(signal.SIGHUP))))
        else:
            raise AssertionError("procd has no method %r" % method)
