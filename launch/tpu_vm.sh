#!/usr/bin/env bash
# Cloud TPU VM / pod slice lifecycle for score_jax, with `gcloud compute tpus tpu-vm`.
#
# Every command that touches a TPU runs on all workers of the slice
# (--worker=all), so a pod slice runs the same program on every host and
# `score_jax.distributed.initialize()` finds its peers from the TPU metadata.
# --dry-run prints each command (shell-quoted, copy-pasteable) instead of
# running it.
set -euo pipefail

readonly SCRIPT_NAME="${0##*/}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
# Paths on the workers: \$HOME is expanded by the remote shell, not here.
readonly REMOTE_DIR="\$HOME/score_jax"
readonly REMOTE_LOG="\$HOME/score-jax.log"
readonly REMOTE_PID="\$HOME/score-jax.pid"

usage() {
  cat <<EOF
usage: ${SCRIPT_NAME} [options] <command> [-- remote command...]

commands:
  create   create the TPU VM or pod slice
  setup    install score_jax and jax[tpu] on every worker
  run      run '-- <command...>' on every worker, detached (log: ${REMOTE_LOG})
  logs     print the run log of one worker (--worker, --follow)
  stop     stop the detached run on every worker
  delete   delete the TPU VM or pod slice

options (environment variable in brackets):
  --name=NAME              TPU name [TPU_NAME] (required)
  --zone=ZONE              zone, e.g. us-central2-b [TPU_ZONE] (required)
  --project=PROJECT        GCP project [TPU_PROJECT]; default: gcloud's
  --accelerator-type=TYPE  e.g. v4-8, v4-32, v5litepod-16, v5p-128 [TPU_TYPE]
                           (default v4-8)
  --version=RUNTIME        TPU software version [TPU_RUNTIME]; default from
                           the type: v2-v4 tpu-ubuntu2204-base, v5e
                           v2-alpha-tpuv5-lite, v5p v2-alpha-tpuv5, v6e
                           v2-alpha-tpuv6e
  --spot                   create a Spot TPU
  --repo=GIT_URL           setup: clone this repository [REPO_URL]; default:
                           copy this checkout's HEAD commit (git archive)
  --ref=REF                setup with --repo: branch or tag to clone
  --worker=N               logs: which worker (default 0)
  --follow                 logs: keep following the log
  --dry-run                print every command instead of running it
  -h, --help               this text

example:
  ${SCRIPT_NAME} --name=score --zone=us-central2-b --accelerator-type=v4-32 create
  ${SCRIPT_NAME} --name=score --zone=us-central2-b setup
  ${SCRIPT_NAME} --name=score --zone=us-central2-b run -- \\
      score-jax train --config=configs/smoke.py --workdir=/mnt/BUCKET/smoke
  ${SCRIPT_NAME} --name=score --zone=us-central2-b logs --follow
(the workdir: one directory every worker mounts at the same path, e.g. a
bucket mounted with Cloud Storage FUSE, gcsfuse, or a Filestore share)
EOF
}

die() {
  echo "${SCRIPT_NAME}: $*" >&2
  echo "run '${SCRIPT_NAME} --help' for usage" >&2
  exit 2
}

# Quotes each argument for a POSIX shell; plain words stay as they are.
# (Not printf %q or ${x@Q}: readable output, and bash 3.2 on macOS.)
quote() {
  local out="" arg
  for arg in "$@"; do
    if [[ "${arg}" =~ ^[-A-Za-z0-9_./:=@%+,]+$ ]]; then
      out+="${arg} "
    else
      out+="'${arg//\'/\'\\\'\'}' "
    fi
  done
  echo "${out% }"
}

# Runs a command, or prints it shell-quoted under --dry-run.
run_cmd() {
  if [[ "${DRY_RUN}" == 1 ]]; then
    quote "$@"
  else
    "$@"
  fi
}

default_runtime() {
  case "$1" in
    v2-*|v3-*|v4-*) echo "tpu-ubuntu2204-base" ;;
    v5litepod-*|v5e-*) echo "v2-alpha-tpuv5-lite" ;;
    v5p-*) echo "v2-alpha-tpuv5" ;;
    v6e-*) echo "v2-alpha-tpuv6e" ;;
    *) die "no default --version for accelerator type '$1'; pass --version" ;;
  esac
}

# gcloud compute tpus tpu-vm <verb> NAME --zone=... [--project=...] [args...]
tpu_vm() {
  local verb="$1"
  shift
  local cmd=(gcloud compute tpus tpu-vm "${verb}")
  case "${verb}" in
    scp) cmd+=("$1" "$2"); shift 2 ;;  # SRC DEST (DEST names the TPU)
    *) cmd+=("${NAME}") ;;
  esac
  cmd+=("--zone=${ZONE}")
  if [[ -n "${PROJECT}" ]]; then cmd+=("--project=${PROJECT}"); fi
  run_cmd "${cmd[@]}" "$@"
}

# Runs a shell command line on the given worker(s).
on_workers() {
  local worker="$1" line="$2"
  tpu_vm ssh "--worker=${worker}" "--command=${line}"
}

cmd_create() {
  local args=("--accelerator-type=${ACCELERATOR_TYPE}" "--version=${RUNTIME}")
  if [[ "${SPOT}" == 1 ]]; then args+=(--spot); fi
  tpu_vm create "${args[@]}"
}

cmd_setup() {
  local fetch
  if [[ -n "${REPO_URL}" ]]; then
    local clone=(git clone --depth=1)
    if [[ -n "${REF}" ]]; then clone+=("--branch=${REF}"); fi
    fetch="rm -rf ${REMOTE_DIR} && $(quote "${clone[@]}" "${REPO_URL}") ${REMOTE_DIR}"
  else
    # Ship exactly the checked-in tree: reproducible, no build outputs.
    if [[ -n "$(git -C "${ROOT}" status --porcelain --untracked-files=no)" ]]; then
      echo "${SCRIPT_NAME}: warning: uncommitted changes are not shipped;" \
        "setup copies HEAD" >&2
    fi
    local archive="${TMPDIR:-/tmp}/score_jax-${NAME}.tar.gz"
    run_cmd git -C "${ROOT}" archive --format=tar.gz "--output=${archive}" HEAD
    tpu_vm scp "${archive}" "${NAME}:score_jax.tar.gz" --worker=all
    fetch="rm -rf ${REMOTE_DIR} && mkdir -p ${REMOTE_DIR} && tar -xzf \$HOME/score_jax.tar.gz -C ${REMOTE_DIR}"
  fi
  # libtpu comes from PyPI through the jax[tpu] extra.
  on_workers all "set -e; ${fetch}; python3 -m pip install -U pip; python3 -m pip install -e ${REMOTE_DIR} 'jax[tpu]'"
}

cmd_run() {
  if [[ ${#REMOTE_CMD[@]} -eq 0 ]]; then
    die "run needs a command after '--', e.g. run -- score-jax train --config=configs/smoke.py --workdir=/mnt/BUCKET/run"
  fi
  local quoted
  quoted="$(quote "${REMOTE_CMD[@]}")"
  # Detached so a dropped ssh session does not kill the run; the pid file
  # lets `stop` end exactly this process. pip's user scripts live in
  # ~/.local/bin, which non-interactive ssh shells leave off PATH.
  # Only the nohup command goes to the background (not a `cd && ...` list,
  # whose subshell would keep ssh's stdout open and own the pid). The log is
  # appended to: a run started again after a preemption resumes, and the
  # interrupted attempt's log stays above its own.
  local guard="if [ -f ${REMOTE_PID} ] && kill -0 \$(cat ${REMOTE_PID}) 2>/dev/null; then echo \"a run is going on \$(hostname); stop it first\" >&2; exit 1; fi"
  on_workers all "${guard}; export PATH=\"\$HOME/.local/bin:\$PATH\"; cd ${REMOTE_DIR} || exit 1; nohup ${quoted} >> ${REMOTE_LOG} 2>&1 < /dev/null & echo \$! > ${REMOTE_PID}"
}

cmd_logs() {
  local tail_cmd="tail -n 200"
  if [[ "${FOLLOW}" == 1 ]]; then tail_cmd="tail -n 200 -F"; fi
  on_workers "${WORKER}" "${tail_cmd} ${REMOTE_LOG}"
}

cmd_stop() {
  on_workers all "if [ -f ${REMOTE_PID} ]; then kill \$(cat ${REMOTE_PID}) 2>/dev/null || true; rm -f ${REMOTE_PID}; fi"
}

cmd_delete() {
  tpu_vm delete --quiet
}

main() {
  NAME="${TPU_NAME:-}"
  ZONE="${TPU_ZONE:-}"
  PROJECT="${TPU_PROJECT:-}"
  ACCELERATOR_TYPE="${TPU_TYPE:-v4-8}"
  RUNTIME="${TPU_RUNTIME:-}"
  REPO_URL="${REPO_URL:-}"
  REF=""
  WORKER=0
  SPOT=0
  FOLLOW=0
  DRY_RUN=0
  REMOTE_CMD=()
  local command=""

  while [[ $# -gt 0 ]]; do
    case "$1" in
      --name=*) NAME="${1#*=}" ;;
      --zone=*) ZONE="${1#*=}" ;;
      --project=*) PROJECT="${1#*=}" ;;
      --accelerator-type=*) ACCELERATOR_TYPE="${1#*=}" ;;
      --version=*) RUNTIME="${1#*=}" ;;
      --repo=*) REPO_URL="${1#*=}" ;;
      --ref=*) REF="${1#*=}" ;;
      --worker=*) WORKER="${1#*=}" ;;
      --spot) SPOT=1 ;;
      --follow) FOLLOW=1 ;;
      --dry-run) DRY_RUN=1 ;;
      -h|--help) usage; exit 0 ;;
      --) shift; REMOTE_CMD=("$@"); break ;;
      --name|--zone|--project|--accelerator-type|--version|--repo|--ref|--worker)
        die "option $1 needs a value: $1=VALUE" ;;
      -*) die "unknown option '$1'" ;;
      *)
        if [[ -n "${command}" ]]; then
          die "one command at a time: got '${command}' and '$1'"
        fi
        command="$1" ;;
    esac
    shift
  done

  case "${command}" in
    create|setup|run|logs|stop|delete) ;;
    "") usage >&2; exit 2 ;;
    *) die "unknown command '${command}' (expected create, setup, run, logs, stop or delete)" ;;
  esac
  if [[ ${#REMOTE_CMD[@]} -gt 0 && "${command}" != run ]]; then
    die "only 'run' takes a command after '--'"
  fi
  [[ -n "${NAME}" ]] || die "--name (or TPU_NAME) is required"
  [[ "${NAME}" =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]] ||
    die "--name='${NAME}': use lowercase letters, digits and '-', starting with a letter"
  [[ -n "${ZONE}" ]] || die "--zone (or TPU_ZONE) is required, e.g. --zone=us-central2-b"
  [[ "${WORKER}" =~ ^([0-9]+|all)$ ]] || die "--worker='${WORKER}' must be a worker number or 'all'"
  if [[ "${command}" == create ]]; then  # the only command that uses them
    [[ "${ACCELERATOR_TYPE}" =~ ^v[0-9]+[a-z]*-[0-9]+$ ]] ||
      die "--accelerator-type='${ACCELERATOR_TYPE}' is not like v4-8, v5litepod-16 or v5p-128"
    if [[ -z "${RUNTIME}" ]]; then RUNTIME="$(default_runtime "${ACCELERATOR_TYPE}")"; fi
  fi
  if [[ "${DRY_RUN}" == 0 ]] && ! command -v gcloud > /dev/null; then
    die "gcloud not found: install the Google Cloud CLI (https://cloud.google.com/sdk/docs/install) or use --dry-run"
  fi

  "cmd_${command}"
}

main "$@"
