"""The Transformer's building blocks on their own, against the paper's formulas written out in
plain Python and numpy: the sinusoidal position table, GELU, the embedding and its tied output
layer (forward and hand-written VJP), multi-head attention, and the residual sub-layer's
LayerNorm placement and dropout (transformer_jax/{layers,attention}.py, SubLayer of model.py).
"""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from model_helpers import B, L, S, V
from tiny import PAD_ID, tiny_transformer_config
from transformer_jax import attention, layers
from transformer_jax.model import SubLayer


# ----------------------------------------------------------------------------------------
# 7-9. building blocks against the paper's formulas
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("d_model", [16, 7])
def test_sinusoidal_table_matches_paper_formula(d_model):
    """PE[pos, 2i] = sin(pos / 10000^(2i/d)) and PE[pos, 2i+1] = cos(pos / 10000^(2i/d)),
    computed here with plain Python math; an odd d_model keeps the last sine column."""
    table = layers.sinusoidal_table(max_len=50, d_model=d_model)
    assert table.shape == (50, d_model) and table.dtype == np.float32
    for pos in (0, 1, 7, 23, 49):
        for i in range((d_model + 1) // 2):
            angle = pos / 10000 ** (2 * i / d_model)
            assert table[pos, 2 * i] == pytest.approx(math.sin(angle), abs=1e-6)
            if 2 * i + 1 < d_model:
                assert table[pos, 2 * i + 1] == pytest.approx(math.cos(angle), abs=1e-6)


def test_sinusoidal_positions_use_given_positions():
    """SinusoidalPositions adds table row `positions[b, l]` (packed) or row l (default)."""
    x = np.random.default_rng(0).normal(size=(2, 4, 6)).astype(np.float32)
    positions = np.array([[0, 1, 0, 1], [3, 2, 1, 0]], np.int32)
    table = layers.sinusoidal_table(10, 6)
    module = layers.SinusoidalPositions(max_len=10)
    out = np.asarray(module.apply({}, x, positions))
    np.testing.assert_allclose(out, x + table[positions], atol=1e-6)
    out_default = np.asarray(module.apply({}, x))
    np.testing.assert_allclose(out_default, x + table[None, :4], atol=1e-6)


def test_gelu_is_bert_erf_formula_with_exact_gradient():
    """GELU(x) = x Phi(x) (BERT's erf form) and GELU'(x) = Phi(x) + x phi(x), against float64
    math.erf, deep in both tails too; and it agrees with flax's erfc-based exact GELU."""
    x = np.concatenate([np.linspace(-9.0, 9.0, 37), [-30.0, -5.5, 0.0, 1e-3, 30.0]])
    x = x.reshape(6, 7).astype(np.float32)
    x64 = x.astype(np.float64)
    phi_cdf = 0.5 * (1.0 + np.vectorize(math.erf)(x64 / math.sqrt(2.0)))
    phi_pdf = np.exp(-0.5 * x64**2) / math.sqrt(2.0 * math.pi)
    gelu = layers.ACTIVATIONS["gelu"]
    value, grad = jax.vmap(jax.vmap(jax.value_and_grad(gelu)))(jnp.asarray(x))
    np.testing.assert_allclose(value, x64 * phi_cdf, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(grad, phi_cdf + x64 * phi_pdf, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(value, nn.gelu(x, approximate=False), rtol=1e-6, atol=1e-6)
    assert gelu(jnp.asarray(x, jnp.bfloat16)).dtype == jnp.bfloat16


def test_embed_scales_by_sqrt_d_and_attend_is_transpose():
    """Embed(ids) = E[ids] * sqrt(d); Embed.attend(x) = x @ E^T (the tied output layer)."""
    embed = layers.Embed(num_embeddings=V, features=32)
    ids = np.array([[3, 0, 12], [7, 7, 1]], np.int32)
    variables = nn.unbox(embed.init(jax.random.key(1), ids))
    table = np.asarray(variables["params"]["embedding"])
    assert table.shape == (V, 32)
    out = np.asarray(embed.apply(variables, ids))
    np.testing.assert_allclose(out, table[ids] * math.sqrt(32), rtol=1e-6, atol=1e-6)
    x = np.random.default_rng(2).normal(size=(2, 3, 32)).astype(np.float32)
    logits = np.asarray(embed.apply(variables, x, method=layers.Embed.attend))
    assert logits.dtype == np.float32
    np.testing.assert_allclose(logits, x @ table.T, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_tied_logits_backward_matches_autodiff(dtype):
    """The hand-written VJP of the tied output layer = autodiff of x @ E^T, in both dtypes."""
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(3, 7, 32)), dtype)
    table = jnp.asarray(rng.normal(size=(V, 32)), dtype)
    dlogits = jnp.asarray(rng.normal(size=(3, 7, V)), jnp.float32)

    def plain(x, table):
        return jnp.einsum("BLD,VD->BLV", x, table, preferred_element_type=jnp.float32)

    ours, ours_vjp = jax.vjp(layers.tied_logits, x, table)
    ref, ref_vjp = jax.vjp(plain, x, table)
    tolerance = 1e-6 if dtype == jnp.float32 else 2e-2
    np.testing.assert_allclose(ours, ref, rtol=tolerance, atol=tolerance)
    for got, want in zip(ours_vjp(dlogits), ref_vjp(dlogits)):
        assert got.dtype == want.dtype == dtype and got.shape == want.shape
        np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want, np.float32),
                                   rtol=tolerance, atol=tolerance * 10)


def numpy_multi_head_attention(params, xq, xkv, key_is_real, num_heads):
    """The paper's MultiHead(Q, K, V) written out per head in float64 numpy.

    head_i = softmax(Q W_i^Q (K W_i^K)^T / sqrt(d_k)) V W_i^V ; out = Concat(heads) W^O.
    Keys with key_is_real == False get probability 0.
    """
    p = {name: np.asarray(value, np.float64) for name, value in params.items()}
    batch, length, d_model = xq.shape
    out = np.zeros((batch, length, d_model))
    for b in range(batch):
        heads = []
        for i in range(num_heads):
            q = xq[b] @ p["query_kernel"][:, i, :] + p["query_bias"][i]
            k = xkv[b] @ p["key_kernel"][:, i, :] + p["key_bias"][i]
            v = xkv[b] @ p["value_kernel"][:, i, :] + p["value_bias"][i]
            scores = q @ k.T / math.sqrt(q.shape[-1])
            scores = np.where(key_is_real[b][None, :], scores, -np.inf)
            probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
            probs /= probs.sum(axis=-1, keepdims=True)
            heads.append(probs @ v)
        concat = np.concatenate(heads, axis=-1)  # [L, N*H]
        w_o = p["out_kernel"].reshape(-1, d_model)  # [N, H, D] -> [N*H, D]
        out[b] = concat @ w_o + p["out_bias"]
    return out


def test_multi_head_attention_matches_paper_formula():
    """MultiHeadAttention equals a from-scratch per-head numpy implementation of the paper's
    formula, using the module's own (randomised, biased) parameters and a padding mask.
    3 heads of width 5 over d_model 32 so that no axis can be confused with another."""
    num_heads, head_dim, d_model = 3, 5, 32
    mha = attention.MultiHeadAttention(num_heads=num_heads, head_dim=head_dim, use_bias=True)
    rng = np.random.default_rng(4)
    xq = rng.normal(size=(B, L, d_model)).astype(np.float32)
    xkv = rng.normal(size=(B, S, d_model)).astype(np.float32)
    q_tokens = np.full((B, L), 4, np.int32)
    kv_tokens = np.full((B, S), 4, np.int32)
    kv_tokens[1, 4:] = PAD_ID
    kv_tokens[2, 2:] = PAD_ID
    mask = attention.padding_mask(q_tokens, kv_tokens)
    variables = nn.unbox(mha.init(jax.random.key(0), xq, xkv, mask, deterministic=True))
    # Random values everywhere (biases are zero at init) so every parameter matters.
    leaves, treedef = jax.tree_util.tree_flatten(variables["params"])
    keys = jax.random.split(jax.random.key(5), len(leaves))
    params = jax.tree_util.tree_unflatten(
        treedef, [0.3 * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)])
    assert sorted(params) == sorted(f"{name}_{kind}" for name in ("query", "key", "value", "out")
                                    for kind in ("kernel", "bias"))
    for name in ("query", "key", "value"):
        assert params[f"{name}_kernel"].shape == (d_model, num_heads, head_dim)
        assert params[f"{name}_bias"].shape == (num_heads, head_dim)
    assert params["out_kernel"].shape == (num_heads, head_dim, d_model)

    got = np.asarray(mha.apply({"params": params}, xq, xkv, mask, deterministic=True))
    want = numpy_multi_head_attention(params, xq.astype(np.float64), xkv.astype(np.float64),
                                      kv_tokens != PAD_ID, num_heads)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------------
# 10. dropout: the residual sub-layer (LayerNorm placement, residual dropout)
# ----------------------------------------------------------------------------------------


def numpy_layer_norm(x, eps=1e-6):
    x = np.asarray(x, np.float64)
    mean = x.mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + eps)


@pytest.mark.parametrize("pre_layer_norm", [False, True])
def test_sublayer_residual_and_layer_norm_placement(pre_layer_norm):
    """post-LN computes LayerNorm(x + f(x)) (the paper); pre-LN computes x + f(LayerNorm(x)).
    Checked against numpy with a non-linear f, at initial LayerNorm scale 1 and bias 0."""
    cfg = tiny_transformer_config(pre_layer_norm=pre_layer_norm)
    x = np.random.default_rng(6).normal(1.0, 2.0, size=(B, L, 32)).astype(np.float32)
    fn = lambda h: jnp.tanh(h) * 3.0
    sublayer = SubLayer(cfg)
    variables = sublayer.init(jax.random.key(0), x, fn, True)
    out = np.asarray(sublayer.apply(variables, x, fn, True))
    if pre_layer_norm:
        want = x + 3.0 * np.tanh(numpy_layer_norm(x))
    else:
        want = numpy_layer_norm(x + 3.0 * np.tanh(x))
    np.testing.assert_allclose(out, want, atol=1e-5)


def test_residual_dropout_drops_and_rescales_sublayer_output():
    """In training mode the sub-layer output (not the residual) is dropped at dropout_rate and
    survivors are scaled by 1 / (1 - rate): with f = 1 and rate 0.5, out - x is 0 or 2."""
    cfg = tiny_transformer_config(pre_layer_norm=True, dropout_rate=0.5)
    x = np.random.default_rng(7).normal(size=(B, L, 32)).astype(np.float32)
    fn = lambda h: jnp.ones_like(h)
    sublayer = SubLayer(cfg)
    variables = sublayer.init(jax.random.key(0), x, fn, True)
    delta = np.asarray(sublayer.apply(variables, x, fn, False,
                                      rngs={"dropout": jax.random.key(1)})) - x
    dropped, kept = np.isclose(delta, 0.0, atol=1e-6), np.isclose(delta, 2.0, atol=1e-5)
    assert np.all(dropped | kept)
    assert 0.35 < dropped.mean() < 0.65
    np.testing.assert_allclose(np.asarray(sublayer.apply(variables, x, fn, True)) - x, 1.0,
                               atol=1e-6)
