#!/usr/bin/env bash
# Run a config as N processes on this machine, joined by jax.distributed (CPU: gloo), the
# way N hosts of a pod would run it. Each process gets D simulated CPU devices.
#
#   launch/local_multiprocess.sh [--dry-run] [--port=P] N D CONFIG WORKDIR [--config.x=y ...]
#   launch/local_multiprocess.sh 2 4 configs/bert_pretrain.py:size=tiny /tmp/bert_2proc
#
# Process i's log is WORKDIR/logs/process_i.log (process 0 also echoes to the console).
# XLA_FLAGS set by the caller reach every process; the device count is always D.
# Exit status: 0 when all succeed, else the first failing process's status (75 = preempted
# after saving a checkpoint: run the same command to resume). SIGTERM to this script is
# passed to every process, as a scheduler preempting the whole job would.
set -euo pipefail
dry_run=0 port=$(( 20000 + RANDOM % 20000 ))
while [[ "${1:-}" == --* ]]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --port=*) port=${1#--port=} ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
if [[ $# -lt 4 ]]; then
  echo "usage: $0 [--dry-run] [--port=P] NUM_PROCESSES DEVICES_PER_PROCESS CONFIG WORKDIR" \
       "[--config.field=value ...]" >&2
  exit 2
fi
num=$1 devices=$2 config=$3 workdir=$4
shift 4
case "$config" in
  configs/bert*) module=bert_jax.main ;;
  *) module=transformer_jax.main ;;
esac

xla_flags=()
read -r -a inherited <<< "${XLA_FLAGS:-}"
for flag in "${inherited[@]}"; do
  [[ "$flag" == --xla_force_host_platform_device_count=* ]] || xla_flags+=("$flag")
done
xla_flags+=("--xla_force_host_platform_device_count=$devices")
commands=()
for (( i = 0; i < num; i++ )); do
  args=(env JAX_PLATFORMS=cpu "XLA_FLAGS=${xla_flags[*]}"
        python3 -m "$module" "--config=$config" "--workdir=$workdir" --multihost=on
        "--coordinator_address=127.0.0.1:$port" "--num_processes=$num" "--process_id=$i" "$@")
  commands+=("$(printf '%q ' "${args[@]}")")
done
if (( dry_run )); then
  printf '%s\n' "${commands[@]}"
  exit 0
fi

mkdir -p "$workdir/logs"
pids=()
for (( i = 0; i < num; i++ )); do
  log="$workdir/logs/process_$i.log"
  if (( i == 0 )); then
    bash -c "exec ${commands[i]}" > >(tee "$log") 2>&1 &
  else
    bash -c "exec ${commands[i]}" > "$log" 2>&1 &
  fi
  pids+=($!)
done
trap 'kill -TERM "${pids[@]}" 2>/dev/null || true' TERM INT
status=0
for pid in "${pids[@]}"; do
  while true; do
    code=0
    wait "$pid" || code=$?
    # A signal to this script interrupts `wait` (status > 128): wait for the process itself.
    if (( code > 128 )) && kill -0 "$pid" 2>/dev/null; then continue; fi
    break
  done
  if (( code != 0 && status == 0 )); then status=$code; fi
done
exit "$status"
