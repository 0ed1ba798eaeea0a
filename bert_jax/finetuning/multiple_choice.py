"""SWAG-style multiple choice as a task of the shared engine: each (context, ending) pair
is encoded, the pooled [CLS] of each choice is scored, and a softmax over the choices is
trained with cross-entropy. Accuracy (the official SWAG metric) picks the best checkpoint.
"""

import csv
import os

import jax
import ml_collections
import numpy as np
import tensorflow as tf

from bert_jax.finetuning import swag_data
from bert_jax.finetuning.base import FinetuneTask
from bert_jax.finetuning.heads import BertForMultipleChoice
from transformer_jax.engine import losses


class MultipleChoiceTask(FinetuneTask):
    """SWAG CSV files (``data.train_file``, ``data.dev_file``, optional unlabelled
    ``data.test_file``), four endings each."""

    name = "bert_multiple_choice"

    def __init__(self, config: ml_collections.ConfigDict, workdir: str):
        if not (config.data.train_file and config.data.dev_file):
            raise ValueError("multiple choice needs data.train_file and data.dev_file "
                             "(SWAG's train.csv / val.csv)")
        super().__init__(config, workdir)
        self.model = BertForMultipleChoice(self.model_cfg)
        self.train, _ = self._read(self.data.train_file)
        self.dev, self.dev_ids = self._read(self.data.dev_file)

    def _read(self, path: str, has_labels: bool = True) -> tuple[dict[str, np.ndarray],
                                                                 list[str]]:
        """(arrays: [N, C, L] inputs, [N] labels and weights; the N fold-ind ids)."""
        examples = swag_data.read_swag_csv(path, has_labels=has_labels)
        arrays = swag_data.featurize_multiple_choice(
            self.tokenizer, examples, self.data.max_seq_length)
        arrays["example_weights"] = np.ones(len(arrays["label_ids"]), np.float32)
        return arrays, [e.example_id for e in examples]

    def write_predictions(self, params, mesh, output_dir: str) -> list[str]:
        """``dev_predictions.csv`` and, with data.test_file, ``test_predictions.csv``: each
        example's fold-ind, predicted ending and the four choice scores (logits)."""
        splits = [("dev", (self.dev, self.dev_ids))]
        if self.data.test_file:
            splits.append(("test", self._read(self.data.test_file, has_labels=False)))
        paths = []
        for split, (arrays, ids) in splits:
            logits = self.predict(params, arrays, mesh)  # [N, C]
            if jax.process_index() != 0:
                continue
            tf.io.gfile.makedirs(output_dir)
            paths.append(os.path.join(output_dir, f"{split}_predictions.csv"))
            with tf.io.gfile.GFile(paths[-1], "w") as f:
                writer = csv.writer(f, lineterminator="\n")
                writer.writerow(["fold-ind", "prediction"]
                                + [f"score{c}" for c in range(logits.shape[1])])
                for example_id, scores in zip(ids, logits):
                    writer.writerow([example_id, int(scores.argmax())]
                                    + [f"{float(x):.6g}" for x in scores])
        return paths

    @property
    def main_metric(self) -> str:
        return "accuracy"

    def _metrics(self, logits, batch) -> dict:  # logits [B, C]
        weights, labels = batch["example_weights"], batch["label_ids"]
        return {"cross_entropy": losses.weighted_cross_entropy(logits, labels, weights),
                "accuracy": losses.weighted_accuracy(logits, labels, weights)}
