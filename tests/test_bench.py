"""The benchmarks run end to end on tiny configs and report self-consistent numbers; the
analytic FLOP counts they divide by are checked by hand. (Speed itself is never asserted.)"""
import importlib.util
import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest

import run_helpers
from bert_jax import bench as bert_bench
from bert_jax import flops as bert_flops
from bert_jax.model import BertConfig
from configs import bert_pretrain, transformer_wmt
from transformer_jax import bench as transformer_bench
from transformer_jax import benchmarking
from transformer_jax import device_peaks


# Odd tiny sizes, set in-process (run_helpers.override) and as CLI flags (as_flags).
TINY_BERT = {"model.num_layers": 1, "model.hidden_size": 32, "model.num_heads": 4,
             "model.intermediate_size": 37, "model.max_position_embeddings": 32,
             "data.vocab_size": 53, "data.max_seq_length": 23, "data.max_predictions_per_seq": 5}
TINY_TRANSFORMER = {"model.d_model": 32, "model.num_heads": 4, "model.d_ff": 37,
                    "model.num_encoder_layers": 1, "model.num_decoder_layers": 1,
                    "data.vocab_size": 101}


def tiny_bert_config():
    c = bert_pretrain.get_config("size=tiny")
    run_helpers.override(c, TINY_BERT)
    return c


def tiny_transformer_config(dtype: str = "float32"):
    c = transformer_wmt.get_config("tiny")
    run_helpers.override(c, dict(TINY_TRANSFORMER, **{"model.dtype": dtype}))
    return c


def test_bert_synthetic_batch_is_a_valid_masked_batch():
    batch = bert_bench.synthetic_batch(3, 23, 5, vocab_size=53)
    positions = batch["masked_lm_positions"]
    assert positions.shape == (3, 5) and (np.diff(positions, axis=1) > 0).all()
    assert (positions >= 1).all() and (positions < 23).all()  # never [CLS] at 0
    np.testing.assert_array_equal(
        batch["masked_lm_ids"], np.take_along_axis(batch["input_ids"], positions, axis=1))
    assert set(np.unique(batch["segment_ids"])) == {0, 1}


def test_bert_flops_by_hand():
    fields = dict(vocab_size=53, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=37)
    b, length, p, d, f, v = 3, 23, 5, 32, 37, 53
    tokens, rows = b * length, b * (1 + p)  # the last layer outputs [CLS] + masked rows
    layer = 2 * tokens * d * d * 4 + 2 * tokens * length * d * 2 + 2 * tokens * d * f * 2
    last = 2 * tokens * d * d * 2 + 2 * rows * d * d * 2 + 2 * rows * length * d * 2 + (
        2 * rows * d * f * 2)
    heads = 2 * b * d * d + 2 * b * p * d * (d + v) + 2 * b * d * 2
    cfg = BertConfig.from_dict(fields)
    assert bert_flops.pretraining_train_flops(cfg, b, length, p) == 3 * (layer + last + heads)
    scanned = BertConfig.from_dict(dict(fields, scan_layers=True))  # computes every row
    assert bert_flops.pretraining_train_flops(scanned, b, length, p) == 3 * (2 * layer + heads)


def test_bert_bench_reports_consistent_numbers(capsys):
    results = bert_bench.report(tiny_bert_config(), batch_size=8, steps=2, warmup=1,
                                peak_size=128, compare_hf="auto")
    out = capsys.readouterr().out
    assert results["step_s"] > 0 and results["compile_s"] > 0
    assert results["tokens_per_s"] == pytest.approx(8 * 23 / results["step_s"])
    assert results["mfu"] == pytest.approx(
        results["model_flops"] / results["step_s"] / results["peak_flops_per_s"])
    assert "MFU" in out and "tokens/s" in out
    # fp32 on CPU: no datasheet peak, and the report says so instead of inventing one.
    assert results["mfu_datasheet"] is None
    assert "MFU (datasheet)   n/a: no datasheet peak for float32" in out
    # ru_maxrss is read in the right unit: the test process's peak is MBs, not KBs or TBs.
    machine = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert 50 * 2**20 < results["host_peak_bytes"] < machine
    # The CPU backend keeps no allocator statistics: said, not printed as 0.
    assert results["device_peak_bytes"] is None
    assert "device memory     n/a: cpu keeps no allocator statistics" in out
    if importlib.util.find_spec("torch") is None:
        assert "Hugging Face      not timed" in out and "speedup_vs_hf" not in results
    else:
        assert results["speedup_vs_hf"] > 0


def test_bert_bench_alternates_with_hugging_face_and_pools_its_times(monkeypatch, capsys):
    """Ours, HF, ours, HF: HF is timed once after the first half of our steps and once after
    the rest; its median is over both calls. (HF itself is stood in for, so this runs with
    or without torch; the real child process is covered above when torch is installed.)"""
    calls = []

    class RecordingTimer:
        available, missing = True, ""

        def __init__(self, *args, **kwargs):
            self.times = []

        def time(self, steps):
            calls.append(steps)
            self.times += [2.0] if len(calls) == 1 else [4.0, 6.0]

    monkeypatch.setattr(bert_bench, "_HuggingFaceTimer", RecordingTimer)
    results = bert_bench.report(tiny_bert_config(), batch_size=8, steps=3, warmup=1,
                                peak_size=128, compare_hf="yes")
    assert calls == [1, 2]
    assert results["hf_step_s"] == 4.0
    assert results["speedup_vs_hf"] == pytest.approx(4.0 / results["step_s"])
    assert "median of 3, timed in alternation with ours" in capsys.readouterr().out


def test_transformer_bench_reports_consistent_numbers(capsys):
    results = transformer_bench.report(tiny_transformer_config(), batch_size=8, source_length=7,
                                       target_length=5, steps=2, warmup=1, peak_size=128)
    assert results["tokens_per_s"] == pytest.approx(8 * 12 / results["step_s"])
    assert results["model_flops"] > 0 and "MFU" in capsys.readouterr().out


def test_bench_reports_datasheet_mfu_where_the_chip_is_known(monkeypatch, capsys):
    """As on a GPU in bf16: the datasheet MFU divides by the chip's peak times 8 devices,
    looked up for the compute dtype (the parameters stay float32)."""
    monkeypatch.setattr(device_peaks, "datasheet_peak_flops",
                        lambda kind, dtype: 1e12 if jnp.dtype(dtype) == jnp.bfloat16 else None)
    results = transformer_bench.report(tiny_transformer_config("bfloat16"), batch_size=8,
                                       source_length=7, target_length=5,
                                       steps=2, warmup=1, peak_size=128)
    assert results["mfu_datasheet"] == pytest.approx(
        results["model_flops"] / results["step_s"] / (8 * 1e12))
    assert f"MFU (datasheet)   {100 * results['mfu_datasheet']:.1f}% of 8 x 1.0 TFLOP/s" in (
        capsys.readouterr().out)


TINY_BENCH_FLAGS = {
    "bert_jax": ["--config=configs/bert_pretrain.py:size=tiny", *run_helpers.as_flags(TINY_BERT),
                 "--batch_size=8", "--compare_hf=no"],
    "transformer_jax": ["--config=configs/transformer_wmt.py:size=tiny",
                        *run_helpers.as_flags(TINY_TRANSFORMER), "--batch_size=8",
                        "--source_length=7", "--target_length=5"],
}


BATCH_LINE = {"bert_jax": "batch 8 x seq 23", "transformer_jax": "batch: 8 x (7 source + 5 target)"}


# TensorFlow as found but failing to import: a bench that imports it (even where it is
# installed) fails, so it runs on images without it and never pays its ~10 s import.
FORBID_TENSORFLOW = textwrap.dedent("""
    import importlib.machinery, sys

    class ForbidTensorFlow:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tensorflow", "tensorflow_text", "tensorflow_datasets"):
                return importlib.machinery.ModuleSpec(name, self)

        def create_module(self, spec):
            return None

        def exec_module(self, module):
            raise ImportError(f"the bench imported {module.__name__}")

    sys.meta_path.insert(0, ForbidTensorFlow())
""")


@pytest.mark.parametrize("package", sorted(TINY_BENCH_FLAGS))
def test_bench_never_imports_tensorflow(package):
    """Accelerator images often carry JAX but not TensorFlow (too big to bring along): the
    benches time synthetic batches, so nothing on their path may import TensorFlow."""
    script = FORBID_TENSORFLOW + f"from {package} import bench\nbench.cli()\n"
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, "-c", script, *TINY_BENCH_FLAGS[package], "--steps=1", "--warmup=0",
         "--peak_size=64"], cwd=repo, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert BATCH_LINE[package] in result.stdout and "MFU (datasheet)" in result.stdout


def test_device_memory_is_the_fullest_devices_peak(monkeypatch):
    """As on 3 GPUs: the peak of the fullest device, with its limit; any device without
    statistics (or without a peak in them) makes the whole reading n/a."""
    class Device:
        def __init__(self, stats):
            self.stats = stats

        def memory_stats(self):
            return self.stats

    gib = 2**30
    gpus = [Device({"peak_bytes_in_use": 3 * gib, "bytes_limit": 75 * gib}),
            Device({"peak_bytes_in_use": 5 * gib, "bytes_limit": 76 * gib}),
            Device({"peak_bytes_in_use": 4 * gib, "bytes_limit": 77 * gib})]
    monkeypatch.setattr(benchmarking.jax, "local_devices", lambda: gpus)
    peak = benchmarking.device_peak_memory_bytes()
    assert peak == (5 * gib, 76 * gib)
    assert benchmarking.device_memory_line(peak) == (
        "device memory     5.00 GiB peak, fullest device of the 76.0 GiB JAX may use")
    assert benchmarking.device_memory_line((gib, 0)).endswith("1.00 GiB peak, fullest device")
    for missing in (None, {"bytes_in_use": gib}):
        monkeypatch.setattr(benchmarking.jax, "local_devices",
                            lambda: gpus + [Device(missing)])
        assert benchmarking.device_peak_memory_bytes() is None
