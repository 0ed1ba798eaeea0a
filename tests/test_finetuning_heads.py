"""Tests for bert_jax/finetuning/heads.py on a tiny BERT with odd sizes.

Batch 3, choices 3, length 7, hidden 32, 4 heads (head dim 8), feed-forward 37,
vocabulary 53, 2 layers, 5 labels. Row 1 has 2 padded positions, row 2 has 4.
"""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from bert_jax.finetuning.heads import (BertForMultipleChoice, BertForQuestionAnswering,
                                       BertForSequenceClassification,
                                       BertForTokenClassification)
from bert_jax.heads import BertForPreTraining
from bert_jax.model import BertConfig, BertEncoder
from tiny import padded_bert_inputs

B, C, L, D, V, K = 3, 3, 7, 32, 53, 5
TINY = dict(vocab_size=V, hidden_size=D, num_layers=2, num_heads=4, intermediate_size=37,
            max_position_embeddings=16)
REAL_LENGTHS = (7, 5, 3)
# Real lengths of the [B, C] multiple-choice sequences (each row has every kind).
CHOICE_LENGTHS = ((7, 4, 6), (5, 7, 2), (3, 6, 7))

# name -> (model factory, head param name, multiple-choice inputs?)
MODELS = {
    "classification": (lambda cfg: BertForSequenceClassification(cfg, num_labels=K),
                       "classifier", False),
    "regression": (lambda cfg: BertForSequenceClassification(cfg, num_labels=1),
                   "classifier", False),
    "qa": (BertForQuestionAnswering, "qa_outputs", False),
    "token": (lambda cfg: BertForTokenClassification(cfg, num_labels=K), "classifier", False),
    "choice": (BertForMultipleChoice, "classifier", True),
}
EXPECTED_HEAD_SHAPES = {"classification": (D, K), "regression": (D, 1), "qa": (D, 2),
                        "token": (D, K), "choice": (D, 1)}


def tiny_config(**overrides) -> BertConfig:
    return BertConfig.from_dict({**TINY, **overrides})


def make_batch(length: int = L, seed: int = 0):
    """ids/mask/segments int32 [B, length], rows padded past REAL_LENGTHS."""
    return padded_bert_inputs(V, REAL_LENGTHS, length, seed)


def make_choices(length: int = L, seed: int = 0):
    """ids/mask/segments int32 [B, C, length], padded past CHOICE_LENGTHS."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, V, size=(B, C, length)).astype(np.int32)
    mask = np.zeros((B, C, length), np.int32)
    segments = np.zeros((B, C, length), np.int32)
    for b, row in enumerate(CHOICE_LENGTHS):
        for c, n in enumerate(row):
            mask[b, c, :n] = 1
            segments[b, c, n // 2:n] = 1
    return ids, mask, segments


def inputs_for(name: str, length: int = L, seed: int = 0):
    return make_choices(length, seed) if MODELS[name][2] else make_batch(length, seed)


@functools.lru_cache(maxsize=None)
def init_model(name: str, **overrides):
    cfg = tiny_config(**overrides)
    model = MODELS[name][0](cfg)
    variables = jax.jit(model.init)(jax.random.key(0), *inputs_for(name))
    return cfg, model, nn.unbox(variables["params"])


@functools.lru_cache(maxsize=None)
def jitted_apply(name: str, **overrides):
    _, model, _ = init_model(name, **overrides)
    return jax.jit(lambda p, *args: model.apply({"params": p}, *args))


def encoder_apply(cfg, bert_params, ids, mask, segments):
    return BertEncoder(cfg).apply({"params": bert_params}, ids, mask, segments)


def pad_more(ids, mask, segments, extra: int = 4, seed: int = 1):
    """Appends `extra` padded positions and writes garbage into every padded slot."""
    rng = np.random.default_rng(seed)
    shape = ids.shape[:-1] + (extra,)
    ids2 = np.concatenate([ids, rng.integers(0, V, shape).astype(np.int32)], -1)
    mask2 = np.concatenate([mask, np.zeros(shape, np.int32)], -1)
    seg2 = np.concatenate([segments, rng.integers(0, 2, shape).astype(np.int32)], -1)
    ids2[mask2 == 0] = rng.integers(0, V, int((mask2 == 0).sum()))
    return ids2, mask2, seg2


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_shapes_and_dtypes(name, dtype):
    _, _, params = init_model(name, dtype=dtype)
    out = jitted_apply(name, dtype=dtype)(params, *inputs_for(name))
    expected = {"classification": [(B, K)], "regression": [(B,)], "qa": [(B, L), (B, L)],
                "token": [(B, L, K)], "choice": [(B, C)]}[name]
    outs = list(out) if isinstance(out, tuple) else [out]
    assert [o.shape for o in outs] == expected
    for o in outs:
        assert o.dtype == jnp.float32 and np.isfinite(o).all()
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_param_tree_is_bert_plus_head(name):
    cfg, _, params = init_model(name)
    head = MODELS[name][1]
    assert set(params) == {"bert", head}
    assert params[head]["kernel"].shape == EXPECTED_HEAD_SHAPES[name]
    assert params[head]["bias"].shape == EXPECTED_HEAD_SHAPES[name][1:]
    # The head starts as BERT's: truncated normal at 2 stddev, zero bias.
    assert np.abs(params[head]["kernel"]).max() <= 2 * cfg.initializer_range + 1e-7
    assert not np.asarray(params[head]["bias"]).any()
    # The `bert` subtree is exactly a standalone encoder's ...
    ids, mask, segments = make_batch()
    encoder = jax.eval_shape(lambda: BertEncoder(cfg).init(
        jax.random.key(0), ids, mask, segments))["params"]
    encoder = nn.unbox(encoder)
    assert jax.tree.structure(params["bert"]) == jax.tree.structure(encoder)
    assert jax.tree.map(jnp.shape, params["bert"]) == jax.tree.map(jnp.shape, encoder)
    # ... and so is a pretraining model's, which therefore slots in by path.
    pretrain = nn.unbox(jax.eval_shape(lambda: BertForPreTraining(cfg).init(
        jax.random.key(0), ids, mask, segments, None))["params"])
    assert jax.tree.structure(pretrain["bert"]) == jax.tree.structure(params["bert"])
    assert jax.tree.map(jnp.shape, pretrain["bert"]) == jax.tree.map(jnp.shape, params["bert"])


def test_pretrained_encoder_params_drive_the_head():
    """Warm start: a pretraining model's `bert` params dropped into a fine-tuning model give
    that encoder's outputs under the fine-tuning head."""
    cfg = tiny_config()
    ids, mask, segments = make_batch()
    pretrain = nn.unbox(jax.jit(BertForPreTraining(cfg).init)(
        jax.random.key(7), ids, mask, segments, None)["params"])
    _, model, params = init_model("qa")
    params = {**params, "bert": pretrain["bert"]}
    start, end = model.apply({"params": params}, ids, mask, segments)
    seq, _ = encoder_apply(cfg, pretrain["bert"], ids, mask, segments)  # [B, L, D]
    w, b = params["qa_outputs"]["kernel"], params["qa_outputs"]["bias"]  # [D, 2], [2]
    expected = jnp.einsum("BLD,DK->BLK", seq, w) + b  # [B, L, 2]
    np.testing.assert_allclose(start, expected[..., 0], atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(end, expected[..., 1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_param_has_logical_axes(name):
    cfg = tiny_config()
    boxed = jax.eval_shape(lambda: MODELS[name][0](cfg).init(
        jax.random.key(0), *inputs_for(name)))["params"]
    leaves = jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.Partitioned))
    assert leaves and all(isinstance(x, nn.LogicallyPartitioned) for x in leaves)
    assert all(len(x.names) == x.value.ndim for x in leaves)
    head = boxed[MODELS[name][1]]
    assert head["kernel"].names == ("embed", None)
    assert head["bias"].names == (None,)


def test_classifier_is_dense_on_pooled_output():
    cfg, _, params = init_model("classification")
    ids, mask, segments = make_batch()
    logits = jitted_apply("classification")(params, ids, mask, segments)
    _, pooled = encoder_apply(cfg, params["bert"], ids, mask, segments)  # [B, D]
    w, b = params["classifier"]["kernel"], params["classifier"]["bias"]  # [D, K], [K]
    np.testing.assert_allclose(logits, pooled @ w + b, atol=1e-5, rtol=1e-5)
    # Regression is the same computation with one output, squeezed to [B].
    cfg, _, params = init_model("regression")
    pred = jitted_apply("regression")(params, ids, mask, segments)
    _, pooled = encoder_apply(cfg, params["bert"], ids, mask, segments)
    w, b = params["classifier"]["kernel"], params["classifier"]["bias"]  # [D, 1], [1]
    assert pred.shape == (B,)
    np.testing.assert_allclose(pred, (pooled @ w + b)[:, 0], atol=1e-5, rtol=1e-5)


def test_token_classifier_is_dense_at_every_position():
    cfg, _, params = init_model("token")
    ids, mask, segments = make_batch()
    logits = jitted_apply("token")(params, ids, mask, segments)
    seq, _ = encoder_apply(cfg, params["bert"], ids, mask, segments)  # [B, L, D]
    w, b = params["classifier"]["kernel"], params["classifier"]["bias"]  # [D, K], [K]
    expected = jnp.einsum("BLD,DK->BLK", seq, w) + b  # [B, L, K]
    np.testing.assert_allclose(logits, expected, atol=1e-5, rtol=1e-5)


def test_multiple_choice_equals_each_choice_by_hand():
    """logits[b, c] = pooled(encoder(choice c of row b)) @ w + b, choice by choice."""
    cfg, _, params = init_model("choice")
    ids, mask, segments = make_choices()
    logits = jitted_apply("choice")(params, ids, mask, segments)  # [B, C]
    w, bias = params["classifier"]["kernel"], params["classifier"]["bias"]  # [D, 1], [1]
    for c in range(C):
        _, pooled = encoder_apply(cfg, params["bert"], ids[:, c], mask[:, c],
                                  segments[:, c])  # [B, D]
        np.testing.assert_allclose(logits[:, c], (pooled @ w + bias)[:, 0],
                                   atol=1e-5, rtol=1e-5)
    # Also the same as a one-label sequence classifier holding the same params, per choice.
    seq_cls = BertForSequenceClassification(cfg, num_labels=1)
    for c in range(C):
        np.testing.assert_allclose(
            logits[:, c], seq_cls.apply({"params": params}, ids[:, c], mask[:, c],
                                        segments[:, c]), atol=1e-5, rtol=1e-5)
    # Choices are not mixed up across rows: permuting choices permutes logits.
    perm = np.array([2, 0, 1])
    permuted = jitted_apply("choice")(params, ids[:, perm], mask[:, perm], segments[:, perm])
    np.testing.assert_allclose(permuted, logits[:, perm], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_padding_invariance(name):
    """Extra padded positions (mask 0, garbage ids/segments) leave real outputs unchanged."""
    _, model, params = init_model(name)
    inputs = inputs_for(name)
    out = jitted_apply(name)(params, *inputs)
    out2 = model.apply({"params": params}, *pad_more(*inputs))
    if name == "qa":
        for o, o2 in zip(out, out2):
            for b, n in enumerate(REAL_LENGTHS):
                np.testing.assert_allclose(o2[b, :n], o[b, :n], atol=1e-5, rtol=1e-5)
    elif name == "token":
        for b, n in enumerate(REAL_LENGTHS):
            np.testing.assert_allclose(out2[b, :n], out[b, :n], atol=1e-5, rtol=1e-5)
    else:
        np.testing.assert_allclose(out2, out, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_dropout_is_a_call_argument(name):
    _, model, params = init_model(name)
    apply = functools.partial(model.apply, {"params": params}, *inputs_for(name))

    def flat(out):
        return np.concatenate([np.ravel(o) for o in (out if isinstance(out, tuple) else [out])])

    det = flat(apply(deterministic=True))
    np.testing.assert_array_equal(det, flat(apply(deterministic=True,
                                                  rngs={"dropout": jax.random.key(5)})))
    a = flat(apply(deterministic=False, rngs={"dropout": jax.random.key(1)}))
    a2 = flat(apply(deterministic=False, rngs={"dropout": jax.random.key(1)}))
    b = flat(apply(deterministic=False, rngs={"dropout": jax.random.key(2)}))
    np.testing.assert_array_equal(a, a2)
    assert np.abs(a - b).max() > 1e-4
    assert np.abs(a - det).max() > 1e-4


@pytest.mark.parametrize("name", ["classification", "token", "choice"])
def test_head_dropout_sits_between_encoder_and_dense(name):
    """With deterministic=False the head sees a dropped-out encoder output: its logits are
    not Dense(encoder output), but they are with deterministic=True."""
    _, model, params = init_model(name)
    w, bias = params["classifier"]["kernel"], params["classifier"]["bias"]

    def run(deterministic):
        out, state = model.apply(
            {"params": params}, *inputs_for(name), deterministic=deterministic,
            rngs={"dropout": jax.random.key(3)}, capture_intermediates=True)
        seq, pooled = state["intermediates"]["bert"]["__call__"][0]
        hidden = seq if name == "token" else pooled  # [B, L, D] or [B(*C), D]
        undropped = (hidden @ w + bias).reshape(out.shape)
        return np.abs(np.asarray(out) - np.asarray(undropped)).max()

    assert run(deterministic=True) < 1e-5
    assert run(deterministic=False) > 1e-3


def test_num_labels_validation():
    cfg = tiny_config()
    with pytest.raises(ValueError, match="num_labels"):
        BertForSequenceClassification(cfg, num_labels=0).init(
            jax.random.key(0), *make_batch())
    with pytest.raises(ValueError, match="num_labels"):
        BertForTokenClassification(cfg, num_labels=0).init(jax.random.key(0), *make_batch())


def test_mask_and_segments_default():
    """Omitted mask / segments mean every token real and segment 0, as in BertEncoder."""
    for name in ("classification", "choice"):
        _, model, params = init_model(name)
        ids, _, _ = inputs_for(name)
        np.testing.assert_allclose(
            model.apply({"params": params}, ids),
            model.apply({"params": params}, ids, np.ones_like(ids), np.zeros_like(ids)),
            atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name", ["classification", "qa", "choice"])
def test_sharded_fsdp_tp_matches_unsharded(name):
    """Params born under fsdp_tp logical rules give the unsharded model's outputs."""
    from transformer_jax.engine import sharding as sharding_lib

    _, model, params = init_model(name)
    inputs = tuple(np.concatenate([x, x[:1]]) for x in inputs_for(name))  # batch 4
    expected = model.apply({"params": params}, *inputs)
    mesh = sharding_lib.make_mesh("fsdp_tp", {"data": 1, "fsdp": 2, "tensor": 4})
    rules = sharding_lib.logical_rules("fsdp_tp")
    with nn.logical_axis_rules(rules):
        boxed = jax.eval_shape(lambda: model.init(jax.random.key(0), *inputs))["params"]
    shardings = sharding_lib.logical_to_shardings(boxed, mesh, rules)
    head = MODELS[name][1]
    # The hidden axis of the head kernel shards like every other "embed" axis.
    assert shardings[head]["kernel"].spec == PartitionSpec("fsdp", None)
    sharded = jax.device_put(params, shardings)
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        got = jax.jit(lambda p, *a: model.apply({"params": p}, *a))(sharded, *inputs)
    for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
        np.testing.assert_allclose(g, e, atol=1e-5, rtol=1e-5)
