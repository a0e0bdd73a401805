"""Per-device memory of a training config on a mesh, without allocating it.

What lives on one device during a SCoRe run:

* resident for the whole run: policy params, the AdamW moments (param dtype,
  like their params), and the frozen reference params (a second copy);
* while sampling: the rollout KV cache of every row over the whole two-turn
  sequence, the decode state and the prompt prefill's attention;
* while updating: the gradients, and the activations of one micro-batch under
  the model's remat policy.

Every per-device number comes from the real shapes and their shardings
(`sharding.logical_to_spec`, so a dimension the mesh does not divide stays
whole), never from total / num_devices. Activations are the residuals that
JAX's autodiff saves for the backward pass of the real `Transformer` (traced
abstractly at per-device shapes), plus the transient working sets named in
`activation_bytes`. Units: bytes unless a name says GiB.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
# `saved_residuals` is what the public `jax.ad_checkpoint.print_saved_residuals`
# prints; it is only exported privately. tests/test_plan.py compares its
# per-layer count with XLA's, so a change of meaning would fail there.
from jax._src import ad_checkpoint as _ad_checkpoint

from score_jax import models
from score_jax import sharding as sharding_lib
from score_jax.rl import losses
from score_jax.rl import state as state_lib
from score_jax.rl import step as step_lib

GIB = 2**30


@dataclasses.dataclass(frozen=True)
class Chip:
  """One accelerator: HBM (GiB), dense bf16 peak (FLOP/s), HBM bandwidth
  (bytes/s). Public spec-sheet numbers; the time model states them."""
  name: str
  hbm_gib: Optional[float]
  peak_flops: Optional[float]
  hbm_bandwidth: Optional[float]


CHIPS = {
    "tpu-v4": Chip("TPU v4", 32, 275e12, 1.2e12),
    "tpu-v5p": Chip("TPU v5p", 95, 459e12, 2.765e12),
    "tpu-v5e": Chip("TPU v5e", 16, 197e12, 0.819e12),
    "h100": Chip("H100 SXM", 80, 989e12, 3.35e12),
}


@dataclasses.dataclass(frozen=True)
class MeshSpec:
  """A named (data, fsdp, tensor) mesh of one kind of chip."""
  name: str
  shape: tuple[int, int, int]
  chip: Chip

  @property
  def num_devices(self) -> int:
    return math.prod(self.shape)

  def abstract(self) -> jax.sharding.AbstractMesh:
    return jax.sharding.AbstractMesh(self.shape, sharding_lib.MESH_AXES)


# Pure FSDP where HBM per chip is large enough; v5e (16 GiB) adds a tensor
# axis of 4 so that the per-layer gathered weights and the attention
# activations shrink too. The data axis is left at 1: with a frozen reference
# and Adam moments, memory, not compute, decides the first split.
MESHES = {
    "v4-32": MeshSpec("v4-32", (1, 16, 1), CHIPS["tpu-v4"]),
    "v5p-128": MeshSpec("v5p-128", (1, 64, 1), CHIPS["tpu-v5p"]),
    "v5e-256": MeshSpec("v5e-256", (1, 64, 4), CHIPS["tpu-v5e"]),
    "8xh100": MeshSpec("8xh100", (1, 8, 1), CHIPS["h100"]),
}


def parse_mesh(text: str, hbm_gib: Optional[float] = None) -> MeshSpec:
  """'v5p-128' (a name in MESHES) or 'data,fsdp,tensor' such as '2,4,1'.

  An explicit shape has no chip; `hbm_gib` gives it a memory size (without
  it the plan reports no fit). With a name, `hbm_gib` overrides the chip's.
  """
  if text in MESHES:
    spec = MESHES[text]
  else:
    parts = text.replace("x", ",").split(",")
    try:
      shape = tuple(int(p) for p in parts)
    except ValueError:
      shape = ()
    if len(shape) != 3 or min(shape) < 1:
      raise ValueError(f"--mesh={text!r}: expected one of "
                       f"{', '.join(MESHES)} or three positive sizes "
                       "'data,fsdp,tensor' such as '2,4,1'")
    spec = MeshSpec(text, shape, Chip("unknown", None, None, None))
  if hbm_gib is not None:
    if hbm_gib <= 0:
      raise ValueError(f"hbm_gib must be positive, got {hbm_gib}")
    spec = dataclasses.replace(
        spec, chip=dataclasses.replace(spec.chip, hbm_gib=hbm_gib))
  return spec


@dataclasses.dataclass(frozen=True)
class Workload:
  """One training step's sizes.

  rows: sequences per step (prompts x samples). seq: length of the two-turn
  transcript [prompt | y1 | p2 | y2] in tokens (the rollout cache has as many
  slots). decode_steps: tokens sampled per row (both turns). micro_batches and
  logits_chunk as in rl/step.py StepConfig (0: all positions at once).
  """
  rows: int
  seq: int
  decode_steps: int
  micro_batches: int = 1
  logits_chunk: int = 0

  def __post_init__(self):
    for name in ("rows", "seq", "micro_batches"):
      if getattr(self, name) < 1:
        raise ValueError(f"Workload.{name} must be >= 1, got "
                         f"{getattr(self, name)}")
    if self.rows % self.micro_batches:
      raise ValueError(f"micro_batches={self.micro_batches} does not divide "
                       f"the {self.rows} rows of a step")
    if self.logits_chunk < 0 or self.decode_steps < 0:
      raise ValueError("logits_chunk and decode_steps must be >= 0")


# -- sharded sizes ----------------------------------------------------------


def shard_shape(names: Sequence[Optional[str]], shape: Sequence[int],
                mesh: MeshSpec, rules: sharding_lib.Rules) -> tuple[int, ...]:
  """The per-device block of an array of `shape` with logical `names`."""
  spec = sharding_lib.logical_to_spec(names, shape, mesh.abstract(), rules)
  sizes = dict(zip(sharding_lib.MESH_AXES, mesh.shape))
  out = []
  for size, axes in zip(shape, tuple(spec) + (None,) * len(shape)):
    axes = () if axes is None else (axes,) if isinstance(axes, str) else axes
    out.append(size // math.prod(sizes[a] for a in axes))
  return tuple(out)


def shard_bytes(names, shape, dtype, mesh: MeshSpec,
                rules: sharding_lib.Rules) -> int:
  return (math.prod(shard_shape(names, shape, mesh, rules)) *
          jnp.dtype(dtype).itemsize)


def _boxed_leaves(tree: Any) -> list[nn.LogicallyPartitioned]:
  return jax.tree.leaves(
      tree, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))


def param_bytes(config: models.ModelConfig, mesh: MeshSpec,
                rules: sharding_lib.Rules, dtype: Any = None) -> int:
  """Per-device bytes of one copy of the params (in `dtype`, default the
  config's param_dtype)."""
  total = 0
  for leaf in _boxed_leaves(models.abstract_params(config)):
    total += shard_bytes(leaf.names, leaf.value.shape,
                         dtype or leaf.value.dtype, mesh, rules)
  return total


def layer_param_bytes(config: models.ModelConfig, mesh: MeshSpec,
                      rules: sharding_lib.Rules) -> int:
  """Per-device bytes of one decoder layer's params (a slice of the scan)."""
  total = 0
  for leaf in _boxed_leaves(models.abstract_params(config)):
    if leaf.names and leaf.names[0] == "layers":
      total += shard_bytes(leaf.names, leaf.value.shape, leaf.value.dtype,
                           mesh, rules)
  return total // config.num_layers


def opt_state_bytes(config: models.ModelConfig, mesh: MeshSpec,
                    rules: sharding_lib.Rules,
                    optimizer: Optional[optax.GradientTransformation] = None
                    ) -> int:
  """Per-device bytes of the optimizer state: each moment sharded like its
  param (rl/state.py state_shardings), counts and hyperparameters whole."""
  optimizer = optimizer or state_lib.make_optimizer(state_lib.OptimizerConfig())
  boxed = models.abstract_params(config)
  names = jax.tree.map(lambda b: b.names, boxed,
                       is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
  opt_state = jax.eval_shape(optimizer.init, nn.unbox(boxed))
  sizes = optax.tree_map_params(
      optimizer,
      lambda leaf, n: shard_bytes(n, leaf.shape, leaf.dtype, mesh, rules),
      opt_state, names,
      transform_non_params=lambda leaf: leaf.size * leaf.dtype.itemsize,
      is_leaf=lambda x: isinstance(x, tuple) and all(
          isinstance(a, str) or a is None for a in x))
  return sum(jax.tree.leaves(sizes))


def kv_cache_bytes(config: models.ModelConfig, rows: int, seq: int,
                   mesh: MeshSpec, rules: sharding_lib.Rules) -> int:
  """Per-device bytes of the rollout cache (models.init_cache layout: one
  k and one v buffer per layer in the compute dtype, pos int32 and valid
  bool [B, S], the int32 write index), sharded as models.CACHE_AXES."""
  k_shape, v_shape = models.cache_shapes(config, rows, seq)
  axes = models.CACHE_AXES
  return (config.num_layers *
          (shard_bytes(axes["k"], k_shape, config.dtype, mesh, rules) +
           shard_bytes(axes["v"], v_shape, config.dtype, mesh, rules)) +
          shard_bytes(axes["pos"], (rows, seq), jnp.int32, mesh, rules) +
          shard_bytes(axes["valid"], (rows, seq), bool, mesh, rules) + 4)


def decode_state_bytes(config: models.ModelConfig, rows: int, seq: int,
                       mesh: MeshSpec, rules: sharding_lib.Rules) -> int:
  """The sampler's state next to the cache (sampling/decode.py init_state):
  tokens, turn ids, log-probs [B, S], next position, last token and done
  flags [B], and the last logits float32[B, V]."""
  row = ("batch", "cache_length")
  return (3 * shard_bytes(row, (rows, seq), jnp.int32, mesh, rules) +
          2 * shard_bytes(("batch",), (rows,), jnp.int32, mesh, rules) +
          shard_bytes(("batch",), (rows,), bool, mesh, rules) +
          shard_bytes(("batch", None), (rows, config.vocab_size),
                      jnp.float32, mesh, rules))


def prefill_bytes(config: models.ModelConfig, workload: Workload,
                  mesh: MeshSpec, rules: sharding_lib.Rules) -> int:
  """The prompt prefill's largest live pair: attention scores and
  probabilities float32[b, H, T, S] of one layer, T = prompt tokens
  (seq - decode_steps), S = cache slots, b and H per device."""
  b = shard_shape(("batch",), (workload.rows,), mesh, rules)[0]
  heads = shard_shape(("act_heads",), (config.num_heads,), mesh, rules)[0]
  prompt = max(workload.seq - workload.decode_steps, 1)
  return 2 * b * heads * prompt * workload.seq * 4


# -- activations ------------------------------------------------------------


def local_config(config: models.ModelConfig, mesh: MeshSpec,
                 rules: sharding_lib.Rules) -> models.ModelConfig:
  """The model one device computes: heads, kv heads and MLP width divided by
  the mesh axes their activations are sharded over (when they divide)."""
  def local(name, size):
    return shard_shape((name,), (size,), mesh, rules)[0]
  heads = local("act_heads", config.num_heads)
  kv_heads = local("act_kv_heads", config.num_kv_heads)
  # A replicated kv head next to sharded query heads (MQA under tensor
  # parallelism): each device holds the kv heads its query groups use.
  kv_heads = math.gcd(kv_heads, heads)
  return config.replace(num_heads=heads, num_kv_heads=kv_heads,
                        hidden_dim=local("act_mlp", config.hidden_dim))


def saved_residuals(config: models.ModelConfig, rows: int,
                    seq: int) -> list[int]:
  """Sizes (bytes) of what autodiff keeps from the forward (tokens -> final
  hidden) of `config` for its backward, params excluded: what the scanned
  layers stack per layer under config.remat_policy, plus the embedding and
  the final norm. Traced abstractly; nothing is allocated."""
  model = models.Transformer(config)
  params = nn.unbox(models.abstract_params(config))
  tokens = jax.ShapeDtypeStruct((rows, seq), jnp.int32)
  mask = jax.ShapeDtypeStruct((rows, seq), bool)

  def forward(p, t, pos, m):
    h, _ = model.apply({"params": p}, t, pos, m, return_hidden=True)
    return jnp.sum(h.astype(jnp.float32))

  residuals = _ad_checkpoint.saved_residuals(forward, params, tokens, tokens,
                                             mask)
  return [aval.size * aval.dtype.itemsize for aval, why in residuals
          if not why.startswith("from the argument")]


def per_layer_residual_bytes(config: models.ModelConfig, rows: int,
                             seq: int) -> tuple[int, int, int]:
  """(bytes per layer, bytes outside the layers, bytes of the two largest
  residuals) of `saved_residuals`, from depth-1 and depth-2 traces: the
  layers are one scan with the same shapes in every layer, so the sum is
  linear in depth."""
  one = saved_residuals(config.replace(num_layers=1), rows, seq)
  two = sum(saved_residuals(config.replace(num_layers=2), rows, seq))
  return two - sum(one), 2 * sum(one) - two, sum(sorted(one)[-2:])


def activation_bytes(config: models.ModelConfig, workload: Workload,
                     mesh: MeshSpec, rules: sharding_lib.Rules
                     ) -> dict[str, int]:
  """Per-device bytes of the train step's activations for one micro-batch.

  * saved: residuals of all layers under the remat policy (nothing but each
    layer's input under 'full'), alive from the forward to the backward;
  * hidden: final hidden states of policy and reference and the policy's
    cotangent, [b, L, D] each;
  * gathered: one layer's weights gathered over the FSDP axis, and their
    gradient before it is reduce-scattered;
  * logits: one chunk's float32 [b, C, V] logits, log-probs and probs of the
    policy, the reference's logits and log-probs, and the cotangent (six),
    split as the vocabulary-parallel loss splits them
    (`sharding.vocab_rows`: the rows over 'data' only, the vocabulary over
    'tensor' and 'fsdp', where the vocabulary size allows);
  * layer: one layer's working set in its backward pass. The two largest
    residuals (attention scores and probabilities, [b, K, G, L, L] float32
    each) get cotangents of their size; under a remat policy the layer is
    recomputed first, so the pair itself is live again too.

  The logits chunk's backward finishes before the layers' backward starts,
  so only the larger of 'logits' and 'layer' counts (`activation_total`).
  """
  rows = workload.rows // workload.micro_batches
  b = shard_shape(("batch",), (rows,), mesh, rules)[0]
  L = workload.seq
  local = local_config(config, mesh, rules)
  per_layer, outside, _ = per_layer_residual_bytes(local, b, L)
  _, _, pair = per_layer_residual_bytes(local.replace(remat_policy="none"), b,
                                        L)
  layer = pair if config.remat_policy == "none" else 2 * pair
  dt = jnp.dtype(config.dtype).itemsize
  chunk = workload.logits_chunk or max(L - 1, 1)
  vocab_rows = sharding_lib.vocab_rows(config.vocab_size, mesh.abstract(),
                                       rules)
  logits = shard_shape((vocab_rows, "length", "act_vocab"),
                       (rows, chunk, config.vocab_size), mesh, rules)
  # Weights of one layer as the FSDP all-gather leaves them.
  one_layer = layer_param_bytes(config, _gathered_over_fsdp(mesh), rules)
  gathered = 2 * one_layer if mesh.shape[1] > 1 else 0
  return {
      "saved": config.num_layers * per_layer + outside,
      "hidden": 3 * b * L * config.embed_dim * dt,
      "gathered": gathered,
      "logits": (6 * math.prod(logits) * 4 +
                 _output_layer_work(config, mesh, rules, vocab_rows,
                                    logits[0] < rows)),
      "layer": layer,
  }


def _gathered_over_fsdp(mesh: MeshSpec) -> MeshSpec:
  """The mesh as an FSDP all-gather leaves a weight: whole over 'fsdp' (and
  'data'), still split over 'tensor'."""
  return dataclasses.replace(mesh, shape=(1, 1, mesh.shape[2]))


def _output_layer_work(config: models.ModelConfig, mesh: MeshSpec,
                       rules: sharding_lib.Rules, vocab_rows: str,
                       rows_split: bool) -> int:
  """What the output layer adds to one logits chunk's working set, beyond
  the gradient buffer `grads` counts (which accumulates the chunks).
  Vocabulary-parallel, each chunk's gradient of a device's own rows of the
  table is one buffer of the table's shard size; where the batch rows are
  split (over 'data') it is a partial sum, all-reduced into a second. Where
  the vocabulary size rules that out (`sharding.vocab_rows` gives 'batch'),
  the table is gathered over 'fsdp' for each chunk and its gradient made at
  that size before it is reduced, as for a layer's weights ('gathered')."""
  shape, names = (config.vocab_size, config.embed_dim), ("vocab", "vocab_embed")
  if vocab_rows == "batch" and mesh.shape[1] > 1:
    return 2 * shard_bytes(names, shape, config.param_dtype,
                           _gathered_over_fsdp(mesh), rules)
  return ((1 + rows_split) *
          shard_bytes(names, shape, config.param_dtype, mesh, rules))


def activation_total(activations: dict[str, int]) -> int:
  """Peak of `activation_bytes`: the logits and layer phases do not overlap."""
  return (activations["saved"] + activations["hidden"] +
          activations["gathered"] +
          max(activations["logits"], activations["layer"]))


# -- the plan ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Plan:
  """Per-device bytes of one config on one mesh (see the module docstring).

  grads: the gradient buffers of the forward/backward (the accumulator, and
  with micro-batches the current micro-batch's gradient too). update: the
  optimizer step's temporaries (gradients and updates, two param copies),
  alive after the activations are gone. prefill: the prompt prefill's
  attention working set, next to the cache while sampling.
  """
  mesh: MeshSpec
  params: int
  opt_state: int
  reference: int
  kv_cache: int
  decode_state: int
  prefill: int
  grads: int
  update: int
  activations: dict[str, int]

  @property
  def resident(self) -> int:
    return self.params + self.opt_state + self.reference

  @property
  def sampling(self) -> int:
    return (self.resident + self.kv_cache + self.decode_state +
            self.prefill)

  @property
  def training(self) -> int:
    return self.resident + max(self.grads + activation_total(self.activations),
                               self.update)

  @property
  def peak(self) -> int:
    return max(self.sampling, self.training)

  @property
  def fits(self) -> Optional[bool]:
    if self.mesh.chip.hbm_gib is None:
      return None
    return self.peak <= self.mesh.chip.hbm_gib * GIB


def make_plan(config: models.ModelConfig, mesh: MeshSpec, workload: Workload,
              rules: sharding_lib.Rules = sharding_lib.DEFAULT_RULES,
              optimizer: Optional[optax.GradientTransformation] = None
              ) -> Plan:
  """Everything one device holds for `config` trained on `mesh`."""
  params = param_bytes(config, mesh, rules)
  return Plan(
      mesh=mesh,
      params=params,
      opt_state=opt_state_bytes(config, mesh, rules, optimizer),
      reference=params,
      kv_cache=kv_cache_bytes(config, workload.rows, workload.seq, mesh,
                              rules),
      decode_state=decode_state_bytes(config, workload.rows, workload.seq,
                                      mesh, rules),
      prefill=prefill_bytes(config, workload, mesh, rules),
      grads=params * (2 if workload.micro_batches > 1 else 1),
      update=2 * params,
      activations=activation_bytes(config, workload, mesh, rules))


def device_memory_limit(device: Optional[jax.Device] = None) -> Optional[int]:
  """Bytes one device may use: an accelerator's allocator limit; on CPU the
  host's available memory (Linux MemAvailable) split over its local CPU
  devices, which share it. None where unknown."""
  device = device or jax.local_devices()[0]
  if device.platform == "cpu":
    try:
      with open("/proc/meminfo") as f:
        fields = dict(line.split(":", 1) for line in f)
      available = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
      return None
    return available // jax.local_device_count()
  try:
    return (device.memory_stats() or {}).get("bytes_limit")
  except Exception:  # pylint: disable=broad-except
    return None  # backends without memory statistics


# -- time model -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StepTime:
  """Seconds of one step. sample: prefill (compute bound) + decode (HBM
  bound: every decode step reads the weights and the whole cache). update:
  policy forward + backward (+ one more forward under remat) + the
  reference forward, at `mfu` of peak."""
  prefill: float
  decode: float
  update: float

  @property
  def sample(self) -> float:
    return self.prefill + self.decode


def step_time(config: models.ModelConfig, mesh: MeshSpec, workload: Workload,
              rules: sharding_lib.Rules = sharding_lib.DEFAULT_RULES,
              mfu: float = 0.4) -> Optional[StepTime]:
  """The per-step time model (None for a chip without published numbers).

  N = all params (embeddings included). Decode step bytes per device: the
  weights in the compute dtype as one device reads them after the FSDP
  all-gather (split over 'tensor' only) plus its whole cache shard (the
  decoder attends over every slot, masked). FLOPs: 2N per token forward,
  4N backward, 2N more under any remat policy, 2N for the reference.
  """
  chip = mesh.chip
  if chip.peak_flops is None or chip.hbm_bandwidth is None:
    return None
  if not 0 < mfu <= 1:
    raise ValueError(f"mfu must be in (0, 1], got {mfu}")
  n = models.count_params(config)
  flops_per_s = mesh.num_devices * chip.peak_flops * mfu
  prompt_tokens = workload.rows * max(workload.seq - workload.decode_steps, 0)
  gathered = dataclasses.replace(mesh, shape=(1, 1, mesh.shape[2]))
  weights = param_bytes(config, gathered, rules, dtype=config.dtype)
  cache = kv_cache_bytes(config, workload.rows, workload.seq, mesh, rules)
  per_token = 6 + (2 if config.remat_policy != "none" else 0) + 2
  return StepTime(
      prefill=2 * n * prompt_tokens / flops_per_s,
      decode=workload.decode_steps * (weights + cache) / chip.hbm_bandwidth,
      update=per_token * n * workload.rows * workload.seq / flops_per_s)


# -- report -----------------------------------------------------------------

TABLE_PRESETS = ("gemma-2b", "gemma-7b", "gemma2-9b", "gemma2-27b")

_COLUMNS = ("model", "mesh", "params", "adam", "ref", "kv cache", "grads",
            "activations", "sampling", "training", "HBM", "fits",
            "t_sample s", "t_update s")


def _gib(n: int) -> str:
  return f"{n / GIB:.2f}"


def human(n: int) -> str:
  """Bytes as MiB below 1 GiB, else GiB."""
  return f"{n / GIB:.2f} GiB" if n >= GIB else f"{n / 2**20:.2f} MiB"


def table_row(name: str, plan: Plan, time: Optional[StepTime]) -> list[str]:
  hbm = plan.mesh.chip.hbm_gib
  fits = {None: "?", True: "yes", False: "NO"}[plan.fits]
  return [name, f"{plan.mesh.name} {'x'.join(map(str, plan.mesh.shape))}",
          _gib(plan.params), _gib(plan.opt_state), _gib(plan.reference),
          _gib(plan.kv_cache + plan.decode_state), _gib(plan.grads),
          _gib(activation_total(plan.activations)), _gib(plan.sampling),
          _gib(plan.training), "?" if hbm is None else f"{hbm:g}", fits,
          "?" if time is None else f"{time.sample:.1f}",
          "?" if time is None else f"{time.update:.1f}"]


def markdown_table(rows: list[list[str]]) -> str:
  """A Markdown table of `table_row`s (GiB per device, seconds per step)."""
  lines = ["| " + " | ".join(_COLUMNS) + " |",
           "|" + "|".join("---" for _ in _COLUMNS) + "|"]
  lines += ["| " + " | ".join(r) + " |" for r in rows]
  return "\n".join(lines)


def describe(plan: Plan) -> str:
  """A per-device breakdown of one plan, one line per item."""
  a = {k: human(v) for k, v in plan.activations.items()}
  act = (f"saved {a['saved']} + hidden {a['hidden']} + gathered "
         f"{a['gathered']} + max(logits {a['logits']}, layer {a['layer']})")
  hbm = plan.mesh.chip.hbm_gib
  verdict = ("no HBM size given (--hbm_gib)" if plan.fits is None else
             f"{'fits' if plan.fits else 'does NOT fit'} in {hbm:g} GiB")
  return "\n".join([
      f"mesh {plan.mesh.name}: (data, fsdp, tensor) = {plan.mesh.shape}, "
      f"{plan.mesh.num_devices} x {plan.mesh.chip.name}",
      f"  policy params      {human(plan.params)}",
      f"  Adam moments       {human(plan.opt_state)}",
      f"  reference params   {human(plan.reference)}",
      f"  rollout KV cache   {human(plan.kv_cache)} "
      f"(+ decode state {human(plan.decode_state)}, prefill attention "
      f"{human(plan.prefill)})",
      f"  gradients          {human(plan.grads)} "
      f"(optimizer update temporaries {human(plan.update)})",
      f"  activations        {human(activation_total(plan.activations))} "
      f"per micro-batch ({act})",
      f"  peak while sampling {human(plan.sampling)}, while updating "
      f"{human(plan.training)} -> {verdict}",
  ])


# -- check against the compiler ---------------------------------------------


def compiled_memory(config: models.ModelConfig, shape: Sequence[int],
                    workload: Workload,
                    rules: sharding_lib.Rules = sharding_lib.DEFAULT_RULES,
                    k: int = 2) -> tuple[Any, int]:
  """Compiles the real sharded Stage I train step (rl/step.py) for abstract
  inputs on the local devices laid out as `shape`; returns XLA's
  `memory_analysis()` (per device) and the per-device bytes of the batch
  arguments. k: samples per prompt (RLOO groups). Nothing is allocated or
  run."""
  ctx = sharding_lib.ShardingCtx(sharding_lib.make_mesh(tuple(shape)), rules)
  model = models.Transformer(config, sharding=ctx)
  optimizer = state_lib.make_optimizer(state_lib.OptimizerConfig())
  params = nn.unbox(models.abstract_params(config))
  state = jax.eval_shape(lambda p: state_lib.init_state(p, optimizer), params)
  param_sh = models.param_shardings(config, ctx)
  state_sh = state_lib.state_shardings(state, param_sh, optimizer, ctx)
  rows, length = workload.rows, workload.seq
  s = jax.ShapeDtypeStruct
  batch = {"tokens": s((rows, length), jnp.int32),
           "valid": s((rows, length), bool),
           "positions": s((rows, length), jnp.int32),
           "turn_masks": s((2, rows, length), bool),
           "rewards": s((2, rows), jnp.float32)}
  batch_sh = step_lib.batch_shardings(batch, ctx)
  fn = step_lib.make_train_step(
      model, losses.LossConfig(stage="stage1", k=k), optimizer,
      step_lib.StepConfig(workload.micro_batches, workload.logits_chunk))
  jitted = step_lib.jit_train_step(fn, state_sh, param_sh, batch_sh, ctx)
  compiled = jitted.lower(state, params, batch, s((), jnp.float32)).compile()
  batch_bytes = sum(math.prod(sh.shard_shape(x.shape)) * x.dtype.itemsize
                    for sh, x in zip(jax.tree.leaves(batch_sh),
                                     jax.tree.leaves(batch)))
  return compiled.memory_analysis(), batch_bytes


def check_report(plan: Plan, memory: Any, batch_bytes: int) -> str:
  """Planner vs compiler, per device: arguments (state + reference + batch +
  learning rate) and temporaries (gradients + activations)."""
  args = plan.params + plan.opt_state + plan.reference + batch_bytes + 4
  temp = plan.grads + activation_total(plan.activations)
  xla_args, xla_temp = memory.argument_size_in_bytes, memory.temp_size_in_bytes
  return "\n".join([
      "planner vs XLA memory_analysis() of the compiled train step:",
      f"  arguments    {human(args)} vs {human(xla_args)} "
      f"({args / xla_args - 1:+.1%})",
      f"  temporaries  {human(temp)} vs {human(xla_temp)} "
      f"({temp / xla_temp - 1:+.1%})",
  ])
