"""The hashed dropout mask: the keep rate, uniform bits, independence between neighbouring
elements, rows, steps and call sites, sharding invariance, and nn.Dropout's contract."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from scipy import stats

from transformer_jax.dropout import Dropout, keep_mask, random_bits

SHAPE = (3, 7, 4096)  # 86,016 elements


def key(step: int = 0, impl: str = "threefry4x32"):
    return jax.random.fold_in(jax.random.key(0, impl=impl), step)


def within(observed: float, expected: float, n: int, sigmas: float = 5.0) -> bool:
    """|observed - expected| of a mean of n Bernoulli(expected) draws within a few sigmas."""
    return abs(observed - expected) < sigmas * np.sqrt(expected * (1 - expected) / n)


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_keep_rate_is_one_minus_rate(rate):
    keep = np.asarray(keep_mask(key(), rate, SHAPE))
    assert within(keep.mean(), 1 - rate, keep.size)
    for axis in range(3):  # no row, position or feature is favoured
        others = tuple(a for a in range(3) if a != axis)
        n = keep.size // keep.shape[axis]
        if n >= 1000:
            assert all(within(m, 1 - rate, n) for m in keep.mean(axis=others)), axis
        else:  # few draws each (21 per feature): their counts must follow Binomial(n, 1 - p)
            assert binomial_fit_pvalue(keep.sum(axis=others), n, 1 - rate) > 1e-4, axis


def binomial_fit_pvalue(counts: np.ndarray, n: int, p: float) -> float:
    """Chi-square goodness of fit of counts to Binomial(n, p), pooling bins expected < 5."""
    expected = len(counts) * stats.binom.pmf(np.arange(n + 1), n, p)
    observed = np.bincount(counts, minlength=n + 1).astype(float)
    keep_bins = expected >= 5
    pooled_expected, pooled_observed = expected[~keep_bins].sum(), observed[~keep_bins].sum()
    e = np.append(expected[keep_bins], pooled_expected)
    o = np.append(observed[keep_bins], pooled_observed)
    return stats.chisquare(o, e * o.sum() / e.sum()).pvalue


@pytest.mark.parametrize("impl", ["threefry4x32", "threefry2x32", "rbg"])
def test_bits_are_uniform_in_high_and_low_bits(impl):
    bits = np.asarray(random_bits(key(impl=impl), SHAPE)).reshape(-1)
    top_byte = np.bincount(bits >> 24, minlength=256)
    low_byte = np.bincount(bits & 0xFF, minlength=256)
    assert stats.chisquare(top_byte).pvalue > 1e-4
    assert stats.chisquare(low_byte).pvalue > 1e-4


def test_neighbours_rows_steps_and_keys_are_independent():
    """Joint keep frequency of two masks = (1 - p)^2 when they are independent."""
    p = 0.5
    first = np.asarray(keep_mask(key(0), p, SHAPE))
    pairs = {
        "next feature": (first[..., :-1], first[..., 1:]),
        "next position": (first[:, :-1], first[:, 1:]),
        "next row": (first[:-1], first[1:]),
        "next step": (first, np.asarray(keep_mask(key(1), p, SHAPE))),
        "other call site": (first, np.asarray(keep_mask(jax.random.fold_in(key(0), 7), p,
                                                         SHAPE))),
    }
    for name, (a, b) in pairs.items():
        assert within((a & b).mean(), (1 - p) ** 2, a.size), name
        assert not np.array_equal(a, b), name


def test_two_dropout_layers_in_one_model_draw_different_masks():
    class Two(nn.Module):
        @nn.compact
        def __call__(self, x):
            return Dropout(0.5)(x, deterministic=False), Dropout(0.5)(x, deterministic=False)

    ones = jnp.ones(SHAPE, jnp.float32)
    a, b = (np.asarray(m) > 0 for m in Two().apply({}, ones, rngs={"dropout": key()}))
    assert within((a & b).mean(), 0.25, a.size)


def test_contract_of_nn_dropout_scaling_gradient_and_no_ops():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 7, 37)), jnp.float32)
    layer = Dropout(0.3)
    apply = lambda x: layer.apply({}, x, deterministic=False, rngs={"dropout": key()})
    out = np.asarray(apply(x))
    kept = out != 0  # x is never exactly 0
    assert 0.6 < kept.mean() < 0.8
    np.testing.assert_allclose(out[kept], np.asarray(x)[kept] / 0.7, rtol=1e-6)
    grad = jax.grad(lambda x: apply(x).sum())(x)
    np.testing.assert_allclose(np.asarray(grad), kept / 0.7, rtol=1e-6)
    np.testing.assert_array_equal(layer.apply({}, x, deterministic=True), x)
    np.testing.assert_array_equal(
        Dropout(0.0).apply({}, x, deterministic=False, rngs={"dropout": key()}), x)
    with pytest.raises(ValueError, match=r"dropout rate 1.0 must be in \[0, 1\)"):
        Dropout(1.0).apply({}, x, deterministic=False, rngs={"dropout": key()})


def test_mask_does_not_depend_on_the_sharding():
    ones = np.ones((4, 6, 512), np.float32)

    def mask(x):
        return Dropout(0.1).apply({}, x, deterministic=False, rngs={"dropout": key()}) > 0

    expected = np.asarray(mask(ones))
    mesh = jax.make_mesh((2, 4), ("a", "b"), axis_types=(jax.sharding.AxisType.Explicit,) * 2)
    for spec in (P("a", None, "b"), P(None, "a", "b"), P(None, None, ("a", "b")), P("b", "a")):
        sharded = jax.device_put(ones, jax.sharding.NamedSharding(mesh, spec))
        np.testing.assert_array_equal(np.asarray(jax.jit(mask)(sharded)), expected, str(spec))


def test_bits_past_two_to_the_32_elements_do_not_repeat():
    """The flat index wraps at 2^32; the row number keeps those elements' bits distinct."""
    shape = (2, 2**16, 2**16)  # 2^33 elements: only traced, never materialised
    first = jax.jit(lambda: random_bits(key(), shape)[0, :2, :5])
    wrapped = jax.jit(lambda: random_bits(key(), shape)[1, :2, :5])  # flat index + 2^32
    assert not np.any(np.asarray(first()) == np.asarray(wrapped()))


def test_a_row_past_two_to_the_32_elements_fails_naming_the_fix():
    with pytest.raises(ValueError, match="exceed the 2\\^32 counter; move more of them"):
        jax.eval_shape(lambda: random_bits(key(), (2, 2**17, 2**16)))
