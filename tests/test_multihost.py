"""Real multi-process runs on this machine: 2 processes x 4 CPU devices joined by
jax.distributed (gloo), started by `launch/local_multiprocess.sh` as a user would.

  * tiny BERT data-parallel on 2 processes == 1 process of 8 devices with FSDP, step for
    step (the pretraining stream's global batches do not depend on the process count),
    until SIGTERM to one of the two processes: both save the same step and exit 75; the
    run resumes on 1 process with the other mesh at the same data position, giving the
    uninterrupted run's losses;
  * the tiny Transformer on 2 processes == one process fed the same global batches (its
    hosts shard, shuffle and pack their own part of the corpus).
"""
import logging
import os
import signal
import socket
import subprocess
import time

import numpy as np
import pytest

import run_helpers
from bert_jax import main as bert_main
from configs import bert_pretrain, transformer_demo
from bert_data_helpers import WORDS, write_corpus
from trainer_helpers import word_pairs, write_lines
from transformer_jax.engine.trainer import Trainer
from transformer_jax.translation.task import TranslationTask
from transformer_jax.translation.tokenizer import train_sentencepiece

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(REPO, "launch", "local_multiprocess.sh")
PREEMPTED = 75


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict:
    # Each device's matmuls on its own thread (no Eigen pool per process): 2 processes x 4
    # devices already oversubscribe 2 cores, and the pools only add contention (measured:
    # the Transformer test 48 -> 40 s alone; the launch script adds the device count).
    return dict(os.environ, JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="",
                TF_CPP_MIN_LOG_LEVEL="2", XLA_FLAGS="--xla_cpu_multi_thread_eigen=false")


def launch(num, devices, config, workdir, flags, **popen):
    return subprocess.Popen(["bash", LAUNCH, f"--port={free_port()}", str(num), str(devices),
                             config, str(workdir), *flags],
                            cwd=REPO, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **popen)


def finish(process, timeout=400) -> str:
    out, _ = process.communicate(timeout=timeout)
    return out


# ---------------------------------------------------------------------------------- BERT

BERT = "configs/bert_pretrain.py:size=tiny"


@pytest.fixture(scope="module")
def bert_overrides(tmp_path_factory):
    root = tmp_path_factory.mktemp("bert_data")
    corpus = write_corpus(str(root / "docs.txt"))
    held_out = write_corpus(str(root / "held_out.txt"), num_documents=5, seed=7)
    vocab = root / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "."]
                               + sorted(set(WORDS))) + "\n")
    return {"data.source": "files", "data.input_files": corpus,
            "data.eval_input_files": held_out, "data.vocab_file": str(vocab),
            "data.max_seq_length": 23, "data.max_predictions_per_seq": 5,
            "model.num_layers": 2, "model.hidden_size": 32, "model.num_heads": 4,
            "model.intermediate_size": 37, "model.max_position_embeddings": 29,
            "batch_size": 8, "eval_batch_size": 8, "log_every": 1, "eval_every": 0,
            "checkpoint_every": 1000, "optimizer.warmup_steps": 2,
            # A schedule that does not depend on num_train_steps: runs of different lengths
            # (and a resumed one) follow the same learning rates.
            "optimizer.decay_steps": 500}


def bert_in_this_process(overrides: dict, workdir, **more) -> dict[str, float]:
    """One process of this test process's 8 devices, FSDP: the reference, and the mesh the
    2-process data-parallel run resumes on. (Both in-process, so the resumed run reuses
    the reference's compiled steps from the XLA cache.)"""
    config = bert_pretrain.get_config("size=tiny")
    run_helpers.override(config, {**overrides, "sharding.preset": "fsdp", **more})
    return bert_main.train_once(config, str(workdir))


@pytest.fixture(scope="module")
def bert_reference(bert_overrides, tmp_path_factory):
    """24 uninterrupted steps."""
    workdir = tmp_path_factory.mktemp("bert_single")
    bert_in_this_process(bert_overrides, workdir, num_train_steps=24)
    return run_helpers.losses(str(workdir))


def _wait_for(path, text, process, timeout=240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path):
            with open(path) as f:
                if text in f.read():
                    return
        if process.poll() is not None:
            raise AssertionError(f"the run ended before {text!r}: {process.stdout.read()[-3000:]}")
        time.sleep(0.2)
    raise AssertionError(f"no {text!r} in {path} after {timeout} s")


def test_bert_two_processes_match_one_then_sigterm_to_one_saves_and_resumes_elsewhere(
        bert_overrides, bert_reference, tmp_path, caplog):
    """Steps 1..saved run data-parallel on 2 processes and equal the 1-process FSDP
    reference; SIGTERM to one process saves both at the same step; the run resumes on
    1 process with FSDP and continues the reference."""
    flags = run_helpers.as_flags({**bert_overrides, "num_train_steps": 500})
    run = launch(2, 4, BERT, tmp_path, flags)
    _wait_for(tmp_path / "logs" / "process_0.log", "step 3/500", run)
    pids = subprocess.run(["pgrep", "-f", f"workdir={tmp_path} .*--process_id=1"],
                          capture_output=True, text=True).stdout.split()
    assert len(pids) == 1, pids
    os.kill(int(pids[0]), signal.SIGTERM)  # the scheduler warns one host only
    out = finish(run)
    assert run.returncode == PREEMPTED, out[-3000:]
    [saved] = run_helpers.checkpoint_steps(str(tmp_path))
    assert 3 <= saved <= 20, saved
    assert "process 0 of 2: 4 local devices of 8" in out, out[-3000:]
    with open(tmp_path / "logs" / "process_1.log") as f:
        other = f.read()
    assert f"preempted at step {saved} of 500" in other
    assert "step 1/500" not in other  # progress is logged by process 0 only
    assert f"preempted at step {saved} of 500" in out
    # Same data position and losses on the other mesh.
    with caplog.at_level(logging.INFO, logger="transformer_jax"):
        bert_in_this_process(bert_overrides, tmp_path, num_train_steps=saved + 3)
    assert f"resuming from checkpoint at step {saved}" in caplog.text
    by_step = run_helpers.scalars(str(tmp_path), "train/loss")
    np.testing.assert_allclose([by_step[s] for s in range(1, saved + 4)],
                               bert_reference[:saved + 3], rtol=2e-5)


# ---------------------------------------------------------------------------- Transformer

TRANSFORMER = "configs/transformer_demo.py"


@pytest.fixture(scope="module")
def translation_overrides(tmp_path_factory):
    root = tmp_path_factory.mktemp("translation_data")
    train = word_pairs(160, seed=0)
    vocab = train_sentencepiece([side for line in train for side in line.split("\t")],
                                str(root / "vocab.model"), vocab_size=60)
    eval_tsv = write_lines(root / "eval.tsv", word_pairs(16, seed=1))
    return {"data.source": "files", "data.train_tsv": write_lines(root / "train.tsv", train),
            "data.eval_tsv": eval_tsv, "data.test_tsv": eval_tsv, "data.vocab_path": vocab,
            "data.vocab_size": 60, "data.max_source_length": 16,
            "data.max_target_length": 16, "data.shuffle_buffer": 64, "model.d_model": 32,
            "model.num_heads": 4, "model.d_ff": 37, "model.num_encoder_layers": 1,
            "model.num_decoder_layers": 1, "model.max_len": 32, "predict.bleu_split": "",
            "batch_size": 8, "eval_batch_size": 8, "num_train_steps": 5, "log_every": 1,
            "eval_every": 0, "checkpoint_every": 1000, "optimizer.warmup_steps": 10}


class SameGlobalBatches:
    """``task`` as one process sees it when it is fed the global batches that
    ``process_count`` processes assemble (their local batches, in process order)."""

    def __init__(self, task, process_count: int):
        self._task, self._count = task, process_count

    def __getattr__(self, name):
        return getattr(self._task, name)

    def train_batches(self, batch_size_per_host, start_batch, process_index, process_count):
        assert (process_index, process_count) == (0, 1)
        streams = [self._task.train_batches(batch_size_per_host // self._count, start_batch,
                                            p, self._count) for p in range(self._count)]
        while True:
            local = [next(stream) for stream in streams]
            yield {key: np.concatenate([batch[key] for batch in local]) for key in local[0]}


def test_transformer_two_processes_match_one_with_the_same_global_batches(
        translation_overrides, tmp_path):
    flags = run_helpers.as_flags(translation_overrides)
    out = finish(launch(2, 4, TRANSFORMER, tmp_path / "two", flags))
    assert "final:" in out, out[-3000:]
    config = transformer_demo.get_config()
    run_helpers.override(config, translation_overrides)
    workdir = str(tmp_path / "one")
    Trainer(config, workdir, SameGlobalBatches(TranslationTask(config, workdir), 2)).run()
    two = run_helpers.losses(str(tmp_path / "two"))
    assert len(two) == 5
    np.testing.assert_allclose(two, run_helpers.losses(workdir), rtol=2e-5)
