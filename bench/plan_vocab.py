"""What a larger vocabulary costs the train step, planner vs XLA.

`score-jax plan` counts the vocabulary tables in the sharded gradients, in
the logits chunk and in the chunk's gradient of the output layer. This
compiles the real sharded Stage I step (as `plan --check` does) for
tiny-llama widened to D=256 at two vocabulary sizes, on several meshes of 8
simulated CPU devices, and prints how much the per-device temporaries grow
per element of the V x D table, for XLA and for the plan:

  python bench/plan_vocab.py              # 4 meshes, ~5 minutes on 2 cores
  python bench/plan_vocab.py --mesh=1,8,1

A larger XLA number is memory the plan does not show, such as a whole
(unsharded) copy of a table or of its gradient; with the vocabulary-parallel
tables (score_jax/sharding.py) a sharded mesh makes none. docs/SCALING.md
gives the numbers measured before and after.
"""

import argparse
import os
import sys

os.environ.setdefault("XLA_FLAGS",
                      "--xla_force_host_platform_device_count=8")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
# pylint: disable=g-import-not-at-top,wrong-import-position
from score_jax import models, plan

VOCABS = (16384, 32768)


def temporaries(shape, vocab, rows, seq, chunk):
  """(planned, XLA) per-device temporaries of the step, bytes."""
  config = models.get_preset("tiny-llama").replace(
      vocab_size=vocab, embed_dim=256, head_dim=64)
  work = plan.Workload(rows, seq, 0, logits_chunk=chunk)
  memory, _ = plan.compiled_memory(config, shape, work)
  p = plan.make_plan(config, plan.MeshSpec("bench", shape, plan.CHIPS["h100"]),
                     work)
  return (p.grads + plan.activation_total(p.activations),
          memory.temp_size_in_bytes)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--mesh", action="append",
                      help="data,fsdp,tensor (repeatable; default: 1,1,1 "
                      "8,1,1 1,8,1 2,2,2)")
  parser.add_argument("--rows", type=int, default=16)
  parser.add_argument("--seq", type=int, default=64)
  parser.add_argument("--chunk", type=int, default=8)
  args = parser.parse_args()
  meshes = args.mesh or ["1,1,1", "8,1,1", "1,8,1", "2,2,2"]
  step = (VOCABS[1] - VOCABS[0]) * 256
  print(f"tiny-llama D=256, {args.rows} rows x {args.seq} tokens, logits "
        f"chunk {args.chunk}, vocab {VOCABS[0]} -> {VOCABS[1]}; bytes per "
        "device per V x D element")
  print("| mesh | XLA | plan | not counted |")
  print("|---|---|---|---|")
  for mesh in meshes:
    shape = tuple(int(x) for x in mesh.split(","))
    (p1, x1), (p2, x2) = (temporaries(shape, v, args.rows, args.seq,
                                      args.chunk) for v in VOCABS)
    xla, planned = (x2 - x1) / step, (p2 - p1) / step
    print(f"| {mesh} | {xla:.2f} | {planned:.2f} | {xla - planned:.2f} |",
          flush=True)


if __name__ == "__main__":
  main()
