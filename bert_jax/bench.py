"""Benchmark the BERT pretraining step (MLM + NSP, AdamW) on synthetic data.

  python -m bert_jax.bench --config=configs/bert_pretrain.py:size=base --batch_size=8
  python -m bert_jax.bench --config=configs/bert_pretrain.py:size=large,phase=2 --batch_size=4

Prints compile time, step time, tokens/s, model FLOPs per step and MFU against the peak
matmul throughput measured in the same run (see ``transformer_jax.bench``). When PyTorch
and Hugging Face transformers are installed (``pip install -e ".[bench]"``), it also times
Hugging Face's ``BertForPreTraining`` with AdamW at the same size, batch, sequence length
and dtype, and prints the ratio of tokens/s. Both models are timed with the same number of
host threads, in alternating halves (ours, HF, ours, HF), so a shared machine's speed
drift does not favour either side.
"""

import dataclasses
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile

import jax
import numpy as np
from absl import app, flags

from transformer_jax import runtime
from transformer_jax import benchmarking
from transformer_jax.benchmarking import (benchmark_train_step, datasheet_mfu,
                                          measure_peak_flops)

FLAGS = flags.FLAGS


def synthetic_batch(batch_size: int, length: int, predictions: int, vocab_size: int,
                    seed: int = 0) -> dict[str, np.ndarray]:
    """Full-length pairs of random tokens, ``predictions`` distinct masked positions each."""
    rng = np.random.default_rng(seed)
    input_ids = rng.integers(5, vocab_size, (batch_size, length), dtype=np.int32)
    positions = np.sort(np.stack([rng.choice(np.arange(1, length), predictions, replace=False)
                                  for _ in range(batch_size)]), axis=1).astype(np.int32)
    segment_ids = (np.arange(length) >= length // 2).astype(np.int32)
    return {
        "input_ids": input_ids,
        "input_mask": np.ones((batch_size, length), np.int32),
        "segment_ids": np.broadcast_to(segment_ids, (batch_size, length)).copy(),
        "masked_lm_positions": positions,
        "masked_lm_ids": np.take_along_axis(input_ids, positions, axis=1),
        "masked_lm_weights": np.ones((batch_size, predictions), np.float32),
        "next_sentence_labels": rng.integers(0, 2, (batch_size,), dtype=np.int32),
        "next_sentence_weights": np.ones((batch_size,), np.float32),
    }


def report(config, batch_size: int, steps: int, warmup: int, peak_size: int,
           compare_hf: str) -> dict[str, float]:
    from bert_jax.pretraining.task import PretrainingTask
    from transformer_jax.engine.trainer import Trainer

    config = config.copy_and_resolve_references()
    with config.unlocked():
        config.batch_size = config.eval_batch_size = batch_size
    task = PretrainingTask.for_benchmark(config)
    cfg, length = task.model_cfg, config.data.max_seq_length
    predictions = config.data.max_predictions_per_seq
    batch = synthetic_batch(batch_size, length, predictions, cfg.vocab_size)
    hf = None if compare_hf == "no" else _HuggingFaceTimer(
        cfg, config, batch, warmup, required=compare_hf == "yes")
    # Alternating halves: ours, HF, ours, HF (see benchmark_train_step's ``between``).
    between = hf.time if hf and hf.available else None
    with tempfile.TemporaryDirectory() as workdir:
        timing = benchmark_train_step(Trainer(config, workdir, task), batch, steps, warmup,
                                      between=between)
    model_flops = task.flops_per_step(batch)
    peak = measure_peak_flops(cfg.compute_dtype, peak_size)
    tokens = batch_size * length
    results = dict(timing, model_flops=model_flops, peak_flops_per_s=peak,
                   tokens_per_s=tokens / timing["step_s"],
                   mfu=model_flops / timing["step_s"] / peak)
    results["mfu_datasheet"], datasheet_line = datasheet_mfu(
        model_flops, timing["step_s"], cfg.compute_dtype)
    _print_ours(results, cfg, batch_size, length, predictions, steps, datasheet_line)
    if hf is None:
        return results
    if not hf.available:
        print(f"Hugging Face      not timed ({hf.missing} not installed; "
              "pip install -e '.[bench]')")
        return results
    hf.time(steps - len(hf.times))  # the half not timed between ours
    hf_step = statistics.median(hf.times)
    results.update(hf_step_s=hf_step, hf_tokens_per_s=tokens / hf_step,
                   speedup_vs_hf=hf_step / timing["step_s"])
    print(f"Hugging Face      {1e3 * hf_step:.1f} ms/step, {tokens / hf_step:,.0f} tokens/s "
          f"(BertForPreTraining + AdamW, torch; median of {len(hf.times)}, timed in "
          "alternation with ours)")
    print(f"ours / HF         {results['speedup_vs_hf']:.2f}x tokens/s")
    return results


def _print_ours(results: dict[str, float], cfg, batch_size: int, length: int,
                predictions: int, steps: int, datasheet_line: str) -> None:
    print(f"model: BERT L={cfg.num_layers} H={cfg.hidden_size} A={cfg.num_heads} "
          f"vocab={cfg.vocab_size} dtype={cfg.dtype} attention={cfg.attention_implementation} "
          f"(dropout {cfg.attention_dropout}); batch {batch_size} x seq {length}, "
          f"{predictions} predictions/seq, on {jax.device_count()} "
          f"{jax.devices()[0].platform} device(s)")
    print(f"compile time      {results['compile_s']:.2f} s")
    print(f"step time         {1e3 * results['step_s']:.1f} ms (median of {steps})")
    print(f"tokens/s          {results['tokens_per_s']:,.0f}")
    print(f"model FLOPs/step  {results['model_flops'] / 1e9:.2f} GFLOP (XLA counts "
          f"{results['xla_flops'] / 1e9:.2f})")
    print(f"measured peak     {results['peak_flops_per_s'] / 1e9:.1f} GFLOP/s "
          f"({cfg.dtype} matmul)")
    print(f"MFU               {100 * results['mfu']:.1f}% (of the measured peak)")
    print(datasheet_line)
    print(f"host memory peak  {results['host_peak_bytes'] / 2**30:.2f} GiB (resident, ours)")
    print(benchmarking.device_memory_line(results['device_peak_bytes']))


class _HuggingFaceTimer:
    """Times HF's BertForPreTraining in child processes (``bench_hf``), collecting the
    step times of every call to ``time``."""

    def __init__(self, cfg, config, batch: dict[str, np.ndarray], warmup: int,
                 required: bool):
        self.missing = " and ".join(m for m in ("torch", "transformers")
                                    if importlib.util.find_spec(m) is None)
        if self.missing and required:
            raise ImportError(f"--compare_hf=yes needs {self.missing}: pip install -e '.[bench]'")
        self.optimizer = {k: float(config.optimizer[k])
                          for k in ("learning_rate", "b1", "b2", "eps", "weight_decay")}
        self.cfg, self.batch, self.warmup = cfg, batch, warmup
        self.times: list[float] = []

    @property
    def available(self) -> bool:
        return not self.missing

    def time(self, steps: int) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            spec_path, batch_path = os.path.join(tmp, "spec.json"), os.path.join(tmp, "batch.npz")
            with open(spec_path, "w") as f:
                json.dump({"model": dataclasses.asdict(self.cfg), "optimizer": self.optimizer,
                           "steps": steps, "warmup": self.warmup}, f)
            np.savez(batch_path, **self.batch)
            result = subprocess.run([sys.executable, "-m", "bert_jax.bench_hf", spec_path,
                                     batch_path], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"timing Hugging Face failed: {result.stderr.strip()[-500:]}")
        self.times += json.loads(result.stdout.strip().splitlines()[-1])["step_times_s"]


def define_flags() -> None:
    benchmarking.define_common_flags("Config file (configs/bert_pretrain.py:...).",
                                     default_batch_size=8)
    flags.DEFINE_enum("compare_hf", "auto", ["auto", "yes", "no"],
                      "Time Hugging Face's BertForPreTraining too: auto = when installed.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    runtime.setup_host(("bert_jax",), uses_tensorflow=False)
    report(FLAGS.config, FLAGS.batch_size, FLAGS.steps, FLAGS.warmup, FLAGS.peak_size,
           FLAGS.compare_hf)


def cli() -> None:
    """Entry point of the `bert-bench` command (and of `python -m`)."""
    define_flags()
    flags.mark_flags_as_required(["config"])
    app.run(main, flags_parser=runtime.parse_flags)


if __name__ == "__main__":
    cli()
