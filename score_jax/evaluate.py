"""Evaluation of self-correction: the public surface.

The pieces live in `score_jax/evaluation/` (one job per module):
  metrics.py        Acc@t_i, Δ, Δ^{i→c}, Δ^{c→i} from rewards [N_turns, P]
  bootstrap.py      paired percentile-bootstrap intervals over problems
  pass_at_k.py      unbiased pass@k (Chen et al. 2021) from [n_samples, P]
  edit_distance.py  Levenshtein / max-length ratio between two attempts
  reports.py        report JSON + Markdown under <workdir>/eval/, Table 2
  plots.py          PNG: edit-distance histograms, training curves
  files.py          atomic writes, strict JSON, metrics.jsonl reading

Typical use after a greedy N-turn rollout (rewards [N_turns, P]):

  ratios = evaluate.edit_distance_ratios(first_attempts, second_attempts)
  extra = {"edit_ratio(t1,t2)": ratios,   # mean ratio gets an interval too
           **evaluate.pass_at_k_values(samples, ks=(1, 4))}  # [n, P], same P
  summary = evaluate.summarize(rewards, extra_values=extra)
  summary["config"].update(checkpoint=..., task=...)
  evaluate.write_report(workdir, "step_3000", per_problem=rows, **summary)
  evaluate.plot_edit_distance_histogram(ratios, workdir / "eval" / "edit.png")
  print(evaluate.compare_runs([base_json, score_json], ["Base", "SCoRe"]))
"""

from score_jax import evaluation as _evaluation
from score_jax.evaluation import *  # noqa: F401,F403  (the public surface)

__all__ = list(_evaluation.__all__)
