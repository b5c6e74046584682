"""make ipk: build spin_<v>_all.ipk, spin-micropython_<v>_all.ipk,
spin-mqtt_<v>_all.ipk, spin-controller_<v>_all.ipk and
luci-app-spin_<v>_all.ipk without the OpenWrt SDK, in the format opkg
reads.

The SDK Makefiles are the specification: the packages package/spin/Makefile
builds (its `BuildPackage` lines), their control fields, conffiles and
install lists (`$(INSTALL_BIN)` and friends, `$(call Package/x/...)` and
`Package/y/z = $(Package/x/z)` for a variant that shares them, and
`$(filter-out ...,$(wildcard ...))` in an install line), and the
luci.mk layout of luci-app-spin/ (htdocs/ -> /www,
root/ -> /) are read from them, so `make ipk` and an SDK build ship the
same files with the same modes. The version is src/spin_lite/__version__
plus the Makefile's PKG_RELEASE (0.1.0-1); both Makefiles must agree.

An ipk, as OpenWrt's scripts/ipkg-build writes it and opkg-lede's reader
takes it: a gzipped tar of ./debian-binary ("2.0\\n"), ./data.tar.gz and
./control.tar.gz. opkg's tar reader knows ustar and GNU headers but not
PAX ("Unknown typeflag"), so every tar here is GNU format with whole-second
times (a float mtime is what makes Python's tarfile write a PAX header),
uid/gid 0 and sorted names; gzip carries no name and no time.

The SDK wraps a package's own maintainer scripts in default_postinst and
default_prerm (lib/functions.sh on the router). This builder writes out
what those do for this package instead of calling them, so the scripts
are complete by themselves; see POSTINST and PRERM.
"""

import argparse
import glob
import gzip
import io
import os
import re
import subprocess
import sys
import tarfile

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# OpenWrt's install macros (rules.mk) and the modes they give
INSTALL_MODES = {"INSTALL_BIN": 0o755, "INSTALL_DATA": 0o644, "INSTALL_CONF": 0o600}

# field order as include/package-pack.mk writes them
FIELDS = ["Package", "Version", "Depends", "Conflicts", "Provides", "Source", "SourceName", "License",
          "Section", "Require-User", "Maintainer", "Architecture", "Installed-Size", "Description"]
# written only when the package has them
OPTIONAL = ("Conflicts", "Provides", "Require-User")

# What default_postinst does on a live router, spelled out: run the
# package's uci-defaults and delete them, commit, clear LuCI's caches,
# run the package's own postinst, enable (not on upgrade) and start its
# init scripts. In an offline root (IPKG_INSTROOT, an image build) nothing
# runs; the init scripts are only enabled, as boot links inside that root.
POSTINST = r"""#!/bin/sh
# {pkg} postinst, written by tools/ipk.py: what OpenWrt's default_postinst
# does for an SDK-built package, then the package's own postinst.
[ "${{IPKG_NO_SCRIPT}}" = "1" ] && exit 0
{instroot}{users}if [ -n "${{IPKG_INSTROOT}}" ]; then
{offline}	exit 0
fi
{sysctl}{uci_defaults}rm -f /tmp/luci-indexcache*
rm -rf /tmp/luci-modulecache
{own}{start}exit 0
"""

# a package with /etc/sysctl.d files: applied now, as default_postinst
# does, not only at the next boot (before uci-defaults, in its order)
POSTINST_SYSCTL = "[ -x /etc/init.d/sysctl ] && /etc/init.d/sysctl restart\n"

POSTINST_UCI_DEFAULTS = r"""[ -d /tmp/.uci ] || mkdir -p /tmp/.uci
for i in {files}; do
	( [ -f "$i" ] && cd "$(dirname "$i")" && . "$i" ) && rm -f "$i"
done
command -v uci >/dev/null && uci commit
"""

# A package with USERID (control field Require-User: user=uid:group=gid):
# what default_postinst's add_group_and_user does with it, in the image
# as on a live router: the group and the user (home /var/run/<user>, no
# shell, no password) unless they exist, and the user in the group.
POSTINST_USER = r"""R="${{IPKG_INSTROOT}}"
if [ -f "$R/etc/group" ] && ! grep -qs "^{group}:" "$R/etc/group"; then
	echo "{group}:x:{gid}:" >> "$R/etc/group"
fi
if [ -f "$R/etc/passwd" ] && ! grep -qs "^{user}:" "$R/etc/passwd"; then
	echo "{user}:x:{uid}:{gid}:{user}:/var/run/{user}:/bin/false" >> "$R/etc/passwd"
	echo "{user}:x:0:0:99999:7:::" >> "$R/etc/shadow"
fi
grp="$(grep -s "^{group}:" "$R/etc/group")"
if [ -n "$grp" ] && ! echo "$grp" | cut -d: -f4 | tr , '\n' | grep -qx "{user}"; then
	case "$grp" in *:) sep="" ;; *) sep="," ;; esac
	sed -i "s/^$grp\$/$grp${{sep}}{user}/" "$R/etc/group"
fi
"""


def user_tuples(value):
    """USERID user=uid:group=gid (space-separated tuples) -> [(user, uid,
    group, gid)]; other forms (no ids, extra groups) are not needed here."""
    out = []
    for t in value.split():
        m = re.match(r"^([a-z_][a-z0-9_-]*)=(\d+):([a-z_][a-z0-9_-]*)=(\d+)$", t)
        if not m:
            raise BuildError("USERID %r: only user=uid:group=gid is supported" % t)
        out.append(m.groups())
    return out


# opkg-lede sets PKG_ROOT (the destination's root) for every script but
# never IPKG_INSTROOT: OpenWrt's image build exports that itself. A plain
# `opkg --offline-root DIR --force-postinstall` would otherwise run the
# live branch against the build host.
INSTROOT = r"""if [ -z "${IPKG_INSTROOT}" ] && [ -n "${PKG_ROOT}" ]; then
	IPKG_INSTROOT="$(echo "${PKG_ROOT}" | sed 's,/*$,,')"
	export IPKG_INSTROOT
fi
"""

PRERM = r"""#!/bin/sh
# {pkg} prerm, written by tools/ipk.py: the package's own prerm, then what
# OpenWrt's default_prerm does: disable (not on upgrade) and stop.
[ "${{IPKG_NO_SCRIPT}}" = "1" ] && exit 0
{instroot}if [ -n "${{IPKG_INSTROOT}}" ]; then
{offline}	exit 0
fi
{own}{stop}exit 0
"""


class BuildError(Exception):
    pass


# -- reading the SDK Makefiles -------------------------------------------

def read_makefile(path):
    """(variables, defines): top-level NAME:=value lines and the text of
    each `define NAME ... endef` block, with `$(call NAME...)` lines
    replaced by NAME's text and `NAME = $(OTHER)` lines making NAME
    OTHER's text (how a variant shares its base package's blocks)."""
    variables, defines, aliases = {}, {}, {}
    name, body = None, []
    with open(path) as f:
        for line in f.read().split("\n"):
            if name is not None:
                if line.strip() == "endef":
                    defines[name] = "\n".join(body)
                    name, body = None, []
                else:
                    body.append(line)
                continue
            m = re.match(r"define\s+(\S+)\s*$", line)
            if m:
                name = m.group(1)
                continue
            m = re.match(r"(Package/\S+)\s*=\s*\$\((Package/[^)\s]+)\)\s*$", line)
            if m:
                aliases[m.group(1)] = m.group(2)
                continue
            m = re.match(r"([A-Za-z0-9_]+)\s*[:?]?=\s*(.*)$", line)
            if m and not line.startswith("\t"):
                variables[m.group(1)] = m.group(2).strip()
    if name is not None:
        raise BuildError("%s: define %s has no endef" % (path, name))
    for alias, target in aliases.items():
        if target not in defines:
            raise BuildError("%s: %s = $(%s), which is not defined" % (path, alias, target))
        defines[alias] = defines[target]
    return variables, {n: _expand_calls(path, defines, n, ()) for n in defines}


def _expand_calls(path, defines, name, outer):
    """defines[name] with each `$(call OTHER)` / `$(call OTHER,$(1))` line
    replaced by OTHER's text, as make's call does for these blocks."""
    lines = []
    for line in defines[name].split("\n"):
        m = re.match(r"\s*\$\(call\s+([^,)\s]+)(,\$\(1\))?\)\s*$", line)
        if not m:
            lines.append(line)
            continue
        other = m.group(1)
        if other not in defines or other in outer + (name,):
            raise BuildError("%s: %s calls %s, which is %s" % (
                path, name, other, "not defined" if other not in defines else "calling itself"))
        lines.append(_expand_calls(path, defines, other, outer + (name,)))
    return "\n".join(lines)


def build_packages(text):
    """The names of `$(eval $(call BuildPackage,NAME))` lines, in order."""
    return re.findall(r"^\$\(eval \$\(call BuildPackage,([^)]+)\)\)\s*$", text, re.M)


def block_fields(text):
    """KEY:=value lines of a `define Package/x` block (comments skipped)."""
    fields = {}
    for line in text.split("\n"):
        m = re.match(r"\s*([A-Z_]+)\s*:=\s*(.*)$", line)
        if m:
            fields[m.group(1)] = m.group(2).strip()
    return fields


def depends(value):
    """SDK DEPENDS (+pkg, @CONFIG, pkg) -> control Depends list."""
    out = ["libc"]
    for word in value.split():
        if word.startswith("@"):
            continue
        word = word.lstrip("+")
        if ":" in word:
            raise BuildError("conditional dependency %r is not supported" % word)
        if word not in out:
            out.append(word)
    return out


def script_body(text):
    """A maintainer script from a define block, as the shell will see it:
    make's $$ back to $, without its #!/bin/sh line."""
    lines = text.replace("$$", "$").split("\n")
    if lines and lines[0].startswith("#!"):
        lines = lines[1:]
    return "\n".join(lines).strip("\n")


def description(text):
    return "\n".join(" " + line.strip() for line in text.strip("\n").split("\n") if line.strip())


# -- what goes into each package -----------------------------------------

def version():
    about = {}
    with open(os.path.join(TOP, "src", "spin_lite", "__init__.py")) as f:
        exec(compile(f.read(), "__init__.py", "exec"), about)
    return about["__version__"]


def install_list(text, subst):
    """The files of a Package/x/install block as {path: (mode, source)} plus
    the directories it creates."""
    files, dirs = {}, set()
    for n, line in enumerate(text.split("\n"), 1):
        line = line.strip()
        if not line:
            continue
        for key, value in subst.items():
            line = line.replace("$(%s)" % key, value)
        line = _filter_out_wildcard(line)
        words = line.split()
        m = re.match(r"\$\((INSTALL_[A-Z]+)\)$", words[0])
        if not m:
            raise BuildError("install line %d: cannot read %r" % (n, line))
        macro = m.group(1)
        if macro == "INSTALL_DIR":
            for d in words[1:]:
                dirs.add(_dest(d))
            continue
        if macro not in INSTALL_MODES:
            raise BuildError("install line %d: %s is not supported" % (n, macro))
        dest = _dest(words[-1])
        sources = []
        for pattern in words[1:-1]:
            found = sorted(glob.glob(pattern))
            if not found:
                raise BuildError("install line %d: nothing matches %s" % (n, pattern))
            sources += found
        for src in sources:
            path = dest + "/" + os.path.basename(src) if words[-1].endswith("/") else dest
            files[path] = (INSTALL_MODES[macro], src)
    return files, dirs


def _filter_out_wildcard(line):
    """make's $(filter-out PATTERN...,$(wildcard GLOB)), the one function an
    install block uses (spin's modules without the controller's): the
    files it names, each % in a pattern matching any text."""
    def expand(m):
        drop = [re.compile(re.escape(p).replace("%", ".*") + "$") for p in m.group(1).split()]
        return " ".join(f for f in sorted(glob.glob(m.group(2)))
                        if not any(d.match(f) for d in drop))
    return re.sub(r"\$\(filter-out ([^,()]+),\$\(wildcard ([^()]+)\)\)", expand, line)


def _dest(word):
    if not word.startswith("$(1)/"):
        raise BuildError("install destination %r does not start with $(1)/" % word)
    return word[len("$(1)"):].rstrip("/")


def spin_packages():
    """Every package package/spin/Makefile builds."""
    path = os.path.join(TOP, "package", "spin", "Makefile")
    variables, defines = read_makefile(path)
    with open(path) as f:
        names = build_packages(f.read())
    if variables["PKG_NAME"] not in names:
        raise BuildError("%s: no BuildPackage for %s" % (path, variables["PKG_NAME"]))
    return [spin_package(path, variables, defines, name) for name in names]


def spin_package(path, variables, defines, name):
    if "Package/%s" % name not in defines or "Package/%s/install" % name not in defines:
        raise BuildError("%s: BuildPackage,%s without its Package/%s and install blocks" % (path, name, name))
    fields = block_fields(defines["Package/%s" % name])
    files, dirs = install_list(defines["Package/%s/install" % name],
                               {"SPIN_TOP": TOP, "INSTALL_DIR": "$(INSTALL_DIR)"})
    return {
        "name": name,
        "makefile": path,
        "variables": variables,
        "source": "package/spin",
        "depends": depends(fields.get("DEPENDS", "")),
        "conflicts": fields.get("CONFLICTS", "").split(),
        "provides": fields.get("PROVIDES", "").split(),
        "section": fields.get("SECTION", "net"),
        "userid": fields.get("USERID", ""),
        "description": description(defines.get("Package/%s/description" % name, fields.get("TITLE", name))),
        "conffiles": [c.strip() for c in defines.get("Package/%s/conffiles" % name, "").split("\n") if c.strip()],
        "files": files,
        "dirs": dirs,
        "postinst": script_body(defines.get("Package/%s/postinst" % name, "")),
        "prerm": script_body(defines.get("Package/%s/prerm" % name, "")),
    }


def luci_package():
    """What luci.mk installs: htdocs/* under /www, root/* under /, modes as
    in the tree (cp -pR)."""
    base = os.path.join(TOP, "luci-app-spin")
    path = os.path.join(base, "Makefile")
    variables, defines = read_makefile(path)
    name = os.path.basename(base)
    files, dirs = {}, set()
    for sub, prefix in (("htdocs", "/www"), ("root", "")):
        top = os.path.join(base, sub)
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            rel = os.path.relpath(dirpath, top)
            here = prefix + ("" if rel == "." else "/" + rel)
            if here:
                dirs.add(here)
            for fn in sorted(filenames):
                src = os.path.join(dirpath, fn)
                mode = 0o755 if os.stat(src).st_mode & 0o111 else 0o644
                files[here + "/" + fn] = (mode, src)
    return {
        "name": name,
        "makefile": path,
        "variables": variables,
        "source": "luci-app-spin",
        "depends": depends(variables.get("LUCI_DEPENDS", "")),
        "conflicts": [],
        "provides": [],
        "section": "luci",
        "description": description(variables.get("LUCI_DESCRIPTION") or variables.get("LUCI_TITLE", name)),
        "conffiles": [],
        "files": files,
        "dirs": dirs,
        "postinst": script_body(defines.get("Package/%s/postinst" % name, "")),
        "prerm": script_body(defines.get("Package/%s/prerm" % name, "")),
    }


# -- tar and gzip, the way opkg reads them --------------------------------

def _info(name, mode, mtime, size=0, kind=tarfile.REGTYPE, link=""):
    ti = tarfile.TarInfo(name)
    ti.mode = mode
    ti.mtime = int(mtime)
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.type = kind
    ti.size = size
    ti.linkname = link
    return ti


def tar_bytes(entries, mtime):
    """entries: [(name, mode, data or None for a directory)], in order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, mode, data in entries:
            if data is None:
                tar.addfile(_info(name, mode, mtime, kind=tarfile.DIRTYPE))
            else:
                tar.addfile(_info(name, mode, mtime, size=len(data)), io.BytesIO(data))
    return buf.getvalue()


def gzip_bytes(data):
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(data)
    return buf.getvalue()


def source_date():
    """SOURCE_DATE_EPOCH, else the last commit's time, else now."""
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return int(os.environ["SOURCE_DATE_EPOCH"])
    try:
        out = subprocess.run(["git", "-C", TOP, "log", "-1", "--format=%ct"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True)
        return int(out.stdout.strip())
    except (OSError, subprocess.CalledProcessError, ValueError):
        import time
        return int(time.time())


# -- maintainer scripts ---------------------------------------------------

def init_scripts(files):
    """[(name, START, STOP)] of the package's /etc/init.d scripts."""
    out = []
    for path in sorted(files):
        if path.startswith("/etc/init.d/"):
            with open(files[path][1]) as f:
                text = f.read()
            start = re.search(r"^START=(\d+)", text, re.M)
            stop = re.search(r"^STOP=(\d+)", text, re.M)
            out.append((os.path.basename(path), start and start.group(1), stop and stop.group(1)))
    return out


def maintainer_scripts(pkg):
    inits = init_scripts(pkg["files"])
    uci_defaults = sorted(p for p in pkg["files"] if p.startswith("/etc/uci-defaults/"))
    own_post = pkg["postinst"]
    own_pre = pkg["prerm"]
    links = ""
    unlinks = ""
    start = ""
    stop = ""
    for name, s, k in inits:
        if s or k:
            links += '\tmkdir -p "${IPKG_INSTROOT}/etc/rc.d"\n'
        if s:
            links += '\tln -sf ../init.d/%s "${IPKG_INSTROOT}/etc/rc.d/S%s%s"\n' % (name, s, name)
        if k:
            links += '\tln -sf ../init.d/%s "${IPKG_INSTROOT}/etc/rc.d/K%s%s"\n' % (name, k, name)
        unlinks += '\trm -f "${IPKG_INSTROOT}"/etc/rc.d/S??%s "${IPKG_INSTROOT}"/etc/rc.d/K??%s\n' % (name, name)
        start += '[ "${PKG_UPGRADE}" = "1" ] || /etc/init.d/%s enable\n/etc/init.d/%s start\n' % (name, name)
        stop += '[ "${PKG_UPGRADE}" = "1" ] || /etc/init.d/%s disable\n/etc/init.d/%s stop\n' % (name, name)
    postinst = POSTINST.format(
        pkg=pkg["name"],
        instroot=INSTROOT,
        users="".join(POSTINST_USER.format(user=u, uid=uid, group=g, gid=gid)
                      for u, uid, g, gid in user_tuples(pkg.get("userid", ""))),
        offline=links,
        sysctl=POSTINST_SYSCTL if any(p.startswith("/etc/sysctl.d/") for p in pkg["files"]) else "",
        uci_defaults=POSTINST_UCI_DEFAULTS.format(files=" ".join(uci_defaults)) if uci_defaults else "",
        own="(\n%s\n)\n" % own_post if own_post else "",
        start=start,
    )
    prerm = PRERM.format(
        pkg=pkg["name"],
        instroot=INSTROOT,
        offline=unlinks,
        own="(\n%s\n)\n" % own_pre if own_pre else "",
        stop=stop,
    )
    return postinst, prerm


# -- the package ----------------------------------------------------------

def check_version(pkg, ver):
    declared = pkg["variables"].get("PKG_VERSION")
    if declared != ver:
        raise BuildError("%s: PKG_VERSION is %r but src/spin_lite/__init__.py says %r"
                         % (os.path.relpath(pkg["makefile"], TOP), declared, ver))
    release = pkg["variables"].get("PKG_RELEASE", "")
    if not release.isdigit():
        raise BuildError("%s: PKG_RELEASE must be a whole number, not %r"
                         % (os.path.relpath(pkg["makefile"], TOP), release))
    return "%s-%s" % (ver, release)


def build(pkg, out_dir, mtime):
    full_version = check_version(pkg, version())
    files = dict(pkg["files"])
    dirs = set(pkg["dirs"])
    payload = {path: open(src, "rb").read() for path, (mode, src) in files.items()}
    modes = {path: mode for path, (mode, src) in files.items()}

    # conffiles the package does not ship (a state directory) cannot be
    # conffiles; sysupgrade keeps them through /lib/upgrade/keep.d, as the
    # SDK arranges (package-pack.mk)
    conffiles = [c for c in pkg["conffiles"] if c in files]
    keep = [c for c in pkg["conffiles"] if c not in files]
    if keep:
        path = "/lib/upgrade/keep.d/%s" % pkg["name"]
        payload[path] = "".join(k + "\n" for k in keep).encode()
        modes[path] = 0o644
        dirs.update(["/lib", "/lib/upgrade", "/lib/upgrade/keep.d"])

    for path in list(payload):
        parent = os.path.dirname(path)
        while parent not in ("", "/"):
            dirs.add(parent)
            parent = os.path.dirname(parent)
    entries = [("./", 0o755, None)]
    for path in sorted(set(payload) | dirs):
        if path in payload:
            entries.append(("." + path, modes[path], payload[path]))
        else:
            entries.append(("." + path + "/", 0o755, None))
    data_tar = tar_bytes(entries, mtime)

    postinst, prerm = maintainer_scripts(pkg)
    m = pkg["variables"]
    control = {
        "Package": pkg["name"],
        "Version": full_version,
        "Depends": ", ".join(pkg["depends"]),
        "Conflicts": ", ".join(pkg["conflicts"]),
        "Provides": ", ".join(pkg["provides"]),
        "Source": pkg["source"],
        "SourceName": pkg["name"],
        "License": m.get("PKG_LICENSE", ""),
        "Section": pkg["section"],
        "Require-User": pkg.get("userid", ""),
        "Maintainer": m.get("PKG_MAINTAINER", ""),
        "Architecture": "all",
        "Installed-Size": str(len(data_tar)),
        "Description": pkg["description"].lstrip(" "),
    }
    missing = [k for k in FIELDS if not control[k] and k not in OPTIONAL]
    if missing:
        raise BuildError("%s: no %s" % (pkg["name"], ", ".join(missing)))
    control_text = "".join("%s: %s\n" % (k, control[k]) for k in FIELDS if control[k]).encode()
    centries = [("./", 0o755, None), ("./control", 0o644, control_text)]
    if conffiles:
        centries.append(("./conffiles", 0o644, "".join(c + "\n" for c in conffiles).encode()))
    centries += [("./postinst", 0o755, postinst.encode()), ("./prerm", 0o755, prerm.encode())]
    control_tar = tar_bytes(centries, mtime)

    outer = tar_bytes([
        ("./debian-binary", 0o644, b"2.0\n"),
        ("./data.tar.gz", 0o644, gzip_bytes(data_tar)),
        ("./control.tar.gz", 0o644, gzip_bytes(control_tar)),
    ], mtime)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "%s_%s_all.ipk" % (pkg["name"], full_version))
    with open(path, "wb") as f:
        f.write(gzip_bytes(outer))
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(TOP, "build"), help="output directory")
    args = ap.parse_args(argv)
    mtime = source_date()
    try:
        paths = [build(p, args.out, mtime) for p in spin_packages() + [luci_package()]]
    except BuildError as e:
        sys.stderr.write("ipk: %s\n" % e)
        return 1
    installed = {}  # what one router installs: one spin variant and the LuCI app
    for p in paths:
        size = os.path.getsize(p)
        name = os.path.basename(p).split("_")[0]
        kind = "luci" if name.startswith("luci-") else "spin"
        installed[kind] = max(installed.get(kind, 0), size)
        shown = os.path.relpath(p) if not os.path.relpath(p).startswith("..") else p
        print("%-50s %7.1f KB" % (shown, size / 1024.0))
    print("%-50s %7.1f KB (goal: <= 200 KB)" % ("on a router (spin or spin-micropython, and LuCI)",
                                                sum(installed.values()) / 1024.0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
