"""Incremental decoding (transformer_jax/incremental.py) on the tiny model: feeding the
decoder inputs one token at a time through the key/value cache reproduces the teacher-forced
logits, eagerly and under jit, and the cache holds one slot per decode step.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from model_helpers import B, L, V, forward, init_model, make_batch
from transformer_jax import incremental
from transformer_jax.model import Transformer


# ----------------------------------------------------------------------------------------
# 6. incremental decoding with a cache
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("pre_layer_norm,use_jit,max_decode_len", [
    (False, False, L), (True, False, L), (False, True, L), (True, True, L),
    (False, True, L + 4)])
def test_cached_decoding_matches_teacher_forcing(pre_layer_norm, use_jit, max_decode_len):
    """Feeding decoder inputs one token at a time through the key/value cache reproduces the
    teacher-forced logits at every position (source rows with padding included). With a cache
    longer than the sequence, as beam search allocates, the still-empty slots stay masked."""
    model, params = init_model(pre_layer_norm=pre_layer_norm)
    inputs, decoder_inputs = make_batch(seed=3)
    expected = forward(model, params, inputs, decoder_inputs)

    encoded = model.apply({"params": params}, inputs, method=Transformer.encode)
    cache = incremental.init_cache(model, params, encoded, inputs,
                                  max_decode_len=max_decode_len)
    for leaf in jax.tree_util.tree_leaves(cache):
        assert not np.any(np.asarray(leaf))
    tokens_to_logits = incremental.make_tokens_to_logits(model, params, encoded, inputs)
    if use_jit:
        tokens_to_logits = jax.jit(tokens_to_logits)
    steps = []
    for t in range(L):
        logits, cache = tokens_to_logits(jnp.asarray(decoder_inputs[:, t:t + 1]), cache)
        assert logits.shape == (B, V) and logits.dtype == jnp.float32
        steps.append(np.asarray(logits))
    np.testing.assert_allclose(np.stack(steps, axis=1), expected, atol=1e-5)


def test_cache_has_one_slot_per_decode_step():
    """init_cache allocates keys/values [rows, max_decode_len, heads, head_dim] per decoder
    self-attention layer, and one position counter."""
    model, params = init_model()
    inputs, _ = make_batch()
    encoded = model.apply({"params": params}, inputs, method=Transformer.encode)
    cache = incremental.init_cache(model, params, encoded, inputs, max_decode_len=9)
    for i in range(2):
        layer = cache["decoder"][f"layer_{i}"]["self_attention"]
        assert layer["cached_key"].shape == (B, 9, 4, 8)
        assert layer["cached_value"].shape == (B, 9, 4, 8)
        assert "cross_attention" not in cache["decoder"][f"layer_{i}"]
    assert cache["decoder_positions"]["position_index"].shape == ()
