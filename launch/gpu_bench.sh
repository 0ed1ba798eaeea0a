#!/usr/bin/env bash
# BERT pretraining bf16 MFU on this host's accelerators (issue 3's target: >= 55% of the
# datasheet peak, printed as "MFU (datasheet)"): base and large, sequence 128 and 512,
# with each attention core named in ATTENTION (default "cudnn einsum"):
#   cudnn   jax's cuDNN flash attention; attention dropout 0, as that kernel has none usable
#   einsum  BERT's own recipe (attention dropout 0.1), the [B, N, L, L] weights through XLA
#
#   launch/gpu_bench.sh                    # needs pip install -e ".[gpu]" (or ".[tpu]")
#   ATTENTION=cudnn launch/gpu_bench.sh    # one core: four runs, about half the time
#   launch/gpu_bench.sh --dry-run          # print the commands
#
# Batches fit an 80 GB GPU by XLA's own memory plan (compiled on CPU in bf16, no remat, so
# an estimate; temporaries + parameters and AdamW state): 256 x 128 for base (32.0 + 1.2
# GiB), 128 x 128 for large (43.2 + 3.8), and at 512 tokens 64 for base (44.6 + 1.2) and 32
# for large (60.6 + 3.8). The paper's batches for the other three (256 x 128 for large, 128
# and 64 x 512) plan 85-120 GiB of temporaries. Pass BATCHES ("b128_base b128_large
# b512_base b512_large") to fit another memory size. A run that fails (out of memory, say)
# does not stop the others: the failed ones are listed at the end and the script exits 1.
# JAX may take 95% of a GPU's memory (XLA_PYTHON_CLIENT_MEM_FRACTION, default 75%), as
# nothing else shares the device during a benchmark.
set -euo pipefail
dry_run=0
if [[ "${1:-}" == "--dry-run" ]]; then dry_run=1; shift; fi
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.95}"
read -r b128_base b128_large b512_base b512_large <<< "${BATCHES:-256 128 64 32}"
read -r -a cores <<< "${ATTENTION:-cudnn einsum}"
if (( ${#cores[@]} == 0 )); then
  echo "gpu_bench: ATTENTION is empty; name cudnn, einsum or xla (or unset it for both)" >&2
  exit 2
fi
for core in "${cores[@]}"; do
  case "$core" in einsum|xla|cudnn) ;;
    *) echo "gpu_bench: unknown attention core '$core' in ATTENTION; use cudnn, einsum or xla" >&2
       exit 2;;
  esac
done
runs=("size=base $b128_base" "size=large $b128_large"
      "size=base,phase=2 $b512_base" "size=large,phase=2 $b512_large")
failed=()
for core in "${cores[@]}"; do
  attention=()  # einsum: the config's own attention dropout (0.1, BERT's recipe)
  if [[ "$core" != einsum ]]; then
    attention=("--config.model.attention_implementation=$core"
               --config.model.attention_dropout=0)
  fi
  for run in "${runs[@]}"; do
    read -r variant batch <<< "$run"
    # The measured peak from 8192-sided matmuls: 2048 ones run below a GPU's best rate.
    cmd=(python3 -m bert_jax.bench "--config=configs/bert_pretrain.py:$variant"
         --config.model.dtype=bfloat16 ${attention[@]+"${attention[@]}"} "--batch_size=$batch"
         --compare_hf=no --steps=10 --warmup=3 --peak_size=8192)
    if (( dry_run )); then printf '%q ' "${cmd[@]}"; echo; continue; fi
    echo "=== $variant, batch $batch, $core attention"
    "${cmd[@]}" || failed+=("$variant batch $batch $core (exit $?)")
  done
done
if (( ${#failed[@]} )); then
  printf 'gpu_bench: failed: %s\n' "${failed[@]}" >&2
  echo "gpu_bench: lower BATCHES for an out-of-memory run (see the top of this script)." >&2
  exit 1
fi
