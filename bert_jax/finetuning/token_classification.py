"""Named-entity recognition (CoNLL-2003) as a task of the shared engine.

Each word's label sits on its first word piece; the other pieces, [CLS], [SEP] and padding
have weight 0 (``ner_data``). Loss: cross-entropy over the weighted positions. The dev set
is scored at the entity level exactly as the ``conlleval`` script does (``conlleval.py``):
its F1 picks the best checkpoint.
"""

import logging
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tensorflow as tf

from bert_jax.finetuning import conlleval, ner_data
from bert_jax.finetuning.base import FinetuneTask
from bert_jax.finetuning.heads import BertForTokenClassification
from transformer_jax.engine import losses

log = logging.getLogger(__name__)


def read_sentences(data: ml_collections.ConfigDict, which: str):
    """(sentences, labels) of the train or dev split: CoNLL column files or TFDS."""
    if data.source == "tfds":
        split = data.train_split if which == "train" else data.eval_split
        return ner_data.tfds_sentences(data.tfds_name, split, data.data_dir or None)
    if data.source == "files":
        path = data.train_file if which == "train" else data.dev_file
        if not path:
            raise ValueError(f"data.source='files' needs data.{which}_file (a CoNLL file)")
        return ner_data.read_conll(path, tuple(data.labels)), tuple(data.labels)
    raise ValueError(f"unknown data.source {data.source!r}; use 'files' or 'tfds'")


class TokenClassificationTask(FinetuneTask):
    """CoNLL-style tagging: one label per word, scored by conlleval."""

    name = "bert_ner"

    def __init__(self, config: ml_collections.ConfigDict, workdir: str):
        super().__init__(config, workdir)
        train_sentences, self.labels = read_sentences(self.data, "train")
        self.dev_sentences, dev_labels = read_sentences(self.data, "dev")
        if tuple(dev_labels) != tuple(self.labels):
            raise ValueError(f"dev labels {dev_labels} differ from train labels {self.labels}")
        self.head_hparams = {"num_labels": len(self.labels)}
        self.model = BertForTokenClassification(self.model_cfg, len(self.labels))
        featurize = lambda sentences: ner_data.featurize_ner(  # noqa: E731
            self.tokenizer, sentences, self.labels, self.data.max_seq_length)
        self.train = self._arrays(featurize(train_sentences))
        self.dev_features = featurize(self.dev_sentences)
        self.dev = self._arrays(self.dev_features)
        log.info("NER: %d training windows, %d dev sentences", len(self.train["input_ids"]),
                 len(self.dev_sentences))

    @staticmethod
    def _arrays(features: ner_data.NerFeatures) -> dict[str, np.ndarray]:
        arrays = features.model_inputs()
        # Padding rows of an eval batch get weight 0 through example_weights.
        arrays["example_weights"] = np.ones(features.num_windows, np.float32)
        return arrays

    @property
    def main_metric(self) -> str:
        return "f1"

    def _metrics(self, logits, batch) -> dict:  # logits [B, L, K]
        weights = batch["label_weights"] * batch["example_weights"][:, None]  # [B, L]
        labels = jnp.maximum(batch["label_ids"], 0)  # ignored positions (-1) carry weight 0
        return {"cross_entropy": losses.weighted_cross_entropy(logits, labels, weights),
                "token_accuracy": losses.weighted_accuracy(logits, labels, weights)}

    def predicted_tags(self, params, mesh) -> list[list[str]]:
        predicted = self.predict(params, self.dev, mesh).argmax(-1)  # [W, L]
        return ner_data.tags_from_predictions(self.dev_features, predicted,
                                              self.dev_sentences, self.labels)

    def evaluate_extra(self, params, step, mesh) -> dict[str, float]:
        result = conlleval.evaluate_sequences([s.tags for s in self.dev_sentences],
                                              self.predicted_tags(params, mesh))
        return {k: float(result[k]) for k in ("precision", "recall", "f1")}

    def write_predictions(self, params, mesh, output_dir: str) -> list[str]:
        """The dev set in conlleval's input format: word, gold tag, predicted tag."""
        tags = self.predicted_tags(params, mesh)
        if jax.process_index() != 0:
            return []
        tf.io.gfile.makedirs(output_dir)
        path = os.path.join(output_dir, "dev_predictions.conll")
        ner_data.write_conll_predictions(path, self.dev_sentences, tags)
        return [path]
