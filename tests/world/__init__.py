"""The simulated home network (network namespaces) that the integration
tests, `make demo` and the benchmarks share. See home.py."""
