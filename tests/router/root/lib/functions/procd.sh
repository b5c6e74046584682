# Stand-in for procd: OpenWrt's lib/functions/procd.sh builds a JSON
# message and sends it with `ubus call service set|delete|signal`. Here
# each call is written, one line of tab-separated words, to $PROCD_LOG;
# tests/router/procd.py turns the lines into the message procd.sh would
# send (same parameter types, respawn defaults, trigger layout) and applies
# procd's rules for a changed definition.

PROCD_LOG="${PROCD_LOG:-$IPKG_INSTROOT/tmp/procd.log}"

_procd_log() {
	local IFS='	'
	printf '%s\n' "$*" >> "$PROCD_LOG"
}

procd_open_service() { _procd_log open_service "$@"; }
procd_close_service() {
	_procd_log open_triggers
	service_triggers
	_procd_log close_triggers
	_procd_log close_service "${1:-set}"
}
procd_open_instance() { _procd_log open_instance "$@"; }
procd_close_instance() { _procd_log close_instance; }
procd_set_param() { _procd_log set_param "$@"; }
procd_append_param() { _procd_log append_param "$@"; }
procd_add_reload_trigger() { _procd_log reload_trigger "$@"; }
procd_add_reload_interface_trigger() { _procd_log reload_interface_trigger "$@"; }
procd_add_interface_trigger() { _procd_log interface_trigger "$@"; }
procd_add_raw_trigger() { _procd_log raw_trigger "$@"; }
procd_add_reload_data_trigger() { _procd_log reload_data_trigger "$@"; }
procd_add_validation() { _procd_log validation "$@"; }
procd_add_jail() { _procd_log jail "$@"; }
procd_add_jail_mount() { _procd_log jail_mount "$@"; }
procd_add_jail_mount_rw() { _procd_log jail_mount_rw "$@"; }
procd_kill() { _procd_log kill "$@"; }
procd_send_signal() { _procd_log signal "$@"; }
procd_running() { return 1; }
