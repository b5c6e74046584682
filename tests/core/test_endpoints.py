"""Endpoint names: a bounded LRU of address -> names, and what a name
means over time (its record's TTL, the flows that began meanwhile).

Plain tests (no pytest import) so the MicroPython runner runs them too.
Times are whole seconds handed in by the test: no clock, no sleeping.
"""

from spin_lite.endpoints import Endpoints


def test_a_name_lives_for_its_ttl_and_the_grace_then_ages_out():
    eps = Endpoints(size=16, grace=60, ttl_max=3600)
    eps.learn("203.0.113.7", "camera-cloud.example", 600, now=1000)
    assert eps.names_for("203.0.113.7", now=1659) == ["camera-cloud.example"]
    assert eps.names_for("203.0.113.7", now=1660) == []
    assert len(eps) == 0 and eps.status()["endpoints_expired"] == 1


def test_a_ttl_is_cut_to_the_cap_and_a_ttl_0_lasts_the_grace_alone():
    eps = Endpoints(size=16, grace=60, ttl_max=3600)
    eps.learn("203.0.113.1", "zero.example", 0, now=0)
    eps.learn("203.0.113.2", "long.example", 604800, now=0)
    assert eps.names_for("203.0.113.1", now=59) == ["zero.example"]
    assert eps.names_for("203.0.113.1", now=60) == []
    assert eps.names_for("203.0.113.2", now=3659) == ["long.example"]
    assert eps.names_for("203.0.113.2", now=3660) == []


# -- a name over time: the flows that began while its record was valid keep it

def test_a_flow_begun_while_valid_keeps_its_name_past_the_ttl():
    eps = Endpoints(size=16, grace=60, hold=600)
    eps.learn("203.0.113.10", "cloud.example-cam.com", 0, now=100)  # TTL 0
    eps.seen("203.0.113.10", True, now=105)     # the camera connects at once
    for t in range(110, 7200, 300):             # and streams for two hours
        eps.seen("203.0.113.10", False, now=t)
        assert eps.names_for("203.0.113.10", now=t) == ["cloud.example-cam.com"], t
    # the stream's last traffic was at 7010: the name stays hold seconds more, then goes
    assert eps.names_for("203.0.113.10", now=7609) == ["cloud.example-cam.com"]
    assert eps.names_for("203.0.113.10", now=7610) == []


def test_a_flow_begun_long_after_the_record_ran_out_gets_no_name():
    eps = Endpoints(size=16, grace=60, hold=600)
    eps.learn("203.0.113.10", "cloud.example-cam.com", 300, now=0)
    eps.seen("203.0.113.10", True, now=2)
    eps.seen("203.0.113.10", False, now=500)
    assert eps.names_for("203.0.113.10", now=500) == ["cloud.example-cam.com"]
    # a new connection at 900, ten minutes after the record ran out: the
    # address's flows cannot be told apart, so the name ends for them all
    eps.seen("203.0.113.10", True, now=900)
    assert eps.names_for("203.0.113.10", now=900) == []
    assert eps.status()["endpoints_stale"] == 1 and len(eps) == 0
    # traffic alone never brings a name back; a new answer does
    eps.seen("203.0.113.10", False, now=901)
    assert eps.names_for("203.0.113.10", now=901) == []
    eps.learn("203.0.113.10", "cloud.example-cam.com", 300, now=950)
    eps.seen("203.0.113.10", True, now=951)
    assert eps.names_for("203.0.113.10", now=951) == ["cloud.example-cam.com"]


def test_a_flow_begun_within_the_grace_takes_the_name():
    eps = Endpoints(size=16, grace=60, hold=600)
    eps.learn("203.0.113.7", "www.example-shop.com", 20, now=0)
    eps.seen("203.0.113.7", True, now=80)       # expires 20 + grace 60: just in time
    assert eps.names_for("203.0.113.7", now=679) == ["www.example-shop.com"]
    eps.seen("203.0.113.7", True, now=681)      # past it: not this name's flow
    assert eps.names_for("203.0.113.7", now=681) == []


def test_a_late_flow_ends_only_the_names_whose_records_ran_out():
    eps = Endpoints(size=16, per_ip=3, grace=10, hold=100)
    eps.learn("198.51.100.20", "old.cdn.example", 10, now=0)
    eps.learn("198.51.100.20", "new.cdn.example", 3600, now=50)
    eps.seen("198.51.100.20", True, now=200)
    assert eps.names_for("198.51.100.20", now=200) == ["new.cdn.example"]


def test_traffic_without_a_name_or_an_address_is_nothing():
    eps = Endpoints(size=16)
    eps.seen("203.0.113.99", True, now=5)
    eps.seen("203.0.113.99", False, now=5)
    assert len(eps) == 0 and eps.bytes == 0


def test_names_of_one_address_newest_first_and_bounded():
    eps = Endpoints(size=16, per_ip=3, grace=0)
    for i, name in enumerate(["a.cdn.example", "b.cdn.example", "c.cdn.example",
                              "d.cdn.example", "b.cdn.example"]):
        eps.learn("198.51.100.20", name, 300, now=i)
    assert eps.names_for("198.51.100.20", now=10) == ["b.cdn.example", "d.cdn.example", "c.cdn.example"]


def test_a_refreshed_name_gets_its_new_ttl():
    eps = Endpoints(size=16, grace=0)
    eps.learn("203.0.113.7", "cam.example", 100, now=0)
    eps.learn("203.0.113.7", "cam.example", 100, now=90)
    assert eps.names_for("203.0.113.7", now=150) == ["cam.example"]


def test_expire_drops_only_what_ran_out():
    eps = Endpoints(size=16, grace=0)
    eps.learn("203.0.113.1", "old.example", 10, now=0)
    eps.learn("203.0.113.2", "new.example", 100, now=0)
    eps.learn("203.0.113.2", "older.example", 10, now=0)
    assert eps.expire(now=50) == 1
    assert len(eps) == 1
    assert eps.table["203.0.113.2"][1:] == ["new.example", 100, 100]


def test_a_flood_of_unique_names_never_passes_the_size():
    eps = Endpoints(size=256, grace=60)
    for i in range(20000):
        eps.learn("10.%d.%d.%d" % (i >> 16, (i >> 8) & 255, i & 255), "n%d.flood.example" % i, 300, now=i // 100)
        assert len(eps) <= 256
    st = eps.status()
    assert st["endpoints_dropped"] > 19000
    assert st["endpoints"] >= 240  # drops go a sixteenth at a time, not the whole table


def test_the_least_recently_used_go_first():
    eps = Endpoints(size=32, grace=600)
    eps.learn("203.0.113.7", "camera-cloud.example", 600, now=0)
    for i in range(1000):
        eps.learn("10.0.%d.%d" % (i >> 8, i & 255), "n%d.flood.example" % i, 600, now=1)
        # the camera keeps talking to its cloud, so its endpoint is looked up every scan
        assert eps.names_for("203.0.113.7", now=1) == ["camera-cloud.example"]
    assert eps.names_for("10.0.3.231", now=1) == ["n999.flood.example"]  # the newest stays
    assert eps.names_for("10.0.0.1", now=1) == []                           # an early one went


def test_expired_entries_make_room_before_live_ones():
    eps = Endpoints(size=4, grace=0)
    eps.learn("203.0.113.1", "gone.example", 10, now=0)
    for i in range(2, 5):
        eps.learn("203.0.113.%d" % i, "live.example", 1000, now=0)
    eps.learn("203.0.113.9", "new.example", 1000, now=20)
    assert len(eps) == 4
    assert eps.status()["endpoints_dropped"] == 0 and eps.status()["endpoints_expired"] == 1


# -- across an agent restart: rows() written by one agent, restore()d by the next.
# The monotonic clock starts again with each agent; the rows carry wall-clock
# expiry times, so "now" differs between the two while the wall clock moves on.

def test_names_come_back_after_a_restart_with_their_order_and_expiry():
    old = Endpoints(size=16, per_ip=3, grace=0)
    old.learn("203.0.113.7", "camera-cloud.example", 600, now=5000)
    old.learn("198.51.100.20", "a.cdn.example", 300, now=5000)
    old.learn("198.51.100.20", "b.cdn.example", 900, now=5100)
    old.learn("203.0.113.9", "gone.example", 50, now=5000)  # expired before the save
    assert old.names_for("203.0.113.7", now=5100) == ["camera-cloud.example"]  # the most recent use
    rows = old.rows(now=5100, wall=1700000000)
    assert rows == [["198.51.100.20", ["b.cdn.example"], 1700000900, 1700000900],
                    ["198.51.100.20", ["a.cdn.example"], 1700000200, 1700000200],
                    ["203.0.113.7", ["camera-cloud.example"], 1700000500, 1700000500]]
    # the new agent starts 100 s later by the wall clock, at monotonic second 3
    new = Endpoints(size=16, per_ip=3, grace=0)
    assert new.restore(rows, now=3, wall=1700000100) == 2
    assert new.names_for("198.51.100.20", now=3) == ["b.cdn.example", "a.cdn.example"]
    assert new.names_for("198.51.100.20", now=103) == ["b.cdn.example"]  # a.cdn's time is up
    assert new.names_for("203.0.113.7", now=402) == ["camera-cloud.example"]
    assert new.names_for("203.0.113.7", now=403) == []
    assert new.rows(now=103, wall=1700000200) == [["198.51.100.20", ["b.cdn.example"], 1700000900, 1700000900]]


def test_a_restart_keeps_what_flows_vouched_for_and_reads_old_rows():
    old = Endpoints(size=16, grace=60, hold=600)
    old.learn("203.0.113.10", "cloud.example-cam.com", 0, now=0)
    old.seen("203.0.113.10", True, now=3)
    for t in range(300, 5001, 300):             # the stream still moves
        old.seen("203.0.113.10", False, now=t)
    rows = old.rows(now=5000, wall=1700005000)
    assert rows == [["203.0.113.10", ["cloud.example-cam.com"], 1700000000, 1700005400]]
    new = Endpoints(size=16, grace=60, hold=600)
    assert new.restore(rows, now=1, wall=1700005010) == 1
    assert new.names_for("203.0.113.10", now=389) == ["cloud.example-cam.com"]
    new.seen("203.0.113.10", True, now=300)     # a new flow, long after the record
    assert new.names_for("203.0.113.10", now=300) == []
    # an older agent's rows have no kept: the record's expiry and the grace
    older = Endpoints(size=16, grace=60)
    older.restore([["203.0.113.7", ["shop.example"], 1700000100]], now=0, wall=1700000000)
    assert older.names_for("203.0.113.7", now=159) == ["shop.example"]
    assert older.names_for("203.0.113.7", now=160) == []


def test_a_restore_keeps_the_size_the_ttl_cap_and_the_newest():
    old = Endpoints(size=64, grace=0)
    for i in range(40):
        old.learn("10.0.0.%d" % i, "n%d.example" % i, 600, now=i)
    rows = old.rows(now=40, wall=1000)
    # a smaller table after the restart: the most recently used come back
    new = Endpoints(size=16, grace=0, ttl_max=60, hold=0)
    assert new.restore(rows, now=0, wall=1000) <= 16
    assert new.names_for("10.0.0.39", now=0) == ["n39.example"]
    assert new.names_for("10.0.0.0", now=0) == []
    # the wall clock went back an hour: nothing lives past ttl_max from now
    assert new.names_for("10.0.0.38", now=60) == []
    # rows whose time is up by the new wall clock stay out
    late = Endpoints(size=64, grace=0)
    assert late.restore(rows, now=0, wall=1000 + 601) == 0 and len(late) == 0


def test_long_names_fill_the_byte_budget_before_the_entry_cap():
    budget = 20000
    eps = Endpoints(size=4096, per_ip=4, grace=600, budget=budget)
    long = "x" * 200 + ".example"
    for i in range(1000):
        ip = "198.51.%d.%d" % (i // 250, i % 250)
        for k in range(4):
            eps.learn(ip, "%d.%s" % (k, long), 600, now=i)
        assert eps.bytes <= budget
    st = eps.status()
    assert st["endpoints"] < 100 and st["endpoints_bytes"] <= budget
    assert st["endpoints_dropped_bytes"] > 0 and st["endpoints_dropped"] >= st["endpoints_dropped_bytes"]
    # the newest address is kept, the first ones went
    assert eps.names_for("198.51.3.249", now=1000)[0].startswith("3.")
    assert eps.names_for("198.51.0.0", now=1000) == []


def test_the_byte_estimate_follows_every_change():
    from spin_lite.endpoints import cost
    eps = Endpoints(size=8, per_ip=2, grace=10, ttl_max=100)
    for i in range(20):
        eps.learn("203.0.113.%d" % (i % 11), "n%d.example" % i, 10 + i, now=i)
    eps.expire(25)
    eps.names_for("203.0.113.3", now=40)
    assert eps.bytes == sum(cost(ip, e) for ip, e in eps.table.items())
    rows = eps.rows(40, 1000)
    again = Endpoints(size=8, per_ip=2, grace=10, ttl_max=100)
    again.restore(rows, 40, 1000)
    assert again.bytes == sum(cost(ip, e) for ip, e in again.table.items())
