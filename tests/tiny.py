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


def padded_bert_inputs(vocab_size: int, real_lengths: tuple[int, ...], length: int,
                       seed: int = 0):
    """BERT inputs, int32 [B, length] with B = len(real_lengths): random non-special ids,
    input_mask 1 on the first real_lengths[b] positions of row b, segment 1 on the second
    half of the real tokens (0 elsewhere, padding included)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab_size, size=(len(real_lengths), length)).astype(np.int32)
    mask = np.zeros(ids.shape, np.int32)
    segments = np.zeros(ids.shape, np.int32)
    for b, n in enumerate(real_lengths):
        mask[b, :n] = 1
        segments[b, n // 2:n] = 1
    return ids, mask, segments
