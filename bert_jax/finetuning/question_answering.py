"""Extractive question answering (SQuAD v1.1 and v2.0) as a task of the shared engine.

Loss, as the original ``run_squad.py``: the mean of the start and end cross-entropies over
each window's positions (position 0, [CLS], is the target when the answer is outside the
window or the question has none). Official metrics every evaluation: the dev windows'
logits go through the n-best post-processing (``squad_postprocess``) and the official
SQuAD scoring (``squad_metrics``): exact match and F1, for v2.0 also the HasAns/NoAns
breakdown and the best no-answer threshold.
"""

import dataclasses
import json
import logging
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from bert_jax import warm_start
from bert_jax.finetuning import batching, prediction, squad_data, squad_metrics
from bert_jax.finetuning import squad_postprocess
from bert_jax.finetuning.classification import SHAPE_FIELDS, tokenizer_and_model
from bert_jax.finetuning.heads import BertForQuestionAnswering
from transformer_jax import textfiles
from transformer_jax.engine import losses
from transformer_jax.engine.task import Task

log = logging.getLogger(__name__)
MODEL_KEYS = ("input_ids", "input_mask", "segment_ids")


class QuestionAnsweringTask(Task):
    """SQuAD-style QA from local JSON files (``data.train_file``, ``data.dev_file``)."""

    name = "bert_squad"

    def __init__(self, config: ml_collections.ConfigDict, workdir: str):
        self.config, self.data = config, config.data
        if not (self.data.train_file and self.data.dev_file):
            raise ValueError("SQuAD fine-tuning needs data.train_file and data.dev_file "
                             "(train-v1.1.json / dev-v1.1.json or the v2.0 files)")
        self._pretrained, self.tokenizer, self.model_cfg = tokenizer_and_model(config, workdir)
        self.model = BertForQuestionAnswering(self.model_cfg)
        windows = dict(max_seq_length=self.data.max_seq_length, doc_stride=self.data.doc_stride,
                       max_query_length=self.data.max_query_length)
        train = squad_data.read_squad_examples(self.data.train_file, is_training=True)
        _, self.train = squad_data.convert_examples_to_features(
            train, self.tokenizer, is_training=True, **windows)
        self.train["example_weights"] = np.ones(batching.num_rows(self.train), np.float32)
        self.dev_json = json.loads(textfiles.read_utf8(self.data.dev_file, "SQuAD file"))["data"]
        self.dev_examples = squad_data.parse_squad_json({"data": self.dev_json}, False)
        self.dev_features, self.dev = squad_data.convert_examples_to_features(
            self.dev_examples, self.tokenizer, is_training=False, **windows)
        self.dev["example_weights"] = np.ones(batching.num_rows(self.dev), np.float32)
        log.info("SQuAD: %d training windows, %d dev questions in %d windows",
                 batching.num_rows(self.train), len(self.dev_examples),
                 batching.num_rows(self.dev))
        self._predict = None

    @property
    def main_metric(self) -> str:
        return "f1"

    def steps_per_epoch(self, global_batch_size: int) -> int:
        return batching.steps_per_epoch(self.train, global_batch_size)

    def model_hparams(self) -> dict[str, Any]:
        return dataclasses.asdict(self.model_cfg)

    def compatibility_hparams(self) -> dict[str, Any]:
        shapes = {k: v for k, v in self.model_hparams().items() if k in SHAPE_FIELDS}
        return dict(shapes, vocab=len(self.tokenizer.ids_to_tokens))

    @property
    def model_dim(self) -> int:
        return self.model_cfg.hidden_size

    def dummy_batch(self, batch_size: int) -> dict[str, np.ndarray]:
        keys = MODEL_KEYS + ("start_positions", "end_positions", "example_weights")
        return {k: np.zeros((batch_size,) + self.train[k].shape[1:], self.train[k].dtype)
                for k in keys}

    def _logits(self, params, batch, deterministic: bool, rng=None):
        return self.model.apply(
            {"params": params}, *(batch[k] for k in MODEL_KEYS), deterministic=deterministic,
            rngs=None if deterministic else {"dropout": rng})  # start, end: [B, L] each

    def init_params(self, rng, batch):
        return self.model.init(rng, *(batch[k] for k in MODEL_KEYS))["params"]

    def initial_params(self, params):
        if self._pretrained is None:
            return None
        params = warm_start.place(self._pretrained, params)
        self._pretrained = None
        return params

    def _metrics(self, logits, batch) -> dict:
        weights = batch["example_weights"]
        out = {}
        for name, side in zip(("start", "end"), logits):
            targets = batch[f"{name}_positions"]
            out[f"{name}_loss"] = losses.weighted_cross_entropy(side, targets, weights)
            out[f"{name}_accuracy"] = losses.weighted_accuracy(side, targets, weights)
        return out

    def loss_fn(self, params, batch, rng):
        metrics_ = self._metrics(self._logits(params, batch, False, rng), batch)
        mean = lambda pair: pair[0] / jnp.maximum(pair[1], 1.0)  # noqa: E731
        return (mean(metrics_["start_loss"]) + mean(metrics_["end_loss"])) / 2, metrics_

    def eval_fn(self, params, batch):
        """Window-level losses; dev windows carry no positions, so only the official
        metrics of ``evaluate_extra`` are reported for the dev set."""
        del params, batch
        return {}

    def train_batches(self, batch_size_per_host, start_batch, process_index, process_count):
        return batching.train_batches(
            {k: self.train[k] for k in self.dummy_batch(1)},
            batch_size_per_host=batch_size_per_host, seed=self.config.seed,
            start_batch=start_batch, process_index=process_index, process_count=process_count)

    def eval_batches(self, batch_size_per_host, process_index, process_count):
        return []  # see eval_fn

    def tokens_in_batch(self, batch) -> int:
        return int(np.count_nonzero(batch["input_mask"]))

    def predictions(self, params, mesh) -> squad_postprocess.SquadPredictions:
        if self._predict is None:
            self._predict = jax.jit(lambda p, b: self._logits(p, b, True))
        inputs = {k: self.dev[k] for k in MODEL_KEYS + ("example_weights",)}
        start, end = prediction.predict_rows(self._predict, params, inputs, mesh,
                                             self.config.eval_batch_size)
        results = squad_postprocess.results_from_arrays(self.dev["unique_id"], start, end)
        return squad_postprocess.compute_predictions(
            self.dev_examples, self.dev_features, results,
            max_answer_length=self.data.max_answer_length,
            do_lower_case=self.data.do_lower_case,
            version_2_with_negative=self.data.version_2_with_negative,
            null_score_diff_threshold=self.data.null_score_diff_threshold)

    def evaluate_extra(self, params, step, mesh) -> dict[str, float]:
        answers = self.predictions(params, mesh)
        if self.data.version_2_with_negative:
            return squad_metrics.evaluate_v2(self.dev_json, answers.predictions,
                                             na_probs=answers.null_odds)
        return squad_metrics.evaluate_v1(self.dev_json, answers.predictions)
