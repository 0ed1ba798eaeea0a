"""Token classification data (CoNLL-2003 NER): sentences of tagged words -> BERT windows.

Sources, both giving ``list[Sentence]``:
  * CoNLL column files (``word POS chunk NER`` per line, a blank line between sentences,
    ``-DOCSTART- -X- -X- O`` lines between documents, skipped and counted);
  * TFDS ``conll2003`` (features ``tokens`` and ``ner``; the label names come from the
    builder's info).

Tags are kept exactly as the data has them. The original CoNLL-2003 files (and TFDS, which
reads them unchanged) use IOB1: an entity starts with I-, and B- only marks an entity that
directly follows another of the same type. Nothing here converts to IOB2. Scoring is meant
to follow conlleval's rules (an entity is a maximal run starting where conlleval's
``startOfChunk`` says so), which read both IOB1 and IOB2, so entity F1 is computed on
whatever scheme the file uses; `write_conll_predictions` writes conlleval's input format.

Featurizing: each word becomes its word pieces (with the caller's tokenizer, so its casing:
NER models are usually cased, ``FullTokenizer(vocab, do_lower_case=False)``). The word's
label goes on its FIRST piece; the other pieces, [CLS], [SEP] and padding get label id -1
and weight 0, so loss and metrics ignore them. A sentence longer than ``max_seq_length - 2``
pieces is split at word boundaries into several windows, never truncated: every word is
labelled in exactly one window, and ``sentence_index`` / ``word_index`` map each labelled
position back to its word for writing predictions.

Arrays (W windows, L = max_seq_length):
  input_ids, input_mask, segment_ids  [W, L] int32   as in ``features.pack_ids``
  label_ids                           [W, L] int32   label index; -1 where ignored
  label_weights                       [W, L] float32 1 on first pieces, else 0
  sentence_index, word_index          [W, L] int32   the word a first piece labels; else -1
"""

import dataclasses
import logging
from typing import Sequence

import numpy as np
import tensorflow as tf

from bert_jax.tokenization import FullTokenizer
from transformer_jax import textfiles

log = logging.getLogger(__name__)

# CoNLL-2003 NER tags in the order of TFDS's conll2003 (its ClassLabel ids).
CONLL2003_LABELS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC",
                    "I-MISC")
CONLL2003_COLUMNS = 4  # word POS chunk NER
DOCSTART = "-DOCSTART-"
IGNORED = -1  # label id of positions that carry no label
MODEL_KEYS = ("input_ids", "input_mask", "segment_ids", "label_ids", "label_weights")


@dataclasses.dataclass(frozen=True)
class Sentence:
    words: tuple[str, ...]
    tags: tuple[str, ...]    # one per word
    source: str              # where it came from, for errors: "train.txt:12", "conll2003/train:5"

    def __post_init__(self):
        if len(self.words) != len(self.tags):
            raise ValueError(f"sentence {self.source} has {len(self.words)} words but "
                             f"{len(self.tags)} tags: give one tag per word.")


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------
def read_conll(path: str, labels: Sequence[str] = CONLL2003_LABELS, *,
               num_columns: int = CONLL2003_COLUMNS, tag_column: int = -1) -> list[Sentence]:
    """A CoNLL column file -> its sentences (word = first column, tag = ``tag_column``).

    Columns are separated by whitespace; every non-blank line must have ``num_columns`` of
    them. ``-DOCSTART-`` lines end a sentence and are skipped (their count is logged).
    """
    label_set = set(labels)
    lines = textfiles.split_lines(textfiles.read_utf8(path, "CoNLL file"))
    sentences: list[Sentence] = []
    words: list[str] = []
    tags: list[str] = []
    start = 0
    docstarts = 0

    def end_sentence():
        if words:
            sentences.append(Sentence(tuple(words), tuple(tags), f"{path}:{start}"))
            words.clear()
            tags.clear()

    for number, line in enumerate(lines, start=1):
        columns = line.split()
        if not columns:
            end_sentence()
            continue
        if columns[0] == DOCSTART:
            docstarts += 1
            end_sentence()
            continue
        if len(columns) != num_columns:
            raise ValueError(f"CoNLL file {path} line {number} has {len(columns)} columns, "
                             f"expected {num_columns} (word ... tag): {line.strip()!r}")
        tag = columns[tag_column]
        if tag not in label_set:
            raise ValueError(f"CoNLL file {path} line {number}: tag {tag!r} is not in the "
                             f"label list {' '.join(labels)}")
        if not words:
            start = number
        words.append(columns[0])
        tags.append(tag)
    end_sentence()
    log.info("CoNLL file %s: %d sentences, %d words; skipped %d %s lines.", path,
             len(sentences), sum(len(s.words) for s in sentences), docstarts, DOCSTART)
    return sentences


def tfds_sentences(name: str = "conll2003", split: str = "train", data_dir: str | None = None,
                   *, tokens_key: str = "tokens", tags_key: str = "ner"
                   ) -> tuple[list[Sentence], tuple[str, ...]]:
    """A TFDS token-classification set -> (sentences, label names from the builder's info)."""
    import tensorflow_datasets as tfds

    ds, info = tfds.load(name, split=split, data_dir=data_dir, shuffle_files=False,
                         with_info=True)
    features = info.features
    missing = [k for k in (tokens_key, tags_key) if k not in features]
    if missing:
        raise ValueError(f"TFDS dataset {name} has no feature {' '.join(missing)} (it has "
                         f"{sorted(features.keys())}): set tokens_key / tags_key.")
    labels = tuple(features[tags_key].feature.names)
    sentences = []
    for index, example in enumerate(ds.as_numpy_iterator()):
        source = f"{name}/{split}:{index}"
        words = tuple(w.decode("utf-8") for w in example[tokens_key])
        ids = example[tags_key]
        if len(words) != len(ids):
            raise ValueError(f"TFDS example {source} has {len(words)} {tokens_key} but "
                             f"{len(ids)} {tags_key}.")
        if len(ids) and not 0 <= ids.min() <= ids.max() < len(labels):
            raise ValueError(f"TFDS example {source} has a tag id outside [0, {len(labels)}).")
        if words:
            sentences.append(Sentence(words, tuple(labels[i] for i in ids), source))
    log.info("TFDS %s/%s: %d sentences.", name, split, len(sentences))
    return sentences, labels


# --------------------------------------------------------------------------------------------
# Featurizing
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class NerFeatures:
    """Stacked windows; see the module docstring for shapes."""
    input_ids: np.ndarray
    input_mask: np.ndarray
    segment_ids: np.ndarray
    label_ids: np.ndarray
    label_weights: np.ndarray
    sentence_index: np.ndarray
    word_index: np.ndarray

    def model_inputs(self) -> dict[str, np.ndarray]:
        """The arrays a training/eval batch needs (not the mapping back to words)."""
        return {k: getattr(self, k) for k in MODEL_KEYS}

    @property
    def num_windows(self) -> int:
        return self.input_ids.shape[0]


def word_pieces(tokenizer: FullTokenizer, word: str) -> list[int]:
    """A word's piece ids; a word that tokenizes to nothing (e.g. only a zero-width space)
    becomes [UNK], so that it still has a first piece to carry its label."""
    return tokenizer.encode(word) or [tokenizer.unk_id]


def featurize_ner(tokenizer: FullTokenizer, sentences: Sequence[Sentence],
                  labels: Sequence[str], max_seq_length: int) -> NerFeatures:
    """Sentences -> windows ``[CLS] pieces [SEP]`` with labels on each word's first piece."""
    room = max_seq_length - 2
    if room < 1:
        raise ValueError(f"max_seq_length={max_seq_length} leaves no room for text")
    label_ids = {t: i for i, t in enumerate(labels)}
    rows: list[list[tuple[int, int, list[int], int]]] = []  # windows of (s, w, ids, label)
    cut_words = 0
    for s, sentence in enumerate(sentences):
        window: list[tuple[int, int, list[int], int]] = []
        used = 0
        for w, (word, tag) in enumerate(zip(sentence.words, sentence.tags)):
            if tag not in label_ids:
                raise ValueError(f"sentence {sentence.source} word {w} ({word!r}): tag {tag!r} "
                                 f"is not in the label list {' '.join(labels)}")
            ids = word_pieces(tokenizer, word)
            if len(ids) > room:  # one word longer than a whole window: keep its head
                ids = ids[:room]
                cut_words += 1
            if used + len(ids) > room:
                rows.append(window)
                window, used = [], 0
            window.append((s, w, ids, label_ids[tag]))
            used += len(ids)
        if window:
            rows.append(window)
    if cut_words:
        log.warning("%d words have more than max_seq_length-2=%d pieces; only their first "
                    "%d pieces are kept (their label is still on the first).", cut_words,
                    room, room)
    shape = (len(rows), max_seq_length)
    out = {"input_ids": np.full(shape, tokenizer.pad_id, np.int32),
           "input_mask": np.zeros(shape, np.int32),
           "segment_ids": np.zeros(shape, np.int32),
           "label_ids": np.full(shape, IGNORED, np.int32),
           "label_weights": np.zeros(shape, np.float32),
           "sentence_index": np.full(shape, -1, np.int32),
           "word_index": np.full(shape, -1, np.int32)}
    for r, window in enumerate(rows):
        ids = [tokenizer.cls_id]
        for s, w, pieces, label in window:
            position = len(ids)
            out["label_ids"][r, position] = label
            out["label_weights"][r, position] = 1.0
            out["sentence_index"][r, position] = s
            out["word_index"][r, position] = w
            ids.extend(pieces)
        ids.append(tokenizer.sep_id)
        out["input_ids"][r, :len(ids)] = ids
        out["input_mask"][r, :len(ids)] = 1
    log.info("NER features: %d sentences -> %d windows of %d.", len(sentences), len(rows),
             max_seq_length)
    return NerFeatures(**out)


def tags_from_predictions(features: NerFeatures, predicted_ids: np.ndarray,
                          sentences: Sequence[Sentence], labels: Sequence[str]
                          ) -> list[list[str]]:
    """Per-position predicted label ids [W, L] -> one predicted tag per word of each sentence."""
    predicted_ids = np.asarray(predicted_ids)
    if predicted_ids.shape != features.input_ids.shape:
        raise ValueError(f"predictions have shape {predicted_ids.shape}, the features "
                         f"{features.input_ids.shape}: predict one label id per position.")
    rows, cols = np.nonzero(features.word_index >= 0)
    if len(rows) and features.sentence_index[rows, cols].max() >= len(sentences):
        raise ValueError(f"the features come from more than {len(sentences)} sentences: pass "
                         "the sentences they were made from.")
    chosen = predicted_ids[rows, cols]
    if len(chosen) and not 0 <= chosen.min() <= chosen.max() < len(labels):
        raise ValueError(f"predicted label ids must be in [0, {len(labels)}) on labelled "
                         f"positions, got {chosen.min()}..{chosen.max()}.")
    tags: list[list[str | None]] = [[None] * len(s.words) for s in sentences]
    for r, c in zip(rows, cols):
        s, w = features.sentence_index[r, c], features.word_index[r, c]
        tags[s][w] = labels[predicted_ids[r, c]]
    for s, sentence_tags in enumerate(tags):
        if None in sentence_tags:
            raise ValueError(f"sentence {sentences[s].source} has words in no window: "
                             "pass the sentences the features were made from.")
    return tags  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# Writing predictions
# --------------------------------------------------------------------------------------------
def _column(text: str) -> str:
    """A word as one whitespace-free column (conlleval splits lines on whitespace)."""
    return "_".join(text.split()) or "_"


def write_conll_predictions(path: str, sentences: Sequence[Sentence],
                            predicted_tags: Sequence[Sequence[str]]) -> None:
    """Writes conlleval's input: ``word gold pred`` per line, a blank line after each sentence.

    Whitespace inside a word (never in the CoNLL files, possible in other data) becomes '_'.
    """
    if len(sentences) != len(predicted_tags):
        raise ValueError(f"{len(sentences)} sentences but {len(predicted_tags)} predictions.")
    out = []
    for sentence, predicted in zip(sentences, predicted_tags):
        if len(predicted) != len(sentence.words):
            raise ValueError(f"sentence {sentence.source} has {len(sentence.words)} words but "
                             f"{len(predicted)} predicted tags.")
        for word, gold, pred in zip(sentence.words, sentence.tags, predicted):
            out.append(f"{_column(word)} {gold} {pred}\n")
        out.append("\n")
    with tf.io.gfile.GFile(path, "w") as f:
        f.write("".join(out))
