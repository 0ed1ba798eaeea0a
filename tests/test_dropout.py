"""transformer_jax.dropout: same numbers as flax's Dropout, mask drawn once per step."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transformer_jax.dropout import Dropout


def _key(seed: int = 0) -> jax.Array:
    return jax.random.key(seed, impl="threefry4x32")


def _apply(module_cls, rate: float, x: jax.Array, key: jax.Array,
           deterministic: bool = False) -> jax.Array:
    return module_cls(rate).apply({}, x, deterministic=deterministic, rngs={"dropout": key})


def _loss(module_cls, rate: float):
    """A loss in which the dropout output has three consumers, as in a Transformer layer's
    backward pass (scaled, transposed for a weight gradient, added to a residual)."""
    def loss(w, x, key):
        h = _apply(module_cls, rate, x @ w, key)  # [3, 7, 37]
        return jnp.sum(jnp.einsum("BLF,GF->BLG", h, w) ** 2) + jnp.sum(h * x @ w) + jnp.sum(h)
    return loss


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_outputs_and_gradients_are_bit_identical_to_flax_dropout(rate):
    x = jax.random.normal(jax.random.key(1), (3, 7, 37))
    w = jax.random.normal(jax.random.key(2), (37, 37)) / 6
    np.testing.assert_array_equal(_apply(Dropout, rate, x, _key()), _apply(nn.Dropout, rate, x, _key()))
    ours = jax.jit(jax.grad(_loss(Dropout, rate), argnums=(0, 1)))(w, x, _key(3))
    flax_grads = jax.jit(jax.grad(_loss(nn.Dropout, rate), argnums=(0, 1)))(w, x, _key(3))
    for a, b in zip(ours, flax_grads):
        np.testing.assert_array_equal(a, b)


def test_drops_the_rate_and_scales_the_kept_elements():
    x = jnp.ones((3, 7, 4099))
    y = np.asarray(_apply(Dropout, 0.3, x, _key()))
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
    different = np.asarray(_apply(Dropout, 0.3, x, _key(1))) != 0
    assert abs((kept == different).mean() - (0.7**2 + 0.3**2)) < 0.01  # independent keys


def test_deterministic_rate_zero_and_rate_one():
    x = jax.random.normal(jax.random.key(1), (3, 7, 5))
    np.testing.assert_array_equal(_apply(Dropout, 0.4, x, _key(), deterministic=True), x)
    np.testing.assert_array_equal(_apply(Dropout, 0.0, x, _key()), x)
    np.testing.assert_array_equal(_apply(Dropout, 1.0, x, _key()), np.zeros_like(x))
    grad = jax.grad(lambda v: _apply(Dropout, 1.0, v, _key()).sum())(x)
    np.testing.assert_array_equal(grad, np.zeros_like(x))  # finite: no 0 / 0


def _random_bit_fusions(loss) -> list[str]:
    """Headers of the compiled gradient's fused computations that run Threefry (its rounds
    xor) over the [3, 7, 37] activation (not the [4] key folds)."""
    w, x = jnp.ones((37, 37)), jnp.ones((3, 7, 37))
    hlo = jax.jit(jax.grad(loss)).lower(w, x, _key()).compile().as_text()
    headers = [c.lstrip().split("\n")[0] for c in hlo.split("\n\n")
               if c.lstrip().startswith("%fused") and re.search(r"\bxor\(", c)]
    return [h for h in headers if "37]" in h]


def test_the_mask_is_drawn_once_in_forward_and_backward_on_cpu():
    assert jax.default_backend() == "cpu"
    # What this module avoids: flax's draw fused into several consumers of the mask.
    assert len(_random_bit_fusions(_loss(nn.Dropout, 0.1))) > 1
    # Here: only the two (identical) branches of the cond, one of which runs, each
    # producing just the stored bool mask.
    ours = _random_bit_fusions(_loss(Dropout, 0.1))
    assert len(ours) == 2 and all(h.endswith("-> pred[3,7,37] {") for h in ours), ours
