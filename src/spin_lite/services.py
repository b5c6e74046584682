"""Port -> service label for what a home network commonly carries.

A compact table, not IANA's six thousand registrations: a label is only a
hint (SPIN's changelog says the same: ports are guessed from the number),
shown next to the endpoint so "443" reads "https". Keys are (protocol,
port); protocol is "tcp" or "udp" as in the flow table. Ports in neither
table get no label.
"""

# port: label, for both TCP and UDP unless the protocol table below says otherwise
BOTH = {
    20: "ftp-data", 21: "ftp", 22: "ssh", 23: "telnet", 25: "smtp",
    53: "dns", 67: "dhcp", 68: "dhcp", 69: "tftp", 80: "http",
    88: "kerberos", 110: "pop3", 123: "ntp", 137: "netbios", 138: "netbios",
    139: "netbios", 143: "imap", 161: "snmp", 162: "snmp-trap", 179: "bgp",
    389: "ldap", 443: "https", 445: "smb", 465: "smtps", 500: "ipsec",
    514: "syslog", 515: "printer", 546: "dhcpv6", 547: "dhcpv6",
    554: "rtsp", 587: "submission", 631: "ipp", 636: "ldaps", 853: "dns-tls",
    873: "rsync", 993: "imaps", 995: "pop3s", 1080: "socks", 1194: "openvpn",
    1883: "mqtt", 1900: "ssdp", 2323: "telnet-alt", 3074: "xbox",
    3389: "rdp", 3478: "stun", 3479: "stun", 4500: "ipsec-nat",
    5060: "sip", 5061: "sips", 5222: "xmpp", 5223: "apple-push",
    5228: "google-push", 5353: "mdns", 5355: "llmnr", 5683: "coap",
    6881: "bittorrent", 7547: "tr-069", 8008: "http-alt", 8009: "cast",
    8080: "http-alt", 8443: "https-alt", 8883: "mqtts", 8888: "http-alt",
    9000: "http-alt", 51820: "wireguard",
}

# UDP ports that mean something else over UDP, or are only seen over UDP
UDP = {443: "quic", 853: "dns-quic", 19302: "stun"}


def label(proto, port):
    """'https' for ('tcp', 443), 'quic' for ('udp', 443); None when the port
    is not in the table. proto may also be the number 6 or 17."""
    if proto in ("udp", 17):
        return UDP.get(port) or BOTH.get(port)
    if proto in ("tcp", 6):
        return BOTH.get(port)
    return None
