"""BERT fine-tuning models: one per task family, as in google-research/bert's
``run_classifier.py`` / ``run_squad.py`` and section 4 of the BERT paper.

Legend: B batch, C choices, L sequence length, D hidden size, K labels.

Each model holds the encoder as ``BertEncoder(config, name="bert")``, so the param tree is
``{"bert": ..., "<head>": ...}`` and the ``bert`` subtree of a pretraining checkpoint
(``BertForPreTraining``) slots in by path; only the small head is freshly initialised.

- ``BertForSequenceClassification``  pooled [CLS] -> dropout -> Dense(K): [B, K]
  (``num_labels=1``: regression, e.g. STS-B, returning [B]).
- ``BertForQuestionAnswering``       sequence -> Dense(2): start, end logits [B, L] each
  (``run_squad.py``: no dropout before the span head).
- ``BertForTokenClassification``     sequence -> dropout -> Dense(K): [B, L, K].
- ``BertForMultipleChoice``          [B, C, L] -> [B*C, L] -> pooled -> dropout -> Dense(1)
  -> [B, C].

Heads' kernels are truncated normal (``initializer_range``) with zero biases. Their matmuls
are tiny ([D, K]), so they run in float32 whatever the compute dtype: logits are always fp32.
Heads' params carry logical names ``("embed", None)`` / ``(None,)`` (the label axis is small
and stays replicated).
"""

import flax.linen as nn
import jax.numpy as jnp

from bert_jax.model import BertConfig, BertEncoder, bert_init
from transformer_jax.dropout import Dropout
from transformer_jax.layers import Array, constrain, logical


def _head(config: BertConfig, features: int, name: str) -> nn.Dense:
    """Dense(features) in float32 over the hidden axis: [..., D] -> float32 [..., features]."""
    return nn.Dense(
        features, dtype=jnp.float32, param_dtype=config.storage_dtype, name=name,
        kernel_init=logical(bert_init(config), ("embed", None)),
        bias_init=logical(nn.initializers.zeros, (None,)))


def _check_num_labels(num_labels: int) -> None:
    if num_labels < 1:
        raise ValueError(f"num_labels={num_labels} must be >= 1")


class BertForSequenceClassification(nn.Module):
    """Sentence(-pair) classification on the pooled [CLS] output (GLUE).

    Param tree: ``bert`` (the encoder) and ``classifier`` (kernel [D, K], bias [K]).
    """

    config: BertConfig
    num_labels: int  # K; 1 means regression (STS-B)

    @nn.compact
    def __call__(self, input_ids: Array, input_mask: Array | None = None,
                 segment_ids: Array | None = None, deterministic: bool = True) -> Array:
        """Ids, mask (1 = real token), segments int [B, L] -> float32 logits [B, K],
        or predictions [B] when ``num_labels == 1``."""
        _check_num_labels(self.num_labels)
        cfg = self.config
        _, pooled = BertEncoder(cfg, name="bert")(
            input_ids, input_mask, segment_ids, deterministic=deterministic)  # [B, D]
        pooled = Dropout(cfg.hidden_dropout)(pooled, deterministic=deterministic)
        logits = _head(cfg, self.num_labels, "classifier")(pooled)  # [B, K] float32
        logits = constrain(logits, ("act_batch", None))
        if self.num_labels == 1:
            return logits[:, 0]  # [B]
        return logits


class BertForQuestionAnswering(nn.Module):
    """Extractive QA (SQuAD): a start and an end logit at every position.

    Param tree: ``bert`` and ``qa_outputs`` (kernel [D, 2]: column 0 start, column 1 end;
    the original's ``cls/squad/output_weights`` [2, D] transposed).
    """

    config: BertConfig

    @nn.compact
    def __call__(self, input_ids: Array, input_mask: Array | None = None,
                 segment_ids: Array | None = None,
                 deterministic: bool = True) -> tuple[Array, Array]:
        """Ids, mask, segments int [B, L] -> (start_logits, end_logits) float32 [B, L] each.

        Padded positions get logits too; masking them (and the question) out of the span
        search is the task's job, as in ``run_squad.py``.
        """
        cfg = self.config
        sequence, _ = BertEncoder(cfg, name="bert")(
            input_ids, input_mask, segment_ids, deterministic=deterministic)  # [B, L, D]
        logits = _head(cfg, 2, "qa_outputs")(sequence)  # [B, L, 2] float32
        logits = constrain(logits, ("act_batch", "act_length", None))
        start_logits = logits[..., 0]  # [B, L]
        end_logits = logits[..., 1]  # [B, L]
        return start_logits, end_logits


class BertForTokenClassification(nn.Module):
    """Per-token tagging (NER): dropout then Dense(K) at every position.

    Param tree: ``bert`` and ``classifier`` (kernel [D, K], bias [K]).
    """

    config: BertConfig
    num_labels: int  # K

    @nn.compact
    def __call__(self, input_ids: Array, input_mask: Array | None = None,
                 segment_ids: Array | None = None, deterministic: bool = True) -> Array:
        """Ids, mask, segments int [B, L] -> float32 logits [B, L, K]."""
        _check_num_labels(self.num_labels)
        cfg = self.config
        sequence, _ = BertEncoder(cfg, name="bert")(
            input_ids, input_mask, segment_ids, deterministic=deterministic)  # [B, L, D]
        sequence = Dropout(cfg.hidden_dropout)(sequence, deterministic=deterministic)
        logits = _head(cfg, self.num_labels, "classifier")(sequence)  # [B, L, K] float32
        return constrain(logits, ("act_batch", "act_length", None))


class BertForMultipleChoice(nn.Module):
    """Multiple choice (SWAG): each (context, choice c) pair is a sequence; one score each,
    a softmax over the C choices is the task's loss.

    Param tree: ``bert`` and ``classifier`` (kernel [D, 1], bias [1]).
    """

    config: BertConfig

    @nn.compact
    def __call__(self, input_ids: Array, input_mask: Array | None = None,
                 segment_ids: Array | None = None, deterministic: bool = True) -> Array:
        """Ids, mask, segments int [B, C, L] -> float32 logits [B, C]."""
        cfg = self.config
        batch, choices, length = input_ids.shape

        def flat(x: Array | None) -> Array | None:
            return None if x is None else x.reshape(batch * choices, length)  # [B*C, L]

        _, pooled = BertEncoder(cfg, name="bert")(
            flat(input_ids), flat(input_mask), flat(segment_ids),
            deterministic=deterministic)  # [B*C, D]
        pooled = Dropout(cfg.hidden_dropout)(pooled, deterministic=deterministic)
        logits = _head(cfg, 1, "classifier")(pooled)  # [B*C, 1] float32
        logits = logits.reshape(batch, choices)  # [B*C, 1] -> [B, C]
        return constrain(logits, ("act_batch", None))
