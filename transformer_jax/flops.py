"""Analytic model FLOPs of the Transformer, for MFU.

Counts the matmul FLOPs the step actually performs on padded shapes (2 per multiply-add);
a training step is forward + backward = 3x forward. Element-wise work (softmax, norms) is
left out, as is conventional for MFU.
"""

from transformer_jax.model import TransformerConfig


def encoder_layer_flops(cfg: TransformerConfig, tokens: int, key_length: int,
                        query_tokens: int | None = None) -> float:
    """Forward FLOPs of one encoder layer over ``tokens`` positions; ``query_tokens``: the
    rows it outputs when fewer than ``tokens`` (keys and values still cover all tokens)."""
    queries = tokens if query_tokens is None else query_tokens
    inner = cfg.num_heads * cfg.qkv_dim
    key_value = 2 * tokens * cfg.d_model * inner * 2  # K, V
    query_output = 2 * queries * cfg.d_model * inner * 2  # Q, O
    scores_and_mix = 2 * queries * key_length * inner * 2  # QK^T and weights @ V
    ffn = 2 * queries * cfg.d_model * cfg.d_ff * 2
    return key_value + query_output + scores_and_mix + ffn


def decoder_layer_flops(cfg: TransformerConfig, target_tokens: int, target_length: int,
                        source_tokens: int, source_length: int) -> float:
    """Forward FLOPs of one decoder layer (self-attention, cross-attention, FFN)."""
    inner = cfg.num_heads * cfg.qkv_dim
    self_attention = encoder_layer_flops(cfg, target_tokens, target_length) - (
        2 * target_tokens * cfg.d_model * cfg.d_ff * 2)
    cross_q_and_out = 2 * target_tokens * cfg.d_model * inner * 2
    cross_k_and_v = 2 * source_tokens * cfg.d_model * inner * 2
    cross_mix = 2 * target_tokens * source_length * inner * 2
    ffn = 2 * target_tokens * cfg.d_model * cfg.d_ff * 2
    return self_attention + cross_q_and_out + cross_k_and_v + cross_mix + ffn


def transformer_forward_flops(cfg: TransformerConfig, batch: int, source_length: int,
                              target_length: int) -> float:
    """Forward FLOPs of the encoder-decoder on a [batch, S] / [batch, L] padded batch."""
    source_tokens, target_tokens = batch * source_length, batch * target_length
    encoder = cfg.num_encoder_layers * encoder_layer_flops(cfg, source_tokens, source_length)
    decoder = cfg.num_decoder_layers * decoder_layer_flops(
        cfg, target_tokens, target_length, source_tokens, source_length)
    logits = 2 * target_tokens * cfg.d_model * cfg.vocab_size
    return encoder + decoder + logits


def transformer_train_flops(cfg: TransformerConfig, batch: int, source_length: int,
                            target_length: int) -> float:
    """Forward + backward FLOPs of one training step (backward = 2x forward)."""
    return 3.0 * transformer_forward_flops(cfg, batch, source_length, target_length)
