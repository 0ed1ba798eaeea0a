"""Train and evaluate a translation Transformer.

  python -m transformer_jax.main --config=configs/transformer_demo.py --workdir=/tmp/demo
  python -m transformer_jax.main --config=configs/transformer_wmt.py:size=base \
      --workdir=gs://BUCKET/run --config.batch_size=512

Any config field can be overridden with --config.<field>=<value>; a misspelt field fails.
"""

import logging
import sys

from absl import app, flags
from ml_collections import config_flags

from transformer_jax import distributed, runtime

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to a config file (configs/*.py[:arg]).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, vocab and TensorBoard logs.")
flags.mark_flags_as_required(["config", "workdir"])
runtime.define_training_flags()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    runtime.setup_host()
    # Imported after set-up so TensorFlow never claims an accelerator.
    import tensorflow as tf

    from transformer_jax.engine import trainer
    from transformer_jax.translation.task import TranslationTask

    try:
        distributed.initialize_from_flags()
        runtime.quiet_other_processes()
        if FLAGS.compile_only:
            from transformer_jax.engine import memory

            memory.compile_only(FLAGS.config, TranslationTask.for_benchmark(FLAGS.config),
                                FLAGS.topology)
            return
        trainer.check_config(FLAGS.config)  # in seconds, before the vocabulary is learnt
        task = TranslationTask(FLAGS.config, FLAGS.workdir)
        results = trainer.train_and_evaluate(FLAGS.config, FLAGS.workdir, task)
    except trainer.Preempted as stop:
        logging.getLogger("transformer_jax").warning("%s", stop)
        sys.exit(runtime.PREEMPTED_EXIT_CODE)
    except (FileNotFoundError, ValueError, FloatingPointError,
            distributed.JoinError, tf.errors.OpError) as error:
        # Bad data, a workdir of another model, a NaN loss: one line, no traceback.
        sys.exit(f"error: {runtime.last_line(error)}")
    logging.getLogger("transformer_jax").info(
        "final: %s", ", ".join(f"{k}={v:.4f}" for k, v in sorted(results.items())))


def cli() -> None:
    """Entry point of the `transformer-train` command (and of `python -m`)."""
    app.run(main, flags_parser=runtime.parse_flags)


if __name__ == "__main__":
    cli()
