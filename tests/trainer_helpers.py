"""Shared by the engine tests that train on the tiny translation task (test_trainer*.py,
test_checkpoint_safety, test_stacking, test_memory, test_multihost): the repository root, a
word-for-word English-German corpus with its SentencePiece model (the ``corpus`` fixture), the
demo config shrunk to seconds, a run to the end, one logger's warnings, and reading a
checkpoint's params back.

Import from a test file as ``import trainer_helpers`` / ``from trainer_helpers import ...``
(pytest puts ``tests/`` on ``sys.path``); bind the fixture in the test module with
``corpus = trainer_helpers.corpus``.
"""
import contextlib
import logging
import os
import types

import numpy as np
import pytest

from configs import transformer_demo
from transformer_jax.engine import checkpoint as ckpt
from transformer_jax.engine.trainer import Trainer
from transformer_jax.translation.task import TranslationTask
from transformer_jax.translation.tokenizer import train_sentencepiece

from run_helpers import host, override

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 6
ENGLISH = ["the", "cat", "dog", "sees", "a", "big", "small", "house", "red", "runs"]
GERMAN = ["die", "katze", "hund", "sieht", "ein", "gross", "klein", "haus", "rot", "laeuft"]

# 2x4 layouts of the 8 devices, one per preset: (data, fsdp, tensor).
MESHES = {
    "dp": {"data": 2, "fsdp": 4, "tensor": 1},
    "fsdp": {"data": 2, "fsdp": 4, "tensor": 1},
    "fsdp_tp": {"data": 1, "fsdp": 2, "tensor": 4},
}


def word_pairs(count: int, seed: int) -> list[str]:
    """'english words<TAB>german words', a word-for-word code of 2-6 words."""
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(count):
        ids = rng.integers(0, len(ENGLISH), rng.integers(2, 7))
        lines.append(" ".join(ENGLISH[i] for i in ids) + "\t" + " ".join(GERMAN[i] for i in ids))
    return lines


def write_lines(path, lines) -> str:
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))
    return str(path)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Train/eval TSV files and a shared SentencePiece model (trained once per module)."""
    root = tmp_path_factory.mktemp("corpus")
    train = word_pairs(160, seed=0)
    sentences = [side for line in train for side in line.split("\t")]
    return types.SimpleNamespace(
        root=root,
        train_tsv=write_lines(root / "train.tsv", train),
        eval_tsv=write_lines(root / "eval.tsv", word_pairs(12, seed=1)),  # 2 eval batches
        vocab_path=train_sentencepiece(sentences, str(root / "vocab.model"), vocab_size=60))


def make_config(corpus, preset: str = "dp", **overrides):
    """The demo config shrunk to seconds: 1+1 layers, d_model 32, 4 heads, d_ff 37."""
    c = transformer_demo.get_config()
    c.data.update(dict(source="files", train_tsv=corpus.train_tsv, eval_tsv=corpus.eval_tsv,
                       test_tsv=corpus.eval_tsv, vocab_path=corpus.vocab_path, vocab_size=60,
                       max_source_length=16, max_target_length=16, shuffle_buffer=64))
    c.model.update(dict(d_model=32, num_heads=4, d_ff=37, num_encoder_layers=1,
                        num_decoder_layers=1, max_len=32, dropout_rate=0.1))
    c.predict.bleu_split = ""
    c.batch_size, c.eval_batch_size = 8, 8
    c.num_train_steps, c.log_every, c.eval_every = STEPS, 1, 0
    c.checkpoint_every, c.keep_checkpoints, c.async_checkpoints = 3, 5, False
    c.optimizer.warmup_steps = 10
    c.sharding.preset = preset
    c.sharding.mesh.update(MESHES[preset])
    override(c, overrides)
    return c


def saved_params(workdir: str, trainer: Trainer, step: int | None = None):
    """The params of a checkpoint of ``workdir`` as numpy, read onto ``trainer``'s mesh."""
    return host(ckpt.restore_params(workdir, trainer.abstract_state.params, step=step))


@contextlib.contextmanager
def captured_warnings(logger_name: str):
    """Warning messages of one logger (independent of propagation and pytest's caplog)."""
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: records.append(record.getMessage())
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def run(config, workdir, devices=None, task=None) -> Trainer:
    trainer = Trainer(config, str(workdir), task or TranslationTask(config, str(workdir)),
                      devices=devices)
    trainer.run()
    return trainer
