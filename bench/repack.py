"""What repacking a rollout before the train step saves (episodes.compact).

A rollout's rows keep the prompt bucket's left padding and every turn's whole
budget of slots after its stop; `config.rollout.repack_multiple` moves each
row's valid tokens together before the RL step. This times the demo's Stage
II step (configs/demo.py: model, k, rows per step, budgets) on one batch laid
out as sampled and on the same batch repacked, alternating, in one process:

  python bench/repack.py            # the demo's layout, ~1 minute on 2 cores
  python bench/repack.py --t1=40    # turn 1 runs to its budget: little to save

Turn lengths are drawn uniformly around --t1 / --t2 (the demo's RL rows
average about 11 and 32 tokens, metrics.jsonl `length_t1` / `length_t2`).
The last line is `repack_speedup: <ratio>` (time as sampled / repacked).
"""

import argparse
import os
import runpy
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
# pylint: disable=g-import-not-at-top,wrong-import-position
from score_jax import episodes, models
from score_jax import configs as configs_lib
from score_jax.rl import state as state_lib
from score_jax.rl import step as step_lib
from score_jax.sampling.rollout import bucket_length
# pylint: enable=g-import-not-at-top,wrong-import-position

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rollout_layout(rows: int, prompt: tuple[int, int], budget: int,
                   followup: int, t1: float, t2: float, vocab: int,
                   seed: int = 0) -> dict[str, np.ndarray]:
  """A two-turn batch laid out as `sampling.rollout` lays it out:
  [left pad | x | y1 + unused budget | eot + followup | y2 + unused budget]."""
  rng = np.random.default_rng(seed)
  prompt_len = rng.integers(prompt[0], prompt[1] + 1, rows)
  bucket = bucket_length(int(prompt_len.max()))
  length = bucket + budget + 1 + followup + budget
  cols = np.arange(length)[None]
  y1 = bucket
  p2 = y1 + budget
  y2 = p2 + 1 + followup

  def turn_lengths(mean):
    return np.clip(rng.integers(int(mean * 0.5), int(mean * 1.5) + 1, rows),
                   1, budget)[:, None]

  len1, len2 = turn_lengths(t1), turn_lengths(t2)
  valid = ((cols >= bucket - prompt_len[:, None]) & (cols < y1)
           | (cols >= y1) & (cols < y1 + len1)
           | (cols > p2) & (cols < y2)
           | (cols >= y2) & (cols < y2 + len2))
  turns = np.stack([(cols >= y1) & (cols < p2), cols >= y2]) & valid[None]
  tokens = np.where(valid, rng.integers(1, vocab, (rows, length)), 0)
  return {"tokens": tokens.astype(np.int32), "valid": valid,
          "positions": np.maximum(np.cumsum(valid, 1) - 1, 0).astype(np.int32),
          "turn_masks": turns,
          "rewards": rng.integers(0, 2, (2, rows)).astype(np.float32)}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--t1", type=float, default=11.0,
                      help="mean turn-1 length, tokens")
  parser.add_argument("--t2", type=float, default=32.0,
                      help="mean turn-2 length, tokens")
  parser.add_argument("--steps", type=int, default=8,
                      help="timed steps of each layout")
  args = parser.parse_args(argv)

  c = runpy.run_path(os.path.join(_ROOT, "configs", "demo.py"))["get_config"]()
  config = models.get_preset(c.model.spec.partition(":")[2]).replace(
      remat_policy=c.model.remat_policy, **c.model.preset_overrides.to_dict())
  k = c.rollout.samples_per_prompt
  rows = c.rollout.prompts_per_step * k
  # The demo's prompts are 33-37 byte ids, its followup 34 (ChatML).
  sampled = rollout_layout(rows, (33, 37), c.rollout.max_new_tokens, 34,
                           args.t1, args.t2, config.vocab_size)
  packed = episodes.compact(sampled, c.rollout.repack_multiple or 32, 0)

  model = models.Transformer(config)
  optimizer = state_lib.make_optimizer(state_lib.OptimizerConfig())
  fn = jax.jit(step_lib.make_train_step(
      model, configs_lib.loss_config(c, "stage2", k), optimizer),
               donate_argnums=(0,))
  params = models.init_params(config, jax.random.key(0))
  ref = models.init_params(config, jax.random.key(1))
  lr = jnp.float32(c.optimizer.lr)
  layouts = {"sampled": sampled, "repacked": packed}
  states = {}
  for name, batch in layouts.items():  # compile and warm up each
    layouts[name] = jax.tree.map(jnp.asarray, batch)
    # A copy of the params each: the step donates (deletes) its state.
    state = state_lib.init_state(jax.tree.map(jnp.copy, params), optimizer)
    states[name], _ = fn(state, ref, layouts[name], lr)
  times = {name: [] for name in layouts}
  for _ in range(args.steps):  # alternating: drift hits both alike
    for name, batch in layouts.items():
      t0 = time.perf_counter()
      states[name], metrics = fn(states[name], ref, batch, lr)
      jax.block_until_ready(metrics)
      times[name].append(time.perf_counter() - t0)
  for name, batch in layouts.items():
    print(f"{name:9s} {rows} x {batch['tokens'].shape[1]} slots, "
          f"{int(np.asarray(batch['valid']).sum())} valid: median step "
          f"{statistics.median(times[name]):.3f} s")
  speedup = statistics.median(times["sampled"]) / statistics.median(
      times["repacked"])
  print(f"repack_speedup: {speedup:.2f}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
