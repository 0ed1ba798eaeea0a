"""Analytic model FLOPs of BERT pretraining, for MFU (matmuls only, 2 per multiply-add,
backward = 2x forward), counted on the padded shapes the step computes."""

from bert_jax.model import BertConfig
from transformer_jax import flops as transformer_flops


def pretraining_forward_flops(cfg: BertConfig, batch: int, length: int,
                              predictions: int) -> float:
    """Encoder on [batch, length], pooler, and the MLM head at ``predictions`` positions.

    The unscanned encoder's last layer outputs only [CLS] and the masked rows
    (``EncoderStack``'s ``output_positions``); the scanned one computes every row."""
    tokens, layer_cfg = batch * length, cfg.to_transformer_config()
    full_layer = transformer_flops.encoder_layer_flops(layer_cfg, tokens, length)
    if cfg.scan_layers or not cfg.num_layers:
        encoder = cfg.num_layers * full_layer
    else:
        last_layer = transformer_flops.encoder_layer_flops(
            layer_cfg, tokens, length, query_tokens=batch * (1 + predictions))
        encoder = (cfg.num_layers - 1) * full_layer + last_layer
    pooler = 2 * batch * cfg.hidden_size * cfg.hidden_size
    masked = batch * predictions
    mlm = 2 * masked * cfg.hidden_size * (cfg.hidden_size + cfg.vocab_size)
    nsp = 2 * batch * cfg.hidden_size * 2
    return encoder + pooler + mlm + nsp


def pretraining_train_flops(cfg: BertConfig, batch: int, length: int, predictions: int) -> float:
    return 3.0 * pretraining_forward_flops(cfg, batch, length, predictions)
