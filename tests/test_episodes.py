"""Host-side batch building: packing, warm-start rows, STaR/Pair-SFT rows."""

import dataclasses

import numpy as np
import pytest

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



def test_warm_start_turn2_takes_the_tasks_second_style():
  task = get_task("arithmetic", second_style="steps")
  problems = task.problems("train")[:3]
  batch = episodes.solution_batch(TOK, task, problems, rewrite_turn2=True,
                                  buckets=(600,))
  assert batch["tokens"].shape == (3, 600)
  for r, p in enumerate(problems):
    turn1 = batch["tokens"][r][batch["turn_masks"][0, r]].tolist()
    turn2 = batch["tokens"][r][batch["turn_masks"][1, r]].tolist()
    assert turn1 == TOK.encode(task.solution(p)) + [TOK.end_of_turn_id]
    assert turn2 == TOK.encode(task.second_solution(p)) + [TOK.end_of_turn_id]
    assert turn1 != turn2


def test_warm_start_turn2_fraction_is_spread_over_global_rows():
  problems = TASK.problems("train")[:10]
  def has_turn2(batch):
    return batch["turn_masks"][1].any(-1).tolist()
  whole = episodes.solution_batch(TOK, TASK, problems, True,
                                  turn2_fraction=0.2)
  assert has_turn2(whole) == [False, False, False, False, True] * 2
  # Two processes holding rows [0, 6) and [6, 10) pick the same rows.
  halves = [episodes.solution_batch(TOK, TASK, problems[a:b], True,
                                    turn2_fraction=0.2, first_row=a)
            for a, b in ((0, 6), (6, 10))]
  assert has_turn2(halves[0]) + has_turn2(halves[1]) == has_turn2(whole)
  assert not any(has_turn2(episodes.solution_batch(
      TOK, TASK, problems, False, turn2_fraction=0.5)))
  assert all(has_turn2(episodes.solution_batch(TOK, TASK, problems, True)))
  with pytest.raises(ValueError, match="turn2_fraction"):
    episodes.solution_batch(TOK, TASK, problems, True, turn2_fraction=1.5)


def test_warm_start_turn2_after_an_empty_first_turn():
  """Half the rows get a turn 2 (rows 1, 3, 5, 7); half of those (rows 3
  and 7) an empty, untrained turn 1 before it."""
  task = get_task("arithmetic", second_style="steps")
  problems = task.problems("train")[:8]
  batch = episodes.solution_batch(TOK, task, problems, True,
                                  turn2_fraction=0.5, empty_turn1_fraction=0.5)
  end = [TOK.end_of_turn_id]
  followup = TOK.followup_ids(task.correction_instruction)
  for r, p in enumerate(problems):
    row = batch["tokens"][r][batch["valid"][r]].tolist()
    turn1 = batch["tokens"][r][batch["turn_masks"][0, r]].tolist()
    turn2 = batch["tokens"][r][batch["turn_masks"][1, r]].tolist()
    first = TOK.encode(task.solution(p)) + end
    second = TOK.encode(task.second_solution(p)) + end
    prompt = episodes.prompt_ids(TOK, p)
    if r in (3, 7):
      assert row == prompt + end + followup + second
      assert (turn1, turn2) == ([], second)
    elif r in (1, 5):
      assert row == prompt + first + followup + second
      assert (turn1, turn2) == (first, second)
    else:
      assert (row, turn1, turn2) == (prompt + first, first, [])
  with pytest.raises(ValueError, match="empty_turn1_fraction"):
    episodes.solution_batch(TOK, task, problems, True,
                            empty_turn1_fraction=2.0)


def test_left_pad_equals_packing_to_the_longer_length():
  rows = [[([5, 6], -1), ([7], 0), ([8, 9], 1)], [([5], -1), ([7, 7], 0)]]
  short = episodes.pack(rows, pad_id=0, buckets=[8])
  short["rewards"] = np.asarray([[0.0, 1.0], [1.0, 1.0]], np.float32)
  padded = episodes.left_pad(short, 12, pad_id=0)
  want = episodes.pack(rows, pad_id=0, buckets=[12])
  for key in want:
    np.testing.assert_array_equal(padded[key], want[key], err_msg=key)
  assert padded["rewards"] is short["rewards"]  # no length axis: untouched
  assert episodes.left_pad(short, 8, pad_id=0) is short
  with pytest.raises(ValueError, match="8 slots long, more than 4"):
    episodes.left_pad(short, 4, pad_id=0)


def test_turn_metrics_and_gather_in_one_process():
  problems = TASK.problems("test")[:2]
  eps = episodes.Episodes(
      problems, np.asarray([[0, 1], [1, 1]], np.float32),
      (("a", "b"), ("a", "bb")), np.asarray([[1, 2], [3, 4]]))
  assert (eps.start, eps.total) == (0, 2)
  assert episodes.turn_metrics(eps) == {
      "reward_t1": 0.5, "reward_t2": 1.0, "length_t1": 1.5,
      "length_t2": 3.5, "delta": 0.5, "delta_i2c": 0.5, "delta_c2i": 0.0,
      "edit_ratio": 0.25}
  whole = episodes.gather(eps, problems)
  assert whole.rows == problems and whole.texts == eps.texts
  np.testing.assert_array_equal(whole.rewards, eps.rewards)
  with pytest.raises(ValueError, match="3 rows given for a batch of 2"):
    episodes.gather(eps, problems + problems[:1])


def _gapped_batch(seed=0, rows=6, length=40):
  """Rows laid out as a rollout: [pad | x | y1 + gap | p2 | y2 + gap]."""
  rng = np.random.default_rng(seed)
  tokens = rng.integers(1, 50, (rows, length)).astype(np.int32)
  valid = np.arange(length)[None] >= rng.integers(0, 6, rows)[:, None]
  turns = np.zeros((2, rows, length), bool)
  turns[0, :, 8:20] = True
  turns[1, :, 26:] = True
  for r in range(rows):  # each turn stops somewhere in its budget
    valid[r, 8 + rng.integers(1, 8):20] = False
    valid[r, 26 + rng.integers(1, 10):] = False
  turns &= valid[None]
  tokens[~valid] = 0
  return {"tokens": tokens, "valid": valid,
          "positions": np.maximum(np.cumsum(valid, 1) - 1, 0).astype(np.int32),
          "turn_masks": turns,
          "rewards": rng.integers(0, 2, (2, rows)).astype(np.float32)}


def test_compact_keeps_every_rows_tokens_turns_and_positions():
  batch = _gapped_batch()
  packed = episodes.compact(batch, 8, pad_id=0)
  longest = batch["valid"].sum(1).max()
  assert packed["tokens"].shape[1] == -(-longest // 8) * 8 < 40
  for r in range(6):
    keep, got = batch["valid"][r], packed["valid"][r]
    # Left-padded: the valid slots are the row's last ones, in order.
    assert got.sum() == keep.sum() and got[-got.sum():].all()
    for key in ("tokens", "positions"):
      np.testing.assert_array_equal(packed[key][r][got], batch[key][r][keep])
    for t in range(2):
      np.testing.assert_array_equal(packed["turn_masks"][t, r][got],
                                    batch["turn_masks"][t, r][keep])
    assert not packed["turn_masks"][:, r][:, ~got].any()
    assert (packed["tokens"][r][~got] == 0).all()
    assert (packed["positions"][r][~got] == 0).all()
  assert packed["rewards"] is batch["rewards"]
  # Never longer than the layout; 0 leaves the batch as it is.
  assert episodes.compact(batch, 64, pad_id=0)["tokens"].shape[1] == 40
  assert episodes.compact(batch, 0, pad_id=0) is batch


def _two_turn_rollout(attempts, stopped=None):
  """A Rollout whose turn 1 of row i is attempts[i] (stopped[i], default
  all stopped), as pair_batch reads it."""
  from score_jax import sampling  # pylint: disable=g-import-not-at-top
  rows, width = len(attempts), max(map(len, attempts))
  tokens = np.zeros((rows, width), np.int32)
  masks = np.zeros((2, rows, width), bool)
  for i, ids in enumerate(attempts):
    tokens[i, :len(ids)] = ids
    masks[0, i, :len(ids)] = True
  return sampling.Rollout(
      tokens=tokens, valid=masks[0].copy(), positions=np.zeros_like(tokens),
      turn_masks=masks, logprobs=np.zeros((rows, width), np.float32),
      lengths=masks.sum(-1),
      stopped=np.ones((2, rows), bool) if stopped is None else
      np.asarray([stopped, stopped], bool))


def test_pair_sft_pairs_a_wrong_attempt_with_its_own_groups_answer():
  # Problem a is drawn twice in the step (a small split, or an epoch
  # boundary): groups [a, a], [b, b], [a, a] with k = 2. Each wrong first
  # attempt is paired with its own group's right one, never another group's.
  # Each wrong attempt's turn is closed as the sampler closes it, whatever
  # ended it: its own end_of_turn (rows 0, 3), another stop id (<eos>, row
  # 4) or the budget (row 5) -- one end_of_turn, never two.
  a, b = TASK.problems("train")[:2]
  end, eos = TOK.end_of_turn_id, TOK.eos_id
  attempts = [[11, end], [12, 13, end], [21, end], [22, end], [31, eos],
              [32, 33]]
  r1 = [0, 1, 1, 0, 0, 0]
  eps = episodes.Episodes(
      [a, a, b, b, a, a], np.asarray([r1, r1], np.float32),
      ((), ()), np.ones((2, 6), int),
      rollout=_two_turn_rollout(attempts, [1, 1, 1, 1, 1, 0]))
  batch, pairs = episodes.pair_batch(eps, TOK, TASK, k=2)
  assert pairs == 4  # rows 0, 3, 4, 5
  solution = lambda p: TOK.encode(TASK.solution(p)) + [end]
  want = [(attempts[0], attempts[1]), (attempts[3], attempts[2]),
          (attempts[4] + [end], solution(a)),
          (attempts[5] + [end], solution(a))]
  for r, (attempt, answer) in enumerate(want):
    row = batch["tokens"][r][batch["valid"][r]].tolist()
    followup = TOK.followup_ids(TASK.correction_instruction)
    prompt = episodes.prompt_ids(TOK, a if r != 1 else b)
    assert row == prompt + attempt + followup + answer
    assert batch["tokens"][r][batch["turn_masks"][1, r]].tolist() == answer
    assert not batch["turn_masks"][0, r].any()
  assert not batch["valid"][4:, :-1].any()  # pad rows train nothing
  assert not batch["turn_masks"][:, 4:].any()
  with pytest.raises(ValueError, match="not whole groups of k=4"):
    episodes.pair_batch(eps, TOK, TASK, k=4)
  # This process's block of a multi-process batch must start at a group.
  with pytest.raises(ValueError, match=r"rows \[3, 9\) are not whole groups "
                     "of k=2"):
    episodes.pair_batch(dataclasses.replace(eps, start=3), TOK, TASK, k=2)


def test_pair_sft_closes_a_plain_format_turn_as_the_sampler_does():
  """Without an end-of-turn token the sampler puts the follow-up right
  after a turn, however it ended: so does Pair-SFT (it used to add <eos>
  after a turn cut by the budget)."""
  plain = load_tokenizer("byte", chat_format="plain")
  assert plain.end_of_turn_id is None
  for attempt in ([32, 33], [31, plain.eos_id]):
    assert episodes._closing_ids(plain, attempt) == []  # pylint: disable=protected-access
