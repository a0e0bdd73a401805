"""How often can a policy's turn 2 fix a wrong turn 1 by sampling?

  python bench/turn2_probe.py --config=configs/demo.py \
      --checkpoint=runs/demo/base/checkpoints/800 [--problems=256 --k=4]

Samples k two-turn episodes of each held-out problem, turn 1 at temperature
1 and turn 2 at each of --turn2_temperatures, and prints per setting the
sampled Acc@t1 / Acc@t2, the i->c and c->i rates and P(turn 2 right | turn 1
wrong): the corrections RL could find and reinforce. The config's overrides
(--config.x=y) are applied before loading, as in `score-jax eval`.
"""

from absl import app
from absl import flags
import jax
import numpy as np

from score_jax import episodes
from score_jax import tasks
from score_jax.commands import eval as eval_cmd
from score_jax.sampling import SamplingConfig


# --config and --checkpoint are score-jax eval's flags (defined on import).
FLAGS = flags.FLAGS
_PROBLEMS = flags.DEFINE_integer("problems", 256, "held-out problems")
_K = flags.DEFINE_integer("k", 4, "episodes per problem")
_TEMPERATURES = flags.DEFINE_list("turn2_temperatures", ["1", "1.5", "2", "3"],
                                  "turn 2's sampling temperatures")
_SEED = flags.DEFINE_integer("seed", 0, "sampling seed")


def main(argv) -> None:
  del argv
  source = eval_cmd.resolve_checkpoint(FLAGS.checkpoint)
  if source.kind != "run":
    raise app.UsageError(f"--checkpoint={FLAGS.checkpoint}: expected a "
                         "training checkpoint")
  config = eval_cmd.eval_config(FLAGS.config, source, None)
  model, params, tokenizer, ctx = eval_cmd.load_model(config, source)
  task = tasks.get_task(config.task.name, **config.task.options.to_dict())
  problems = task.problems(config.task.eval_split)[:_PROBLEMS.value]
  print(f"{source.where}: {len(problems)} problems x k={_K.value}, turn 1 at "
        "T=1")
  for t2 in map(float, _TEMPERATURES.value):
    eps = episodes.run_episodes(
        model, params, tokenizer, task, problems, num_turns=2,
        samples_per_prompt=_K.value,
        max_new_tokens=config.rollout.max_new_tokens,
        sampler=[SamplingConfig(temperature=1.0),
                 SamplingConfig(temperature=t2)],
        rng=jax.random.key(_SEED.value), ctx=ctx)
    r1, r2 = np.asarray(eps.rewards)
    wrong = r1 == 0
    print(f"turn 2 at T={t2:g}: acc@t1 {r1.mean():.3f} acc@t2 {r2.mean():.3f}"
          f" i->c {np.mean(wrong & (r2 == 1)):.3f}"
          f" c->i {np.mean(~wrong & (r2 == 0)):.3f}"
          f" P(t2 right | t1 wrong) "
          f"{np.sum(wrong & (r2 == 1)) / max(1, wrong.sum()):.4f}",
          flush=True)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "checkpoint"])
  app.run(main)
