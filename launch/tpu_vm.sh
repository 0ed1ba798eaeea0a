#!/usr/bin/env bash
# Drive a Cloud TPU VM, one host or a pod slice, with gcloud: create it, install this repo on
# every worker, start a run on all workers at once, follow its log, stop it, delete it.
#
#   launch/tpu_vm.sh [--dry-run] create NAME --zone=Z --accelerator-type=v4-32 [--version=V]
#                                [--spot]
#   launch/tpu_vm.sh [--dry-run] install NAME --zone=Z [--repo=URL] [--ref=main]
#   launch/tpu_vm.sh [--dry-run] run NAME --zone=Z CONFIG WORKDIR [--config.x=y ...] [-- FLAG ...]
#   launch/tpu_vm.sh [--dry-run] logs NAME --zone=Z [--worker=0]
#   launch/tpu_vm.sh [--dry-run] stop|delete NAME --zone=Z
#
# JAX is multi-controller: every worker of a slice runs the same program and they find each
# other through the TPU metadata (--multihost=on), so install, run and stop go to
# --worker=all. Only process 0 logs progress; ~/train.log on worker 0 is the one to follow.
# A run stopped by SIGTERM (`stop`, a maintenance event, a spot VM being reclaimed) saves a
# checkpoint and exits 75; the same `run` command resumes from it. A reclaimed spot slice is
# gone: `delete`, `create` and `install` it again first. --dry-run prints the gcloud commands,
# shell-quoted to copy and paste, and runs nothing.
# Written for bash 3.2 too (macOS's /bin/bash): empty arrays go through ${a[@]+...}.
set -euo pipefail

# Software versions: v4 and older tpu-ubuntu2204-base, v5e v2-alpha-tpuv5-lite,
# v5p v2-alpha-tpuv5, v6e v2-alpha-tpuv6e (cloud.google.com/tpu/docs/runtimes).
default_version=tpu-ubuntu2204-base
# Where the repo and its virtualenv live on each worker (relative to the ssh user's home).
remote_dir=transformer_bert_jax
# The training processes, anchored at the start of the command line so that the `bash -c`
# running the ssh command (which contains this text) is never taken for one.
proc_pattern='^python3 -m (bert|transformer)_jax[.]main'

usage() {
  cat >&2 <<EOF
usage: $0 [--dry-run] COMMAND NAME --zone=ZONE [options]
  create NAME --zone=Z --accelerator-type=TYPE [--version=$default_version] [--spot]
  install NAME --zone=Z [--repo=URL (default: \$REPO_URL)] [--ref=main]
  run NAME --zone=Z CONFIG WORKDIR [--allow-local-workdir] [--config.field=value ...] [-- FLAG ...]
  logs NAME --zone=Z [--worker=0]
  stop NAME --zone=Z      SIGTERM on every worker: save a checkpoint, exit 75
  delete NAME --zone=Z
EOF
  exit 2
}
fail() { echo "tpu_vm.sh $sub: $*" >&2; exit 2; }

dry_run=0
while [[ "${1:-}" == -* ]]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    *) echo "unknown option $1" >&2; usage ;;
  esac
  shift
done
[[ $# -ge 1 ]] || usage
sub=$1
shift
case "$sub" in
  create|install|run|logs|stop|delete) ;;
  *) echo "unknown command $sub" >&2; usage ;;
esac

zone='' accel='' version=$default_version spot=0 repo=${REPO_URL:-} ref=main worker=0
allow_local=0
positional=() extra=()
while [[ $# -gt 0 ]]; do
  case "$sub:$1" in
    *:--dry-run) dry_run=1 ;;  # after the command too: never run what was meant as a preview
    *:--zone=*) zone=${1#*=} ;;
    create:--accelerator-type=*) accel=${1#*=} ;;
    create:--version=*) version=${1#*=} ;;
    create:--spot) spot=1 ;;
    install:--repo=*) repo=${1#*=} ;;
    install:--ref=*) ref=${1#*=} ;;
    logs:--worker=*) worker=${1#*=} ;;
    run:--allow-local-workdir) allow_local=1 ;;
    run:--config.*) extra+=("$1") ;;
    run:--) shift; extra+=("$@"); break ;;  # any other flag of the program, verbatim
    *:-*) echo "$sub: unknown option $1" >&2; usage ;;
    *) positional+=("$1") ;;
  esac
  shift
done
want=1
if [[ "$sub" == run ]]; then want=3; fi
if [[ ${#positional[@]} -ne $want ]]; then
  echo "$sub: expected $want positional argument(s), got ${#positional[@]}" >&2
  usage
fi
[[ -n "$zone" ]] || { echo "$sub: --zone=ZONE is required" >&2; usage; }
name=${positional[0]}

# Runs one command, or with --dry-run prints it (printf %q: pastes back as the same argv).
do_cmd() {
  if (( dry_run )); then
    local line
    line=$(printf '%q ' "$@")
    echo "${line% }"
  else
    "$@"
  fi
}
# One ssh command on the given worker(s) of the slice ("all": in parallel on every worker).
on_workers() {
  do_cmd gcloud compute tpus tpu-vm ssh "$name" "--zone=$zone" "--worker=$1" "--command=$2"
}

case "$sub" in
  create)
    [[ -n "$accel" ]] || { echo "create: --accelerator-type=TYPE is required" >&2; usage; }
    cmd=(gcloud compute tpus tpu-vm create "$name" "--zone=$zone" "--accelerator-type=$accel"
         "--version=$version")
    if (( spot )); then cmd+=(--spot); fi
    do_cmd "${cmd[@]}"
    ;;
  install)
    [[ -n "$repo" ]] || fail "no repository to clone: pass --repo=URL or set REPO_URL"
    # Clone once, then fetch and check out REF (a branch fast-forwards to its upstream), so
    # install is also how workers are updated. Ubuntu 22.04 images ship Python 3.10 and JAX
    # needs 3.11: take Ubuntu's python3.11 then. A virtualenv keeps pip off the system Python.
    remote="set -e; cd ~; [ -d $remote_dir/.git ] || git clone $(printf %q "$repo") $remote_dir; "
    remote+="cd $remote_dir; git fetch --tags origin; git checkout $(printf %q "$ref"); "
    remote+='if git symbolic-ref -q HEAD >/dev/null && '
    remote+='git rev-parse -q --verify "@{u}" >/dev/null; then git merge --ff-only "@{u}"; fi; '
    remote+='py=python3; if ! python3 -c "import sys; sys.exit(sys.version_info < (3, 11))"; then '
    remote+='sudo apt-get -qq update && sudo DEBIAN_FRONTEND=noninteractive apt-get -qq -y '
    remote+='-o DPkg::Lock::Timeout=300 install python3.11 python3.11-venv; py=python3.11; fi; '
    remote+='[ -x ~/venv/bin/python3 ] || $py -m venv ~/venv; . ~/venv/bin/activate; '
    remote+='python3 -m pip install -q -U pip; python3 -m pip install -e ".[tpu]"'
    on_workers all "$remote"
    ;;
  run)
    config=${positional[1]} workdir=${positional[2]}
    # Each worker writes its own shards of every checkpoint into WORKDIR: on a pod it must be
    # storage all of them share, and a TPU VM's disk is gone with the VM anyway.
    if [[ "$workdir" != gs://* ]] && (( ! allow_local )); then
      fail "a pod's workdir must be on Cloud Storage (gs://...), got '$workdir'" \
           "(--allow-local-workdir for a single-host TPU VM)"
    fi
    case "$config" in
      configs/bert*) module=bert_jax.main ;;
      *) module=transformer_jax.main ;;
    esac
    train=$(printf '%q ' python3 -m "$module" "--config=$config" "--workdir=$workdir" \
            --multihost=on ${extra[@]+"${extra[@]}"})
    # The exit status goes into the log: 75 means "preempted after saving, run again".
    job="echo \"[tpu_vm.sh] \$(date -u) start on \$(hostname)\"; ${train}; status=\$?; "
    job+='echo "[tpu_vm.sh] $(date -u) exit status $status"'
    # nohup and no terminal: the run outlives the ssh session. Appending keeps earlier
    # attempts' logs. A run still going would hold the TPU: refuse rather than start a second.
    remote="set -e; cd ~/$remote_dir; . ~/venv/bin/activate; "
    remote+="if pgrep -u \"\$USER\" -f '$proc_pattern' >/dev/null; then "
    remote+='echo "$(hostname): a run is still going (launch/tpu_vm.sh stop)" >&2; exit 1; fi; '
    remote+="nohup bash -c $(printf %q "$job") >> ~/train.log 2>&1 < /dev/null &"
    on_workers all "$remote"
    ;;
  logs)
    on_workers "$worker" 'tail -f ~/train.log'
    ;;
  stop)
    # SIGTERM, as a preemption would send: the run saves at a step all workers agree on.
    on_workers all "pkill -TERM -u \"\$USER\" -f '$proc_pattern' || true"
    ;;
  delete)
    do_cmd gcloud compute tpus tpu-vm delete "$name" "--zone=$zone" --quiet
    ;;
esac
