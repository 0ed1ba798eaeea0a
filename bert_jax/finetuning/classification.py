"""Sentence(-pair) classification and regression (GLUE, the user's tables, the offline
demos) as a task of the shared engine.

Loss: cross-entropy over the labels (mean squared error for regression, STS-B). Metrics:
loss and accuracy per eval batch, plus the task's official GLUE metrics on the whole dev
set (F1, Matthews, Pearson/Spearman via scikit-learn/scipy in ``metrics.py``), whose main
one (``main_metric``) picks the best checkpoint.
"""

import logging
import os

import jax
import jax.numpy as jnp
import ml_collections
import tensorflow as tf

from bert_jax.finetuning import batching, glue_data, metrics, submission, topic_demo
from bert_jax.finetuning.base import FinetuneTask
from bert_jax.finetuning.examples import Example, featurize
from bert_jax.finetuning.heads import BertForSequenceClassification
from bert_jax.finetuning.table_data import read_table
from transformer_jax.engine import losses

log = logging.getLogger(__name__)


def table_spec(data: ml_collections.ConfigDict) -> glue_data.TaskSpec:
    """The user's own table as a task: its label list (none: regression) and splits."""
    if not data.text_a_column or not data.label_column:
        raise ValueError("data.source='table' needs data.text_a_column and data.label_column")
    if not data.regression and not data.label_list:
        raise ValueError("a classification table needs data.label_list (the classes in a "
                         "fixed order), or set data.regression=True")
    labels = None if data.regression else tuple(str(label) for label in data.label_list)
    return glue_data.TaskSpec(
        "table", "", tuple(filter(None, (data.text_a_column, data.text_b_column))), labels,
        labels, ("train",), ("dev",), ("test",) if data.test_file else (), tsv={})


# Tasks that are no GLUE task: their labels come from the config or the demo, their metric
# is accuracy (or Pearson/Spearman), their test predictions a plain TSV.
_OWN_TASKS = {"table": table_spec, "stdlib_topic": lambda data: topic_demo.task_spec(),
              "stdlib_same_module": lambda data: topic_demo.pair_task_spec()}


def load_examples(data: ml_collections.ConfigDict, split: str) -> list[Example]:
    """``split`` of ``data.task`` from ``data.source``: demo | tfds | files (GLUE TSVs) |
    table (the user's own tsv/csv/jsonl: data.train_file, dev_file, test_file)."""
    if data.source == "table":
        path = {"train": data.train_file, "dev": data.dev_file, "test": data.test_file}[split]
        labelled = split != "test"  # test tables may lack the label column
        return read_table(
            path, data.text_a_column, data.text_b_column or None,
            data.label_column if labelled else None,
            None if data.regression or not labelled else [str(x) for x in data.label_list],
            regression=data.regression)
    if data.source == "demo" and data.task == topic_demo.task_spec().name:
        return topic_demo.demo_examples(split)
    if data.source == "demo" and data.task == topic_demo.pair_task_spec().name:
        return topic_demo.pair_examples(split)
    if data.source == "demo":  # the pronoun demo, in WNLI's format
        from bert_jax.finetuning import pronoun_task
        return pronoun_task.demo_examples(split)
    if data.source == "tfds":
        return glue_data.read_glue_tfds(data.task, split, data.data_dir or None)
    if data.source == "files":
        if not data.data_dir:
            raise ValueError("data.source='files' needs data.data_dir (the GLUE task folder)")
        return glue_data.read_glue_tsv(data.task, split, data.data_dir)
    raise ValueError(f"unknown data.source {data.source!r}; use 'demo', 'tfds' or 'files'")


class ClassificationTask(FinetuneTask):
    """One GLUE-style task: ``config.data.task`` names its labels, splits and metrics."""

    name = "bert_classification"

    def __init__(self, config: ml_collections.ConfigDict, workdir: str):
        super().__init__(config, workdir)
        if config.data.task in _OWN_TASKS:
            self.spec = _OWN_TASKS[config.data.task](config.data)
            self.scorer = (metrics.GlueTask(metrics.pearson_and_spearman, "pearson_spearman_mean")
                           if self.spec.regression else metrics.GlueTask(metrics.accuracy,
                                                                         "accuracy"))
        else:
            self.spec = glue_data.get_task(config.data.task)
            self.scorer = metrics.GLUE_TASKS[config.data.metric_task or self.spec.name]
        self.num_labels = 1 if self.spec.regression else len(self.spec.labels)
        self.head_hparams = {"num_labels": self.num_labels, "task": self.spec.name}
        self.model = BertForSequenceClassification(self.model_cfg, self.num_labels)
        read = lambda split: featurize(  # noqa: E731
            load_examples(self.data, split), self.tokenizer, self.data.max_seq_length,
            regression=self.spec.regression)
        self.train, self.dev = read(self.data.train_split), read(self.data.eval_split)
        log.info("%s: %d training and %d dev examples", self.spec.name,
                 batching.num_rows(self.train), batching.num_rows(self.dev))

    @property
    def main_metric(self) -> str:
        return self.scorer.main_metric

    def _loss_key(self) -> str:
        return "mse" if self.spec.regression else "cross_entropy"

    def _metrics(self, logits, batch) -> dict:
        weights, labels = batch["example_weights"], batch["label_ids"]
        if self.spec.regression:  # logits [B]: squared error
            return {"mse": (jnp.sum(weights * (logits - labels) ** 2), jnp.sum(weights))}
        return {"cross_entropy": losses.weighted_cross_entropy(logits, labels, weights),
                "accuracy": losses.weighted_accuracy(logits, labels, weights)}

    def evaluate_extra(self, params, step, mesh) -> dict[str, float]:
        logits = self.predict(params, self.dev, mesh)
        predictions = logits if self.spec.regression else logits.argmax(-1)
        return self.scorer.compute(predictions, self.dev["label_ids"])

    def write_predictions(self, params, mesh, output_dir: str) -> list[str]:
        """GLUE server submission files for the task's test split(s)."""
        paths = []
        for split in self.spec.test_splits:
            try:
                examples = load_examples(self.data, split)
            except FileNotFoundError as error:
                log.warning("no %s split, no submission file for it: %s", split, error)
                continue
            arrays = featurize(examples, self.tokenizer, self.data.max_seq_length,
                               regression=self.spec.regression)
            logits = self.predict(params, arrays, mesh)
            predictions = logits if self.spec.regression else logits.argmax(-1)
            if jax.process_index() != 0:
                continue
            if self.spec.name in _OWN_TASKS:
                paths.append(self._write_table(examples, predictions, output_dir))
            else:
                paths.append(submission.write_glue_submission(
                    self.spec, examples, predictions, output_dir, split=split))
        return paths

    def _write_table(self, examples, predictions, output_dir: str) -> str:
        """``<output_dir>/test_predictions.tsv``: the test rows' ids and predicted labels
        (and the accuracy in the log when the test rows are labelled, as the demos' are)."""
        if not self.spec.regression and all(e.label is not None for e in examples):
            log.info("test accuracy of the best epoch: %.4f", metrics.accuracy(
                predictions, [e.label for e in examples])["accuracy"])
        tf.io.gfile.makedirs(output_dir)
        path = os.path.join(output_dir, "test_predictions.tsv")
        labels = self.spec.labels
        with tf.io.gfile.GFile(path, "w") as f:
            f.write("id\tprediction\n")
            for example, value in zip(examples, predictions):
                f.write(f"{example.guid}\t{value if labels is None else labels[int(value)]}\n")
        return path
