"""Multi-host start-up: when to call `jax.distributed.initialize`, and how.

JAX's multi-controller runtime runs one process per host; every process must
call `jax.distributed.initialize` before its first JAX computation. This module
decides whether that call is needed and with which arguments:

* explicit flags (`--coordinator_address=host:port --num_processes=N
  --process_id=i`) win;
* otherwise an environment that JAX itself bootstraps from (JAX 0.10 reads
  Cloud TPU VMs and pod slices via the metadata server or GKE's
  `TPU_WORKER_HOSTNAMES`, SLURM `srun` steps, and Open MPI `mpirun`) is
  detected, and JAX fills in the arguments. Kubernetes and mpi4py, which JAX
  can also read, are not guessed: `KUBERNETES_SERVICE_HOST` is set in every
  pod, even a single-process one. Pass the flags there;
* a single process (no flags, no cluster, or `num_processes=1`) needs nothing.

`plan()` is the pure decision (environment in, `Plan` out) so it can be tested
without starting anything; `initialize()` carries it out.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import pathlib
import re
from typing import Any, Callable, Mapping, Optional
import zlib

import jax
import numpy as np

# Google's PCI vendor id and the device ids of TPU chips (v3 .. 7x), as in
# JAX's own probe. The vendor id alone also matches gVNIC network cards on
# every GCE VM, so the device id matters.
_GOOGLE_PCI_VENDOR = "0x1ae0"
_TPU_PCI_DEVICES = frozenset(
    {"0x0027", "0x0056", "0x005e", "0x0062", "0x0063", "0x006f", "0x0076"})
_SLURM_VARS = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS",
               "SLURM_PROCID", "SLURM_LOCALID")
_OMPI_URI = "OMPI_MCA_orte_hnp_uri"
_GKE_TPU_VARS = ("TPU_WORKER_HOSTNAMES", "TPU_PROCESS_ADDRESSES")
_ADDRESS = re.compile(r"^(?P<host>\[[0-9a-fA-F:.]+\]|[^\s:\[\]]+):(?P<port>\d+)$")


@dataclasses.dataclass(frozen=True)
class Plan:
  """What `initialize` does.

  source: 'single' (nothing to do), 'flags', 'tpu', 'slurm', 'ompi', or
    'running' (a repeated call: the runtime was already up).
  The other fields are what is passed to `jax.distributed.initialize`; None
  means JAX reads it from the environment (`source` names which).
  """

  source: str
  coordinator_address: Optional[str] = None
  num_processes: Optional[int] = None
  process_id: Optional[int] = None

  @property
  def multi_process(self) -> bool:
    return self.source != "single"


def _pci_tpu_chips(root: str = "/sys/bus/pci/devices") -> int:
  """Counts TPU chips among the PCI devices under `root`."""
  chips = 0
  for device in glob.glob(os.path.join(root, "*")):
    try:
      vendor = pathlib.Path(device, "vendor").read_text().strip()
      ident = pathlib.Path(device, "device").read_text().strip()
    except OSError:
      continue
    chips += vendor == _GOOGLE_PCI_VENDOR and ident in _TPU_PCI_DEVICES
  return chips


def _has_tpu_chips() -> bool:
  """True on a Cloud TPU VM: TPU chips are attached through PCI."""
  try:  # JAX's probe knows the newest chips; private, so keep a fallback.
    from jax._src import hardware_utils  # pylint: disable=g-import-not-at-top
    return hardware_utils.num_available_tpu_chips_and_device_id()[0] > 0
  except (ImportError, AttributeError):
    return _pci_tpu_chips() > 0


def _int_env(environ: Mapping[str, str], name: str) -> int:
  value = environ[name]
  try:
    return int(value)
  except ValueError:
    raise ValueError(f"environment variable {name}={value!r} is not an "
                     "integer") from None


def detect_cluster(environ: Mapping[str, str],
                   has_tpu_chips: Callable[[], bool] = _has_tpu_chips
                   ) -> Optional[str]:
  """Names the multi-process environment JAX can bootstrap from, if any.

  Returns 'slurm', 'ompi' or 'tpu', or None when there is none or it holds a
  single process (a one-task SLURM job, `mpirun -n 1`).
  """
  if _OMPI_URI in environ and "OMPI_COMM_WORLD_SIZE" in environ:
    if _int_env(environ, "OMPI_COMM_WORLD_SIZE") > 1:
      return "ompi"
    return None
  if all(var in environ for var in _SLURM_VARS):
    if _int_env(environ, "SLURM_NTASKS") > 1:
      return "slurm"
    return None
  if any(environ.get(var) for var in _GKE_TPU_VARS) or has_tpu_chips():
    # A single-host TPU VM is also "detected": JAX then reads one worker from
    # the metadata server and initialises a one-process system, which is
    # harmless and keeps one code path for every slice size.
    return "tpu"
  return None


# A cluster's own process count and index, by the name detect_cluster gives.
_CLUSTER_COUNTS = {"slurm": ("SLURM_NTASKS", "SLURM_PROCID"),
                   "ompi": ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK")}


def _check_against_cluster(cluster: Optional[str],
                           environ: Mapping[str, str],
                           num_processes: Optional[int],
                           process_id: Optional[int]) -> None:
  """Flags that contradict the SLURM / Open MPI job they run in are an
  error: the processes would wait for ones that never come, or (with
  --num_processes=1) each train alone on the same workdir."""
  if cluster not in _CLUSTER_COUNTS:
    return  # a TPU slice's are read from its metadata, or none
  size_var, rank_var = _CLUSTER_COUNTS[cluster]
  for flag, value, var in (("num_processes", num_processes, size_var),
                           ("process_id", process_id, rank_var)):
    if value is not None and var in environ and (
        _int_env(environ, var) != value):
      raise ValueError(f"--{flag}={value} contradicts {var}={environ[var]} "
                       f"of this {cluster} job; drop the flag to take the "
                       "job's")


def parse_address(address: str) -> tuple[str, int]:
  """Splits 'host:port' (or '[ipv6]:port') into (host, port); clear errors."""
  match = _ADDRESS.match(address.strip()) if isinstance(address, str) else None
  if not match:
    raise ValueError(f"coordinator_address {address!r} must be 'host:port', "
                     "e.g. '10.0.0.2:8476' or '[::1]:8476'")
  port = int(match["port"])
  if not 0 < port < 65536:
    raise ValueError(f"coordinator_address {address!r}: port {port} is not "
                     "in 1..65535")
  return match["host"], port


def plan(coordinator_address: Optional[str] = None,
         num_processes: Optional[int] = None,
         process_id: Optional[int] = None,
         environ: Optional[Mapping[str, str]] = None,
         has_tpu_chips: Callable[[], bool] = _has_tpu_chips) -> Plan:
  """Decides whether and how to initialise JAX's distributed runtime.

  Args:
    coordinator_address: 'host:port' of process 0's coordinator service
      (default: $JAX_COORDINATOR_ADDRESS).
    num_processes: total number of processes (hosts), >= 1.
    process_id: this process's index in [0, num_processes).
    environ: the environment to read (default `os.environ`).
    has_tpu_chips: probe for a Cloud TPU VM (replaced in tests).

  Raises:
    ValueError: naming the bad or missing argument.
  """
  environ = os.environ if environ is None else environ
  # JAX itself falls back to this variable; decide with what JAX will use.
  if coordinator_address is None:
    coordinator_address = environ.get("JAX_COORDINATOR_ADDRESS") or None
  if coordinator_address is not None:
    parse_address(coordinator_address)
  if num_processes is not None:
    if not isinstance(num_processes, int) or num_processes < 1:
      raise ValueError(f"num_processes must be an integer >= 1, got "
                       f"{num_processes!r}")
  if process_id is not None:
    if not isinstance(process_id, int) or process_id < 0:
      raise ValueError(f"process_id must be an integer >= 0, got "
                       f"{process_id!r}")
    if num_processes is not None and process_id >= num_processes:
      raise ValueError(f"process_id {process_id} is out of range for "
                       f"num_processes={num_processes} (valid: 0.."
                       f"{num_processes - 1})")
  cluster = detect_cluster(environ, has_tpu_chips)
  _check_against_cluster(cluster, environ, num_processes, process_id)
  if num_processes == 1:
    return Plan("single", coordinator_address, 1, 0)

  given = (coordinator_address, num_processes, process_id)
  if all(v is not None for v in given):
    return Plan("flags", coordinator_address, num_processes, process_id)
  if cluster is not None:
    # Explicit values override what JAX would read from the cluster.
    return Plan(cluster, coordinator_address, num_processes, process_id)
  if any(v is not None for v in given):
    names = ("coordinator_address", "num_processes", "process_id")
    missing = [f"--{n}" for n, v in zip(names, given) if v is None]
    raise ValueError(
        f"multi-process start needs {', '.join(missing)} as well (all of "
        "--coordinator_address=host:port, --num_processes, --process_id), "
        "or a TPU pod / SLURM / Open MPI environment that provides them")
  return Plan("single")


def _check_matches(p: Plan) -> None:
  """Second call: the runtime is up; refuse arguments that contradict it."""
  if p.num_processes is not None and p.num_processes != jax.process_count():
    raise ValueError(f"jax.distributed is already initialised with "
                     f"{jax.process_count()} processes, not num_processes="
                     f"{p.num_processes}")
  if p.process_id is not None and p.process_id != jax.process_index():
    raise ValueError(f"jax.distributed is already initialised as process "
                     f"{jax.process_index()}, not process_id={p.process_id}")


def _enable_cpu_collectives() -> None:
  # Without a cross-process collectives implementation, a computation over a
  # mesh spanning several CPU processes fails. The flag only affects the CPU
  # client, so setting it costs nothing on TPU/GPU hosts; keep a user's choice
  # (e.g. 'mpi'). Older JAX versions default to 'none'.
  current = getattr(jax.config, "jax_cpu_collectives_implementation", None)
  if current in (None, "none"):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")


def initialize(coordinator_address: Optional[str] = None,
               num_processes: Optional[int] = None,
               process_id: Optional[int] = None,
               cpu_collectives: bool = True,
               initialization_timeout: int = 300) -> Plan:
  """Starts JAX's multi-process runtime when needed; returns what it decided.

  Call once at start-up, before any JAX computation (even `jax.devices()`).
  Calling again is a no-op when the arguments agree with the running system
  and an error when they contradict it.

  Args:
    coordinator_address, num_processes, process_id: see `plan`.
    cpu_collectives: switch on gloo cross-process collectives for CPU.
    initialization_timeout: seconds to wait for all processes to connect.
  """
  p = plan(coordinator_address, num_processes, process_id)
  if jax.distributed.is_initialized():
    _check_matches(p)
    return Plan("running", p.coordinator_address, jax.process_count(),
                jax.process_index())
  if not p.multi_process:
    return p
  if cpu_collectives:
    _enable_cpu_collectives()
  method = {"flags": "deactivate", "tpu": None}.get(p.source, p.source)
  try:
    jax.distributed.initialize(
        coordinator_address=p.coordinator_address,
        num_processes=p.num_processes,
        process_id=p.process_id,
        cluster_detection_method=method,
        initialization_timeout=initialization_timeout)
  except RuntimeError as e:
    if "before any JAX calls" in str(e):
      raise RuntimeError(
          "score_jax.distributed.initialize() must run before any JAX "
          "computation (including jax.devices()); move it to the start of "
          "main") from e
    raise
  return p


def is_main_process() -> bool:
  """True in process 0: the one that writes logs, reports and samples."""
  return jax.process_index() == 0


def _allgather_rows(names: list[str], row: np.ndarray) -> np.ndarray:
  """float64[P, N]: every process's `row` (float64[N]), in process order.

  A collective: checks first, in a gather of its own (fixed shape), that
  all processes pass the same `names`; rows of different lengths cannot be
  gathered. Values travel as two float32 (value and rounding residual:
  about 48 significant bits), as collectives run without 64-bit types by
  default.
  """
  row = np.asarray(row, np.float64)
  if jax.process_count() == 1:
    return row[None]
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  key = np.asarray([len(names), zlib.crc32("\0".join(names).encode())],
                   np.uint32)
  keys = np.asarray(multihost_utils.process_allgather(key))
  if not (keys == keys[0]).all():
    raise ValueError(f"processes passed different metric names (this "
                     f"process {jax.process_index()}: {names})")
  high = row.astype(np.float32)
  with np.errstate(invalid="ignore"):  # inf - inf: the residual of inf
    low = np.nan_to_num((row - high).astype(np.float32), nan=0.0)
  highs, lows = multihost_utils.process_allgather((high, low))
  return np.asarray(highs, np.float64) + np.asarray(lows, np.float64)


def gather_metrics(metrics: Mapping[str, float]) -> dict[str, np.ndarray]:
  """Every process's value of each host-side scalar metric.

  A collective: every process calls it with the same names (any order).
  Values travel with about 48 significant bits (see `_allgather_rows`).

  Returns:
    name -> float64[P], indexed by process; sum it for counts.
  Raises:
    ValueError: if processes pass different metric names.
  """
  names = sorted(metrics)
  row = np.asarray([float(metrics[n]) for n in names], np.float64)
  rows = _allgather_rows(names, row)
  return {n: rows[:, i] for i, n in enumerate(names)}


def sum_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
  """Each host-side scalar summed over all processes (a collective, like
  `gather_metrics`); in one process, the values themselves. Sum per-process
  totals and counts with it, then divide: means of unequal shards stay
  exact, where a mean of per-process means would not."""
  if jax.process_count() == 1:
    return {n: float(v) for n, v in metrics.items()}
  return {n: float(v.sum()) for n, v in gather_metrics(metrics).items()}


def gather_json(value: Any) -> list[Any]:
  """Every process's `value` (anything `json.dumps` takes), in process
  order; a collective. For host results that are not scalars: transcripts,
  per-row rewards of an evaluation."""
  if jax.process_count() == 1:
    return [value]
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  data = np.frombuffer(json.dumps(value).encode(), np.uint8)
  sizes = np.asarray(multihost_utils.process_allgather(
      np.asarray([data.size], np.int32))).reshape(-1)
  padded = np.zeros(int(sizes.max()), np.uint8)
  padded[:data.size] = data
  everyone = np.asarray(multihost_utils.process_allgather(padded))
  return [json.loads(everyone[i, :n].tobytes().decode())
          for i, n in enumerate(sizes)]


def mean_metrics(metrics: Mapping[str, float],
                 weight: Optional[float] = None) -> dict[str, float]:
  """Averages host-side scalar metrics over all processes.

  A collective, like `gather_metrics`. With `weight` (e.g. this process's
  number of examples) the mean is weighted, so per-process accuracies over
  unequal shards average to the global accuracy.

  Raises:
    ValueError: if processes pass different metric names, or the weights sum
      to <= 0.
  """
  names = sorted(metrics)
  row = np.asarray([float(metrics[n]) for n in names] +
                   [1.0 if weight is None else float(weight)], np.float64)
  rows = _allgather_rows(names, row)
  weights = rows[:, -1]
  if weights.sum() <= 0:
    raise ValueError(f"mean_metrics: weights sum to {weights.sum()}, need > 0")
  means = (rows[:, :-1] * weights[:, None]).sum(0) / weights.sum()
  return {n: float(v) for n, v in zip(names, means)}
