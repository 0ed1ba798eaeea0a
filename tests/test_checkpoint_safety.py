"""Checkpoints that survive accidents: a save killed half-way is never restored, a
truncated latest checkpoint is reported and set aside (the previous one resumes, with the
uninterrupted run's losses), and no readable checkpoint is an error that moves nothing.
(SIGTERM through the CLI is in test_trainer_main.)"""
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import run_helpers
import trainer_helpers
from trainer_helpers import captured_warnings, make_config, run
from transformer_jax.engine import checkpoint as ckpt
from transformer_jax.engine.trainer import Trainer
from transformer_jax.translation.task import TranslationTask

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The engine tests' fixture: the tiny translation corpus.
corpus = trainer_helpers.corpus


def truncate_data_files(directory, size: int = 100) -> None:
    """Cuts every array data file of a checkpoint item short: a copy cut off, a full disk.
    (All of them: OCDBT may keep the same data in a per-process and a merged file.)"""
    paths = [os.path.join(d, f) for d, _, names in os.walk(directory) for f in names
             if os.path.basename(d) == "d"]
    assert paths, os.listdir(directory)
    for path in paths:
        with open(path, "r+b") as f:
            f.truncate(size)


def test_truncated_latest_checkpoint_is_set_aside_and_the_previous_resumes(corpus, tmp_path):
    workdir = tmp_path / "damaged"
    config = make_config(corpus, "dp")
    run(config, workdir)  # 6 steps, checkpoints at 3 and 6
    assert run_helpers.checkpoint_steps(str(workdir)) == [3, 6]
    uninterrupted = run_helpers.losses(str(workdir))
    first = run_helpers.event_files(str(workdir))
    latest = workdir / "checkpoints" / "6"
    truncate_data_files(latest / "state")
    config.num_train_steps = 8
    with captured_warnings("transformer_jax.engine.checkpoint") as logged:
        run(config, workdir)
    assert any("checkpoint at step 6" in m and "is unreadable" in m and "OUT_OF_RANGE" in m
               and "resuming from step 3" in m for m in logged), logged
    assert (workdir / "checkpoints" / "6.unreadable").is_dir()  # kept for inspection
    assert run_helpers.checkpoint_steps(str(workdir)) == [3, 6, 8]
    # Steps 4-6 were retrained from step 3: the same losses as before the damage.
    retrained = run_helpers.scalars(str(workdir), "train/loss",
                                    run_helpers.event_files(str(workdir)) - first)
    assert sorted(retrained) == [4, 5, 6, 7, 8]
    np.testing.assert_allclose([retrained[s] for s in (4, 5, 6)], uninterrupted[3:], rtol=1e-6)


def test_no_readable_checkpoint_is_an_error_that_moves_nothing(corpus, tmp_path):
    workdir = tmp_path / "work"
    config = make_config(corpus, "dp", num_train_steps=3)
    run(config, workdir)
    state = workdir / "checkpoints" / "3" / "state"
    truncate_data_files(state, 10)
    before = sorted(os.listdir(workdir / "checkpoints"))
    with pytest.raises(ckpt.NoReadableCheckpointError,
                       match=r"no checkpoint in .* restores \(steps 3; newest: OUT_OF_RANGE"):
        Trainer(config, str(workdir), TranslationTask(config, str(workdir))).run()
    assert sorted(os.listdir(workdir / "checkpoints")) == before


KILLED_MID_SAVE = textwrap.dedent("""
    import os, signal, sys, time
    import jax, jax.numpy as jnp
    from transformer_jax.engine import checkpoint as ckpt
    manager = ckpt.make_manager(sys.argv[1], async_save=True)
    small = {"w": jnp.ones((3, 7))}
    ckpt.save(manager, 1, small, {"step": 1}, force=True)
    manager.wait_until_finished()
    big = {"w": jnp.ones((4096, 4096)), "v": jnp.ones((4096, 4096))}  # 128 MB: a slow save
    ckpt.save(manager, 2, big, {"step": 2}, force=True)
    # Wait for step 2's temporary directory (the save's thread may not have begun yet).
    directory = os.path.join(sys.argv[1], "checkpoints")
    while not any(name.startswith("2.") for name in os.listdir(directory)):
        if "2" in os.listdir(directory):
            sys.exit("step 2 was committed before the kill: make it bigger")
        time.sleep(0.001)
    os.kill(os.getpid(), signal.SIGKILL)  # the host dies while step 2 is being written
""")


def test_a_save_killed_half_way_is_never_restored(tmp_path):
    result = subprocess.run([sys.executable, "-c", KILLED_MID_SAVE, str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    names = os.listdir(tmp_path / "checkpoints")
    assert "1" in names and "2" not in names, names  # step 2 exists only as a temporary
    assert any(name.startswith("2.") for name in names), names  # the kill did land mid-save
    manager = ckpt.make_manager(str(tmp_path))
    assert manager.all_steps() == [1]
    assert ckpt.read_metadata(manager, 1) == {"step": 1}
    manager.close()
