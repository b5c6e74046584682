"""The core tests' data files (tests/data/...), found from the repository
root or, where a runner copied the tree elsewhere (MicroPython's), beside
this directory. Plain code: the MicroPython runner imports it too."""


def path(name):
    for base in ("tests/data/", __file__.rsplit("/", 2)[0] + "/data/"):
        try:
            open(base + name, "rb").close()
            return base + name
        except OSError:
            pass
    raise OSError(2, "no test data " + name)


def read(name):
    with open(path(name), "rb") as f:
        return f.read()
