"""The OpenWrt SDK Makefiles as make itself reads them. The SDK cannot run
here, so tests/sdk stands in for its rules.mk, include/package.mk and the
LuCI feed's luci.mk, with the install macros' real modes (INSTALL_BIN
0755, INSTALL_DATA 0644, INSTALL_CONF 0600). An SDK build must install
the same files as `make ipk`, and make's $$ escaping must leave valid
shell in the maintainer scripts."""

import os
import subprocess

import pytest

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SDK = os.path.join(TOP, "tests", "sdk")


def sdk_install(pkgdir, name, tmp_path):
    dest, info = tmp_path / "root", tmp_path / "info"
    r = subprocess.run(["make", "-s", "-C", os.path.join(TOP, pkgdir), "TOPDIR=" + SDK,
                        "DESTDIR=%s" % dest, "INFODIR=%s" % info, "install-" + name],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    assert r.returncode == 0, r.stdout
    tree = {}
    for dirpath, _, names in os.walk(dest):
        for n in names:
            p = os.path.join(dirpath, n)
            tree["/" + os.path.relpath(p, dest)] = oct(os.stat(p).st_mode & 0o7777)
    fields = dict(line.split("=", 1) for line in (info / "vars").read_text().splitlines())
    return tree, fields, info


def ipk_tree(ipk):
    data = subprocess.run(["tar", "-xzOf", ipk, "./data.tar.gz"], check=True, stdout=subprocess.PIPE).stdout
    out = subprocess.run(["tar", "-tvzf", "-"], input=data, check=True, stdout=subprocess.PIPE).stdout.decode()
    tree = {}
    for line in out.splitlines():
        mode, name = line.split()[0], line.split()[-1]
        if mode.startswith("-"):
            bits = 0
            for i, c in enumerate(mode[1:]):
                if c != "-":
                    bits |= 1 << (8 - i)
            tree[name[1:]] = oct(bits)
    return tree


def ipk_control(ipk, member):
    inner = subprocess.run(["tar", "-xzOf", ipk, "./control.tar.gz"], check=True, stdout=subprocess.PIPE).stdout
    return subprocess.run(["tar", "-xzOf", "-", "./" + member], input=inner, check=True,
                          stdout=subprocess.PIPE).stdout.decode()


def test_an_sdk_build_of_spin_installs_what_make_ipk_packs(ipks, tmp_path):
    tree, fields, info = sdk_install("package/spin", "spin", tmp_path)
    packed = ipk_tree(ipks["spin"])
    # the SDK writes keep.d for conffiles the package does not ship itself
    assert packed.pop("/lib/upgrade/keep.d/spin") == oct(0o644)
    assert tree == packed
    assert tree["/etc/config/spin"] == oct(0o600)
    assert tree["/etc/init.d/spin"] == oct(0o755)

    control = ipk_control(ipks["spin"], "control")
    assert "Version: %s-%s\n" % (fields["PKG_VERSION"], fields["PKG_RELEASE"]) in control
    assert "Depends: libc, %s\n" % ", ".join(d.lstrip("+") for d in fields["DEPENDS"].split()) in control
    assert fields["PKGARCH"] == "all"
    # package-pack.mk writes USERID as Require-User, which the postinst reads
    assert "Require-User: %s\n" % fields["USERID"] in control and fields["USERID"]
    assert (info / "conffiles").read_text().split() == ["/etc/config/spin", "/etc/spin/"]


# the packages beside spin: each installs its own modules, which spin lacks
BESIDE_SPIN = [("spin-controller", ("controller.py", "scans.py")), ("spin-mqtt", ("mqtt.py", "mqttlink.py"))]


@pytest.mark.parametrize("package, modules", BESIDE_SPIN)
def test_an_sdk_build_of_a_package_beside_spin_installs_what_make_ipk_packs(ipks, tmp_path, package, modules):
    tree, fields, info = sdk_install("package/spin", package, tmp_path)
    assert tree == ipk_tree(ipks[package])
    assert sorted(tree) == ["/usr/lib/spin/spin_lite/" + m for m in modules]
    spin, _, _ = sdk_install("package/spin", "spin", tmp_path / "spin")
    assert not [p for p in spin if p.endswith(tuple("/" + m for m in modules))]


def test_an_sdk_build_of_spin_micropython_is_spins_files_with_the_micropython_launcher(ipks, tmp_path):
    """make itself expands the variant's `$(call Package/spin/Default)`,
    `$(call Package/spin/install,$(1))` and shared conffiles as tools/ipk.py
    reads them."""
    tree, fields, info = sdk_install("package/spin", "spin-micropython", tmp_path / "mpy")
    packed = ipk_tree(ipks["spin-micropython"])
    assert packed.pop("/lib/upgrade/keep.d/spin-micropython") == oct(0o644)
    assert tree == packed
    spin_tree, _, _ = sdk_install("package/spin", "spin", tmp_path / "spin")
    assert tree == spin_tree
    launcher = (tmp_path / "mpy" / "root" / "usr" / "bin" / "spin").read_text()
    assert launcher == open(os.path.join(TOP, "files", "usr", "bin", "spin.micropython")).read()

    control = ipk_control(ipks["spin-micropython"], "control")
    assert fields["DEPENDS"] == "+micropython"
    assert "Depends: libc, micropython\n" in control
    assert fields["PROVIDES"] == "spin" and "Provides: spin\n" in control
    assert fields["CONFLICTS"] == "spin" and "Conflicts: spin\n" in control
    assert fields["PKGARCH"] == "all" and fields["SECTION"] == "net"
    assert (info / "conffiles").read_text().split() == ["/etc/config/spin", "/etc/spin/"]


def test_the_makefiles_maintainer_scripts_are_valid_shell_and_in_the_ipk(ipks, tmp_path):
    for pkgdir, name, script in (("package/spin", "spin", "prerm"),
                                 ("package/spin", "spin-micropython", "prerm"),
                                 ("luci-app-spin", "luci-app-spin", "postinst")):
        _, _, info = sdk_install(pkgdir, name, tmp_path / name)
        text = (info / script).read_text()
        assert text.startswith("#!/bin/sh\n") and "$$" not in text
        r = subprocess.run(["busybox", "sh", "-n", str(info / script)], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True)
        assert r.returncode == 0, r.stdout
        body = text.split("\n", 1)[1].strip("\n")
        assert body in ipk_control(ipks[name], script)


def test_an_sdk_build_of_the_luci_app_installs_what_make_ipk_packs(ipks, tmp_path):
    tree, fields, _ = sdk_install("luci-app-spin", "luci-app-spin", tmp_path)
    assert tree == ipk_tree(ipks["luci-app-spin"])
    control = ipk_control(ipks["luci-app-spin"], "control")
    assert "Version: %s-%s\n" % (fields["PKG_VERSION"], fields["PKG_RELEASE"]) in control
    assert fields["SECTION"] == "luci" and fields["PKGARCH"] == "all"
