"""Timing pieces shared by the benchmarks (``transformer_jax.bench``, ``bert_jax.bench``):
the measured matmul peak that MFU divides by, MFU against the datasheet peak, and the
compiled train step's timing. Flags are defined by ``define_common_flags`` when a benchmark
program starts, never on import, so the benchmarks (and tests) can import each other's
functions."""

import resource
import statistics
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from transformer_jax import device_peaks


def time_call(fn: Callable[[], Any], repeats: int) -> list[float]:
    """Wall times of ``repeats`` calls, each blocked until its result is ready."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return times


def measure_peak_flops(dtype: Any, size: int, repeats: int = 20,
                       min_call_s: float = 0.05) -> float:
    """Best FLOP/s of [size, size] @ [size, size] matmuls in ``dtype`` on all devices.

    The best of many repeats: on a shared machine a few slow runs are noise, and a peak
    measured low would flatter the MFU. For the same reason each timed call chains enough
    matmuls to last ``min_call_s``, up to 64: a 2048-sided bf16 matmul takes ~25 us on an
    H100, about what dispatching one call costs, so one matmul per call would measure the
    dispatch and report half the peak, while 64 of them make it ~3%. (On a CPU one matmul
    already lasts ~0.1 s: the chain is 1 long.) The operands are random, not constant:
    constant data draws less power and lets a GPU hold higher clocks than a model's does.

    Each device multiplies its own pair of matrices (a batch split over devices), so the
    result is the whole machine's peak, matching a data-parallel train step.
    """
    a, b = _peak_operands(dtype, size)
    one = matmul_chain(1)
    jax.block_until_ready(one(a, b))  # compile
    single = min(time_call(lambda: one(a, b), 3))
    length = int(min(max(np.ceil(min_call_s / single), 1), _MAX_CHAIN))
    chain = matmul_chain(length)
    jax.block_until_ready(chain(a, b))  # compile
    best = min(time_call(lambda: chain(a, b), repeats))
    return 2.0 * a.shape[0] * size**3 * length / best


_MAX_CHAIN = 64  # matmuls per timed call; unrolled, so this also bounds the compile


def _peak_operands(dtype: Any, size: int) -> tuple[jax.Array, jax.Array]:
    """x ~ N(0, 1) and b ~ N(0, 1/size), both [devices, size, size] split over the devices:
    x @ b keeps x's scale in expectation, so a chain of products neither overflows nor
    underflows."""
    devices = jax.devices()
    mesh = jax.make_mesh((len(devices),), ("d",), axis_types=(jax.sharding.AxisType.Auto,))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("d"))
    shape = (len(devices), size, size)
    x_key, b_key = jax.random.split(jax.random.key(0))
    x = jax.random.normal(x_key, shape, jnp.float32)
    b = jax.random.normal(b_key, shape, jnp.float32) / np.sqrt(size)
    return (jax.device_put(x.astype(dtype), sharding), jax.device_put(b.astype(dtype), sharding))


def matmul_chain(length: int) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """jit of x -> x @ b applied ``length`` times, unrolled: straight-line code, so an
    accelerator runs the matmuls back to back without a loop's per-iteration sync."""

    def chain(x: jax.Array, b: jax.Array) -> jax.Array:
        for _ in range(length):  # each product feeds the next, so none can be elided
            x = jnp.einsum("dij,djk->dik", x, b,
                           preferred_element_type=jnp.float32).astype(x.dtype)  # [d, n, n]
        return x

    return jax.jit(chain)


def datasheet_mfu(model_flops: float, step_s: float, dtype: Any) -> tuple[float | None, str]:
    """MFU against the chips' datasheet peak (``device_peaks``) and the report line; the
    MFU is None, and the line says why, where the table has no number."""
    kind, chips = jax.devices()[0].device_kind, jax.device_count()
    peak = device_peaks.job_peak_flops(dtype)
    if peak is None:
        return None, f"MFU (datasheet)   n/a: {device_peaks.why_unknown(kind, dtype)}"
    mfu = model_flops / step_s / peak
    return mfu, (f"MFU (datasheet)   {100 * mfu:.1f}% of {chips} x {peak / chips / 1e12:.1f} "
                 f"TFLOP/s ({kind}, {jnp.dtype(dtype)})")


def benchmark_train_step(trainer, batch: dict[str, np.ndarray], steps: int, warmup: int,
                         between: Callable[[int], None] | None = None) -> dict[str, float]:
    """Compile time, then median step time of the trainer's jitted train step, and the
    process's peak host memory so far (the step's temporaries live there on CPU) and peak
    device memory (GPU, TPU; None on CPU).

    ``between(steps_done)`` (optional) runs once after the first half of the timed steps
    (never before the first): a comparison timed there and again after this returns
    alternates with ours, so a machine whose speed drifts (a shared VM) slows both sides
    alike instead of whichever ran second.
    """
    import flax.linen as nn

    from transformer_jax.engine import sharding as sharding_lib
    from transformer_jax.engine import state as state_lib

    with jax.set_mesh(trainer.mesh), nn.logical_axis_rules(trainer.rules):
        state = state_lib.create_train_state(
            trainer.task, trainer.tx, trainer.init_batch, trainer.mesh, trainer.rules,
            seed=0, shardings=trainer.state_shardings)
        global_batch = sharding_lib.global_batch(batch, trainer.mesh)
        start = time.perf_counter()
        compiled = trainer.train_step_fn.lower(state, global_batch).compile()
        compile_s = time.perf_counter() - start
        for _ in range(warmup):
            state, _ = compiled(state, global_batch)
        jax.block_until_ready(state)
        times = []
        for i in range(steps):
            if between is not None and i == max(steps // 2, 1):
                between(i)
            begin = time.perf_counter()
            state, metrics = compiled(state, global_batch)
            jax.block_until_ready(state)
            times.append(time.perf_counter() - begin)
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return {"compile_s": compile_s, "step_s": statistics.median(times),
            "xla_flops": float((cost or {}).get("flops", 0.0)),
            "host_peak_bytes": peak_host_memory_bytes(),
            "device_peak_bytes": device_peak_memory_bytes()}


def peak_host_memory_bytes() -> int:
    """The process's peak resident memory (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def device_peak_memory_bytes() -> tuple[int, int] | None:
    """(peak bytes in use, bytes limit) of this process's fullest device, from the
    allocator's statistics; None where the backend keeps none (CPU: its buffers are host
    memory, counted by ``peak_host_memory_bytes``)."""
    stats = [device.memory_stats() for device in jax.local_devices()]
    if not stats or any(not s or "peak_bytes_in_use" not in s for s in stats):
        return None
    fullest = max(stats, key=lambda s: s["peak_bytes_in_use"])
    return fullest["peak_bytes_in_use"], fullest.get("bytes_limit", 0)


def device_memory_line(peak: tuple[int, int] | None) -> str:
    """The benches' line for ``device_peak_memory_bytes()``."""
    if peak is None:
        return (f"device memory     n/a: {jax.devices()[0].platform} keeps no allocator "
                "statistics (its buffers are the host memory above)")
    used, limit = peak
    of_limit = f" of the {limit / 2**30:.1f} GiB JAX may use" if limit else ""
    return f"device memory     {used / 2**30:.2f} GiB peak, fullest device{of_limit}"


def define_common_flags(config_help: str, default_batch_size: int) -> None:
    """--config, --batch_size, --steps, --warmup, --peak_size: what every benchmark takes."""
    from absl import flags
    from ml_collections import config_flags

    config_flags.DEFINE_config_file("config", None, config_help, lock_config=True)
    flags.DEFINE_integer("batch_size", default_batch_size, "Global batch size (sequences).")
    flags.DEFINE_integer("steps", 10, "Timed steps (after warm-up).")
    flags.DEFINE_integer("warmup", 2, "Untimed steps after compilation.")
    flags.DEFINE_integer("peak_size", 2048, "Side of the square matmul that measures the peak.")
