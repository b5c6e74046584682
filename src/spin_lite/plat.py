"""The one place where CPython and MicroPython differ (DESIGN.md §2).

Everything else in spin_lite is written in the subset both interpreters
share and asks this module for: the clock, child processes, socket
addresses, poll results as fd numbers, atomic file writes and signals.

On MicroPython's Unix port: the clock is `time.ticks_ms`, a child process
needs the `ffi` module (OpenWrt's build has it; the PyPI test build does
not, where `run` falls back to `os.system` with strictly quoted arguments),
and signals are not available (reload comes through the API). The pid,
the umask and chmod come from `os` where it has them, else from libc
through `ffi`, else from /proc and the chmod program; `umask` says None
where it cannot, and the JSON-RPC socket then sits in a 0700 directory.
"""

import os
import sys
import time

MICROPYTHON = sys.implementation.name == "micropython"


class _CJson:
    """json's C half `_json` alone (`import json` adds re and enum, 0.8 MB):
    good input takes json's own C path; anything else (bad JSON, BOMs,
    indent=) goes to json, imported then, so errors keep its words
    (_json's errors need json.decoder: SystemError on 3.10/3.11)."""

    def __init__(self, c):
        self._c = c
        self.strict = True  # what make_scanner reads, as json.JSONDecoder has them
        self.object_hook = self.object_pairs_hook = None
        self.parse_float, self.parse_int = float, int
        self.parse_constant = {"-Infinity": -float("inf"), "Infinity": float("inf"), "NaN": float("nan")}.__getitem__
        self.memo = {}
        self._scan = c.make_scanner(self)

    def _full(self):
        import json
        return json

    def loads(self, s):
        if isinstance(s, (bytes, bytearray)):
            # utf-8 for json.detect_encoding unless a BOM or NUL in the first 4
            if s[:1] in (b"\xef", b"\xfe", b"\xff") or 0 in s[:4]:
                return self._full().loads(s)
            text = s.decode("utf-8", "surrogatepass")
        elif isinstance(s, str) and not s.startswith("\ufeff"):
            text = s
        else:
            return self._full().loads(s)
        n = len(text)
        i = 0
        while i < n and text[i] in " \t\n\r":
            i += 1
        try:
            obj, end = self._scan(text, i)
        except RecursionError:  # '[[[[...' a thousand deep: json says the same
            raise
        except Exception:  # StopIteration, JSONDecodeError or SystemError: json's words
            return self._full().loads(text)
        while end < n and text[end] in " \t\n\r":
            end += 1
        if end != n:  # extra data
            return self._full().loads(text)
        return obj

    def dumps(self, obj, separators=None, **kw):
        if kw:  # indent, sort_keys...: the command line's pretty output
            return self._full().dumps(obj, separators=separators, **kw)
        item, key = separators or (", ", ": ")
        if isinstance(obj, str):
            return self._c.encode_basestring_ascii(obj)
        # a new encoder each call, as json: its circular-check markers must not outlive an error
        enc = self._c.make_encoder({}, _not_json, self._c.encode_basestring_ascii, None, key, item,
                                   False, False, True)
        return "".join(enc(obj, 0))


def _not_json(o):
    raise TypeError("Object of type %s is not JSON serializable" % type(o).__name__)


try:
    import ujson as json  # noqa: F401  (MicroPython's name; faster on CPython when installed)
except ImportError:
    try:
        import _json
        json = _CJson(_json)
        if json.loads(json.dumps([{"a": 1.5}], separators=(",", ":"))) != [{"a": 1.5}]:
            raise ImportError("_json")
    except (ImportError, AttributeError, TypeError, ValueError):
        import json  # noqa: F401


# -- clock ----------------------------------------------------------------

if MICROPYTHON:
    _t0 = time.ticks_ms()

    def monotonic_ms():
        # ticks wrap; ticks_diff keeps the difference right for ~12 days of
        # uptime per wrap on 32-bit, and forever on 64-bit builds
        return time.ticks_diff(time.ticks_ms(), _t0)
else:
    def monotonic_ms():
        return int(time.monotonic() * 1000)


def wall():
    """Seconds since the epoch, as the router believes right now."""
    return time.time()


# -- child processes ------------------------------------------------------

def run(argv, stdin=None, timeout=30, quiet=False):
    """Run argv (a list, never a shell string) and return (rc, stdout, stderr)
    as (int, bytes, bytes). rc 127 means the program is missing. quiet: its
    stdout goes to /dev/null (b"" here): `conntrack -D` prints every entry
    it deletes, a MB for a flooding device, which a small heap cannot take."""
    if MICROPYTHON:
        if _libc() is not None:
            return _run_ffi(argv, stdin, timeout, quiet)
        return _run_mpy(argv, stdin, quiet)
    return _run_spawn(argv, stdin, timeout, quiet)


def _run_spawn(argv, stdin, timeout, quiet=False):
    # posix_spawn and poll, not subprocess: the agent runs nft or iptables
    # at every start, and importing subprocess (with signal, threading,
    # selectors) costs 1.9 MB of RSS, more than a tenth of its budget.
    # os.pipe's ends are close-on-exec; the dup2s give the child its three.
    import select
    fds = [os.pipe(), os.pipe(), os.pipe()]  # stdin, stdout, stderr
    try:
        # quiet: the stdout pipe's write end is never the child's, so its
        # read end sees EOF at once
        child = os.posix_spawnp(argv[0], argv, os.environ, file_actions=[
            (os.POSIX_SPAWN_DUP2, fds[0][0], 0),
            (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0) if quiet else (os.POSIX_SPAWN_DUP2, fds[1][1], 1),
            (os.POSIX_SPAWN_DUP2, fds[2][1], 2)])
    except OSError as e:
        for r, w in fds:
            os.close(r)
            os.close(w)
        return 127, b"", str(e).encode()
    for fd in (fds[0][0], fds[1][1], fds[2][1]):
        os.close(fd)
    feed, todo = fds[0][1], memoryview(stdin or b"")
    out = {fds[1][0]: [], fds[2][0]: []}  # read end -> chunks, until its EOF
    poller = select.poll()
    for fd in out:
        poller.register(fd, select.POLLIN)
    if todo:
        os.set_blocking(feed, False)  # a child that reads slowly never blocks us
        poller.register(feed, select.POLLOUT)
    else:
        os.close(feed)
        feed = None
    deadline = time.monotonic() + timeout
    open_ends = set(out)
    while open_ends and time.monotonic() < deadline:
        for fd, _ in poller.poll(int((deadline - time.monotonic()) * 1000) + 1):
            if fd == feed:
                try:
                    todo = todo[os.write(feed, todo[:65536]):]
                except BrokenPipeError:  # the child stopped reading: its answer says why
                    todo = todo[:0]
                if not todo:
                    poller.unregister(feed)
                    os.close(feed)
                    feed = None
                continue
            chunk = os.read(fd, 65536)
            if chunk:
                out[fd].append(chunk)
            else:
                poller.unregister(fd)
                open_ends.discard(fd)
    if feed is not None:
        os.close(feed)
    for fd in out:
        os.close(fd)
    status = None if open_ends else _reap(child, deadline)
    if status is None:
        os.kill(child, 9)  # SIGKILL, as subprocess.run does on its timeout
        os.waitpid(child, 0)
        return 124, b"", b"timeout"
    return os.waitstatus_to_exitcode(status), b"".join(out[fds[1][0]]), b"".join(out[fds[2][0]])


def _reap(child, deadline):
    """The child's wait status, or None if it is still running at the
    deadline: one that closed its outputs but lives on (a daemon, a hung
    nft) must not hold the agent's loop past the timeout."""
    pause = 0.001
    while True:
        done, status = os.waitpid(child, os.WNOHANG)
        if done:
            return status
        if time.monotonic() >= deadline:
            return None
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _quote(arg):
    return "'" + arg.replace("'", "'\\''") + "'"


def _run_mpy(argv, stdin, quiet=False):
    # Without ffi the only way is os.system: quote every argument, pass
    # stdin and collect output through private temporary files.
    base = "/tmp/.spin-run-%d" % pid()
    cmd = " ".join(_quote(a) for a in argv)
    if stdin is not None:
        write_atomic(base + ".in", stdin)
        cmd += " <" + base + ".in"
    cmd += " >" + ("/dev/null" if quiet else base + ".out") + " 2>" + base + ".err"
    status = os.system(cmd)
    out, err = _collect(base)
    return (status >> 8) & 0xFF, out, err


def _collect(base):
    """A child's stdout and stderr from its private files, which then go."""
    out = read_file(base + ".out") or b""
    err = read_file(base + ".err") or b""
    for ext in (".in", ".out", ".err"):
        try:
            os.remove(base + ext)
        except OSError:
            pass
    return out, err


def _run_ffi(argv, stdin, timeout, quiet=False):
    # fork/exec through libc: argv goes to execvp as it is, no shell. The
    # child's stdin, stdout and stderr are private files (0600), so a
    # chatty child can never fill a pipe that nobody reads.
    import struct
    if MICROPYTHON:  # always, here; said so for the package's dependency check (test_ipk)
        import uctypes
    lib = _libc()
    c = _C
    if not c:
        for name, ret, args in (("fork", "i", ""), ("execvp", "i", "sp"), ("_exit", "v", "i"),
                                ("open", "i", "sii"), ("close", "i", "i"), ("dup2", "i", "ii"),
                                ("waitpid", "i", "ipi"), ("kill", "i", "ii"),
                                ("sigprocmask", "i", "ipp")):
            c[name] = lib.func(ret, name, args)
    base = "/tmp/.spin-run-%d" % pid()
    if stdin is not None:
        write_atomic(base + ".in", stdin)
    words = [bytes(a, "utf-8") + b"\0" for a in argv]  # kept alive until exec
    vec = bytearray(struct.calcsize("P") * (len(words) + 1))
    for i, w in enumerate(words):
        struct.pack_into("P", vec, i * struct.calcsize("P"), uctypes.addressof(w))
    fds = [c["open"](base + ".in" if stdin is not None else "/dev/null", 0, 0),  # O_RDONLY
           c["open"]("/dev/null", 1, 0) if quiet else c["open"](base + ".out", 0o1101, 0o600),  # O_WRONLY|O_CREAT|O_TRUNC
           c["open"](base + ".err", 0o1101, 0o600)]
    child = c["fork"]()
    if child == 0:
        c["sigprocmask"](2, bytearray(128), None)  # SIG_SETMASK, empty: nft must die of SIGTERM
        for i in range(3):
            c["dup2"](fds[i], i)
        c["execvp"](argv[0], vec)
        c["_exit"](127)
    for fd in fds:
        c["close"](fd)
    status = bytearray(4)
    deadline = monotonic_ms() + timeout * 1000
    rc = None
    while child > 0:
        if c["waitpid"](child, status, 1) == child:  # WNOHANG
            w = struct.unpack("i", status)[0]
            rc = (w >> 8) & 0xFF if w & 0x7F == 0 else 128 + (w & 0x7F)
            break
        if monotonic_ms() > deadline:
            c["kill"](child, 9)
            c["waitpid"](child, status, 0)
            rc = 124
            break
        time.sleep_ms(2)
    out, err = _collect(base)
    if child < 0:
        return 127, b"", b"fork failed"
    return rc, out, (b"timeout" if rc == 124 else err)


_C = {}  # libc functions for _run_ffi, looked up once


def spawn(argv, err_path):
    """Start argv (a list, never a shell string) in the background, its
    stderr to err_path (0600), stdin and stdout /dev/null. Returns a handle
    for reap() and end(), or None where this interpreter cannot leave a
    child running (MicroPython: its run() waits for the child; the caller
    then does the work itself). OSError when the program cannot start."""
    if MICROPYTHON:
        return None
    import subprocess
    # the child inherits the mask: the files it makes are 0600 too
    old = os.umask(0o177)
    try:
        with open(err_path, "wb") as err:
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=err, close_fds=True)
    finally:
        os.umask(old)


def reap(child):
    """The exit code of a spawned child, or None while it runs."""
    return child.poll()


def end(child, wait_ms=2000):
    """SIGTERM a spawned child and wait for it (it flushes its file and
    says its counts on the way out); SIGKILL when it does not go. Returns
    the exit code."""
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(wait_ms / 1000.0)
        except Exception:  # subprocess.TimeoutExpired
            child.kill()
            child.wait()
    return child.returncode


def free_kb(path):
    """KiB free for an unprivileged writer on the filesystem holding path
    (statvfs), or None where this interpreter cannot tell."""
    fn = getattr(os, "statvfs", None)
    if fn is None:
        return None
    st = fn(path)
    # (bsize, frsize, blocks, bfree, bavail, ...) on both interpreters
    return st[1] * st[4] // 1024


# -- the process ------------------------------------------------------------

_LIBC = []  # [lib or None] once looked up


def _libc():
    """MicroPython's `ffi` view of libc, or None (the PyPI port has no ffi)."""
    if not MICROPYTHON:
        return None
    if not _LIBC:
        lib = None
        try:
            import ffi
            for name in ("libc.so.6", "libc.so"):
                try:
                    lib = ffi.open(name)
                    break
                except OSError:
                    pass
        except ImportError:
            pass
        _LIBC.append(lib)
    return _LIBC[0]


def pid():
    """This process's id; /proc/self/stat where os has no getpid (MicroPython)."""
    fn = getattr(os, "getpid", None)
    if fn is not None:
        return fn()
    lib = _libc()
    if lib is not None:
        return lib.func("i", "getpid", "")()
    return int((read_file("/proc/self/stat") or b"0").split()[0])


def umask(mask):
    """Set the file mode mask; returns the old one, or None where this
    interpreter cannot (MicroPython without ffi): the caller then protects
    the file some other way."""
    fn = getattr(os, "umask", None)
    if fn is not None:
        return fn(mask)
    lib = _libc()
    if lib is not None:
        return lib.func("i", "umask", "i")(mask)
    return None


def chmod(path, mode):
    """chmod(2); without os.chmod or ffi, the chmod program (argv, quoted)."""
    fn = getattr(os, "chmod", None)
    if fn is not None:
        return fn(path, mode)
    lib = _libc()
    if lib is not None:
        if lib.func("i", "chmod", "si")(path, mode) != 0:
            raise OSError(1, "chmod %s failed" % path)
        return None
    rc, _, err = run(["chmod", "%o" % mode, path])
    if rc != 0:
        raise OSError(1, "chmod %s: %s" % (path, err.decode("utf-8", "replace").strip()))
    return None


def zeros(code, n):
    """An array of n zero items of type code, made in one allocation: a
    list of zeros first would cost 8 B an item on the heap, and growing an
    array by pieces reallocates it each time (MicroPython's heap then
    fragments). MicroPython makes an array from a buffer's bytes, CPython
    only through frombytes."""
    from array import array
    import struct
    size = n * struct.calcsize(code)
    if MICROPYTHON:
        return array(code, bytearray(size))
    a = array(code)
    a.frombytes(bytes(size))
    return a


def extend_zeros(a, code, k):
    """Append k zero items to array a in one reallocation. MicroPython's
    extend takes a buffer's bytes as items, so no array of the k zeros is
    made on the way (it would be a second transient copy of them); CPython
    reads items from bytes only through frombytes."""
    import struct
    size = k * struct.calcsize(code)
    if MICROPYTHON:
        a.extend(bytearray(size))
    else:
        a.frombytes(bytes(size))


def tune_gc():
    """MicroPython: collect when a sixteenth of the heap has been allocated
    since the last collection. Without a threshold the heap fragments and a
    scan of a big table fails with MemoryError even in a 32 MB heap
    (research/micropython.md); CPython needs nothing. Returns the threshold."""
    if not MICROPYTHON:
        return None
    import gc
    heap = gc.mem_free() + gc.mem_alloc()
    limit = max(65536, heap // 16)
    gc.threshold(limit)
    return limit


# -- files ----------------------------------------------------------------

def read_file(path):
    """Whole small file as bytes, or None when it does not exist."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def write_atomic(path, data):
    """Write bytes so that a reader (or a crash) sees the old or the new
    file, never half of one."""
    if isinstance(data, str):
        data = data.encode()
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        if not MICROPYTHON:
            f.flush()
            os.fsync(f.fileno())
    os.rename(tmp, path)


def write_state(path, data):
    """A state file (blocks, mutes, names): its directory made if need be,
    then written as write_atomic does."""
    makedirs(path.rpartition("/")[0])
    write_atomic(path, data)


def keep_bad(path, data, why, then=""):
    """A state file that cannot be read is kept aside as path.bad, the
    evidence the owner needs, and the agent starts without it: a broken
    file must not stop the monitoring."""
    warn("%s unreadable (%s); kept as %s.bad%s" % (path, why, path, then))
    try:
        write_atomic(path + ".bad", data)
    except OSError:
        pass


def remove(path):
    """Delete a file if it is there; True when it was."""
    try:
        os.remove(path)
        return True
    except OSError:
        return False


def makedirs(path):
    parts = path.split("/")
    cur = ""
    for p in parts:
        if not p:
            cur = "/" if not cur else cur
            continue
        cur = cur + p if cur.endswith("/") else cur + "/" + p
        try:
            os.mkdir(cur)
        except OSError:
            pass


# -- sockets --------------------------------------------------------------

AF_NETLINK = 16
AF_PACKET = 17


def unix_address(path):
    if MICROPYTHON:
        import struct
        return struct.pack("H", 1) + path.encode() + b"\0"
    return path


def netlink_address(groups=0):
    """Address to bind a netlink socket to: the kernel picks the port id;
    groups is the bitmask of multicast groups (1 << (group - 1))."""
    if MICROPYTHON:
        import struct
        return struct.pack("HHII", AF_NETLINK, 0, 0, groups)
    return (0, groups)


SOCK_RAW = 3
SOL_SOCKET = 1
SO_RCVBUF = 8
SO_RCVBUFFORCE = 33


_SOCKETS = []  # the namespace sockets() made


def sockets():
    """The socket names the agent uses. CPython: from `_socket` and a small
    subclass (`import socket` adds enum and selectors, 0.6 MB). MicroPython:
    socket itself, imported here so the core runs where there is none."""
    if MICROPYTHON:
        import socket
        return socket
    if not _SOCKETS:
        _SOCKETS.append(_sockets())
    return _SOCKETS[0]


def _sockets():
    import _socket

    class Socket(_socket.socket):
        """socket.socket's accept and `with`; the rest is the C socket's."""
        __slots__ = ("__weakref__",)

        def accept(self):
            fd, peer = self._accept()
            conn = Socket(self.family, self.type, self.proto, fileno=fd)
            if _socket.getdefaulttimeout() is None and self.gettimeout():
                conn.setblocking(True)  # as socket.socket: a listener's timeout is not the connection's
            return conn, peer

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.close()

    def socketpair(family=_socket.AF_UNIX, type=_socket.SOCK_STREAM, proto=0):
        a, b = _socket.socketpair(family, type, proto)
        return Socket(family, type, proto, a.detach()), Socket(family, type, proto, b.detach())

    class Names:
        pass
    ns = Names()
    for name in ("AF_UNIX", "AF_INET", "AF_INET6", "SOCK_STREAM", "SOCK_DGRAM", "SOCK_RAW",
                 "SOL_SOCKET", "SO_REUSEADDR", "getaddrinfo", "timeout", "error"):
        setattr(ns, name, getattr(_socket, name))
    ns.AF_NETLINK = getattr(_socket, "AF_NETLINK", AF_NETLINK)
    ns.socket = Socket
    ns.socketpair = socketpair
    return ns


def netlink_listener(protocol, groups, rcvbuf):
    """A non-blocking raw netlink socket subscribed to multicast groups,
    with a receive buffer of rcvbuf bytes where allowed: SO_RCVBUFFORCE
    (CAP_NET_ADMIN) passes net.core.rmem_max, SO_RCVBUF is capped by it.
    Both interpreters take the numbers as they are (MicroPython's unix
    port has no socket.AF_NETLINK name, but the call works). Raises
    OSError: EPERM without the capability, EPROTONOSUPPORT where the
    kernel has no such family."""
    sock = sockets().socket(AF_NETLINK, SOCK_RAW, protocol)
    try:
        try:
            sock.setsockopt(SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
        except OSError:
            sock.setsockopt(SOL_SOCKET, SO_RCVBUF, rcvbuf)
        sock.bind(netlink_address(groups))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def packet_address(ifname, proto):
    """Address to bind an AF_PACKET socket to one interface and ethertype
    (host order, e.g. 3 = ETH_P_ALL). OSError ENODEV when it is missing."""
    if MICROPYTHON:
        import struct
        index = read_file("/sys/class/net/%s/ifindex" % ifname)
        if index is None or "/" in ifname:
            raise OSError(19, "no such interface")
        # struct sockaddr_ll: family, protocol (network order), ifindex,
        # then hatype, pkttype, halen and addr[8], all zero for bind
        return (struct.pack("H", AF_PACKET) + struct.pack(">H", proto)
                + struct.pack("i", int(index)) + bytes(12))
    return (ifname, proto)


def packet_recv(sock, size):
    """One packet from an AF_PACKET socket and its ethertype (host order;
    None where the address does not say)."""
    data, where = sock.recvfrom(size)
    if isinstance(where, tuple):  # CPython: (ifname, proto, pkttype, hatype, addr)
        return data, where[1]
    # MicroPython: the raw struct sockaddr_ll, protocol in network order at 2
    if isinstance(where, (bytes, bytearray)) and len(where) >= 4:
        return data, (where[2] << 8) | where[3]
    return data, None


def attach_filter(sock, prog):
    """Attach a classic BPF program (bytes, 8 per instruction) to a socket:
    setsockopt(SOL_SOCKET, SO_ATTACH_FILTER, struct sock_fprog), which
    holds the program's address, so the bytes must sit in a buffer whose
    address this interpreter can give."""
    import struct
    if MICROPYTHON:
        import uctypes
        buf = bytearray(prog)
        addr = uctypes.addressof(buf)
    else:
        import array
        buf = array.array("B", prog)
        addr = buf.buffer_info()[0]
    # struct sock_fprog {unsigned short len; struct sock_filter *filter;}:
    # native alignment pads the pointer (unsigned long has its size on Linux)
    fprog = struct.pack("HL", len(prog) // 8, addr)
    sock.setsockopt(1, 26, fprog)  # SOL_SOCKET, SO_ATTACH_FILTER; the kernel copies buf


def packet_stats(sock):
    """(packets, drops) the kernel counted on an AF_PACKET socket since the
    last call (PACKET_STATISTICS resets them), or None where the
    interpreter has no getsockopt (MicroPython)."""
    get = getattr(sock, "getsockopt", None)
    if get is None:
        return None
    import struct
    try:
        raw = get(263, 6, 8)  # SOL_PACKET, PACKET_STATISTICS: struct tpacket_stats
    except OSError:
        return None
    return struct.unpack("II", raw)


def poll_fd(obj):
    """poll() gives fd numbers on CPython and objects on MicroPython."""
    if isinstance(obj, int):
        return obj
    return obj.fileno()


def dumps(obj):
    """JSON without the spaces (MQTT messages): MicroPython's json takes
    separators only in newer builds."""
    try:
        return json.dumps(obj, separators=(",", ":"))
    except TypeError:
        return json.dumps(obj)


# -- non-blocking sockets and TLS (the MQTT link) ------------------------------

EAGAIN = 11
EINPROGRESS = 115


def would_block(e):
    """A non-blocking call that has to wait: EAGAIN / EINPROGRESS, or ssl's
    want-read/want-write (CPython; their errno is SSL's, not the OS's)."""
    return getattr(e, "errno", None) in (EAGAIN, EINPROGRESS) or \
        type(e).__name__ in ("SSLWantReadError", "SSLWantWriteError")


def tls_wants_write(e):
    return type(e).__name__ == "SSLWantWriteError"


def tls_wrap(sock, hostname, ca_file, cert_file="", key_file=""):
    """A TLS client socket over a connected non-blocking one, the broker's
    certificate checked against ca_file (and its name), an optional client
    certificate. ssl is imported here, only when TLS is configured (it
    costs megabytes on CPython). MicroPython (1.22 on) has the built-in
    `tls` (mbedTLS; its `ssl` is a frozen wrapper that MICROPYPATH hides):
    the handshake runs on the first read or write, and it reads DER only,
    so a PEM file is decoded here, its first block (a CA file holding
    several certificates trusts the first)."""
    if MICROPYTHON:
        try:
            import tls
        except ImportError:
            raise OSError(95, "no tls module in this MicroPython: MQTT over TLS needs 1.22 or later")
        ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
        ctx.verify_mode = tls.CERT_REQUIRED
        ctx.load_verify_locations(_der(ca_file))
        if cert_file:
            # a key in the certificate's file is found there by its PEM label
            ctx.load_cert_chain(_der(cert_file, "CERTIFICATE"), _der(key_file or cert_file, "PRIVATE KEY"))
        return ctx.wrap_socket(sock, server_side=False, do_handshake_on_connect=False,
                               server_hostname=hostname)
    try:
        import ssl
    except ImportError:  # OpenWrt: python3-openssl, installed with the feature
        raise OSError(95, "no ssl module here: MQTT over TLS needs python3-openssl")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=ca_file)
    if cert_file:
        ctx.load_cert_chain(cert_file, key_file or None)
    return ctx.wrap_socket(sock, server_hostname=hostname, do_handshake_on_connect=False)


def _der(path, label=""):
    """A certificate or key file's bytes as DER: the first PEM block whose
    label ends with `label` (CERTIFICATE, PRIVATE KEY), or the file as it
    is when it is not PEM. ValueError when the file holds no such block."""
    data = read_file(path)
    if data is None:
        raise OSError(2, "cannot read %s" % path)
    if b"-----BEGIN " not in data:
        return data
    import binascii
    for block in data.split(b"-----BEGIN ")[1:]:
        head, _, rest = block.partition(b"-----")
        if head.endswith(label.encode()):
            body = rest.partition(b"-----END ")[0]
            try:
                return binascii.a2b_base64(b"".join(body.split()))
            except ValueError:
                break
    raise ValueError("%s: no PEM %s in it" % (path, label or "block"))


def tls_handshake(sock):
    """Advance the handshake: True when done; raises what would_block knows
    while it must wait."""
    hs = getattr(sock, "do_handshake", None)
    if hs is not None:
        hs()
    return True


# -- signals --------------------------------------------------------------

def install_signals(on_term, on_hup):
    """Route SIGTERM/SIGINT/SIGHUP into the main loop. Returns a readable
    fd to put in poll (a byte, or a signalfd record, arrives with each
    signal), or None where signals cannot be caught (MicroPython without
    ffi: SIGTERM then kills at once, so state must already be on disk and
    reload comes through the API); the handlers only set flags."""
    if MICROPYTHON:
        return _signalfd(on_term, on_hup)
    try:
        import _signal as signal  # the C half alone: `signal` adds enum, 0.8 MB of RSS
    except ImportError:
        import signal
    r, w = sockets().socketpair()
    r.setblocking(False)
    w.setblocking(False)
    signal.set_wakeup_fd(w.fileno(), warn_on_full_buffer=False)
    signal.signal(signal.SIGTERM, lambda *a: on_term())
    signal.signal(signal.SIGINT, lambda *a: on_term())
    signal.signal(signal.SIGHUP, lambda *a: on_hup())
    _SIG.append((r, w))
    return r


_SIG = []  # CPython: the wakeup socket pair; MicroPython: (fd, {signo: handler})


def _signalfd(on_term, on_hup):
    # block the three signals and read them from a signalfd in the poll loop
    lib = _libc()
    if lib is None:
        return None
    import struct
    mask = bytearray(128)  # sigset_t; the kernel reads the first 8 bytes
    for signo in (1, 2, 15):  # SIGHUP, SIGINT, SIGTERM
        mask[(signo - 1) // 8] |= 1 << ((signo - 1) % 8)
    if lib.func("i", "sigprocmask", "ipp")(0, mask, None) != 0:  # SIG_BLOCK
        return None
    fd = lib.func("i", "signalfd", "ipi")(-1, mask, 0o4000 | 0o2000000)  # NONBLOCK|CLOEXEC
    if fd < 0:
        return None
    _SIG.append((fd, {1: on_hup, 2: on_term, 15: on_term}, lib.func("i", "read", "ipi"), struct))
    return fd


def drain(wake):
    """Empty the wakeup fd; on MicroPython also call the handlers of the
    signals read from the signalfd."""
    if isinstance(wake, int):
        fd, handlers, read, struct = _SIG[0]
        info = bytearray(128)  # struct signalfd_siginfo
        while read(fd, info, 128) == 128:
            fn = handlers.get(struct.unpack_from("I", info, 0)[0])
            if fn is not None:
                fn()
        return
    try:
        while wake.recv(64):
            pass
    except OSError:
        pass


def rss_kb():
    """Resident set size of this process in KiB (from /proc), or 0."""
    data = read_file("/proc/self/status") or b""
    for line in data.split(b"\n"):
        if line.startswith(b"VmRSS:"):
            return int(line.split()[1])
    return 0


# -- messages ---------------------------------------------------------------

_warned = {}


def warn(msg):
    """Something went wrong or needs the owner: one line on stderr, which
    procd (stderr 1) logs as daemon.err."""
    sys.stderr.write("spin: %s\n" % msg)


def info(msg):
    """News that is not a fault (started, reloaded, registered, stopped):
    one line on stdout, which procd (stdout 1) logs as daemon.info. Flushed
    at once: the agent's stdout is a pipe, and a line held back in a buffer
    would reach syslog late or, at a crash, never."""
    sys.stdout.write("spin: %s\n" % msg)
    try:
        sys.stdout.flush()
    except (AttributeError, OSError):  # some MicroPython builds' stdout has no flush
        pass


def warn_once(key, msg):
    if key not in _warned:
        _warned[key] = 1
        warn(msg)
