"""Per-token BERT activations as JSON lines, like google-research/bert's extract_features.py.

  python -m bert_jax.extract_features --init_checkpoint=uncased_L-12_H-768_A-12 \
      --input_file=input.txt --output_file=features.jsonl --layers=-1,-2,-3,-4 \
      --max_seq_length=128

Each input line is a sentence, or a pair written ``A ||| B``. It is tokenized with the
checkpoint's ``vocab.txt`` (or ``--vocab_file``) into ``[CLS] A [SEP] (B [SEP])``, the longer
side of a pair losing its last tokens first when too long, as in the original. Each output
line is
  {"linex_index": N, "features": [{"token": "[CLS]", "layers": [{"index": -1,
   "values": [...]}, ...]}, ...]}
with one feature per real token and ``values`` (the layer's output, D floats) rounded to 6
decimals; layer -1 is the last encoder layer. ``--init_checkpoint`` is any layout
``bert_jax.interop.load_pretrained`` reads. Errors are one ``error: ...`` line on stderr
with exit code 2.
"""

import dataclasses
import json
import logging
import re
import sys
from typing import Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow as tf
from absl import app, flags

from bert_jax import interop
from bert_jax.model import BertConfig, BertEncoder
from bert_jax.tokenization import FullTokenizer, same_vocab
from transformer_jax import runtime, textfiles

log = logging.getLogger("bert_jax.extract_features")  # not __name__: "__main__" under -m

FLAGS = flags.FLAGS
_PAIR = re.compile(r"^(.*) \|\|\| (.*)$")  # the original's sentence-pair separator


@dataclasses.dataclass(frozen=True)
class InputFeatures:
    """One input line, tokenized and padded to the fixed length."""

    unique_id: int             # the line number, from 0 ("linex_index")
    tokens: list[str]          # the real tokens: [CLS] A [SEP] (B [SEP])
    input_ids: list[int]       # [max_seq_length], 0-padded
    input_mask: list[int]      # 1 for real tokens
    segment_ids: list[int]     # 0 for [CLS] A [SEP], 1 for B [SEP]


def split_pair(line: str) -> tuple[str, str | None]:
    """(text_a, text_b) of an 'A ||| B' line, else (line, None); stripped."""
    line = line.strip()
    match = _PAIR.match(line)
    return (match.group(1), match.group(2)) if match else (line, None)


def read_examples(path: str) -> list[tuple[str, str | None]]:
    """(text_a, text_b or None) per line; every line counts, a blank one too (as original)."""
    examples = []
    for line in textfiles.split_lines(textfiles.read_utf8(path, "input file")):
        examples.append(split_pair(line))
    if not examples:
        raise ValueError(f"input file {path} is empty: write one sentence, or one "
                         "'A ||| B' pair, per line")
    return examples


def truncate_seq_pair(tokens_a: list[str], tokens_b: list[str], max_length: int) -> None:
    """Pops the last token of the longer side (B on a tie) until both fit, in place."""
    while len(tokens_a) + len(tokens_b) > max_length:
        (tokens_a if len(tokens_a) > len(tokens_b) else tokens_b).pop()


def convert_examples(examples: Sequence[tuple[str, str | None]], max_seq_length: int,
                     tokenizer: FullTokenizer) -> list[InputFeatures]:
    features = []
    for unique_id, (text_a, text_b) in enumerate(examples):
        tokens_a = tokenizer.tokenize(text_a)
        tokens_b = tokenizer.tokenize(text_b) if text_b is not None else None
        if tokens_b is not None:
            truncate_seq_pair(tokens_a, tokens_b, max_seq_length - 3)  # [CLS], [SEP], [SEP]
        else:
            tokens_a = tokens_a[:max_seq_length - 2]  # [CLS], [SEP]
        tokens = ["[CLS]", *tokens_a, "[SEP]"]
        segment_ids = [0] * len(tokens)
        if tokens_b is not None:
            tokens += [*tokens_b, "[SEP]"]
            segment_ids += [1] * (len(tokens_b) + 1)
        pad = max_seq_length - len(tokens)
        features.append(InputFeatures(
            unique_id=unique_id, tokens=tokens,
            input_ids=tokenizer.convert_tokens_to_ids(tokens) + [0] * pad,
            input_mask=[1] * len(tokens) + [0] * pad, segment_ids=segment_ids + [0] * pad))
    return features


def layers_fn(config: BertConfig, layers: Sequence[int]) -> Callable:
    """jit(params, ids, mask, segments [B, L]) -> float32 [len(layers), B, L, D]."""
    model = BertEncoder(config)

    @jax.jit
    def run(params, input_ids, input_mask, segment_ids):
        _, state = model.apply({"params": params}, input_ids, input_mask, segment_ids,
                               mutable=["intermediates"])
        hidden = state["intermediates"]["encoder"]["hidden_states"]  # num_layers x [B, L, D]
        return jnp.stack([hidden[i] for i in layers]).astype(jnp.float32)  # [K, B, L, D]

    return run


def encoder_params(pretrained: interop.Pretrained) -> dict:
    """The encoder's params; a missing pooler (unused here) is zero-filled."""
    config = pretrained.config
    ids = jnp.zeros((1, 2), jnp.int32)
    template = jax.eval_shape(lambda: BertEncoder(config).init(jax.random.key(0), ids))
    params, missing = interop.restore_into(pretrained, template["params"])
    if missing:
        log.info("no %s in %s; zero-filled (features do not use the pooler)",
                 ", ".join(missing), pretrained.source)
    return jax.tree.map(lambda x: np.zeros(x.shape, x.dtype)
                        if isinstance(x, jax.ShapeDtypeStruct) else x, params)


def check_max_seq_length(max_seq_length: int, config: BertConfig) -> None:
    if not 3 <= max_seq_length <= config.max_position_embeddings:
        raise ValueError(f"--max_seq_length={max_seq_length} must lie in [3, "
                         f"{config.max_position_embeddings}] (the checkpoint's "
                         "max_position_embeddings)")


def checkpoint_tokenizer(pretrained: interop.Pretrained, init_checkpoint: str,
                         vocab_file: str | None, do_lower_case: bool) -> FullTokenizer:
    """The checkpoint's own vocab.txt, or ``vocab_file`` when it has none; a ``vocab_file``
    that differs from the checkpoint's, or has more tokens than its embeddings, is refused."""
    if vocab_file and pretrained.vocab_file and not same_vocab(vocab_file,
                                                               pretrained.vocab_file):
        raise ValueError(f"--vocab_file {vocab_file} differs from the vocab.txt of "
                         f"{init_checkpoint}: omit --vocab_file to use the checkpoint's own")
    vocab_file = vocab_file or pretrained.vocab_file
    if vocab_file is None:
        raise FileNotFoundError(f"no vocab.txt beside {init_checkpoint}; pass --vocab_file")
    tokenizer = FullTokenizer(vocab_file, do_lower_case=do_lower_case)
    if tokenizer.vocab_size > pretrained.config.vocab_size:
        raise ValueError(f"vocab file {vocab_file} has {tokenizer.vocab_size} tokens but the "
                         f"checkpoint's vocab_size is {pretrained.config.vocab_size}; pass its "
                         "own vocab")
    return tokenizer


def batches(features: Sequence[InputFeatures], batch_size: int
            ) -> Iterator[tuple[list[InputFeatures], tuple[np.ndarray, ...]]]:
    """Fixed-shape int32 [batch_size, L] arrays (the last batch padded with empty rows), so
    one compiled program serves every batch."""
    length = len(features[0].input_ids)
    for start in range(0, len(features), batch_size):
        chunk = list(features[start:start + batch_size])
        arrays = []
        for field in ("input_ids", "input_mask", "segment_ids"):
            array = np.zeros((batch_size, length), np.int32)
            array[:len(chunk)] = [getattr(f, field) for f in chunk]
            arrays.append(array)
        yield chunk, tuple(arrays)


def feature_json(feature: InputFeatures, layer_indexes: Sequence[int],
                 outputs: np.ndarray) -> str:
    """outputs float32 [K, L, D] (this row) -> the original tool's JSON line."""
    return json.dumps({"linex_index": feature.unique_id, "features": [
        {"token": token, "layers": [
            {"index": index, "values": [round(float(x), 6) for x in outputs[k, i]]}
            for k, index in enumerate(layer_indexes)]}
        for i, token in enumerate(feature.tokens)]})


def extract_features(init_checkpoint: str, input_file: str, output_file: str,
                     layers: Sequence[int] = (-1, -2, -3, -4), max_seq_length: int = 128,
                     vocab_file: str | None = None, do_lower_case: bool = True,
                     batch_size: int = 8, overwrite: bool = False) -> int:
    """The whole CLI as a function; returns the number of lines written."""
    if not overwrite and tf.io.gfile.exists(output_file):  # the input file itself, say
        raise FileExistsError(f"output file {output_file} exists: pass --overwrite to replace "
                              "it, or choose another --output_file")
    examples = read_examples(input_file)  # before loading: a missing file should fail fast
    pretrained = interop.load_pretrained(init_checkpoint)
    config = pretrained.config
    layers = [int(i) for i in layers]
    bad = [i for i in layers if not -config.num_layers <= i < config.num_layers]
    if bad or not layers:
        raise ValueError(f"--layers={','.join(map(str, layers))}: each index must lie in "
                         f"[{-config.num_layers}, {config.num_layers - 1}] (the checkpoint has "
                         f"{config.num_layers} layers; -1 is the last)")
    check_max_seq_length(max_seq_length, config)
    tokenizer = checkpoint_tokenizer(pretrained, init_checkpoint, vocab_file, do_lower_case)
    features = convert_examples(examples, max_seq_length, tokenizer)
    params = jax.device_put(encoder_params(pretrained))  # once, not with every batch
    run = layers_fn(config, layers)
    lines = []
    for chunk, arrays in batches(features, batch_size):
        outputs = np.asarray(run(params, *arrays))  # [K, batch_size, L, D]
        lines += [feature_json(f, layers, outputs[:, row]) for row, f in enumerate(chunk)]
    with tf.io.gfile.GFile(output_file, "w") as f:
        f.write("".join(line + "\n" for line in lines))
    return len(lines)


def define_checkpoint_flags() -> None:
    """The model and tokenizer flags this tool shares with ``bert_jax.visualize``."""
    flags.DEFINE_string("init_checkpoint", None,
                        "TF BERT dir or prefix, Hugging Face dir, or training workdir.")
    flags.DEFINE_integer("max_seq_length", 128, "Tokens per input, [CLS]/[SEP] included.")
    flags.DEFINE_string("vocab_file", None, "vocab.txt; default: the checkpoint's own.")
    flags.DEFINE_bool("do_lower_case", True, "Lower-case (and strip accents); true for "
                      "uncased models.")


def define_flags() -> None:
    """Defined only when run as a program, so importing this module registers nothing."""
    define_checkpoint_flags()
    flags.DEFINE_string("input_file", None, "One sentence, or 'A ||| B' pair, per line.")
    flags.DEFINE_string("output_file", None, "Where the JSON lines go.")
    flags.DEFINE_list("layers", ["-1", "-2", "-3", "-4"], "Encoder layers to output; -1 = last.")
    flags.DEFINE_integer("batch_size", 8, "Inputs per forward pass.", lower_bound=1)
    flags.DEFINE_bool("overwrite", False, "Replace --output_file if it exists.")
    flags.mark_flags_as_required(["init_checkpoint", "input_file", "output_file"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    runtime.setup_host(("bert_jax",))
    try:
        layers = [int(i) for i in FLAGS.layers]
    except ValueError:
        sys.stderr.write(f"error: --layers={','.join(FLAGS.layers)} must be integers\n")
        sys.exit(2)
    try:
        count = extract_features(FLAGS.init_checkpoint, FLAGS.input_file, FLAGS.output_file,
                                 layers, FLAGS.max_seq_length, FLAGS.vocab_file,
                                 FLAGS.do_lower_case, FLAGS.batch_size, FLAGS.overwrite)
    except (FileNotFoundError, FileExistsError, ValueError, tf.errors.OpError) as error:
        # A wrong path or an impossible request is a user error: one line, no traceback.
        sys.stderr.write(f"error: {error}\n")
        sys.exit(2)
    log.info("wrote %d JSON lines (layers %s) to %s", count, ",".join(FLAGS.layers),
             FLAGS.output_file)


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=runtime.parse_flags)
