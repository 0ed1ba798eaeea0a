"""Convert BERT weights to the Hugging Face layout.

  python -m bert_jax.convert --input=uncased_L-12_H-768_A-12 --output=/tmp/bert_hf
  python -m bert_jax.convert --input=/tmp/bert_workdir --output=/tmp/bert_hf --overwrite

``--input`` is any layout ``bert_jax.interop.load_pretrained`` reads: Google's TF BERT
directory (or its ``bert_model.ckpt`` prefix), a Hugging Face directory, or one of our
training workdirs. The output directory gets ``config.json``, ``model.safetensors`` and
``vocab.txt``, loadable with ``transformers.BertForPreTraining.from_pretrained``. Prints one
summary line; errors are one ``error: ...`` line on stderr with exit code 2.
"""

import sys

import tensorflow as tf
from absl import app, flags

from bert_jax import interop
from transformer_jax import runtime

FLAGS = flags.FLAGS
FORMATS = ("hf",)


def convert(input_path: str, output_dir: str, output_format: str = "hf", *,
            overwrite: bool = False) -> str:
    """The whole CLI as a function: converts and returns the summary line."""
    if output_format not in FORMATS:
        raise ValueError(f"unknown --format={output_format!r}; choose one of {list(FORMATS)}")
    pretrained = interop.load_pretrained(input_path)
    interop.export_hf(output_dir, pretrained.config, pretrained.params, pretrained.vocab_file,
                      overwrite=overwrite)
    cfg = pretrained.config
    heads = [h for h in ("mlm", "nsp") if h in pretrained.params]
    return (f"converted {pretrained.source} -> {output_dir} ({output_format}): "
            f"{cfg.num_layers} layers, hidden {cfg.hidden_size}, {cfg.num_heads} heads, "
            f"intermediate {cfg.intermediate_size}, vocab {cfg.vocab_size}; "
            f"{pretrained.param_count():,} params; heads: {'+'.join(heads) or 'none'}; "
            f"vocab.txt: {'copied' if pretrained.vocab_file else 'none in the input'}")


def define_flags() -> None:
    """Defined only when run as a program, so importing this module registers nothing."""
    flags.DEFINE_string("input", None, "TF BERT dir or prefix, Hugging Face dir, or workdir.")
    flags.DEFINE_string("output", None, "Directory to write the converted model to.")
    flags.DEFINE_enum("format", "hf", FORMATS, "Output layout: hf (Hugging Face).")
    flags.DEFINE_bool("overwrite", False, "Replace model files already in --output.")
    flags.mark_flags_as_required(["input", "output"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    runtime.setup_host(("bert_jax",))
    try:
        print(convert(FLAGS.input, FLAGS.output, FLAGS.format, overwrite=FLAGS.overwrite))
    except (FileNotFoundError, FileExistsError, ValueError, tf.errors.OpError) as error:
        # A wrong path or an unsupported file is a user error: one line, no traceback.
        sys.stderr.write(f"error: {error}\n")
        sys.exit(2)


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=runtime.parse_flags)
