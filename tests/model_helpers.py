"""Shared by the Transformer model tests (test_model.py, test_model_incremental.py,
test_model_layers.py): the tiny shapes (batch 3, source length 7, target length 5,
vocabulary 13), a batch of token ids, the tiny model initialised once per config, and its
teacher-forced forward pass.

Import from a test file as ``from model_helpers import ...`` (pytest puts ``tests/`` on
``sys.path``).
"""
import functools

import flax.linen as nn
import jax
import numpy as np

from tiny import BOS_ID, PAD_ID, tiny_transformer_config
from transformer_jax.model import Transformer

B, S, L, V = 3, 7, 5, 13


def make_batch(seed: int = 0, pad_targets: bool = False):
    """Source [3, 7] with trailing PAD in rows 1 and 2; decoder inputs [3, 5] starting with BOS.

    Real tokens are drawn from 3..12 so they never collide with PAD (0) or BOS (2).
    """
    rng = np.random.default_rng(seed)
    inputs = rng.integers(3, V, size=(B, S)).astype(np.int32)
    inputs[1, 5:] = PAD_ID
    inputs[2, 3:] = PAD_ID
    decoder_inputs = rng.integers(3, V, size=(B, L)).astype(np.int32)
    decoder_inputs[:, 0] = BOS_ID
    if pad_targets:
        decoder_inputs[2, 3:] = PAD_ID
    return inputs, decoder_inputs


@functools.lru_cache(maxsize=None)
def init_model(**overrides):
    """(model, unboxed params) for the tiny config with ``overrides``; cached per config."""
    model = Transformer(tiny_transformer_config(**overrides))
    inputs, decoder_inputs = make_batch()
    variables = model.init(jax.random.key(0), inputs, decoder_inputs)
    return model, nn.unbox(variables)["params"]


def forward(model, params, inputs, decoder_inputs, **kwargs):
    return np.asarray(model.apply({"params": params}, inputs, decoder_inputs, **kwargs))
