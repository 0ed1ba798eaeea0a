"""Datasheet peak matmul throughput of accelerators: the denominator of MFU as papers report
it (PaLM's definition: the model's FLOPs per second over the chip's theoretical peak).

The benches also measure a peak (the best big matmul on the same devices). That one tells
how close a step comes to what XLA reaches on this machine; this one, how close it comes to
what the hardware could do. On accelerators the two differ by tens of percent, so a bench
prints both and says which is which.

The table holds dense (no 2:4 sparsity) 16-bit tensor-core numbers from the vendors'
datasheets, per chip. Float32 has no entry: a GPU runs fp32 matmuls as TF32 or on CUDA
cores depending on precision flags, and a CPU's peak depends on its clock and vector units,
so no single datasheet number fits; those runs report the measured peak only.
"""

import re
from typing import Any

import jax
import jax.numpy as jnp

# (regular expression searched in the lower-cased Device.device_kind, TFLOP/s). Word
# boundaries keep "a100" out of "rtx a1000" and "b200" out of "gb200"; the first match wins,
# so a variant ("h100 pcie", "tpu v5 lite") comes before the family name it contains.
_BF16_PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    (r"\bh100 pcie\b", 756.0),
    (r"\bh[12]00 nvl\b", 835.0),
    (r"\bh100\b", 989.4),             # SXM: "NVIDIA H100 80GB HBM3"
    (r"\bg?h200\b", 989.4),           # H200 SXM and GH200 share the H100 SXM's compute
    (r"\bb200\b", 2250.0),
    (r"\ba100\b", 312.0),             # SXM and PCIe alike
    (r"\btpu v4\b(?! lite)", 275.0),  # not v4i ("TPU v4 lite"), a smaller chip
    (r"\btpu v5( lite|e)\b", 197.0),  # v5e
    (r"\btpu v5p?\b", 459.0),         # v5p
    (r"\btpu v6( lite|e)\b", 918.0),  # v6e (Trillium)
)


def datasheet_peak_flops(device_kind: str, dtype: Any) -> float | None:
    """Peak FLOP/s of one chip of ``device_kind`` for ``dtype`` matmuls, or None if unknown
    (a CPU, a chip not in the table, float32, or float16 on a TPU, whose MXUs take bf16)."""
    if not _tabulated_dtype(device_kind, dtype):
        return None
    for pattern, tflops in _BF16_PEAK_TFLOPS:
        if re.search(pattern, device_kind.lower()):
            return tflops * 1e12
    return None


def job_peak_flops(dtype: Any) -> float | None:
    """The datasheet peak of all of this job's devices together, or None where unknown."""
    per_chip = datasheet_peak_flops(jax.devices()[0].device_kind, dtype)
    return None if per_chip is None else per_chip * jax.device_count()


def _tabulated_dtype(device_kind: str, dtype: Any) -> bool:
    dtype = jnp.dtype(dtype)
    if dtype == jnp.float16:
        return not device_kind.lower().startswith("tpu")
    return dtype == jnp.bfloat16


def why_unknown(device_kind: str, dtype: Any) -> str:
    """Why ``datasheet_peak_flops`` gave None, as a report's fragment."""
    if not _tabulated_dtype(device_kind, dtype):
        return f"no datasheet peak for {jnp.dtype(dtype)} matmuls"
    return f"no datasheet peak for {device_kind!r} (add it to transformer_jax/device_peaks.py)"
