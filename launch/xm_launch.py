r"""XManager launcher for `score-jax train`.

The job (image, arguments, executor, resources) is built as plain data by
`build_spec`, so `--dry-run` prints it without xmanager installed; `launch`
needs it (`pip install -e ".[launch]"`).

Executors:
  local   xm_local.Local: a Docker container on this machine (CPU, or
          `--accelerator=local_gpu`); the host workdir is mounted at /workdir.
  vertex  xm_local.Vertex: a Vertex AI custom job on GPUs; `--num_hosts` up to
          4 (one Vertex worker pool per host; host 0 is JAX's coordinator,
          whose address Vertex binds late: launch with
          `--xm_wrap_late_bindings`).
  tpu     xm_cloud.KubernetesJobExecutor: a GKE TPU slice (v4, v5e, v5p, v6e)
          through XManager on Cloud; JAX finds its peers from GKE's TPU
          environment. Without XManager on Cloud, use launch/tpu_vm.sh.

Usage:
  python launch/xm_launch.py --dry-run --config=configs/smoke.py \
      --workdir=/tmp/smoke --set=schedule=stage1:3,stage2:3
  xmanager launch launch/xm_launch.py -- --executor=vertex \
      --config=configs/smoke.py --workdir=gs://BUCKET/smoke \
      --accelerator=a100 --accelerator_count=8
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import pathlib
import re
import sys
from typing import Any, Optional, Sequence

from absl import app
from absl import flags

try:
  # `xmanager launch` parses this script's flags together with its own
  # (--xm_launch_script, which it always adds, --xm_wrap_late_bindings):
  # they exist once these modules are imported.
  from xmanager import xm  # pylint: disable=g-import-not-at-top
  from xmanager import xm_flags  # pylint: disable=g-import-not-at-top
except ImportError:  # a dry run needs neither
  xm = xm_flags = None

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
EXECUTORS = ("local", "vertex", "tpu")
# What xmanager 0.8's Vertex executor maps to a valid machine type (A100 ->
# a2, L4 -> g2, the rest -> n1). It maps TPUs only to TPU v2/v3 *nodes*,
# which JAX no longer supports, so TPUs go through --executor=tpu.
VERTEX_GPUS = ("t4", "p4", "p100", "v100", "a100", "l4_24th")
# GKE TPU slice types of XManager on Cloud, with chips per host of a
# multi-host slice and the largest single-host slice.
TPU_TYPES = {"tpu_v4": (4, 4), "tpu_v5e": (4, 8), "tpu_v5p": (4, 4),
             "tpu_v6e": (4, 8)}
VERTEX_MAX_HOSTS = 4  # Vertex AI allows 4 worker pools.
CONTAINER_WORKDIR = "/workdir"
# xmanager's late binding for host 0's address; Vertex's cluster spec gives it
# as 'host:2222', a port open between the job's workers.
COORDINATOR = "%objectname(workerpool0)%"

# Where cloud jobs see Cloud Storage as files: Vertex AI mounts every bucket
# the job can read at /gcs/<bucket> (Cloud Storage FUSE); a GKE TPU slice
# needs the same mount (the GKE Cloud Storage FUSE CSI driver).
GCS_FUSE_ROOT = "/gcs"

_EXECUTOR = flags.DEFINE_enum("executor", "local", EXECUTORS, "Where to run.")
_CONFIG = flags.DEFINE_string(
    "config", None, "Config file in the project (configs/<name>.py), "
    "optionally 'path:arg' for get_config(arg).")
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Run directory: a host path for 'local', gs://... for "
    "cloud executors (the trainer gets its mount, /gcs/<bucket>/...).")
_SET = flags.DEFINE_multi_string(
    "set", [], "Config override key=value, passed as --config.key=value "
    "(repeatable).")
_ACCELERATOR = flags.DEFINE_string(
    "accelerator", None, "local: local_gpu; vertex: one of "
    f"{', '.join(VERTEX_GPUS)}; tpu: one of {', '.join(TPU_TYPES)}.")
_COUNT = flags.DEFINE_string(
    "accelerator_count", None, "GPUs per host (an integer), or the TPU "
    "slice topology (e.g. 2x2x4 for v4, 4x4 for v5e).")
_NUM_HOSTS = flags.DEFINE_integer(
    "num_hosts", None, "Hosts (JAX processes). Default 1; for TPUs, what "
    "the topology needs.")
_BASE_IMAGE = flags.DEFINE_string("base_image", "python:3.11-slim",
                                  "Docker base image.")
_IMAGE_REGISTRY = flags.DEFINE_string(
    "image_registry", None, "Registry to push the image to (vertex: full "
    "image tag; tpu: container registry).")
_NAME = flags.DEFINE_string("name", None,
                            "Experiment title (default score-jax-<config>).")
_PROJECT_DIR = flags.DEFINE_string(
    "project_dir", str(REPO_ROOT), "The score_jax checkout to package.")
_DRY_RUN = flags.DEFINE_boolean(
    "dry-run", False, "Print the job spec as JSON instead of launching.")


class SpecError(ValueError):
  """A launcher argument that cannot make a job."""


def _load_config(path: pathlib.Path, arg: Optional[str]) -> Any:
  spec = importlib.util.spec_from_file_location(f"_xm_config_{path.stem}",
                                                path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
      raise SpecError(f"--config={path} defines no get_config()")
    return module.get_config(arg) if arg is not None else module.get_config()
  except SpecError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise SpecError(f"--config={path}: loading it failed: "
                    f"{type(e).__name__}: {e}") from e


def _check_override(config: Any, override: str, config_name: str) -> str:
  """Returns '--config.key=value' once `key` names a field of `config`."""
  key, sep, value = override.partition("=")
  if not sep or not key or key.startswith("config."):
    raise SpecError(f"--set={override!r}: expected key=value with a config "
                    "key such as rollout.temperature=0.7 (no 'config.' prefix)")
  node = config
  for depth, part in enumerate(key.split(".")):
    if not hasattr(node, "keys") or part not in node:
      parent = ".".join(key.split(".")[:depth]) or "the top level"
      known = sorted(node.keys()) if hasattr(node, "keys") else []
      raise SpecError(f"--set={override!r}: {config_name} has no key {key!r}"
                      f" (known at {parent}: {', '.join(known) or 'none'})")
    node = node[part]
  return f"--config.{key}={value}"


def _resolve_config(config: str, project_dir: pathlib.Path
                    ) -> tuple[pathlib.Path, str, Optional[str]]:
  """-> (file, its path relative to the project, get_config argument)."""
  path_text, sep, arg = config.partition(":")
  path = pathlib.Path(path_text)
  if not path.is_absolute():
    path = project_dir / path if (project_dir / path).exists() else (
        pathlib.Path.cwd() / path)
  path = path.resolve()
  if not path.is_file():
    raise SpecError(f"--config={config}: no such file")
  try:
    relative = path.relative_to(project_dir).as_posix()
  except ValueError:
    raise SpecError(f"--config={config}: the file must be inside the packaged"
                    f" project {project_dir}, since the job reads it there"
                    ) from None
  return path, relative, arg if sep else None


def _requirements(executor: str, accelerator: Optional[str],
                  count: Optional[str]) -> dict[str, Any]:
  """xm.JobRequirements keyword arguments, checked against the executor."""
  if accelerator is None:
    if count is not None:
      raise SpecError("--accelerator_count needs --accelerator")
    if executor == "tpu":
      raise SpecError(f"--executor=tpu needs --accelerator (one of "
                      f"{', '.join(TPU_TYPES)}) and a topology")
    return {}
  accelerator = accelerator.lower()
  allowed = {"local": ("local_gpu",), "vertex": VERTEX_GPUS,
             "tpu": tuple(TPU_TYPES)}[executor]
  if accelerator not in allowed:
    hint = ""
    if accelerator.startswith("tpu"):
      hint = ("; TPUs run with --executor=tpu (XManager on Cloud) or "
              "launch/tpu_vm.sh")
    raise SpecError(f"--accelerator={accelerator} is not available on "
                    f"--executor={executor} (choose from "
                    f"{', '.join(allowed)}){hint}")
  if executor == "tpu":
    if count is None or not re.fullmatch(r"\d+(x\d+)+", count):
      raise SpecError(f"--accelerator={accelerator} needs "
                      f"--accelerator_count=<topology>, e.g. 2x2x4 or 4x4, "
                      f"got {count!r}")
    return {accelerator: count}
  count = "1" if count is None else count
  if not count.isdigit() or int(count) < 1:
    raise SpecError(f"--accelerator_count={count!r}: a number of GPUs per "
                    "host, >= 1")
  return {accelerator: int(count)}


def tpu_hosts(accelerator: str, topology: str) -> int:
  """Hosts of a TPU slice: one up to a full host, else 4 chips each."""
  per_host, single_host_max = TPU_TYPES[accelerator]
  chips = math.prod(int(d) for d in topology.split("x"))
  return 1 if chips <= single_host_max else -(-chips // per_host)


def _pip_extra(executor: str, requirements: dict[str, Any]) -> list[str]:
  if executor == "tpu":
    return ["jax[tpu]"]
  if requirements:  # GPUs.
    return ["jax[cuda12]"]
  return []


def build_spec(config: str, workdir: str, overrides: Sequence[str] = (),
               executor: str = "local", accelerator: Optional[str] = None,
               accelerator_count: Optional[str] = None,
               num_hosts: Optional[int] = None,
               base_image: str = "python:3.11-slim",
               image_registry: Optional[str] = None,
               name: Optional[str] = None,
               project_dir: str = str(REPO_ROOT)) -> dict[str, Any]:
  """The whole job as plain data (what `launch` hands to xmanager).

  Raises:
    SpecError: naming the argument that cannot make a job.
  """
  if executor not in EXECUTORS:
    raise SpecError(f"--executor={executor!r}: choose from "
                    f"{', '.join(EXECUTORS)}")
  if not config:
    raise SpecError("--config is required, e.g. --config=configs/smoke.py")
  if not workdir:
    raise SpecError("--workdir is required")
  project = pathlib.Path(project_dir).resolve()
  if not (project / "setup.py").is_file():
    raise SpecError(f"--project_dir={project_dir}: no setup.py there; "
                    "point it at the score_jax checkout")
  config_file, config_rel, config_arg = _resolve_config(config, project)
  loaded = _load_config(config_file, config_arg)
  args = [f"--config={config_rel}" + (f":{config_arg}" if config_arg else "")]

  env_volumes = {}
  if executor == "local":
    if workdir.startswith("gs://"):
      raise SpecError("--executor=local mounts a host directory as the "
                      "workdir; pass a local path, not gs://")
    host_workdir = str(pathlib.Path(workdir).expanduser().resolve())
    env_volumes = {host_workdir: CONTAINER_WORKDIR}
    args.append(f"--workdir={CONTAINER_WORKDIR}")
  else:
    if not workdir.startswith("gs://"):
      raise SpecError(f"--workdir={workdir}: a cloud job's disk is "
                      "discarded when it ends; use a gs:// path")
    # The trainer writes its workdir with file operations (it refuses
    # URLs): it gets the bucket's Cloud Storage FUSE mount instead.
    args.append(f"--workdir={GCS_FUSE_ROOT}/{workdir[len('gs://'):]}")
  args += [_check_override(loaded, o, config_rel) for o in overrides]

  requirements = _requirements(executor, accelerator, accelerator_count)
  if executor == "tpu":
    (tpu, topology), = requirements.items()
    hosts = tpu_hosts(tpu, topology)
    if num_hosts not in (None, hosts):
      raise SpecError(f"--num_hosts={num_hosts}: a {tpu} {topology} slice "
                      f"has {hosts} host(s)")
    num_hosts = hosts
  num_hosts = 1 if num_hosts is None else num_hosts
  if num_hosts < 1:
    raise SpecError(f"--num_hosts={num_hosts}: must be >= 1")
  if executor == "local" and num_hosts != 1:
    raise SpecError("--executor=local runs one container: --num_hosts=1")
  if executor == "vertex" and num_hosts > VERTEX_MAX_HOSTS:
    raise SpecError(f"--num_hosts={num_hosts}: Vertex AI jobs have at most "
                    f"{VERTEX_MAX_HOSTS} worker pools (one per host here)")

  jobs = []
  # A TPU slice is one job of `num_hosts` replicas; Vertex takes one job
  # (worker pool) per host.
  for i in range(num_hosts if executor == "vertex" else 1):
    host_args = list(args)
    if executor == "vertex" and num_hosts > 1:
      # The TPU executor needs no flags: JAX reads GKE's TPU environment.
      host_args += [f"--coordinator_address={COORDINATOR}",
                    f"--num_processes={num_hosts}", f"--process_id={i}"]
    jobs.append({"name": f"host_{i}", "args": host_args})

  dirname = project.name
  pip = " ".join(["python -m pip install --no-cache-dir -e ."] +
                 [f"'{p}'" for p in _pip_extra(executor, requirements)])
  spec = {
      "experiment_title": name or f"score-jax-{config_file.stem}",
      "api": "xm_cloud" if executor == "tpu" else "xm_local",
      "executable": {
          "type": "PythonContainer",
          "path": str(project),
          "base_image": base_image,
          "entrypoint": ["score-jax train"],
          # Our own steps: the default ones expect a requirements.txt.
          "docker_instructions": [
              f"COPY --chown=1000:root {dirname}/ /{dirname}",
              f"WORKDIR /{dirname}",
              f"RUN {pip}",
          ],
      },
      "executor": {
          "type": {"local": "Local", "vertex": "Vertex",
                   "tpu": "KubernetesJobExecutor"}[executor],
          "requirements": requirements,
          "replicas": num_hosts if executor == "tpu" else 1,
      },
      "jobs": jobs,
      "xm_flags": (["--xm_wrap_late_bindings"]
                   if executor == "vertex" and num_hosts > 1 else []),
  }
  if env_volumes:
    spec["executor"]["docker_volumes"] = env_volumes
  if image_registry:
    spec["executor"]["image_registry"] = image_registry
  return spec


def launch(spec: dict[str, Any]) -> None:
  """Creates the experiment from `spec` with xmanager and adds the job."""
  if xm is None:
    raise SystemExit("xm_launch: xmanager is not installed: "
                     "pip install -e '.[launch]' (or use --dry-run)")
  from xmanager import xm_local  # pylint: disable=g-import-not-at-top
  if "--xm_wrap_late_bindings" in spec["xm_flags"]:
    if not xm_flags.WRAP_LATE_BINDINGS.value:
      raise SystemExit("xm_launch: a multi-host Vertex job binds the "
                       "coordinator address at run time: launch with "
                       "--xm_wrap_late_bindings")
  ex = spec["executor"]
  registry = ex.get("image_registry")
  if spec["api"] == "xm_cloud":
    try:
      from xmanager import xm_cloud  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise SystemExit("xm_launch: --executor=tpu needs XManager on Cloud "
                       "(xmanager.xm_cloud and its server); on plain Cloud "
                       "TPU VMs use launch/tpu_vm.sh") from e
    create_experiment = xm_cloud.create_experiment
    executor_spec = xm_cloud.KubernetesJobExecutor.Spec(
        container_registry=registry, image_name="score-jax")
    make_executor = lambda: xm_cloud.KubernetesJobExecutor(  # pylint: disable=g-long-lambda
        requirements=xm.JobRequirements(**ex["requirements"],
                                        replicas=ex["replicas"]))
  elif ex["type"] == "Vertex":
    create_experiment = xm_local.create_experiment
    executor_spec = xm_local.Vertex.Spec(push_image_tag=registry)
    make_executor = lambda: xm_local.Vertex(  # pylint: disable=g-long-lambda
        requirements=xm.JobRequirements(**ex["requirements"]))
  else:
    for host_dir in ex.get("docker_volumes", {}):
      os.makedirs(host_dir, exist_ok=True)
    create_experiment = xm_local.create_experiment
    executor_spec = xm_local.Local.Spec()
    make_executor = lambda: xm_local.Local(  # pylint: disable=g-long-lambda
        requirements=xm.JobRequirements(**ex["requirements"]),
        docker_options=xm_local.DockerOptions(
            volumes=ex.get("docker_volumes")))

  exe = spec["executable"]
  with create_experiment(experiment_title=spec["experiment_title"]) as exp:
    [executable] = exp.package([xm.Packageable(
        executable_spec=xm.PythonContainer(
            path=exe["path"], base_image=exe["base_image"],
            entrypoint=xm.CommandList(exe["entrypoint"]),
            docker_instructions=exe["docker_instructions"]),
        executor_spec=executor_spec)])
    exp.add(xm.JobGroup(**{
        job["name"]: xm.Job(executable=executable, executor=make_executor(),
                            args=job["args"])
        for job in spec["jobs"]}))


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}; config overrides "
                         "go in --set=key=value")
  try:
    spec = build_spec(
        _CONFIG.value, _WORKDIR.value, _SET.value, _EXECUTOR.value,
        _ACCELERATOR.value, _COUNT.value, _NUM_HOSTS.value,
        _BASE_IMAGE.value, _IMAGE_REGISTRY.value, _NAME.value,
        _PROJECT_DIR.value)
  except SpecError as e:
    print(f"xm_launch: {e}", file=sys.stderr)
    return 2
  if _DRY_RUN.value:
    print(json.dumps(spec, indent=2))
    return 0
  launch(spec)
  return 0


if __name__ == "__main__":
  app.run(main)
