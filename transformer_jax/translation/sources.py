"""Raw sentence pairs: TFDS, local parallel files, or the built-in demo corpus; the split a
config names (``raw_pairs``), and the shared vocabulary trained from its training pairs.

Every source returns a `tf.data.Dataset` of `{"source": tf.string, "target": tf.string}` in a
fixed order (no shuffling here: the pipeline shards by host first, then shuffles).
"""
from __future__ import annotations

import os

import ml_collections
import tensorflow as tf
import tensorflow_datasets as tfds

from transformer_jax import textfiles
from transformer_jax.translation.tokenizer import Tokenizer, load_or_train_tokenizer

SOURCE = "source"
TARGET = "target"
SPLIT_KEYS = {"train": "train_split", "eval": "eval_split", "test": "test_split"}


def tfds_pairs(
    name: str,
    split: str,
    source_lang: str,
    target_lang: str,
    data_dir: str | None = None,
) -> tf.data.Dataset:
    """Pairs from a TFDS translation dataset, e.g. ('wmt14_translate/de-en', 'train', 'en', 'de').

    TFDS keys translation features by language code, so either direction works.
    """
    available = _tfds_languages(name, data_dir)
    for lang in (source_lang, target_lang):
        if lang not in available:
            raise ValueError(
                f"language {lang!r} is not a feature of {name}: choose from {sorted(available)}."
            )
    ds = tfds.load(name, split=split, data_dir=data_dir, as_supervised=False, shuffle_files=False)
    return ds.map(
        lambda example: {SOURCE: example[source_lang], TARGET: example[target_lang]},
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def _tfds_languages(name: str, data_dir: str | None) -> list[str]:
    """Language codes a TFDS dataset offers, read from its metadata (no data is loaded)."""
    features = tfds.builder(name, data_dir=data_dir).info.features
    if isinstance(features, tfds.features.Translation):
        return list(features.languages)
    return list(features.keys())


def parallel_text_pairs(source_path: str, target_path: str) -> tf.data.Dataset:
    """Pairs from two line-aligned UTF-8 files (line i of one translates line i of the other)."""
    sources = _read_lines(source_path)
    targets = _read_lines(target_path)
    if len(sources) != len(targets):
        raise ValueError(
            f"misaligned parallel files: {source_path} has {len(sources)} lines, "
            f"{target_path} has {len(targets)} lines."
        )
    return _pairs_dataset(sources, targets)


def tsv_pairs(path: str) -> tf.data.Dataset:
    """Pairs from one UTF-8 file with `source<TAB>target` on each line."""
    sources, targets = [], []
    for line_number, line in enumerate(_read_lines(path), start=1):
        fields = line.split("\t")
        if len(fields) != 2:
            raise ValueError(
                f"{path} line {line_number} has {len(fields) - 1} tabs, expected exactly one "
                "(source<TAB>target)."
            )
        sources.append(fields[0])
        targets.append(fields[1])
    return _pairs_dataset(sources, targets)


def demo_pairs(split: str) -> tf.data.Dataset:
    """Pairs from the built-in synthetic corpus: trains in minutes, needs no download."""
    # Imported here so the real-data paths do not depend on the demo module.
    from transformer_jax.translation import demo_corpus

    corpus = demo_corpus.generate(seed=0)
    if split not in corpus:
        raise ValueError(f"unknown demo split {split!r}: choose from {sorted(corpus)}.")
    sources = [source for source, _ in corpus[split]]
    targets = [target for _, target in corpus[split]]
    return _pairs_dataset(sources, targets)


def _read_lines(path: str) -> list[str]:
    """All lines of a UTF-8 text file, checked up front so errors name the file."""
    text = textfiles.read_utf8(path, "parallel text file")
    if not text.strip():
        raise ValueError(f"{path} is empty: it needs one sentence per line.")
    return textfiles.split_lines(text)


def _pairs_dataset(sources: list[str], targets: list[str]) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices({SOURCE: sources, TARGET: targets})


def raw_pairs(data: ml_collections.ConfigDict, which: str) -> tf.data.Dataset:
    """The raw sentence pairs of the train / eval / test split named in ``config.data``."""
    if data.source == "demo":
        return demo_pairs(data[SPLIT_KEYS[which]])
    if data.source == "tfds":
        return tfds_pairs(data.tfds_name, data[SPLIT_KEYS[which]], data.source_lang,
                          data.target_lang, data.data_dir or None)
    if data.source == "files":
        tsv = data.get(f"{which}_tsv")
        if tsv:
            return tsv_pairs(tsv)
        src, tgt = data.get(f"{which}_source"), data.get(f"{which}_target")
        if not (src and tgt):
            raise ValueError(f"data.source='files' needs data.{which}_source and "
                             f"data.{which}_target (or data.{which}_tsv)")
        return parallel_text_pairs(src, tgt)
    raise ValueError(f"unknown data.source {data.source!r}; use 'demo', 'tfds' or 'files'")


def _sentences_for_vocab(data: ml_collections.ConfigDict):
    """Both sides of the training pairs: the vocabulary is shared (paper, section 5.1)."""
    for pair in raw_pairs(data, "train").as_numpy_iterator():
        yield pair[SOURCE].decode("utf-8")
        yield pair[TARGET].decode("utf-8")


def load_tokenizer(data: ml_collections.ConfigDict, workdir: str) -> Tokenizer:
    """The given vocab, or the workdir's, trained from the training data if absent."""
    path = data.vocab_path or os.path.join(workdir, "vocab.model")
    if data.vocab_path:
        return Tokenizer.from_file(path)
    checkpoints = os.path.join(workdir, "checkpoints")
    if not tf.io.gfile.exists(path) and tf.io.gfile.exists(checkpoints) and (
            tf.io.gfile.listdir(checkpoints)):
        # A fresh vocab would not match the checkpoint's ids; never write one beside it.
        raise FileNotFoundError(
            f"workdir {workdir} has checkpoints but no vocab.model: put the run's vocab back "
            "(or set data.vocab_path to it), or use a new --workdir")
    tf.io.gfile.makedirs(workdir)
    return load_or_train_tokenizer(path, lambda: _sentences_for_vocab(data), data.vocab_size)
