"""BERT's pretraining heads and the model that joins them to the encoder.

Legend: B batch, L sequence length, P masked positions per sequence
(max_predictions_per_seq), D hidden size, V vocabulary.

The MLM head runs only at the gathered masked positions: its transform and the [D, V]
output matmul cost P/L of the full-sequence head (P=20 of L=128 in BERT's recipe). Its
output weights are the encoder's token embedding table (``BertEncoder.attend``); the head
owns only an output bias [V]. The encoder's last layer, too, computes only the rows the
heads read ([CLS] and the masked positions; ``EncoderStack``'s ``output_positions``).
"""

from typing import Callable

import flax.linen as nn
import jax.numpy as jnp

from bert_jax.model import BertConfig, BertEncoder, bert_init
from transformer_jax.layers import (
    ACTIVATIONS, Array, constrain, gather_rows as gather_positions, layer_norm, logical)


class MaskedLMHead(nn.Module):
    """logits = LayerNorm(gelu(h W + b)) E^T + output_bias, at the masked positions only."""

    config: BertConfig

    @nn.compact
    def __call__(self, sequence_output: Array, masked_lm_positions: Array | None,
                 attend: Callable[[Array], Array]) -> Array:
        """sequence_output [B, L, D]; masked_lm_positions int [B, P], or None for all L.

        ``attend`` maps [B, P, D] -> [B, P, V] float32 with the tied embedding table.
        Returns float32 logits [B, P, V].
        """
        cfg = self.config
        if masked_lm_positions is None:
            h = sequence_output  # [B, L, D]: every position (for tests and analysis)
        else:
            h = gather_positions(sequence_output, masked_lm_positions)  # [B, P, D]
        h = constrain(h, ("act_batch", "act_length", "act_embed"))
        h = nn.Dense(
            cfg.hidden_size, dtype=cfg.compute_dtype, param_dtype=cfg.storage_dtype,
            name="transform", kernel_init=logical(bert_init(cfg), ("embed", "mlp")),
            bias_init=logical(nn.initializers.zeros, ("mlp",)))(h)  # [B, P, D]
        h = ACTIVATIONS["gelu"](h)
        h = layer_norm(cfg.layer_norm_eps, cfg.storage_dtype, "layer_norm")(h)  # fp32
        h = h.astype(cfg.compute_dtype)
        logits = attend(h)  # [B, P, V] float32
        bias = self.param("output_bias", logical(nn.initializers.zeros, ("vocab",)),
                          (cfg.vocab_size,), cfg.storage_dtype)  # [V]
        logits = logits.astype(jnp.float32) + jnp.asarray(bias, jnp.float32)[None, None]
        return constrain(logits, ("act_batch", "act_length", "act_vocab"))


class NextSentenceHead(nn.Module):
    """IsNext / NotNext classifier on the pooled [CLS] output: [B, D] -> float32 [B, 2]."""

    config: BertConfig

    @nn.compact
    def __call__(self, pooled_output: Array) -> Array:
        cfg = self.config
        # A [D, 2] matmul: computing it in float32 costs nothing and keeps the logits exact.
        return nn.Dense(
            2, dtype=jnp.float32, param_dtype=cfg.storage_dtype, name="classifier",
            kernel_init=logical(bert_init(cfg), ("embed", None)),
            bias_init=logical(nn.initializers.zeros, (None,)))(pooled_output)  # [B, 2]


class BertForPreTraining(nn.Module):
    """Encoder + MLM head (tied to the token embeddings) + NSP head.

    Param tree: ``bert`` (the encoder, reusable on its own for fine-tuning and feature
    extraction), ``mlm`` (transform, layer_norm, output_bias) and ``nsp`` (classifier).
    """

    config: BertConfig

    @nn.compact
    def __call__(self, input_ids: Array, input_mask: Array, segment_ids: Array,
                 masked_lm_positions: Array | None,
                 deterministic: bool = True) -> tuple[Array, Array]:
        """Ids, mask, segments int [B, L]; positions int [B, P] ->
        (mlm_logits float32 [B, P, V], nsp_logits float32 [B, 2])."""
        bert = BertEncoder(self.config, name="bert")
        # The encoder returns only the masked rows ([B, P, D]; all L rows when positions
        # is None), so the head gathers nothing more.
        masked_output, pooled_output = bert(
            input_ids, input_mask, segment_ids, deterministic=deterministic,
            output_positions=masked_lm_positions)
        mlm_logits = MaskedLMHead(self.config, name="mlm")(
            masked_output, None, bert.attend)  # [B, P, V]
        nsp_logits = NextSentenceHead(self.config, name="nsp")(pooled_output)  # [B, 2]
        return mlm_logits, nsp_logits
