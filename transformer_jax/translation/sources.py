"""Raw sentence pairs: TFDS, local parallel files, or the built-in demo corpus.

Every source returns a `tf.data.Dataset` of `{"source": tf.string, "target": tf.string}` in a
fixed order (no shuffling here: the pipeline shards by host first, then shuffles).
"""
from __future__ import annotations

import tensorflow as tf
import tensorflow_datasets as tfds

from transformer_jax import textfiles

SOURCE = "source"
TARGET = "target"


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
