"""TensorBoard scalars, the console progress line, and honest throughput numbers.

Only process 0 writes. Throughput and MFU come from measured wall time between two log
points (after blocking on the device), never from estimates.
"""

import contextlib
import logging
import math
import time
from typing import Any, Mapping

import jax
import numpy as np

from transformer_jax import device_peaks

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


def peak_flops_for_mfu(tflops_per_device: float, compute_dtype: Any | None) -> float:
    """The whole job's peak FLOP/s for the log's MFU: ``tflops_per_device`` when set (> 0),
    else the chips' datasheet peak for ``compute_dtype`` (``device_peaks``); 0 (no MFU) where
    neither is known, as on CPUs and in float32."""
    if tflops_per_device > 0:
        return tflops_per_device * 1e12 * jax.device_count()
    if compute_dtype is None:
        return 0.0
    return device_peaks.job_peak_flops(compute_dtype) or 0.0


class Throughput:
    """Where the time of each logging interval went, and the throughput of its steps.

    The interval's wall time is split into data wait (the host waiting for the next batch:
    the device idles if the pipeline is the bottleneck), checkpoint saving (the blocking
    part of a save), evaluation, and compute (the rest: dispatching and running the steps).
    Tokens/s and MFU count training time only (wall minus checkpoints and evals). Goodput
    is compute over all wall time since the run started (start-up and compilation
    included), the fraction of time that trained the model.
    """

    def __init__(self, start_step: int, total_steps: int, peak_flops_per_s: float = 0.0,
                 started_at: float | None = None):
        self._started_at = time.perf_counter() if started_at is None else started_at
        self._total_steps = total_steps
        self._peak = peak_flops_per_s
        self._compute_total = 0.0
        self._reset(start_step, time.perf_counter())

    def _reset(self, step: int, now: float) -> None:
        self._last_time, self._last_step, self._tokens, self._flops = now, step, 0, 0.0
        self._spent = {"data_wait": 0.0, "checkpoint": 0.0, "eval": 0.0}

    def add_step(self, tokens: int, flops: float) -> None:
        self._tokens += tokens
        self._flops += flops

    def spent(self, kind: str, seconds: float) -> None:
        """Time that was not compute: 'data_wait', 'checkpoint' or 'eval'."""
        self._spent[kind] += seconds

    @contextlib.contextmanager
    def timing(self, kind: str):
        """Counts the wall time of the ``with`` block as ``spent(kind, ...)``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.spent(kind, time.perf_counter() - started)

    def measure(self, step: int) -> dict[str, float]:
        now = time.perf_counter()
        elapsed = max(now - self._last_time, 1e-9)
        steps = max(step - self._last_step, 1)
        training = max(elapsed - self._spent["checkpoint"] - self._spent["eval"], 1e-9)
        compute = max(training - self._spent["data_wait"], 0.0)
        self._compute_total += compute
        out = {
            "perf/step_time_s": training / steps,
            "perf/compute_s": compute / steps,
            "perf/data_wait_s": self._spent["data_wait"] / steps,
            "perf/checkpoint_s": self._spent["checkpoint"],
            "perf/eval_s": self._spent["eval"],
            "perf/tokens_per_s": self._tokens / training,
            "perf/eta_s": (self._total_steps - step) * training / steps,
            "perf/goodput": self._compute_total / max(now - self._started_at, 1e-9),
        }
        if self._peak > 0 and self._flops > 0:
            out["perf/mfu"] = self._flops / training / self._peak
        self._reset(step, now)
        return out


class RestartLedger:
    """Wall time lost to restarts, carried in checkpoint metadata from run to run.

    A resumed run loses the time from its checkpoint's save to the resume: the steps
    trained after that save, the downtime, and the start-up up to the restore.
    """

    def __init__(self):
        self.lost_s = 0.0

    def resumed(self, metadata: dict) -> None:
        saved_at = metadata.get("saved_at")
        if saved_at is None:  # a checkpoint from before this ledger existed
            return
        lost = max(time.time() - saved_at, 0.0)
        self.lost_s = float(metadata.get("lost_to_restarts_s", 0.0)) + lost
        log.info("restart: %s since the checkpoint was saved, %s lost to restarts in all",
                 format_duration(lost), format_duration(self.lost_s))

    def to_metadata(self) -> dict:
        return {"saved_at": time.time(), "lost_to_restarts_s": self.lost_s}


def progress_line(step: int, total: int, values: Mapping[str, float]) -> str:
    """One console line: step, loss, the task's training accuracies (e.g. BERT's MLM and NSP
    accuracy), learning rate, tokens/s, ETA (and MFU if known)."""
    parts = [f"step {step}/{total}"]
    if "train/loss" in values:
        parts.append(f"loss {values['train/loss']:.4f}")
    parts.extend(f"{name.removeprefix('train/')} {values[name]:.4f}" for name in sorted(values)
                 if name.startswith("train/") and name.endswith("accuracy"))
    if "train/learning_rate" in values:
        parts.append(f"lr {values['train/learning_rate']:.3e}")
    if "perf/tokens_per_s" in values:
        parts.append(f"{values['perf/tokens_per_s']:,.0f} tok/s")
    if "perf/mfu" in values:
        parts.append(f"MFU {100 * values['perf/mfu']:.1f}%")
    if values.get("perf/step_time_s", 0) > 0 and "perf/data_wait_s" in values:
        wait = values["perf/data_wait_s"] / values["perf/step_time_s"]
        parts.append(f"data wait {100 * wait:.0f}%")
    if "perf/goodput" in values:
        parts.append(f"goodput {100 * values['perf/goodput']:.0f}%")
    if "perf/eta_s" in values:
        parts.append(f"ETA {format_duration(values['perf/eta_s'])}")
    return " | ".join(parts)


def log_once(lines: list[str], header: str) -> None:
    if jax.process_index() == 0:
        log.info("%s\n  %s", header, "\n  ".join(lines))
