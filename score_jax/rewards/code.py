"""Sandboxed execution of model-written programs against their unit tests.

Each program runs in its own process tree (see `_sandbox_child.py` for what
happens inside): new mount/net/pid namespaces when the kernel allows them, a
root-owned tmpfs over the host's scratch dirs and a fresh work dir, the
slot's own uid when the host runs as root (and the standard library can be
made readable to it), no capabilities, rlimits on CPU
time, address space, file size, open files and processes, a cleaned
environment, captured and capped output, and the whole process group killed
on the wall-clock deadline. A pool of threads runs many such processes at
once.

The tests run in a process of their own that never loads the program: they
call its functions through the sandbox, and arguments and results cross as
plain data (numbers, strings, containers, a few standard-library types), so
every comparison the tests make is the interpreter's own, never the
program's. Success is never read from the exit code: that tests process
writes a record with a per-run random nonce only after every test statement
ran; the program never holds the nonce, the tests or a descriptor to write
a record to; anything else is a failure with one of `REASONS`.

Public API:
  run_program(program, tests, timeout_s=10.0, **limits) -> Result
  run_many(programs, tests, timeout_s=10.0, workers=None, **limits) -> [Result]
"""

import concurrent.futures
import dataclasses
import functools
import json
import os
import queue
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Optional, Sequence

REASONS = ("passed", "failed", "timeout", "memory", "crash", "syntax_error")

_CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      "_sandbox_child.py")
# Each running program gets its own uid when the host is root, so
# RLIMIT_NPROC is a per-program budget and one program cannot signal another:
# _UID_BASE + (host pid % 65536) * _MAX_SLOTS + slot, slots unique in-process.
_UID_BASE = 3_000_000_000
_MAX_SLOTS = 1024
_CLEAN_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
              "LC_ALL": "C.UTF-8", "PYTHONHASHSEED": "0",
              "PYTHONIOENCODING": "utf-8"}
# The sandbox's interpreter: isolated mode (-I) but for -E, which would
# ignore PYTHONHASHSEED and so vary str hashes (set order) from run to run;
# the environment is _CLEAN_ENV anyway. -P (no script dir on sys.path, where
# rewards/math.py would shadow `math`) is Python 3.11+; 3.10 keeps -I.
_FLAGS = (("-s", "-P") if sys.version_info >= (3, 11) else ("-I",)) + (
    "-S", "-B")
# Start-up (interpreter, namespaces) is not charged to the program.
_STARTUP_GRACE_S = 1.0


@dataclasses.dataclass(frozen=True)
class Limits:
  """Resource limits for one program run.

  timeout_s: wall-clock seconds for the program and its tests (plus 1 s for
    the sandbox's start-up).
  cpu_s: CPU seconds (RLIMIT_CPU); default ceil(timeout_s).
  memory_mb: address-space limit (RLIMIT_AS) in MiB.
  max_processes: processes/threads the program may start (RLIMIT_NPROC; on
    top of the uid's own where it keeps the host user's uid; none where it
    would run as root).
  max_output_bytes: stdout+stderr kept; more than 4x this kills the run.
  max_file_mb: largest file it may write (RLIMIT_FSIZE), MiB.
  recursion_limit: Python recursion limit inside the sandbox.
  isolation: 'full' (namespaces where the kernel allows, else degrade) or
    'basic' (rlimits, uid drop and the audit-hook guard only).
  """
  timeout_s: float = 10.0
  cpu_s: Optional[float] = None
  memory_mb: int = 1024
  max_processes: int = 32
  max_output_bytes: int = 64 * 1024
  max_file_mb: int = 16
  recursion_limit: int = 10_000
  isolation: str = "full"

  def __post_init__(self):
    if not self.timeout_s > 0:
      raise ValueError(f"Limits.timeout_s must be > 0, got {self.timeout_s}")
    if self.isolation not in ("full", "basic"):
      raise ValueError(
          f"Limits.isolation must be 'full' or 'basic', got {self.isolation!r}")
    if self.memory_mb < 64:
      raise ValueError(f"Limits.memory_mb must be >= 64, got {self.memory_mb}")


@dataclasses.dataclass(frozen=True)
class Result:
  """Outcome of one program run.

  passed: every test statement ran without raising.
  reason: one of REASONS.
  detail: short human-readable explanation (exception, signal, limit).
  output: the first `max_output_bytes` of the program's stdout+stderr.
  wall_s: wall-clock seconds, start-up included.
  isolation: the layers that were in force, e.g. ('mount', 'net', 'pid',
    'ipc', 'uts', 'uid'); empty when the child never reported.
  """
  passed: bool
  reason: str
  detail: str = ""
  output: str = ""
  wall_s: float = 0.0
  isolation: tuple = ()


def run_program(program: str, tests: str, timeout_s: float = 10.0,
                **limits) -> Result:
  """Runs `program`, then `tests` (assert statements) in a sandbox.

  Args:
    program: Python source written by the model.
    tests: Python source that raises (e.g. AssertionError) on failure. It
      sees the program's global names that it uses: values as plain data,
      functions, classes and other objects as handles that call into the
      program's process (comparing a handle compares identity); a standard
      module's name (`math`, `sys`) is the tests' own import of it (or its
      own member of that name: `from datetime import datetime`), whatever
      else the program holds under that name. The program's globals that
      shadow a builtin are left out unless the one program name the tests
      use is a builtin's (a function under test named `sum`).
    timeout_s: wall-clock limit in seconds.
    **limits: other `Limits` fields (memory_mb=..., isolation=...).
  """
  return _run(program, tests, Limits(timeout_s=timeout_s, **limits))


def run_many(programs: Sequence[str], tests: Sequence[str],
             timeout_s: float = 10.0, workers: Optional[int] = None,
             **limits) -> list:
  """Runs programs[i] against tests[i] in parallel; returns [Result] in order.

  Args:
    programs, tests: equal-length sequences of Python source.
    timeout_s: wall-clock limit per program.
    workers: programs running at once; default 4 x CPU count (a run waits on
      process and namespace start-up and tear-down much of the time).
  """
  if len(programs) != len(tests):
    raise ValueError(f"run_many: {len(programs)} programs but "
                     f"{len(tests)} test sources")
  cfg = Limits(timeout_s=timeout_s, **limits)
  workers = min(workers or 4 * (os.cpu_count() or 1), _MAX_SLOTS)

  def one(args):
    return _run(*args, cfg)

  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    return list(pool.map(one, zip(programs, tests)))


class _Slots:
  """Hands out slot numbers unique among this process's running programs."""

  def __init__(self):
    self._free = queue.SimpleQueue()
    for slot in range(_MAX_SLOTS):
      self._free.put(slot)

  def acquire(self) -> int:
    return self._free.get()

  def release(self, slot: int):
    self._free.put(slot)


_SLOTS = _Slots()


def _run(program: str, tests: str, cfg: Limits) -> Result:
  if not isinstance(program, str) or not isinstance(tests, str):
    raise TypeError(f"program and tests must be str, got "
                    f"{type(program).__name__} and {type(tests).__name__}")
  slot = _SLOTS.acquire()
  try:
    return _run_in_slot(program, tests, cfg, slot)
  finally:
    _SLOTS.release(slot)


_UID_MAP = "/proc/self/uid_map"


@functools.lru_cache(maxsize=None)
def _slot_uids_mapped() -> bool:
  """Whether this user namespace maps the slot uids: root in a rootless
  container (`0 1000 1`) cannot chown to them (EINVAL)."""
  lo, hi = _UID_BASE, _UID_BASE + 65536 * _MAX_SLOTS
  try:
    with open(_UID_MAP, encoding="ascii") as f:
      ranges = [tuple(map(int, line.split()[:3])) for line in f
                if line.strip()]
  except (OSError, ValueError):
    return True  # no user namespaces: the host's uids are all there are
  return any(inside <= lo and hi <= inside + count
             for inside, _, count in ranges)


def _slot_uid(slot: int) -> Optional[int]:
  """The uid the program of `slot` runs as: its own where the host is root
  and can give it one, else None (it keeps the host's uid)."""
  if os.geteuid() != 0 or not _slot_uids_mapped():
    return None
  return _UID_BASE + (os.getpid() % 65536) * _MAX_SLOTS + slot


def _run_in_slot(program: str, tests: str, cfg: Limits, slot: int) -> Result:
  start = time.monotonic()
  nonce = secrets.token_hex(16)
  host_dir = tempfile.mkdtemp(prefix=f"score_sandbox_{os.getpid()}_")
  uid = _slot_uid(slot)
  status_r, status_w = os.pipe()
  # Two parts: what the sandbox's set-up and the program's process read,
  # then what only the tests' process reads (the program never holds it).
  payload = _part({
      "program": program, "status_fd": status_w, "host_work_dir": host_dir,
      "uid": uid, "isolation": cfg.isolation,
      "cpu_s": cfg.cpu_s or max(1, int(-(-cfg.timeout_s // 1))),
      "memory_mb": cfg.memory_mb, "max_processes": cfg.max_processes,
      "max_file_mb": cfg.max_file_mb,
      "recursion_limit": cfg.recursion_limit}) + _part(
          {"tests": tests, "nonce": nonce})
  proc = None
  try:
    if uid is not None:
      os.chown(host_dir, uid, uid)
    proc = subprocess.Popen(
        [sys.executable, *_FLAGS, _CHILD], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_CLEAN_ENV,
        cwd=host_dir, pass_fds=(status_w,), start_new_session=True,
        close_fds=True)
    os.close(status_w)
    status_w = None
    outcome = _supervise(proc, payload, status_r, cfg)
  finally:
    if proc is not None:
      _kill_group(proc)
    if uid is not None:
      _kill_uid(uid)
    for fd in (status_r, status_w):
      if fd is not None:
        os.close(fd)
    shutil.rmtree(host_dir, ignore_errors=True)
  output, status, killed = outcome
  record = _find_record(status, nonce)
  reason, detail = _classify(record, proc.returncode, killed, cfg)
  return Result(passed=reason == "passed", reason=reason, detail=detail,
                output=output[:cfg.max_output_bytes].decode("utf-8", "replace"),
                wall_s=time.monotonic() - start,
                isolation=tuple((record or {}).get("isolation", ())))


def _part(obj) -> bytes:
  """One length-prefixed JSON part of the child's stdin."""
  data = json.dumps(obj).encode()
  return len(data).to_bytes(8, "big") + data


def _supervise(proc, payload: bytes, status_r: int, cfg: Limits):
  """Feeds the payload, collects capped output and status until exit.

  Returns (output bytes, status bytes, killed) where killed is None,
  'timeout' or 'output'.
  """
  try:
    proc.stdin.write(payload)
    proc.stdin.close()
  except BrokenPipeError:
    pass
  deadline = time.monotonic() + cfg.timeout_s + _STARTUP_GRACE_S
  output, status = bytearray(), bytearray()
  sel = selectors.DefaultSelector()
  sel.register(proc.stdout, selectors.EVENT_READ, output)
  sel.register(status_r, selectors.EVENT_READ, status)
  killed = None
  try:
    while sel.get_map():
      left = deadline - time.monotonic()
      if left <= 0:
        killed = "timeout"
        break
      for key, _ in sel.select(min(left, 0.5)):
        data = os.read(key.fd, 1 << 16)
        if not data:
          sel.unregister(key.fileobj)
        else:
          key.data.extend(data)
      if len(output) > 4 * cfg.max_output_bytes:
        killed = "output"
        break
      if len(status) > 1 << 16:  # The program spams the status fd.
        killed = "output"
        break
  finally:
    sel.close()
  if killed:
    _kill_group(proc)
  try:
    proc.wait(max(0.0, deadline - time.monotonic()))
  except subprocess.TimeoutExpired:  # It closed its pipes but lives on.
    killed = "timeout"
    _kill_group(proc)
    proc.wait()
  proc.stdout.close()
  return bytes(output), bytes(status), killed


def _kill_group(proc):
  try:
    os.killpg(proc.pid, signal.SIGKILL)
  except (ProcessLookupError, PermissionError):
    pass


def _kill_uid(uid: int) -> None:
  """SIGKILLs every live process of a slot's uid (the host is root): a
  program's descendant that left its process group (`setsid()`) survives
  `_kill_group`. Under full isolation the pid namespace has killed it
  already; without one ('basic', or a kernel that refuses namespaces)
  only the sandbox's subreaper would, and not when the run was killed at
  the deadline. Repeats until none is left (the program cannot fork
  faster than it is killed for long: RLIMIT_NPROC bounds it)."""
  for _ in range(100):
    pids = _live_pids(uid)
    if not pids:
      return
    for pid in pids:
      try:
        os.kill(pid, signal.SIGKILL)
      except ProcessLookupError:
        pass


def _live_pids(uid: int) -> list[int]:
  """Processes of `uid` that are not zombies (a killed orphan stays a zombie
  until init reaps it, and some container inits never do)."""
  pids = []
  for name in os.listdir("/proc"):
    if not name.isdigit():
      continue
    try:
      if os.stat(f"/proc/{name}").st_uid != uid:
        continue
      with open(f"/proc/{name}/stat", "rb") as f:
        stat = f.read()
    except OSError:
      continue  # It ended meanwhile.
    if stat[stat.rindex(b")") + 2:][:1] != b"Z":
      pids.append(int(name))
  return pids


def _find_record(status: bytes, nonce: str) -> Optional[dict]:
  """The child's record: the status line that carries this run's nonce."""
  for line in status.splitlines():
    try:
      record = json.loads(line)
    except ValueError:
      continue
    if isinstance(record, dict) and record.get("nonce") == nonce:
      return record
  return None


def _classify(record: Optional[dict], returncode: int, killed, cfg):
  """Maps what came back to (reason, detail); only a nonce record passes."""
  if record is not None and record.get("reason") in REASONS:
    return record["reason"], str(record.get("detail", ""))
  if killed == "timeout":
    return "timeout", f"no result after {cfg.timeout_s:g} s wall clock"
  if killed == "output":
    return "failed", (f"output limit exceeded (over "
                      f"{4 * cfg.max_output_bytes} bytes)")
  if returncode is not None and (returncode > 128 or returncode < 0):
    # > 128: the child's signal, relayed by B; < 0: B itself was signalled.
    sig = returncode - 128 if returncode > 0 else -returncode
    if sig == signal.SIGXCPU:
      return "timeout", f"CPU limit of {cfg.cpu_s or cfg.timeout_s:g} s"
    if sig == signal.SIGXFSZ:
      return "failed", "file size limit exceeded"
    try:
      return "crash", f"killed by signal {signal.Signals(sig).name}"
    except ValueError:  # os._exit(200): a status, not a signal.
      pass
  if returncode == 0:
    return "failed", "exited before its tests completed"
  return "crash", f"exited with status {returncode} before its tests completed"
