"""The agent's web part without a browser: what it serves and how its
/ubus answers, through the JSON-RPC server's request handler (no sockets).

The /ubus shapes are uhttpd-mod-ubus's (research/openwrt.md 6.2): a call is
params [session, object, method, args] and answers result [status, data],
or [status] alone when the method failed; an unknown object is JSON-RPC
error -32000.
"""

import json
import os

from spin_lite import jsonrpc, web

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WWW = os.path.join(REPO, "luci-app-spin", "htdocs")


class Agent:
    """Just what the routes touch: a config, a part list, status()."""

    def __init__(self, www=WWW, token=""):
        self.cfg = {"www_dir": www, "token": token}
        self.server = jsonrpc.Server()
        self.parts = [self.server]
        self.seen = []

    def status(self):
        return {"version": "test", "scan_interval": 5}

    def device_info(self, mac):
        return None


def request(agent, method, path, body=b"", need_token=False, headers=None):
    raw = agent.server.respond(agent, (method, path, dict(headers or {}), body), need_token)
    head, _, payload = raw.partition(b"\r\n\r\n")
    code = int(head.split(b" ")[1])
    ctype = [line.split(b": ", 1)[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-type")][0]
    return code, ctype.decode(), payload


def ubus(agent, msg, path="/ubus"):
    code, ctype, body = request(agent, "POST", path, json.dumps(msg).encode())
    assert code == 200 and ctype == "application/json"
    return json.loads(body)


def started(www=WWW):
    a = Agent(www)
    web.Web().start(a)
    return a


def test_the_standalone_page_and_the_views_are_served_from_www_dir():
    a = started()
    code, ctype, body = request(a, "GET", "/spin/")
    assert code == 200 and ctype.startswith("text/html") and b"luci-lite.js" in body
    code, ctype, body = request(a, "GET", "/luci-static/resources/view/spin/network.js?v=1")
    assert code == 200 and ctype.startswith("application/javascript")
    assert body == open(os.path.join(WWW, "luci-static/resources/view/spin/network.js"), "rb").read()


def test_nothing_outside_www_dir_and_no_odd_file_is_served(tmp_path):
    (tmp_path / "secret.txt").write_text("root password")
    (tmp_path / "www" / "spin").mkdir(parents=True)
    (tmp_path / "www" / "spin" / ".hidden.js").write_text("x")
    (tmp_path / "www" / "spin" / "notes.txt").write_text("x")
    a = started(str(tmp_path / "www"))
    for path in ("/spin/../secret.txt", "/spin/..%2fsecret.txt", "/luci-static/../../secret.txt",
                 "/spin//etc/passwd", "/spin/.hidden.js", "/spin/notes.txt", "/spin/missing.js"):
        code, _, body = request(a, "GET", path)
        assert code == 404, path
        assert b"root password" not in body
    code, _, _ = request(a, "POST", "/spin/index.html", b"{}")
    assert code == 405


def test_a_call_answers_status_and_data_and_takes_the_session_argument():
    a = started()
    reply = ubus(a, {"jsonrpc": "2.0", "id": 7, "method": "call",
                     "params": ["0123456789abcdef0123456789abcdef", "spin", "status", {}]})
    assert reply == {"jsonrpc": "2.0", "id": 7, "result": [0, {"version": "test", "scan_interval": 5}]}
    # LuCI appends /object.method to the URL; same answer
    reply = ubus(a, {"jsonrpc": "2.0", "id": 8, "method": "call",
                     "params": ["0" * 32, "spin", "status", {}]}, path="/ubus/spin.status")
    assert reply["result"][0] == 0


def test_failures_are_a_bare_status_as_uhttpd_sends_them():
    a = started()
    sid = "0" * 32
    cases = [
        (["spin", "device", {"mac": "nonsense"}], [2]),           # INVALID_ARGUMENT
        (["spin", "device", {"mac": "02:00:00:00:00:09"}], [4]),  # NOT_FOUND
        (["spin", "status", {"colour": "red"}], [2]),             # unknown argument
        (["spin", "no_such_method", {}], [3]),                    # METHOD_NOT_FOUND
    ]
    for params, result in cases:
        reply = ubus(a, {"jsonrpc": "2.0", "id": 1, "method": "call", "params": [sid] + params})
        assert reply == {"jsonrpc": "2.0", "id": 1, "result": result}, params
    reply = ubus(a, {"jsonrpc": "2.0", "id": 2, "method": "call", "params": [sid, "network", "status", {}]})
    assert reply["error"]["code"] == -32000
    # uhttpd: call params must be [sid, object, method, {args}]; a caller
    # may not bring its own ubus_rpc_session; a frame not 2.0 is unreadable
    reply = ubus(a, {"jsonrpc": "2.0", "id": 3, "method": "call", "params": [sid, "spin", "status"]})
    assert reply["error"]["code"] == -32700
    reply = ubus(a, {"jsonrpc": "2.0", "id": 5, "method": "call",
                     "params": [sid, "spin", "status", {"ubus_rpc_session": "f" * 32}]})
    assert reply["error"]["code"] == -32602
    reply = ubus(a, {"jsonrpc": "1.0", "id": 6, "method": "list"})
    assert reply["error"]["code"] == -32700
    reply = ubus(a, {"jsonrpc": "2.0", "id": 4, "method": "frobnicate", "params": []})
    assert reply["error"]["code"] == -32601
    code, _, body = request(a, "POST", "/ubus", b"{not json")
    assert code == 200 and json.loads(body)["error"]["code"] == -32700
    code, _, _ = request(a, "GET", "/ubus")
    assert code == 405


def test_list_gives_the_method_signatures_luci_feature_detects_with():
    a = started()
    reply = ubus(a, {"jsonrpc": "2.0", "id": 1, "method": "list", "params": ["spin"]})
    sig = reply["result"]["spin"]
    assert sig["status"] == {}
    assert sig["device"] == {"mac": "string"}
    assert sig["history"] == {"mac": "string", "minutes": "number"}
    assert ubus(a, {"jsonrpc": "2.0", "id": 2, "method": "list"})["result"] == ["spin"]
    assert ubus(a, {"jsonrpc": "2.0", "id": 3, "method": "list", "params": ["network"]})["result"] == {}


def test_a_batch_gets_one_answer_per_request():
    a = started()
    reply = ubus(a, [{"jsonrpc": "2.0", "id": 1, "method": "call", "params": ["0" * 32, "spin", "status", {}]},
                     {"jsonrpc": "2.0", "id": 2, "method": "call", "params": ["0" * 32, "spin", "nope", {}]}])
    assert [r["id"] for r in reply] == [1, 2]
    assert reply[0]["result"][0] == 0 and reply[1]["result"] == [3]


def test_a_listener_that_needs_a_token_gives_the_page_but_not_the_data():
    a = Agent(token="s3cret")
    web.Web().start(a)
    code, _, body = request(a, "GET", "/spin/", need_token=True)
    assert code == 200 and b"luci-lite.js" in body
    call = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "call",
                       "params": ["0" * 32, "spin", "status", {}]}).encode()
    for path in ("/ubus", "/ubus/spin.status", "/"):
        code, _, _ = request(a, "POST", path, call, need_token=True)
        assert code == 401, path
        code, _, _ = request(a, "POST", path, call, need_token=True,
                             headers={"authorization": "Bearer wrong"})
        assert code == 401, path
    code, _, body = request(a, "POST", "/ubus", call, need_token=True,
                            headers={"authorization": "Bearer s3cret"})
    assert code == 200 and json.loads(body)["result"][0] == 0


def test_no_www_dir_serves_no_files_but_still_answers_ubus():
    a = started(www="")
    code, _, _ = request(a, "GET", "/spin/")
    assert code == 404
    assert ubus(a, {"jsonrpc": "2.0", "id": 1, "method": "call",
                    "params": ["0" * 32, "spin", "status", {}]})["result"][0] == 0
