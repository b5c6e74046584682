"""A ubusd stand-in for integration tests.

This is NOT OpenWrt's ubusd (which needs libubox and is not packaged for
Debian). It is written from the protocol facts in /work/shared/ubus/README.md
and the recorded exchange with a real ubusd (tests/data/ubus-transcript.jsonl):
it answers the way that transcript shows, and does nothing more. It frames
and codes messages with spin_lite.ubus (whose codec is checked byte for byte
against the transcript); the routing below is its own.

What it does, as in the transcript:
* HELLO with a random client id when a client connects;
* ADD_OBJECT -> DATA {OBJID, OBJTYPE} (anonymous objects: {OBJID}) + STATUS;
  a path already taken -> STATUS 2;
* REMOVE_OBJECT -> DATA {OBJID, OBJTYPE} + STATUS;
* LOOKUP [path | prefix*] -> one DATA {OBJPATH, OBJID, OBJTYPE, SIGNATURE}
  per object + STATUS, or STATUS 4 when none;
* INVOKE of an object -> relayed to its owner with USER/GROUP, peer = the
  caller; the owner's DATA/STATUS relayed back with peer = the object id;
  unknown object -> STATUS 4;
* object 1: `send` delivers the event as an INVOKE (method = event name,
  peer 0) to every anonymous object registered with a matching pattern, and
  `register` records {object, pattern};
* a client that sends a message over 1 MiB or bad bytes is disconnected, its
  objects and registrations removed.

The socket is mode 0666, as ubusd's umask(0111) makes it: any user may
connect, and the ACLs decide.

ACLs (only with --acl DIR; without, every client is treated as root, as
in the recorded exchange), as ubusd_acl.c does them:
* the client's uid/gid come from SO_PEERCRED and its extra groups from
  /proc/<pid>/status; a uid the router's /etc/passwd (--etc DIR) does not
  know is refused (the connection is closed); uid 0 may do everything;
* DIR/*.json are read at start and on SIGHUP; a file not owned by
  root:root, or writable by group or others, or executable by others, is
  skipped; a file names "user" (else "group"; neither: skipped), and an
  unknown name becomes uid/gid 0, which matches no other client;
* its entries: "access" {object: {"methods": [...]}}, "publish",
  "subscribe", "listen", "send" [names]; a name ending in "*" matches
  every name it begins; an entry applies when the client's uid is the
  file's user, or its gid or an extra group the file's group;
* ADD_OBJECT of a path needs publish (denied: STATUS 2, as for a path
  taken); LOOKUP shows only the methods the client may access; INVOKE of
  a method needs access (denied: STATUS 6); event `send` needs send on
  the event's name and `register` listen on the pattern (denied: 6);
  an INVOKE carries the caller's user and group names.
ubusd walks its sorted ACL tree with an early stop that can miss an entry
in odd orders; this stand-in checks every entry.

Run: python3 -m tests.world.ubusd [--acl DIR --etc DIR] SOCKET [LOG]
(prints "ready" when listening; SIGTERM stops it and removes the socket;
run it again to "restart ubusd"). LOG, when given, gets one line per
message received: "client-id TYPE seq peer".
"""

import glob
import json
import os
import random
import selectors
import signal
import socket
import stat
import struct
import sys

from spin_lite import ubus


class Peer:
    def __init__(self, sock, cid):
        self.sock = sock
        self.id = cid
        self.framer = ubus.Framer()
        self.out = bytearray()
        self.uid = self.gid = 0
        self.gids = ()
        self.user = self.group = "root"


def _names(etc, table):
    """name -> id and id -> name of the root's /etc/passwd or /etc/group."""
    by_name, by_id = {}, {}
    try:
        with open(os.path.join(etc, table)) as f:
            for line in f:
                fields = line.strip().split(":")
                if len(fields) > 2 and fields[2].isdigit():
                    by_name[fields[0]] = int(fields[2])
                    by_id.setdefault(int(fields[2]), fields[0])
    except OSError:
        pass
    return by_name, by_id


class Acl:
    """ubusd's ACL files, read from a directory (ubusd_acl_load)."""

    KINDS = ("publish", "subscribe", "listen", "send")

    def __init__(self, acl_dir, etc):
        self.dir = acl_dir
        self.etc = etc
        self.entries = []
        self.load()

    def load(self):
        users, _ = _names(self.etc, "passwd")
        groups, _ = _names(self.etc, "group")
        entries = []
        for path in sorted(glob.glob(os.path.join(self.dir, "*.json"))):
            st = os.stat(path)
            if not stat.S_ISREG(st.st_mode) or st.st_uid or st.st_gid:
                continue
            if st.st_mode & (stat.S_IWOTH | stat.S_IWGRP | stat.S_IXOTH):
                continue
            try:
                with open(path) as f:
                    doc = json.load(f)
            except ValueError:
                continue
            if not isinstance(doc, dict):
                continue
            if isinstance(doc.get("user"), str):
                uid, gid = users.get(doc["user"], 0), -1
            elif isinstance(doc.get("group"), str):
                uid, gid = -1, groups.get(doc["group"], 0)
            else:
                continue
            access = doc.get("access")
            for name, grant in (access.items() if isinstance(access, dict) else ()):
                if isinstance(grant, dict) and isinstance(grant.get("methods"), list):
                    entries.append((name, uid, gid, "access", grant["methods"]))
            for kind in self.KINDS:
                names = doc.get(kind)
                for name in (names if isinstance(names, list) else ()):
                    if isinstance(name, str) and name:
                        entries.append((name, uid, gid, kind, None))
        self.entries = entries

    def allows(self, peer, name, kind, method=None):
        if peer.uid == 0:
            return True
        if name is None:
            return False
        for key, uid, gid, k, methods in self.entries:
            if k != kind:
                continue
            if not (name == key or (key.endswith("*") and name.startswith(key[:-1]))):
                continue
            if not ((uid != -1 and peer.uid == uid) or
                    (gid != -1 and (peer.gid == gid or gid in peer.gids))):
                continue
            if kind != "access" or any(m in (method, "*") for m in methods if isinstance(m, str)):
                return True
        return False


class Obj:
    def __init__(self, oid, path, otype, signature, owner):
        self.id = oid
        self.path = path
        self.type = otype
        self.signature = signature
        self.owner = owner


class Ubusd:
    def __init__(self, path, log=None, acl_dir=None, etc="/etc"):
        self.path = path
        self.log = log
        self.etc = etc
        self.acl = Acl(acl_dir, etc) if acl_dir else None
        self.sel = selectors.DefaultSelector()
        self.peers = {}        # client id -> Peer
        self.objects = {}      # object id -> Obj
        self.listeners = []    # (object id, pattern)
        self.running = True
        try:
            os.unlink(path)
        except OSError:
            pass
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        os.chmod(path, 0o666)
        self.server.listen(32)
        self.server.setblocking(False)
        self.sel.register(self.server, selectors.EVENT_READ, None)

    def new_id(self):
        while True:
            n = random.randrange(2, 0xFFFFFFFF)
            if n not in self.peers and n not in self.objects:
                return n

    # -- I/O --

    def serve(self):
        while self.running:
            for key, mask in self.sel.select(0.5):
                if key.data is None:
                    self.accept()
                    continue
                peer = key.data
                if mask & selectors.EVENT_READ:
                    self.read(peer)
                if mask & selectors.EVENT_WRITE and peer.id in self.peers:
                    self.flush(peer)
        self.close()

    def close(self):
        for peer in list(self.peers.values()):
            peer.sock.close()
        self.server.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def accept(self):
        try:
            sock, _ = self.server.accept()
        except OSError:
            return
        sock.setblocking(False)
        peer = Peer(sock, self.new_id())
        if self.acl is not None and not self.credentials(peer):
            sock.close()
            return
        self.peers[peer.id] = peer
        self.sel.register(sock, selectors.EVENT_READ, peer)
        self.send(peer, ubus.Message(ubus.HELLO, 0, peer.id))

    def credentials(self, peer):
        """ubusd_acl_init_client: the peer's ids and names; False (the
        client is refused) for a uid or gid the router does not know."""
        pid, peer.uid, peer.gid = struct.unpack("3i", peer.sock.getsockopt(
            socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
        user = _names(self.etc, "passwd")[1].get(peer.uid)
        group = _names(self.etc, "group")[1].get(peer.gid)
        if user is None or group is None:
            return False
        peer.user, peer.group = user, group
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("Groups:"):
                        peer.gids = tuple(int(g) for g in line.split()[1:])
        except OSError:
            pass
        return True

    def allows(self, peer, name, kind, method=None):
        return self.acl is None or self.acl.allows(peer, name, kind, method)

    def read(self, peer):
        try:
            data = peer.sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self.drop(peer)
            return
        peer.framer.feed(data)
        try:
            while peer.id in self.peers:
                msg = peer.framer.next()
                if msg is None:
                    break
                if self.log is not None:
                    self.log.write("%08x %s %d %d\n" % (peer.id, ubus.MESSAGE_NAMES.get(msg.type, msg.type),
                                                        msg.seq, msg.peer))
                    self.log.flush()
                self.handle(peer, msg)
        except ubus.ProtocolError as e:
            sys.stderr.write("ubusd stand-in: dropping client %08x: %s\n" % (peer.id, e))
            self.drop(peer)

    def send(self, peer, msg):
        peer.out.extend(ubus.encode_message(msg))
        self.flush(peer)

    def flush(self, peer):
        try:
            n = peer.sock.send(peer.out)
            del peer.out[:n]
        except BlockingIOError:
            pass
        except OSError:
            self.drop(peer)
            return
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if peer.out else 0)
        self.sel.modify(peer.sock, want, peer)

    def drop(self, peer):
        if self.peers.pop(peer.id, None) is None:
            return
        self.sel.unregister(peer.sock)
        peer.sock.close()
        gone = [o for o in self.objects.values() if o.owner is peer]
        for o in gone:
            del self.objects[o.id]
        ids = set(o.id for o in gone)
        self.listeners = [(i, p) for i, p in self.listeners if i not in ids]

    # -- the protocol --

    def status(self, peer, seq, status, peer_field=0):
        self.send(peer, ubus.Message(ubus.STATUS, seq, peer_field, [(ubus.A_STATUS, status)]))

    def handle(self, peer, msg):
        t = msg.type
        if t == ubus.ADD_OBJECT:
            path = msg.get(ubus.A_OBJPATH)
            if path is not None and any(o.path == path for o in self.objects.values()):
                return self.status(peer, msg.seq, 2)
            if path is not None and not self.allows(peer, path, "publish"):
                return self.status(peer, msg.seq, 2)
            o = Obj(self.new_id(), path, self.new_id() if path is not None else None,
                    msg.get(ubus.A_SIGNATURE) or {}, peer)
            self.objects[o.id] = o
            attrs = [(ubus.A_OBJID, o.id)]
            if o.type is not None:
                attrs.append((ubus.A_OBJTYPE, o.type))
            self.send(peer, ubus.Message(ubus.DATA, msg.seq, 0, attrs))
            return self.status(peer, msg.seq, 0)
        if t == ubus.REMOVE_OBJECT:
            o = self.objects.get(msg.get(ubus.A_OBJID))
            if o is None or o.owner is not peer:
                return self.status(peer, msg.seq, 4)
            del self.objects[o.id]
            self.listeners = [(i, p) for i, p in self.listeners if i != o.id]
            attrs = [(ubus.A_OBJID, o.id)] + ([(ubus.A_OBJTYPE, o.type)] if o.type is not None else [])
            self.send(peer, ubus.Message(ubus.DATA, msg.seq, 0, attrs))
            return self.status(peer, msg.seq, 0)
        if t == ubus.LOOKUP:
            want = msg.get(ubus.A_OBJPATH)
            found = [o for o in self.objects.values() if o.path is not None and matches(want, o.path)]
            for o in sorted(found, key=lambda o: o.path):
                signature = {m: a for m, a in o.signature.items() if self.allows(peer, o.path, "access", m)}
                self.send(peer, ubus.Message(ubus.DATA, msg.seq, 0, [
                    (ubus.A_OBJPATH, o.path), (ubus.A_OBJID, o.id),
                    (ubus.A_OBJTYPE, o.type), (ubus.A_SIGNATURE, signature)]))
            return self.status(peer, msg.seq, 0 if found else 4)
        if t == ubus.INVOKE:
            return self.invoke(peer, msg)
        if t in (ubus.DATA, ubus.STATUS):
            # an object's answer to an INVOKE: peer names the caller
            caller = self.peers.get(msg.peer)
            if caller is not None:
                oid = msg.get(ubus.A_OBJID, 0)
                self.send(caller, ubus.Message(t, msg.seq, oid, msg.attrs))
            return None
        if t == ubus.PING:
            return self.send(peer, ubus.Message(ubus.DATA, msg.seq, 0, []))
        raise ubus.RemoteProtocolError("stand-in does not handle %s" % ubus.MESSAGE_NAMES.get(t, t))

    def invoke(self, peer, msg):
        oid = msg.get(ubus.A_OBJID)
        method = msg.get(ubus.A_METHOD)
        data = msg.get(ubus.A_DATA) or {}
        if oid == ubus.EVENT_OBJECT:
            if method == "register":
                obj = data.get("object")
                obj = obj & 0xFFFFFFFF if isinstance(obj, int) else None
                o = self.objects.get(obj)
                if o is None or o.owner is not peer or not isinstance(data.get("pattern"), str):
                    return self.status(peer, msg.seq, 2, 1)
                if not self.allows(peer, data["pattern"], "listen"):
                    return self.status(peer, msg.seq, 6, 1)
                self.listeners.append((o.id, data["pattern"]))
                return self.status(peer, msg.seq, 0, 1)
            if method == "send":
                name = data.get("id")
                if not isinstance(name, str):
                    return self.status(peer, msg.seq, 2, 1)
                if not self.allows(peer, name, "send"):
                    return self.status(peer, msg.seq, 6, 1)
                for lid, pattern in list(self.listeners):
                    o = self.objects.get(lid)
                    if o is not None and matches(pattern, name):
                        self.send(o.owner, ubus.Message(ubus.INVOKE, msg.seq, 0, [
                            (ubus.A_OBJID, lid), (ubus.A_METHOD, name),
                            (ubus.A_DATA, data.get("data") or {})]))
                return self.status(peer, msg.seq, 0, 1)
            return self.status(peer, msg.seq, 3, 1)
        o = self.objects.get(oid)
        if o is None:
            return self.status(peer, msg.seq, 4, oid or 0)
        if not self.allows(peer, o.path, "access", method):
            return self.status(peer, msg.seq, 6, oid)
        self.send(o.owner, ubus.Message(ubus.INVOKE, msg.seq, peer.id, [
            (ubus.A_OBJID, o.id), (ubus.A_METHOD, method),
            (ubus.A_USER, peer.user), (ubus.A_GROUP, peer.group), (ubus.A_DATA, data)]))
        return None


def matches(pattern, name):
    """ubus patterns: None = all, 'spin.*' = prefix, else exact."""
    if pattern is None:
        return True
    if pattern.endswith("*"):
        return name.startswith(pattern[:-1])
    return name == pattern


def main(argv):
    opts = {}
    args = list(argv[1:])
    while args[:1] in (["--acl"], ["--etc"]) and len(args) > 1:
        opts[args[0][2:]] = args[1]
        del args[:2]
    if len(args) not in (1, 2):
        sys.stderr.write("usage: python3 -m tests.world.ubusd [--acl DIR --etc DIR] SOCKET [LOG]\n")
        return 2
    d = Ubusd(args[0], open(args[1], "a") if len(args) == 2 else None,
              acl_dir=opts.get("acl"), etc=opts.get("etc", "/etc"))

    def stop(*_):
        d.running = False

    def reload_acl(*_):
        if d.acl is not None:
            d.acl.load()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload_acl)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    d.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))


class StandIn:
    """The stand-in as a child process for tests: start(), stop(), restart()."""

    def __init__(self, path, log=None, acl_dir=None, etc=None):
        self.path = path
        self.log = log
        self.options = (["--acl", acl_dir, "--etc", etc or "/etc"]) if acl_dir else []
        self.proc = None

    def start(self):
        import subprocess
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ, PYTHONPATH=os.path.join(root, "src") + os.pathsep + root)
        argv = ([sys.executable, "-m", "tests.world.ubusd"] + self.options + [self.path]
                + ([self.log] if self.log else []))
        self.proc = subprocess.Popen(argv, cwd=root, env=env, stdout=subprocess.PIPE)
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            self.stop()
            raise RuntimeError("ubusd stand-in did not start")
        return self

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except Exception:
                self.proc.kill()
                self.proc.wait()
            self.proc.stdout.close()
            self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
