"""Helpers for tests that run the Trainer: dotted config overrides, losses read back from
TensorBoard event files, checkpoint listings, and a simulated preemption.

Import as ``import run_helpers`` (pytest puts ``tests/`` on ``sys.path``).
"""
import glob
import os

import jax
import numpy as np
import tensorflow as tf

from transformer_jax.engine import checkpoint as ckpt


def override(config, overrides: dict) -> None:
    """Sets dotted keys in place ({"optimizer.warmup_steps": 2}), as --config.KEY=VALUE does."""
    for key, value in overrides.items():
        *parents, name = key.split(".")
        target = config
        for parent in parents:
            target = target[parent]
        target[name] = value


def as_flags(overrides: dict) -> list[str]:
    """The same overrides as command-line flags, for a CLI run in a subprocess."""
    return [f"--config.{key}={value}" for key, value in overrides.items()]


def event_files(workdir: str) -> set[str]:
    return set(glob.glob(os.path.join(workdir, "events.out.tfevents.*")))


def scalars(workdir: str, tag: str, files=None) -> dict[int, float]:
    """{step: value} of one scalar in the TensorBoard event files (default: all) of ``workdir``."""
    values = {}
    for path in sorted(event_files(workdir) if files is None else files):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == tag:
                    values[event.step] = float(tf.make_ndarray(value.tensor))
    return values


def losses(workdir: str) -> list[float]:
    by_step = scalars(workdir, "train/loss")
    return [by_step[s] for s in sorted(by_step)]


def host(tree):
    return jax.tree_util.tree_map(np.asarray, jax.device_get(tree))


def assert_trees_equal(a, b):
    jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)


def checkpoint_steps(workdir: str) -> list[int]:
    directory = os.path.join(workdir, ckpt.CHECKPOINT_SUBDIR)
    return sorted(int(n) for n in os.listdir(directory) if n.isdigit())


class Preempted(Exception):
    """Stands in for the job being killed after some steps."""


def preempt_after(task, num_batches: int):
    """The task's training data stops with ``Preempted`` after ``num_batches`` batches."""
    original = task.train_batches

    def train_batches(*args, **kwargs):
        batches = original(*args, **kwargs)
        for _ in range(num_batches):
            yield next(batches)
        raise Preempted(f"preempted after {num_batches} batches")

    task.train_batches = train_batches
    return task
