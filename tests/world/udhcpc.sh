#!/bin/sh
# busybox udhcpc calls this on each DHCP event ($1) with the lease in the
# environment (ip, mask, router, dns, lease, hostname...). It configures
# eth0 the way a small device does and leaves what it got in
# $SPIN_LEASE_ENV for the tests (one key=value a line), plus a line per
# event in $SPIN_LEASE_ENV.events, so renewals can be counted.
env_file="$SPIN_LEASE_ENV"
event="$1"
case "$event" in
deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
bound|renew)
    if ! ip -4 -o addr show dev "$interface" | grep -q "inet $ip/"; then
        ip -4 addr flush dev "$interface"
        ip addr add "$ip/${mask:-24}" dev "$interface"
    fi
    set -- $router
    [ -n "$1" ] && ip route replace default via "$1" dev "$interface"
    if [ -n "$env_file" ]; then
        printf 'ip=%s\nmask=%s\nrouter=%s\ndns=%s\nlease=%s\nevent=%s\n' \
            "$ip" "$mask" "$1" "$dns" "$lease" "$event" > "$env_file.tmp"
        mv "$env_file.tmp" "$env_file"
    fi
    ;;
esac
[ -n "$env_file" ] && echo "$(date +%s) $event $ip" >> "$env_file.events"
exit 0
