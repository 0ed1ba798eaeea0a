"""Pretrain BERT (masked LM + next sentence prediction) on the shared engine.

  python -m bert_jax.main --config=configs/bert_pretrain.py:size=tiny --workdir=/tmp/bert
  python -m bert_jax.main --config=configs/bert_pretrain.py:size=base \
      --config.data.source=files --config.data.input_files='corpus/*.txt' --workdir=gs://B/run

Any config field can be overridden with --config.<field>=<value>; a misspelt field fails.
"""

import logging
import sys

import ml_collections
from absl import app, flags
from ml_collections import config_flags

from transformer_jax import distributed, runtime

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to a config file (configs/*.py[:arg]).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, vocab.txt and TensorBoard logs.")
flags.mark_flags_as_required(["config", "workdir"])
runtime.define_training_flags()
log = logging.getLogger("bert_jax")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    runtime.setup_host(("bert_jax",))
    one_line_errors = user_errors()  # imports TensorFlow, after the set-up
    from transformer_jax.engine.trainer import Preempted

    try:
        distributed.initialize_from_flags()
        runtime.quiet_other_processes(("bert_jax",))
        if FLAGS.compile_only:
            compile_only(FLAGS.config, FLAGS.topology)
            return
        if FLAGS.config.get("sweep"):
            results = sweep(FLAGS.config, FLAGS.workdir)
        else:
            results = train_once(FLAGS.config, FLAGS.workdir)
    except Preempted as stop:
        log.warning("%s", stop)
        sys.exit(runtime.PREEMPTED_EXIT_CODE)
    except one_line_errors as error:
        sys.exit(f"error: {runtime.last_line(error)}")
    log.info("final: %s", ", ".join(f"{k}={v:.6g}" for k, v in sorted(results.items())))


def user_errors() -> tuple[type[BaseException], ...]:
    """What ``main`` reports as one line, without a traceback: a bad corpus or vocab, a
    workdir of another model, a NaN loss, a host that cannot join."""
    # Imported here, after main's set-up, so TensorFlow never claims an accelerator.
    import tensorflow as tf

    return (FileNotFoundError, FileExistsError, ValueError, FloatingPointError,
            distributed.JoinError, tf.errors.OpError)


def train_once(config, workdir: str) -> dict[str, float]:
    """One run; a fine-tuning run then writes its best epoch's prediction files."""
    from transformer_jax.engine import trainer

    if config.get("kind", "pretrain") == "pretrain":  # fine-tuning sets its steps from the data
        trainer.check_config(config)  # in seconds, before a vocabulary is learnt
    task = make_task(config, workdir)
    run = trainer.Trainer(config, workdir, task)
    results = run.run()
    if config.get("kind") == "finetune":
        from bert_jax.finetuning.base import write_best_predictions

        for path in write_best_predictions(run, task):
            log.info("wrote %s", path)
        results = dict(results, best=run.best.best_value)
    return results


def sweep(config, workdir: str) -> dict[str, float]:
    """The BERT paper's grid: one run per learning rate in <workdir>/lr_<rate>, then the
    best by the task's main metric, reported and written to <workdir>/sweep.json."""
    import json

    import tensorflow as tf

    runs = {}
    for rate in config.sweep_learning_rates:
        run_config = ml_collections.ConfigDict(config.to_dict())
        run_config.optimizer.learning_rate, run_config.sweep = float(rate), False
        runs[f"{rate:g}"] = train_once(run_config, f"{workdir}/lr_{rate:g}")
        log.info("sweep: learning_rate=%g -> best %s=%.4f", rate, run_config.best_metric,
                 runs[f"{rate:g}"]["best"])
    pick = max if config.best_mode == "max" else min
    best_rate = pick(runs, key=lambda rate: runs[rate]["best"])
    with tf.io.gfile.GFile(f"{workdir}/sweep.json", "w") as f:
        json.dump({"best_learning_rate": float(best_rate), "runs": runs}, f, indent=1)
    log.info("sweep: best learning_rate=%s (%s=%.4f); runs in %s/lr_*", best_rate,
             run_config.best_metric, runs[best_rate]["best"], workdir)
    return dict(runs[best_rate], learning_rate=float(best_rate))


def compile_only(config, topology: str) -> dict[str, float]:
    """The per-device memory report of a pretraining config (model shapes only: no
    corpus, no vocab; data.vocab_size sizes the embeddings)."""
    from bert_jax.pretraining.task import PretrainingTask
    from transformer_jax.engine import memory

    if config.get("kind", "pretrain") != "pretrain":
        raise ValueError("--compile_only covers pretraining configs (configs/bert_pretrain.py)")
    return memory.compile_only(config, PretrainingTask.for_benchmark(config), topology)


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
