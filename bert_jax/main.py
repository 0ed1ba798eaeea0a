"""Pretrain BERT (masked LM + next sentence prediction) on the shared engine.

  python -m bert_jax.main --config=configs/bert_pretrain.py:size=tiny --workdir=/tmp/bert
  python -m bert_jax.main --config=configs/bert_pretrain.py:size=base \
      --config.data.source=files --config.data.input_files='corpus/*.txt' --workdir=gs://B/run

Any config field can be overridden with --config.<field>=<value>; a misspelt field fails.
"""

import logging
import sys

from absl import app, flags
from ml_collections import config_flags

from transformer_jax import runtime

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to a config file (configs/*.py[:arg]).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, vocab.txt and TensorBoard logs.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    runtime.setup_host(("bert_jax",))
    # Imported after set-up so TensorFlow never claims an accelerator.
    import tensorflow as tf

    from transformer_jax.engine import trainer

    try:
        task = make_task(FLAGS.config, FLAGS.workdir)
        run = trainer.Trainer(FLAGS.config, FLAGS.workdir, task)
        results = run.run()
        if FLAGS.config.get("kind") == "finetune":
            from bert_jax.finetuning.base import write_best_predictions

            for path in write_best_predictions(run, task):
                logging.getLogger("bert_jax").info("wrote %s", path)
    except (FileNotFoundError, FileExistsError, ValueError, FloatingPointError,
            tf.errors.OpError) as error:
        # Bad corpus or vocab, a workdir of another model, a NaN loss: one line, no traceback.
        sys.exit(f"error: {runtime.last_line(error)}")
    logging.getLogger("bert_jax").info(
        "final: %s", ", ".join(f"{k}={v:.4f}" for k, v in sorted(results.items())))


def make_task(config, workdir: str):
    """Pretraining, or fine-tuning (``config.kind == "finetune"``) with epochs as steps."""
    if config.get("kind", "pretrain") == "finetune":
        from bert_jax.finetuning import recipe

        task = finetune_task_class(config.data.family)(config, workdir)
        per_epoch = task.steps_per_epoch(config.batch_size)
        recipe.apply_epochs(config, per_epoch, task.main_metric)
        return task
    from bert_jax.pretraining.task import PretrainingTask

    return PretrainingTask(config, workdir)


def finetune_task_class(family: str):
    """The task class of a fine-tuning family (imported on demand)."""
    import importlib

    families = {"classification": "classification.ClassificationTask",
                "squad": "question_answering.QuestionAnsweringTask",
                "ner": "token_classification.TokenClassificationTask",
                "multiple_choice": "multiple_choice.MultipleChoiceTask"}
    if family not in families:
        raise ValueError(f"unknown data.family {family!r}; use one of {sorted(families)}")
    module, name = families[family].split(".")
    return getattr(importlib.import_module(f"bert_jax.finetuning.{module}"), name)


def cli() -> None:
    """Entry point of the `bert-pretrain` command (and of `python -m`)."""
    app.run(main, flags_parser=runtime.parse_flags)


if __name__ == "__main__":
    cli()
