#!/bin/sh
# make test-cross: tests/core on armhf, arm64, mipsel, s390x (big-endian)
# and Python 3.9, each under qemu-user with Debian's own python3.
exec python3 "$(dirname "$0")/run.py" "$@"
