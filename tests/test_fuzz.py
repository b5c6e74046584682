"""Every parser of outside input, fuzzed briefly (the long run is `make fuzz`).

Two parts per parser (targets and properties: tests/fuzzing.py):

* every kept input replays: the seeds made from the project's own test data
  and each crash a fuzzer found (tests/data/fuzz/<parser>/crash-*) or that
  was crafted from reading the code (crafted-*), fixed since;
* a few thousand hypothesis inputs: mutants of those (bytes set, cut,
  inserted, spliced from elsewhere in the input) and plain random bytes.
  Derandomized, so a run is the same run every time and a failure here is
  a failure on the next run too.
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import fuzzing

EXAMPLES = {"conntrack": 1500, "dns": 3000, "dnsframe": 3000, "ubus": 3000, "uci": 2000,
            "http": 2000, "api": 1500,
            "mqtt": 1500, "controller": 1500}

KEPT = [(name, fn) for name in sorted(fuzzing.TARGETS) for fn, _ in fuzzing.corpus(name)]


def test_every_parser_has_kept_inputs():
    for name in fuzzing.TARGETS:
        assert [fn for fn, _ in fuzzing.corpus(name) if fn.startswith("seed-")], name


@pytest.mark.parametrize("name,fn", KEPT, ids=["%s/%s" % k for k in KEPT])
def test_kept_input_replays(name, fn):
    data = dict(fuzzing.corpus(name))[fn]
    fuzzing.TARGETS[name](data)


@st.composite
def mutant(draw, seeds):
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.integers(0, 4))
        at = draw(st.integers(0, len(data)))
        if op == 0 and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif op == 1:
            del data[at:at + draw(st.integers(1, 64))]
        elif op == 2:
            data[at:at] = draw(st.binary(max_size=32))
        elif op == 3 and data:
            src = draw(st.integers(0, len(data) - 1))
            data[at:at] = data[src:src + draw(st.integers(1, 32))]
        else:
            del data[at:]
    return bytes(data)


def inputs(name):
    seeds = [d for fn, d in fuzzing.corpus(name)]
    return st.one_of(mutant(seeds), st.binary(max_size=600))


def fuzz(name):
    @settings(max_examples=EXAMPLES[name], derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(inputs(name))
    def run(data):
        fuzzing.TARGETS[name](data)
    run()


@pytest.mark.parametrize("name", sorted(fuzzing.TARGETS))
def test_fuzz_briefly(name):
    fuzz(name)
