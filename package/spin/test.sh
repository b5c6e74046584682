#!/bin/sh
# Run by OpenWrt's package CI on the target after `opkg install`, as
# `sh test.sh <package> <version>`: spin's Python files all import on the
# interpreter the package depends on (python3 for spin, micropython for
# spin-micropython: nothing newer than it, no missing module) and say the
# version that was built.
case "$1" in
	spin) py() { PYTHONPATH=/usr/lib/spin python3 -c "$1"; } ;;
	spin-micropython) py() { MICROPYPATH=/usr/lib/spin:.frozen:/usr/lib/micropython micropython -c "$1"; } ;;
	*) exit 0 ;;
esac
v="$(py 'import spin_lite; print(spin_lite.__version__)')" || exit 1
case "$2" in
	"$v"|"$v"-*) ;;
	*) echo "spin_lite says $v, the package $2" >&2; exit 1 ;;
esac
py '
import os
for f in sorted(os.listdir("/usr/lib/spin/spin_lite")):
    if f.endswith(".py") and f != "__main__.py":
        __import__("spin_lite." + f[:-3])
' || exit 1
exit 0
