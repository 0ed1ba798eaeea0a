"""Sentence(-pair) classification and regression (GLUE, the offline demo, the user's own
tables) as a task of the shared engine.

Loss: cross-entropy over the labels (mean squared error for regression, STS-B). Metrics:
loss and accuracy per eval batch, plus the task's official GLUE metrics on the whole dev
set (F1, Matthews, Pearson/Spearman via scikit-learn/scipy in ``metrics.py``), whose main
one (``main_metric``) picks the best checkpoint.
"""

import dataclasses
import logging
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tensorflow as tf

from bert_jax import interop, warm_start
from bert_jax.finetuning import batching, glue_data, metrics, prediction
from bert_jax.finetuning.heads import BertForSequenceClassification
from bert_jax.tokenization import FullTokenizer
from transformer_jax.engine import losses
from transformer_jax.engine.task import Task

log = logging.getLogger(__name__)
SHAPE_FIELDS = ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                "max_position_embeddings", "type_vocab_size", "param_dtype")


def load_examples(data: ml_collections.ConfigDict, split: str) -> list[glue_data.Example]:
    """``split`` of ``data.task`` from ``data.source``: demo | tfds | files (GLUE TSVs)."""
    if data.source == "demo":
        from bert_jax.finetuning import demo_task
        return demo_task.demo_examples(split)
    if data.source == "tfds":
        return glue_data.read_glue_tfds(data.task, split, data.data_dir or None)
    if data.source == "files":
        if not data.data_dir:
            raise ValueError("data.source='files' needs data.data_dir (the GLUE task folder)")
        return glue_data.read_glue_tsv(data.task, split, data.data_dir)
    raise ValueError(f"unknown data.source {data.source!r}; use 'demo', 'tfds' or 'files'")


def tokenizer_and_model(config: ml_collections.ConfigDict, workdir: str):
    """(pretrained or None, tokenizer, BertConfig): the checkpoint fixes shape and vocab."""
    if not config.init_checkpoint:
        raise ValueError("fine-tuning needs config.init_checkpoint (a Google TF checkpoint, a "
                         "Hugging Face directory or a pretraining workdir)")
    pretrained = interop.load_pretrained(config.init_checkpoint)
    vocab = os.path.join(workdir, "vocab.txt")
    tf.io.gfile.makedirs(workdir)
    if config.data.vocab_file:
        warm_start.check_same_vocab(pretrained, config.data.vocab_file)
        vocab = config.data.vocab_file
    else:
        warm_start.adopt_vocab(pretrained, vocab)
    tokenizer = FullTokenizer(vocab, config.data.do_lower_case)
    return pretrained, tokenizer, warm_start.model_config(pretrained, config.model)


class ClassificationTask(Task):
    """One GLUE-style task: ``config.data.task`` names its labels, splits and metrics."""

    name = "bert_classification"

    def __init__(self, config: ml_collections.ConfigDict, workdir: str):
        self.config, self.data = config, config.data
        self.spec = glue_data.get_task(config.data.task)
        self.metric_task = config.data.metric_task or self.spec.name
        self._pretrained, self.tokenizer, self.model_cfg = tokenizer_and_model(config, workdir)
        self.num_labels = 1 if self.spec.regression else len(self.spec.labels)
        self.model = BertForSequenceClassification(self.model_cfg, self.num_labels)
        length = self.data.max_seq_length
        self.train = glue_data.featurize(load_examples(self.data, self.data.train_split),
                                         self.tokenizer, length, regression=self.spec.regression)
        self.dev = glue_data.featurize(load_examples(self.data, self.data.eval_split),
                                       self.tokenizer, length, regression=self.spec.regression)
        log.info("%s: %d training and %d dev examples", self.spec.name,
                 batching.num_rows(self.train), batching.num_rows(self.dev))
        self._predict = None

    @property
    def main_metric(self) -> str:
        return metrics.GLUE_TASKS[self.metric_task].main_metric

    def steps_per_epoch(self, global_batch_size: int) -> int:
        return batching.steps_per_epoch(self.train, global_batch_size)

    # ---------------------------------------------------------------- identity and shapes
    def model_hparams(self) -> dict[str, Any]:
        return dict(dataclasses.asdict(self.model_cfg), num_labels=self.num_labels)

    def compatibility_hparams(self) -> dict[str, Any]:
        shapes = {k: v for k, v in self.model_hparams().items() if k in SHAPE_FIELDS}
        return dict(shapes, num_labels=self.num_labels, task=self.spec.name,
                    vocab=len(self.tokenizer.ids_to_tokens))

    @property
    def model_dim(self) -> int:
        return self.model_cfg.hidden_size

    def dummy_batch(self, batch_size: int) -> dict[str, np.ndarray]:
        return {key: np.zeros((batch_size,) + value.shape[1:], value.dtype)
                for key, value in self.train.items()}

    # ---------------------------------------------------------------- model and loss
    def _logits(self, params, batch, deterministic: bool, rng=None):
        return self.model.apply(
            {"params": params}, batch["input_ids"], batch["input_mask"], batch["segment_ids"],
            deterministic=deterministic, rngs=None if deterministic else {"dropout": rng})

    def init_params(self, rng, batch):
        return self.model.init(rng, batch["input_ids"], batch["input_mask"],
                               batch["segment_ids"])["params"]

    def initial_params(self, params):
        """The pretrained encoder; the classifier starts fresh (BERT's recipe)."""
        if self._pretrained is None:
            return None
        params = warm_start.place(self._pretrained, params)
        self._pretrained = None
        return params

    def _metrics(self, logits, batch) -> dict:
        weights = batch["example_weights"]
        labels = batch["label_ids"]
        if self.spec.regression:  # logits [B]: squared error
            error = jnp.sum(weights * (logits - labels) ** 2)
            return {"mse": (error, jnp.sum(weights))}
        return {"cross_entropy": losses.weighted_cross_entropy(logits, labels, weights),
                "accuracy": losses.weighted_accuracy(logits, labels, weights)}

    def loss_fn(self, params, batch, rng):
        metrics_ = self._metrics(self._logits(params, batch, False, rng), batch)
        total, weight = metrics_["mse" if self.spec.regression else "cross_entropy"]
        return total / jnp.maximum(weight, 1.0), metrics_

    def eval_fn(self, params, batch):
        return self._metrics(self._logits(params, batch, True), batch)

    # ---------------------------------------------------------------- data
    def train_batches(self, batch_size_per_host, start_batch, process_index, process_count):
        return batching.train_batches(
            self.train, batch_size_per_host=batch_size_per_host, seed=self.config.seed,
            start_batch=start_batch, process_index=process_index, process_count=process_count)

    def eval_batches(self, batch_size_per_host, process_index, process_count):
        return batching.eval_batches(self.dev, batch_size_per_host=batch_size_per_host,
                                     process_index=process_index, process_count=process_count)

    def tokens_in_batch(self, batch) -> int:
        return int(np.count_nonzero(batch["input_mask"]))

    # ---------------------------------------------------------------- official metrics
    def predict(self, params, arrays, mesh) -> np.ndarray:
        """Logits ([N, K], or [N] for regression) of every row of ``arrays``, all hosts."""
        if self._predict is None:
            self._predict = jax.jit(lambda p, b: self._logits(p, b, True))
        return prediction.predict_rows(self._predict, params, arrays, mesh,
                                       self.config.eval_batch_size)

    def evaluate_extra(self, params, step, mesh) -> dict[str, float]:
        logits = self.predict(params, self.dev, mesh)
        predictions = logits if self.spec.regression else logits.argmax(-1)
        return metrics.glue_metrics(self.metric_task, predictions, self.dev["label_ids"])
