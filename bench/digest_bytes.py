"""Bytes a device's digests hold, CPython only (sys.getsizeof of the
arrays and lists, the open bucket's structures included), for a quiet
device and for one scanning thousands of remotes in a bucket.

    PYTHONPATH=src python3 bench/digest_bytes.py
"""

import sys

from spin_lite import config, digest


def held(obj):
    """getsizeof of a container and what it holds (one level)."""
    n = sys.getsizeof(obj)
    if isinstance(obj, dict):
        for k, v in obj.items():
            n += sys.getsizeof(k) + sys.getsizeof(v)
    elif isinstance(obj, (list, set, tuple)):
        for v in obj:
            n += sys.getsizeof(v)
    return n


def ring_bytes(r):
    if r is digest.NO_RING:
        return 0
    n = sys.getsizeof(r)
    for a in (r.octets, r.counts, r.tops, r.top_bytes):
        n += sys.getsizeof(a)  # tops hold references, not strings
    return n


def device_bytes(d):
    n = sys.getsizeof(d) + sys.getsizeof(d.open) + held(d.per_remote)
    for s in (d.remotes, d.ports):
        n += sys.getsizeof(s) + (held(s.small) if s.small is not None else 0) + (sys.getsizeof(s.regs) if s.regs is not None else 0)
    return n + ring_bytes(d.fine) + ring_bytes(d.coarse)


def main():
    cfg = config.defaults()
    d = digest.Digests(cfg, 0, 1700001000)
    quiet, scanner, silent = "02:00:00:00:00:01", "02:00:00:00:00:66", "02:00:00:00:00:05"
    d.add(silent, "203.0.113.9", 80, 0, 0, 0, 0, False, False)
    for minute in range(1, 121):
        for k in range(5):
            d.add(quiet, "203.0.113.%d" % k, 443, 20000 * (k + 1), 3000, 30, 20, k == 0, False)
        if minute == 120:
            break
        d.tick(minute * 60000)
    for i in range(100000):
        d.add(scanner, "10.%d.%d.%d" % (i >> 16, (i >> 8) & 255, i & 255), 23, 60, 0, 1, 0, True, True)
    print("device, bytes held (fine %d + coarse %d buckets, top %d, digest_remotes %d)" % (
        cfg["fine_buckets"], cfg["coarse_buckets"], cfg["top_remotes"], cfg["digest_remotes"]))
    for name, key in (("silent (seen, no traffic)", silent), ("quiet, 2 h of history", quiet),
                      ("scanner, 100,000 remotes in its open bucket", scanner)):
        dev = d.devices[key]
        print("  %-45s %6d   (rings %d)" % (name, device_bytes(dev),
                                          ring_bytes(dev.fine) + ring_bytes(dev.coarse)))
    print("shared remote table: %d remotes" % len(d.table))


if __name__ == "__main__":
    main()
