"""TensorBoard scalars, the console progress line, and honest throughput numbers.

Only process 0 writes. Throughput and MFU come from measured wall time between two log
points (after blocking on the device), never from estimates.
"""

import logging
import math
import time
from typing import Any, Mapping

import jax
import numpy as np

log = logging.getLogger(__name__)


def reduce_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """{name: (sum, weight)} (device or host) -> {name: sum / weight} as Python floats."""
    host = jax.device_get(dict(metrics))
    out = {}
    for name, value in host.items():
        if isinstance(value, (tuple, list)):
            total, weight = (float(np.asarray(v)) for v in value)
            out[name] = total / weight if weight else float("nan")
        else:
            out[name] = float(np.asarray(value))
    return out


def add_metrics(acc: dict | None, new: Mapping[str, Any]) -> dict:
    """Accumulates (sum, weight) pairs on device without a host sync."""
    if acc is None:
        return dict(new)
    return jax.tree_util.tree_map(lambda a, b: a + b, acc, dict(new))


class SummaryWriter:
    """TensorBoard event files in ``<workdir>/<subdir>``, written by process 0 only."""

    def __init__(self, logdir: str):
        self._writer = None
        if jax.process_index() == 0:
            # Imported lazily: it pulls in TensorFlow, which only the host side needs.
            from flax.metrics import tensorboard
            self._writer = tensorboard.SummaryWriter(logdir)

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        if self._writer is None:
            return
        for name, value in values.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self._writer.scalar(name, value, step)
        self._writer.flush()

    def text(self, step: int, name: str, value: str) -> None:
        if self._writer is not None:
            self._writer.text(name, value, step)
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class Throughput:
    """Steps/s, tokens/s and MFU over the interval since the previous ``measure`` call."""

    def __init__(self, start_step: int, total_steps: int, peak_flops_per_s: float = 0.0):
        self._last_time = time.perf_counter()
        self._last_step = start_step
        self._total_steps = total_steps
        self._peak = peak_flops_per_s
        self._tokens = 0
        self._flops = 0.0

    def add_step(self, tokens: int, flops: float) -> None:
        self._tokens += tokens
        self._flops += flops

    def restart(self, step: int) -> None:
        """Excludes time spent outside training (eval, checkpoints) from throughput."""
        self._last_time, self._last_step, self._tokens, self._flops = (
            time.perf_counter(), step, 0, 0.0)

    def measure(self, step: int) -> dict[str, float]:
        now = time.perf_counter()
        elapsed = max(now - self._last_time, 1e-9)
        steps = max(step - self._last_step, 1)
        out = {
            "perf/step_time_s": elapsed / steps,
            "perf/tokens_per_s": self._tokens / elapsed,
            "perf/eta_s": (self._total_steps - step) * elapsed / steps,
        }
        if self._peak > 0 and self._flops > 0:
            out["perf/mfu"] = self._flops / elapsed / self._peak
        self.restart(step)
        return out


def progress_line(step: int, total: int, values: Mapping[str, float]) -> str:
    """One console line: step, loss, learning rate, tokens/s, ETA (and MFU if known)."""
    parts = [f"step {step}/{total}"]
    if "train/loss" in values:
        parts.append(f"loss {values['train/loss']:.4f}")
    if "train/learning_rate" in values:
        parts.append(f"lr {values['train/learning_rate']:.3e}")
    if "perf/tokens_per_s" in values:
        parts.append(f"{values['perf/tokens_per_s']:,.0f} tok/s")
    if "perf/mfu" in values:
        parts.append(f"MFU {100 * values['perf/mfu']:.1f}%")
    if "perf/eta_s" in values:
        parts.append(f"ETA {format_duration(values['perf/eta_s'])}")
    return " | ".join(parts)


def log_once(lines: list[str], header: str) -> None:
    if jax.process_index() == 0:
        log.info("%s\n  %s", header, "\n  ".join(lines))
