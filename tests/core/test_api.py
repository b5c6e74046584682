"""The method table's argument checking: what every transport relies on."""

from spin_lite import api, errors


def rejects(schema, args, words):
    try:
        api.validate(schema, args)
    except api.ApiError as e:
        assert e.status == api.INVALID_ARGUMENT, e.status
        for w in words:
            assert w in e.message, e.message
        return
    raise AssertionError("accepted %r" % (args,))


def test_optional_arguments_get_their_defaults():
    schema = api.METHODS["history"][0]
    assert api.validate(schema, {}) == {"mac": None, "minutes": 60}
    assert api.validate(schema, {"mac": "02-00-00-00-00-0A"})["mac"] == "02:00:00:00:00:0a"


def test_unknown_arguments_are_named_but_the_web_session_is_ignored():
    schema = api.METHODS["devices"][0]
    rejects(schema, {"colour": "red"}, ["colour"])
    assert api.validate(schema, {"ubus_rpc_session": "0" * 32})["offset"] == 0


def test_malformed_values_say_what_is_wrong():
    rejects(api.METHODS["device"][0], {}, ["missing", "mac"])
    rejects(api.METHODS["device"][0], {"mac": "02:00:00:00:00"}, ["mac"])
    rejects(api.METHODS["device"][0], {"mac": 5}, ["string"])
    rejects(api.METHODS["devices"][0], {"limit": 0}, ["limit"])
    rejects(api.METHODS["devices"][0], {"limit": "10"}, ["whole number"])
    rejects(api.METHODS["history"][0], {"minutes": True}, ["minutes"])


def test_paging_says_how_many_remain():
    p = api.page(list(range(10)), {"limit": 4, "offset": 4}, "items")
    assert p["items"] == [4, 5, 6, 7] and p["total"] == 10 and p["remaining"] == 2


def test_a_handler_bug_is_unknown_error_and_nothing_escapes():
    class Broken:
        def status(self):
            raise RuntimeError("boom")
    status, reply, message = api.call(Broken(), "status", {})
    assert status == api.UNKNOWN_ERROR and reply is None and "status" in message
    assert api.call(Broken(), "nosuch", {})[0] == api.METHOD_NOT_FOUND


def test_the_signature_announces_real_types():
    sig = api.signature()
    assert sig["device"] == {"mac": 3}
    assert sig["history"] == {"mac": 3, "minutes": 5}


def test_the_interface_raises_the_errors_the_parts_below_it_raise():
    # blocks and names raise errors.ApiError; every transport catches api.ApiError
    assert api.ApiError is errors.ApiError
    assert api.call(None, "device", {"mac": "nope"})[0] == errors.INVALID_ARGUMENT
