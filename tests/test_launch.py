"""launch/tpu_vm.sh and launch/xm_launch.py: exact dry-run commands and specs,
the remote command lines actually run (through a stand-in `gcloud` that runs
them locally), shellcheck, and clear errors."""

import json
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import textwrap
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
TPU_VM = ROOT / "launch" / "tpu_vm.sh"
XM_LAUNCH = ROOT / "launch" / "xm_launch.py"
BASE = ["--name=score", "--zone=us-central2-b"]
TRAIN = ["score-jax", "train", "--config=configs/smoke.py",
         "--workdir=gs://bucket/run1"]


def _sh(*args, env=None, check=True):
  proc = subprocess.run(["bash", str(TPU_VM), *args], capture_output=True,
                        text=True, timeout=60, env=env, check=False)
  if check:
    assert proc.returncode == 0, proc.stderr
  return proc


def _lines(proc):
  return proc.stdout.splitlines()


def _argvs(proc):
  """Each printed command as the argv a shell would run."""
  return [shlex.split(line) for line in _lines(proc)]


def _ssh(worker, command):
  return ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "score",
          "--zone=us-central2-b", f"--worker={worker}", f"--command={command}"]


# ------------------------------------------------------------- tpu_vm.sh


def test_shellcheck():
  if shutil.which("shellcheck") is None:
    pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
  proc = subprocess.run(["shellcheck", str(TPU_VM)], capture_output=True,
                        text=True, timeout=60, check=False)
  assert proc.returncode == 0, proc.stdout


def test_dry_run_create_and_delete():
  assert _lines(_sh(*BASE, "--accelerator-type=v4-32", "--project=proj",
                    "--dry-run", "create")) == [
      "gcloud compute tpus tpu-vm create score --zone=us-central2-b "
      "--project=proj --accelerator-type=v4-32 --version=tpu-ubuntu2204-base"]
  assert _lines(_sh(*BASE, "--accelerator-type=v5litepod-16", "--spot",
                    "--dry-run", "create")) == [
      "gcloud compute tpus tpu-vm create score --zone=us-central2-b "
      "--accelerator-type=v5litepod-16 --version=v2-alpha-tpuv5-lite --spot"]
  assert _lines(_sh(*BASE, "--dry-run", "delete")) == [
      "gcloud compute tpus tpu-vm delete score --zone=us-central2-b --quiet"]


def test_dry_run_setup_from_checkout():
  out = _argvs(_sh(*BASE, "--dry-run", "setup",
                   env={**os.environ, "TMPDIR": "/tmp/x"}))
  assert out == [
      ["git", "-C", str(ROOT), "archive", "--format=tar.gz",
       "--output=/tmp/x/score_jax-score.tar.gz", "HEAD"],
      ["gcloud", "compute", "tpus", "tpu-vm", "scp",
       "/tmp/x/score_jax-score.tar.gz", "score:score_jax.tar.gz",
       "--zone=us-central2-b", "--worker=all"],
      _ssh("all", "set -e; rm -rf $HOME/score_jax && mkdir -p "
           "$HOME/score_jax && tar -xzf $HOME/score_jax.tar.gz -C "
           "$HOME/score_jax; python3 -m pip install -U pip; python3 -m pip "
           "install -e $HOME/score_jax 'jax[tpu]'")]


def test_dry_run_setup_from_git():
  out = _argvs(_sh(*BASE, "--repo=https://github.com/me/score_jax.git",
                   "--ref=v0.1", "--dry-run", "setup"))
  assert out == [_ssh(
      "all", "set -e; rm -rf $HOME/score_jax && git clone --depth=1 "
      "--branch=v0.1 https://github.com/me/score_jax.git $HOME/score_jax; "
      "python3 -m pip install -U pip; python3 -m pip install -e "
      "$HOME/score_jax 'jax[tpu]'")]


def test_dry_run_run_logs_stop():
  out = _argvs(_sh(*BASE, "--dry-run", "run", "--", *TRAIN,
                   "--config.train.steps=3"))
  assert out == [_ssh(
      "all", "if [ -f $HOME/score-jax.pid ] && kill -0 $(cat "
      "$HOME/score-jax.pid) 2>/dev/null; then echo \"a run is going on "
      "$(hostname); stop it first\" >&2; exit 1; fi; "
      'export PATH="$HOME/.local/bin:$PATH"; cd $HOME/score_jax || '
      "exit 1; nohup score-jax train --config=configs/smoke.py "
      "--workdir=gs://bucket/run1 --config.train.steps=3 >> "
      "$HOME/score-jax.log 2>&1 < /dev/null & echo $! > $HOME/score-jax.pid")]
  assert _argvs(_sh(*BASE, "--worker=3", "--follow", "--dry-run", "logs")) == [
      _ssh("3", "tail -n 200 -F $HOME/score-jax.log")]
  assert _argvs(_sh(*BASE, "--dry-run", "stop")) == [_ssh(
      "all", "if [ -f $HOME/score-jax.pid ]; then kill $(cat "
      "$HOME/score-jax.pid) 2>/dev/null || true; rm -f $HOME/score-jax.pid; "
      "fi")]


def test_environment_variables_set_defaults():
  env = {**os.environ, "TPU_NAME": "envtpu", "TPU_ZONE": "europe-west4-a",
         "TPU_PROJECT": "p", "TPU_TYPE": "v5p-128"}
  assert _lines(_sh("--dry-run", "create", env=env)) == [
      "gcloud compute tpus tpu-vm create envtpu --zone=europe-west4-a "
      "--project=p --accelerator-type=v5p-128 --version=v2-alpha-tpuv5"]


@pytest.fixture(name="fake_gcloud")
def _fake_gcloud(tmp_path):
  """A `gcloud` that logs its argv and runs `ssh --command` locally."""
  bindir = tmp_path / "bin"
  bindir.mkdir()
  home = tmp_path / "home"
  home.mkdir()
  gcloud = bindir / "gcloud"
  gcloud.write_text(textwrap.dedent(f"""\
      #!{sys.executable}
      import json, subprocess, sys
      with open({str(tmp_path / 'calls.jsonl')!r}, 'a') as f:
        f.write(json.dumps(sys.argv[1:]) + '\\n')
      cmd = [a.split('=', 1)[1] for a in sys.argv if a.startswith('--command=')]
      if sys.argv[1:5] == ['compute', 'tpus', 'tpu-vm', 'ssh'] and cmd:
        sys.exit(subprocess.call(['bash', '-c', cmd[0]]))
      """))
  gcloud.chmod(0o755)
  env = {**os.environ, "HOME": str(home),
         "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
  (home / "score_jax").mkdir()
  return env, home, tmp_path / "calls.jsonl"


def test_printed_commands_are_the_commands_run(fake_gcloud):
  env, _, calls = fake_gcloud
  odd = ["echo", "it's", "a $HOME", 'q"uote', "semi;colon"]
  printed = _lines(_sh(*BASE, "--project=my proj", "--dry-run", "run", "--",
                       *odd, env=env))
  _sh(*BASE, "--project=my proj", "run", "--", *odd, env=env)
  ran = [json.loads(line) for line in calls.read_text().splitlines()]
  assert [shlex.split(line) for line in printed] == [["gcloud", *ran[0]]]


def test_run_logs_stop_on_a_stand_in_worker(fake_gcloud):
  env, home, _ = fake_gcloud
  program = ["python3", "-c",
             "import time; print('step 1', flush=True); time.sleep(60)"]
  _sh(*BASE, "run", "--", *program, env=env)
  pid = int((home / "score-jax.pid").read_text())
  log = home / "score-jax.log"
  deadline = time.time() + 20
  while "step 1" not in (log.read_text() if log.exists() else ""):
    assert time.time() < deadline, "the detached run wrote no log"
    time.sleep(0.1)
  assert _sh(*BASE, "logs", env=env).stdout == "step 1\n"
  os.kill(pid, 0)  # Still running, detached from the ssh command.
  again = _sh(*BASE, "run", "--", *program, env=env, check=False)
  assert again.returncode == 1 and "a run is going on" in again.stderr
  assert int((home / "score-jax.pid").read_text()) == pid
  _sh(*BASE, "stop", env=env)
  assert not (home / "score-jax.pid").exists()
  deadline = time.time() + 10
  while time.time() < deadline:
    try:
      os.kill(pid, 0)
    except ProcessLookupError:
      break
    # Reap it if it is our zombie grandchild (it is not our child: no-op).
    time.sleep(0.1)
  else:
    os.kill(pid, 9)
    pytest.fail("stop did not end the run")


@pytest.mark.parametrize("args, message", [
    (["create"], "--name (or TPU_NAME) is required"),
    (["--name=score", "create"], "--zone (or TPU_ZONE) is required"),
    ([*BASE, "launch"], "unknown command 'launch'"),
    ([*BASE, "--nme=x", "create"], "unknown option '--nme=x'"),
    ([*BASE, "--zone", "create"], "option --zone needs a value"),
    ([*BASE, "run"], "run needs a command after '--'"),
    ([*BASE, "create", "--", "ls"], "only 'run' takes a command after '--'"),
    ([*BASE, "create", "delete"], "one command at a time"),
    (["--name=My_TPU", "--zone=z", "create"], "--name='My_TPU': use lowercase"),
    ([*BASE, "--accelerator-type=v4_8", "create"],
     "--accelerator-type='v4_8' is not like v4-8"),
    ([*BASE, "--accelerator-type=v9-8", "create"],
     "no default --version for accelerator type 'v9-8'"),
    ([*BASE, "--worker=first", "logs"], "--worker='first' must be"),
])
def test_argument_errors(args, message):
  proc = _sh(*args, "--dry-run", check=False)
  assert proc.returncode == 2
  assert message in proc.stderr


def test_accelerator_type_matters_to_create_only():
  """A TPU_TYPE without a default runtime (or a typo in it) does not stop
  the commands that never use it: a run can still be stopped."""
  env = {**os.environ, "TPU_TYPE": "v9-8"}
  for command in ("stop", "logs", "delete"):
    _sh(*BASE, command, "--dry-run", env=env)
  proc = _sh(*BASE, "create", "--dry-run", env=env, check=False)
  assert "no default --version for accelerator type 'v9-8'" in proc.stderr


def test_missing_gcloud_is_named(tmp_path):
  bindir = tmp_path / "bin"  # A PATH with what the script needs, no gcloud.
  bindir.mkdir()
  for tool in ("bash", "dirname"):
    (bindir / tool).symlink_to(shutil.which(tool))
  proc = subprocess.run([str(bindir / "bash"), str(TPU_VM), *BASE, "delete"],
                        capture_output=True, text=True, timeout=60,
                        check=False, env={"PATH": str(bindir)})
  assert proc.returncode == 2
  assert "gcloud not found: install the Google Cloud CLI" in proc.stderr


def test_help():
  proc = _sh("--help")
  for command in ("create", "setup", "run", "logs", "stop", "delete"):
    assert f"\n  {command} " in proc.stdout


# ------------------------------------------------------------- xm_launch.py


@pytest.fixture(name="project")
def _project(tmp_path):
  """A project directory holding a small ml_collections config."""
  project = tmp_path / "proj"
  (project / "configs").mkdir(parents=True)
  (project / "setup.py").write_text("")
  (project / "configs" / "sample.py").write_text(textwrap.dedent("""\
      import ml_collections
      def get_config(arg=None):
        c = ml_collections.ConfigDict()
        c.model = arg or "tiny-gemma"
        c.train = ml_collections.ConfigDict({"steps": 3, "lr": 1e-5})
        return c
      """))
  return project


def _xm(project, *args, check=True):
  proc = subprocess.run(
      [sys.executable, str(XM_LAUNCH), "--dry-run",
       f"--project_dir={project}", "--config=configs/sample.py", *args],
      capture_output=True, text=True, timeout=60, check=False)
  if check:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)
  return proc


def _executable(project, pip):
  return {"type": "PythonContainer", "path": str(project),
          "base_image": "python:3.11-slim", "entrypoint": ["score-jax train"],
          "docker_instructions": [
              "COPY --chown=1000:root proj/ /proj", "WORKDIR /proj",
              f"RUN python -m pip install --no-cache-dir -e .{pip}"]}


def test_xm_dry_run_local(project, tmp_path):
  spec = _xm(project, f"--workdir={tmp_path}/run", "--set=train.steps=10",
             "--set=model=tiny-llama")
  assert spec == {
      "experiment_title": "score-jax-sample",
      "api": "xm_local",
      "executable": _executable(project, ""),
      "executor": {"type": "Local", "requirements": {}, "replicas": 1,
                   "docker_volumes": {f"{tmp_path}/run": "/workdir"}},
      "jobs": [{"name": "host_0", "args": [
          "--config=configs/sample.py", "--workdir=/workdir",
          "--config.train.steps=10", "--config.model=tiny-llama"]}],
      "xm_flags": [],
  }


def test_xm_dry_run_vertex_two_hosts(project):
  spec = _xm(project, "--executor=vertex", "--workdir=gs://b/run",
             "--accelerator=a100", "--accelerator_count=8", "--num_hosts=2",
             "--name=exp1", "--image_registry=gcr.io/p/score:v1")
  common = ["--config=configs/sample.py", "--workdir=/gcs/b/run",
            "--coordinator_address=%objectname(workerpool0)%",
            "--num_processes=2"]
  assert spec == {
      "experiment_title": "exp1",
      "api": "xm_local",
      "executable": _executable(project, " 'jax[cuda12]'"),
      "executor": {"type": "Vertex", "requirements": {"a100": 8},
                   "replicas": 1, "image_registry": "gcr.io/p/score:v1"},
      "jobs": [{"name": "host_0", "args": common + ["--process_id=0"]},
               {"name": "host_1", "args": common + ["--process_id=1"]}],
      "xm_flags": ["--xm_wrap_late_bindings"],
  }


def test_xm_dry_run_tpu_slice(project):
  spec = _xm(project, "--executor=tpu", "--workdir=gs://b/run",
             "--accelerator=tpu_v5e", "--accelerator_count=4x4",
             "--config=configs/sample.py:tiny-gemma3")
  assert spec["api"] == "xm_cloud"
  assert spec["executable"] == _executable(project, " 'jax[tpu]'")
  assert spec["executor"] == {"type": "KubernetesJobExecutor",
                              "requirements": {"tpu_v5e": "4x4"},
                              "replicas": 4}
  # JAX reads the slice from GKE's TPU environment: no coordinator flags.
  assert spec["jobs"] == [{"name": "host_0", "args": [
      "--config=configs/sample.py:tiny-gemma3", "--workdir=/gcs/b/run"]}]


def test_tpu_hosts():
  # In a fresh process: xm_launch defines absl flags (--config, --workdir)
  # that score-jax commands imported by other tests define too.
  code = (f"import importlib.util as u; s = u.spec_from_file_location("
          f"'xm_launch', {str(XM_LAUNCH)!r}); m = u.module_from_spec(s); "
          "s.loader.exec_module(m); print([m.tpu_hosts(*a) for a in ["
          "('tpu_v4', '2x2x1'), ('tpu_v4', '2x2x4'), ('tpu_v5e', '2x4'), "
          "('tpu_v5e', '16x16'), ('tpu_v5p', '4x4x8')]])")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, timeout=120, check=True)
  assert out.stdout.strip() == "[1, 4, 1, 64, 32]"


@pytest.mark.parametrize("args, message", [
    (["--workdir=/tmp/w", "--set=train.stepz=1"],
     "configs/sample.py has no key 'train.stepz' (known at train: lr, steps)"),
    (["--workdir=/tmp/w", "--set=train.steps"], "expected key=value"),
    (["--workdir=/tmp/w", "--set=config.train.steps=1"],
     "no 'config.' prefix"),
    (["--workdir=gs://b/r"], "pass a local path, not gs://"),
    (["--executor=vertex", "--workdir=/tmp/w"], "use a gs:// path"),
    (["--executor=vertex", "--workdir=gs://b/r", "--accelerator=tpu_v4",
      "--accelerator_count=2x2x1"],
     "--accelerator=tpu_v4 is not available on --executor=vertex"),
    (["--executor=vertex", "--workdir=gs://b/r", "--accelerator=a100",
      "--num_hosts=5"], "at most 4 worker pools"),
    (["--executor=vertex", "--workdir=gs://b/r", "--accelerator=a100",
      "--accelerator_count=two"], "a number of GPUs per host"),
    (["--executor=tpu", "--workdir=gs://b/r"], "--executor=tpu needs"),
    (["--executor=tpu", "--workdir=gs://b/r", "--accelerator=tpu_v4",
      "--accelerator_count=8"], "needs --accelerator_count=<topology>"),
    (["--executor=tpu", "--workdir=gs://b/r", "--accelerator=tpu_v4",
      "--accelerator_count=2x2x4", "--num_hosts=2"],
     "a tpu_v4 2x2x4 slice has 4 host(s)"),
    (["--workdir=/tmp/w", "--num_hosts=2"], "runs one container"),
    (["--workdir=/tmp/w", "--config=configs/nope.py"],
     "--config=configs/nope.py: no such file"),
    (["--workdir=/tmp/w", "--config=/etc/hostname"],
     "must be inside the packaged project"),
    (["--workdir=/tmp/w", "--project_dir=/tmp"], "no setup.py there"),
    (["--set=a=1"], "--workdir is required"),
])
def test_xm_argument_errors(project, args, message):
  proc = _xm(project, *args, check=False)
  assert proc.returncode != 0
  assert message in proc.stderr, proc.stderr


def test_xm_broken_config_is_named(project):
  (project / "configs" / "broken.py").write_text(
      "def get_config():\n  return {}['model']\n")
  (project / "configs" / "empty.py").write_text("X = 1\n")
  proc = _xm(project, "--workdir=/tmp/w", "--config=configs/broken.py",
             check=False)
  assert "broken.py: loading it failed: KeyError: 'model'" in proc.stderr
  proc = _xm(project, "--workdir=/tmp/w", "--config=configs/empty.py",
             check=False)
  assert "empty.py defines no get_config()" in proc.stderr


def test_xm_flags_parse_as_the_xmanager_cli_gives_them(project, tmp_path):
  """`xmanager launch launch/xm_launch.py -- ...` imports the script as a
  module, then runs its main with `--xm_launch_script=<path>` added to the
  arguments (xmanager 0.8.5, cli._launch_command): a flag that xmanager.xm
  defines, like --xm_wrap_late_bindings (xmanager.xm_flags). A stand-in
  xmanager that defines just those flags runs the same sequence."""
  fake = tmp_path / "fake" / "xmanager"
  (fake / "xm").mkdir(parents=True)
  (fake / "__init__.py").write_text("")
  (fake / "xm" / "__init__.py").write_text(
      "from absl import flags\n"
      "flags.DEFINE_string('xm_launch_script', None, '')\n")
  (fake / "xm_flags.py").write_text(
      "from absl import flags\n"
      "WRAP_LATE_BINDINGS = flags.DEFINE_boolean('xm_wrap_late_bindings', "
      "False, '')\n")
  cli = (
      "import importlib, sys\n"
      "from absl import app\n"
      f"sys.path.insert(0, {str(XM_LAUNCH.parent)!r})\n"
      "m = importlib.import_module('xm_launch')\n"
      f"app.run(m.main, argv=[{str(XM_LAUNCH)!r}, "
      f"'--xm_launch_script={XM_LAUNCH}'] + sys.argv[1:])\n")
  proc = subprocess.run(
      [sys.executable, "-c", cli, "--dry-run", "--xm_wrap_late_bindings",
       f"--project_dir={project}", "--config=configs/sample.py",
       f"--workdir={tmp_path}/w"],
      capture_output=True, text=True, timeout=60, check=False,
      env={**os.environ, "PYTHONPATH": str(fake.parent)})
  assert proc.returncode == 0, proc.stderr
  assert json.loads(proc.stdout)["jobs"][0]["name"] == "host_0"


def test_xm_dry_run_needs_no_xmanager(project, tmp_path):
  # A stand-in `xmanager` package that fails on import: the dry run must
  # still work (xmanager is an optional extra).
  fake = tmp_path / "fake" / "xmanager"
  fake.mkdir(parents=True)
  (fake / "__init__.py").write_text("raise ImportError('imported!')\n")
  proc = subprocess.run(
      [sys.executable, str(XM_LAUNCH), "--dry-run", f"--project_dir={project}",
       "--config=configs/sample.py", f"--workdir={tmp_path}/w"],
      capture_output=True, text=True, timeout=60, check=False,
      env={**os.environ, "PYTHONPATH": str(fake.parent)})
  assert proc.returncode == 0, proc.stderr
  assert json.loads(proc.stdout)["jobs"][0]["name"] == "host_0"
