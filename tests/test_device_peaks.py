"""The two MFU denominators: the datasheet table (which chip gets which number) and the
measured matmul peak (a chain of real products, calibrated to outlast dispatch)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transformer_jax import benchmarking, device_peaks
from transformer_jax.engine import metrics as metrics_lib


@pytest.mark.parametrize("kind, tflops", [
    ("NVIDIA H100 80GB HBM3", 989.4),
    ("NVIDIA H100 PCIe", 756.0),      # a variant whose name contains its family's
    ("NVIDIA H100 NVL", 835.0),
    ("NVIDIA H200", 989.4),
    ("NVIDIA H200 NVL", 835.0),
    ("NVIDIA GH200 480GB", 989.4),
    ("NVIDIA B200", 2250.0),
    ("NVIDIA A100-SXM4-80GB", 312.0),
    ("TPU v4", 275.0),
    ("TPU v5 lite", 197.0),           # v5e, before v5p's "TPU v5"
    ("TPU v5e", 197.0),
    ("TPU v5", 459.0),
    ("TPU v5p", 459.0),
    ("TPU v6 lite", 918.0),
    ("TPU v6e", 918.0),
])
def test_datasheet_peaks_of_known_chips_in_bf16_and_fp16(kind, tflops):
    assert device_peaks.datasheet_peak_flops(kind, jnp.bfloat16) == tflops * 1e12
    # GPUs run fp16 at the bf16 rate; TPU MXUs take bf16 only.
    fp16 = None if kind.startswith("TPU") else tflops * 1e12
    assert device_peaks.datasheet_peak_flops(kind, "float16") == fp16


def test_no_datasheet_peak_for_float32_cpus_or_unknown_chips():
    assert device_peaks.datasheet_peak_flops("NVIDIA H100 80GB HBM3", jnp.float32) is None
    assert device_peaks.datasheet_peak_flops("cpu", jnp.bfloat16) is None
    assert device_peaks.datasheet_peak_flops("NVIDIA GeForce GT 710", "bfloat16") is None
    # Names that contain a known chip's name without being that chip.
    for kind in ("NVIDIA RTX A1000", "NVIDIA GB200", "TPU v4 lite", "TPU7x"):
        assert device_peaks.datasheet_peak_flops(kind, jnp.bfloat16) is None, kind
    assert "float32" in device_peaks.why_unknown("NVIDIA H100 80GB HBM3", jnp.float32)
    assert "device_peaks.py" in device_peaks.why_unknown("cpu", jnp.bfloat16)


def test_datasheet_mfu_divides_by_every_chip(monkeypatch):
    monkeypatch.setattr(device_peaks, "datasheet_peak_flops", lambda kind, dtype: 2e9)
    mfu, line = benchmarking.datasheet_mfu(4e9, 0.5, jnp.bfloat16)
    assert jax.device_count() == 8
    assert mfu == pytest.approx(4e9 / 0.5 / (8 * 2e9))  # 50%
    assert line.startswith("MFU (datasheet)   50.0% of 8 x 0.0 TFLOP/s")


def test_datasheet_mfu_on_this_cpu_is_absent_and_says_why():
    mfu, line = benchmarking.datasheet_mfu(4e9, 0.5, jnp.float32)
    assert mfu is None and "n/a: no datasheet peak for float32" in line


def test_training_log_peak_prefers_the_config_then_the_datasheet(monkeypatch):
    assert metrics_lib.peak_flops_for_mfu(1.5, "bfloat16") == 1.5e12 * 8
    assert metrics_lib.peak_flops_for_mfu(0.0, "bfloat16") == 0.0  # CPU: no MFU logged
    assert metrics_lib.peak_flops_for_mfu(0.0, None) == 0.0
    monkeypatch.setattr(device_peaks, "datasheet_peak_flops",
                        lambda kind, dtype: 3e12 if jnp.dtype(dtype) == jnp.bfloat16 else None)
    assert metrics_lib.peak_flops_for_mfu(0.0, "bfloat16") == 3e12 * 8
    assert metrics_lib.peak_flops_for_mfu(0.0, "float32") == 0.0
    assert metrics_lib.peak_flops_for_mfu(1.5, "bfloat16") == 1.5e12 * 8


@pytest.mark.parametrize("dtype, rtol", [(jnp.float32, 1e-4), (jnp.bfloat16, 0.1)])
def test_matmul_chain_runs_every_product_at_a_steady_scale(dtype, rtol):
    x, b = benchmarking._peak_operands(dtype, 64)  # [8, 64, 64] each
    chain = benchmarking.matmul_chain(3)
    out = np.asarray(chain(x, b), np.float64)
    x64, b64 = np.asarray(x, np.float64), np.asarray(b, np.float64)
    expected = x64 @ b64 @ b64 @ b64  # [8, 64, 64]
    np.testing.assert_allclose(out, expected, rtol=rtol, atol=rtol * np.abs(expected).max())
    # Random, not constant, and x @ b keeps x's scale: RMS ~1 after three products.
    assert np.unique(np.asarray(x, np.float32)).size > 1000
    assert 0.5 < np.sqrt(np.mean(out**2)) < 2.0
    cost = chain.lower(x, b).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    # All three products are computed (XLA counts one device's share of the 8).
    assert cost["flops"] == pytest.approx(3 * 2 * 64**3, rel=0.01)


@pytest.mark.parametrize("single_s, length", [(0.01, 5), (0.2, 1), (1e-7, 64)])
def test_peak_chains_enough_matmuls_to_outlast_dispatch(monkeypatch, single_s, length):
    """One matmul timed at ``single_s`` -> a chain of ``length`` (50 ms, capped at 64)
    timed at 0.04 s, and the peak counts every matmul of that chain on all 8 devices."""
    chain_lengths = []
    real_chain = benchmarking.matmul_chain

    def recording_chain(n):
        chain_lengths.append(n)
        return real_chain(n)

    timings = iter([[single_s] * 3, [0.04] * 4])
    monkeypatch.setattr(benchmarking, "matmul_chain", recording_chain)
    monkeypatch.setattr(benchmarking, "time_call", lambda fn, repeats: next(timings))
    peak = benchmarking.measure_peak_flops(jnp.float32, 32, repeats=4)
    assert chain_lengths == [1, length]
    assert peak == pytest.approx(2 * 8 * 32**3 * length / 0.04)
