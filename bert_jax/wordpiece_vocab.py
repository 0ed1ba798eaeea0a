"""Learning a WordPiece vocabulary from a corpus, and writing it as a standard `vocab.txt`.

Words are counted with the reference `BasicTokenizer` (the same splitting `FullTokenizer`
applies later, so the vocab fits the tokenizer), then tensorflow_text's WordPiece learner
(`wordpiece_tokenizer_learner_lib.learn`, the algorithm behind `bert_vocab_from_dataset`)
picks the pieces. We do not call `bert_vocab_from_dataset` itself: it counts words with
tf_text's BasicTokenizer, whose lower-casing (NFKC case folding) differs from BERT's, so it
could learn pieces such as 'ss' for 'ß' that our tokenizer never produces.
"""
from __future__ import annotations

import collections
import logging
import os
import uuid
from typing import Iterable, Mapping, Sequence

import tensorflow as tf
from tensorflow_text.tools.wordpiece_vocab import wordpiece_tokenizer_learner_lib as learner

from bert_jax.tokenization import DEFAULT_MAX_CHARS_PER_WORD, SPECIAL_TOKENS, BasicTokenizer

log = logging.getLogger(__name__)

__all__ = ["train_vocab", "write_vocab", "count_words"]


def count_words(sentences: Iterable[str], basic_tokenizer: BasicTokenizer) -> collections.Counter:
    """Corpus -> Counter of basic-tokenized words (what WordPiece later sees)."""
    counts: collections.Counter = collections.Counter()
    for sentence in sentences:
        counts.update(basic_tokenizer.tokenize(sentence))
    return counts


def train_vocab(
    sentences: Iterable[str],
    vocab_size: int,
    *,
    do_lower_case: bool = True,
    strip_accents: bool | None = None,
    reserved: Sequence[str] = SPECIAL_TOKENS,
    max_input_chars_per_word: int = DEFAULT_MAX_CHARS_PER_WORD,
    learn_params: Mapping | None = None,
) -> list[str]:
    """Learns a WordPiece vocab of at most `vocab_size` tokens from `sentences`.

    The result starts with `reserved` (ids 0.. in order, so [PAD] = 0 and padding is id 0),
    then every character of the corpus and its '##' form, so no corpus word of at most
    `max_input_chars_per_word` characters tokenizes to [UNK]; then learned pieces, most
    frequent first. `learn_params` go to tf_text's `learn` (e.g. lower_thresh=2 for a small
    corpus, whose rare pieces the default threshold of 10 leaves out).
    """
    _check_reserved(reserved)
    counts = count_words(sentences, BasicTokenizer(do_lower_case, strip_accents))
    if not counts:
        raise ValueError("the corpus has no words (empty or only whitespace/control "
                         "characters): pass a non-empty text corpus to train_vocab().")
    alphabet = sorted({c for w in counts if len(w) <= max_input_chars_per_word for c in w})
    required = [*reserved, *alphabet, *("##" + c for c in alphabet)]
    if len(required) > vocab_size:
        raise ValueError(f"vocab_size={vocab_size} cannot hold the {len(reserved)} reserved "
                         f"tokens plus the corpus's {len(alphabet)} characters with and without "
                         f"'##': use vocab_size >= {len(required)}.")
    params = {"max_unique_chars": len(alphabet), **(learn_params or {})}
    learned = learner.learn(sorted(counts.items()), vocab_size, list(reserved), **params)
    vocab = _fit(list(dict.fromkeys([*reserved, *learned, *required])), set(required),
                 vocab_size)
    log.info("Learned a WordPiece vocab of %d tokens (%d characters) from %d distinct words.",
             len(vocab), len(alphabet), len(counts))
    return vocab


def _check_reserved(reserved: Sequence[str]) -> None:
    """The reserved tokens must be distinct and include every special token."""
    missing = [t for t in SPECIAL_TOKENS if t not in reserved]
    if missing or len(set(reserved)) != len(reserved):
        raise ValueError(f"reserved={list(reserved)} must be distinct and contain "
                         f"{' '.join(SPECIAL_TOKENS)}: add {' '.join(missing) or 'no duplicates'}.")


def _fit(vocab: list[str], required: set[str], vocab_size: int) -> list[str]:
    """Drops the least frequent learned pieces (the tail) until `vocab_size` tokens remain.

    Needed because tf_text's learner only aims at the size (within its slack) and we may
    have added characters it filtered out; required tokens are never dropped.
    """
    extra = len(vocab) - vocab_size
    drop = set()
    for token in reversed(vocab):
        if len(drop) >= extra:
            break
        if token not in required:
            drop.add(token)
    return [t for t in vocab if t not in drop]


def write_vocab(path: str, tokens: Sequence[str]) -> str:
    """Writes `tokens` one per line (id = line number), atomically: temp file, then rename.

    Refuses tokens that would not read back identically through `load_vocab`.
    """
    _check_writable(tokens)
    directory = os.path.dirname(path)
    if directory:
        tf.io.gfile.makedirs(directory)
    temp_path = f"{path}.tmp-{uuid.uuid4().hex}"
    with tf.io.gfile.GFile(temp_path, "wb") as f:
        f.write("".join(t + "\n" for t in tokens).encode("utf-8"))
    # A crash mid-write leaves only the temp file, never a truncated vocab.txt.
    tf.io.gfile.rename(temp_path, path, overwrite=True)
    return path


def _check_writable(tokens: Sequence[str]) -> None:
    """Empty, padded or multi-line tokens, or duplicates, would change ids on reload."""
    seen = set()
    for i, token in enumerate(tokens):
        if not token or token != token.strip() or "\n" in token:
            raise ValueError(f"token {i} ({token!r}) is empty, has surrounding whitespace or a "
                             "newline, so vocab.txt could not store it: remove or fix it.")
        if token in seen:
            raise ValueError(f"token {i} ({token!r}) is a duplicate: each token once.")
        seen.add(token)
