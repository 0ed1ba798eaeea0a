"""tf.data: documents or TFRecords of sentence pairs -> masked, padded pretraining batches.

Batch keys (B batch, L max_seq_length, P max_predictions_per_seq), int32 unless noted:

  input_ids             [B, L]  [CLS] A [SEP] B [SEP] after masking, 0-padded
  input_mask            [B, L]  1 on real tokens
  segment_ids           [B, L]  0 for [CLS] A [SEP], 1 for B [SEP]
  masked_lm_positions   [B, P]  ascending, 0-padded
  masked_lm_ids         [B, P]  original ids at those positions
  masked_lm_weights     [B, P]  float32: 1 for real predictions, 0 for padding
  next_sentence_labels  [B]     0 IsNext, 1 NotNext (the original's convention)
  next_sentence_weights [B]     float32: 1, or 0 on the rows that pad the last eval batch

Pairs come from ``pairs.py`` (Python, fresh each epoch) or from TFRecords written by
``write_tfrecords`` (``pairs_to_tfrecords``); either way masking runs in the graph
(``masking.py``), so masks are new every epoch.
"""

import concurrent.futures
import dataclasses
import itertools
import math
import os
import re
from typing import Iterator, Sequence

import numpy as np
import tensorflow as tf

from bert_jax.pretraining import corpus, masking, pairs
from bert_jax.tokenization import FullTokenizer

Batch = dict[str, np.ndarray]
# Ends the error for a TFRecord pattern that matches nothing.
TFRECORD_HINT = " (write them with python -m bert_jax.pretraining.write_tfrecords)"
# Shard names: <prefix>-00003-of-00016.tfrecord; the vocab they were tokenized with sits
# beside them as <prefix>.vocab.txt (outside the '<prefix>-*' glob training reads).
_SHARD_SUFFIX = re.compile(r"-\d{5,}-of-\d{5,}\.tfrecord$")
VOCAB_SUFFIX = ".vocab.txt"
# What each record of a shard holds (int64 lists), as pairs.epoch_pairs yields it.
PAIR_KEYS = ("input_ids", "segment_ids", "next_sentence_labels")


def shard_prefix(path: str) -> str | None:
    """'<prefix>-00003-of-00016.tfrecord' -> '<prefix>'; None for another name."""
    match = _SHARD_SUFFIX.search(path)
    return path[:match.start()] if match else None


@dataclasses.dataclass(frozen=True)
class ExampleSpec:
    """What the model sees: pair rules, masking rules, and the vocabulary's special ids."""

    pair_rules: pairs.PairRules
    masking_rules: masking.MaskingRules
    vocab: tuple[str, ...]
    cls_id: int
    sep_id: int
    pad_id: int
    mask_id: int

    @classmethod
    def create(cls, tokenizer: FullTokenizer, pair_rules: pairs.PairRules,
               masking_rules: masking.MaskingRules) -> "ExampleSpec":
        masking_rules.check(pair_rules.max_seq_length)
        return cls(pair_rules, masking_rules, tuple(tokenizer.ids_to_tokens), tokenizer.cls_id,
                   tokenizer.sep_id, tokenizer.pad_id, tokenizer.mask_id)

    @property
    def max_seq_length(self) -> int:
        return self.pair_rules.max_seq_length

    @property
    def max_predictions(self) -> int:
        return self.masking_rules.max_predictions_per_seq

    @property
    def special(self) -> pairs.SpecialIds:
        return pairs.SpecialIds(cls=self.cls_id, sep=self.sep_id)


# --------------------------------------------------------------------------------------------
# Documents -> ids
# --------------------------------------------------------------------------------------------
def tokenize_documents(documents: Sequence[Sequence[str]], tokenizer: FullTokenizer,
                       batch_size: int = 4096) -> list[list[np.ndarray]]:
    """Sentences -> word-piece ids with the in-graph tokenizer (ids equal the Python
    tokenizer's); sentences that tokenize to nothing and then-empty documents are dropped."""
    flat = [sentence for document in documents for sentence in document]
    ids: list[np.ndarray] = []
    for start in range(0, len(flat), batch_size):
        ragged = tokenizer.tf_encode(flat[start:start + batch_size])
        ids.extend(np.asarray(row, np.int32) for row in ragged.numpy())
    tokenized, offset = [], 0
    for document in documents:
        sentences = [s for s in ids[offset:offset + len(document)] if s.size]
        offset += len(document)
        if sentences:
            tokenized.append(sentences)
    return tokenized


# --------------------------------------------------------------------------------------------
# Pairs as datasets
# --------------------------------------------------------------------------------------------
def pairs_as_dataset(examples: list[dict[str, np.ndarray]],
                     max_seq_length: int) -> tf.data.Dataset:
    """A finite dataset of pairs held in memory (padded into one [N, L] array, then sliced
    back), not ``from_generator``: generator datasets can hang interpreter shutdown while an
    iterator is alive. Corpora too large to hold an epoch of pairs in memory go through
    ``pairs_to_tfrecords`` instead."""
    if not examples:
        raise ValueError("the corpus yields no sentence pairs: documents need at least one "
                         "sentence each and there must be at least 2 documents")
    lengths = np.asarray([e["input_ids"].size for e in examples], np.int32)
    if lengths.max() > max_seq_length:
        raise ValueError(f"a pair has {lengths.max()} tokens, more than max_seq_length="
                         f"{max_seq_length}")
    padded = {key: np.zeros((len(examples), max_seq_length), np.int32)
              for key in ("input_ids", "segment_ids")}
    for row, example in enumerate(examples):
        for key in padded:
            padded[key][row, :lengths[row]] = example[key]
    labels = np.asarray([e["next_sentence_labels"] for e in examples], np.int32)
    ds = tf.data.Dataset.from_tensor_slices((padded, lengths, labels))
    return ds.map(lambda rows, n, label: {"input_ids": rows["input_ids"][:n],
                                          "segment_ids": rows["segment_ids"][:n],
                                          "next_sentence_labels": label})


def epoch_pair_dataset(documents: list[list[np.ndarray]], spec: ExampleSpec, seed: int,
                       epoch: int) -> tf.data.Dataset:
    """The pairs of one epoch (fresh pairs every epoch, a pure function of seed and epoch)."""
    return pairs_as_dataset(
        pairs.epoch_pairs(documents, spec.pair_rules, spec.special, seed, epoch),
        spec.max_seq_length)


def _pair_feature(values: np.ndarray) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=np.asarray(values).ravel()))


def pairs_to_tfrecords(examples: Iterator[dict[str, np.ndarray]], output_prefix: str,
                       num_shards: int) -> list[str]:
    """Writes unmasked pairs round-robin into ``num_shards`` TFRecord files
    ``<prefix>-00000-of-0000N.tfrecord``; returns their paths. Files are written under a
    temporary name and renamed when complete, so a crash never leaves a partial shard, and
    an error (a corpus that yields no pairs, say) leaves no file behind."""
    # Any shard set of this prefix, whatever its shard count: readers glob '<prefix>-*', so
    # a second set beside the first would be read as one dataset with every pair twice.
    existing = tf.io.gfile.glob(f"{output_prefix}-*-of-*.tfrecord")
    if existing:
        raise FileExistsError(f"{sorted(existing)[0]} exists ({len(existing)} shard(s) with "
                              "this prefix): choose another output prefix or delete them")
    directory = os.path.dirname(output_prefix)
    if directory:  # as training programs create their workdir; gfile also makes gs:// paths
        tf.io.gfile.makedirs(directory)
    paths = [f"{output_prefix}-{i:05d}-of-{num_shards:05d}.tfrecord" for i in range(num_shards)]
    try:
        count = _write_round_robin(examples, [path + ".partial" for path in paths])
        if count == 0:
            raise ValueError("no sentence pairs to write: the corpus yields no pairs")
    except BaseException:
        for path in paths:
            if tf.io.gfile.exists(path + ".partial"):
                tf.io.gfile.remove(path + ".partial")
        raise
    for path in paths:
        tf.io.gfile.rename(path + ".partial", path)
    return paths


def _write_round_robin(examples: Iterator[dict[str, np.ndarray]], paths: list[str]) -> int:
    """Example i goes to ``paths[i % len(paths)]``; returns the number written."""
    writers = [tf.io.TFRecordWriter(path) for path in paths]
    count = 0
    try:
        for count, example in enumerate(examples, start=1):
            features = {key: _pair_feature(value) for key, value in example.items()}
            record = tf.train.Example(features=tf.train.Features(feature=features))
            writers[(count - 1) % len(writers)].write(record.SerializeToString())
    finally:
        for writer in writers:
            writer.close()
    return count


def tfrecord_pair_dataset(patterns: str, process_index: int, process_count: int,
                          seed: int | None) -> tf.data.Dataset:
    """Pairs from TFRecords; files are split among hosts (records, if fewer files than
    hosts). ``seed`` shuffles the file order each epoch; None keeps it (evaluation)."""
    files = corpus.expand_patterns(
        patterns, "TFRecord", TFRECORD_HINT)
    if len(files) >= process_count:
        files, record_shard = files[process_index::process_count], False
    else:
        record_shard = True
    ds = tf.data.Dataset.from_tensor_slices(files)
    if seed is not None:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = tf.data.TFRecordDataset(ds)
    if record_shard:
        ds = ds.shard(process_count, process_index)
    features = {"input_ids": tf.io.VarLenFeature(tf.int64),
                "segment_ids": tf.io.VarLenFeature(tf.int64),
                "next_sentence_labels": tf.io.FixedLenFeature([1], tf.int64)}

    def parse(record):
        example = tf.io.parse_single_example(record, features)
        return {"input_ids": tf.cast(tf.sparse.to_dense(example["input_ids"]), tf.int32),
                "segment_ids": tf.cast(tf.sparse.to_dense(example["segment_ids"]), tf.int32),
                "next_sentence_labels": tf.cast(example["next_sentence_labels"][0], tf.int32)}

    return ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE)


# --------------------------------------------------------------------------------------------
# Masking, padding, batching
# --------------------------------------------------------------------------------------------
def _mask_and_pad(spec: ExampleSpec, seed: int, process_index: int, process_count: int,
                  key_offset: int = 0):
    """The map function: (local index, pair) -> one padded, masked example."""
    special_ids = tf.constant([spec.cls_id, spec.sep_id, spec.pad_id], tf.int32)
    is_continuation = masking.continuation_table(list(spec.vocab))
    length, predictions = spec.max_seq_length, spec.max_predictions

    def fn(index, pair):
        # A key unique across hosts and epochs: the example's place in the global stream.
        key = key_offset + index * process_count + process_index
        masked = masking.mask_example(
            pair["input_ids"], seed=seed, key=key, rules=spec.masking_rules,
            special_ids=special_ids, mask_id=spec.mask_id, vocab_size=len(spec.vocab),
            is_continuation=is_continuation)
        n = tf.size(pair["input_ids"])
        k = tf.size(masked["masked_lm_positions"])
        pad = lambda x, size: tf.pad(x, [[0, size - tf.size(x)]])  # noqa: E731
        example = {
            "input_ids": pad(masked["input_ids"], length),
            "input_mask": pad(tf.ones([n], tf.int32), length),
            "segment_ids": pad(pair["segment_ids"], length),
            "masked_lm_positions": pad(masked["masked_lm_positions"], predictions),
            "masked_lm_ids": pad(masked["masked_lm_ids"], predictions),
            "masked_lm_weights": pad(tf.ones([k], tf.float32), predictions),
            "next_sentence_labels": pair["next_sentence_labels"],
            "next_sentence_weights": tf.constant(1.0, tf.float32),
        }
        shapes = {"next_sentence_labels": [], "next_sentence_weights": []}
        return {key: tf.ensure_shape(value, shapes.get(
            key, [predictions] if key.startswith("masked") else [length]))
            for key, value in example.items()}

    return fn


def _check_fits(ds: tf.data.Dataset, spec: ExampleSpec) -> tf.data.Dataset:
    """Pairs written offline must fit this run: its length, and its vocab (ids past it would
    read no embedding, and show up only later as a NaN loss)."""
    def check(pair):
        tf.debugging.assert_less_equal(
            tf.size(pair["input_ids"]), spec.max_seq_length,
            message="a TFRecord pair is longer than data.max_seq_length: it was written for "
                    "a longer max_seq_length; rewrite the TFRecords or raise max_seq_length")
        tf.debugging.assert_less(
            pair["input_ids"], len(spec.vocab),
            message=f"a TFRecord pair holds a token id past the {len(spec.vocab)} tokens of "
                    "the vocab: it was written with another vocab; set data.vocab_file to "
                    "that one or rewrite the TFRecords")
        return pair
    return ds.map(check)


def _deterministic(ds: tf.data.Dataset) -> tf.data.Dataset:
    options = tf.data.Options()
    options.deterministic = True  # same seed -> same batches, even with parallel maps
    return ds.with_options(options)


def _batches(ds: tf.data.Dataset, spec: ExampleSpec, batch_size_per_host: int, seed: int,
             process_index: int, process_count: int, key_offset: int = 0) -> tf.data.Dataset:
    ds = ds.enumerate().map(
        _mask_and_pad(spec, seed, process_index, process_count, key_offset),
        num_parallel_calls=tf.data.AUTOTUNE)
    return _deterministic(ds.batch(batch_size_per_host, drop_remainder=True))


def train_batches(documents: list[list[np.ndarray]], spec: ExampleSpec, *,
                  batch_size_per_host: int, seed: int, process_index: int, process_count: int,
                  start_batch: int = 0) -> Iterator[Batch]:
    """Endless, deterministic per-host batches from in-memory documents, fresh pairs and
    masks every epoch; ``start_batch`` skips that many global batches. Each epoch's pairs
    are shuffled in ``pairs.epoch_pairs`` and split among hosts by record; the remainder
    short of a full global batch is dropped.

    Pair g of an epoch goes to host g % P and gets the masking key g, so global batch b
    holds pairs [b*B, (b+1)*B) of the epoch for every process count P (B = the global
    batch): a run resumed on another number of hosts continues at the same data position
    with the same masks, as long as the global batch size is unchanged."""
    return _overlap_epochs(_epochs(documents, spec, batch_size_per_host, seed, process_index,
                                   process_count, start_batch))


def _epochs(documents: list[list[np.ndarray]], spec: ExampleSpec, batch_size_per_host: int,
            seed: int, process_index: int, process_count: int,
            start_batch: int) -> Iterator[Iterator[Batch]]:
    """The batches of each epoch in turn, as one iterator per epoch (see train_batches)."""
    epoch = 0
    while True:
        examples = pairs.epoch_pairs(documents, spec.pair_rules, spec.special, seed, epoch)
        # From the global count, so every host yields the same number of batches (a host
        # with one pair fewer must not stop a batch early and leave the others waiting).
        num_batches = len(examples) // (batch_size_per_host * process_count)
        if num_batches == 0:
            raise ValueError(f"an epoch of the corpus has fewer pairs per host than "
                             f"batch_size_per_host={batch_size_per_host}: add documents or "
                             "lower batch_size")
        if start_batch >= num_batches:  # resuming past this epoch: skip it whole
            start_batch -= num_batches
        else:
            ds = pairs_as_dataset(examples, spec.max_seq_length).shard(process_count,
                                                                       process_index)
            # Keys: epoch in the high bits, so every epoch draws new masks.
            ds = _batches(ds, spec, batch_size_per_host, seed, process_index, process_count,
                          key_offset=epoch << 32)
            ds = ds.take(num_batches).skip(start_batch)
            yield ds.prefetch(tf.data.AUTOTUNE).as_numpy_iterator()
            start_batch = 0
        epoch += 1


def _overlap_epochs(epochs: Iterator[Iterator[Batch]]) -> Iterator[Batch]:
    """Every batch of each epoch in turn. While one epoch is read, a background thread builds
    the next: its pairs (Python), its tf.data pipeline and its first batch. Built on demand,
    each epoch boundary stalled training for ~0.6 s on the demo corpus (2-core CPU, ~105
    steps an epoch), which showed as 'data wait' of 25-35% in every other log interval.
    Each epoch is a pure function of (seed, epoch), so the order of work changes nothing."""
    def start_next() -> Iterator[Batch]:
        epoch = next(epochs)
        return itertools.chain([next(epoch)], epoch)  # an epoch holds >= 1 batch

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="next_epoch") as pool:
        upcoming = pool.submit(start_next)
        while True:
            current = upcoming.result()  # re-raises what building it raised, one line
            upcoming = pool.submit(start_next)
            yield from current


def tfrecord_train_batches(pairs_ds: tf.data.Dataset, spec: ExampleSpec, *,
                           batch_size_per_host: int, seed: int, shuffle_buffer: int,
                           process_index: int, process_count: int,
                           start_batch: int = 0) -> Iterator[Batch]:
    """Endless per-host batches from this host's TFRecord pairs (``tfrecord_pair_dataset``).
    ``start_batch`` replays and skips that many batches (time proportional to it)."""
    ds = _check_fits(pairs_ds.repeat(), spec)
    if shuffle_buffer > 1:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    ds = _batches(ds, spec, batch_size_per_host, seed, process_index, process_count)
    return ds.skip(start_batch).prefetch(tf.data.AUTOTUNE).as_numpy_iterator()


def eval_batches(pairs_ds: tf.data.Dataset, spec: ExampleSpec, *, batch_size_per_host: int,
                 seed: int, process_index: int, process_count: int) -> list[Batch]:
    """The held-out pairs (the global stream, split here by record) masked once with a
    fixed seed; padded so every host runs the same number of full batches (a collective
    eval step would otherwise hang); padding rows carry zero weights."""
    total = int(pairs_ds.reduce(np.int64(0), lambda count, _: count + 1))
    if total == 0:
        raise ValueError("the held-out set yields no sentence pairs: add held-out documents")
    num_batches = math.ceil(math.ceil(total / process_count) / batch_size_per_host)
    ds = _check_fits(pairs_ds.shard(process_count, process_index), spec)
    ds = ds.enumerate().map(_mask_and_pad(spec, seed, process_index, process_count))
    examples = list(_deterministic(ds).as_numpy_iterator())
    if not examples:  # fewer pairs than hosts: this host only pads
        examples = [{k: np.zeros(v.shape, v.dtype.as_numpy_dtype)
                     for k, v in ds.element_spec.items()}]
    zero = {key: np.zeros_like(value) for key, value in examples[0].items()}
    examples += [zero] * (num_batches * batch_size_per_host - len(examples))
    return [{key: np.stack([e[key] for e in examples[i:i + batch_size_per_host]])
             for key in zero} for i in range(0, len(examples), batch_size_per_host)]
