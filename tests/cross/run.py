"""Run the pure-Python tests (tests/core, the ubus codec) on the CPUs and the Python that
routers have, on this x86_64 Debian machine.

Each target is a Debian userland of another CPU, taken from Debian's own
.deb files (`apt-get download` with a private apt configuration, so the
host's apt setup is not touched) and unpacked with `dpkg-deb -x` into
build/cross/<target>/. Its python3 runs under qemu-user (`qemu-<cpu>-static
-L <sysroot>`: no binfmt registration, no root needed to run). pytest and
its pure-Python dependencies come from PyPI as wheels (`pip download`) and
are unpacked beside them, the same for every target.

    python3 tests/cross/run.py              # every target
    python3 tests/cross/run.py arm64 py39   # some

Debian has no big-endian MIPS any more, so s390x stands in for ath79's
mips_24kc: what breaks on big-endian breaks there too. The py39 target is
Debian bullseye's Python 3.9 (what GL.iNet 4.x firmware ships), run the
same way under qemu-x86_64 so it needs nothing from the host's Pythons.
"""

import fcntl
import functools
import os
import shutil
import subprocess
import sys
import time
import zipfile

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(TOP, "build", "cross")

# target: (Debian suite, Debian arch, python, qemu, what it stands for)
TARGETS = {
    "armhf": ("bookworm", "armhf", "3.11", "qemu-arm-static",
              "arm_cortex-a7 (GL-AXT1800, GL-A1300), 32-bit little-endian"),
    "arm64": ("bookworm", "arm64", "3.11", "qemu-aarch64-static",
              "aarch64_cortex-a53 (GL-MT3000, GL-MT6000), 64-bit little-endian"),
    "mipsel": ("bookworm", "mipsel", "3.11", "qemu-mipsel-static",
               "mipsel_24kc (GL-MT300N-V2), 32-bit little-endian"),
    "s390x": ("bookworm", "s390x", "3.11", "qemu-s390x-static",
              "stand-in for mips_24kc (GL-AR300M, GL-AR750S), 64-bit big-endian"),
    "py39": ("bullseye", "amd64", "3.9", "qemu-x86_64-static",
             "Python 3.9 of OpenWrt 21.02 / GL.iNet 4.x"),
}

# what a python3.X needs to run the tests: the interpreter, its stdlib and
# the shared libraries its stdlib extension modules link against
PACKAGES = {
    "3.11": ["python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib",
             "libc6", "libgcc-s1", "zlib1g", "libexpat1", "libffi8", "libssl3",
             "libbz2-1.0", "liblzma5", "libuuid1", "libcrypt1"],
    "3.9": ["python3.9-minimal", "libpython3.9-minimal", "libpython3.9-stdlib",
            "libc6", "libgcc-s1", "zlib1g", "libexpat1", "libffi7", "libssl1.1",
            "libbz2-1.0", "liblzma5", "libmpdec3", "libuuid1", "libcrypt1"],
}

# pure-Python wheels; this pytest still supports 3.9
PYTEST = ["pytest==8.3.5", "pluggy==1.5.0", "iniconfig==2.0.0", "packaging==24.2",
          "exceptiongroup==1.2.2", "tomli==2.2.1"]

# (tests, pytest options). tests/core is the pure core; the ubus codec
# tests beside it are pure too and the most byte-order sensitive code there
# is (blobmsg is big-endian on the wire, netlink host-endian). They run
# without tests/conftest.py, which belongs to the namespace world.
RUNS = [
    (["tests/core"], ["--confcutdir", "tests/core"]),
    (["tests/test_ubus_codec.py", "tests/test_ubus_transcript.py"], ["--noconftest"]),
]


def log(msg):
    sys.stderr.write("cross: %s\n" % msg)


def host_mirror():
    """The Debian mirror and keyring the host's own apt uses (deb822 or
    one-line format), so no address is written down here."""
    for path in ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"):
        try:
            text = open(path).read()
        except OSError:
            continue
        uri = keyring = None
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("URIs:") and uri is None:
                uri = line.split()[1]
            elif line.startswith("Signed-By:") and keyring is None:
                keyring = line.split()[1]
            elif line.startswith("deb ") and uri is None:
                for word in line.split()[1:]:
                    if "://" in word:
                        uri = word
                        break
        if uri:
            return uri.rstrip("/"), keyring or "/usr/share/keyrings/debian-archive-keyring.gpg"
    raise SystemExit("cross: no Debian mirror found in the host's apt sources")


def apt_options():
    d = os.path.join(BUILD, "apt")
    return [
        "-o", "Dir::Etc::SourceList=" + os.path.join(d, "sources.list"),
        "-o", "Dir::Etc::SourceParts=" + os.path.join(d, "sources.list.d"),
        "-o", "Dir::State::Lists=" + os.path.join(d, "lists"),
        "-o", "Dir::State::status=" + os.path.join(d, "status"),
        "-o", "Dir::Cache=" + os.path.join(d, "cache"),
        "-o", "Debug::NoLocking=1",
        "-o", "APT::Sandbox::User=root",
    ] + [x for a in sorted({t[1] for t in TARGETS.values()})
         for x in ("-o", "APT::Architectures::=" + a)]


def apt_setup():
    """A private apt: own sources, lists and cache under build/cross/apt."""
    d = os.path.join(BUILD, "apt")
    for sub in ("lists/partial", "cache/archives/partial", "sources.list.d"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    open(os.path.join(d, "status"), "a").close()
    uri, keyring = host_mirror()
    lines = []
    for suite in sorted({t[0] for t in TARGETS.values()}):
        archs = ",".join(sorted({t[1] for t in TARGETS.values() if t[0] == suite}))
        lines.append("deb [arch=%s signed-by=%s] %s %s main\n" % (archs, keyring, uri, suite))
    text = "".join(lines)
    path = os.path.join(d, "sources.list")
    stamp = os.path.join(d, "updated")
    old = open(path).read() if os.path.exists(path) else ""
    fresh = os.path.exists(stamp) and time.time() - os.path.getmtime(stamp) < 7 * 86400
    if old == text and fresh:
        return
    with open(path, "w") as f:
        f.write(text)
    log("apt-get update (private lists in %s)" % d)
    subprocess.run(["apt-get"] + apt_options() + ["-qq", "update"], check=True)
    open(stamp, "w").close()


def one_at_a_time(build):
    """make test runs test files three at once, and several of them need the
    same sysroot: the second waits for the first to finish unpacking it
    instead of unpacking over it."""
    @functools.wraps(build)
    def locked(*args):
        os.makedirs(BUILD, exist_ok=True)
        with open(os.path.join(BUILD, ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return build(*args)
    return locked


@one_at_a_time
def sysroot(name):
    """build/cross/<name>: a Debian userland with python, unpacked once."""
    suite, arch, py, qemu, _ = TARGETS[name]
    root = os.path.join(BUILD, name)
    python = os.path.join(root, "usr", "bin", "python" + py)
    if os.path.exists(os.path.join(root, ".complete")):
        return root, python
    apt_setup()
    debs = os.path.join(BUILD, "debs", name)
    shutil.rmtree(debs, ignore_errors=True)
    os.makedirs(debs)
    log("%s: apt-get download %d packages (%s %s)" % (name, len(PACKAGES[py]), suite, arch))
    subprocess.run(["apt-get"] + apt_options() + ["-qq", "download"]
                   + ["%s:%s/%s" % (p, arch, suite) for p in PACKAGES[py]],
                   cwd=debs, check=True)
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    for deb in sorted(os.listdir(debs)):
        subprocess.run(["dpkg-deb", "-x", os.path.join(debs, deb), root], check=True)
    relative_links(root)
    if not os.path.exists(python):
        raise SystemExit("cross: %s: no %s after unpacking" % (name, python))
    open(os.path.join(root, ".complete"), "w").close()
    return root, python


def relative_links(root):
    """Absolute symlinks (bullseye's /lib64/ld-linux-x86-64.so.2 ->
    /lib/x86_64-linux-gnu/ld-2.31.so) would point out of the sysroot, at
    the host's files, and mix two C libraries: make them relative."""
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            if os.path.islink(p) and os.readlink(p).startswith("/"):
                target = os.path.join(root, os.readlink(p).lstrip("/"))
                os.unlink(p)
                os.symlink(os.path.relpath(target, dirpath), p)


@one_at_a_time
def site():
    """build/cross/site: pytest and its dependencies, pure Python, shared."""
    path = os.path.join(BUILD, "site")
    if os.path.exists(os.path.join(path, ".complete")):
        return path
    wheels = os.path.join(BUILD, "wheels")
    os.makedirs(wheels, exist_ok=True)
    log("pip download %s" % " ".join(PYTEST))
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                    "--no-deps", "--only-binary=:all:", "-d", wheels] + PYTEST, check=True)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    for whl in sorted(os.listdir(wheels)):
        if whl.endswith(".whl"):
            with zipfile.ZipFile(os.path.join(wheels, whl)) as z:
                z.extractall(path)
    open(os.path.join(path, ".complete"), "w").close()
    return path


def command(name, args):
    """argv and environment that run `python -m pytest args` on target."""
    suite, arch, py, qemu, _ = TARGETS[name]
    root, python = sysroot(name)
    qemu_path = shutil.which(qemu)
    if qemu_path is None:
        raise SystemExit("cross: %s not found (Debian package qemu-user-static)" % qemu)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "PYTHONPATH": os.pathsep.join([os.path.join(TOP, "src"), TOP, site()]),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        "SPIN_CROSS_TARGET": name,
    }
    argv = [qemu_path, "-L", root, python] + list(args)
    return argv, env


def runs():
    out = []
    for tests, options in RUNS:
        present = [t for t in tests if os.path.exists(os.path.join(TOP, t))]
        if present:
            out.append((present, options))
    return out


def run(name, extra=()):
    todo = runs()
    if not todo or not os.path.isdir(os.path.join(TOP, "tests", "core")):
        raise SystemExit("cross: tests/core does not exist yet")
    argv, env = command(name, ["-c", "import sys; print('%s %s %s-endian' % ("
                                     "sys.implementation.name, sys.version.split()[0], sys.byteorder))"])
    about = subprocess.run(argv, env=env, cwd=TOP, stdout=subprocess.PIPE,
                           universal_newlines=True, check=True).stdout.strip()
    print("== %s: %s, %s" % (name, TARGETS[name][4], about), flush=True)
    rc = 0
    for tests, options in todo:
        argv, env = command(name, ["-m", "pytest", "-q", "-p", "no:cacheprovider"] + options
                            + tests + list(extra))
        rc = rc or subprocess.run(argv, env=env, cwd=TOP).returncode
    return rc


def main(argv):
    names = argv or list(TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        raise SystemExit("cross: unknown target %s; known: %s" % (", ".join(unknown), ", ".join(TARGETS)))
    failed = []
    for name in names:
        if run(name) != 0:
            failed.append(name)
    print("cross: %d of %d targets passed%s" % (len(names) - len(failed), len(names),
          "; failed: " + ", ".join(failed) if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
