"""Sentence pairs for next-sentence prediction, by the rules of BERT's original
``create_pretraining_data.py`` (``create_instances_from_document``):

* Each document is walked sentence by sentence, filling a chunk up to a target length:
  ``max_seq_length - 3`` (room for [CLS] [SEP] [SEP]), or with probability
  ``short_seq_prob`` a random length in [2, max], so the model also sees short inputs.
* A full chunk is split at a random sentence boundary into A and B. With probability 1/2
  (always, if the chunk has a single sentence) B is replaced by a run of sentences starting
  at a random place in another random document (NotNext); the unused sentences of the
  chunk are put back so no text is wasted.
* The longer side is truncated, token by token from its front or back at random, until the
  pair fits.

Unlike the original, which repeats this ``dupe_factor`` times offline, ``epoch_pairs``
draws fresh pairs every epoch from a seeded generator: (seed, epoch) -> the same pairs, so
a resumed run sees the data it would have seen. Masking happens later, in the tf.data
graph (``masking.py``).

Token ids here are word pieces of one sentence each, without special tokens.
"""

import dataclasses
import random
from typing import Iterator, Sequence

import numpy as np

TokenizedDocument = Sequence[Sequence[int]]  # sentences of word-piece ids


@dataclasses.dataclass(frozen=True)
class SpecialIds:
    cls: int
    sep: int


@dataclasses.dataclass(frozen=True)
class PairRules:
    max_seq_length: int = 128
    short_seq_prob: float = 0.1   # the original's default

    def __post_init__(self):
        if self.max_seq_length < 5:
            raise ValueError(f"max_seq_length={self.max_seq_length} leaves no room for two "
                             "segments after [CLS] [SEP] [SEP]: use at least 5")
        if not 0.0 <= self.short_seq_prob <= 1.0:
            raise ValueError(f"short_seq_prob={self.short_seq_prob} must be in [0, 1]")


def document_pairs(documents: Sequence[TokenizedDocument], document_index: int,
                   rules: PairRules, special: SpecialIds,
                   rng: random.Random) -> Iterator[dict[str, np.ndarray]]:
    """Pairs from one document: ``input_ids`` ([CLS] A [SEP] B [SEP]), ``segment_ids`` (0 for
    [CLS] A [SEP], 1 for B [SEP]) and ``next_sentence_labels`` (0 = IsNext, 1 = NotNext, as
    in the original)."""
    document = documents[document_index]
    max_num_tokens = rules.max_seq_length - 3
    target_length = max_num_tokens
    if rng.random() < rules.short_seq_prob:
        target_length = rng.randint(2, max_num_tokens)
    chunk: list[Sequence[int]] = []
    chunk_length = 0
    i = 0
    while i < len(document):
        chunk.append(document[i])
        chunk_length += len(document[i])
        if i == len(document) - 1 or chunk_length >= target_length:
            a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
            tokens_a = [t for sentence in chunk[:a_end] for t in sentence]
            is_random_next = len(chunk) == 1 or rng.random() < 0.5
            if is_random_next:
                tokens_b = _random_continuation(documents, document_index,
                                                target_length - len(tokens_a), rng)
                i -= len(chunk) - a_end  # put the unused sentences back
            else:
                tokens_b = [t for sentence in chunk[a_end:] for t in sentence]
            _truncate_pair(tokens_a, tokens_b, max_num_tokens, rng)
            if tokens_a and tokens_b:
                yield _pair(tokens_a, tokens_b, is_random_next, special)
            chunk, chunk_length = [], 0
        i += 1


def _random_continuation(documents: Sequence[TokenizedDocument], document_index: int,
                         target_length: int, rng: random.Random) -> list[int]:
    """Sentences from a random place of another document, up to ``target_length`` tokens."""
    # Ten tries to draw a different document, as in the original (one document: give up).
    for _ in range(10):
        other = rng.randint(0, len(documents) - 1)
        if other != document_index:
            break
    document = documents[other]
    tokens: list[int] = []
    for sentence in document[rng.randint(0, len(document) - 1):]:
        tokens.extend(sentence)
        if len(tokens) >= target_length:
            break
    return tokens


def _truncate_pair(tokens_a: list[int], tokens_b: list[int], max_num_tokens: int,
                   rng: random.Random) -> None:
    """Trims the longer side one token at a time, from the front or the back at random
    (always at the end would bias the model towards sentence starts)."""
    while len(tokens_a) + len(tokens_b) > max_num_tokens:
        longer = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


def _pair(tokens_a: list[int], tokens_b: list[int], is_random_next: bool,
          special: SpecialIds) -> dict[str, np.ndarray]:
    input_ids = [special.cls, *tokens_a, special.sep, *tokens_b, special.sep]
    segment_ids = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
    return {"input_ids": np.asarray(input_ids, np.int32),
            "segment_ids": np.asarray(segment_ids, np.int32),
            "next_sentence_labels": np.int32(is_random_next)}


def epoch_pairs(documents: Sequence[TokenizedDocument], rules: PairRules, special: SpecialIds,
                seed: int, epoch: int) -> list[dict[str, np.ndarray]]:
    """All pairs of one pass over the documents, shuffled; a pure function of (seed, epoch)."""
    if len(documents) < 2:
        raise ValueError(f"{len(documents)} document(s): random next sentences need at least "
                         "2 documents (separate documents with a blank line)")
    rng = random.Random(f"{seed}/{epoch}")
    order = list(range(len(documents)))
    rng.shuffle(order)
    pairs = [pair for index in order
             for pair in document_pairs(documents, index, rules, special, rng)]
    rng.shuffle(pairs)
    return pairs
