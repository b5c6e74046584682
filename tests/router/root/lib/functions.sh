# Stand-in for the parts of OpenWrt's /lib/functions.sh that init scripts
# use: list_contains and the UCI config_* readers (config_load reads
# $UCI_CONFIG_DIR or /etc/config like `uci export`; quotes of either kind).

list_contains() {
	local var="$1" str="$2" val
	eval "val=\" \${$var} \""
	[ "${val%% $str *}" != "$val" ]
}

config_load() {
	local file="${UCI_CONFIG_DIR:-$IPKG_INSTROOT/etc/config}/$1"
	[ -f "$file" ] || return 1
	eval "$(awk '
		function unq(s) { gsub(/^["\047]|["\047]$/, "", s); return s }
		/^[ \t]*config[ \t]/ { n++; sec = ($3 == "") ? "cfg" n : unq($3); next }
		/^[ \t]*option[ \t]/ {
			key = $2; val = $0
			sub(/^[ \t]*option[ \t]+[^ \t]+[ \t]+/, "", val)
			val = unq(val); gsub(/\047/, "", val)
			printf "CONFIG_%s_%s=\047%s\047\n", sec, key, val
		}' "$file")"
}

config_get() {
	local __var="$1" __sec="$2" __opt="$3" __default="$4" __val
	eval "__val=\"\${CONFIG_${__sec}_${__opt}-\$__default}\""
	eval "$__var=\"\$__val\""
}

config_get_bool() {
	local __var="$1" __v
	config_get __v "$2" "$3" "$4"
	case "$__v" in
		1|on|true|yes|enabled) __v=1 ;;
		0|off|false|no|disabled) __v=0 ;;
		*) __v="$4" ;;
	esac
	eval "$__var=\"\$__v\""
}
