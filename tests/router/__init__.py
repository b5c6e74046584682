"""A router root on this machine: busybox's ash (OpenWrt's /bin/sh too),
stand-ins for rc.common and procd, and recording stubs for uci, ubus and
the firewall tools; ipks are installed into it the way opkg does."""
