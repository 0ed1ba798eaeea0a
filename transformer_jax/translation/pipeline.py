"""tf.data pipeline: raw sentence pairs -> tokenized, packed or padded int32 numpy batches.

Every batch, packed (training) or padded (eval), has the same keys so one jitted step fits
both (B batch, S source length, L target length):

  inputs              [B, S]  source ids + EOS
  inputs_segment_ids  [B, S]  1, 2, 3, ... per packed example; 0 on padding
  inputs_positions    [B, S]  0, 1, ... restarting at each packed example; 0 on padding
  decoder_inputs      [B, L]  BOS + target ids (targets shifted right, per example)
  targets             [B, L]  target ids + EOS
  targets_segment_ids [B, L]
  targets_positions   [B, L]

Each host reads its own shard of the raw pairs (`process_index` of `process_count`).
"""
from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import tensorflow as tf

from transformer_jax.translation.sources import SOURCE, TARGET
from transformer_jax.translation.tokenizer import BOS_ID, EOS_ID, Tokenizer

Batch = dict[str, np.ndarray]

DEFAULT_PACKING_CHUNK = 256


def tokenize_pairs(
    ds: tf.data.Dataset,
    tokenizer: Tokenizer,
    max_source_length: int,
    max_target_length: int,
    long_examples: str = "drop",
) -> tf.data.Dataset:
    """{source, target} strings -> 1-D int32 {inputs, decoder_inputs, targets}.

    long_examples: 'drop' removes pairs whose inputs or targets exceed the max lengths
    (training); 'truncate' cuts them to fit, keeping the final EOS, so no eval pair is lost.
    """
    if long_examples not in ("drop", "truncate"):
        raise ValueError(f"long_examples={long_examples!r}: use 'drop' or 'truncate'.")
    # Lengths count the appended EOS (and BOS on the decoder side), so keep one slot free.
    keep_source = max_source_length - 1 if long_examples == "truncate" else None
    keep_target = max_target_length - 1 if long_examples == "truncate" else None
    tf_tokenizer = tokenizer.tf_tokenizer

    def tokenize(pair):
        source = tf_tokenizer.tokenize(pair[SOURCE])[:keep_source]
        target = tf_tokenizer.tokenize(pair[TARGET])[:keep_target]
        eos, bos = tf.constant([EOS_ID], tf.int32), tf.constant([BOS_ID], tf.int32)
        return {
            "inputs": tf.concat([source, eos], axis=0),
            "decoder_inputs": tf.concat([bos, target], axis=0),  # shifted right per example
            "targets": tf.concat([target, eos], axis=0),
        }

    def fits(example):
        return tf.logical_and(
            tf.size(example["inputs"]) <= max_source_length,
            tf.size(example["targets"]) <= max_target_length,
        )

    ds = ds.map(tokenize, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.filter(fits) if long_examples == "drop" else ds


def pad_examples(
    ds: tf.data.Dataset, max_source_length: int, max_target_length: int
) -> tf.data.Dataset:
    """Tokenized examples -> fixed-length rows holding one example each (segment id 1)."""
    max_lengths = {"inputs": max_source_length, "targets": max_target_length}

    def pad(example):
        row = {"decoder_inputs": _pad_to(example["decoder_inputs"], max_target_length)}
        for side, max_length in max_lengths.items():
            length = tf.size(example[side])
            row[side] = _pad_to(example[side], max_length)
            row[f"{side}_segment_ids"] = _pad_to(tf.ones([length], tf.int32), max_length)
            row[f"{side}_positions"] = _pad_to(tf.range(length, dtype=tf.int32), max_length)
        return row

    return ds.map(pad, num_parallel_calls=tf.data.AUTOTUNE)


def _pad_to(values: tf.Tensor, length: int) -> tf.Tensor:
    padded = tf.pad(values, [[0, length - tf.size(values)]])
    return tf.ensure_shape(padded, [length])


def pack_examples(
    ds: tf.data.Dataset,
    max_source_length: int,
    max_target_length: int,
    chunk_size: int = DEFAULT_PACKING_CHUNK,
) -> tf.data.Dataset:
    """Greedily packs whole tokenized examples into fixed-length rows.

    Hand-written because neither tf.data nor tensorflow_text packs sequence pairs. Examples
    are taken `chunk_size` at a time; within a chunk each example goes into the current row
    if both its sides fit, else it starts a new row, so an example is never split. Only the
    last row of a chunk may be left short. Every example must fit in one row (tokenize with
    `tokenize_pairs` and the same max lengths).
    """
    max_lengths = {"inputs": max_source_length, "targets": max_target_length}

    def pack_chunk(chunk):
        # chunk: {key: RaggedTensor [N, (length)]} for N <= chunk_size examples.
        source_lengths = tf.cast(chunk["inputs"].row_lengths(), tf.int32)
        target_lengths = tf.cast(chunk["targets"].row_lengths(), tf.int32)
        tf.debugging.assert_less_equal(
            source_lengths, max_source_length, message="pack_examples: inputs longer than max"
        )
        tf.debugging.assert_less_equal(
            target_lengths, max_target_length, message="pack_examples: targets longer than max"
        )
        rows, segments, source_starts, target_starts = _assign_rows(
            source_lengths, target_lengths, max_source_length, max_target_length
        )
        num_rows = rows[-1] + 1
        starts = {"inputs": source_starts, "targets": target_starts}
        packed = {}
        for side, max_length in max_lengths.items():
            layout = (rows, starts[side], segments, num_rows, max_length)
            tokens, segment_ids, positions = _scatter_into_rows(chunk[side], *layout)
            packed[side] = tokens
            packed[f"{side}_segment_ids"] = segment_ids
            packed[f"{side}_positions"] = positions
        # decoder_inputs has exactly the targets' lengths, so it shares their layout.
        target_layout = (rows, target_starts, segments, num_rows, max_target_length)
        packed["decoder_inputs"] = _scatter_into_rows(chunk["decoder_inputs"], *target_layout)[0]
        return packed

    ds = ds.ragged_batch(chunk_size)
    return ds.map(pack_chunk, num_parallel_calls=tf.data.AUTOTUNE).unbatch()


def _assign_rows(source_lengths, target_lengths, max_source_length, max_target_length):
    """Next-fit placement of N examples: [N] row, segment id, source start, target start."""

    def place(previous, lengths):
        # State per example: row, segment, source/target start, source/target end.
        row, segment, _, _, source_end, target_end = previous
        fits = tf.logical_and(
            source_end + lengths[0] <= max_source_length,
            target_end + lengths[1] <= max_target_length,
        )
        row = tf.where(fits, row, row + 1)
        segment = tf.where(fits, segment + 1, 1)
        source_start = tf.where(fits, source_end, 0)
        target_start = tf.where(fits, target_end, 0)
        return (
            row, segment, source_start, target_start,
            source_start + lengths[0], target_start + lengths[1],
        )  # fmt: skip

    # The placement of each example depends on all earlier ones, hence a sequential scan.
    zero = tf.constant(0, tf.int32)
    placements = tf.scan(
        place, tf.stack([source_lengths, target_lengths], axis=1), initializer=(zero,) * 6
    )
    return placements[:4]


def _scatter_into_rows(tokens, rows, starts, segments, num_rows, row_length):
    """Writes ragged [N, (len)] tokens at their assigned rows/offsets -> three [R, row_length]."""
    example_of_token = tokens.value_rowids()  # [T] total tokens in the chunk
    position = tf.ragged.range(tf.cast(tokens.row_lengths(), tf.int32)).flat_values  # [T]
    row = tf.gather(rows, example_of_token)
    column = tf.gather(starts, example_of_token) + position
    indices = tf.stack([row, column], axis=1)  # [T, 2]
    shape = tf.stack([num_rows, row_length])

    def scatter(values):
        return tf.ensure_shape(tf.scatter_nd(indices, values, shape), [None, row_length])

    return (
        scatter(tokens.flat_values),
        scatter(tf.gather(segments, example_of_token)),
        scatter(position),
    )


def _deterministic(ds: tf.data.Dataset) -> tf.data.Dataset:
    options = tf.data.Options()
    options.deterministic = True  # same seed -> same batches, even with parallel maps
    return ds.with_options(options)


def train_batches(
    pairs_ds: tf.data.Dataset,
    tokenizer: Tokenizer,
    *,
    batch_size_per_host: int,
    max_source_length: int,
    max_target_length: int,
    pack: bool = True,
    shuffle_seed: int,
    shuffle_buffer: int = 65_536,
    process_index: int = 0,
    process_count: int = 1,
    start_batch: int = 0,
) -> Iterator[Batch]:
    """An endless, deterministic iterator of this host's training batches.

    The raw pairs are sharded by host before shuffling, so hosts never see the same pair.
    `start_batch` skips that many batches so a resumed run continues at the same data
    position; this is exact only if process_count and batch_size_per_host are unchanged
    (another topology shards and batches the stream differently). Skipping replays the
    tokenization of the skipped batches, so it costs time proportional to `start_batch`.
    """
    ds = pairs_ds.shard(process_count, process_index)
    _check_some_pair_fits(ds, tokenizer, max_source_length, max_target_length)
    ds = ds.shuffle(shuffle_buffer, seed=shuffle_seed, reshuffle_each_iteration=True)
    ds = ds.repeat()
    ds = tokenize_pairs(ds, tokenizer, max_source_length, max_target_length, "drop")
    if pack:
        ds = pack_examples(ds, max_source_length, max_target_length)
    else:
        ds = pad_examples(ds, max_source_length, max_target_length)
    ds = ds.batch(batch_size_per_host, drop_remainder=True)
    ds = ds.skip(start_batch).prefetch(tf.data.AUTOTUNE)
    return _deterministic(ds).as_numpy_iterator()


def _check_some_pair_fits(ds: tf.data.Dataset, tokenizer: Tokenizer, max_source_length: int,
                          max_target_length: int) -> None:
    """Fails fast when the length filter drops every pair: the repeated stream would
    otherwise wait forever for a first batch. Stops at the first pair that fits."""
    fitting = tokenize_pairs(ds, tokenizer, max_source_length, max_target_length, "drop")
    if not any(True for _ in fitting.take(1)):
        raise ValueError(
            f"no training pair fits max_source_length={max_source_length} and "
            f"max_target_length={max_target_length} (EOS included): raise them in config.data")


def eval_batches(
    pairs_ds: tf.data.Dataset,
    tokenizer: Tokenizer,
    *,
    batch_size_per_host: int,
    max_source_length: int,
    max_target_length: int,
    process_index: int = 0,
    process_count: int = 1,
) -> list[Batch]:
    """One pass over this host's shard in padded (unpacked) batches; long pairs are truncated.

    Every host returns the same number of full-size batches: the last partial batch and any
    missing batches are filled with all-zero rows (weight zero), so a multi-host eval whose
    steps are collective never deadlocks. In order, the real rows correspond one to one to
    `raw_eval_pairs(pairs_ds, process_index, process_count)`; padding rows come after them.
    """
    num_pairs = _count(pairs_ds)
    if num_pairs == 0:
        raise ValueError("eval_batches got an empty dataset: check the eval split.")
    host_pairs = len(range(process_index, num_pairs, process_count))
    largest_host_pairs = math.ceil(num_pairs / process_count)
    num_batches = math.ceil(largest_host_pairs / batch_size_per_host)

    ds = pairs_ds.shard(process_count, process_index)
    ds = tokenize_pairs(ds, tokenizer, max_source_length, max_target_length, "truncate")
    ds = pad_examples(ds, max_source_length, max_target_length)
    zero_row = {key: tf.zeros(spec.shape, spec.dtype) for key, spec in ds.element_spec.items()}
    filler = tf.data.Dataset.from_tensors(zero_row).repeat(
        num_batches * batch_size_per_host - host_pairs
    )
    ds = ds.concatenate(filler).batch(batch_size_per_host, drop_remainder=True)
    return list(_deterministic(ds).as_numpy_iterator())


def raw_eval_pairs(
    pairs_ds: tf.data.Dataset, process_index: int = 0, process_count: int = 1
) -> list[tuple[str, str]]:
    """This host's (source, target) strings, in the order of its `eval_batches` rows."""
    ds = pairs_ds.shard(process_count, process_index)
    return [
        (pair[SOURCE].decode("utf-8"), pair[TARGET].decode("utf-8"))
        for pair in ds.as_numpy_iterator()
    ]


def _count(ds: tf.data.Dataset) -> int:
    """Number of elements, from metadata when tf.data knows it, else by one pass."""
    cardinality = int(ds.cardinality())
    if cardinality == tf.data.INFINITE_CARDINALITY:
        raise ValueError("eval dataset is infinite (repeated?): pass one finite pass of pairs.")
    if cardinality >= 0:
        return cardinality
    return int(ds.reduce(np.int64(0), lambda count, _: count + 1))
