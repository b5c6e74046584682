"""A small OpenWrt-like root to install ipks into and run them with chroot.

What is real: busybox (the shell and applets OpenWrt uses), the package
files and maintainer scripts as the ipk carries them, unpacked with the
system's tar. What stands in: /etc/rc.common, /lib/functions.sh and procd
(tests/router/root, recording to /tmp/procd.log), and uci, ubus, nft,
iptables, ip6tables and ipset, which only record their arguments (and
uci batch's input) to /tmp/calls.log. opkg's part (unpack, keep the
control files under /usr/lib/opkg/info, run postinst/prerm with
PKG_UPGRADE, delete the files) is done here, as opkg-lede does it.
"""

import os
import shutil
import stat
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
STUBS = ["uci", "ubus", "nft", "iptables", "ip6tables", "ipset", "logger"]
STUB = """#!/bin/sh
# records its call; `uci batch` also records what it was fed
{
	printf '%s' "$(basename "$0")"
	for a in "$@"; do printf ' %s' "$a"; done
	printf '\\n'
	case " $* " in *" batch "*) sed 's/^/	/' ;; esac
} >> /tmp/calls.log
exit 0
"""


def sh(*args):
    return subprocess.run(list(args), check=True, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True).stdout


def make_root(path):
    """An empty router: busybox with its applets, the stand-ins, stubs."""
    busybox = shutil.which("busybox")
    if busybox is None:
        raise RuntimeError("busybox is missing (Debian package busybox)")
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc/config", "etc/init.d", "tmp",
              "var/run", "usr/lib/opkg/info", "lib"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    os.chmod(os.path.join(path, "tmp"), 0o1777)   # a tmpfs every user writes, as on OpenWrt
    os.makedirs(os.path.join(path, "dev"), exist_ok=True)
    os.mknod(os.path.join(path, "dev", "null"), stat.S_IFCHR | 0o666, os.makedev(1, 3))
    shutil.copy2(busybox, os.path.join(path, "bin", "busybox"))
    copy_libraries(path, busybox)
    subprocess.run(["chroot", path, "/bin/busybox", "--install", "-s"], check=True)
    shutil.copytree(os.path.join(HERE, "root"), path, dirs_exist_ok=True)
    for name in STUBS:
        p = os.path.join(path, "usr", "sbin", name)
        with open(p, "w") as f:
            f.write(STUB)
        os.chmod(p, 0o755)
    for name in ("rpcd", "sysctl"):
        p = os.path.join(path, "etc", "init.d", name)
        with open(p, "w") as f:
            f.write(STUB)
        os.chmod(p, 0o755)
    with open(os.path.join(path, "etc", "config", "firewall"), "w") as f:
        f.write("config defaults\n\toption input 'REJECT'\n")
    # base-files' users and groups (package/base-files/files/etc)
    for name, text in (("passwd", PASSWD), ("group", GROUP), ("shadow", SHADOW)):
        with open(os.path.join(path, "etc", name), "w") as f:
            f.write(text)
    os.chmod(os.path.join(path, "etc", "shadow"), 0o600)
    # base-files ships these too; nft resolves protocol names with them
    for name in ("protocols", "services"):
        if os.path.exists("/etc/" + name):
            shutil.copy2("/etc/" + name, os.path.join(path, "etc", name))
    return path


PASSWD = ("root:x:0:0:root:/root:/bin/ash\ndaemon:*:1:1:daemon:/var:/bin/false\n"
          "network:*:101:101:network:/var:/bin/false\nnobody:*:65534:65534:nobody:/var:/bin/false\n")
GROUP = "root:x:0:\ndaemon:x:1:\nnetwork:x:101:\nnogroup:x:65534:\n"
SHADOW = ("root:::0:99999:7:::\ndaemon:*:0:0:99999:7:::\nnetwork:*:0:0:99999:7:::\n"
          "nobody:*:0:0:99999:7:::\n")


def add_program(root, program, dest):
    """A host program at dest in the root, with the shared libraries it
    links (copy_libraries)."""
    path = shutil.which(program) or program
    target = os.path.join(root, dest.lstrip("/"))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.lexists(target):
        os.unlink(target)
    shutil.copy2(os.path.realpath(path), target)
    copy_libraries(root, path)


def copy_libraries(root, program):
    """The shared libraries a host program links, into the root at the
    paths its loader looks for them."""
    for line in sh("ldd", program).splitlines():
        words = line.split()
        lib = words[2] if "=>" in words and len(words) > 2 else words[0]
        if lib.startswith("/"):
            d = os.path.join(root, lib.lstrip("/"))
            os.makedirs(os.path.dirname(d), exist_ok=True)
            if not os.path.exists(d):
                shutil.copy2(os.path.realpath(lib), d)


def run(root, argv, env=None):
    """Run argv in the root with a clean environment, like opkg would."""
    e = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"}
    e.update(env or {})
    return subprocess.run(["chroot", root] + list(argv), env=e, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True)


def control_member(ipk, name):
    """One file of control.tar.gz, read with tar alone."""
    inner = subprocess.run(["tar", "-xzOf", ipk, "./control.tar.gz"], check=True,
                           stdout=subprocess.PIPE).stdout
    return subprocess.run(["tar", "-xzOf", "-", "./" + name], input=inner, check=True,
                          stdout=subprocess.PIPE).stdout


def control_names(ipk):
    inner = subprocess.run(["tar", "-xzOf", ipk, "./control.tar.gz"], check=True,
                           stdout=subprocess.PIPE).stdout
    out = subprocess.run(["tar", "-tzf", "-"], input=inner, check=True,
                         stdout=subprocess.PIPE).stdout.decode()
    return [n[2:] for n in out.split() if n not in ("./", ".")]


def install(root, ipk, offline=False, upgrade=False):
    """opkg install: unpack data, keep control files, run postinst.
    offline: as opkg --offline-root does for an image, IPKG_INSTROOT set
    and the script run from outside the root."""
    pkg = control_member(ipk, "control").decode().split("\n")[0].split(": ")[1]
    data = subprocess.run(["tar", "-xzOf", ipk, "./data.tar.gz"], check=True,
                          stdout=subprocess.PIPE).stdout
    listing = subprocess.run(["tar", "-tzf", "-"], input=data, check=True,
                             stdout=subprocess.PIPE).stdout.decode().split()
    subprocess.run(["tar", "-xzf", "-", "-C", root], input=data, check=True)
    info = os.path.join(root, "usr", "lib", "opkg", "info")
    os.makedirs(info, exist_ok=True)
    for name in control_names(ipk):
        p = os.path.join(info, "%s.%s" % (pkg, name))
        with open(p, "wb") as f:
            f.write(control_member(ipk, name))
        os.chmod(p, 0o755 if name in ("postinst", "prerm", "preinst", "postrm") else 0o644)
    with open(os.path.join(info, pkg + ".list"), "w") as f:
        for n in listing:
            if not n.endswith("/"):
                f.write(n[1:] + "\n")
    env = {"PKG_UPGRADE": "1" if upgrade else "0"}
    if offline:
        e = {"PATH": os.environ["PATH"], "IPKG_INSTROOT": root, "PKG_ROOT": root}
        e.update(env)
        return subprocess.run(["busybox", "sh", os.path.join(info, pkg + ".postinst"), "configure"],
                              env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True)
    return run(root, ["/bin/sh", "/usr/lib/opkg/info/%s.postinst" % pkg, "configure"], env)


def remove(root, pkg):
    """opkg remove: prerm remove, delete the files (not a changed
    conffile), forget the package."""
    info = os.path.join(root, "usr", "lib", "opkg", "info")
    r = run(root, ["/bin/sh", "/usr/lib/opkg/info/%s.prerm" % pkg, "remove"], {"PKG_UPGRADE": "0"})
    with open(os.path.join(info, pkg + ".list")) as f:
        for line in f:
            p = os.path.join(root, line.strip().lstrip("/"))
            if os.path.lexists(p):
                os.unlink(p)
    for name in os.listdir(info):
        if name.startswith(pkg + "."):
            os.unlink(os.path.join(info, name))
    return r


def calls(root):
    p = os.path.join(root, "tmp", "calls.log")
    if not os.path.exists(p):
        return []
    with open(p) as f:
        return f.read().split("\n")
