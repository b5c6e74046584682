# spin-lite: every target installs what it needs first (tools/deps.sh is
# idempotent and quick when everything is already there).
PYTHON ?= python3
export PYTHONPATH := $(CURDIR)/src
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: deps demo test bench eval faults fuzz ipk test-cross lint clean

deps:
	@sh tools/deps.sh

demo: deps
	$(PYTHON) -m tests.world.demo

# the stories mostly wait on the simulated home's clocks (scans, buckets,
# DHCP), not on the CPU, so three run at once (pytest-xdist); one file per
# worker, so a module's home is built once. TEST_JOBS=1 runs one at a time.
TEST_JOBS ?= 3
test: deps
	$(PYTHON) -m pytest -q -p no:cacheprovider -n $(TEST_JOBS) --dist loadfile tests; rc=$$?; \
	if [ $$rc = 5 ]; then echo 'test: pytest collected no tests' >&2; exit 1; fi; exit $$rc

bench: deps
	$(PYTHON) bench/run.py

# the reverse firewall in the simulated home: attacks and benign look-alikes
# (tests/eval.py; about 8 minutes; needs root)
eval: deps
	$(PYTHON) -m tests.eval

# the fault matrix (tests/faults.py): kill -9, HUP storm, ubusd and firewall
# restarts, /tmp full, /etc read-only, conntrack table full (lowers the
# host's nf_conntrack_max for seconds and puts it back), clock jumps, stop
# mid-scan, a 10-minute flood, on fw4 and fw3; about 30 minutes; needs root
faults: deps
	$(PYTHON) -m tests.faults

# the long, coverage-guided fuzz run (atheris; tools/fuzz.py): FUZZ_RUNS inputs
# per parser, FUZZ_TIME seconds at most each (0: no limit), FUZZ_PARSERS to
# pick some, FUZZ_JOBS parsers at once; niced: it takes a core as long as it runs
FUZZ_RUNS ?= 1000000
FUZZ_TIME ?= 0
FUZZ_JOBS ?= 1
FUZZ_PARSERS ?=
fuzz: deps
	@$(PYTHON) -c 'import atheris' 2>/dev/null || \
		$(PYTHON) -m pip install -q --disable-pip-version-check -r tools/requirements-fuzz.txt
	nice -n 19 $(PYTHON) tools/fuzz.py run --runs $(FUZZ_RUNS) --max-time $(FUZZ_TIME) --jobs $(FUZZ_JOBS) $(FUZZ_PARSERS)

ipk:
	$(PYTHON) tools/ipk.py --out build

test-cross: deps
	sh tests/cross/run.sh

lint: deps
	$(PYTHON) -m ruff check src tests tools bench

clean:
	rm -rf build tests/artifacts
