"""Who the agent runs as: its user id and the capabilities in effect, from
/proc/self/status, so `status` shows whether procd gave it its own user
with CAP_NET_ADMIN and CAP_NET_RAW (README: Privileges) or it runs as root
(a procd without ujail)."""

from . import plat

# linux/capability.h's capabilities by number
CAP_NAMES = ("chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid",
             "setuid", "setpcap", "linux_immutable", "net_bind_service", "net_broadcast",
             "net_admin", "net_raw", "ipc_lock", "ipc_owner", "sys_module", "sys_rawio",
             "sys_chroot", "sys_ptrace", "sys_pacct", "sys_admin", "sys_boot", "sys_nice",
             "sys_resource", "sys_time", "sys_tty_config", "mknod", "lease", "audit_write",
             "audit_control", "setfcap", "mac_override", "mac_admin", "syslog", "wake_alarm",
             "block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore")


def parse(text):
    """/proc/<pid>/status text -> {"uid": effective uid, "capabilities":
    [names in effect], or "all" when it holds every one this table
    knows}; None when the text lacks the lines."""
    uid = caps = None
    for line in text.split("\n"):
        words = line.split()
        if len(words) >= 3 and words[0] == "Uid:" and words[2].isdigit():
            uid = int(words[2])
        elif len(words) == 2 and words[0] == "CapEff:":
            try:
                caps = int(words[1], 16)
            except ValueError:
                return None
    if uid is None or caps is None:
        return None
    every = (1 << len(CAP_NAMES)) - 1
    if caps & every == every:
        return {"uid": uid, "capabilities": "all"}
    names = [CAP_NAMES[i] if i < len(CAP_NAMES) else "cap_%d" % i for i in range(64) if caps >> i & 1]
    return {"uid": uid, "capabilities": names}


def current():
    data = plat.read_file("/proc/self/status")
    return parse(data.decode("utf-8", "replace")) if data else None
