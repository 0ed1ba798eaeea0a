"""Timing pieces shared by the benchmarks (``transformer_jax.bench``, ``bert_jax.bench``):
the measured matmul peak that MFU divides by, and the compiled train step's timing.
Flags are defined by ``define_common_flags`` when a benchmark program starts, never on
import, so the benchmarks (and tests) can import each other's functions."""

import resource
import statistics
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np


def time_call(fn: Callable[[], Any], repeats: int) -> list[float]:
    """Wall times of ``repeats`` calls, each blocked until its result is ready."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return times


def measure_peak_flops(dtype: Any, size: int, repeats: int = 20) -> float:
    """Best FLOP/s of a [size, size] @ [size, size] matmul in ``dtype`` on all devices.

    The best of many repeats: on a shared machine a few slow runs are noise, and a peak
    measured low would flatter the MFU.

    Each device multiplies its own pair of matrices (a batch split over devices), so the
    result is the whole machine's peak, matching a data-parallel train step.
    """
    devices = jax.devices()
    mesh = jax.make_mesh((len(devices),), ("d",), axis_types=(jax.sharding.AxisType.Auto,))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("d"))
    shape = (len(devices), size, size)
    a = jax.device_put(jnp.ones(shape, dtype), sharding)
    b = jax.device_put(jnp.ones(shape, dtype), sharding)
    matmul = jax.jit(lambda x, y: jnp.einsum("dij,djk->dik", x, y,
                                             preferred_element_type=jnp.float32))
    jax.block_until_ready(matmul(a, b))  # compile
    best = min(time_call(lambda: matmul(a, b), repeats))
    return 2.0 * len(devices) * size**3 / best


def benchmark_train_step(trainer, batch: dict[str, np.ndarray], steps: int, warmup: int,
                         between: Callable[[int], None] | None = None) -> dict[str, float]:
    """Compile time, then median step time of the trainer's jitted train step, and the
    process's peak host memory so far (the step's temporaries live there on CPU).

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
            "host_peak_bytes": peak_host_memory_bytes()}


def peak_host_memory_bytes() -> int:
    """The process's peak resident memory (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def define_common_flags(config_help: str, default_batch_size: int) -> None:
    """--config, --batch_size, --steps, --warmup, --peak_size: what every benchmark takes."""
    from absl import flags
    from ml_collections import config_flags

    config_flags.DEFINE_config_file("config", None, config_help, lock_config=True)
    flags.DEFINE_integer("batch_size", default_batch_size, "Global batch size (sequences).")
    flags.DEFINE_integer("steps", 10, "Timed steps (after warm-up).")
    flags.DEFINE_integer("warmup", 2, "Untimed steps after compilation.")
    flags.DEFINE_integer("peak_size", 2048, "Side of the square matmul that measures the peak.")
