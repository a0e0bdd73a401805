"""Problems in, rewarded multi-turn episodes and train batches out.

The glue between tasks (host), the tokenizer, and the sampler (device):
  problems -> chat-templated prompt ids -> rollout (N turns, k samples)
  -> rewards per turn (task, on the host) -> batch dicts for the train step.
Shared by the training loop and `score-jax eval`.

Under several JAX processes (multi-host) every process passes the same
problems: the rollout is one global computation, and each process gets the
Episodes of its own block of rows (`Episodes.start`), scores them on its
host and builds its part of the train batch. `gather` puts the whole batch's
host results together (transcripts, evaluation reports); `turn_metrics` sums
over processes before it divides.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence

import jax
import numpy as np

from score_jax import distributed
from score_jax import sampling
from score_jax.evaluation import edit_distance
from score_jax.tasks import Problem, Task


def prompt_ids(tokenizer, problem: Problem) -> list[int]:
  """Turn-1 input: the problem as a user turn, then the generation prompt."""
  return tokenizer.apply_chat_template(
      [{"role": "user", "content": problem.prompt}], add_generation_prompt=True)


@dataclasses.dataclass
class Episodes:
  """rows: the problem of each row (prompt-major, k per problem);
  rewards float32[N, B]; texts [N][B] responses; lengths int[N, B] sampled
  tokens per turn; rollout: the sampler's Rollout as numpy, these rows only
  (None when merged from several rollouts, as in evaluation).

  start, total: these B rows are rows [start, start + B) of a batch of
  `total` rows spread over JAX processes (this process's block); in one
  process start = 0 and total = B.
  """
  rows: list[Problem]
  rewards: np.ndarray
  texts: tuple
  lengths: np.ndarray
  rollout: Optional[sampling.Rollout] = None
  start: int = 0
  total: Optional[int] = None

  def __post_init__(self):
    if self.total is None:
      self.total = len(self.rows)


def run_episodes(model, params, tokenizer, task: Task,
                 problems: Sequence[Problem], *, num_turns: int,
                 samples_per_prompt: int, max_new_tokens: int,
                 sampler: sampling.SamplingConfig, rng: jax.Array,
                 ctx=None, instructions: Optional[Sequence[str]] = None
                 ) -> Episodes:
  """Samples num_turns attempts per row and scores every attempt.

  instructions: the user message before each turn after the first (default:
  the task's correction instruction before every one). Returns this
  process's rows (all of them in one process).
  """
  if instructions is None:
    instructions = [task.correction_instruction] * (num_turns - 1)
  ro = sampling.rollout(
      model, params, [prompt_ids(tokenizer, p) for p in problems],
      followup_ids=[tokenizer.followup_ids(i) for i in instructions],
      num_turns=num_turns, samples_per_prompt=samples_per_prompt,
      max_new_tokens=max_new_tokens, stop_ids=tokenizer.stop_ids, rng=rng,
      sampling=sampler, decode_fn=tokenizer.decode, pad_id=tokenizer.pad_id,
      end_of_turn_id=tokenizer.end_of_turn_id, ctx=ctx)
  start, stop = ro.rows
  rows = [p for p in problems for _ in range(samples_per_prompt)][start:stop]
  rewards = np.asarray([task.rewards(rows, list(ro.texts[t]))
                        for t in range(num_turns)], np.float32)
  ro = ro.on_host()
  return Episodes(rows, rewards, tuple(map(tuple, ro.texts)), ro.lengths, ro,
                  start=start, total=len(problems) * samples_per_prompt)


def gather(episodes: Episodes, rows: Sequence[Problem]) -> Episodes:
  """The whole batch on every process: each process's rewards, texts and
  lengths put at its rows (`rows`: the problem of every row of the batch).
  A collective; in one process, `episodes` itself (without its rollout)."""
  if len(rows) != episodes.total:
    raise ValueError(f"gather: {len(rows)} rows given for a batch of "
                     f"{episodes.total}")
  if len(episodes.rows) == episodes.total:
    # This process holds every row (one process, or a batch too small to
    # split, which then every process holds): nothing to collect.
    return Episodes(list(rows), episodes.rewards, episodes.texts,
                    episodes.lengths)
  parts = distributed.gather_json({
      "start": episodes.start, "rewards": episodes.rewards.tolist(),
      "texts": [list(t) for t in episodes.texts],
      "lengths": episodes.lengths.tolist()})
  num_turns = episodes.rewards.shape[0]
  rewards = np.zeros((num_turns, len(rows)), np.float32)
  lengths = np.zeros((num_turns, len(rows)), episodes.lengths.dtype)
  texts = [[None] * len(rows) for _ in range(num_turns)]
  for part in parts:  # blocks may overlap (a batch replicated over hosts)
    at = slice(part["start"], part["start"] + len(part["texts"][0]))
    rewards[:, at] = part["rewards"]
    lengths[:, at] = part["lengths"]
    for t in range(num_turns):
      texts[t][at] = part["texts"][t]
  if any(x is None for t in texts for x in t):
    raise ValueError("gather: the processes' rows do not cover the batch")
  return Episodes(list(rows), rewards, tuple(map(tuple, texts)), lengths)


def rl_batch(episodes: Episodes) -> dict[str, np.ndarray]:
  """The train-step batch of an RL stage (two turns; a one-turn rollout gets
  an empty second turn and r2 = r1)."""
  ro = episodes.rollout
  masks = np.asarray(ro.turn_masks)
  rewards = episodes.rewards
  if masks.shape[0] == 1:
    masks = np.concatenate([masks, np.zeros_like(masks)])
    rewards = np.concatenate([rewards, rewards])
  return {"tokens": np.asarray(ro.tokens, np.int32),
          "valid": np.asarray(ro.valid, bool),
          "positions": np.asarray(ro.positions, np.int32),
          "turn_masks": masks[:2].astype(bool),
          "rewards": rewards[:2].astype(np.float32)}


def compact(batch: dict[str, np.ndarray], multiple: int,
            pad_id: int) -> dict[str, np.ndarray]:
  """A batch of `rl_batch` without its invalid slots: each row's valid
  tokens, in order, left-padded to the longest row rounded up to a multiple
  of `multiple` (never longer than before; multiple=0: the batch as it is).

  A rollout's layout keeps every turn's whole budget of slots after its stop
  and the prompt bucket's left padding; a train step over it computes on
  those gaps too. Attention follows `valid` and positions (cumsum(valid) - 1,
  pads at 0, as `pack` lays rows out), both of which this keeps, so the
  step's loss is that of the uncompacted batch up to float rounding.
  Lengths come in steps of `multiple`: at most (layout / multiple) shapes
  of the train step per run."""
  if multiple <= 0:
    return batch
  valid = batch["valid"]
  have = valid.shape[-1]
  longest = max(int(valid.sum(-1).max()), 1)
  length = min(have, -(-longest // multiple) * multiple)
  # Stable: the invalid slots first, then the valid ones in their order.
  order = np.argsort(valid, axis=-1, kind="stable")[:, have - length:]
  out = dict(batch)
  out["valid"] = np.take_along_axis(valid, order, -1)
  out["tokens"] = np.where(
      out["valid"], np.take_along_axis(batch["tokens"], order, -1),
      pad_id).astype(np.int32)
  out["positions"] = np.maximum(
      np.cumsum(out["valid"], -1) - 1, 0).astype(np.int32)
  out["turn_masks"] = np.take_along_axis(batch["turn_masks"], order[None],
                                         -1)
  return out


def pack(rows: Sequence[Sequence[tuple[Sequence[int], int]]], pad_id: int,
         buckets: Optional[Sequence[int]] = None) -> dict[str, np.ndarray]:
  """Left-padded batch from rows of (ids, turn) segments; turn -1 is context
  (not trained), 0 / 1 the turn whose tokens the SFT loss may train on."""
  lengths = [sum(len(ids) for ids, _ in row) for row in rows]
  length = sampling.bucket_length(max(lengths), buckets)
  b = len(rows)
  tokens = np.full((b, length), pad_id, np.int32)
  valid = np.zeros((b, length), bool)
  turns = np.zeros((2, b, length), bool)
  for r, row in enumerate(rows):
    at = length - lengths[r]
    for ids, turn in row:
      tokens[r, at:at + len(ids)] = ids
      valid[r, at:at + len(ids)] = True
      if turn >= 0:
        turns[turn, r, at:at + len(ids)] = True
      at += len(ids)
  positions = np.maximum(np.cumsum(valid, axis=1) - 1, 0).astype(np.int32)
  return {"tokens": tokens, "valid": valid, "positions": positions,
          "turn_masks": turns}


def left_pad(batch: dict[str, np.ndarray], length: int,
             pad_id: int) -> dict[str, np.ndarray]:
  """A batch of `pack` (or `rl_batch`) widened to `length` slots by padding
  on the left, as `pack` pads: pad_id tokens, not valid, position 0, in no
  turn. Used to bring every process's part of a batch to one length."""
  have = batch["tokens"].shape[-1]
  if have > length:
    raise ValueError(f"left_pad: batch is {have} slots long, more than "
                     f"{length}")
  if have == length:
    return batch
  fill = {"tokens": pad_id, "valid": False, "positions": 0,
          "turn_masks": False}
  out = dict(batch)
  for key, value in fill.items():
    x = batch[key]
    widths = [(0, 0)] * (x.ndim - 1) + [(length - have, 0)]
    out[key] = np.pad(x, widths, constant_values=value)
  return out


def _end_ids(tokenizer) -> list[int]:
  end = tokenizer.end_of_turn_id
  return [end if end is not None else tokenizer.eos_id]


def _closing_ids(tokenizer, turn: list[int]) -> list[int]:
  """What closes a sampled model turn before the next turn's follow-up, as
  the sampler closes it (`sampling.decode.append_followup`): end_of_turn
  unless the turn already ends with it (a turn that stopped on another stop
  id, e.g. Gemma's <eos>, or ran out of budget); nothing without an
  end-of-turn token (plain format)."""
  end = tokenizer.end_of_turn_id
  if end is None or (turn and turn[-1] == end):
    return []
  return [end]


def _picked(index: int, fraction: float) -> bool:
  """Whether item `index` is among a `fraction` of items spread evenly."""
  return int((index + 1) * fraction) > int(index * fraction)


def solution_batch(tokenizer, task: Task, problems: Sequence[Problem],
                   rewrite_turn2: bool = False,
                   buckets: Optional[Sequence[int]] = None,
                   turn2_fraction: float = 1.0, first_row: int = 0,
                   empty_turn1_fraction: float = 0.0
                   ) -> dict[str, np.ndarray]:
  """SFT warm start: the task's worked solutions as first attempts, never a
  wrong attempt followed by a right one. rewrite_turn2: after the correction
  instruction, a correct solution again as turn 2 (`task.second_solution`:
  the same one, or the task's second style) -- the turn-2 format an
  instruction-tuned base already has (restating a right answer), without
  which a model trained from scratch has no second attempt at all.
  turn2_fraction: with rewrite_turn2, that fraction of the rows get a turn
  2, spread evenly over the step's global row indices (these problems are
  rows first_row, first_row + 1, ... of it; the rest are first attempts
  alone). empty_turn1_fraction: that fraction of the turn-2 rows (spread
  evenly over them) hold an empty first turn (just its end token, not
  trained) instead of the first attempt, so turn 2 is also learned as an
  attempt of its own, not only as a restatement of turn 1 (no answer is
  corrected there: the empty turn holds none, and the model is never
  trained to give one). Problems without a known solution are an error.
  buckets: padded lengths to choose from (default: powers of two)."""
  for name, value in (("turn2_fraction", turn2_fraction),
                      ("empty_turn1_fraction", empty_turn1_fraction)):
    if not 0.0 <= value <= 1.0:
      raise ValueError(f"{name} must be in [0, 1], got {value}")
  followup = tokenizer.followup_ids(task.correction_instruction)
  rows = []
  for i, p in enumerate(problems, start=first_row):
    text = task.solution(p)
    if text is None:
      raise ValueError(f"task {task.name!r} has no worked solution for "
                       f"problem {p.id!r}; the 'sft' stage needs one")
    answer = tokenizer.encode(text) + _end_ids(tokenizer)
    row = [(prompt_ids(tokenizer, p), -1), (answer, 0)]
    if rewrite_turn2 and _picked(i, turn2_fraction):
      second = tokenizer.encode(task.second_solution(p)) + _end_ids(tokenizer)
      # This is turn-2 row number int((i + 1) * turn2_fraction) - 1.
      if _picked(int((i + 1) * turn2_fraction) - 1, empty_turn1_fraction):
        row[1] = (_end_ids(tokenizer), -1)
      row += [(followup, -1), (second, 1)]
    rows.append(row)
  return pack(rows, tokenizer.pad_id, buckets)


def star_batch(episodes: Episodes, multiple: int = 0, pad_id: int = 0
               ) -> tuple[dict[str, np.ndarray], int]:
  """STaR: train on turn 2 of the rows whose turn 2 fixed a wrong turn 1;
  other rows stay in the batch with nothing to train. Returns (batch, kept).
  multiple, pad_id: as `compact`."""
  batch = compact(rl_batch(episodes), multiple, pad_id)
  r = episodes.rewards
  keep = (r[0] < 0.5) & (r[1] >= 0.5)
  batch["turn_masks"][0] = False
  batch["turn_masks"][1] &= keep[:, None]
  del batch["rewards"]
  return batch, int(keep.sum())


def pair_batch(episodes: Episodes, tokenizer, task: Task, k: int
               ) -> tuple[dict[str, np.ndarray], int]:
  """Pair-SFT: each wrong first attempt followed by a correct answer for the
  same problem (a correct first attempt of a sibling sample, else the task's
  worked solution), trained on that answer only. Returns (batch, pairs).
  k: samples per prompt; rows i - i % k .. + k are one prompt's samples
  (the same problem may appear in two groups of a step)."""
  ro = episodes.rollout
  tokens = np.asarray(ro.tokens)
  masks = np.asarray(ro.turn_masks)
  r1 = episodes.rewards[0]
  if k < 1 or len(episodes.rows) % k or episodes.start % k:
    raise ValueError(f"pair_batch: rows [{episodes.start}, "
                     f"{episodes.start + len(episodes.rows)}) are not whole "
                     f"groups of k={k} samples")
  instruction = tokenizer.followup_ids(task.correction_instruction)
  rows = []
  for i, problem in enumerate(episodes.rows):
    if r1[i] >= 0.5:
      continue
    group = range(i - i % k, i - i % k + k)
    right = [j for j in group if r1[j] >= 0.5]
    if right:
      answer = tokens[right[0]][masks[0, right[0]]].tolist()
    else:
      text = task.solution(problem)
      if text is None:
        continue
      answer = tokenizer.encode(text) + _end_ids(tokenizer)
    attempt = tokens[i][masks[0, i]].tolist()
    attempt += _closing_ids(tokenizer, attempt)
    rows.append([(prompt_ids(tokenizer, problem), -1), (attempt, -1),
                 (instruction, -1), (answer, 1)])
  pairs = len(rows)
  # Same row count every step (bounded compilations): rows of one pad token
  # carry nothing to train.
  rows += [[([tokenizer.pad_id], -1)]] * (len(episodes.rows) - pairs)
  return pack(rows, tokenizer.pad_id), pairs


def turn_metrics(episodes: Episodes) -> dict[str, float]:
  """Per-step training metrics over the whole batch: reward per turn, Δ,
  Δi→c, Δc→i, lengths, edit-distance ratio between consecutive attempts.

  Each is a sum over this process's rows, summed over processes
  (`distributed.sum_metrics`, a collective) and divided by the batch's rows;
  so the processes' blocks must not overlap (the trainer checks this).
  """
  r = episodes.rewards >= 0.5
  sums = {"rows": float(r.shape[1])}
  for t in range(r.shape[0]):
    sums[f"reward_t{t + 1}"] = float(r[t].sum())
    sums[f"length_t{t + 1}"] = float(episodes.lengths[t].sum())
  if r.shape[0] >= 2:
    sums["delta_i2c"] = float((~r[0] & r[1]).sum())
    sums["delta_c2i"] = float((r[0] & ~r[1]).sum())
    sums["edit_ratio"] = float(np.sum(edit_distance.edit_distance_ratios(
        list(episodes.texts[0]), list(episodes.texts[1]))))
  sums = distributed.sum_metrics(sums)
  rows = sums.pop("rows")
  out = {}
  for t in range(r.shape[0]):
    out[f"reward_t{t + 1}"] = sums[f"reward_t{t + 1}"] / rows
  for t in range(r.shape[0]):
    out[f"length_t{t + 1}"] = sums[f"length_t{t + 1}"] / rows
  if r.shape[0] >= 2:
    out["delta"] = out["reward_t2"] - out["reward_t1"]
    for key in ("delta_i2c", "delta_c2i", "edit_ratio"):
      out[key] = sums[key] / rows
  return out


def transcripts(episodes: Episodes, limit: int) -> list[dict[str, Any]]:
  """Rows of both turns with rewards, for samples/ and eval reports."""
  out = []
  for i, problem in enumerate(episodes.rows[:limit]):
    out.append({
        "id": problem.id, "prompt": problem.prompt,
        "reference": str(problem.reference),
        "turns": [{"response": episodes.texts[t][i],
                   "reward": float(episodes.rewards[t, i])}
                  for t in range(episodes.rewards.shape[0])]})
  return out


def evaluate(model, params, tokenizer, task: Task,
             problems: Sequence[Problem], *, num_turns: int,
             max_new_tokens: int, batch_size: int, ctx=None,
             instructions: Optional[Sequence[str]] = None,
             progress=None) -> Episodes:
  """Greedy N-turn episodes for every problem, batch_size problems at a time
  (the last batch is padded with repeats, whose rows are dropped).

  Under several JAX processes each batch is one global rollout; every
  process scores its own rows and gets all of them back (`gather`), so the
  result is the same as in one process, on every process."""
  greedy = sampling.SamplingConfig(greedy=True)
  parts = []
  for start in range(0, len(problems), batch_size):
    chunk = list(problems[start:start + batch_size])
    real = len(chunk)
    chunk += [chunk[-1]] * (batch_size - real) if len(problems) > batch_size \
        else []
    ep = run_episodes(model, params, tokenizer, task, chunk,
                      num_turns=num_turns, samples_per_prompt=1,
                      max_new_tokens=max_new_tokens, sampler=greedy,
                      rng=jax.random.key(0), ctx=ctx,
                      instructions=instructions)
    parts.append((gather(ep, chunk), real))
    if progress is not None:
      progress.update(real)
  return Episodes(
      rows=[p for ep, real in parts for p in ep.rows[:real]],
      rewards=np.concatenate([ep.rewards[:, :real] for ep, real in parts], 1),
      texts=tuple(tuple(t for ep, real in parts for t in ep.texts[n][:real])
                  for n in range(num_turns)),
      lengths=np.concatenate([ep.lengths[:, :real] for ep, real in parts], 1))
