"""Who the agent runs as, from /proc/self/status (plain tests, MicroPython too)."""

from spin_lite import privileges

SPIN = ("Name:\tpython3\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t385\t385\t385\t385\n"
        "Gid:\t385\t385\t385\t385\nGroups:\t385 \nCapInh:\t0000000000003000\n"
        "CapPrm:\t0000000000003000\nCapEff:\t0000000000003000\nCapBnd:\t0000000000003000\n"
        "CapAmb:\t0000000000003000\nNoNewPrivs:\t1\n")
ROOT = "Uid:\t0\t0\t0\t0\nCapEff:\t000001ffffffffff\n"


def test_user_spin_with_net_admin_and_net_raw():
    assert privileges.parse(SPIN) == {"uid": 385, "capabilities": ["net_admin", "net_raw"]}


def test_root_with_every_capability_is_named_so():
    assert privileges.parse(ROOT) == {"uid": 0, "capabilities": "all"}


def test_a_user_without_capabilities_and_a_capability_past_the_table():
    assert privileges.parse("Uid:\t1000\t1000\t1000\t1000\nCapEff:\t0000000000000000\n") == \
        {"uid": 1000, "capabilities": []}
    assert privileges.parse("Uid:\t7\t7\t7\t7\nCapEff:\t0000040000001000\n") == \
        {"uid": 7, "capabilities": ["net_admin", "cap_42"]}


def test_the_effective_uid_counts():
    assert privileges.parse("Uid:\t0\t385\t385\t385\nCapEff:\t0\n")["uid"] == 385


def test_status_without_the_lines_or_with_bad_ones_is_none():
    assert privileges.parse("") is None
    assert privileges.parse("Uid:\t385\t385\t385\t385\n") is None
    assert privileges.parse("Uid:\tx\ty\nCapEff:\t3000\n") is None
    assert privileges.parse("Uid:\t1\t1\t1\t1\nCapEff:\tzz\n") is None

