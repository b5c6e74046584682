"""The ipks a router owner copies to the router, read back with tar and
gzip (not with the builder's code), as opkg would see them.

    make ipk  ->  build/spin_0.1.0-1_all.ipk, build/spin-micropython_0.1.0-1_all.ipk,
                  build/luci-app-spin_0.1.0-1_all.ipk
"""

import ast
import os
import re
import stat
import subprocess
import sys

import pytest

from tests.router import chroot

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCH = 1700000000
sys.path.insert(0, os.path.join(TOP, "src"))
import spin_lite  # noqa: E402

VERSION = spin_lite.__version__ + "-1"


@pytest.fixture(scope="module")
def ipks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ipk")
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(EPOCH))
    r = subprocess.run([sys.executable, os.path.join(TOP, "tools", "ipk.py"), "--out", str(out)],
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    print(r.stdout)
    assert r.returncode == 0, r.stdout
    names = ("spin", "spin-micropython", "spin-mqtt", "spin-controller", "luci-app-spin")
    paths = {n: out / ("%s_%s_all.ipk" % (n, VERSION)) for n in names}
    assert sorted(os.listdir(out)) == sorted(p.name for p in paths.values())
    return {n: str(p) for n, p in paths.items()}


def tar_list(data):
    """[(mode string, owner, size, name)] from `tar -tv` of gzipped bytes."""
    out = subprocess.run(["tar", "--numeric-owner", "-tvzf", "-"], input=data, check=True,
                         stdout=subprocess.PIPE).stdout.decode()
    rows = []
    for line in out.splitlines():
        words = line.split(None, 5)
        rows.append((words[0], words[1], int(words[2]), words[5]))
    return rows


def member(ipk, name):
    return subprocess.run(["tar", "-xzOf", ipk, "./" + name], check=True, stdout=subprocess.PIPE).stdout


def data_files(ipk):
    """{path: (mode, owner)} of data.tar.gz, files only, as tar lists them."""
    return {name[1:]: (mode, owner) for mode, owner, size, name in tar_list(member(ipk, "data.tar.gz"))
            if not name.endswith("/")}


def control(ipk):
    text = chroot.control_member(ipk, "control").decode()
    fields = {}
    key = None
    for line in text.rstrip("\n").split("\n"):
        if line.startswith(" "):
            fields[key] += "\n" + line
        else:
            key, _, value = line.partition(": ")
            fields[key] = value
    return fields


def gunzip(data):
    return subprocess.run(["gzip", "-dc"], input=data, check=True, stdout=subprocess.PIPE).stdout


def tar_headers(raw):
    """Walk a tar's 512-byte headers: [(typeflag, name, magic, mtime field)]."""
    out = []
    pos = 0
    while pos + 512 <= len(raw):
        h = raw[pos:pos + 512]
        if h == b"\0" * 512:
            break
        name = h[0:100].rstrip(b"\0").decode()
        size = int(h[124:136].rstrip(b"\0 ").decode() or "0", 8)
        out.append((h[156:157], name, h[257:265], h[136:148]))
        pos += 512 + (size + 511) // 512 * 512
    return out


# -- the container ---------------------------------------------------------

def test_an_ipk_is_a_gzipped_tar_of_three_members_in_opkg_order(ipks):
    for ipk in ipks.values():
        rows = tar_list(open(ipk, "rb").read())
        assert [r[3] for r in rows] == ["./debian-binary", "./data.tar.gz", "./control.tar.gz"]
        assert member(ipk, "debian-binary") == b"2.0\n"


def test_no_tar_in_either_ipk_has_a_pax_header(ipks):
    """opkg's tar reader stops at PAX headers ('Unknown typeflag')."""
    for ipk in ipks.values():
        outer = gunzip(open(ipk, "rb").read())
        tars = {"outer": outer, "data": gunzip(member(ipk, "data.tar.gz")),
                "control": gunzip(member(ipk, "control.tar.gz"))}
        for which, raw in tars.items():
            headers = tar_headers(raw)
            assert headers, which
            for typeflag, name, magic, mtime in headers:
                assert typeflag not in (b"x", b"g"), (ipk, which, name)
                assert magic == b"ustar  \0", (which, name, magic)  # GNU, not POSIX ustar/PAX
                # whole seconds: an octal integer, the build's SOURCE_DATE_EPOCH
                assert int(mtime.rstrip(b"\0 ").decode(), 8) == EPOCH, (which, name)
            assert b"PaxHeader" not in raw, which


def test_gzip_streams_carry_no_file_name_and_no_time(ipks):
    for ipk in ipks.values():
        for raw in (open(ipk, "rb").read(), member(ipk, "data.tar.gz"), member(ipk, "control.tar.gz")):
            assert raw[:3] == b"\x1f\x8b\x08"
            assert raw[3] & 0x08 == 0, "FNAME set"
            assert raw[4:8] == b"\0\0\0\0", "MTIME set"


def test_everything_belongs_to_root(ipks):
    for ipk in ipks.values():
        for data in (open(ipk, "rb").read(), member(ipk, "data.tar.gz"), member(ipk, "control.tar.gz")):
            assert {row[1] for row in tar_list(data)} == {"0/0"}


def test_what_a_router_installs_stays_small(ipks):
    """One variant of spin (either) and the LuCI app; with the MQTT link,
    what an access point that reports to a controller carries."""
    sizes = {name: os.path.getsize(p) for name, p in ipks.items()}
    print("ipk sizes: %s" % ", ".join("%s %.1f KB" % (n, s / 1024.0) for n, s in sorted(sizes.items())))
    for variant in ("spin", "spin-micropython"):
        assert sizes[variant] + sizes["luci-app-spin"] <= 200 * 1024, variant
        assert sizes[variant] + sizes["spin-mqtt"] <= 200 * 1024, variant


# -- control ---------------------------------------------------------------

def test_spin_control_fields(ipks):
    c = control(ipks["spin"])
    data = member(ipks["spin"], "data.tar.gz")
    assert list(c) == ["Package", "Version", "Depends", "Source", "SourceName", "License",
                       "Section", "Require-User", "Maintainer", "Architecture", "Installed-Size",
                       "Description"]
    assert c["Package"] == "spin"
    # the agent's own user and group, which default_postinst creates
    assert c["Require-User"] == "spin=385:spin=385"
    assert c["Version"] == VERSION
    assert c["Depends"] == "libc, " + ", ".join(sdk_depends())
    assert c["Source"] == "package/spin"
    assert c["SourceName"] == "spin"
    assert c["License"] == "GPL-3.0-or-later"
    assert c["Section"] == "net"
    assert re.match(r"^[^<>]+ <[^@<>]+@[^<>]+>$", c["Maintainer"])
    assert c["Architecture"] == "all"
    assert int(c["Installed-Size"]) == len(gunzip(data))
    assert c["Description"].startswith("A small agent that shows a home-router owner")
    assert all(line.startswith(" ") for line in c["Description"].split("\n")[1:])


def test_spin_micropython_control_fields(ipks):
    """The variant for routers without python3 depends on micropython
    alone, stands in for spin (luci-app-spin's Depends: spin) and cannot
    be installed beside it, since both own /usr/bin/spin and the rest."""
    c = control(ipks["spin-micropython"])
    assert list(c) == ["Package", "Version", "Depends", "Conflicts", "Provides", "Source", "SourceName",
                       "License", "Section", "Require-User", "Maintainer", "Architecture", "Installed-Size",
                       "Description"]
    assert c["Package"] == "spin-micropython"
    assert c["Require-User"] == "spin=385:spin=385"
    assert c["Version"] == VERSION
    assert c["Depends"] == "libc, micropython"
    assert c["Provides"] == "spin"
    assert c["Conflicts"] == "spin"
    assert c["Source"] == "package/spin"
    assert c["SourceName"] == "spin-micropython"
    assert c["Architecture"] == "all"
    assert int(c["Installed-Size"]) == len(gunzip(member(ipks["spin-micropython"], "data.tar.gz")))
    assert "MicroPython" in c["Description"]
    # spin itself provides and conflicts with nothing
    assert "Provides" not in control(ipks["spin"]) and "Conflicts" not in control(ipks["spin"])


def test_luci_control_fields(ipks):
    c = control(ipks["luci-app-spin"])
    assert c["Package"] == "luci-app-spin"
    assert c["Version"] == VERSION
    assert c["Depends"] == "libc, spin, luci-base"
    assert c["Source"] == "luci-app-spin"
    assert c["SourceName"] == "luci-app-spin"
    assert c["License"] == "GPL-3.0-or-later"
    assert c["Section"] == "luci"
    assert c["Architecture"] == "all"
    assert int(c["Installed-Size"]) == len(gunzip(member(ipks["luci-app-spin"], "data.tar.gz")))
    assert c["Description"] and c["Maintainer"]


def test_control_members_and_conffiles(ipks):
    assert sorted(chroot.control_names(ipks["spin"])) == ["conffiles", "control", "postinst", "prerm"]
    assert chroot.control_member(ipks["spin"], "conffiles") == b"/etc/config/spin\n"
    inner = member(ipks["spin"], "control.tar.gz")
    modes = {name: mode for mode, owner, size, name in tar_list(inner)}
    assert modes["./postinst"] == modes["./prerm"] == "-rwxr-xr-x"
    assert sorted(chroot.control_names(ipks["luci-app-spin"])) == ["control", "postinst", "prerm"]
    # the variant shares spin's conffiles and maintainer scripts
    mpy = ipks["spin-micropython"]
    assert sorted(chroot.control_names(mpy)) == ["conffiles", "control", "postinst", "prerm"]
    for name in ("conffiles", "postinst", "prerm"):
        assert chroot.control_member(mpy, name) == chroot.control_member(ipks["spin"], name).replace(
            b"spin prerm", b"spin-micropython prerm").replace(b"spin postinst", b"spin-micropython postinst")
    assert b"uci -q delete firewall.spin" in chroot.control_member(mpy, "prerm")


def test_version_is_the_python_packages_plus_the_release(ipks):
    for mk in ("package/spin/Makefile", "luci-app-spin/Makefile"):
        text = open(os.path.join(TOP, mk)).read()
        assert re.search(r"^PKG_VERSION:=%s$" % re.escape(spin_lite.__version__), text, re.M), mk
        assert re.search(r"^PKG_RELEASE:=1$", text, re.M), mk


# -- the files on the router ------------------------------------------------

FIXED = {
    "/etc/init.d/spin": "-rwxr-xr-x",
    "/etc/config/spin": "-rw-------",          # INSTALL_CONF, as the SDK installs it
    "/etc/uci-defaults/90-spin": "-rwxr-xr-x",
    "/usr/bin/spin": "-rwxr-xr-x",
    "/usr/share/spin/firewall.include": "-rwxr-xr-x",
    "/etc/sysctl.d/60-spin.conf": "-rw-r--r--",  # byte counters from boot on
    "/lib/upgrade/keep.d/spin": "-rw-r--r--",  # /etc/spin/ survives sysupgrade
    # what the agent, user spin, may do (procd via ujail) and own on ubus;
    # ubusd skips an ACL file that group or others may write
    "/etc/capabilities/spin.json": "-rw-r--r--",
    "/usr/share/acl.d/spin.json": "-rw-r--r--",
}


def test_spin_ships_the_agent_as_plain_py_files_and_the_router_files(ipks):
    files = data_files(ipks["spin"])
    sources = sorted(f for f in os.listdir(os.path.join(TOP, "src", "spin_lite"))
                     if f.endswith(".py") and f not in CONTROLLER + MQTT)
    expected = dict(FIXED)
    for f in sources:
        expected["/usr/lib/spin/spin_lite/" + f] = "-rw-r--r--"
    assert {p: m for p, (m, o) in files.items()} == expected
    # every router file in the repository is packaged (the MicroPython
    # launcher by the other variant, as /usr/bin/spin)
    for dirpath, _, names in os.walk(os.path.join(TOP, "files")):
        for n in names:
            path = "/" + os.path.relpath(os.path.join(dirpath, n), os.path.join(TOP, "files"))
            assert path in files or path == MPY_LAUNCHER, path
    assert member_text(ipks["spin"], "/lib/upgrade/keep.d/spin") == "/etc/spin/\n"


MPY_LAUNCHER = "/usr/bin/spin.micropython"
CONTROLLER = ("controller.py", "scans.py")  # package spin-controller's, for the NAS
MQTT = ("mqtt.py", "mqttlink.py")  # package spin-mqtt's, for a router that publishes


def test_the_controller_is_a_package_of_its_own_that_needs_spin(ipks):
    """A router that is one of the agents carries none of the controller's
    code; the host that governs them installs spin-controller beside spin."""
    files = data_files(ipks["spin-controller"])
    assert {p: m for p, (m, o) in files.items()} == {
        "/usr/lib/spin/spin_lite/" + f: "-rw-r--r--" for f in CONTROLLER}
    c = control(ipks["spin-controller"])
    assert c["Package"] == "spin-controller" and c["Depends"] == "libc, spin, spin-mqtt"
    assert c["Architecture"] == "all"
    for variant in ("spin", "spin-micropython"):
        assert not [p for p in data_files(ipks[variant]) if p.rsplit("/", 1)[-1] in CONTROLLER], variant


def test_the_mqtt_link_is_a_package_of_its_own_for_either_variant(ipks):
    """A router that publishes to no broker carries no MQTT client; the
    link needs spin, which spin-micropython provides too."""
    files = data_files(ipks["spin-mqtt"])
    assert {p: m for p, (m, o) in files.items()} == {
        "/usr/lib/spin/spin_lite/" + f: "-rw-r--r--" for f in MQTT}
    c = control(ipks["spin-mqtt"])
    assert c["Package"] == "spin-mqtt" and c["Depends"] == "libc, spin"
    assert c["Architecture"] == "all"
    for variant in ("spin", "spin-micropython"):
        assert not [p for p in data_files(ipks[variant]) if p.rsplit("/", 1)[-1] in MQTT], variant


def test_spin_micropython_ships_the_same_files_with_its_own_launcher(ipks):
    spin, mpy = data_files(ipks["spin"]), data_files(ipks["spin-micropython"])
    assert mpy.pop("/lib/upgrade/keep.d/spin-micropython") == spin.pop("/lib/upgrade/keep.d/spin")
    assert mpy == spin
    for path in spin:
        if path != "/usr/bin/spin":
            assert member_text(ipks["spin-micropython"], path) == member_text(ipks["spin"], path), path
    launcher = member_text(ipks["spin-micropython"], "/usr/bin/spin")
    assert launcher == open(os.path.join(TOP, "files" + MPY_LAUNCHER)).read()
    assert "exec /usr/bin/micropython " in launcher and "MICROPYPATH=" in launcher
    assert member_text(ipks["spin-micropython"], "/lib/upgrade/keep.d/spin-micropython") == "/etc/spin/\n"


def member_text(ipk, path):
    data = member(ipk, "data.tar.gz")
    return subprocess.run(["tar", "-xzOf", "-", "." + path], input=data, check=True,
                          stdout=subprocess.PIPE).stdout.decode()


def test_packaged_files_are_the_repository_files(ipks):
    for path in ("/etc/init.d/spin", "/etc/config/spin", "/usr/lib/spin/spin_lite/config.py"):
        src = os.path.join(TOP, "files" + path) if not path.startswith("/usr/lib/spin/") \
            else os.path.join(TOP, "src", "spin_lite", os.path.basename(path))
        assert member_text(ipks["spin"], path) == open(src).read()


def test_luci_ships_acl_and_menu_where_rpcd_and_luci_read_them(ipks):
    files = data_files(ipks["luci-app-spin"])
    assert files["/usr/share/rpcd/acl.d/luci-app-spin.json"][0] == "-rw-r--r--"
    assert files["/usr/share/luci/menu.d/luci-app-spin.json"][0] == "-rw-r--r--"
    for path in files:
        assert path.startswith(("/www/", "/usr/share/luci/", "/usr/share/rpcd/")), path
    for dirpath, _, names in os.walk(os.path.join(TOP, "luci-app-spin", "htdocs")):
        for n in names:
            rel = os.path.relpath(os.path.join(dirpath, n), os.path.join(TOP, "luci-app-spin", "htdocs"))
            assert "/www/" + rel in files


def test_acl_grants_each_api_method_as_read_or_write():
    import json

    from spin_lite import api
    acl = json.load(open(os.path.join(TOP, "luci-app-spin/root/usr/share/rpcd/acl.d/luci-app-spin.json")))
    grant = acl["luci-app-spin"]
    read, write = set(grant["read"]["ubus"]["spin"]), set(grant["write"]["ubus"]["spin"])
    for name, entry in api.METHODS.items():
        writes = entry[2]
        assert name in (write if writes else read), "%s missing from the %s ACL" % (
            name, "write" if writes else "read")
        assert name not in (read if writes else write), name


# -- maintainer scripts ----------------------------------------------------

def test_offline_root_install_touches_nothing_outside_the_root(ipks, tmp_path):
    """An image builder installs spin into a root (opkg --offline-root sets
    IPKG_INSTROOT): the boot links appear inside that root, no uci-defaults
    run, nothing is started, and the builder's own /tmp and /etc stay as
    they were. Every command the script runs is recorded through PATH."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "etc" / "config").mkdir(parents=True)
    log = tmp_path / "commands.log"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("mkdir", "ln", "rm", "uci", "ubus", "cp", "mv", "touch", "chmod", "kill",
                 "killall", "nft", "iptables", "ipset", "sed", "cat"):
        real = subprocess.run(["sh", "-c", "command -v " + tool], stdout=subprocess.PIPE,
                              universal_newlines=True).stdout.strip()
        with open(bindir / tool, "w") as f:
            f.write('#!/bin/sh\necho "%s $*" >> %s\n%s\n' % (
                tool, log, 'exec %s "$@"' % real if real else "exit 0"))
        os.chmod(bindir / tool, 0o755)
    watched = ["/tmp/luci-indexcache.spin-test", "/tmp/luci-modulecache", "/etc/rc.d", "/etc/init.d",
               "/etc/uci-defaults", "/etc/config"]
    marker = "/tmp/luci-indexcache.spin-test"
    open(marker, "w").close()
    try:
        before = {p: snapshot(p) for p in watched}
        r = chroot_install_offline(ipks["spin"], str(root), str(bindir))
        after = {p: snapshot(p) for p in watched}
    finally:
        os.unlink(marker)
    assert r.returncode == 0, r.stdout
    assert before == after
    assert os.readlink(root / "etc/rc.d/S95spin") == "../init.d/spin"
    assert os.readlink(root / "etc/rc.d/K10spin") == "../init.d/spin"
    assert (root / "etc/uci-defaults/90-spin").exists(), "uci-defaults run at first boot, not now"
    commands = log.read_text().splitlines()
    assert commands, "the script ran no command at all"
    for line in commands:
        tool, *args = line.split()
        assert tool in ("mkdir", "ln"), line
        paths = [a for a in args if a.startswith("/")]
        assert paths and all(a.startswith(str(root) + "/") for a in paths), line


def snapshot(path):
    if not os.path.lexists(path):
        return None
    st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode):
        return sorted(os.listdir(path)), st.st_mtime_ns
    return st.st_size, st.st_mtime_ns


def chroot_install_offline(ipk, root, bindir):
    old = os.environ["PATH"]
    os.environ["PATH"] = bindir + ":" + old
    try:
        return chroot.install(root, ipk, offline=True)
    finally:
        os.environ["PATH"] = old


def test_opkg_offline_root_alone_is_taken_for_an_offline_root_too(ipks, tmp_path):
    """opkg-lede's --offline-root --force-postinstall runs scripts with
    PKG_ROOT=<root>/ but no IPKG_INSTROOT (image builds export that
    themselves): the scripts still stay inside the root."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    chroot.install(str(root), ipks["spin"], offline=True)
    for link in ("S95spin", "K10spin"):
        os.unlink(root / "etc/rc.d" / link)
    env = {"PATH": os.environ["PATH"], "PKG_ROOT": str(root) + "//", "PKG_UPGRADE": "0"}
    info = root / "usr/lib/opkg/info"
    r = subprocess.run(["busybox", "sh", str(info / "spin.postinst"), "configure"], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    assert r.returncode == 0 and r.stdout == "", r.stdout
    assert os.readlink(root / "etc/rc.d/S95spin") == "../init.d/spin"
    r = subprocess.run(["busybox", "sh", str(info / "spin.prerm"), "remove"], env=env)
    assert r.returncode == 0
    assert not os.path.lexists(root / "etc/rc.d/S95spin")


def test_offline_remove_takes_the_boot_links_away(ipks, tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    assert chroot.install(str(root), ipks["spin"], offline=True).returncode == 0
    assert os.path.lexists(root / "etc/rc.d/S95spin")
    prerm = root / "usr/lib/opkg/info/spin.prerm"
    r = subprocess.run(["busybox", "sh", str(prerm), "remove"],
                       env={"PATH": os.environ["PATH"], "IPKG_INSTROOT": str(root)})
    assert r.returncode == 0
    assert not os.path.lexists(root / "etc/rc.d/S95spin")
    assert not os.path.lexists(root / "etc/rc.d/K10spin")


# -- DEPENDS, derived from what the agent imports ---------------------------

# Top-level stdlib modules that OpenWrt does NOT ship in python3-light, and
# the package that has them (lang/python/python3/files/python3-package-*.mk,
# read on the openwrt-21.02 and openwrt-24.10 branches). Everything else of
# the stdlib is in python3-light or python3-base, which light depends on.
# email is its own package on 21.02 and part of python3-urllib on 24.10.
OPENWRT_PY3_SPLIT = {
    "asyncio": "python3-asyncio",
    "cgi": "python3-cgi", "cgitb": "python3-cgi",
    "ctypes": "python3-ctypes",
    "dbm": "python3-dbm",
    "decimal": "python3-decimal",
    "distutils": "python3-distutils",
    "email": "python3-email",
    "lib2to3": "python3-lib2to3",
    "logging": "python3-logging",
    "lzma": "python3-lzma",
    "multiprocessing": "python3-multiprocessing",
    "curses": "python3-ncurses",
    "ssl": "python3-openssl", "_ssl": "python3-openssl", "_hashlib": "python3-openssl",
    "doctest": "python3-pydoc", "pydoc": "python3-pydoc", "pydoc_data": "python3-pydoc",
    "readline": "python3-readline",
    "sqlite3": "python3-sqlite3",
    "unittest": "python3-unittest",
    "urllib": "python3-urllib",
    "uuid": "python3-uuid",
    "ensurepip": "python3-venv", "venv": "python3-venv",
    "xml": "python3-xml", "xmlrpc": "python3-xml", "pyexpat": "python3-xml",
    "unicodedata": "python3-codecs",
}
# not shipped at all by OpenWrt's python3 packages
OPENWRT_PY3_ABSENT = {"tkinter", "idlelib", "turtledemo", "turtle", "webbrowser", "_osx_support", "test"}


def sdk_depends(package="spin"):
    """DEPENDS of `define Package/<package>` in package/spin/Makefile."""
    text = open(os.path.join(TOP, "package", "spin", "Makefile")).read()
    block = re.search(r"^define Package/%s\n(.*?)^endef" % re.escape(package), text, re.M | re.S)
    m = re.search(r"^\s*DEPENDS:=(.*)$", block.group(1), re.M)
    return [w.lstrip("+") for w in m.group(1).split()]


def _guarded(node, parents):
    """An import the agent can do without: inside `try: ... except
    ImportError`, or inside `if MICROPYTHON` (MicroPython-only modules)."""
    for p in parents:
        if isinstance(p, ast.Try) and any(
                h.type is not None and "ImportError" in ast.dump(h.type) for h in p.handlers):
            if any(node is n or _contains(n, node) for n in p.body):
                return True
        if isinstance(p, ast.If) and "MICROPYTHON" in ast.dump(p.test):
            return True
    return False


def _contains(tree, node):
    return any(n is node for n in ast.walk(tree))


def agent_imports():
    """{top-level module: [(file, line, guarded)]} over src/spin_lite."""
    found = {}
    src = os.path.join(TOP, "src", "spin_lite")
    for fn in sorted(os.listdir(src)):
        if not fn.endswith(".py"):
            continue
        tree = ast.parse(open(os.path.join(src, fn)).read(), fn)
        parents = {}
        for p in ast.walk(tree):
            for c in ast.iter_child_nodes(p):
                parents[c] = p

        def chain(n):
            while n in parents:
                n = parents[n]
                yield n
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    continue
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], []).append(
                    (fn, node.lineno, _guarded(node, list(chain(node)))))
    return found


# stdlib modules only a feature the owner turns on imports, guarded by
# `except ImportError` with a message naming the package: not a dependency
OPTIONAL_FEATURE = {"ssl": "mqtt_ca (MQTT over TLS): python3-openssl"}


def required_packages():
    needed = {"python3-light"}
    problems = []
    stdlib = sys.stdlib_module_names
    for mod, where in sorted(agent_imports().items()):
        if mod == "spin_lite":
            continue
        if mod not in stdlib:
            unguarded = [w for w in where if not w[2]]
            if unguarded:
                problems.append("%s: not in the stdlib and imported unguarded at %s" % (mod, unguarded))
            continue
        if mod in OPENWRT_PY3_ABSENT:
            problems.append("%s: OpenWrt has no package with it (%s)" % (mod, where))
        elif mod in OPENWRT_PY3_SPLIT:
            if mod in OPTIONAL_FEATURE and all(w[2] for w in where):
                continue  # the owner installs it with the feature (README says which)
            needed.add(OPENWRT_PY3_SPLIT[mod])
    return needed, problems


@pytest.mark.skipif(not hasattr(sys, "stdlib_module_names"), reason="needs Python >= 3.10 to list the stdlib")
def test_depends_are_exactly_the_python3_packages_the_agent_imports():
    needed, problems = required_packages()
    assert not problems, problems
    declared = set(sdk_depends())
    assert declared == needed, "package/spin/Makefile DEPENDS %s, the imports need %s" % (
        sorted(declared), sorted(needed))


def test_what_the_stdlib_itself_pulls_in_is_covered_too():
    """Importing every agent module loads more of the stdlib than the agent
    names (subprocess brings selectors, ...): all of it must be in the
    declared packages as well."""
    src = os.path.join(TOP, "src", "spin_lite")
    mods = sorted(f[:-3] for f in os.listdir(src) if f.endswith(".py") and f != "__main__.py")
    code = ("import sys\n" + "".join("import spin_lite.%s\n" % m for m in mods)
            + "print(' '.join(sorted({n.split('.')[0] for n in sys.modules})))")
    # -S: without site, whose .pth files on this machine import zipfile and lzma
    out = subprocess.run([sys.executable, "-S", "-c", code], env=dict(os.environ, PYTHONPATH=os.path.join(TOP, "src")),
                         check=True, stdout=subprocess.PIPE, universal_newlines=True).stdout.split()
    assert "spin_lite" in out and "_json" in out  # plat.json: json's C half, not json
    declared = set(sdk_depends())
    for name in out:
        assert name not in OPENWRT_PY3_ABSENT, name
        if name in OPENWRT_PY3_SPLIT:
            assert OPENWRT_PY3_SPLIT[name] in declared, "%s needs %s" % (name, OPENWRT_PY3_SPLIT[name])


def test_the_import_analysis_notices_a_split_out_module(tmp_path, monkeypatch):
    """The derivation above can fail: an agent that imported logging would
    need python3-logging."""
    tree = ast.parse("import logging\ntry:\n    import ujson\nexcept ImportError:\n    import json\n")
    nodes = [n for n in ast.walk(tree) if isinstance(n, ast.Import)]
    assert OPENWRT_PY3_SPLIT[nodes[0].names[0].name] == "python3-logging"
    parents = {c: p for p in ast.walk(tree) for c in ast.iter_child_nodes(p)}

    def chain(n):
        while n in parents:
            n = parents[n]
            yield n
    guarded = {n.names[0].name: _guarded(n, list(chain(n))) for n in nodes}
    assert guarded == {"logging": False, "ujson": True, "json": False}


def test_the_same_sources_build_the_same_bytes(ipks, tmp_path):
    """Reproducible: with the same SOURCE_DATE_EPOCH a second build is
    byte for byte the first (sorted names, fixed times, gzip without a
    name or time), so an ipk can be checked against its sources."""
    import hashlib
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(EPOCH))
    subprocess.run([sys.executable, os.path.join(TOP, "tools", "ipk.py"), "--out", str(tmp_path)],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    for name, first in ipks.items():
        again = tmp_path / os.path.basename(first)
        assert hashlib.sha256(open(first, "rb").read()).hexdigest() == \
            hashlib.sha256(open(again, "rb").read()).hexdigest(), name


def test_a_variant_that_calls_a_block_nobody_defined_is_refused_by_name(tmp_path):
    """The builder reads a variant's `$(call ...)` and `X = $(Y)` lines as
    make would, and a typo in either stops the build with the name."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("ipk_tool", os.path.join(TOP, "tools", "ipk.py"))
    ipk = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ipk)
    good = ("define Package/a/install\n\t$(INSTALL_DIR) $(1)/usr\nendef\n"
            "define Package/b/install\n$(call Package/a/install,$(1))\n\t$(INSTALL_DIR) $(1)/etc\nendef\n"
            "Package/b/conffiles = $(Package/a/install)\n")
    mk = tmp_path / "Makefile"
    mk.write_text(good)
    _, defines = ipk.read_makefile(str(mk))
    assert defines["Package/b/install"].split("\n") == ["\t$(INSTALL_DIR) $(1)/usr", "\t$(INSTALL_DIR) $(1)/etc"]
    assert defines["Package/b/conffiles"] == defines["Package/a/install"]
    for bad, name in ((good.replace("call Package/a/install", "call Package/c/install"), "Package/c/install"),
                      (good.replace("= $(Package/a/install)", "= $(Package/a/conffiles)"), "Package/a/conffiles")):
        mk.write_text(bad)
        with pytest.raises(ipk.BuildError, match=re.escape(name)):
            ipk.read_makefile(str(mk))
