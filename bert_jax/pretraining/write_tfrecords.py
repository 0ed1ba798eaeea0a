"""Offline: a large corpus -> sharded TFRecords of sentence pairs, for data.source=tfrecords.

  python -m bert_jax.pretraining.write_tfrecords --input_files='wiki/*.txt' \
      --vocab_file=vocab.txt --output_prefix=gs://B/pairs/train --max_seq_length=128 \
      --dupe_factor=10 --num_shards=256

Like the original ``create_pretraining_data.py`` it draws ``dupe_factor`` different sets of
pairs from the documents (one epoch of ``pairs.epoch_pairs`` each). Unlike it, the records
hold *unmasked* pairs: masking stays in the training graph, so it is still fresh every
time a pair is read. Each shard is written under a temporary name and renamed when
complete; ``<prefix>.vocab.txt`` then records the vocab they were tokenized with, which
training compares with its own. Training reads them with ``--config.data.source=tfrecords
--config.data.input_files='<prefix>-*.tfrecord'``.
"""

import logging
import sys

from absl import app, flags

from transformer_jax import runtime

FLAGS = flags.FLAGS
flags.DEFINE_string("input_files", None, "Corpus patterns, comma-separated: one sentence per "
                    "line, a blank line between documents.")
flags.DEFINE_string("vocab_file", None, "vocab.txt to tokenize with.")
flags.DEFINE_bool("do_lower_case", True, "Lower-case and strip accents (uncased models).")
flags.DEFINE_string("output_prefix", None, "Shards are <prefix>-NNNNN-of-NNNNN.tfrecord.")
flags.DEFINE_integer("num_shards", 16, "Number of output files (>= number of hosts).")
flags.DEFINE_integer("max_seq_length", 128, "Tokens per pair, [CLS] and [SEP]s included.")
flags.DEFINE_float("short_seq_prob", 0.1, "Probability of a shorter target length.")
flags.DEFINE_integer("dupe_factor", 10, "Different draws of pairs from the documents.")
flags.DEFINE_integer("seed", 12345, "Seed of the pair draws.")
flags.mark_flags_as_required(["input_files", "vocab_file", "output_prefix"])

log = logging.getLogger("bert_jax.pretraining.write_tfrecords")


def write(input_files: str, vocab_file: str, output_prefix: str, *, num_shards: int = 16,
          max_seq_length: int = 128, short_seq_prob: float = 0.1, dupe_factor: int = 10,
          seed: int = 12345, do_lower_case: bool = True) -> list[str]:
    """Writes the shards; returns their paths."""
    from bert_jax.pretraining import corpus, pairs, pipeline
    from bert_jax.tokenization import FullTokenizer
    from bert_jax.wordpiece_vocab import write_vocab

    if num_shards < 1 or dupe_factor < 1:
        raise ValueError("num_shards and dupe_factor must be >= 1")
    tokenizer = FullTokenizer(vocab_file, do_lower_case)
    documents = corpus.read_document_files(input_files)
    ids = pipeline.tokenize_documents([d.sentences for d in documents], tokenizer)
    rules = pairs.PairRules(max_seq_length, short_seq_prob)
    special = pairs.SpecialIds(cls=tokenizer.cls_id, sep=tokenizer.sep_id)
    examples = (example for epoch in range(dupe_factor)
                for example in pairs.epoch_pairs(ids, rules, special, seed, epoch))
    paths = pipeline.pairs_to_tfrecords(examples, output_prefix, num_shards)
    # After the shards: an existing shard set of this prefix made pairs_to_tfrecords refuse
    # before this could overwrite its vocab record. From the tokens in memory, written to a
    # temp file and renamed: vocab_file may be that record itself, which a copy would empty.
    write_vocab(output_prefix + pipeline.VOCAB_SUFFIX, tokenizer.ids_to_tokens)
    log.info("wrote %d shards from %d documents: %s ... %s", len(paths), len(ids), paths[0],
             paths[-1])
    return paths


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    runtime.setup_host(("bert_jax",))
    import tensorflow as tf  # after setup_host: the malloc tuning comes first

    try:
        write(FLAGS.input_files, FLAGS.vocab_file, FLAGS.output_prefix,
              num_shards=FLAGS.num_shards, max_seq_length=FLAGS.max_seq_length,
              short_seq_prob=FLAGS.short_seq_prob, dupe_factor=FLAGS.dupe_factor,
              seed=FLAGS.seed, do_lower_case=FLAGS.do_lower_case)
    except (FileNotFoundError, FileExistsError, ValueError, tf.errors.OpError) as error:
        # tf.errors.OpError: gfile's (a gs:// bucket that is not there, no permission).
        sys.exit(f"error: {runtime.last_line(error)}")


if __name__ == "__main__":
    app.run(main, flags_parser=runtime.parse_flags)
