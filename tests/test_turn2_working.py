"""bench/turn2_working.py: the counts DEMO.md quotes, on transcripts taken
from real demo evaluations (section 3e)."""

import importlib.util
import json
import os

import pytest

_SCRIPT = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "bench", "turn2_working.py")
_spec = importlib.util.spec_from_file_location("turn2_working", _SCRIPT)
tw = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tw)


def _write(path, turn_pairs):
  with open(path, "w") as f:
    for t1, t2 in turn_pairs:
      f.write(json.dumps({"turns": [{"response": t1}, {"response": t2}]})
              + "\n")
  return str(path)


def test_counts_deferring_answers_and_false_equations(tmp_path):
  path = _write(tmp_path / "t.jsonl", [
      # Defers: right working, turn 1's answer.
      ("Answer: 12", "2 + 8 = 10\nAnswer: 12"),
      # Working bent to turn 1's answer: a false equation, answer agrees.
      ("Answer: 3", "1 + 8 = 9\n9 - 8 = 3\nAnswer: 3"),
      # Right throughout, negative numbers included.
      ("Answer: -8", "0 - 7 = -7\n-7 - 1 = -8\nAnswer: -8"),
      # No equation at all: neither count.
      ("Answer: 5", "Answer: 5"),
  ])
  assert tw.count(path) == {"problems": 4, "answer != last equation": 1,
                            "wrong equation": 1}


def test_one_turn_transcripts_are_an_error(tmp_path):
  path = tmp_path / "one.jsonl"
  path.write_text(json.dumps({"turns": [{"response": "Answer: 1"}]}) + "\n")
  with pytest.raises(ValueError, match="1 turn"):
    tw.count(str(path))
