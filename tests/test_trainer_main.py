"""The ``transformer_jax.main`` CLI end to end, in a subprocess on 8 simulated CPU devices:
the README's demo job shrunk to 20 steps (losses, BLEU, checkpoints and vocab written);
SIGTERM mid-run saves a restorable checkpoint and exits 75 (resumed in-process, with the
time lost to the restart reported); a clear error for an unknown config field.
"""
import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import run_helpers
from configs import transformer_demo
from run_helpers import checkpoint_steps, scalars
from trainer_helpers import REPO
from transformer_jax.engine.trainer import train_and_evaluate
from transformer_jax.translation.task import TranslationTask

# The README's demo config shrunk. Both CLI runs below use it, so the second one loads the
# first one's compiled steps from the XLA cache.
SMALL_DEMO = {"checkpoint_every": 10, "eval_every": 0, "batch_size": 16, "eval_batch_size": 64,
              "model.d_model": 32, "model.d_ff": 37, "model.num_encoder_layers": 1,
              "model.num_decoder_layers": 1, "data.vocab_size": 200,
              "data.max_source_length": 24, "data.max_target_length": 24,
              "data.shuffle_buffer": 1000, "optimizer.warmup_steps": 20,
              "predict.num_bleu_examples": 16, "predict.max_decode_len": 24}


def _env() -> dict:
    return dict(os.environ, JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="",
                TF_CPP_MIN_LOG_LEVEL="2",
                XLA_FLAGS="--xla_force_host_platform_device_count=8")


def _command(workdir, *flags) -> list[str]:
    return [sys.executable, "-m", "transformer_jax.main", "--config=configs/transformer_demo.py",
            f"--workdir={workdir}", *flags]


def _main(workdir, *flags, timeout=300):
    return subprocess.run(_command(workdir, *flags), cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def demo_workdir(tmp_path_factory) -> str:
    """The README's main job, shrunk: 20 steps on the demo corpus, BLEU on 16 sentences."""
    workdir = str(tmp_path_factory.mktemp("demo"))
    flags = run_helpers.as_flags({**SMALL_DEMO, "num_train_steps": 20, "log_every": 5})
    result = _main(workdir, *flags)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "final:" in result.stderr and "eval/bleu=" in result.stderr, result.stderr[-4000:]
    return workdir


def test_main_demo_end_to_end(demo_workdir):
    workdir = demo_workdir
    train_loss = scalars(workdir, "train/loss")
    assert sorted(train_loss) == [5, 10, 15, 20]
    assert all(np.isfinite(v) for v in train_loss.values())
    assert train_loss[20] < train_loss[5]  # it learns something in 20 steps
    bleu = scalars(workdir, "eval/bleu")
    assert list(bleu) == [20] and 0.0 <= bleu[20] <= 100.0
    assert sorted(scalars(workdir, "eval/accuracy")) == [20]
    assert checkpoint_steps(workdir) == [10, 20]
    assert os.path.isfile(os.path.join(workdir, "vocab.model"))


def test_sigterm_saves_a_restorable_checkpoint_and_exits_75(demo_workdir, tmp_path, caplog):
    """The small demo stopped by SIGTERM mid-run through the CLI, then resumed in-process.
    (With the demo run's vocab: SentencePiece training is not what this test is about.)"""
    shutil.copy(os.path.join(demo_workdir, "vocab.model"), tmp_path / "vocab.model")
    overrides = {**SMALL_DEMO, "log_every": 1, "checkpoint_every": 1000}
    log_path = tmp_path / "log.txt"
    with open(log_path, "w") as log:
        command = _command(tmp_path, *run_helpers.as_flags({**overrides, "num_train_steps": 2000}))
        process = subprocess.Popen(command, cwd=REPO, env=_env(), stdout=log,
                                   stderr=subprocess.STDOUT)
        deadline = time.time() + 240
        while "step 3/2000" not in log_path.read_text():
            assert process.poll() is None and time.time() < deadline, log_path.read_text()
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    text = log_path.read_text()
    assert process.returncode == 75, text[-3000:]
    assert "training one" not in text  # it found the vocab
    [saved] = checkpoint_steps(str(tmp_path))
    assert 3 <= saved < 2000
    assert f"preempted at step {saved} of 2000" in text and "Traceback" not in text
    config = transformer_demo.get_config()
    # No BLEU at the end: beam search is not what this test is about either.
    run_helpers.override(config, {**overrides, "num_train_steps": saved + 2,
                                  "predict.bleu_split": ""})
    with caplog.at_level(logging.INFO, logger="transformer_jax"):
        train_and_evaluate(config, str(tmp_path), TranslationTask(config, str(tmp_path)))
    assert f"resuming from checkpoint at step {saved}" in caplog.text
    assert checkpoint_steps(str(tmp_path)) == [saved, saved + 2]
    # Goodput: the time from the preemption save to the resume is reported as lost.
    assert "since the checkpoint was saved" in caplog.text
    lost = scalars(str(tmp_path), "perf/lost_to_restarts_s")
    assert lost[saved + 1] > 0.0 and lost[1] == 0.0
    assert 0.0 < scalars(str(tmp_path), "perf/goodput")[saved + 2] < 1.0


@pytest.mark.parametrize("flag, error", [
    ("--config.data.foo=1", "error: unknown config field 'foo' in --config.data.foo=1; "
                            "override only fields that exist in the config file"),
    ("--config.model.d_modle=8", "error: unknown config field 'd_modle' in "
                                 "--config.model.d_modle=8 (did you mean 'd_model'?); "
                                 "override only fields that exist in the config file"),
    # Found before the corpus is read and a vocabulary learnt, not after.
    ("--config.optimizer.warmup_steps=0", "error: the 'rsqrt' schedule needs "
                                          "optimizer.warmup_steps > 0 (the paper uses 4000)"),
])
def test_main_rejects_a_bad_config_before_any_work(tmp_path, flag, error):
    result = _main(str(tmp_path / "never"), "--config.num_train_steps=2", flag, timeout=120)
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line == error, result.stderr[-500:]
    assert "SentencePiece" not in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "never")
