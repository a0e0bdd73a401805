"""Does turn 2 believe its own working? Counts over evaluation transcripts.

For the demo's arithmetic task (turn 2 = one equation per line, then
`Answer: N`), per transcripts file (`<workdir>/eval/*.transcripts.jsonl`):

  answer != last equation  turn 2's answer line differs from the result of
                           its own last equation (it defers to something
                           else, typically turn 1's answer);
  wrong equation           some equation of turn 2 is false (`9 - 8 = 3`):
                           the working itself bent towards a wrong answer.

  python bench/turn2_working.py /tmp/score_demo/eval/*.transcripts.jsonl
"""

import argparse
import json
import re

_EQUATION = re.compile(r"^\s*(-?\d+(?:\s*[-+*]\s*-?\d+)+)\s*=\s*(-?\d+)\s*$")


def _check(line: str):
  """None if `line` is not an equation, else (result, whether it is true)."""
  match = _EQUATION.match(line)
  if match is None:
    return None
  lhs, rhs = match.groups()
  # Only integers and + - * reach here (the regex), so eval is arithmetic.
  return rhs, eval(lhs) == int(rhs)  # pylint: disable=eval-used


def count(path: str) -> dict[str, int]:
  counts = {"problems": 0, "answer != last equation": 0, "wrong equation": 0}
  with open(path) as f:
    for line in f:
      turns = json.loads(line)["turns"]
      if len(turns) < 2:
        raise ValueError(f"{path}: a transcript with {len(turns)} turn(s); "
                         "expected two-turn evaluation transcripts")
      lines = turns[1]["response"].strip().split("\n")
      equations = [c for c in map(_check, lines) if c is not None]
      answers = [l.split(":", 1)[1].strip() for l in lines
                 if l.startswith("Answer:")]
      counts["problems"] += 1
      if equations and answers and equations[-1][0] != answers[-1]:
        counts["answer != last equation"] += 1
      if any(not ok for _, ok in equations):
        counts["wrong equation"] += 1
  return counts


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("transcripts", nargs="+",
                      help="eval/*.transcripts.jsonl files")
  for path in parser.parse_args().transcripts:
    counts = count(path)
    print(path + ": " + ", ".join(f"{k} {v}" for k, v in counts.items()))


if __name__ == "__main__":
  main()
