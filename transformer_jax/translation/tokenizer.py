"""One SentencePiece vocabulary shared by source and target (the paper, section 5.1).

Training uses the `sentencepiece` library from an in-memory iterator; in-graph encoding inside
tf.data uses `tensorflow_text.SentencepieceTokenizer` on the same serialized model, so Python
and tf.data produce identical ids. Files go through `tf.io.gfile` so a workdir may be `gs://`.
"""
from __future__ import annotations

import functools
import io
import itertools
import os
import uuid
from typing import Callable, Iterable, Sequence

import numpy as np
import sentencepiece as spm
import tensorflow as tf
import tensorflow_text as tf_text
import logging

log = logging.getLogger(__name__)

# Fixed ids that the model, the losses and the decoder rely on.
PAD_ID = 0
EOS_ID = 1
BOS_ID = 2  # the decoder's first input token
UNK_ID = 3

DEFAULT_MAX_SENTENCES = 1_000_000


class Tokenizer:
    """A trained SentencePiece model usable from Python and from inside tf.data."""

    def __init__(self, model_proto: bytes):
        """Wraps a serialized SentencePiece model (the contents of a `.model` file)."""
        self.model_proto = model_proto
        self._processor = spm.SentencePieceProcessor(model_proto=model_proto)
        self._check_special_ids()

    @classmethod
    def from_file(cls, model_path: str) -> "Tokenizer":
        """Loads a `.model` file written by `train_sentencepiece`."""
        if not tf.io.gfile.exists(model_path):
            raise FileNotFoundError(
                f"SentencePiece model {model_path} does not exist: train one with "
                "train_sentencepiece() or use load_or_train_tokenizer()."
            )
        with tf.io.gfile.GFile(model_path, "rb") as f:
            return cls(f.read())

    def _check_special_ids(self) -> None:
        # A model trained with sentencepiece's defaults (unk=0, bos=1, eos=2) would silently
        # turn padding into <unk>; refuse it instead.
        found = (
            self._processor.pad_id(),
            self._processor.eos_id(),
            self._processor.bos_id(),
            self._processor.unk_id(),
        )
        if found != (PAD_ID, EOS_ID, BOS_ID, UNK_ID):
            raise ValueError(
                f"SentencePiece model has (pad, eos, bos, unk) ids {found}, expected "
                f"{(PAD_ID, EOS_ID, BOS_ID, UNK_ID)}: retrain it with train_sentencepiece()."
            )

    @property
    def vocab_size(self) -> int:
        """The real number of pieces (may be below the requested size for small corpora)."""
        return self._processor.get_piece_size()

    def encode(self, text: str) -> list[int]:
        """Text -> piece ids, without EOS."""
        return self._processor.encode(text)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Piece ids -> text: stops at the first EOS and drops PAD and BOS."""
        ids = [int(i) for i in ids]
        if EOS_ID in ids:
            ids = ids[: ids.index(EOS_ID)]
        # The model's output vocab may be padded beyond the real one (e.g. to a multiple of
        # 128 for sharding); an untrained model can emit those ids, which sentencepiece
        # rejects, so they read as <unk>.
        ids = [UNK_ID if i >= self.vocab_size else i for i in ids if i not in (PAD_ID, BOS_ID)]
        return self._processor.decode(ids)

    def decode_batch(self, ids: np.ndarray) -> list[str]:
        """[B, L] ids -> B strings."""
        return [self.decode(row) for row in np.asarray(ids)]

    @functools.cached_property
    def tf_tokenizer(self) -> tf_text.SentencepieceTokenizer:
        """In-graph tokenizer for tf.data; `.tokenize(strings)` gives int32 ids, no EOS."""
        # Cached: building the op parses the model, which is wasteful once per pipeline.
        return tf_text.SentencepieceTokenizer(model=self.model_proto, out_type=tf.int32)


def train_sentencepiece(
    sentences: Iterable[str],
    model_path: str,
    vocab_size: int,
    *,
    model_type: str = "unigram",
    character_coverage: float = 1.0,
    max_sentences: int = DEFAULT_MAX_SENTENCES,
) -> str:
    """Trains a SentencePiece model on `sentences` and writes it to `model_path`.

    Feed both languages: one vocabulary is shared by source and target. Only the first
    `max_sentences` sentences are read, which bounds memory and time on WMT-sized corpora.
    Returns `model_path`.
    """
    if vocab_size <= UNK_ID + 1:
        raise ValueError(f"vocab_size={vocab_size} is too small: use at least {UNK_ID + 2}.")
    sentences = (s for s in itertools.islice(sentences, max_sentences) if s)
    model_buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=sentences,
        model_writer=model_buffer,
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=character_coverage,
        pad_id=PAD_ID,
        eos_id=EOS_ID,
        bos_id=BOS_ID,
        unk_id=UNK_ID,
        # A small corpus cannot fill a large vocab; accept a smaller one and report it.
        hard_vocab_limit=False,
        minloglevel=2,
    )
    model_proto = model_buffer.getvalue()
    real_vocab_size = Tokenizer(model_proto).vocab_size
    if real_vocab_size < vocab_size:
        log.warning(
            "SentencePiece vocab has %d pieces, fewer than the requested %d (corpus too small).",
            real_vocab_size,
            vocab_size,
        )
    _write_atomically(model_path, model_proto)
    log.info("Wrote SentencePiece model with %d pieces to %s", real_vocab_size, model_path)
    return model_path


def _write_atomically(path: str, contents: bytes) -> None:
    """Writes to a temporary name then renames, so a crash never leaves a half-written file."""
    directory = os.path.dirname(path)
    if directory:
        tf.io.gfile.makedirs(directory)
    temp_path = f"{path}.tmp-{uuid.uuid4().hex}"
    with tf.io.gfile.GFile(temp_path, "wb") as f:
        f.write(contents)
    tf.io.gfile.rename(temp_path, path, overwrite=True)


def load_or_train_tokenizer(
    model_path: str,
    train_sentences_fn: Callable[[], Iterable[str]],
    vocab_size: int,
) -> Tokenizer:
    """Loads `model_path` if it exists, else trains it from `train_sentences_fn()` and saves it.

    Keeping the vocab in the workdir means a resumed run reuses exactly the same ids.
    """
    if not tf.io.gfile.exists(model_path):
        log.info("No SentencePiece model at %s; training one.", model_path)
        train_sentencepiece(train_sentences_fn(), model_path, vocab_size)
    return Tokenizer.from_file(model_path)
