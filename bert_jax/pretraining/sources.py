"""Where pretraining text and its vocabulary come from: documents of ``data.source`` and
the WordPiece tokenizer (a given vocab file, else the workdir's, trained from the corpus
when absent). Kept apart from ``task`` because they need TensorFlow (tf.io.gfile, TFDS)."""

import logging
import os

import jax
import ml_collections
import tensorflow as tf

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


def check_tfrecord_patterns(data: ml_collections.ConfigDict) -> None:
    """At start, not at the first eval thousands of steps in: both shard sets must exist."""
    if not data.eval_input_files:
        raise ValueError("data.source='tfrecords' needs data.eval_input_files: held-out pair "
                         "shards, written by bert_jax.pretraining.write_tfrecords from "
                         "documents kept out of training")
    for patterns in (data.input_files, data.eval_input_files):
        corpus.expand_patterns(patterns, "TFRecord", pipeline.TFRECORD_HINT)


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
