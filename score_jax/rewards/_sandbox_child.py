"""Sandbox bootstrap: runs ONE untrusted program and checks it against its
tests, in two processes that share nothing but a pipe.

Started by `code.py` as `python -s -P -S -B _sandbox_child.py` (isolated
mode but for the environment, so that PYTHONHASHSEED holds) in a new session
with a cleaned environment. Its stdin holds two length-prefixed JSON parts:
the program and the limits (read by B), then the tests and the run's nonce
(read only by T). Then:

  1. process B enters new mount/net/pid/ipc/uts namespaces when the kernel
     allows it and forks C, the init of the new pid namespace;
  2. C makes the host's file tree read-only, hides its writable scratch dirs
     behind root-owned tmpfs mounts and makes a fresh work dir, then forks
     T, the tests process, and D, the program process;
  3. D sets rlimits, drops to the slot's uid when started as root, drops
     every capability, sets PDEATHSIG=SIGKILL and no-new-privs, installs an
     audit hook (no sockets, no writes outside the work dir), runs the
     program, then answers T's requests (call this function, read this
     attribute, iterate this value...) with plain data (`_Codec`) or
     handles to its objects, and says which arguments a call changed;
  4. T, not dumpable (a process without CAP_SYS_PTRACE cannot read its
     memory or its file descriptors) and itself without capabilities,
     working from `/`, runs the tests with the program's functions as
     `_Remote` handles and writes one JSON record carrying the nonce to the
     status fd: `passed` only after every test statement ran.
     C exits when T is done, and C's exit makes the kernel kill whatever D
     left in the namespace. Without a pid namespace, B, the subreaper of
     everything below it, kills what is left (even processes that left the
     group by setsid()).

The program never shares an interpreter with the tests, never sees the
tests, the expected values or the nonce, and has no descriptor to write a
record to: all it can send is data that T decodes into builtin and standard
library values (never the program's objects, whose methods would run in T).
So every comparison the tests make is the interpreter's own: an object whose
`__eq__` answers True stays in D, and T compares its handle by identity. This
file imports only the standard library (no site-packages).
"""

import builtins
import collections
import importlib
import json
import operator
import os
import sys
import types

_CLONE_NEWNS = 0x00020000
_CLONE_NEWUTS = 0x04000000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWPID = 0x20000000
_CLONE_NEWNET = 0x40000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 0x20, 0x1000, 0x4000, 1 << 18
_PR_SET_PDEATHSIG, _PR_SET_DUMPABLE, _PR_SET_NO_NEW_PRIVS = 1, 4, 38
_PR_CAPBSET_DROP, _PR_SET_CHILD_SUBREAPER = 24, 36
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
# mount_setattr(2): the same number on every architecture (unified table).
_SYS_MOUNT_SETATTR, _AT_FDCWD, _AT_RECURSIVE = 442, -100, 0x8000
_MOUNT_ATTR_RDONLY = 0x1

# World-writable places on a typical host; inside the mount namespace each is
# covered by a root-owned tmpfs so a dropped-uid program cannot write there.
_SCRATCH_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/var/lock")
_WORK_DIR = "/tmp/sandbox"
# T's exit status when the program's process went away (EOF on its pipe)
# before the tests completed: C then exits with D's status (a crash, an exit).
_LOST_PROGRAM = 3
# The largest message T accepts from the program's process.
_MAX_MESSAGE_BYTES = 64 << 20
# Failure reasons the program's process may report for its own start.
_PROGRAM_REASONS = ("syntax_error", "failed", "memory")


def _read_exact(fd: int, size: int):
  """`size` bytes from `fd`, or None at end of file."""
  chunks, left = [], size
  while left:
    chunk = os.read(fd, min(left, 1 << 20))
    if not chunk:
      return None
    chunks.append(chunk)
    left -= len(chunk)
  return b"".join(chunks)


def _read_part(fd: int):
  """One length-prefixed JSON part of stdin (exactly its bytes: the next
  part stays in the pipe for the next reader)."""
  header = _read_exact(fd, 8)
  body = None if header is None else _read_exact(
      fd, int.from_bytes(header, "big"))
  if body is None:
    raise EOFError("sandbox: stdin ended inside a part")
  return json.loads(body)


def _stdin_to_devnull():
  null = os.open(os.devnull, os.O_RDONLY)
  os.dup2(null, 0)
  os.close(null)


def _libc():
  import ctypes  # pylint: disable=g-import-not-at-top
  return ctypes, ctypes.CDLL(None, use_errno=True)


def _enter_namespaces(libc) -> list:
  """Returns the namespaces entered (empty when the kernel refuses)."""
  flags = (_CLONE_NEWNS | _CLONE_NEWNET | _CLONE_NEWPID | _CLONE_NEWIPC
           | _CLONE_NEWUTS)
  if os.geteuid() == 0 and libc.unshare(flags) == 0:
    return ["mount", "net", "pid", "ipc", "uts"]
  uid, gid = os.geteuid(), os.getegid()
  if libc.unshare(flags | _CLONE_NEWUSER) == 0:
    # Map ourselves to root inside the new user namespace (needed to mount).
    for path, text in (("/proc/self/setgroups", "deny"),
                       ("/proc/self/uid_map", f"0 {uid} 1"),
                       ("/proc/self/gid_map", f"0 {gid} 1")):
      try:
        with open(path, "w") as f:
          f.write(text)
      except OSError:
        pass
    return ["user", "mount", "net", "pid", "ipc", "uts"]
  return []


def _mount(libc, source, target, fstype, flags, data=None) -> bool:
  enc = lambda s: None if s is None else s.encode()
  return libc.mount(enc(source), enc(target), enc(fstype), flags,
                    enc(data)) == 0


def _read_only_tree(libc) -> bool:
  """Makes every mount of this namespace read-only (mount_setattr, 5.12+).

  What protects the host's files where the program keeps the uid of the
  user who started it (an unprivileged user namespace maps only that uid).
  """
  import ctypes  # pylint: disable=g-import-not-at-top
  attr = (ctypes.c_uint64 * 4)(_MOUNT_ATTR_RDONLY, 0, 0, 0)
  return libc.syscall(_SYS_MOUNT_SETATTR, _AT_FDCWD, b"/", _AT_RECURSIVE,
                      ctypes.byref(attr), ctypes.sizeof(attr)) == 0


def _private_filesystem(libc, cfg) -> str:
  """Read-only host tree, tmpfs over the scratch dirs, a fresh /proc;
  returns the work dir."""
  _mount(libc, None, "/", None, _MS_REC | _MS_PRIVATE)
  if _read_only_tree(libc):
    cfg["namespaces"].append("read_only")
  size = f"size={int(cfg['max_file_mb']) * 2}m,mode=755"
  ok = _mount(libc, "tmpfs", "/tmp", "tmpfs", _MS_NOSUID | _MS_NODEV, size)
  for path in _SCRATCH_DIRS[1:]:
    if os.path.isdir(path) and not os.path.islink(path):
      _mount(libc, "tmpfs", path, "tmpfs",
             _MS_NOSUID | _MS_NODEV | _MS_NOEXEC | _MS_RDONLY, "size=4k,mode=755")
  # A /proc for the new pid namespace: host processes become invisible.
  _mount(libc, "proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
  if not ok:
    return cfg["host_work_dir"]
  _expose_stdlib(libc)
  os.mkdir(_WORK_DIR, 0o700)
  return _WORK_DIR


def _others_can_read(path: str) -> bool:
  """True when a process of another uid can reach and list `path`."""
  path = os.path.realpath(path)
  if not os.stat(path).st_mode & 0o004:
    return False
  while path != "/":
    if not os.stat(path).st_mode & 0o001:
      return False
    path = os.path.dirname(path)
  return True


def _expose_stdlib(libc):
  """Makes the standard library importable after the uid drop.

  An interpreter installed under a private home (pyenv in /root) is invisible
  to the slot's uid; read-only bind mounts under the root-owned /tmp make it
  visible without opening up the home directory.
  """
  moved = {}
  for i, path in enumerate(sys.path):
    if not path or not os.path.exists(path) or _others_can_read(path):
      continue
    target = f"/tmp/.stdlib{i}"
    if os.path.isdir(path):
      os.mkdir(target, 0o755)
    else:
      os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
    if _mount(libc, path, target, None, _MS_BIND | _MS_REC):
      _mount(libc, None, target, None,
             _MS_BIND | _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)
      sys.path[i] = target
      moved[path] = target
  # Packages imported before the move look up submodules in their __path__.
  for module in list(sys.modules.values()):
    search = getattr(module, "__path__", None)
    if isinstance(search, list):
      search[:] = [_moved(p, moved) for p in search]
  sys.path_importer_cache.clear()


def _moved(path: str, moved: dict) -> str:
  for old, new in moved.items():
    if path == old or path.startswith(old + os.sep):
      return new + path[len(old):]
  return path


def _count_user_tasks(uid: int) -> int:
  count = 0
  for pid in os.listdir("/proc"):
    if pid.isdigit():
      try:
        if os.stat(f"/proc/{pid}").st_uid == uid:
          count += len(os.listdir(f"/proc/{pid}/task"))
      except OSError:
        pass
  return count


def _set_limits(cfg, dropped_uid: bool):
  import resource  # pylint: disable=g-import-not-at-top
  cpu = int(cfg["cpu_s"])
  mem = int(cfg["memory_mb"]) << 20
  fsize = int(cfg["max_file_mb"]) << 20
  limits = [(resource.RLIMIT_CPU, (cpu, cpu + 1)),
            (resource.RLIMIT_AS, (mem, mem)),
            (resource.RLIMIT_FSIZE, (fsize, fsize)),
            (resource.RLIMIT_NOFILE, (256, 256)),
            (resource.RLIMIT_CORE, (0, 0))]
  nproc = int(cfg["max_processes"])
  if not dropped_uid:
    # RLIMIT_NPROC counts every task of the uid: leave room for the host's.
    nproc += _count_user_tasks(os.getuid())
  limits.append((resource.RLIMIT_NPROC, (nproc, nproc)))
  for which, value in limits:
    try:
      resource.setrlimit(which, value)
    except (ValueError, OSError):
      pass


def _uid_drop_possible(cfg) -> bool:
  """Whether D will run as the slot's own uid (its own RLIMIT_NPROC budget,
  no signals to T or the host): the host is root, not through a user
  namespace (which maps uid 0 alone), and every user can read the standard
  library (else the program could not import it; `_expose_stdlib` makes a
  private one readable under a mount namespace)."""
  return (os.geteuid() == 0 and cfg.get("uid") is not None
          and "user" not in cfg["namespaces"]
          and all(_others_can_read(p) for p in sys.path
                  if p and os.path.exists(p)))


def _become(uid: int, work_dir: str):
  os.chown(work_dir, uid, uid)
  os.setgroups([])
  os.setgid(uid)
  os.setuid(uid)


def _drop_capabilities(ctypes, libc):
  """Leaves D no capability, also where it keeps uid 0 (a user namespace's
  root, or a root host that cannot drop the uid): without CAP_SYS_PTRACE it
  cannot read T's memory or descriptors (T is not dumpable), nor remount
  the read-only tree."""
  for cap in range(64):
    libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)  # EINVAL past the last: fine.
  header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
  data = (ctypes.c_uint32 * 6)()
  if libc.capset(header, data) != 0:
    raise OSError(ctypes.get_errno(), "capset")


def _install_guard(work_dir: str, forbid_processes: bool):
  """Audit hook: no sockets, no file changes outside the work dir, no
  signals to other processes.

  A second layer under the namespaces and the uid drop, and the only file and
  network barrier where the kernel refuses namespaces. It sees Python-level
  operations only (not C code, e.g. ctypes), and `os.path.realpath` depends on
  os functions a program can replace: a guard against accidents, while the
  kernel layers are the guard against adversaries.
  """
  sep = os.sep
  prefix = os.path.realpath(work_dir) + sep
  realpath, fspath, isinstance_, str_, bytes_ = (
      os.path.realpath, os.fspath, isinstance, str, bytes)
  getpid, getpgid = os.getpid, os.getpgid
  write_modes = frozenset("wax+")
  devnull, devnull_bytes = os.devnull, os.devnull.encode()
  write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
  spawns = frozenset({"os.fork", "os.forkpty", "os.posix_spawn", "os.exec",
                      "os.spawn", "os.system", "os.startfile",
                      "subprocess.Popen"}) if forbid_processes else frozenset()
  changes = frozenset({"os.remove", "os.rename", "os.rmdir", "os.mkdir",
                       "os.symlink", "os.link", "os.chmod", "os.chown",
                       "os.truncate", "os.utime", "shutil.rmtree"})
  # Which arguments are paths it changes: a rename's or a hard link's both
  # ends (a link to an outside file would be written through), a symlink's
  # location (what it points to is checked when it is opened).
  path_args = {"os.rename": (0, 1), "os.link": (0, 1), "os.symlink": (1,)}

  def outside(path) -> bool:
    if isinstance_(path, int) or path in (devnull, devnull_bytes):
      return False
    try:
      path = fspath(path)
      if isinstance_(path, bytes_):
        path = path.decode()
      return not (realpath(path) + sep).startswith(prefix)
    except Exception:  # pylint: disable=broad-except
      return True

  def hook(event, args):
    if event in spawns:
      raise PermissionError("sandbox: starting processes is disabled (no "
                            "process limit applies to this uid)")
    if event.startswith("socket.") and event != "socket.gethostname":
      raise PermissionError("sandbox: network access is disabled")
    if (event == "os.kill" and args[0] != getpid()
        or event == "os.killpg" and args[0] != getpgid(0)):
      # Where no uid was dropped, another process could be the host's.
      raise PermissionError("sandbox: signalling other processes is "
                            "disabled")
    if event == "open":
      path, mode, flags = args
      writes = (isinstance_(mode, str_) and not write_modes.isdisjoint(mode)
                or flags & write_flags)
      if writes and outside(path):
        raise PermissionError(f"sandbox: writing outside the work dir: {path}")
    elif event in changes and any(
        outside(args[i]) for i in path_args.get(event, (0,)) if i < len(args)):
      raise PermissionError("sandbox: changing files outside the work dir")

  sys.addaudithook(hook)


def _names(source: str) -> set:
  """Every name `source` uses or binds."""
  import ast  # pylint: disable=g-import-not-at-top
  return {node.id for node in ast.walk(ast.parse(source))
          if isinstance(node, ast.Name)}


def _describe(exc) -> str:
  """Names an exception without running the program's __str__/__repr__."""
  try:
    name = type(exc).__name__
  except Exception:  # pylint: disable=broad-except
    name = "exception"
  try:
    text = BaseException.__str__(exc)
  except Exception:  # pylint: disable=broad-except
    text = ""
  return f"{name}: {text}"[:500]


# -- values across the pipe ----------------------------------------------------

# Sent as JSON's own scalars (floats exactly: JSON text is their repr).
_BARE = (type(None), bool, int, float, str)
# Wider than this an int goes as hex (JSON's decimal digits are capped).
_BARE_INT_BITS = 10_000
_CONTAINERS = {list: "l", tuple: "t", set: "S", frozenset: "Z", dict: "d"}
# Arguments whose changes by a call are copied back to the tests' objects
# (dict covers Counter, OrderedDict and defaultdict).
_MUTABLE = (list, bytearray, dict, set, collections.deque)
# Standard-library value types rebuilt by value: (module, name) -> tag.
_STDLIB = {("collections", "Counter"): "C",
           ("collections", "OrderedDict"): "O",
           ("collections", "defaultdict"): "D",
           ("collections", "deque"): "q", ("fractions", "Fraction"): "Q",
           ("decimal", "Decimal"): "M"}


def _stdlib_tag(kind):
  """The `_STDLIB` tag of `kind` when it is that class of its loaded module
  (no module loaded: no value of it can exist)."""
  key = (getattr(kind, "__module__", None), getattr(kind, "__qualname__", None))
  tag = _STDLIB.get(key)
  module = sys.modules.get(key[0]) if tag else None
  return tag if module is not None and getattr(module, key[1], None) is kind \
      else None


# Dict views, rebuilt from a dict of their items (keys and items views
# compare as sets; values views only with themselves).
_VIEWS = {type({}.keys()): "K", type({}.values()): "V", type({}.items()): "I"}
# A subclass of one of these crosses as its value of this type, read by the
# type's own C method (not the subclass's `__str__`, `__index__`, ...).
_BASES = ((int, int.__index__),
          (float, float.__float__), (complex, lambda x: complex(
              float.__float__(x.real), float.__float__(x.imag))),
          (str, lambda x: "".join([x])), (bytes, lambda x: b"".join([x])),
          (list, lambda x: list(list.__iter__(x))),
          (tuple, lambda x: tuple(tuple.__iter__(x))),
          (dict, lambda x: dict(dict.items(x))),
          (set, lambda x: set(set.__iter__(x))),
          (frozenset, lambda x: frozenset(frozenset.__iter__(x))))


def _builtin_base(value):
  """`value` as the builtin type it subclasses (see `_BASES`), or None."""
  for base, read in _BASES:
    if isinstance(value, base):
      return read(value)
  return None


def _is_named_tuple(kind) -> bool:
  fields = getattr(kind, "_fields", None)
  return (issubclass(kind, tuple) and type(fields) is tuple
          and all(type(f) is str for f in fields))


class _Codec:
  """Values as JSON trees of tagged lists, in both directions.

  By value, rebuilt as exactly these types: None, bool, int, float, complex,
  str, bytes, bytearray, range, list, tuple, dict, set, frozenset, dict
  views, and the standard library's Counter, OrderedDict, defaultdict,
  deque, Fraction, Decimal and named tuples (rebuilt as the receiver's own
  `collections.namedtuple`), nested in any way (a container inside itself
  is not). A subclass of a builtin type (an `IntEnum` member, a `str`
  subclass) crosses as its builtin value, read without its methods.
  Builtin types by name, and builtin functions (`len` as a key) from the
  tests to the program only: `send` and `accept` are what this side may
  encode and decode by name. Anything else goes through `opaque(value)`:
  the program's process keeps it and sends a handle; the tests' process
  cannot send it. `handle(id)` makes what a received handle stands for.
  """

  def __init__(self, opaque, handle, send=(type,), accept=(type,)):
    self.opaque, self.handle = opaque, handle
    self.send, self.accept = send, accept
    self.builtins = dict(builtins.__dict__)  # Before the program ran.
    self.named_tuples = {}

  # Encoding: `value` is anything; the result is JSON-able.
  def encode(self, value, active=None):
    kind = type(value)
    if kind in _BARE:
      if kind is int and value.bit_length() > _BARE_INT_BITS:
        return ["i", format(value, "x")]
      return value
    if kind is complex:
      return ["c", value.real.hex(), value.imag.hex()]
    if kind is bytes:
      return ["y", value.hex()]
    if kind in self.send and self.builtins.get(
        getattr(value, "__name__", None)) is value:
      return ["b", value.__name__]
    if kind is bytearray:
      return ["a", value.hex()]
    if kind is range:
      return ["r", self.encode(value.start), self.encode(value.stop),
              self.encode(value.step)]
    tag = _CONTAINERS.get(kind) or _VIEWS.get(kind) or _stdlib_tag(kind)
    named = tag is None and _is_named_tuple(kind)
    if tag is None and not named:
      base = _builtin_base(value)
      return self.opaque(value) if base is None else self.encode(base)
    if tag == "Q":
      return ["Q", format(value.numerator, "x"),
              format(value.denominator, "x")]
    if tag == "M":
      return ["M", str(value)]
    active = set() if active is None else active
    if id(value) in active:  # A container inside itself.
      return self.opaque(value)
    active.add(id(value))
    try:
      if named:
        return ["n", kind.__name__, list(kind._fields),
                [self.encode(x, active) for x in tuple.__iter__(value)]]
      if tag in ("d", "C", "O", "D"):
        pairs = [[self.encode(k, active), self.encode(v, active)]
                 for k, v in kind.items(value)]
        if tag == "D":
          # A builtin type, else none: a lambda of the program's stays there.
          factory = value.default_factory
          builtin = type(factory) is type and self.builtins.get(
              factory.__name__) is factory
          return ["D", self.encode(factory) if builtin else None, pairs]
        return [tag, pairs]
      items = [self.encode(x, active) for x in value]
      if tag == "q":
        return ["q", value.maxlen, items]
      return [tag, items]
    finally:
      active.discard(id(value))

  # Decoding: `node` is untrusted JSON; anything unexpected is ValueError.
  def decode(self, node):
    if type(node) in _BARE:
      return node
    if type(node) is not list or not node or type(node[0]) is not str:
      raise ValueError("malformed value")
    tag, args = node[0], node[1:]
    try:
      if tag in ("i", "y", "M") and len(args) == 1 and type(args[0]) is str:
        text = args[0]
        if tag == "i":
          return int(text, 16)
        if tag == "y":
          return bytes.fromhex(text)
        import decimal  # pylint: disable=g-import-not-at-top
        return decimal.Decimal(text)
      if tag == "c" and len(args) == 2 and all(type(a) is str for a in args):
        return complex(float.fromhex(args[0]), float.fromhex(args[1]))
      if tag == "Q" and len(args) == 2 and all(type(a) is str for a in args):
        import fractions  # pylint: disable=g-import-not-at-top
        return fractions.Fraction(int(args[0], 16), int(args[1], 16))
      if tag == "h" and len(args) == 1 and type(args[0]) is int:
        return self.handle(args[0])
      if tag == "b" and len(args) == 1 and type(args[0]) is str and \
          not args[0].startswith("_"):
        value = self.builtins.get(args[0])
        if type(value) in self.accept:
          return value
      if tag == "a" and len(args) == 1 and type(args[0]) is str:
        return bytearray.fromhex(args[0])
      if tag == "r" and len(args) == 3:
        bounds = [self.decode(x) for x in args]
        if all(type(x) is int for x in bounds):
          return range(*bounds)
      if tag in ("K", "V", "I") and len(args) == 1 and type(args[0]) is list:
        items = [self.decode(x) for x in args[0]]
        if tag == "K":
          return dict.fromkeys(items).keys()
        if tag == "V":
          return dict(enumerate(items)).values()
        if not all(type(x) is tuple and len(x) == 2 for x in items):
          raise ValueError("malformed items view")
        return dict(items).items()
      if tag in ("l", "t", "S", "Z") and len(args) == 1 and \
          type(args[0]) is list:
        items = [self.decode(x) for x in args[0]]
        return {"l": list, "t": tuple, "S": set, "Z": frozenset}[tag](items)
      if tag in ("d", "C", "O") and len(args) == 1:
        return self._mapping(tag, None, args[0])
      if tag == "D" and len(args) == 2:
        factory = None if args[0] is None else self.decode(args[0])
        if factory is not None and type(factory) is not type:
          raise ValueError("malformed defaultdict")
        return self._mapping(tag, factory, args[1])
      if tag == "q" and len(args) == 2 and type(args[1]) is list and (
          args[0] is None or type(args[0]) is int and args[0] >= 0):
        import collections  # pylint: disable=g-import-not-at-top
        return collections.deque([self.decode(x) for x in args[1]], args[0])
      if tag == "n" and len(args) == 3 and type(args[0]) is str and \
          type(args[1]) is list and type(args[2]) is list:
        return self._named_tuple(args[0], args[1])(
            *[self.decode(x) for x in args[2]])
    except MemoryError:
      raise
    except ValueError:
      raise
    except Exception as e:  # pylint: disable=broad-except
      # E.g. a SyntaxError from namedtuple(), InvalidOperation from Decimal:
      # a bad message, not an exception of the tests'.
      raise ValueError(f"malformed value: {_describe(e)}") from None
    raise ValueError(f"malformed value (tag {tag!r})")

  def _mapping(self, tag, factory, pairs):
    import collections  # pylint: disable=g-import-not-at-top
    if type(pairs) is not list or not all(
        type(p) is list and len(p) == 2 for p in pairs):
      raise ValueError("malformed mapping")
    out = {"d": dict, "C": collections.Counter,
           "O": collections.OrderedDict}[tag]() if tag != "D" else \
        collections.defaultdict(factory)
    for key, value in pairs:
      out[self.decode(key)] = self.decode(value)
    return out

  def _named_tuple(self, name, fields):
    key = (name, tuple(fields))
    kind = self.named_tuples.get(key)
    if kind is None:
      if not all(type(f) is str for f in fields):
        raise ValueError("malformed named tuple")
      import collections  # pylint: disable=g-import-not-at-top
      kind = collections.namedtuple(name, fields, rename=True)
      self.named_tuples[key] = kind
    return kind


class _Wire:
  """Length-prefixed JSON messages: one pipe in, one pipe out."""

  def __init__(self, read_fd: int, write_fd: int):
    self.read_fd, self.write_fd = read_fd, write_fd

  def send(self, message):
    data = json.dumps(message).encode()
    view = memoryview(len(data).to_bytes(8, "big") + data)
    while view:
      view = view[os.write(self.write_fd, view):]

  def receive(self):
    """The next message; None at end of file; ValueError when it is not
    one (over `_MAX_MESSAGE_BYTES`, cut short, not JSON)."""
    header = _read_exact(self.read_fd, 8)
    if header is None:
      return None
    size = int.from_bytes(header, "big")
    if size > _MAX_MESSAGE_BYTES:
      raise ValueError(f"a message of {size} bytes")
    body = _read_exact(self.read_fd, size)
    if body is None:
      raise ValueError("a message cut short")
    try:
      return json.loads(body)
    except RecursionError:
      raise ValueError("a message nested too deeply") from None


# -- the tests' process (T) ----------------------------------------------------

# Items of a program's iterator fetched per request: 1, then twice as many
# each time up to this (the tests may stop after the first; a generator
# may never end).
_BATCH = 256
_CONTROL_FLOW = (StopIteration, StopAsyncIteration, GeneratorExit, SystemExit,
                 KeyboardInterrupt)


class _Remote:
  """A value of the program's that stays in its process; the tests hold this
  handle. Calls, attributes, items, len(), bool(), iteration, str(), repr(),
  int(), float() and index() are asked of the program's process and come
  back as plain data or further handles. Nothing else is forwarded: `==` is
  identity (a handle never equals a value the tests wrote, whatever the
  program's `__eq__` says), `<` and arithmetic raise TypeError, `in` iterates,
  and the program never sees an expected value. An iterator's items come
  up to `_BATCH` at a time. Copying a handle gives the handle itself."""

  __slots__ = ("_id", "_ask", "_ahead", "_batch")

  def __init__(self, id_, ask):
    object.__setattr__(self, "_id", id_)
    object.__setattr__(self, "_ask", ask)
    object.__setattr__(self, "_ahead", [])  # Items fetched, last first.
    object.__setattr__(self, "_batch", 1)

  def __copy__(self):
    return self

  def __deepcopy__(self, memo):
    return self

  def __reduce__(self):
    raise TypeError("a value of the program's process cannot be pickled")

  def __call__(self, *args, **kwargs):
    return self._ask("call", self._id, list(args), kwargs)

  def __getattr__(self, name):
    if name in _Remote.__slots__:  # Not yet set (a copy being built).
      raise AttributeError(name)
    return self._ask("getattr", self._id, name)

  def __setattr__(self, name, value):
    self._ask("setattr", self._id, name, value)

  def __delattr__(self, name):
    self._ask("delattr", self._id, name)

  def __getitem__(self, key):
    return self._ask("getitem", self._id, key)

  def __setitem__(self, key, value):
    self._ask("setitem", self._id, key, value)

  def __delitem__(self, key):
    self._ask("delitem", self._id, key)

  def __len__(self):
    return self._ask("len", self._id)

  def __bool__(self):
    return self._ask("bool", self._id)

  def __iter__(self):
    return self._ask("iter", self._id)

  def __next__(self):
    if not self._ahead:
      items = self._ask("next_many", self._id, self._batch)
      if type(items) is not list or len(items) > self._batch:
        raise TypeError("the program's iterator sent a malformed batch")
      if not items:
        raise StopIteration
      object.__setattr__(self, "_batch", min(2 * self._batch, _BATCH))
      self._ahead[:] = items[::-1]
    return self._ahead.pop()

  def __str__(self):
    return self._ask("str", self._id)

  def __repr__(self):
    return self._ask("repr", self._id)

  def __int__(self):
    return self._ask("int", self._id)

  def __float__(self):
    return self._ask("float", self._id)

  def __index__(self):
    return self._ask("index", self._id)


def _exception(name, message) -> BaseException:
  """The exception the program's process reported, as the tests see it: the
  builtin class it named (the nearest builtin ancestor of the program's),
  except those that steer control flow rather than report an error (a
  StopIteration would end the tests' own loop or `map` early): those are a
  RuntimeError."""
  cls = builtins.__dict__.get(name) if type(name) is str else None
  message = message[:500] if type(message) is str else ""
  if isinstance(cls, type) and issubclass(cls, _CONTROL_FLOW):
    cls = None
  if not (isinstance(cls, type) and issubclass(cls, BaseException)):
    return RuntimeError(f"{name}: {message}"[:500])
  for klass in cls.__mro__:  # UnicodeDecodeError wants five arguments.
    try:
      return klass(message)
    except Exception:  # pylint: disable=broad-except
      continue
  return RuntimeError(f"{name}: {message}"[:500])


def _copy_back(changes, codec: _Codec, args: list, kwargs: dict):
  """Makes the tests' own `_MUTABLE` arguments of a call what the program's
  function left them (`_changed_arguments`), as if it had been handed them:
  `a = [3, 1, 2]; sort_in_place(a)` sorts `a`. A change must be of the
  argument's kind; it goes through the tests' object's own methods."""
  if type(changes) is not list:
    raise ValueError("malformed changed arguments")
  for change in changes:
    where, node = change if type(change) is list and len(change) == 2 else (
        None, None)
    if type(where) is int and 0 <= where < len(args):
      target = args[where]
    elif type(where) is str and where in kwargs:
      target = kwargs[where]
    else:
      raise ValueError("malformed changed arguments")
    value = codec.decode(node)
    kind = next((k for k in _MUTABLE if isinstance(target, k)), None)
    if kind is None or not isinstance(value, kind):
      raise ValueError("malformed changed arguments")
    if kind in (list, bytearray):
      target[:] = value
    else:
      target.clear()
      (target.extend if kind is collections.deque else target.update)(value)


def _tests_process(cfg, layers: list, status_fd: int, wire: _Wire):
  """T: reads the tests and the nonce, runs the tests against the program's
  process, writes the record, exits 0 (`_LOST_PROGRAM` if D went away)."""
  ctypes, libc = _libc()
  # Before the secret is read: D cannot ptrace this process or open its
  # /proc files (D has no CAP_SYS_PTRACE), nor ever hold its descriptors.
  libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
  libc.prctl(_PR_SET_PDEATHSIG, 9, 0, 0, 0)
  # T runs only the tests and its own decoder, but nothing it does needs a
  # capability or a file the program wrote: none, from "/".
  _drop_capabilities(ctypes, libc)
  libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
  del ctypes, libc
  os.chdir("/")
  secret = _read_part(0)
  _stdin_to_devnull()
  nonce, source = secret["nonce"], secret["tests"]

  def report(reason, detail=""):
    record = json.dumps({"nonce": nonce, "reason": reason, "detail": detail,
                         "isolation": layers})
    for stream in (sys.stdout, sys.stderr):
      try:
        stream.flush()
      except BaseException:  # pylint: disable=broad-except
        pass
    try:
      os.write(status_fd, (record + "\n").encode())
    finally:
      os._exit(0)

  def receive():
    try:
      message = wire.receive()
    except ValueError as e:
      report("failed", f"program: sent {e}")
    if message is None:
      os._exit(_LOST_PROGRAM)
    return message

  def ask(op, id_, *operands):
    try:
      wire.send([op, id_] + [codec.encode(x) for x in operands])
    except BrokenPipeError:
      os._exit(_LOST_PROGRAM)
    reply = receive()
    if type(reply) is list and reply[:1] == ["ok"] and \
        len(reply) == (3 if op == "call" else 2):
      try:
        value = codec.decode(reply[1])
        if op == "call":
          _copy_back(reply[2], codec, *operands)
        return value
      except (ValueError, RecursionError) as e:
        report("failed", f"program: sent a {_describe(e)}")
    if type(reply) is list and reply[:1] == ["raise"] and len(reply) == 3:
      raise _exception(reply[1], reply[2])
    report("failed", "program: sent a malformed reply")

  def handle_or_refuse(value):
    if type(value) is _Remote:
      return ["h", object.__getattribute__(value, "_id")]
    raise TypeError(f"the tests passed the program a {type(value).__name__}"
                    "; only plain data crosses to the program's process")

  remotes = {}  # One handle per object (D sends one id per object).

  def remote(id_):
    if id_ not in remotes:
      remotes[id_] = _Remote(id_, ask)
    return remotes[id_]

  codec = _Codec(handle_or_refuse, remote,
                 send=(type, types.BuiltinFunctionType), accept=(type,))
  _set_limits(cfg, dropped_uid=False)
  _install_guard(os.devnull, forbid_processes=True)  # It writes no file.
  sys.setrecursionlimit(int(cfg["recursion_limit"]))
  try:
    tests = compile(source, "<tests>", "exec")
  except (SyntaxError, ValueError) as e:
    report("syntax_error", "tests: " + _describe(e))
  names = sorted(n for n in _names(source) if not n.startswith("__"))
  try:
    wire.send(["names", names])
  except BrokenPipeError:
    pass  # D ended already; what it sent first says why.
  message = receive()
  if type(message) is list and len(message) == 3 and \
      message[0] == "failed" and message[1] in _PROGRAM_REASONS and \
      type(message[2]) is str:
    report(message[1], message[2][:500])
  if not (type(message) is list and len(message) == 2 and
          message[0] == "ready" and type(message[1]) is dict and
          set(message[1]) <= set(names)):
    report("failed", "program: sent a malformed start message")
  try:
    namespace = _test_namespace(message[1], codec)
  except (ValueError, RecursionError) as e:
    report("failed", f"program: sent a {_describe(e)}")
  try:
    exec(tests, namespace)  # pylint: disable=exec-used
  except MemoryError:
    report("memory", "tests")
  except BaseException as e:  # pylint: disable=broad-except
    report("failed", "tests: " + _describe(e))
  report("passed")


# Standard modules the tests may take from the program's globals (MBPP task
# 596's tests use the `sys` its program imported): bound to T's own import,
# whatever the program holds under that name.
_TEST_MODULES = frozenset((
    "array", "bisect", "cmath", "collections", "copy", "datetime", "decimal",
    "fractions", "functools", "heapq", "itertools", "math", "operator",
    "random", "re", "statistics", "string", "sys"))


# What the program may say a global of its is ("from datetime import
# datetime"): T then binds its own. Any public object of these modules is
# safe to hand the tests, and one that passes them is a right answer. Not
# `sys`, whose functions change the interpreter the tests run in.
_CLAIMABLE = _TEST_MODULES - {"sys"}


def _test_namespace(program: dict, codec: _Codec) -> dict:
  """The tests' globals from the program's names they use.

  A name of `_TEST_MODULES` is T's own import of that module (a program's
  object under the name `math` would see the expected values passed to
  `math.isclose`), or that module's own member of the same name where the
  program says it holds that (`from datetime import datetime`). Any other
  name the program says holds a public object of a `_CLAIMABLE` module is
  T's own object (`_standard`): it gives the program no more than a
  function of its own under that name would. Other names are values or
  handles. Names of the program's that shadow a builtin are left out (a
  `set` in the tests means the builtin), unless the one name of the
  program's that the tests use, modules aside, is a builtin's (MBPP task
  126's function under test is named `sum`)."""
  modules = set(program) & _TEST_MODULES
  shadows = {name for name in program if name in builtins.__dict__}
  others = set(program) - modules
  hidden = set() if len(others) == 1 and others <= shadows else shadows
  namespace = {"__name__": "__main__", "__builtins__": builtins}
  for name, node in program.items():
    if name in hidden:
      continue
    value = _standard(node)
    if name in modules and (value is None or node[1:] != [name, name]):
      value = importlib.import_module(name)
    namespace[name] = codec.decode(node) if value is None else value
  return namespace


def _standard(node):
  """T's own object for the program's ["std", module, attribute or None],
  else None; a name outside `_CLAIMABLE`'s public objects is malformed."""
  if not (type(node) is list and node[:1] == ["std"]):
    return None
  if not (len(node) == 3 and type(node[1]) is str and
          node[1] in _CLAIMABLE and (
              node[2] is None or type(node[2]) is str and node[2] and
              not node[2].startswith("_"))):
    raise ValueError("malformed standard-library name")
  module = importlib.import_module(node[1])
  if node[2] is None:
    return module
  value = getattr(module, node[2], None)
  if value is None or isinstance(value, types.ModuleType):
    raise ValueError(f"malformed standard-library name {node[1]}.{node[2]}")
  return value


# -- the program's process (D) -------------------------------------------------

class _Flushing:
  """D's side of the wire: the program's buffered output goes out before
  each message (T may end the run as soon as it has the answer)."""

  def __init__(self, wire: _Wire, streams):
    self.wire, self.streams = wire, streams

  def flush(self):
    for stream in self.streams:
      try:
        stream.flush()
      except BaseException:  # pylint: disable=broad-except
        pass

  def send(self, message):
    self.flush()
    self.wire.send(message)

  def receive(self):
    return self.wire.receive()


_OPS = {
    "call": lambda target, args, kwargs: target(*args, **kwargs),
    "getattr": getattr, "setattr": setattr, "delattr": delattr,
    "getitem": operator.getitem, "setitem": operator.setitem,
    "delitem": operator.delitem, "len": len, "bool": bool, "iter": iter,
    "str": str, "repr": repr, "int": int, "float": float,
    "index": operator.index}


def _program_process(cfg, work_dir: str, drop_uid: bool, wire: _Wire):
  """D: isolates itself, runs the program, then serves T's requests until T
  closes the pipe."""
  ctypes, libc = _libc()
  _set_limits(cfg, drop_uid)
  if drop_uid:
    _become(int(cfg["uid"]), work_dir)
  else:  # Without CAP_DAC_OVERRIDE even root needs to own it.
    os.chown(work_dir, os.geteuid(), os.getegid())
  _drop_capabilities(ctypes, libc)
  libc.prctl(_PR_SET_PDEATHSIG, 9, 0, 0, 0)  # After setuid, which clears it.
  libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
  os.chdir(work_dir)
  os.environ["HOME"] = work_dir
  del ctypes, libc
  keep = {0, 1, 2, wire.read_fd, wire.write_fd}
  for fd in map(int, os.listdir("/proc/self/fd")):
    if fd not in keep:
      try:
        os.close(fd)
      except OSError:
        pass  # The listing's own descriptor, closed already.

  getpid, exit_ = os.getpid, os._exit
  restore_builtins = _builtins_restorer()
  main_pid = getpid()
  objects = []

  ids = {}  # id(object) -> its number (`objects` keeps it alive).

  def keep_object(value):
    if id(value) not in ids:
      ids[id(value)] = len(objects)
      objects.append(value)
    return ["h", ids[id(value)]]

  def lookup(id_):
    if not 0 <= id_ < len(objects):
      raise ValueError(f"no object {id_}")
    return objects[id_]

  codec = _Codec(keep_object, lookup, send=(type,),
                 accept=(type, types.BuiltinFunctionType))
  wire = _Flushing(wire, (sys.stdout, sys.stderr))

  def builtin_ancestor(exc) -> str:
    for klass in type(exc).__mro__:
      if codec.builtins.get(klass.__name__) is klass:
        return klass.__name__
    return "BaseException"

  def start(reason, detail):
    if getpid() != main_pid:  # A fork of the program never speaks for it.
      exit_(1)
    wire.send(["failed", reason, detail])
    exit_(0)

  # The kernel exempts uid 0 from RLIMIT_NPROC, also as the root of a user
  # namespace that a root host fell back to: where the host is root (it
  # gave a slot uid) and that uid could not be taken, nothing would bound a
  # fork bomb, so the guard refuses new processes.
  _install_guard(work_dir, forbid_processes=(
      not drop_uid and cfg.get("uid") is not None))
  sys.setrecursionlimit(int(cfg["recursion_limit"]))
  # Not "__main__": a program's `if __name__ == "__main__":` block (a demo,
  # `unittest.main()`, an `input()`) does not run, as in the reference
  # harnesses, which exec a program without that name.
  namespace = {"__name__": "program", "__builtins__": builtins}
  try:
    program = compile(cfg["program"], "<program>", "exec")
  except (SyntaxError, ValueError) as e:
    start("syntax_error", "program: " + _describe(e))
  try:
    exec(program, namespace)  # pylint: disable=exec-used
  except MemoryError:
    start("memory", "program")
  except BaseException as e:  # pylint: disable=broad-except
    start("failed", "program: " + _describe(e))
  if getpid() != main_pid:
    exit_(1)
  try:
    _serve(wire, codec, namespace, builtin_ancestor, restore_builtins,
           main_pid)
  except BaseException as e:  # pylint: disable=broad-except
    # The program broke what the server uses (a module's function).
    os.write(2, f"program: its process stopped answering the tests: "
             f"{_describe(e)}\n".encode())
    exit_(1)


def _serve(wire: _Flushing, codec: _Codec, namespace: dict, builtin_ancestor,
           restore, main_pid: int):
  """D after the program ran: sends the globals T asked for, then answers
  each request with ["ok", value] or ["raise", builtin class, message].
  The builtins are put back as they were before the program ran whenever
  the server runs (it uses them; a program's function that relies on its
  own change to a builtin sees it undone)."""
  getpid, exit_ = os.getpid, os._exit
  restore()
  request = wire.receive()
  if not (type(request) is list and request[:1] == ["names"]):
    exit_(1)
  wire.send(["ready", {name: _claim(namespace[name]) or
                        codec.encode(namespace[name])
                        for name in request[1] if name in namespace}])
  pending = {}  # An iterator's exception raised after items already sent.

  def next_many(iterator, count):
    if id(iterator) in pending:
      raise pending.pop(id(iterator))
    items = []
    while len(items) < count:
      try:
        items.append(next(iterator))
      except StopIteration:
        break
      except BaseException as e:  # pylint: disable=broad-except
        if not items:
          raise
        pending[id(iterator)] = e
        break
    return items

  while True:
    request = wire.receive()
    if request is None:
      wire.flush()
      exit_(0)
    try:
      op = next_many if request[0] == "next_many" else _OPS[request[0]]
      target = codec.decode(["h", request[1]])
      operands = [codec.decode(x) for x in request[2:]]
      if request[0] == "call":
        before = _mutable_arguments(codec, request, *operands)
      try:
        result = op(target, *operands)
      finally:
        restore()
      if getpid() != main_pid:  # A fork made by the program's function.
        exit_(1)
      reply = ["ok", codec.encode(result)]
      if request[0] == "call":
        reply.append(_changed_arguments(codec, before))
    except BaseException as e:  # pylint: disable=broad-except
      if getpid() != main_pid:
        exit_(1)
      restore()
      reply = ["raise", builtin_ancestor(e), _describe(e).partition(": ")[2]]
    wire.send(reply)


def _mutable_arguments(codec: _Codec, request: list, args: list,
                       kwargs: dict) -> dict:
  """{position or keyword: (argument, its JSON text now)} for the `_MUTABLE`
  arguments of a "call" request that crossed by value (a handle's object is
  the program's own); one that does not encode (too deep) is left out."""
  sent = dict(enumerate(request[2][1]))
  sent.update((key[0] if type(key) is list else key, node)
              for key, node in request[3][1])
  found = {}
  for where, value in [*enumerate(args), *kwargs.items()]:
    node = sent.get(where)
    if isinstance(value, _MUTABLE) and not (
        type(node) is list and node[:1] == ["h"]):
      try:
        found[where] = (value, json.dumps(codec.encode(value)))
      except Exception:  # pylint: disable=broad-except
        continue
  return found


def _changed_arguments(codec: _Codec, before: dict) -> list:
  """[[position or keyword, value now], ...] for the arguments of
  `_mutable_arguments` whose JSON text the call changed (so `1` becoming
  `1.0` counts, and a set it did not touch keeps the tests' order)."""
  changed = []
  for where, (value, text) in before.items():
    try:
      now = codec.encode(value)
      if json.dumps(now) != text:
        changed.append([where, now])
    except Exception:  # pylint: disable=broad-except
      continue  # Too deep to send back: the tests keep theirs.
  return changed


def _claim(value):
  """["std", module, attribute] when `value` is a public object that a
  loaded `_CLAIMABLE` module defines (["std", module, None]: the module
  itself), else None. A function the program put into such a module (a
  backport) is its own: T's module does not have it."""
  if isinstance(value, types.ModuleType):
    name = getattr(value, "__name__", None)
    return ["std", name, None] if name in _CLAIMABLE else None
  if type(value) in _BARE or not callable(value):
    return None
  home = getattr(value, "__module__", None)
  for name in sorted(_CLAIMABLE):
    module = sys.modules.get(name)
    if module is None or home not in (name, "_" + name):
      continue
    for attribute, member in vars(module).items():
      if member is value and not attribute.startswith("_"):
        return ["std", name, attribute]
  return None


def _builtins_restorer():
  """A function that puts the builtins module's names back as they are now
  (C functions and a copy taken now: the program could reach them through
  frames, but what D answers is the program's to say anyway)."""
  saved = dict(builtins.__dict__)
  clear, update = builtins.__dict__.clear, builtins.__dict__.update

  def restore():
    clear()
    update(saved)

  return restore


# -- process plumbing ----------------------------------------------------------

def _reap_one():
  """(pid, exit code) of the next child to end, orphans adopted as the
  subreaper included; (None, 70) when none is left. A death by signal N is
  128 + N, as in a shell."""
  while True:
    try:
      pid, status = os.waitpid(-1, 0)
    except InterruptedError:
      continue
    except ChildProcessError:
      return None, 70
    if os.WIFSIGNALED(status):
      return pid, 128 + os.WTERMSIG(status)
    return pid, os.WEXITSTATUS(status)


def _reap_until(pid: int, codes: dict) -> int:
  """Reaps children into `codes` ({pid: exit code}) until `pid` ended;
  returns its code."""
  while pid not in codes:
    done, code = _reap_one()
    if done is None:
      return code
    codes[done] = code
  return codes[pid]


def _children() -> list[int]:
  """This process's live children (from /proc: orphans adopted as the
  subreaper are children no fork of ours made)."""
  me, found = os.getpid(), []
  for name in os.listdir("/proc"):
    if not name.isdigit():
      continue
    try:
      with open(f"/proc/{name}/stat", "rb") as f:
        stat = f.read()
    except OSError:
      continue  # It ended meanwhile.
    fields = stat[stat.rindex(b")") + 2:].split()
    if int(fields[1]) == me and fields[0] != b"Z":
      found.append(int(name))
  return found


def _kill_adopted():
  """SIGKILLs what is left below B after the run, as the subreaper: a
  descendant that left the process group (`setsid()`) escapes the host's
  group kill and, without a pid namespace or a uid of the slot's own, would
  outlive the run. Its orphans come back to us as they are killed; RLIMIT_NPROC
  bounds how fast they can fork."""
  import time  # pylint: disable=g-import-not-at-top
  for _ in range(1000):
    kids = _children()
    for pid in kids:
      try:
        os.kill(pid, 9)
      except ProcessLookupError:
        pass
    while True:
      try:
        if os.waitpid(-1, os.WNOHANG)[0] == 0:
          break
      except ChildProcessError:
        break
    if not kids:
      return
    time.sleep(0.001)


def _init(cfg, status_fd: int):
  """C, the init of the new pid namespace: the private file system, then T
  and D. Exits 0 once T wrote its record; when T lost the program's process
  before the tests completed, with D's status (a crash, an early exit);
  else with T's."""
  ctypes, libc = _libc()
  del ctypes
  work_dir = cfg["host_work_dir"]
  if cfg["namespaces"]:
    work_dir = _private_filesystem(libc, cfg)
  drop_uid = _uid_drop_possible(cfg)
  layers = list(cfg["namespaces"]) + (["uid"] if drop_uid else [])
  to_program, from_tests = os.pipe()[::-1]
  from_program, to_tests = os.pipe()
  tests_pid = os.fork()
  if tests_pid == 0:
    os.close(from_tests)
    os.close(to_tests)
    _child(_tests_process, cfg, layers, status_fd,
           _Wire(from_program, to_program))
  # Only T keeps the status pipe and the rest of stdin (the tests).
  for fd in (status_fd, to_program, from_program):
    os.close(fd)
  _stdin_to_devnull()
  program_pid = os.fork()
  if program_pid == 0:
    _child(_program_process, cfg, work_dir, drop_uid,
           _Wire(from_tests, to_tests))
  os.close(from_tests)
  os.close(to_tests)
  codes = {}
  if _reap_until(tests_pid, codes) == _LOST_PROGRAM:
    return _reap_until(program_pid, codes)
  return codes[tests_pid]


def _child(run, *args):
  """Runs a forked process's part; it never returns."""
  try:
    run(*args)
  except BaseException as e:  # pylint: disable=broad-except
    os.write(2, f"sandbox set-up failed: {_describe(e)}\n".encode())
  finally:
    os._exit(70)


def main():
  cfg = _read_part(0)
  status_fd = int(cfg.pop("status_fd"))
  namespaces = []
  _, libc = _libc()
  if cfg["isolation"] == "full":
    namespaces = _enter_namespaces(libc)
  cfg["namespaces"] = namespaces
  # Orphans of the program's processes are reparented to B, not to the
  # host's init, so B can end them (`_kill_adopted`).
  libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
  # B (here) stays outside the new pid namespace; its child C is that
  # namespace's init, which the kernel shields from SIG_DFL signals (the CPU
  # limit's SIGXCPU, kill(0, SIGKILL)), so neither T nor D is C itself.
  # When C exits the kernel kills everything left in the namespace.
  init = os.fork()
  if init == 0:
    code = 70
    try:
      code = _init(cfg, status_fd)
    except BaseException as e:  # pylint: disable=broad-except
      os.write(2, f"sandbox set-up failed: {_describe(e)}\n".encode())
    finally:
      os._exit(code)
  os.close(status_fd)
  _stdin_to_devnull()
  code = _reap_until(init, {})
  _kill_adopted()
  os._exit(code)


if __name__ == "__main__":
  main()
