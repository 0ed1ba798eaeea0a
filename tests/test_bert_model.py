"""Tests for bert_jax/{model,heads}.py on a tiny BERT with odd sizes.

Batch 3, length 7, hidden 32, 4 heads (head dim 8), feed-forward 37, vocabulary 29,
2 layers, 3 masked positions per sequence. Row 1 has 2 padded positions, row 2 has 4.
"""
import functools

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from bert_jax.finetuning.heads import BertForSequenceClassification
from bert_jax.heads import BertForPreTraining, MaskedLMHead
from bert_jax.model import BERT_SIZES, BertConfig, BertEncoder
from tiny import padded_bert_inputs
from transformer_jax.engine import optim

B, L, D, V, P = 3, 7, 32, 29, 3
TINY = dict(vocab_size=V, hidden_size=D, num_layers=2, num_heads=4, intermediate_size=37,
            max_position_embeddings=16, type_vocab_size=3)
REAL_LENGTHS = (7, 5, 3)


def tiny_config(**overrides) -> BertConfig:
    return BertConfig.from_dict({**TINY, **overrides})


def make_batch(length: int = L, seed: int = 0):
    """ids/mask/segments [B, length] with rows padded past REAL_LENGTHS; positions [B, P]."""
    ids, mask, segments = padded_bert_inputs(V, REAL_LENGTHS, length, seed)
    positions = np.array([[1, 4, 6], [0, 2, 4], [1, 2, 2]], np.int32)  # all at real tokens
    return ids, mask, segments, positions


@functools.lru_cache(maxsize=None)
def init_pretraining(**overrides):
    cfg = tiny_config(**overrides)
    model = BertForPreTraining(cfg)
    ids, mask, segments, positions = make_batch()
    variables = jax.jit(model.init)(jax.random.key(0), ids, mask, segments, positions)
    return cfg, model, nn.unbox(variables["params"])


@functools.lru_cache(maxsize=None)
def jitted_apply(**overrides):
    cfg, model, params = init_pretraining(**overrides)
    return jax.jit(lambda p, *args: model.apply({"params": p}, *args))


def encoder_apply(cfg, bert_params, ids, mask, segments):
    return BertEncoder(cfg).apply({"params": bert_params}, ids, mask, segments)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_shapes_and_dtypes(dtype):
    cfg, model, params = init_pretraining(dtype=dtype)
    ids, mask, segments, positions = make_batch()
    mlm, nsp = jitted_apply(dtype=dtype)(params, ids, mask, segments, positions)
    assert mlm.shape == (B, P, V) and mlm.dtype == jnp.float32
    assert nsp.shape == (B, 2) and nsp.dtype == jnp.float32
    assert np.isfinite(mlm).all() and np.isfinite(nsp).all()
    seq, pooled = encoder_apply(cfg, params["bert"], ids, mask, segments)
    assert seq.shape == (B, L, D) and seq.dtype == jnp.dtype(dtype)
    assert pooled.shape == (B, D) and pooled.dtype == jnp.dtype(dtype)
    # Storage stays float32 whatever the compute dtype.
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
    if dtype == "bfloat16":  # the same params in fp32: close, but really computed in bf16
        _, _, fp32_params = init_pretraining()
        mlm32, nsp32 = jitted_apply()(fp32_params, ids, mask, segments, positions)
        for low, full in ((mlm, mlm32), (nsp, nsp32)):  # measured: 0.9% and 0.3% of the max
            np.testing.assert_allclose(low, full, atol=0.03 * np.abs(full).max())
        assert not np.array_equal(mlm, mlm32)


def test_every_param_has_logical_axes():
    cfg = tiny_config()
    ids, mask, segments, positions = make_batch()
    boxed = jax.eval_shape(lambda: BertForPreTraining(cfg).init(
        jax.random.key(0), ids, mask, segments, positions))["params"]
    leaves = jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.Partitioned))
    assert leaves and all(isinstance(x, nn.LogicallyPartitioned) for x in leaves)
    assert all(len(x.names) == x.value.ndim for x in leaves)


def test_padding_invariance():
    """Extra padded positions (mask 0, arbitrary ids/segments) leave real outputs unchanged."""
    cfg, _, params = init_pretraining()
    ids, mask, segments, positions = make_batch()
    seq, pooled = encoder_apply(cfg, params["bert"], ids, mask, segments)
    rng = np.random.default_rng(1)
    extra = 4
    ids2 = np.concatenate([ids, rng.integers(0, V, (B, extra)).astype(np.int32)], 1)
    mask2 = np.concatenate([mask, np.zeros((B, extra), np.int32)], 1)
    seg2 = np.concatenate([segments, rng.integers(0, 3, (B, extra)).astype(np.int32)], 1)
    # Garbage in the already-padded slots too.
    ids2[mask2 == 0] = rng.integers(0, V, int((mask2 == 0).sum()))
    seq2, pooled2 = encoder_apply(cfg, params["bert"], ids2, mask2, seg2)
    for b, n in enumerate(REAL_LENGTHS):
        np.testing.assert_allclose(seq2[b, :n], seq[b, :n], atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(pooled2, pooled, atol=1e-5, rtol=1e-5)
    mlm, nsp = jitted_apply()(params, ids, mask, segments, positions)
    mlm2, nsp2 = BertForPreTraining(cfg).apply({"params": params}, ids2, mask2, seg2, positions)
    np.testing.assert_allclose(mlm2, mlm, atol=1e-4, rtol=1e-5)
    np.testing.assert_allclose(nsp2, nsp, atol=1e-5, rtol=1e-5)


def test_segment_embedding_matters():
    cfg, _, params = init_pretraining()
    ids, mask, segments, _ = make_batch()
    seq, _ = encoder_apply(cfg, params["bert"], ids, mask, segments)
    seq0, _ = encoder_apply(cfg, params["bert"], ids, mask, np.zeros_like(segments))
    # Row 0 has segment-1 tokens at positions 3..6: every real output changes.
    assert np.abs(np.asarray(seq0[0]) - np.asarray(seq[0])).max(axis=-1).min() > 1e-3
    table = params["bert"]["segment_embed"]["embedding"]
    assert table.shape == (3, D) and np.abs(table[0] - table[1]).max() > 0


def test_embedding_sum_layer_norm_matches_numpy():
    cfg, _, params = init_pretraining()
    ids, mask, segments, _ = make_batch()
    _, state = BertEncoder(cfg).apply({"params": params["bert"]}, ids, mask, segments,
                                      mutable=["intermediates"])
    (embedded,) = state["intermediates"]["embedding_output"]
    p = jax.tree.map(np.asarray, params["bert"])
    x = (p["token_embed"]["embedding"][ids] + p["segment_embed"]["embedding"][segments]
         + p["position_embedding"][None, :L]).astype(np.float64)  # [B, L, D]
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    ln = p["embed_layer_norm"]
    expected = (x - mean) / np.sqrt(var + 1e-12) * ln["scale"] + ln["bias"]
    np.testing.assert_allclose(embedded, expected, atol=1e-5, rtol=1e-5)
    # BERT does not scale token embeddings by sqrt(D); the init is truncated N(0, 0.02).
    emb = p["token_embed"]["embedding"]
    assert np.abs(emb).max() <= 2 * 0.02 + 1e-7 and 0.01 < emb.std() < 0.02


def test_mlm_only_at_gathered_positions_equals_full_then_gathered():
    cfg, model, params = init_pretraining()
    ids, mask, segments, positions = make_batch()
    mlm, _ = jitted_apply()(params, ids, mask, segments, positions)
    full, _ = model.apply({"params": params}, ids, mask, segments, None)  # [B, L, V]
    assert full.shape == (B, L, V)
    # numpy's gather, not the model's own: a batch-indexing slip there would show up here.
    expected = np.take_along_axis(np.asarray(full), np.asarray(positions)[..., None], 1)
    np.testing.assert_allclose(mlm, expected, atol=1e-5, rtol=1e-5)  # [B, P, V]
    # The repeated position (row 2 asks for position 2 twice) gives identical logits.
    np.testing.assert_array_equal(mlm[2, 1], mlm[2, 2])

    # Nothing of shape [B, L, V] is ever computed when positions are given: the vocabulary
    # projection runs on the gathered rows only.
    def shapes(*args):
        jaxpr = jax.make_jaxpr(lambda p: model.apply({"params": p}, *args))(params)
        return {tuple(v.aval.shape) for eqn in jaxpr.jaxpr.eqns for v in eqn.outvars}
    assert (B, L, V) not in shapes(ids, mask, segments, positions)
    assert (B, L, V) in shapes(ids, mask, segments, None)  # the check does see a full head


@pytest.mark.parametrize("model_name", ["pretraining", "classification"])
def test_weight_decay_mask_on_bert_decays_exactly_the_matrices(model_name):
    """On BERT's own param trees (not names a test chose): every kernel and embedding is
    decayed; biases (the attention's are [N, H]) and LayerNorm parameters (all 1-D) are not.
    A renamed LayerNorm module that the name rules missed would fail here."""
    cfg = tiny_config()
    ids = jnp.zeros((1, 5), jnp.int32)

    def init():
        if model_name == "pretraining":
            return BertForPreTraining(cfg).init(jax.random.key(0), ids, ids, ids, None)
        return BertForSequenceClassification(cfg, num_labels=3).init(
            jax.random.key(0), ids, ids, ids)

    params = nn.unbox(jax.eval_shape(init)["params"])
    shapes = flax.traverse_util.flatten_dict(params)
    mask = flax.traverse_util.flatten_dict(optim.decay_mask(params))
    assert mask == {path: len(leaf.shape) > 1 and not path[-1].endswith("bias")
                    for path, leaf in shapes.items()}
    assert 0 < sum(mask.values()) < len(mask)


def test_mlm_output_weights_are_tied_to_token_embeddings():
    cfg, model, params = init_pretraining()
    # No separate output kernel: the head owns a transform, a LayerNorm and a bias [V].
    head = params["mlm"]
    assert set(head) == {"transform", "layer_norm", "output_bias"}
    assert head["output_bias"].shape == (V,)
    assert head["transform"]["kernel"].shape == (D, D)
    # The logits are the head applied with the encoder's own token table as W_out.
    ids, mask, segments, positions = make_batch()
    mlm, _ = jitted_apply()(params, ids, mask, segments, positions)
    seq, _ = encoder_apply(cfg, params["bert"], ids, mask, segments)
    table = params["bert"]["token_embed"]["embedding"]  # [V, D]
    tied = MaskedLMHead(cfg).apply(
        {"params": head}, seq, jnp.asarray(positions),
        lambda h: jnp.einsum("BPD,VD->BPV", h, table))  # [B, P, V]
    np.testing.assert_allclose(mlm, tied, atol=1e-5, rtol=1e-5)
    # Gradient through the output layer reaches the embedding rows of unseen tokens too.
    unseen = sorted(set(range(V)) - set(ids.ravel().tolist()))
    grads = jax.grad(lambda p: model.apply({"params": p}, ids, mask, segments, positions)[0]
                     .sum())(params)
    emb_grad = np.asarray(grads["bert"]["token_embed"]["embedding"])
    assert unseen and np.abs(emb_grad[np.asarray(unseen)]).max() > 0


def test_dropout_is_a_call_argument():
    cfg, model, params = init_pretraining()
    ids, mask, segments, positions = make_batch()
    apply = functools.partial(model.apply, {"params": params}, ids, mask, segments, positions)
    det, _ = apply(deterministic=True)
    det2, _ = apply(deterministic=True, rngs={"dropout": jax.random.key(5)})
    np.testing.assert_array_equal(det, det2)
    a, _ = apply(deterministic=False, rngs={"dropout": jax.random.key(1)})
    a2, _ = apply(deterministic=False, rngs={"dropout": jax.random.key(1)})
    b, _ = apply(deterministic=False, rngs={"dropout": jax.random.key(2)})
    np.testing.assert_array_equal(a, a2)
    assert np.abs(np.asarray(a) - np.asarray(b)).max() > 1e-4
    assert np.abs(np.asarray(a) - np.asarray(det)).max() > 1e-4


def bert_param_count(layers: int, hidden: int, ffn: int, vocab: int,
                     positions: int = 512, types: int = 2) -> int:
    """BERT's parameter count from its architecture, pooler and pretraining heads included."""
    embeddings = (vocab + positions + types) * hidden + 2 * hidden  # tables + LayerNorm
    attention = 4 * (hidden * hidden + hidden)  # Q, K, V, O with biases
    feed_forward = hidden * ffn + ffn + ffn * hidden + hidden
    layer = attention + feed_forward + 2 * 2 * hidden  # two LayerNorms
    pooler = hidden * hidden + hidden
    mlm = hidden * hidden + hidden + 2 * hidden + vocab  # transform, LayerNorm, output bias
    nsp = hidden * 2 + 2
    return embeddings + layers * layer + pooler + mlm + nsp


def count_params(cfg: BertConfig) -> int:
    ids = jnp.zeros((1, 8), jnp.int32)
    shapes = jax.eval_shape(lambda: BertForPreTraining(cfg).init(
        jax.random.key(0), ids, ids, ids, jnp.zeros((1, 2), jnp.int32)))["params"]
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nn.unbox(shapes)))


def test_base_param_count_matches_bert():
    expected = bert_param_count(layers=12, hidden=768, ffn=3072, vocab=30522)
    assert expected == 110_106_428  # BERT-base with pooler, MLM transform and NSP
    assert count_params(BertConfig.from_size("base")) == expected
    assert count_params(tiny_config()) == bert_param_count(2, D, 37, V, positions=16, types=3)


@pytest.mark.parametrize("size", sorted(BERT_SIZES))
def test_released_sizes_build(size):
    cfg = BertConfig.from_size(size)
    layers, hidden, heads = {"tiny": (2, 128, 2), "mini": (4, 256, 4), "small": (4, 512, 8),
                             "medium": (8, 512, 8), "base": (12, 768, 12),
                             "large": (24, 1024, 16)}[size]
    assert (cfg.num_layers, cfg.hidden_size, cfg.num_heads) == (layers, hidden, heads)
    assert cfg.intermediate_size == 4 * hidden and cfg.vocab_size == 30522
    t = cfg.to_transformer_config()
    assert t.qkv_dim == 64 and t.num_encoder_layers == layers and t.d_ff == 4 * hidden
    assert (t.pre_layer_norm, t.activation, t.attention_bias) == (False, "gelu", True)
    assert t.layer_norm_epsilon == 1e-12 and t.dropout_rate == 0.1
    assert t.attention_dropout_rate == 0.1


def test_config_validation():
    with pytest.raises(ValueError, match="unknown BERT config keys.*hiden_size"):
        BertConfig.from_dict({**TINY, "hiden_size": 32})
    with pytest.raises(ValueError, match="unknown BERT size"):
        BertConfig.from_size("huge")
    with pytest.raises(ValueError, match="not divisible"):
        tiny_config(num_heads=5)
    with pytest.raises(ValueError, match="dtype"):
        tiny_config(dtype="fp16")
    cfg, _, params = init_pretraining()
    too_long = np.ones((1, 17), np.int32)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        encoder_apply(cfg, params["bert"], too_long, too_long, 0 * too_long)


def test_sharded_fsdp_tp_matches_unsharded():
    """Params born under fsdp_tp logical rules give the unsharded model's outputs."""
    from transformer_jax.engine import sharding as sharding_lib

    cfg, model, params = init_pretraining()
    ids, mask, segments, positions = (np.concatenate([x, x[:1]]) for x in make_batch())
    expected = model.apply({"params": params}, ids, mask, segments, positions)
    mesh = sharding_lib.make_mesh("fsdp_tp", {"data": 1, "fsdp": 2, "tensor": 4})
    rules = sharding_lib.logical_rules("fsdp_tp")
    with nn.logical_axis_rules(rules):
        boxed = jax.eval_shape(lambda: model.init(
            jax.random.key(0), ids, mask, segments, positions))["params"]
    shardings = sharding_lib.logical_to_shardings(boxed, mesh, rules)
    # Odd sizes (vocab 29, ffn 37) are replicated by fit_spec; D = 32 shards.
    assert shardings["bert"]["pooler"]["kernel"].spec == PartitionSpec("fsdp", "tensor")
    assert shardings["bert"]["position_embedding"].spec == PartitionSpec(None, "fsdp")
    sharded = jax.device_put(params, shardings)
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        got = jax.jit(lambda p, *a: model.apply({"params": p}, *a))(
            sharded, ids, mask, segments, positions)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, atol=1e-5, rtol=1e-5)
