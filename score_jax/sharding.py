"""Device mesh, logical axis rules, and the shardings built from them.

Every parameter and main activation carries logical axis names ('embed',
'heads', 'batch', ...). One rules table maps each logical name to mesh axes of
the mesh ('data', 'fsdp', 'tensor'). A mesh axis is used for a dimension only if
it divides that dimension and is not already taken by another dimension of the
same array whose rule comes first in the table (the order of precedence, as in
flax's rules), so e.g. a single KV head (MQA) is replicated, not an error.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional, Sequence, Union

from absl import logging
import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")

MeshAxes = Union[None, str, tuple[str, ...]]
Rules = tuple[tuple[str, MeshAxes], ...]

# Logical name -> mesh axes. Parameters: FSDP over 'embed', tensor parallel
# over heads / MLP. Activations: batch over the data axes, the per-head and
# MLP dimensions over 'tensor'. The config carries a copy of this table
# (`config.sharding.rules`) that users may edit.
#
# The vocabulary tables are vocabulary-parallel: split by rows over 'tensor'
# and 'fsdp', each row whole ('vocab_embed' takes 'fsdp' only where the
# vocabulary size does not divide by it). The embedding lookup and the
# logits (`Transformer.logits`; sampling resplits them over the batch after)
# work on a device's own rows of the table, for all the batch rows of its
# 'data' shard ('act_vocab_rows'), so no device holds a whole V x D table or
# a whole gradient of one (docs/SCALING.md).
DEFAULT_RULES: Rules = (
    ("batch", ("data", "fsdp")),
    ("vocab", ("tensor", "fsdp")),
    ("embed", "fsdp"),
    ("vocab_embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("layers", None),
    ("norm", None),
    ("length", None),
    ("cache_length", None),
    ("act_embed", None),
    ("act_heads", "tensor"),
    ("act_kv_heads", "tensor"),
    ("act_mlp", "tensor"),
    ("act_vocab", ("tensor", "fsdp")),
    ("act_vocab_rows", "data"),
)


def make_mesh(shape: Sequence[int] = (1, -1, 1),
              axis_names: Sequence[str] = MESH_AXES,
              devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """Builds a mesh of `shape` (one entry may be -1: it takes what is left)."""
  devices = list(jax.devices() if devices is None else devices)
  shape = list(shape)
  if len(shape) != len(axis_names):
    raise ValueError(f"mesh shape {tuple(shape)} does not match axes "
                     f"{tuple(axis_names)}")
  if shape.count(-1) > 1:
    raise ValueError(f"mesh shape {tuple(shape)}: at most one -1 is allowed")
  known = math.prod(s for s in shape if s != -1)
  if -1 in shape:
    if known <= 0 or len(devices) % known:
      raise ValueError(f"mesh shape {tuple(shape)} does not divide "
                       f"{len(devices)} devices")
    shape[shape.index(-1)] = len(devices) // known
  if math.prod(shape) > len(devices):
    raise ValueError(f"mesh shape {tuple(shape)} needs {math.prod(shape)} "
                     f"devices, {len(devices)} are available")
  if math.prod(shape) < len(devices):
    logging.warning("mesh shape %s uses %d of %d devices", tuple(shape),
                    math.prod(shape), len(devices))
    devices = devices[:math.prod(shape)]
  try:  # Topology-aware order on TPU/GPU; plain order elsewhere.
    from jax.experimental import mesh_utils
    grid = mesh_utils.create_device_mesh(shape, devices,
                                         allow_split_physical_axes=True)
  except Exception:  # pylint: disable=broad-except
    grid = np.asarray(devices, dtype=object).reshape(shape)
  return Mesh(grid, tuple(axis_names))


def _as_tuple(axes: MeshAxes) -> tuple[str, ...]:
  if axes is None:
    return ()
  return (axes,) if isinstance(axes, str) else tuple(axes)


def logical_to_spec(names: Sequence[Optional[str]], shape: Sequence[int],
                    mesh: Mesh, rules: Rules) -> P:
  """Resolves logical axis names of an array of `shape` to a PartitionSpec.

  Dimensions claim mesh axes in the order of their rules in `rules`, not in
  the array's order: the vocabulary tables' rows ('vocab') come before their
  'vocab_embed' whichever way round a table is stored.
  """
  table = dict(rules)
  for name in names:
    if name is not None and name not in table:
      raise KeyError(f"logical axis {name!r} has no rule; known: "
                     f"{sorted(table)}")
  precedence = {name: i for i, (name, _) in enumerate(rules)}
  used: set[str] = set()
  spec: list[MeshAxes] = [None] * len(names)
  for dim in sorted((d for d, name in enumerate(names) if name is not None),
                    key=lambda d: precedence[names[d]]):
    axes = [a for a in _as_tuple(table[names[dim]]) if a not in used]
    # Keep the longest prefix of mesh axes whose product divides the size.
    while axes and shape[dim] % math.prod(mesh.shape[a] for a in axes):
      axes.pop()
    axes = [a for a in axes if mesh.shape[a] > 1]
    used.update(axes)
    spec[dim] = (None if not axes else axes[0] if len(axes) == 1 else
                 tuple(axes))
  return P(*spec)


@dataclasses.dataclass(frozen=True)
class ShardingCtx:
  """A mesh and its rules: what a module needs to constrain activations."""

  mesh: Mesh
  rules: Rules = DEFAULT_RULES

  def sharding(self, names: Sequence[Optional[str]],
               shape: Sequence[int]) -> NamedSharding:
    return NamedSharding(self.mesh,
                         logical_to_spec(names, shape, self.mesh, self.rules))


def vocab_rows(vocab_size: int, mesh: Union[Mesh, jax.sharding.AbstractMesh],
               rules: Rules = DEFAULT_RULES) -> str:
  """The logical name for the batch rows of a vocabulary-parallel op.

  'act_vocab_rows' where the vocabulary tables' rows ('vocab') are split
  over every mesh axis that 'batch' uses and 'act_vocab_rows' does not (a
  device then looks up, or computes logits for, its own vocabulary rows for
  all the batch rows of its 'data' shard); 'batch' where the vocabulary size
  leaves one of them out, so that the rows stay split over it.
  """
  table = dict(rules)
  vocab = logical_to_spec(("vocab",), (vocab_size,), mesh, rules)[0]
  left_out = (set(_as_tuple(table.get("batch"))) -
              set(_as_tuple(table.get("act_vocab_rows"))))
  left_out = {a for a in left_out if mesh.shape[a] > 1}
  return "act_vocab_rows" if left_out <= set(_as_tuple(vocab)) else "batch"


def constrain(x: jax.Array, names: Sequence[Optional[str]],
              ctx: Optional[ShardingCtx]) -> jax.Array:
  """Sharding constraint on an activation by logical names (no-op if no ctx)."""
  if ctx is None:
    return x
  return jax.lax.with_sharding_constraint(x, ctx.sharding(names, x.shape))


def logical_names(boxed_tree: Any) -> Any:
  """Logical axis names of each leaf of a tree of flax-partitioned values."""
  return nn.get_partition_spec(boxed_tree)


def tree_shardings(abstract_boxed: Any, ctx: ShardingCtx) -> Any:
  """NamedShardings for a tree of (abstract) LogicallyPartitioned leaves.

  Unboxed leaves (no names) are replicated.
  """

  def one(leaf):
    if isinstance(leaf, nn.LogicallyPartitioned):
      return ctx.sharding(leaf.names, leaf.value.shape)
    return NamedSharding(ctx.mesh, P())

  return jax.tree.map(one, abstract_boxed,
                      is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))


def batch_sharding(ctx: ShardingCtx, shape: Sequence[int]) -> NamedSharding:
  """Sharding of a batch-major array: dim 0 over the data axes, rest whole."""
  return ctx.sharding(("batch",) + (None,) * (len(shape) - 1), shape)


def process_rows(sharding: jax.sharding.Sharding, shape: Sequence[int],
                 axis: int = 0,
                 process: Optional[int] = None) -> tuple[int, int]:
  """[start, stop): the indices along `axis` that `process`'s devices hold
  (default: this process) in an array of `shape` under `sharding`.

  One process holds everything; so does every process when `axis` is not
  split over processes (replicated). Raises ValueError if the process's
  indices are not one contiguous block (a mesh whose device order
  interleaves hosts along the batch): a host's rows must be one slice.
  """
  shape = tuple(shape)
  process = jax.process_index() if process is None else process
  spans = sorted({
      (index[axis].start or 0,
       shape[axis] if index[axis].stop is None else index[axis].stop)
      for device, index in sharding.devices_indices_map(shape).items()
      if device.process_index == process})
  if not spans:
    raise ValueError(f"process {process} holds no device of {sharding}")
  stop = spans[0][0]
  for lo, hi in spans:
    if lo > stop:
      raise ValueError(
          f"process {process} holds indices {spans} of axis {axis} of an "
          f"array of shape {shape} under {sharding}: not one contiguous "
          "block; order the mesh's devices by host along the batch axes")
    stop = max(stop, hi)
  return spans[0][0], stop


def host_rows(x: jax.Array, axis: int = 0) -> np.ndarray:
  """This process's block `process_rows(x.sharding, x.shape, axis)` of a
  (possibly multi-process) array, as numpy: all of `x` in one process."""
  if x.is_fully_addressable:
    return np.asarray(x)
  lo, hi = process_rows(x.sharding, x.shape, axis)
  out = np.empty(x.shape[:axis] + (hi - lo,) + x.shape[axis + 1:], x.dtype)
  for shard in x.addressable_shards:
    index = list(shard.index)
    at = index[axis]
    index[axis] = slice((at.start or 0) - lo,
                        (x.shape[axis] if at.stop is None else at.stop) - lo)
    out[tuple(index)] = np.asarray(shard.data)
  return out


def replicated(ctx: ShardingCtx) -> NamedSharding:
  return NamedSharding(ctx.mesh, P())


def init_sharded(init_fn, ctx: ShardingCtx, *args) -> Any:
  """Runs `init_fn(*args)` (returning flax-partitioned params) so that every
  parameter is created directly in its sharding: no full copy on one device.

  Returns the unboxed params.
  """
  abstract = jax.eval_shape(init_fn, *args)
  shardings = tree_shardings(abstract, ctx)
  return jax.jit(lambda *a: nn.unbox(init_fn(*a)), out_shardings=shardings)(
      *args)
