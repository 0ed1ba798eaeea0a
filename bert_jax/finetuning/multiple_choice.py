"""SWAG-style multiple choice as a task of the shared engine: each (context, ending) pair
is encoded, the pooled [CLS] of each choice is scored, and a softmax over the choices is
trained with cross-entropy. Accuracy (the official SWAG metric) picks the best checkpoint.
"""

import ml_collections
import numpy as np

from bert_jax.finetuning import swag_data
from bert_jax.finetuning.base import FinetuneTask
from bert_jax.finetuning.heads import BertForMultipleChoice
from transformer_jax.engine import losses


class MultipleChoiceTask(FinetuneTask):
    """SWAG CSV files (``data.train_file``, ``data.dev_file``), four endings each."""

    name = "bert_multiple_choice"

    def __init__(self, config: ml_collections.ConfigDict, workdir: str):
        if not (config.data.train_file and config.data.dev_file):
            raise ValueError("multiple choice needs data.train_file and data.dev_file "
                             "(SWAG's train.csv / val.csv)")
        super().__init__(config, workdir)
        self.model = BertForMultipleChoice(self.model_cfg)
        self.train, self.dev = (self._arrays(path) for path in (self.data.train_file,
                                                                self.data.dev_file))

    def _arrays(self, path: str) -> dict[str, np.ndarray]:
        arrays = swag_data.featurize_multiple_choice(
            self.tokenizer, swag_data.read_swag_csv(path, has_labels=True),
            self.data.max_seq_length)  # [N, C, L] inputs, [N] labels
        arrays["example_weights"] = np.ones(len(arrays["label_ids"]), np.float32)
        return arrays

    @property
    def main_metric(self) -> str:
        return "accuracy"

    def _metrics(self, logits, batch) -> dict:  # logits [B, C]
        weights, labels = batch["example_weights"], batch["label_ids"]
        return {"cross_entropy": losses.weighted_cross_entropy(logits, labels, weights),
                "accuracy": losses.weighted_accuracy(logits, labels, weights)}
