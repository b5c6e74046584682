#!/bin/sh
# Run by OpenWrt's package CI on the target after `opkg install`, as
# `sh test.sh <package> <version>`: spin's Python files all import on the
# router's own Python (nothing newer than it, no missing stdlib package)
# and say the version that was built.
[ "$1" = spin ] || exit 0
export PYTHONPATH=/usr/lib/spin
v="$(python3 -c 'import spin_lite; print(spin_lite.__version__)')" || exit 1
case "$2" in
	"$v"|"$v"-*) ;;
	*) echo "spin_lite says $v, the package $2" >&2; exit 1 ;;
esac
python3 -c '
import os
for f in sorted(os.listdir("/usr/lib/spin/spin_lite")):
    if f.endswith(".py") and f != "__main__.py":
        __import__("spin_lite." + f[:-3])
' || exit 1
exit 0
