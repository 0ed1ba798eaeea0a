"""Tiny model configs for tests: odd sizes so that a swapped axis fails loudly.

Import from a test file as ``from tiny import tiny_transformer_config`` (pytest puts the
``tests/`` folder on ``sys.path``). Shapes used with these configs across the tests:
batch 3, source length 7, target length 5.
"""

from transformer_jax.model import TransformerConfig

TINY_TRANSFORMER = dict(
    vocab_size=13,
    d_model=32,
    num_heads=4,          # head dim 8
    d_ff=37,
    num_encoder_layers=2,
    num_decoder_layers=2,
    dropout_rate=0.1,
    attention_dropout_rate=0.0,
    max_len=64,
)

PAD_ID = 0
BOS_ID = 2


def tiny_transformer_config(**overrides) -> TransformerConfig:
    """A 2+2-layer Transformer with d_model 32, 4 heads, d_ff 37, vocabulary 13."""
    return TransformerConfig.from_dict({**TINY_TRANSFORMER, **overrides})
