"""The ``transformer_jax.main`` CLI end to end, in a subprocess on 8 simulated CPU devices:
the README's demo job shrunk to 20 steps (losses, BLEU, checkpoints and vocab written), and a
clear error for an unknown config field.
"""
import os
import subprocess
import sys

import numpy as np

from run_helpers import checkpoint_steps, scalars
from trainer_helpers import REPO


def _main(workdir, *flags, timeout=300):
    env = dict(os.environ, JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="",
               TF_CPP_MIN_LOG_LEVEL="2",
               XLA_FLAGS="--xla_force_host_platform_device_count=8")
    return subprocess.run(
        [sys.executable, "-m", "transformer_jax.main", "--config=configs/transformer_demo.py",
         f"--workdir={workdir}", *flags],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def test_main_demo_end_to_end(tmp_path):
    """The README's main job, shrunk: 20 steps on the demo corpus, BLEU on 16 sentences."""
    workdir = str(tmp_path / "demo")
    result = _main(
        workdir, "--config.num_train_steps=20", "--config.log_every=5",
        "--config.checkpoint_every=10", "--config.eval_every=0", "--config.batch_size=16",
        "--config.eval_batch_size=64", "--config.model.d_model=32", "--config.model.d_ff=37",
        "--config.model.num_encoder_layers=1", "--config.model.num_decoder_layers=1",
        "--config.data.vocab_size=200", "--config.data.max_source_length=24",
        "--config.data.max_target_length=24", "--config.data.shuffle_buffer=1000",
        "--config.optimizer.warmup_steps=20", "--config.predict.num_bleu_examples=16",
        "--config.predict.max_decode_len=24")
    assert result.returncode == 0, result.stderr[-4000:]
    assert "final:" in result.stderr and "eval/bleu=" in result.stderr, result.stderr[-4000:]

    train_loss = scalars(workdir, "train/loss")
    assert sorted(train_loss) == [5, 10, 15, 20]
    assert all(np.isfinite(v) for v in train_loss.values())
    assert train_loss[20] < train_loss[5]  # it learns something in 20 steps
    bleu = scalars(workdir, "eval/bleu")
    assert list(bleu) == [20] and 0.0 <= bleu[20] <= 100.0
    assert sorted(scalars(workdir, "eval/accuracy")) == [20]
    assert checkpoint_steps(workdir) == [10, 20]
    assert os.path.isfile(os.path.join(workdir, "vocab.model"))


def test_main_rejects_an_unknown_config_field(tmp_path):
    result = _main(str(tmp_path / "never"), "--config.foo=1", timeout=120)
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: unknown config field 'foo'"), result.stderr[-500:]
    assert "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "never")
