"""Self-correction evaluation on the host: metrics, intervals, reports, plots.

Pure numpy (matplotlib only inside the plotting functions); no model code.
"""

from score_jax.evaluation.bootstrap import bootstrap_intervals
from score_jax.evaluation.edit_distance import (
    edit_distance_histogram, edit_distance_ratio, edit_distance_ratios,
    levenshtein)
from score_jax.evaluation.files import atomic_write_bytes, atomic_write_text
from score_jax.evaluation.files import read_jsonl
from score_jax.evaluation.metrics import (
    acc_key, binarize, c2i_key, delta_key, i2c_key, self_correction_metrics,
    self_correction_values, turn_pairs)
from score_jax.evaluation.pass_at_k import (
    pass_at_k, pass_at_k_metrics, pass_at_k_values)
from score_jax.evaluation.plots import (
    plot_edit_distance_histogram, plot_training_curves)
from score_jax.evaluation.reports import (
    compare_runs, load_report, paper_columns, report_markdown, summarize,
    write_report)

__all__ = [
    "acc_key", "atomic_write_bytes", "atomic_write_text", "binarize",
    "bootstrap_intervals", "c2i_key", "compare_runs", "delta_key",
    "edit_distance_histogram", "edit_distance_ratio", "edit_distance_ratios",
    "i2c_key", "levenshtein", "load_report", "paper_columns", "pass_at_k",
    "pass_at_k_metrics", "pass_at_k_values", "plot_edit_distance_histogram",
    "plot_training_curves", "read_jsonl", "report_markdown",
    "self_correction_metrics", "self_correction_values", "summarize",
    "turn_pairs", "write_report",
]
