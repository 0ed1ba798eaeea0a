"""What every fine-tuning task shares: the pretrained encoder and its vocabulary from
``init_checkpoint``, in-memory featurized data batched per epoch, and row-by-row
predictions for the official metrics. A family (classification, SQuAD, NER, multiple
choice) adds its head, loss, data reading and metrics.

Subclasses set ``self.model`` and the featurized ``self.train`` / ``self.dev`` arrays
(``MODEL_KEYS`` plus labels and ``example_weights``) in ``__init__`` after calling
``super().__init__``, and implement ``_metrics`` and ``main_metric``.
"""

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from bert_jax import interop, warm_start
from bert_jax.finetuning import batching, prediction
from bert_jax.model import SHAPE_FIELDS
from bert_jax.tokenization import FullTokenizer
from transformer_jax.engine.task import Task

MODEL_KEYS = ("input_ids", "input_mask", "segment_ids")


def tokenizer_and_model(config: ml_collections.ConfigDict, workdir: str):
    """(pretrained, tokenizer, BertConfig): the checkpoint fixes shape and vocabulary."""
    if not config.init_checkpoint:
        raise ValueError("fine-tuning needs config.init_checkpoint (a Google TF checkpoint, a "
                         "Hugging Face directory or a pretraining workdir)")
    pretrained = interop.load_pretrained(config.init_checkpoint)
    vocab = warm_start.resolve_vocab(pretrained, config.data.vocab_file, workdir)
    tokenizer = FullTokenizer(vocab, config.data.do_lower_case)
    return pretrained, tokenizer, warm_start.model_config(pretrained, config.model)


class FinetuneTask(Task):
    """The shared half of every fine-tuning task (see the module docstring)."""

    train: batching.Arrays
    dev: batching.Arrays
    #: Extra hyperparameters that fix the head's shape (e.g. the number of labels).
    head_hparams: dict[str, Any] = {}

    def __init__(self, config: ml_collections.ConfigDict, workdir: str):
        self.config, self.data = config, config.data
        self._pretrained, self.tokenizer, self.model_cfg = tokenizer_and_model(config, workdir)
        self._predict = None

    @property
    def main_metric(self) -> str:
        raise NotImplementedError

    def steps_per_epoch(self, global_batch_size: int) -> int:
        return batching.steps_per_epoch(self.train, global_batch_size)

    # ---------------------------------------------------------------- identity and shapes
    def model_hparams(self) -> dict[str, Any]:
        return dict(dataclasses.asdict(self.model_cfg), **self.head_hparams)

    def compatibility_hparams(self) -> dict[str, Any]:
        shapes = {k: v for k, v in self.model_hparams().items() if k in SHAPE_FIELDS}
        return dict(shapes, **self.head_hparams, vocab=len(self.tokenizer.ids_to_tokens))

    @property
    def model_dim(self) -> int:
        return self.model_cfg.hidden_size

    def dummy_batch(self, batch_size: int) -> dict[str, np.ndarray]:
        return {key: np.zeros((batch_size,) + value.shape[1:], value.dtype)
                for key, value in self.train.items()}

    # ---------------------------------------------------------------- model
    def _outputs(self, params, batch, deterministic: bool, rng=None):
        return self.model.apply(
            {"params": params}, *(batch[k] for k in MODEL_KEYS), deterministic=deterministic,
            rngs=None if deterministic else {"dropout": rng})

    def init_params(self, rng, batch):
        return self.model.init(rng, *(batch[k] for k in MODEL_KEYS))["params"]

    def initial_params(self, params):
        """The pretrained encoder; the head starts fresh (BERT's recipe)."""
        if self._pretrained is None:
            return None
        params = warm_start.place(self._pretrained, params)
        self._pretrained = None
        return params

    def _metrics(self, outputs, batch) -> dict:
        raise NotImplementedError

    def _loss_key(self) -> str:
        """The (sum, weight) metric that is the training loss."""
        return "cross_entropy"

    def loss_fn(self, params, batch, rng):
        metrics = self._metrics(self._outputs(params, batch, False, rng), batch)
        total, weight = metrics[self._loss_key()]
        return total / jnp.maximum(weight, 1.0), metrics

    def eval_fn(self, params, batch):
        return self._metrics(self._outputs(params, batch, True), batch)

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

    def predict(self, params, arrays: batching.Arrays, mesh) -> Any:
        """The model's outputs for every row of ``arrays`` (numpy, all hosts, in order)."""
        if self._predict is None:
            self._predict = jax.jit(lambda p, b: self._outputs(p, b, True))
        inputs = {k: arrays[k] for k in MODEL_KEYS + ("example_weights",)}
        return prediction.predict_rows(self._predict, params, inputs, mesh,
                                       self.config.eval_batch_size)

    def write_predictions(self, params, mesh, output_dir: str) -> list[str]:
        """The family's prediction files (GLUE submission, SQuAD predictions.json, CoNLL)
        for ``params``; returns their paths. Families without files write none."""
        del params, mesh, output_dir
        return []


def write_best_predictions(trainer, task: FinetuneTask) -> list[str]:
    """After training: the best epoch's params -> ``<workdir>/predictions/``."""
    import flax.linen as nn

    from transformer_jax.engine import checkpoint as ckpt

    best = ckpt.BestParams(trainer.workdir, trainer.config.best_metric,
                           trainer.config.best_mode)
    try:
        with jax.set_mesh(trainer.mesh), nn.logical_axis_rules(trainer.rules):
            params = best.restore(trainer.abstract_state.params)
            return task.write_predictions(params, trainer.mesh,
                                          os.path.join(trainer.workdir, "predictions"))
    finally:
        best.close()
