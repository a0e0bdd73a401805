"""Math answer grading: extract the final answer, compare it to the reference.

The answer is taken from the paper's final line (`Final Answer: The final
answer is $<answer>$. I hope it is correct.`), else from the last `\\boxed{}`
(or `\\fbox{}`). It is graded correct when its normalised string equals the
reference's (the Hendrycks MATH normalisation: `\\dfrac`→`\\frac`, no
`\\left`/`\\right`, units, degrees, spaces, ...), when both are plain numbers
with the same exact value, or when `math-verify` finds the two mathematically
equivalent. Answers sympy could not finish (power towers, huge factorials) are
not sent to it; off the main thread, where math-verify has no timeout, it
runs in a worker process. Results are cached: RL samples repeat answers.

Public API:
  grade(response, reference_answer) -> float   # 1.0 or 0.0
  extract_answer(response) -> str | None
  normalize_answer(answer) -> str
  answers_equivalent(predicted, reference) -> bool
  grade_many(responses, references, workers=None) -> list[float]
"""

import concurrent.futures
import fractions
import functools
import multiprocessing
import os
import re
import threading
from typing import Optional, Sequence

_OPENING = "The final answer is"
_CLOSING = "I hope it is correct"
_FINAL_ANY = re.compile(r"[Tt]he final answer is:?\s*(.+)")


def final_lines(response: str) -> list[str]:
  r"""X of every `The final answer is X[.] I hope it is correct`, in order;
  X never holds another opening (the one nearest the closing counts).

  String search, linear in the response: the regex this replaces,
  `The final answer is\s*((?:(?!The final answer is).)*?)\s*(?:\.\s*)?I
  hope it is correct` (same matches), backtracked for minutes on an opening
  followed by thousands of spaces and no closing, a sample a policy can
  write.
  """
  starts = [m.start() for m in re.finditer(_OPENING, response)]
  out = []
  for i, start in enumerate(starts):
    body = start + len(_OPENING)
    end = response.find(_CLOSING, body)
    if end < 0:
      break  # no closing after this opening, nor after any later one
    if i + 1 < len(starts) and starts[i + 1] < end:
      continue  # a later opening is nearer the closing
    answer = response[body:end].strip()
    if answer.endswith("."):
      answer = answer[:-1].rstrip()
    out.append(answer)
  return out


def extract_answer(response: str) -> Optional[str]:
  """The final answer of a model response, or None when there is none.

  Uses the last `The final answer is $X$. I hope it is correct.` (the paper's
  format), else the last `\\boxed{X}` / `\\fbox{X}`, else the last line
  starting `The final answer is X`.
  """
  if not isinstance(response, str):
    raise TypeError(f"response must be str, got {type(response).__name__}")
  matches = final_lines(response)
  if matches:
    answer = _strip_dollars(matches[-1])
    if answer.startswith(("\\boxed", "\\fbox")):
      answer = last_boxed(answer) or ""
    if answer:
      return answer
  boxed = last_boxed(response)
  if boxed is not None:
    return boxed
  matches = _FINAL_ANY.findall(response)
  if matches:
    answer = _strip_dollars(matches[-1].strip().rstrip("."))
    return answer or None
  return None


def _strip_dollars(text: str) -> str:
  text = text.strip()
  if text.startswith("$") and text.endswith("$") and len(text) >= 2:
    text = text.strip("$").strip()
  return text


def last_boxed(text: str) -> Optional[str]:
  """Content of the last `\\boxed{...}` / `\\fbox{...}` (braces balanced)."""
  start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
  if start < 0:
    return None
  rest = text[start:]
  if rest.startswith("\\boxed ") and "{" not in rest.split("$")[0]:
    return rest[len("\\boxed "):].split("$")[0].strip()  # `\boxed 5`
  open_at = rest.find("{")
  if open_at < 0:
    return None
  depth = 0
  for i in range(open_at, len(rest)):
    if rest[i] == "{":
      depth += 1
    elif rest[i] == "}":
      depth -= 1
      if depth == 0:
        return rest[open_at + 1:i].strip()
  return None


def _fix_fracs(s: str) -> str:
  """`\\frac12` -> `\\frac{1}{2}`, `\\frac1{2}` -> `\\frac{1}{2}`."""
  parts = s.split("\\frac")
  out = parts[0]
  for part in parts[1:]:
    out += "\\frac"
    if not part or part[0] == "{":
      out += part
      continue
    if len(part) < 2:
      return s
    a, b, rest = part[0], part[1], part[2:]
    out += "{" + a + "}" + (b + rest if b == "{" else "{" + b + "}" + rest)
  return out


def _fix_sqrt(s: str) -> str:
  """`\\sqrt3` -> `\\sqrt{3}`."""
  return re.sub(r"\\sqrt(\w)", r"\\sqrt{\1}", s)


def _fix_slash(s: str) -> str:
  """`3/4` -> `\\frac{3}{4}` for two plain integers."""
  m = re.fullmatch(r"(-?\d+)/(\d+)", s)
  return f"\\frac{{{m.group(1)}}}{{{m.group(2)}}}" if m else s


# Words after a number that make it another value, not units: a single
# letter but m (metres) is a variable.
_NOT_UNITS = frozenset({"i", "pi", "e", "hundred", "thousand", "million",
                        "billion", "trillion"} | set("abcdfghjklnopqrstuvwxyz"))
# Numbers and arithmetic, no variable: `2 + 3`, `\frac{10}{2}`, `3 \cdot 4`.
_ARITHMETIC = re.compile(r"(?=.*\d)(?:[\d\s.,+\-*/^(){}\[\]]"
                         r"|\\(?:[dt]?frac|sqrt|cdot|times|left|right))*")
_NAME = re.compile(r"\s*([A-Za-z][A-Za-z0-9]?)\s*=[^=]*")


def _equation_name(answer: str) -> Optional[str]:
  """`x` of `x = 5` (a name of one letter, or a letter and a letter or
  digit, alone on the left of the only `=`); None for anything else."""
  m = _NAME.fullmatch(answer.replace("$", ""))
  return m.group(1) if m else None


def normalize_answer(answer: str, thousands: bool = True) -> str:
  """Hendrycks-MATH-style canonical string of an answer (`thousands`: read
  `1,000` as one number; False keeps such commas, as in a list `70,110`)."""
  s = str(answer).strip().replace("\n", "").rstrip(".")
  s = s.replace("\\!", "").replace("\\\\", "\\")
  s = s.replace("tfrac", "frac").replace("dfrac", "frac")
  s = s.replace("\\left", "").replace("\\right", "")
  s = re.sub(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ", "", s)
  s = s.replace("\\$", "").replace("$", "")
  s = re.sub(r"\\text\{\s*([^}]*)\}", r"\1", s)
  s = re.sub(r"\\mbox\{\s*([^}]*)\}", r"\1", s)
  s = s.replace("\\%", "").replace("%", "")
  s = re.sub(r"^\*\*(.*)\*\*$", r"\1", s.strip())  # Markdown bold: **5**
  # A number then words only, a word problem's units: `18 dollars`, `5 eggs`
  # (not `3 i`, `4 pi`, `5 thousand`: a value, not a unit).
  m = re.fullmatch(r"(-?\d[\d,]*(?:\.\d+)?)\s+([A-Za-z][A-Za-z ]*)", s)
  if m and not set(m.group(2).lower().split()) & _NOT_UNITS:
    s = m.group(1)
  # Thousands separators in a number alone (1,000,000 -> 1000000); commas
  # in tuples and intervals stay: (2,12) \cup (12,102).
  if thousands and re.fullmatch(r"-?\d{1,3}(?:(?:,|\{,\})\d{3})+(?:\.\d+)?",
                                s.strip()):
    s = s.replace("{,}", "").replace(",", "")
  s = s.replace(" .", " 0.").replace("{.", "{0.")
  if s.startswith("."):
    s = "0" + s
  # `x = 5`, `k=3`: keep the value when the left side is a short name
  # (`answers_equivalent` compares the names when both answers have one).
  if s.count("=") == 1 and _equation_name(s):
    s = s.split("=")[1]
  s = _fix_sqrt(s)
  s = s.replace(" ", "").replace("\\,", "").replace("\\;", "")
  s = _fix_fracs(s)
  if s == "0.5":
    s = "\\frac{1}{2}"
  s = _fix_slash(s)
  return s


_NUMBER = re.compile(r"(-?)(?:(\d+(?:\.\d+)?)|\\frac\{(-?\d+)\}\{(\d+)\})")


def _as_number(normalized: str) -> Optional[fractions.Fraction]:
  """An exact value for `12`, `-0.25`, `\\frac{3}{4}`; None for the rest."""
  m = _NUMBER.fullmatch(normalized)
  if m is None or (m.group(4) is not None and int(m.group(4)) == 0):
    return None
  sign = -1 if m.group(1) else 1
  if m.group(2) is not None:
    return sign * fractions.Fraction(m.group(2))
  return sign * fractions.Fraction(int(m.group(3)), int(m.group(4)))


# A number in a base: `52_8`, `4210_{5}`, `A2_{16}`.
_BASE_NUMBER = re.compile(r"([0-9A-Za-z]+)_\{?(\d+)\}?")


@functools.lru_cache(maxsize=1 << 16)
def answers_equivalent(predicted: str, reference: str) -> bool:
  """Whether two answer strings denote the same mathematical object."""
  names = _equation_name(predicted), _equation_name(reference)
  if names[0] and names[1] and names[0] != names[1]:
    return False  # `y = 5` is not `x = 5`
  if (predicted.count("=") == 1 and "=" not in reference
      and _ARITHMETIC.fullmatch(predicted.split("=")[0])):
    # `2 + 3 = 5` for 5, a left side of numbers: both sides must be it
    # (math-verify reads the right side alone, so `7 = 5` would pass).
    return all(answers_equivalent(side, reference)
               for side in predicted.split("="))
  pred, ref = normalize_answer(predicted), normalize_answer(reference)
  if pred == ref:
    return True
  # `70,110` is a thousands-separated number or a list of two: either
  # reading, when both answers are read alike, is a match.
  if normalize_answer(predicted, False) == normalize_answer(reference, False):
    return True
  # Two plain numbers: decide exactly, without sympy (most MATH answers).
  a, b = _as_number(pred), _as_number(ref)
  if a is not None and b is not None:
    return a == b
  # math-verify drops a base's subscript: 52_9 would match 52_8.
  bases = _BASE_NUMBER.fullmatch(pred), _BASE_NUMBER.fullmatch(ref)
  if bases[0] and bases[1]:
    return _base_digits(bases[0]) == _base_digits(bases[1])
  if a is not None and "." in pred:
    # A decimal for an exact answer that is not a plain number: math-verify
    # would accept 1.414214 for \sqrt{2} (it rounds to 6 places).
    return False
  return _verify(predicted, reference)


def _base_digits(m: re.Match) -> tuple[str, int]:
  """`0152a_{11}` -> ('152A', 11): digits in one case, no leading zeros."""
  return m.group(1).upper().lstrip("0") or "0", int(m.group(2))


def _timeout() -> Optional[int]:
  # math-verify times out through SIGALRM, which only the main thread may use.
  return 5 if threading.current_thread() is threading.main_thread() else None


@functools.lru_cache(maxsize=1 << 16)
def _parse(answer: str):
  """math-verify's parse of `$answer$` (a tuple), () when it fails."""
  try:
    from math_verify import parse  # pylint: disable=g-import-not-at-top
  except ImportError:  # Only the normalised string comparison is available.
    return ()
  try:
    return tuple(parse(f"${answer}$", parsing_timeout=_timeout()))
  except Exception:  # pylint: disable=broad-except
    return ()


_EXPONENT = re.compile(r"\^\s*(\{|\\?\w+)")
_BIG_INT = re.compile(r"\d{5,}")


def _too_costly(answer: str) -> bool:
  """Answers sympy may spend minutes on (towers, huge factorials, sums)."""
  if len(answer) > 400:
    return True
  for m in _EXPONENT.finditer(answer):
    exponent = m.group(1)
    if exponent == "{":
      exponent = last_boxed("\\boxed" + answer[m.start(1):]) or ""
    if "^" in exponent or "!" in exponent or re.search(r"\d{7,}", exponent):
      return True
    if re.match(r"\s*\^", answer[m.end():]):  # a^b^c without braces
      return True
  risky = "!" in answer or any(op in answer for op in ("\\sum", "\\prod"))
  return risky and ("^" in answer or bool(_BIG_INT.search(answer)))


def _verify(predicted: str, reference: str) -> bool:
  if _too_costly(predicted):
    return False
  if threading.current_thread() is not threading.main_thread():
    # No SIGALRM here: a worker process grades with its own timeouts.
    try:
      return _in_pool(os.cpu_count() or 1, lambda pool: pool.submit(
          _verify, predicted, reference).result(timeout=60))
    except concurrent.futures.TimeoutError:
      return False
  gold, pred = _parse(reference), _parse(predicted)
  if not gold or not pred:
    return False
  from math_verify import verify  # pylint: disable=g-import-not-at-top
  try:
    return bool(verify(list(gold), list(pred), timeout_seconds=_timeout()))
  except Exception:  # pylint: disable=broad-except
    return False


def grade(response: str, reference_answer: str) -> float:
  """1.0 when the response's final answer equals the reference, else 0.0.

  Args:
    response: a full model response (work, then the final-answer line).
    reference_answer: the dataset's answer (e.g. MATH's `answer` field).
  """
  if not isinstance(reference_answer, str) or not reference_answer.strip():
    raise ValueError(f"reference_answer must be a non-empty str, got "
                     f"{reference_answer!r}")
  predicted = extract_answer(response)
  if predicted is None:
    return 0.0
  return 1.0 if answers_equivalent(predicted, reference_answer.strip()) else 0.0


def _grade_pair(pair) -> float:
  return grade(*pair)


@functools.lru_cache(maxsize=None)
def _pool(workers: int) -> concurrent.futures.ProcessPoolExecutor:
  # forkserver: never fork a host that runs JAX threads; workers stay alive
  # (and keep their caches) for the life of the host process.
  context = multiprocessing.get_context("forkserver")
  return concurrent.futures.ProcessPoolExecutor(workers, mp_context=context)


def grade_many(responses: Sequence[str], references: Sequence[str],
               workers: Optional[int] = None) -> list:
  """grade() over pairs; batches of 64+ go to a pool of worker processes.

  Args:
    responses, references: equal-length sequences.
    workers: processes; default the CPU count, 1 grades in this process.
  """
  if len(responses) != len(references):
    raise ValueError(f"grade_many: {len(responses)} responses but "
                     f"{len(references)} references")
  for ref in references:  # Fail here, with the bad value, not in a worker.
    if not isinstance(ref, str) or not ref.strip():
      raise ValueError(f"reference_answer must be a non-empty str, got {ref!r}")
  workers = workers or os.cpu_count() or 1
  pairs = list(zip(responses, references))
  if workers == 1 or len(pairs) < 64:
    return [grade(r, a) for r, a in pairs]
  chunk = max(1, len(pairs) // (4 * workers))
  return _in_pool(workers, lambda pool: list(
      pool.map(_grade_pair, pairs, chunksize=chunk)))


def _in_pool(workers: int, work):
  """work(pool); if a worker died (killed, out of memory) the pool is
  broken for good: a new one, and the work once more."""
  try:
    return work(_pool(workers))
  except concurrent.futures.BrokenExecutor:  # BrokenProcessPool
    _pool.cache_clear()
    return work(_pool(workers))
