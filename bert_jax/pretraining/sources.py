"""Where pretraining text and its vocabulary come from: documents of ``data.source`` and
the WordPiece tokenizer (a given vocab file, else the workdir's, trained from the corpus
when absent). Kept apart from ``task`` because they need TensorFlow (tf.io.gfile, TFDS)."""

import logging
import os

import jax
import ml_collections
import tensorflow as tf
from google.protobuf.message import DecodeError

from bert_jax.pretraining import corpus, pipeline
from bert_jax.tokenization import FullTokenizer, same_vocab
from bert_jax.wordpiece_vocab import train_vocab, write_vocab

log = logging.getLogger(__name__)


def load_documents(data: ml_collections.ConfigDict) -> tuple[list, list]:
    """(train, held-out) documents of ``data.source`` ('stdlib', 'files' or 'tfds')."""
    if data.source == "stdlib":
        return corpus.split_documents(corpus.stdlib_documents(), data.eval_fraction)
    if data.source == "files":
        documents = corpus.read_document_files(data.input_files)
        if data.eval_input_files:
            return documents, corpus.read_document_files(data.eval_input_files)
        return corpus.split_documents(documents, data.eval_fraction)
    if data.source == "tfds":
        read = lambda split: corpus.tfds_documents(  # noqa: E731
            data.tfds_name, split, data.tfds_text_key, data.data_dir or None)
        if data.tfds_eval_split:
            return read(data.tfds_train_split), read(data.tfds_eval_split)
        return corpus.split_documents(read(data.tfds_train_split), data.eval_fraction)
    raise ValueError(f"unknown data.source {data.source!r}; use 'stdlib', 'files', 'tfds' or "
                     "'tfrecords'")


def check_tfrecords(data: ml_collections.ConfigDict) -> list[list[str]]:
    """At start, not at the first eval thousands of steps in: both shard sets must exist and
    hold pairs. Returns their files (train, then held-out) for ``check_shard_vocab``."""
    if not data.eval_input_files:
        raise ValueError("data.source='tfrecords' needs data.eval_input_files: held-out pair "
                         "shards, written by bert_jax.pretraining.write_tfrecords from "
                         "documents kept out of training")
    shard_sets = [corpus.expand_patterns(patterns, "TFRecord", pipeline.TFRECORD_HINT)
                  for patterns in (data.input_files, data.eval_input_files)]
    for paths in shard_sets:
        for path in paths:
            if path.endswith(pipeline.VOCAB_SUFFIX):
                raise ValueError(f"the TFRecord patterns match {path}, the vocab of a shard "
                                 "set: narrow them to '<prefix>-*.tfrecord'")
        _check_first_record(paths)
    return shard_sets


def _check_first_record(paths: list[str]) -> None:
    """The first record of a shard set, for the mistakes that would fail only at the first
    batch (a text file, a directory), or never (the original's masked examples parse as
    pairs, and would be masked again with their padding as tokens)."""
    fix = "write pair shards with python -m bert_jax.pretraining.write_tfrecords"
    for path in paths:  # past empty shards: a small corpus leaves some without a record
        if tf.io.gfile.isdir(path):
            raise ValueError(f"{path} is a directory: give a pattern of its shard files, "
                             f"such as '{path.rstrip('/')}/<prefix>-*.tfrecord'")
        try:
            record = next(iter(tf.data.TFRecordDataset(path).take(1)), None)
        except tf.errors.DataLossError:
            raise ValueError(f"{path} is not a TFRecord file: {fix} (or read text with "
                             "data.source='files')") from None
        if record is not None:
            break
    else:
        return  # no records at all: the dataset says so when it is read
    try:
        keys = set(tf.train.Example.FromString(record.numpy()).features.feature)
    except DecodeError:
        keys = set()
    if "masked_lm_positions" in keys:
        raise ValueError(f"{path} holds masked examples (the original "
                         "create_pretraining_data.py's) but this pipeline masks in the graph "
                         f"and reads unmasked pairs: {fix}")
    missing = sorted(set(pipeline.PAIR_KEYS) - keys)
    if missing:
        raise ValueError(f"{path} holds no sentence pairs (its first record lacks "
                         f"{', '.join(missing)}): {fix}")


def check_shard_vocab(shard_sets: list[list[str]], data: ml_collections.ConfigDict,
                      workdir: str) -> None:
    """Shards tokenized with another vocab of the same size would train on scrambled ids
    without any error, so the vocab write_tfrecords kept beside them must be the run's
    (``data.vocab_file``, else the workdir's)."""
    vocab = data.vocab_file or os.path.join(workdir, "vocab.txt")
    if not tf.io.gfile.exists(vocab):
        return  # load_tokenizer says what is missing
    whose = "data.vocab_file" if data.vocab_file else "the workdir's"
    for paths in shard_sets:
        prefixes = {pipeline.shard_prefix(path) for path in paths}
        if None in prefixes:
            log.warning("TFRecords not named <prefix>-NNNNN-of-NNNNN.tfrecord, as "
                        "write_tfrecords names them: cannot check they were written with the "
                        "vocab %s", vocab)
        for prefix in sorted(prefixes - {None}):
            recorded = prefix + pipeline.VOCAB_SUFFIX
            if not tf.io.gfile.exists(recorded):
                log.warning("no %s beside the shards %s-*: cannot check they were written "
                            "with the vocab %s", recorded, prefix, vocab)
            elif not same_vocab(recorded, vocab):
                raise ValueError(
                    f"the shards {prefix}-* were written with the vocab {recorded}, not with "
                    f"{vocab} ({whose}): write them again with it, or train with "
                    f"theirs (data.vocab_file={recorded}, in a workdir that has no other)")


def load_tokenizer(data: ml_collections.ConfigDict, workdir: str, documents) -> FullTokenizer:
    """``data.vocab_file``, else the workdir's vocab.txt, trained from the corpus if absent."""
    path = os.path.join(workdir, "vocab.txt")
    if data.vocab_file:
        tokenizer = FullTokenizer(data.vocab_file, data.do_lower_case)  # checks the file
        _keep_vocab_copy(data.vocab_file, path)
        return tokenizer
    if not tf.io.gfile.exists(path):
        checkpoints = os.path.join(workdir, "checkpoints")
        if tf.io.gfile.exists(checkpoints) and tf.io.gfile.listdir(checkpoints):
            raise FileNotFoundError(
                f"workdir {workdir} has checkpoints but no vocab.txt: put the run's vocab "
                "back (or set data.vocab_file to it), or use a new --workdir")
        if documents is None:
            raise ValueError("data.source='tfrecords' needs data.vocab_file (the vocab the "
                             "TFRecords were written with)")
        log.info("training a WordPiece vocab of up to %d tokens", data.vocab_size)
        vocab = train_vocab((s for d in documents for s in d.sentences), data.vocab_size,
                            do_lower_case=data.do_lower_case,
                            learn_params={"lower_thresh": 2})
        tf.io.gfile.makedirs(workdir)
        write_vocab(path, vocab)
    return FullTokenizer(path, data.do_lower_case)


def _keep_vocab_copy(vocab_file: str, path: str) -> None:
    """A copy of the given vocab in the workdir, so the workdir alone is a usable checkpoint
    (fine-tuning's init_checkpoint reads it); a different vocab already there is an error."""
    if tf.io.gfile.exists(path):
        # Compared as token lists, as init_checkpoint's vocab is.
        if not same_vocab(path, vocab_file):
            raise ValueError(f"data.vocab_file {vocab_file} differs from {path}, the vocab "
                             "this workdir was trained with: use that one, or a new --workdir")
        return
    if jax.process_index() == 0:
        tf.io.gfile.makedirs(os.path.dirname(path))
        with tf.io.gfile.GFile(vocab_file) as f:
            vocab = f.read()
        with tf.io.gfile.GFile(path + ".tmp", "w") as f:
            f.write(vocab)
        tf.io.gfile.rename(path + ".tmp", path, overwrite=True)
