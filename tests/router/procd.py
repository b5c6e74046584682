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

`Procd.exec_argv` is what procd execs for an instance (instance_run in
service/instance.c, with ujail's jail/jail.c), as an argv to run inside
the router's root: see there for what `user`, `group`, `capabilities` and
`no_new_privs` do with and without /sbin/ujail.
"""

import hashlib
import json
import os
import signal

ARRAYS = {"command", "netdev", "file", "respawn", "watch", "watchdog"}
TABLES = {"env", "data", "limits"}
INTS = {"nice", "term_timeout"}
BOOLS = {"stdout", "stderr", "no_new_privs"}
STRINGS = {"pidfile", "user", "group", "seccomp", "capabilities", "facility", "vrf"}
RELOAD_DELAY_MS = 1000
# procd_add_jail's words (procd.sh) that become booleans of the jail table
JAIL_FLAGS = {"log", "ubus", "udebug", "procfs", "sysfs", "ronly", "requirejail", "netns",
              "userns", "cgroupsns", "console"}
# ...and those that make ujail build namespaces (jail.c: -p -s -u -D -l -o
# -N -f -F); a jail with none of them only changes identity and capabilities
NAMESPACE_FLAGS = JAIL_FLAGS - {"requirejail", "console"}
# the capability sets of /etc/capabilities/*.json (jail/capabilities.c)
CAP_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")
# capabilities_names[] that procd's make_capabilities_h.sh takes from
# linux/capability.h, by number; ujail matches them without case
CAP_NAMES = ["chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid",
             "setuid", "setpcap", "linux_immutable", "net_bind_service", "net_broadcast",
             "net_admin", "net_raw", "ipc_lock", "ipc_owner", "sys_module", "sys_rawio",
             "sys_chroot", "sys_ptrace", "sys_pacct", "sys_admin", "sys_boot", "sys_nice",
             "sys_resource", "sys_time", "sys_tty_config", "mknod", "lease", "audit_write",
             "audit_control", "setfcap", "mac_override", "mac_admin", "syslog", "wake_alarm",
             "block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore"]


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
        elif call == "jail":
            jail = {"name": args[0]} if args and args[0] else {}
            jail.update((w, True) for w in args[1:] if w in JAIL_FLAGS)
            instance["jail"] = jail
        elif call in ("jail_mount", "jail_mount_rw"):
            mounts = instance.setdefault("jail", {}).setdefault("mount", {})
            mounts.update((path, "1" if call == "jail_mount_rw" else "0") for path in args)
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

    def _entry(self, name, table):
        """getpwnam/getgrnam in the root: the fields of name's line, or None."""
        try:
            with open(os.path.join(self.root, "etc", table)) as f:
                for line in f:
                    fields = line.rstrip("\n").split(":")
                    if fields[0] == name:
                        return fields
        except OSError:
            pass
        return None

    def capabilities(self, path):
        """{set: [names]} of a capabilities file as ujail reads it (a set
        left out is every capability, which ujail leaves as it is); an
        unknown name fails the instance's start, as ujail exits."""
        with open(os.path.join(self.root, path.lstrip("/"))) as f:
            doc = json.load(f)
        sets = {}
        for name in CAP_SETS:
            if name not in doc:
                continue
            caps = []
            for cap in doc[name]:
                short = cap.lower()[4:] if cap.lower().startswith("cap_") else None
                if short not in CAP_NAMES:
                    raise ValueError("ujail: %s: unknown capability %r: the instance does not start" % (path, cap))
                caps.append(short)
            sets[name] = caps
        return sets

    def exec_argv(self, definition):
        """The argv procd runs for an instance, to run inside the root.

        procd (instance_config_parse) looks up `user` and `group` when the
        definition arrives and ignores names the root does not know. A
        `jail` is used only when /sbin/ujail exists (else dropped; with
        requirejail the instance is refused). Then ujail, given -U/-G/-C/-c
        and no namespace option, builds no jail: it switches to the user
        keeping the capabilities of the file (SECBIT_NO_SETUID_FIXUP),
        drops every other one from the bounding set, sets the inheritable
        and ambient sets, then no_new_privs, and execs the command, which
        starts with permitted = effective = ambient. setpriv does the same
        here. Without a jail, procd itself does initgroups/setgid/setuid
        and nothing else: `capabilities` and `no_new_privs` are ignored
        and a process started as root that setuid()s keeps no capability."""
        command = list(definition["command"])
        jail = definition.get("jail")
        if jail is not None and not os.path.exists(os.path.join(self.root, "sbin", "ujail")):
            if jail.get("requirejail"):
                raise ValueError("procd: cannot jail the instance: no /sbin/ujail")
            jail = None
        if jail is not None and any(jail.get(f) for f in NAMESPACE_FLAGS):
            raise AssertionError("this stand-in does not build ujail's namespaces")
        pw = self._entry(definition["user"], "passwd") if "user" in definition else None
        gr = self._entry(definition["group"], "group") if "group" in definition else None
        argv = []
        if pw is not None:
            gid = gr[2] if gr is not None else pw[3]
            argv += ["--reuid", pw[2], "--regid", gid, "--init-groups"]
        elif gr is not None:
            argv += ["--regid", gr[2], "--keep-groups"]
        if jail is not None and "capabilities" in definition:
            sets = self.capabilities(definition["capabilities"])
            option = {"bounding": "--bounding-set", "inheritable": "--inh-caps",
                      "ambient": "--ambient-caps"}
            for name in ("bounding", "inheritable", "ambient"):
                if name in sets:
                    argv += [option[name], ",".join(["-all"] + ["+" + c for c in sets[name]])]
        if jail is not None and definition.get("no_new_privs"):
            argv.append("--no-new-privs")
        return (["/usr/bin/setpriv"] + argv + command) if argv else command

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
