"""Translate text with a trained workdir: batched, jit-compiled beam search, optional BLEU.

  python -m transformer_jax.translate --workdir=/tmp/demo --input_file=test.en \
      --output_file=test.hyp.de --reference_file=test.de --average_last=5

Reads one sentence per line (stdin by default) and writes one translation per line (stdout
by default). The paper's settings are the defaults: beam 4, length penalty 0.6, outputs at
most 50 tokens longer than their input, and the last 5 (base) / 20 (big) checkpoints
averaged (``--average_last``). With ``--reference_file`` SacreBLEU goes to stderr.
"""

import logging
import sys
from typing import Any, Sequence

import tensorflow as tf
from absl import app, flags
from jax.sharding import Mesh

from transformer_jax import runtime, textfiles
from transformer_jax.engine import sharding as sharding_lib
from transformer_jax.model import Transformer
from transformer_jax.translation import predict, restore
from transformer_jax.translation.tokenizer import Tokenizer

log = logging.getLogger(__name__)

FLAGS = flags.FLAGS


def read_lines(path: str | None, what: str = "input file") -> list[str]:
    """The lines of a UTF-8 file (or of stdin when ``path`` is None), without newlines."""
    if path is None:
        return textfiles.split_lines(sys.stdin.read())
    # gfile, not open(): paths may be gs://
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{what} {path} does not exist")
    with tf.io.gfile.GFile(path, "r") as f:
        return textfiles.split_lines(f.read())


def write_lines(path: str | None, lines: Sequence[str]) -> None:
    """One line per string to ``path`` (stdout when None)."""
    text = "".join(f"{line}\n" for line in lines)
    if path is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(text)


def decode_lengths(model: Transformer, tokenizer: Tokenizer, lines: Sequence[str],
                   extra_length: int) -> tuple[int, int]:
    """(source buffer, decode buffer) lengths that fit the longest line, capped by max_len.

    One compiled program serves every batch. Beyond ``max_len`` the sinusoid table has no
    rows, so longer sources are truncated (with a warning) rather than mis-encoded.
    """
    max_len = model.config.max_len
    longest = max((len(tokenizer.encode(line)) + 1 for line in lines), default=1)  # + EOS
    if longest > max_len:
        log.warning("longest input has %d tokens; truncating to the model's max_len %d",
                    longest, max_len)
    source_length = min(longest, max_len)
    return source_length, min(source_length + extra_length, max_len)


def translate_lines(model: Transformer, params: Any, tokenizer: Tokenizer,
                    lines: Sequence[str], *, mesh: Mesh | None = None, beam_size: int = 4,
                    alpha: float = 0.6, batch_size: int = 32,
                    extra_length: int = 50) -> list[str]:
    """One translation per input line, with beam search sharded over a data-parallel mesh."""
    if not lines:
        return []
    mesh = mesh or sharding_lib.make_mesh("dp")
    source_length, decode_length = decode_lengths(model, tokenizer, lines, extra_length)
    translator = predict.Translator(
        model, tokenizer, mesh, max_source_length=source_length, max_decode_len=decode_length,
        beam_size=beam_size, alpha=alpha, extra_length=extra_length,
        batch_size=min(batch_size, len(lines)))  # a few lines need no full padded batch
    return translator.translate(params, list(lines))


def bleu(hypotheses: Sequence[str], reference_file: str) -> float:
    """SacreBLEU of ``hypotheses`` against the lines of ``reference_file``."""
    references = read_lines(reference_file, "reference file")
    if len(references) != len(hypotheses):
        raise ValueError(f"reference file {reference_file} has {len(references)} lines but "
                         f"there are {len(hypotheses)} input lines")
    return predict.corpus_bleu(hypotheses, references)


def translate(workdir: str, input_file: str | None = None, output_file: str | None = None,
              reference_file: str | None = None, *, checkpoint_step: int | None = None,
              average_last: int = 1, **search) -> float | None:
    """The whole CLI as a function: returns SacreBLEU when a reference file is given.

    ``search`` takes the keyword arguments of ``translate_lines`` (beam_size, alpha, ...).
    """
    lines = read_lines(input_file)  # before loading: a missing file should fail fast
    if reference_file is not None:
        read_lines(reference_file, "reference file")
    model, params, tokenizer, _ = restore.load_workdir(workdir, checkpoint_step, average_last)
    hypotheses = translate_lines(model, params, tokenizer, lines, **search)
    write_lines(output_file, hypotheses)
    if reference_file is None:
        return None
    return bleu(hypotheses, reference_file)  # logged to stderr with sacrebleu's details


def define_workdir_flags() -> None:
    """--workdir, --checkpoint_step and --beam_size, shared with visualize."""
    flags.DEFINE_string("workdir", None, "Trained workdir (checkpoints/ and vocab.model).")
    flags.DEFINE_integer("checkpoint_step", None, "Checkpoint step to use; default the latest.")
    flags.DEFINE_integer("beam_size", 4, "Beam width (the paper: 4).", lower_bound=1)
    flags.mark_flag_as_required("workdir")


def define_flags() -> None:
    """CLI flags, defined only when run as a program: importing this module (visualize
    imports translate) must not register a second --workdir."""
    define_workdir_flags()
    flags.DEFINE_string("input_file", None, "Sentences to translate, one a line; default stdin.")
    flags.DEFINE_string("output_file", None, "Where translations go; default stdout.")
    flags.DEFINE_string("reference_file", None, "Reference translations: report SacreBLEU.")
    flags.DEFINE_integer("average_last", 1, "Average the params of the last N checkpoints.",
                         lower_bound=1)
    flags.DEFINE_float("alpha", 0.6, "Length penalty exponent (the paper: 0.6).", lower_bound=0)
    flags.DEFINE_integer("batch_size", 32, "Sentences per beam-search batch.", lower_bound=1)
    flags.DEFINE_integer("extra_length", 50, "Outputs may be this much longer than inputs.",
                         lower_bound=1)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    runtime.setup_host()
    try:
        translate(FLAGS.workdir, FLAGS.input_file, FLAGS.output_file, FLAGS.reference_file,
                  checkpoint_step=FLAGS.checkpoint_step, average_last=FLAGS.average_last,
                  beam_size=FLAGS.beam_size, alpha=FLAGS.alpha, batch_size=FLAGS.batch_size,
                  extra_length=FLAGS.extra_length)
    except (FileNotFoundError, ValueError) as error:
        # Bad paths and impossible requests are user errors: one line, no traceback.
        sys.exit(f"translate: error: {error}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
