"""plat.json on CPython (json's C half, `_json`, alone) says exactly what
json says: the same values and text for good input, the same exception and
words for bad input, first thing in a fresh interpreter (where _json's
error paths find no json.decoder loaded) and after json is loaded."""

import os
import subprocess
import sys

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")

CASES = r"""
import sys
from spin_lite import plat
GOOD = ['{"a": [1, 2.5, -3e4, true, false, null, "x\\u00e9\\ud83d\\ude00"]}', ' [1] \n', '"s"', '1',
        'NaN', '[Infinity, -Infinity]', b'{"k": "\xc3\xa9"}', bytearray(b'[1,2]'), '{"a":1,"a":2}']
BAD = ['{"a" 1}', '', ' ', '{', '[1,]', '[1] x', 'nul', '"abc', '"\\x"', b'', '\ufeff[1]', '01',
       b'\xef\xbb\xbf[1]', b'\xff\xfe[\x001\x00]\x00', b'[\x00', b'\x80[]', 5, None, '[' * 100000]
circular = []
circular.append(circular)
OBJS = [{"a": [1, 2.5, float("inf"), float("nan"), None, True, "\u00e9\U0001f600\n\""]}, "\u00e9", 1.0,
        {1: 2, 2.5: 3, None: 1, True: 2}, (1, 2), {"x": {1, 2}}, [b"x"], {(1, 2): 3}, circular]

def run(j):
    out = []
    for s in GOOD + BAD:
        try:
            out.append(("ok", repr(j.loads(s))))
        except RecursionError:
            out.append("too deep")
        except Exception as e:
            out.append((type(e).__name__, str(e)))
    for o in OBJS:
        for sep in (None, (",", ":")):
            try:
                out.append(j.dumps(o, separators=sep))
            except Exception as e:
                out.append((type(e).__name__, str(e)))
    out.append(j.dumps([1, {"b": 0, "a": 1}], indent=2, sort_keys=True))
    return out

print(type(plat.json).__name__, "json" in sys.modules)
mine = run(plat.json)
import json
print(mine == run(json), "re" in sys.modules)
print([(x, m, r) for x, m, r in zip(GOOD + BAD + OBJS, mine, run(json)) if m != r][:3])
"""


def test_plat_json_says_what_json_says_from_a_fresh_start():
    p = subprocess.run([sys.executable, "-S", "-c", CASES], env=dict(os.environ, PYTHONPATH=SRC),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert p.returncode == 0, p.stderr[-3000:]
    kind, same, diff = p.stdout.strip().splitlines()
    assert kind == "_CJson False"  # the C half, and json not loaded by it
    assert same.startswith("True"), diff
