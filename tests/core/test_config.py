"""The UCI reader: what an owner writes in /etc/config/spin."""

from spin_lite import config

TEXT = """
# spin-lite
config spin 'main'
\toption scan_interval '2'
\toption enabled 0
\tlist lan_net '192.168.8.0/24'
\tlist lan_net "fd00:8::/64"
\toption leases_file /tmp/my\\ leases
\toption bogus 'x'
\toption bucket_seconds 'soon'

config host
\toption name 'camera'
\toption mac '02:00:00:00:00:01'
"""


def test_options_lists_quotes_and_escapes():
    sections, warnings = config.parse_uci(TEXT)
    assert warnings == []
    assert sections[0][0] == "spin" and sections[0][1] == "main"
    opts = sections[0][2]
    assert opts["scan_interval"] == "2"
    assert opts["lan_net"] == ["192.168.8.0/24", "fd00:8::/64"]
    assert opts["leases_file"] == "/tmp/my leases"
    assert sections[1][0] == "host" and sections[1][1] is None


def test_unknown_and_invalid_options_warn_and_keep_the_default(tmp=None):
    path = "/tmp/spin-test-config-%d" % id(TEXT)
    with open(path, "w") as f:
        f.write(TEXT)
    cfg, warnings = config.load(path)
    assert cfg["scan_interval"] == 2 and cfg["enabled"] is False
    assert cfg["bucket_seconds"] == 60
    assert any("bogus" in w for w in warnings)
    assert any("bucket_seconds" in w and "whole number" in w for w in warnings)


def test_missing_file_gives_defaults_and_says_so():
    cfg, warnings = config.load("/nonexistent/spin")
    assert cfg["scan_interval"] == config.OPTIONS["scan_interval"][1]
    assert warnings and "not found" in warnings[0]


def test_a_broken_line_is_reported_not_fatal():
    sections, warnings = config.parse_uci("config spin\n\toption x 'unterminated\n\toption y 1\n")
    assert sections[0][2] == {"y": "1"}
    assert len(warnings) == 1 and "line 2" in warnings[0]


def test_static_hosts_from_the_dhcp_config():
    path = "/tmp/spin-test-dhcp-%d" % id(TEXT)
    with open(path, "w") as f:
        f.write(TEXT)
    assert config.static_hosts(path) == {"02:00:00:00:00:01": "camera"}


def test_a_host_whose_name_is_a_list_gives_no_name():
    # `list name` makes a list; a device's name must be one text (fuzzing)
    path = "/tmp/spin-test-dhcp-list-%d" % id(TEXT)
    with open(path, "w") as f:
        f.write(TEXT + "config host\n\tlist name 'a'\n\tlist name 'b'\n\toption mac '02:00:00:00:00:02'\n")
    assert config.static_hosts(path) == {"02:00:00:00:00:01": "camera"}
