"""Incremental decoding glue: a key/value cache and a ``tokens_to_logits`` for search.

``transformer_jax.decode`` is model-agnostic; this module adapts the Transformer to it.
Legend: B batch, N rows being decoded (batch, or batch * beam), S source length, T maximum
decode length, D model dim, V vocabulary.
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp

from transformer_jax.model import Transformer

Cache = Any


def init_cache(model: Transformer, params: Any, encoded: jax.Array, inputs: jax.Array,
               max_decode_len: int) -> Cache:
    """An all-zero cache for ``encoded.shape[0]`` rows and up to ``max_decode_len`` steps.

    Shapes come from ``jax.eval_shape`` of a full-length decode, so nothing is computed.
    """
    rows = encoded.shape[0]
    dummy_targets = jnp.ones((rows, max_decode_len), jnp.int32)  # [N, T]

    def shapes():
        return model.apply({"params": params}, encoded, inputs, dummy_targets, decode=True,
                           method=Transformer.decode, mutable=["cache"])[1]["cache"]

    return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(shapes))


def make_tokens_to_logits(model: Transformer, params: Any, encoded: jax.Array,
                          inputs: jax.Array) -> Callable[[jax.Array, Cache], tuple]:
    """Returns fn(ids [N, 1], cache) -> (logits [N, V] float32, new cache)."""

    def tokens_to_logits(ids: jax.Array, cache: Cache):
        logits, updated = model.apply(
            {"params": params, "cache": cache}, encoded, inputs, ids, decode=True,
            method=Transformer.decode, mutable=["cache"])
        return logits[:, 0, :], updated["cache"]  # [N, 1, V] -> [N, V]

    return tokens_to_logits
