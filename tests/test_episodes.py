"""Host-side batch building: packing, warm-start rows, STaR/Pair-SFT rows."""

import numpy as np

from score_jax import episodes
from score_jax.tasks import get_task
from score_jax.tokenizers import load_tokenizer

TOK = load_tokenizer("byte", chat_format="chatml")
TASK = get_task("arithmetic")


def test_pack_left_pads_and_marks_turns():
  batch = episodes.pack([[([5, 6], -1), ([7], 0), ([8, 9], 1)],
                         [([5], -1), ([7, 7], 0)]], pad_id=0, buckets=[8])
  np.testing.assert_array_equal(batch["tokens"], [[0, 0, 0, 5, 6, 7, 8, 9],
                                                  [0, 0, 0, 0, 0, 5, 7, 7]])
  np.testing.assert_array_equal(batch["positions"][0], [0, 0, 0, 0, 1, 2, 3, 4])
  np.testing.assert_array_equal(batch["turn_masks"][0, 0],
                                [0, 0, 0, 0, 0, 1, 0, 0])
  np.testing.assert_array_equal(batch["turn_masks"][1, 0],
                                [0, 0, 0, 0, 0, 0, 1, 1])
  assert not batch["valid"][1, :5].any() and batch["valid"][1, 5:].all()


def test_warm_start_rows_are_exact_ids():
  problems = TASK.problems("train")[:3]
  for rewrite in (False, True):
    batch = episodes.solution_batch(TOK, TASK, problems, rewrite)
    for r, p in enumerate(problems):
      answer = TOK.encode(TASK.solution(p)) + [TOK.end_of_turn_id]
      want = episodes.prompt_ids(TOK, p) + answer
      if rewrite:
        want += TOK.followup_ids(TASK.correction_instruction) + answer
      row = batch["tokens"][r][batch["valid"][r]].tolist()
      assert row == want
      assert batch["tokens"][r][batch["turn_masks"][0, r]].tolist() == answer
      turn2 = batch["tokens"][r][batch["turn_masks"][1, r]].tolist()
      assert turn2 == (answer if rewrite else [])
