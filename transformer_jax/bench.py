"""Benchmark the train step of any translation config on synthetic data.

  python -m transformer_jax.bench --config=configs/transformer_wmt.py:size=base \
      --batch_size=16 --source_length=64 --target_length=64

Prints compile time, step time, tokens/s, model FLOPs per step and MFU. The peak that MFU
is measured against is not a datasheet number: it is measured in the same run, on the same
devices, as the best throughput of a large dense matmul in the model's compute dtype (with
fp32 accumulation), so the ratio says how close the whole step gets to what this machine's
matmul units actually deliver.
"""


import jax
import numpy as np
from absl import app, flags

from transformer_jax import runtime
from transformer_jax import benchmarking
from transformer_jax.benchmarking import benchmark_train_step, measure_peak_flops

FLAGS = flags.FLAGS


def synthetic_batch(batch_size: int, source_length: int, target_length: int,
                    vocab_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Full-length unpacked sentences of random non-special tokens."""
    rng = np.random.default_rng(seed)

    def tokens(length):
        return rng.integers(4, vocab_size, (batch_size, length), dtype=np.int32)

    def positions(length):
        return np.broadcast_to(np.arange(length, dtype=np.int32), (batch_size, length)).copy()

    targets = tokens(target_length)
    decoder_inputs = np.concatenate([np.full((batch_size, 1), 2, np.int32), targets[:, :-1]], 1)
    return {
        "inputs": tokens(source_length),
        "inputs_segment_ids": np.ones((batch_size, source_length), np.int32),
        "inputs_positions": positions(source_length),
        "decoder_inputs": decoder_inputs,
        "targets": targets,
        "targets_segment_ids": np.ones((batch_size, target_length), np.int32),
        "targets_positions": positions(target_length),
    }


def report(config, batch_size: int, source_length: int, target_length: int, steps: int,
           warmup: int, peak_size: int) -> dict[str, float]:
    """Runs the benchmark and returns (and prints) its numbers."""
    import tempfile

    from transformer_jax.engine.trainer import Trainer
    from transformer_jax.translation.task import TranslationTask

    config = config.copy_and_resolve_references()
    with config.unlocked():
        config.batch_size = config.eval_batch_size = batch_size
        config.data.max_source_length, config.data.max_target_length = (source_length,
                                                                         target_length)
    task = TranslationTask.for_benchmark(config)
    with tempfile.TemporaryDirectory() as workdir:
        trainer = Trainer(config, workdir, task)
        batch = synthetic_batch(batch_size, source_length, target_length,
                                task.model_cfg.vocab_size)
        timing = benchmark_train_step(trainer, batch, steps, warmup)
    model_flops = task.flops_per_step(batch)
    peak = measure_peak_flops(task.model_cfg.compute_dtype, peak_size)
    tokens = batch_size * (source_length + target_length)
    results = dict(timing, model_flops=model_flops, peak_flops_per_s=peak,
                   tokens_per_s=tokens / timing["step_s"],
                   achieved_flops_per_s=model_flops / timing["step_s"],
                   mfu=model_flops / timing["step_s"] / peak)
    results["mfu_datasheet"], datasheet_line = benchmarking.datasheet_mfu(
        model_flops, timing["step_s"], task.model_cfg.compute_dtype)
    print_results(results, task.model_cfg, batch_size, source_length, target_length,
                  datasheet_line)
    return results


def print_results(r: dict[str, float], cfg, batch_size, source_length, target_length,
                  datasheet_line: str) -> None:
    print(f"model: d_model={cfg.d_model} layers={cfg.num_encoder_layers}+"
          f"{cfg.num_decoder_layers} d_ff={cfg.d_ff} heads={cfg.num_heads} "
          f"vocab={cfg.vocab_size} dtype={cfg.dtype}")
    print(f"batch: {batch_size} x ({source_length} source + {target_length} target) tokens "
          f"on {jax.device_count()} {jax.devices()[0].platform} device(s)")
    print(f"compile time      {r['compile_s']:.2f} s")
    print(f"step time         {1e3 * r['step_s']:.1f} ms (median)")
    print(f"tokens/s          {r['tokens_per_s']:,.0f}")
    print(f"model FLOPs/step  {r['model_flops'] / 1e9:.2f} GFLOP (XLA counts "
          f"{r['xla_flops'] / 1e9:.2f})")
    print(f"achieved          {r['achieved_flops_per_s'] / 1e9:.1f} GFLOP/s")
    print(f"measured peak     {r['peak_flops_per_s'] / 1e9:.1f} GFLOP/s "
          f"({cfg.dtype} matmul, fp32 accumulation)")
    print(f"MFU               {100 * r['mfu']:.1f}% (of the measured peak)")
    print(datasheet_line)
    print(f"host memory peak  {r['host_peak_bytes'] / 2**30:.2f} GiB (resident)")
    print(benchmarking.device_memory_line(r['device_peak_bytes']))


def define_flags() -> None:
    benchmarking.define_common_flags("Config file (configs/*.py[:arg]).", default_batch_size=16)
    flags.DEFINE_integer("source_length", 64, "Source tokens per sequence.")
    flags.DEFINE_integer("target_length", 64, "Target tokens per sequence.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    runtime.setup_host(uses_tensorflow=False)
    report(FLAGS.config, FLAGS.batch_size, FLAGS.source_length, FLAGS.target_length,
           FLAGS.steps, FLAGS.warmup, FLAGS.peak_size)


def cli() -> None:
    """Entry point of the `transformer-bench` command (and of `python -m`)."""
    define_flags()
    flags.mark_flags_as_required(["config"])
    app.run(main, flags_parser=runtime.parse_flags)


if __name__ == "__main__":
    cli()
