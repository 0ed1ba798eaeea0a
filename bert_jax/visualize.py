"""BERT's self-attention, drawn: one PNG per encoder layer, a grid of its heads.

  python -m bert_jax.visualize --init_checkpoint=/tmp/bert \
      --text="The cat sat on the mat. ||| It was tired." --output_dir=/tmp/bert_attention

``--init_checkpoint`` is any layout ``bert_jax.interop.load_pretrained`` reads (Google's TF
BERT, a Hugging Face directory, a training workdir). ``--text`` is a sentence, or a pair
``A ||| B`` read as ``[CLS] A [SEP] B [SEP]``, tokenized and truncated as in
``extract_features``. In each heatmap rows are queries and columns keys, both labelled with
the WordPiece tokens; each row is a softmax over the keys (sums to 1). The figures are
``layer_<i>.png`` in ``--output_dir`` (a local directory: matplotlib writes the files);
existing ones are replaced only with ``--overwrite``. Errors are one
``error: ...`` line on stderr with exit code 2.

Legend: T real tokens of the input, N heads.
"""

import dataclasses
import logging
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow as tf
from absl import app, flags

from bert_jax import extract_features as features_lib
from bert_jax import interop
from bert_jax.model import BertConfig, BertEncoder
from bert_jax.tokenization import FullTokenizer
from transformer_jax import runtime
from transformer_jax.visualize import plot_attention, stack_layers

log = logging.getLogger("bert_jax.visualize")  # not __name__: "__main__" under -m

FLAGS = flags.FLAGS


def attention_maps(config: BertConfig, params: dict, tokenizer: FullTokenizer, text: str,
                   max_seq_length: int = 128) -> tuple[np.ndarray, list[str]]:
    """(float32 [layers, N, T, T] attention weights, the T tokens) of one input, unpadded."""
    feature, = features_lib.convert_examples([features_lib.split_pair(text)], max_seq_length,
                                             tokenizer)
    length = len(feature.tokens)
    ids, segments = (jnp.asarray([getattr(feature, name)[:length]], jnp.int32)
                     for name in ("input_ids", "segment_ids"))  # [1, T]: no padding
    # Only the einsum core materialises (and sows) the weights; the parameters are the same.
    model = BertEncoder(dataclasses.replace(config, attention_implementation="einsum"))
    forward = jax.jit(lambda p, i, s: model.apply({"params": p}, i, jnp.ones_like(i), s,
                                                  mutable=["intermediates"])[1])
    tree = forward(params, ids, segments)["intermediates"]
    weights = stack_layers(tree, "encoder", "self_attention", config.num_layers)
    return weights, feature.tokens  # [layers, N, T, T], T tokens


def visualize(init_checkpoint: str, text: str, output_dir: str, max_seq_length: int = 128,
              vocab_file: str | None = None, do_lower_case: bool = True,
              overwrite: bool = False) -> list[str]:
    """The whole CLI as a function: writes ``layer_<i>.png`` per layer, returns the paths."""
    if not text.strip():
        raise ValueError("--text is empty: pass a sentence, or a pair 'A ||| B'")
    pretrained = interop.load_pretrained(init_checkpoint)
    config = pretrained.config
    features_lib.check_max_seq_length(max_seq_length, config)
    paths = [os.path.join(output_dir, f"layer_{i}.png") for i in range(config.num_layers)]
    existing = [path for path in paths if os.path.exists(path)]
    if existing and not overwrite:
        raise FileExistsError(f"{output_dir} already holds {os.path.basename(existing[0])}: "
                              "pass --overwrite to replace the figures, or choose another "
                              "--output_dir")
    tokenizer = features_lib.checkpoint_tokenizer(pretrained, init_checkpoint, vocab_file,
                                                  do_lower_case)
    weights, tokens = attention_maps(config, features_lib.encoder_params(pretrained),
                                     tokenizer, text, max_seq_length)
    os.makedirs(output_dir, exist_ok=True)
    for layer, path in enumerate(paths):
        plot_attention(path, weights[layer], tokens, tokens,
                       f"BERT self-attention, layer {layer} of {config.num_layers} "
                       "(rows: queries, columns: keys)")
    return paths


def define_flags() -> None:
    """Defined only when run as a program, so importing this module registers nothing."""
    features_lib.define_checkpoint_flags()
    flags.DEFINE_string("text", None, "A sentence, or a pair 'A ||| B'.")
    flags.DEFINE_string("output_dir", None, "Where the layer_<i>.png figures go (local).")
    flags.DEFINE_bool("overwrite", False, "Replace figures already in --output_dir.")
    flags.mark_flags_as_required(["init_checkpoint", "text", "output_dir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    runtime.setup_host(("bert_jax",))
    try:
        paths = visualize(FLAGS.init_checkpoint, FLAGS.text, FLAGS.output_dir,
                          FLAGS.max_seq_length, FLAGS.vocab_file, FLAGS.do_lower_case,
                          FLAGS.overwrite)
    except (FileNotFoundError, FileExistsError, ValueError, tf.errors.OpError) as error:
        sys.stderr.write(f"error: {runtime.last_line(error)}\n")
        sys.exit(2)
    log.info("wrote %d figures (one per layer) to %s", len(paths), FLAGS.output_dir)


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=runtime.parse_flags)
