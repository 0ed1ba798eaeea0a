#!/usr/bin/env bash
# Run a config on this host (single process). Multi-host TPU/GPU launchers come later.
#
#   launch/train.sh configs/transformer_demo.py /tmp/demo [--config.num_train_steps=100 ...]
#   launch/train.sh --dry-run configs/transformer_wmt.py:size=base gs://bucket/run
set -euo pipefail
dry_run=0
if [[ "${1:-}" == "--dry-run" ]]; then dry_run=1; shift; fi
if [[ $# -lt 2 ]]; then
  echo "usage: $0 [--dry-run] CONFIG WORKDIR [--config.field=value ...]" >&2
  exit 2
fi
config=$1 workdir=$2
shift 2
case "$config" in
  configs/bert*) module=bert_jax.main ;;
  *) module=transformer_jax.main ;;
esac
cmd=(python3 -m "$module" "--config=$config" "--workdir=$workdir" "$@")
if (( dry_run )); then printf '%q ' "${cmd[@]}"; echo; exit 0; fi
exec "${cmd[@]}"
