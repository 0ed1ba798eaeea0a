"""The contract between a task (what to learn) and the trainer (how to train).

Translation, BERT pretraining and each fine-tuning family implement ``Task``; the trainer
knows nothing about models. Metrics are dicts of ``(sum, weight)`` pairs so that padding,
packing and uneven batches never bias an average: the host divides once, at the end.
"""

import abc
from typing import Any, Iterable, Iterator, Mapping

import jax
import numpy as np

Batch = Mapping[str, Any]
Metrics = dict[str, tuple[jax.Array, jax.Array]]


class Task(abc.ABC):
    """What the engine needs from a task. All array methods are pure and jit-compatible."""

    #: Short name stored in checkpoint metadata ("translation", "bert_pretraining", ...).
    name: str = "task"

    @abc.abstractmethod
    def model_hparams(self) -> dict[str, Any]:
        """Hyperparameters that fix the parameter shapes; saved with every checkpoint and
        compared on restore so a workdir of another model is refused, not half-loaded."""

    def compatibility_hparams(self) -> dict[str, Any]:
        """What a checkpoint must match to be restored: parameter shapes and vocabulary.

        Settings that leave the parameters' meaning intact (dropout, compute dtype) are
        left out, so a run may resume with them changed.
        """
        return self.model_hparams()

    @property
    @abc.abstractmethod
    def model_dim(self) -> int:
        """d_model, used by the paper's rsqrt learning-rate schedule."""

    @abc.abstractmethod
    def init_params(self, rng: jax.Array, batch: Batch) -> Any:
        """Parameters with ``nn.Partitioned`` metadata (boxed), from a batch of any size."""

    @abc.abstractmethod
    def loss_fn(self, params: Any, batch: Batch, rng: jax.Array) -> tuple[jax.Array, Metrics]:
        """Training loss (a scalar, mean over the global batch) and metrics."""

    @abc.abstractmethod
    def eval_fn(self, params: Any, batch: Batch) -> Metrics:
        """Deterministic evaluation metrics of one batch, as (sum, weight) pairs."""

    @abc.abstractmethod
    def dummy_batch(self, batch_size: int) -> dict[str, np.ndarray]:
        """An all-zero batch with the training batch's keys, shapes and dtypes."""

    @abc.abstractmethod
    def train_batches(self, batch_size_per_host: int, start_batch: int, process_index: int,
                      process_count: int) -> Iterator[dict[str, np.ndarray]]:
        """Endless per-host numpy batches, skipping the first ``start_batch`` global steps."""

    @abc.abstractmethod
    def eval_batches(self, batch_size_per_host: int, process_index: int,
                     process_count: int) -> Iterable[dict[str, np.ndarray]]:
        """One finite pass over the held-out set; every host yields the same count."""

    def tokens_in_batch(self, batch: Batch) -> int:
        """Non-padding tokens processed per step, for tokens/s (numpy on the host)."""
        return int(sum(np.count_nonzero(np.asarray(v)) for k, v in batch.items()
                       if k in ("inputs", "targets", "input_ids")))

    def flops_per_step(self, batch: Batch) -> float:
        """Model FLOPs (forward + backward) of one training step; 0 if unknown."""
        return 0.0

    def initial_params(self, params: Any) -> Any | None:
        """Pretrained params to start a fresh run from (e.g. an imported BERT checkpoint),
        or None to keep ``params``, the fresh initialisation (sharded; leaves that a
        checkpoint lacks, such as a new head, keep their fresh values)."""
        return None

    def evaluate_extra(self, params: Any, step: int, mesh: Any) -> dict[str, float]:
        """Task metrics that need more than a forward pass (e.g. BLEU after beam search)."""
        return {}
