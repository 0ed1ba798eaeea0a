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

from typing import Any

import jax.numpy as jnp

# (lower-case substring of jax's Device.device_kind, TFLOP/s); the first match wins, so a
# variant ("h100 pcie", "tpu v5 lite") comes before the family name it contains.
_BF16_PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("h100 pcie", 756.0),
    ("h100 nvl", 835.0),
    ("h100", 989.4),          # SXM: "NVIDIA H100 80GB HBM3"
    ("h200", 989.4),          # H200 and GH200 share the H100 SXM's compute
    ("b200", 2250.0),
    ("a100", 312.0),
    ("tpu v4", 275.0),
    ("tpu v5 lite", 197.0),   # v5e
    ("tpu v5", 459.0),        # v5p
    ("tpu v6 lite", 918.0),   # v6e (Trillium)
)

_SIXTEEN_BIT = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))


def datasheet_peak_flops(device_kind: str, dtype: Any) -> float | None:
    """Peak FLOP/s of one chip of ``device_kind`` for ``dtype`` matmuls, or None if unknown
    (a CPU, a chip not in the table, or float32)."""
    if jnp.dtype(dtype) not in _SIXTEEN_BIT:
        return None
    kind = device_kind.lower()
    for name, tflops in _BF16_PEAK_TFLOPS:
        if name in kind:
            return tflops * 1e12
    return None


def why_unknown(device_kind: str, dtype: Any) -> str:
    """Why ``datasheet_peak_flops`` gave None, as a report's fragment."""
    if jnp.dtype(dtype) not in _SIXTEEN_BIT:
        return f"no datasheet peak for {jnp.dtype(dtype)} matmuls"
    return f"no datasheet peak for {device_kind!r} (add it to transformer_jax/device_peaks.py)"
