"""Extractive question answering (SQuAD v1.1 and v2.0) as a task of the shared engine.

Loss, as the original ``run_squad.py``: the mean of the start and end cross-entropies over
each window's positions (position 0, [CLS], is the target when the answer is outside the
window or the question has none). Official metrics every evaluation: the dev windows'
logits go through the n-best post-processing (``squad_postprocess``) and the official
SQuAD scoring (``squad_metrics``): exact match and F1, for v2.0 also the HasAns/NoAns
breakdown and the best no-answer threshold.
"""

import logging
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from bert_jax.finetuning import batching, squad_data, squad_metrics, squad_postprocess
from bert_jax.finetuning.base import MODEL_KEYS, FinetuneTask
from bert_jax.finetuning.heads import BertForQuestionAnswering
from transformer_jax.engine import losses

log = logging.getLogger(__name__)


def load_squad_json(data: ml_collections.ConfigDict, which: str) -> tuple[dict, str]:
    """(the SQuAD JSON of the train or dev split, where it came from): the official files
    (data.source=files) or TFDS's squad/v1.1 and squad/v2.0 in the same layout."""
    if data.source == "tfds":
        split = data.train_split if which == "train" else data.eval_split
        return (squad_data.tfds_squad_json(data.tfds_name, split, data.data_dir or None),
                f"TFDS {data.tfds_name}/{split}")
    if data.source == "files":
        path = data.train_file if which == "train" else data.dev_file
        if not path:
            raise ValueError(f"data.source='files' needs data.{which}_file (train-v1.1.json "
                             "/ dev-v1.1.json or the v2.0 files)")
        return squad_data.read_squad_json(path), f"SQuAD file {path}"
    raise ValueError(f"unknown data.source {data.source!r}; use 'files' or 'tfds'")


class QuestionAnsweringTask(FinetuneTask):
    """SQuAD-style QA from the official JSON files or TFDS."""

    name = "bert_squad"

    def __init__(self, config: ml_collections.ConfigDict, workdir: str):
        train_json, train_source = load_squad_json(config.data, "train")
        dev_json, dev_source = load_squad_json(config.data, "dev")
        super().__init__(config, workdir)
        self.model = BertForQuestionAnswering(self.model_cfg)
        windows = dict(max_seq_length=self.data.max_seq_length, doc_stride=self.data.doc_stride,
                       max_query_length=self.data.max_query_length)
        train = squad_data.parse_squad_json(train_json, True, source=train_source)
        _, arrays = squad_data.convert_examples_to_features(
            train, self.tokenizer, is_training=True, **windows)
        self.train = {k: arrays[k] for k in MODEL_KEYS + ("start_positions", "end_positions")}
        self.train["example_weights"] = np.ones(batching.num_rows(self.train), np.float32)
        self.dev_json = dev_json["data"]
        self.dev_examples = squad_data.parse_squad_json(dev_json, False, source=dev_source)
        self.dev_features, self.dev = squad_data.convert_examples_to_features(
            self.dev_examples, self.tokenizer, is_training=False, **windows)
        self.dev["example_weights"] = np.ones(batching.num_rows(self.dev), np.float32)
        log.info("SQuAD: %d training windows, %d dev questions in %d windows",
                 batching.num_rows(self.train), len(self.dev_examples),
                 batching.num_rows(self.dev))

    @property
    def main_metric(self) -> str:
        return "f1"

    def _metrics(self, logits, batch) -> dict:
        weights = batch["example_weights"]
        out = {}
        for name, side in zip(("start", "end"), logits):
            targets = batch[f"{name}_positions"]
            out[f"{name}_loss"] = losses.weighted_cross_entropy(side, targets, weights)
            out[f"{name}_accuracy"] = losses.weighted_accuracy(side, targets, weights)
        return out

    def loss_fn(self, params, batch, rng):
        metrics_ = self._metrics(self._outputs(params, batch, False, rng), batch)
        mean = lambda pair: pair[0] / jnp.maximum(pair[1], 1.0)  # noqa: E731
        return (mean(metrics_["start_loss"]) + mean(metrics_["end_loss"])) / 2, metrics_

    def eval_fn(self, params, batch):
        """Nothing per batch: dev windows carry no answer positions; the dev set is scored
        by the official metrics of ``evaluate_extra``."""
        del params, batch
        return {}

    def eval_batches(self, batch_size_per_host, process_index, process_count):
        return []  # see eval_fn

    def predictions(self, params, mesh) -> squad_postprocess.SquadPredictions:
        start, end = self.predict(params, self.dev, mesh)
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

    def write_predictions(self, params, mesh, output_dir: str) -> list[str]:
        """predictions.json, nbest_predictions.json (and null_odds.json for v2.0) of the
        dev set, as the original run_squad.py writes them."""
        start, end = self.predict(params, self.dev, mesh)
        if jax.process_index() != 0:
            return []
        results = squad_postprocess.results_from_arrays(self.dev["unique_id"], start, end)
        squad_postprocess.write_predictions(
            self.dev_examples, self.dev_features, results, output_dir,
            max_answer_length=self.data.max_answer_length,
            do_lower_case=self.data.do_lower_case,
            version_2_with_negative=self.data.version_2_with_negative,
            null_score_diff_threshold=self.data.null_score_diff_threshold)
        names = ["predictions.json", "nbest_predictions.json"]
        names += ["null_odds.json"] if self.data.version_2_with_negative else []
        return [os.path.join(output_dir, name) for name in names]
