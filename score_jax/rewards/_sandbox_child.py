"""Sandbox bootstrap: runs ONE untrusted program and its tests, then reports.

Started by `code.py` as `python -I -S -B _sandbox_child.py` in a new session
with a cleaned environment. It reads a JSON payload from stdin (program,
tests, limits, the run's nonce, the status fd), then:

  1. process B enters new mount/net/pid/ipc/uts namespaces when the kernel
     allows it and forks C, the init of the new pid namespace, which forks D;
  2. D makes the host's file tree read-only, hides its writable scratch dirs
     behind root-owned tmpfs mounts, makes a fresh work dir, sets rlimits, drops to the slot's uid when
     started as root, sets PDEATHSIG=SIGKILL and no-new-privs, installs an
     audit hook (no sockets, no writes outside the work dir), then executes
     the program and the tests;
  3. D writes one JSON record carrying the nonce to the status fd: `passed`
     only after every test statement ran; C and B exit with D's status, and
     C's exit makes the kernel kill whatever D left in the namespace.
     Without a pid namespace, B, the subreaper of everything below it,
     kills what is left (even processes that left the group by setsid()).

The nonce is read before any untrusted code runs and never enters the
program's globals, environment, argv or files, so a program that exits early
(`sys.exit(0)`, `os._exit(0)`) or replaces builtins cannot produce a passing
record. The tests run against a snapshot of the builtins taken before the
program ran (and without the program's globals that shadow builtins), the
modules loaded before the program are put back as they were, and every
operand the tests compare must use comparison methods from C or the
standard library (no always-equal objects). The checker still
shares the program's interpreter: a program written against it can reach
`report` through frames (docs/REWARDS.md, known limits; code.py refuses the
direct spellings). This file imports only the standard library (no
site-packages).
"""

import builtins
import importlib
import json
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
_PR_SET_PDEATHSIG, _PR_SET_NO_NEW_PRIVS = 1, 38
_PR_SET_CHILD_SUBREAPER = 36
# mount_setattr(2): the same number on every architecture (unified table).
_SYS_MOUNT_SETATTR, _AT_FDCWD, _AT_RECURSIVE = 442, -100, 0x8000
_MOUNT_ATTR_RDONLY = 0x1

# World-writable places on a typical host; inside the mount namespace each is
# covered by a root-owned tmpfs so a dropped-uid program cannot write there.
_SCRATCH_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/var/lock")
_WORK_DIR = "/tmp/sandbox"
# Where the standard library lives (`-I -S`: nothing else is on the path),
# before `_expose_stdlib` may move it: code from here is trusted.
_STDLIB_PATH = tuple(sys.path)
# Standard modules that MBPP's and HumanEval's tests use, loaded before the
# program so that what it changes in them is put back before the tests.
_TEST_MODULES = ("math", "cmath", "re", "string", "collections", "itertools",
                 "functools", "operator", "heapq", "bisect", "copy", "random")


def _read_payload() -> dict:
  chunks = []
  while True:
    chunk = os.read(0, 1 << 16)
    if not chunk:
      break
    chunks.append(chunk)
  null = os.open(os.devnull, os.O_RDONLY)
  os.dup2(null, 0)
  os.close(null)
  return json.loads(b"".join(chunks))


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


def _drop_privileges(cfg, work_dir) -> bool:
  """As root: become the slot's own uid (its own RLIMIT_NPROC budget).

  Skipped when the standard library would become unreadable (no mount
  namespace to expose it); the audit-hook guard then stands alone.
  """
  if os.geteuid() != 0 or cfg.get("uid") is None:
    return False
  if not all(_others_can_read(p) for p in sys.path if p and os.path.exists(p)):
    return False
  uid = int(cfg["uid"])
  try:
    os.chown(work_dir, uid, uid)
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    return True
  except OSError:
    return False


def _install_guard(work_dir: str, forbid_processes: bool):
  """Audit hook: no sockets, no file changes outside the work dir.

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
  write_modes = frozenset("wax+")
  devnull, devnull_bytes = os.devnull, os.devnull.encode()
  write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
  spawns = frozenset({"os.fork", "os.forkpty", "os.posix_spawn", "os.exec",
                      "os.spawn", "os.system", "os.startfile",
                      "subprocess.Popen"}) if forbid_processes else frozenset()
  changes = frozenset({"os.remove", "os.rename", "os.rmdir", "os.mkdir",
                       "os.symlink", "os.link", "os.chmod", "os.chown",
                       "os.truncate", "os.utime", "shutil.rmtree"})

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
    if event == "open":
      path, mode, flags = args
      writes = (isinstance_(mode, str_) and not write_modes.isdisjoint(mode)
                or flags & write_flags)
      if writes and outside(path):
        raise PermissionError(f"sandbox: writing outside the work dir: {path}")
    elif event in changes and args and outside(args[0]):
      raise PermissionError("sandbox: changing files outside the work dir")

  sys.addaudithook(hook)


_CHECK_NAME = "__score_operand__"


def _names(source: str) -> set:
  """Every name `source` uses or binds."""
  import ast  # pylint: disable=g-import-not-at-top
  return {node.id for node in ast.walk(ast.parse(source))
          if isinstance(node, ast.Name)}


def _hidden_shadows(test_names: set, program: dict, builtin_names) -> set:
  """The program's globals that shadow a builtin and that the tests should
  not see: the tests call the program's functions, but a `set` or `len` in
  them means the builtin, unless every name of the program's that they use
  (modules it imported aside) is a builtin's (MBPP task 126's function
  under test is named `sum`)."""
  used = {name for name in test_names & set(program)
          if not isinstance(program[name], types.ModuleType)}
  shadows = {name for name in program
             if name in builtin_names and not name.startswith("__")}
  return shadows if used - shadows else set()


def _guard_comparisons(source: str):
  """The tests' AST with every operand of ==, !=, <, <=, >, >=, in, not in
  passed through `__score_operand__` (see `_operand_checker`)."""
  import ast  # pylint: disable=g-import-not-at-top
  guarded = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In,
             ast.NotIn)

  def wrap(node):
    return ast.Call(func=ast.Name(id=_CHECK_NAME, ctx=ast.Load()),
                    args=[node], keywords=[])

  class Guard(ast.NodeTransformer):

    def visit_Compare(self, node):  # pylint: disable=invalid-name
      self.generic_visit(node)
      if any(isinstance(op, guarded) for op in node.ops):
        node.left = wrap(node.left)
        node.comparators = [wrap(c) for c in node.comparators]
      return node

  tree = Guard().visit(ast.parse(source, "<tests>"))
  return ast.fix_missing_locations(tree)


def _operand_checker(trusted_roots: tuple):
  """A function that refuses values whose comparisons the program defined.

  `assert f(x) == y` passes for any object whose __eq__ answers True: the
  best-known reward hack. Comparison methods must come from C or from the
  standard library (files under `trusted_roots`; not `unittest.mock`, whose
  ANY equals everything), for the value and, through lists, tuples, sets and
  dicts, for everything inside it. Bound to builtins captured now, before the
  program can replace them.
  """
  type_, isinstance_, len_ = type, isinstance, len
  mro_of = type.__dict__["__mro__"].__get__
  dict_of = type.__dict__["__dict__"].__get__
  function = type(_guard_comparisons)
  c_kinds = (type(object.__eq__), type(object().__eq__), type(len),
             type(str.join), type(None))
  names = ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__",
           "__contains__")
  list_iter, tuple_iter, set_iter, frozenset_iter, dict_items = (
      list.__iter__, tuple.__iter__, set.__iter__, frozenset.__iter__,
      dict.items)
  trusted = {}

  def trusted_type(cls) -> bool:
    verdict = trusted.get(cls)
    if verdict is None:
      verdict = True
      for klass in mro_of(cls):
        attributes = dict_of(klass)
        module = attributes.get("__module__")
        if type_(module) is str and module.startswith("unittest.mock"):
          verdict = False
        for name in names:
          method = attributes.get(name)
          if method is None or type_(method) in c_kinds:
            continue
          if not (type_(method) is function and
                  method.__code__.co_filename.startswith(trusted_roots)):
            verdict = False
      trusted[cls] = verdict
    return verdict

  def check(value):
    stack, visited = [value], 0
    while stack and visited < 100_000:
      item = stack.pop()
      visited += 1
      if not trusted_type(type_(item)):
        raise TypeError("a test compared a value whose comparison methods "
                        "the program defined")
      if isinstance_(item, list):
        stack.extend(list_iter(item))
      elif isinstance_(item, tuple):
        stack.extend(tuple_iter(item))
      elif isinstance_(item, set):
        stack.extend(set_iter(item))
      elif isinstance_(item, frozenset):
        stack.extend(frozenset_iter(item))
      elif isinstance_(item, dict):
        for key, val in dict_items(item):
          stack.append(key)
          stack.append(val)
    return value

  del len_
  return check


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


def _run(cfg, nonce, status_fd):
  """Process D: isolates itself, runs program + tests, writes the record."""
  ctypes, libc = _libc()
  work_dir = cfg["host_work_dir"]
  if cfg["namespaces"]:
    work_dir = _private_filesystem(libc, cfg)
  dropped = _drop_privileges(cfg, work_dir)
  uid0 = os.geteuid() == 0
  _set_limits(cfg, dropped)
  libc.prctl(_PR_SET_PDEATHSIG, 9, 0, 0, 0)  # After setuid, which clears it.
  libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
  os.chdir(work_dir)
  os.environ["HOME"] = work_dir
  layers = list(cfg["namespaces"]) + (["uid"] if dropped else [])
  del ctypes, libc

  # Everything the checker needs is bound here, before untrusted code runs.
  write, dumps, getpid, exit_ = os.write, json.dumps, os.getpid, os._exit
  streams = (sys.stdout, sys.stderr)
  main_pid = getpid()
  pristine_builtins = dict(builtins.__dict__)
  builtins_clear, builtins_update = (builtins.__dict__.clear,
                                     builtins.__dict__.update)
  compile_, exec_, dict_ = compile, exec, dict

  def report(reason, detail=""):
    if getpid() != main_pid:  # A fork of the program never reports.
      exit_(1)
    # The program may have replaced builtins that json and the checker use.
    builtins_clear()
    builtins_update(pristine_builtins)
    record = dumps({"nonce": nonce, "reason": reason, "detail": detail,
                    "isolation": layers})
    for stream in streams:
      try:
        stream.flush()
      except BaseException:  # pylint: disable=broad-except
        pass
    try:
      write(status_fd, (record + "\n").encode())
    finally:
      exit_(0)

  try:
    program = compile_(cfg["program"], "<program>", "exec")
  except (SyntaxError, ValueError) as e:
    report("syntax_error", "program: " + _describe(e))
  try:
    tests = compile_(_guard_comparisons(cfg["tests"]), "<tests>", "exec")
  except (SyntaxError, ValueError) as e:
    report("syntax_error", "tests: " + _describe(e))
  check_operand = _operand_checker(
      tuple(p for p in _STDLIB_PATH + tuple(sys.path) if p))
  # Root ignores RLIMIT_NPROC: without the uid drop (or a user namespace)
  # nothing would bound a fork bomb, so the guard refuses new processes.
  _install_guard(work_dir, forbid_processes=(
      not dropped and uid0 and "user" not in cfg["namespaces"]))
  sys.setrecursionlimit(int(cfg["recursion_limit"]))
  namespace = {"__name__": "__main__", "__builtins__": builtins}
  modules, restore_modules = _module_snapshot(), _restore_modules
  test_names, hidden_shadows = _names(cfg["tests"]), _hidden_shadows
  threads, len_ = sys._current_frames, len  # pylint: disable=protected-access
  stage = "program"
  try:
    exec_(program, namespace)
    stage = "tests"
    # A thread of the program's could change the modules again after they
    # are put back, while the tests run.
    running = len_(threads()) - 1
    if running:
      report("failed", f"program: left {running} thread(s) running")
    restore_modules(modules)
    test_namespace = dict_(namespace)
    for name in hidden_shadows(test_names, namespace, pristine_builtins):
      del test_namespace[name]
    test_namespace["__builtins__"] = dict_(pristine_builtins)
    test_namespace[_CHECK_NAME] = check_operand
    exec_(tests, test_namespace)
  except MemoryError:
    report("memory", stage)
  except BaseException as e:  # pylint: disable=broad-except
    builtins_clear()
    builtins_update(pristine_builtins)
    report("failed", f"{stage}: " + _describe(e))
  report("passed")


def _module_snapshot() -> dict:
  """{name: (module, copy of its namespace)} of every loaded module, after
  loading `_TEST_MODULES`."""
  for name in _TEST_MODULES:
    importlib.import_module(name)
  return {name: (module, dict(vars(module)))
          for name, module in list(sys.modules.items())
          if isinstance(module, types.ModuleType)}


def _restore_modules(snapshot: dict, modules=sys.modules, vars_=vars,
                     missing=object()):
  """Puts back the names the program replaced or deleted in the modules
  loaded before it (a replaced `math.isclose`, a module swapped out of
  sys.modules). Names it added stay (a backport such as
  `itertools.batched`); what it changed inside an object (a class's method)
  is not seen (docs/REWARDS.md, known limits). What it uses is bound when
  this file loads, so a program that replaced `builtins.vars` or this
  file's globals does not stop it."""
  for name, (module, saved) in snapshot.items():
    if modules.get(name) is not module:
      modules[name] = module
    live = vars_(module)
    for key, value in saved.items():
      if live.get(key, missing) is not value:
        live[key] = value


def _reap_until(pid: int) -> int:
  """Reaps children (orphans too) until `pid` ends; returns its exit code.

  A death by signal N becomes 128 + N, as in a shell.
  """
  while True:
    try:
      done, status = os.waitpid(-1, 0)
    except InterruptedError:
      continue
    except ChildProcessError:
      return 70
    if done == pid:
      if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
      return os.WEXITSTATUS(status)


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


def main():
  cfg = _read_payload()
  nonce, status_fd = cfg.pop("nonce"), int(cfg.pop("status_fd"))
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
  # limit's SIGXCPU, kill(0, SIGKILL)), so the program runs in C's child D.
  # When C exits the kernel kills everything left in the namespace.
  init = os.fork()
  if init == 0:
    runner = os.fork()
    if runner == 0:
      try:
        _run(cfg, nonce, status_fd)
      except BaseException as e:  # pylint: disable=broad-except
        os.write(2, f"sandbox set-up failed: {_describe(e)}\n".encode())
      finally:
        os._exit(70)
    os.close(status_fd)
    del nonce
    os._exit(_reap_until(runner))
  os.close(status_fd)
  del nonce
  code = _reap_until(init)
  _kill_adopted()
  os._exit(code)


if __name__ == "__main__":
  main()
