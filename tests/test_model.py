"""Tests for the whole Transformer of transformer_jax/model.py.

Shapes, dtypes and parameter tree per variant, masking (causal decoder, bidirectional encoder,
padding, packing), dropout, config validation and the attention weights sown for
visualisation. Incremental decoding is tested in test_model_incremental.py, the building
blocks on their own in test_model_layers.py; the tiny batch and model they share are in
model_helpers.py.

Every property is checked with real numbers on a tiny model (batch 3, source length 7,
target length 5, d_model 32, 4 heads, d_ff 37, vocabulary 13, 2+2 layers). Token 0 is PAD
and decoder inputs start with BOS = 2.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from model_helpers import B, L, S, V, forward, init_model, make_batch
from tiny import BOS_ID, PAD_ID, tiny_transformer_config
from transformer_jax.model import Transformer, TransformerConfig


def other_tokens(tokens: np.ndarray) -> np.ndarray:
    """A different real token (3..12) at every position."""
    return (3 + (tokens - 3 + 4) % (V - 3)).astype(np.int32)


def assert_changed(a, b, at_least=1e-3):
    assert np.max(np.abs(np.asarray(a) - np.asarray(b))) > at_least


# ----------------------------------------------------------------------------------------
# 1. shapes, dtypes and parameter tree per variant
# ----------------------------------------------------------------------------------------

VARIANTS = {
    "post_ln_tied_shared": dict(),
    "pre_ln": dict(pre_layer_norm=True),
    "untied_output": dict(tie_output=False),
    "separate_embeddings": dict(share_embeddings=False),
    "bfloat16_compute": dict(dtype="bfloat16"),
    "bfloat16_untied_separate": dict(dtype="bfloat16", tie_output=False, share_embeddings=False),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_logits_shape_dtype_and_param_tree(name):
    """Logits are [3, 5, 13] float32 for every variant; params are float32 and the tree has
    `shared_embedding` iff embeddings are shared and `logits_dense` iff the output is untied."""
    overrides = VARIANTS[name]
    model, params = init_model(**overrides)
    cfg = model.config
    inputs, decoder_inputs = make_batch()
    logits = model.apply({"params": params}, inputs, decoder_inputs)
    assert logits.shape == (B, L, V)
    assert logits.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(logits)))
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(params)} == {jnp.dtype(jnp.float32)}

    assert ("shared_embedding" in params) == cfg.share_embeddings
    assert ("source_embedding" in params) == (not cfg.share_embeddings)
    assert ("target_embedding" in params) == (not cfg.share_embeddings)
    assert ("logits_dense" in params) == (not cfg.tie_output)
    if not cfg.tie_output:
        assert params["logits_dense"]["kernel"].shape == (cfg.d_model, V)
    has_final_ln = "final_layer_norm" in params["encoder"]
    assert has_final_ln == cfg.pre_layer_norm
    assert ("final_layer_norm" in params["decoder"]) == cfg.pre_layer_norm


@pytest.mark.parametrize("tie_output", [True, False])
def test_output_layer_is_target_embedding_iff_tied(tie_output):
    """With separate embeddings, token 1 (never fed as input) touches the model only through
    the output layer: editing target_embedding[1] changes exactly logits[..., 1] when tied and
    nothing when untied; editing source_embedding[1] never changes anything."""
    model, params = init_model(share_embeddings=False, tie_output=tie_output)
    inputs, decoder_inputs = make_batch()
    assert not np.any(inputs == 1) and not np.any(decoder_inputs == 1)
    base = forward(model, params, inputs, decoder_inputs)

    def with_row_1_changed(table_name):
        edited = jax.tree_util.tree_map(lambda x: x, params)  # shallow copy of the dicts
        table = edited[table_name]["embedding"]
        # A random direction: a constant shift would be invisible to a LayerNorm output.
        shift = jax.random.normal(jax.random.key(7), table.shape[1:])
        edited[table_name] = {"embedding": table.at[1].add(shift)}
        return forward(model, edited, inputs, decoder_inputs)

    target_edit = with_row_1_changed("target_embedding")
    np.testing.assert_array_equal(np.delete(target_edit, 1, axis=-1), np.delete(base, 1, axis=-1))
    if tie_output:
        assert_changed(target_edit[..., 1], base[..., 1])
    else:
        np.testing.assert_array_equal(target_edit, base)
    np.testing.assert_array_equal(with_row_1_changed("source_embedding"), base)


def test_bfloat16_compute_tracks_float32_model():
    """bfloat16 compute with the same float32 params gives logits close to the float32 model
    (it is the same function, only rounded), but not bit-identical (bf16 is really used)."""
    model32, params = init_model()
    model16 = Transformer(tiny_transformer_config(dtype="bfloat16"))
    inputs, decoder_inputs = make_batch()
    logits32 = forward(model32, params, inputs, decoder_inputs)
    logits16 = forward(model16, params, inputs, decoder_inputs)
    assert logits16.dtype == np.float32
    np.testing.assert_allclose(logits16, logits32, atol=0.15)
    assert np.max(np.abs(logits16 - logits32)) > 1e-4


# ----------------------------------------------------------------------------------------
# 2-5. masking: causality, bidirectional encoder, padding, packing
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("t", [1, 2, 4])
def test_decoder_is_causal(t):
    """Changing decoder inputs at positions >= t leaves logits at positions < t unchanged
    and changes the logits at position t."""
    model, params = init_model()
    inputs, decoder_inputs = make_batch()
    changed = decoder_inputs.copy()
    changed[:, t:] = other_tokens(decoder_inputs[:, t:])
    base = forward(model, params, inputs, decoder_inputs)
    after = forward(model, params, inputs, changed)
    np.testing.assert_allclose(after[:, :t], base[:, :t], atol=1e-6)
    for row in range(B):
        assert_changed(after[row, t], base[row, t])


def test_encoder_is_bidirectional():
    """Changing source token 4 of row 0 changes the encoding of positions 0..3 of that row
    (the encoder has no causal mask) and leaves the other rows untouched."""
    model, params = init_model()
    inputs, _ = make_batch()
    changed = inputs.copy()
    changed[0, 4] = other_tokens(inputs[0, 4])
    encode = lambda x: np.asarray(model.apply({"params": params}, x, method=Transformer.encode))
    base, after = encode(inputs), encode(changed)
    for pos in range(4):
        assert_changed(after[0, pos], base[0, pos])
    np.testing.assert_allclose(after[1:], base[1:], atol=1e-6)


@pytest.mark.parametrize("pre_layer_norm", [False, True])
def test_appending_padding_leaves_real_logits_unchanged(pre_layer_norm):
    """Appending 4 PAD columns to the source and 3 to the decoder inputs leaves the logits
    at every real (non-PAD) decoder position unchanged."""
    model, params = init_model(pre_layer_norm=pre_layer_norm)
    inputs, decoder_inputs = make_batch(pad_targets=True)
    longer_inputs = np.pad(inputs, ((0, 0), (0, 4)))
    longer_decoder_inputs = np.pad(decoder_inputs, ((0, 0), (0, 3)))
    base = forward(model, params, inputs, decoder_inputs)
    padded = forward(model, params, longer_inputs, longer_decoder_inputs)
    assert padded.shape == (B, L + 3, V)
    real = decoder_inputs != PAD_ID
    np.testing.assert_allclose(padded[:, :L][real], base[real], atol=1e-5)


def test_source_padding_is_masked_not_just_appended():
    """Replacing the PAD tokens of the source by real tokens changes the logits of that row:
    the padding test above is sensitive to what sits under the mask."""
    model, params = init_model()
    inputs, decoder_inputs = make_batch()
    unpadded = inputs.copy()
    unpadded[2, 3:] = 5
    base = forward(model, params, inputs, decoder_inputs)
    after = forward(model, params, unpadded, decoder_inputs)
    assert_changed(after[2], base[2])
    np.testing.assert_allclose(after[:2], base[:2], atol=1e-6)


# Two examples packed into one row: source lengths 3 and 2, target lengths 2 and 3.
SOURCE_1, TARGET_1 = [5, 6, 7], [BOS_ID, 8]
SOURCE_2, TARGET_2 = [10, 11], [BOS_ID, 12, 9]
PACKED = dict(
    inputs=np.array([SOURCE_1 + SOURCE_2 + [0]], np.int32),
    inputs_segment_ids=np.array([[1, 1, 1, 2, 2, 0]], np.int32),
    inputs_positions=np.array([[0, 1, 2, 0, 1, 0]], np.int32),
    decoder_inputs=np.array([TARGET_1 + TARGET_2 + [0]], np.int32),
    targets_segment_ids=np.array([[1, 1, 2, 2, 2, 0]], np.int32),
    targets_positions=np.array([[0, 1, 0, 1, 2, 0]], np.int32),
)


def test_packed_encoder_matches_examples_run_alone():
    """Encoding a packed row (segment ids 1,1,1,2,2,0 with per-segment positions) gives, for
    each segment, the encoding of that example run alone."""
    model, params = init_model()
    encode = lambda *a: np.asarray(
        model.apply({"params": params}, *a, method=Transformer.encode))
    packed = encode(PACKED["inputs"], PACKED["inputs_segment_ids"], PACKED["inputs_positions"])
    alone_1 = encode(np.array([SOURCE_1], np.int32))
    alone_2 = encode(np.array([SOURCE_2], np.int32))
    np.testing.assert_allclose(packed[0, 0:3], alone_1[0], atol=1e-5)
    np.testing.assert_allclose(packed[0, 3:5], alone_2[0], atol=1e-5)


def test_packed_logits_match_examples_run_alone():
    """Teacher-forced logits of a packed row equal, per target segment, the logits of each
    example run alone: decoder self-attention and encoder-decoder attention both stay within
    their segment, and positions restart at 0 per segment."""
    model, params = init_model()
    packed = forward(model, params, PACKED["inputs"], PACKED["decoder_inputs"],
                     inputs_segment_ids=PACKED["inputs_segment_ids"],
                     inputs_positions=PACKED["inputs_positions"],
                     targets_segment_ids=PACKED["targets_segment_ids"],
                     targets_positions=PACKED["targets_positions"])
    alone_1 = forward(model, params, np.array([SOURCE_1], np.int32),
                      np.array([TARGET_1], np.int32))
    alone_2 = forward(model, params, np.array([SOURCE_2], np.int32),
                      np.array([TARGET_2], np.int32))
    np.testing.assert_allclose(packed[0, 0:2], alone_1[0], atol=1e-5)
    np.testing.assert_allclose(packed[0, 2:5], alone_2[0], atol=1e-5)


def test_packed_cross_attention_sees_only_its_source_segment():
    """Editing the encoder output of source segment 1 changes the logits of target segment 1
    and leaves target segment 2 untouched: encoder-decoder attention is masked by segment."""
    model, params = init_model()
    variables = {"params": params}
    encoded = model.apply(variables, PACKED["inputs"], PACKED["inputs_segment_ids"],
                          PACKED["inputs_positions"], method=Transformer.encode)

    def decode(enc):
        return np.asarray(model.apply(
            variables, enc, PACKED["inputs"], PACKED["decoder_inputs"],
            PACKED["inputs_segment_ids"], PACKED["targets_segment_ids"],
            PACKED["targets_positions"], method=Transformer.decode))

    noise = jax.random.normal(jax.random.key(3), (3, encoded.shape[-1]))
    base, edited = decode(encoded), decode(encoded.at[0, 0:3].add(noise))
    assert_changed(edited[0, 0:2], base[0, 0:2])
    np.testing.assert_allclose(edited[0, 2:5], base[0, 2:5], atol=1e-6)


# ----------------------------------------------------------------------------------------
# 10. dropout
# ----------------------------------------------------------------------------------------


def test_dropout_is_off_when_deterministic_and_keyed_by_rng_otherwise():
    """deterministic=True ignores the dropout rng; deterministic=False gives different
    outputs for different rngs, the same output for the same rng, and differs from the
    deterministic output."""
    model, params = init_model(dropout_rate=0.3, attention_dropout_rate=0.2)
    inputs, decoder_inputs = make_batch()
    run = lambda det, seed: forward(model, params, inputs, decoder_inputs, deterministic=det,
                                    rngs={"dropout": jax.random.key(seed)})
    det_a, det_b = run(True, 0), run(True, 1)
    np.testing.assert_array_equal(det_a, det_b)
    np.testing.assert_array_equal(det_a, forward(model, params, inputs, decoder_inputs))
    drop_a, drop_a_again, drop_b = run(False, 0), run(False, 0), run(False, 1)
    np.testing.assert_array_equal(drop_a, drop_a_again)
    assert_changed(drop_a, drop_b)
    assert_changed(drop_a, det_a)


def test_attention_dropout_alone_is_active():
    """With residual dropout 0 and attention dropout 0.5, training-mode logits still depend
    on the dropout rng: attention_dropout_rate reaches the attention weights."""
    model, params = init_model(dropout_rate=0.0, attention_dropout_rate=0.5)
    inputs, decoder_inputs = make_batch()
    run = lambda seed: forward(model, params, inputs, decoder_inputs, deterministic=False,
                               rngs={"dropout": jax.random.key(seed)})
    assert_changed(run(0), run(1))


# ----------------------------------------------------------------------------------------
# 11. config validation
# ----------------------------------------------------------------------------------------


def test_from_dict_rejects_unknown_key_by_name():
    """A misspelt hyperparameter fails with a message naming the offending key."""
    with pytest.raises(ValueError, match="d_modle"):
        TransformerConfig.from_dict({"d_modle": 64, "num_heads": 4})
    assert TransformerConfig.from_dict({"d_model": 64, "num_heads": 4}).d_model == 64


def test_d_model_not_divisible_by_heads_raises():
    """d_model=30 with 4 heads is rejected unless head_dim is given explicitly."""
    with pytest.raises(ValueError, match="divisible"):
        TransformerConfig(d_model=30, num_heads=4)
    assert TransformerConfig(d_model=30, num_heads=4, head_dim=8).qkv_dim == 8
    assert TransformerConfig(d_model=32, num_heads=4).qkv_dim == 8


def test_unknown_dtype_raises():
    """dtype / param_dtype must name a known floating type."""
    with pytest.raises(ValueError, match="float64"):
        TransformerConfig(dtype="float64")


# ----------------------------------------------------------------------------------------
# 12. attention weights for visualisation
# ----------------------------------------------------------------------------------------


def test_attention_weights_are_sown_normalised_and_masked():
    """mutable=['intermediates'] returns every layer's attention weights; rows sum to 1,
    PAD source keys get weight 0, and decoder self-attention puts 0 on future positions."""
    model, params = init_model()
    inputs, decoder_inputs = make_batch()
    logits, state = model.apply({"params": params}, inputs, decoder_inputs,
                                mutable=["intermediates"])
    np.testing.assert_array_equal(np.asarray(logits),
                                  forward(model, params, inputs, decoder_inputs))
    sown = state["intermediates"]
    source_pad = inputs == PAD_ID  # [B, S]
    for i in range(2):
        enc = np.asarray(sown["encoder"][f"layer_{i}"]["self_attention"]["attention_weights"][0])
        dec = np.asarray(sown["decoder"][f"layer_{i}"]["self_attention"]["attention_weights"][0])
        cross = np.asarray(sown["decoder"][f"layer_{i}"]["cross_attention"]["attention_weights"][0])
        assert enc.shape == (B, 4, S, S)
        assert dec.shape == (B, 4, L, L)
        assert cross.shape == (B, 4, L, S)
        for weights in (enc, dec, cross):
            assert weights.dtype == np.float32
            assert np.all(weights >= 0)
        np.testing.assert_allclose(enc.sum(-1), 1.0, atol=1e-5)
        np.testing.assert_allclose(cross.sum(-1), 1.0, atol=1e-5)
        for b in range(B):
            real, pad = ~source_pad[b], source_pad[b]
            # Real query rows put no mass on PAD keys, so all of it is on real keys.
            assert np.all(enc[b][:, real][:, :, pad] == 0)
            assert np.all(enc[b][:, real][:, :, real] > 0)
            assert np.all(cross[b][:, :, pad] == 0)
            assert np.all(cross[b][:, :, real] > 0)
        np.testing.assert_allclose(dec.sum(-1), 1.0, atol=1e-5)
        future = np.triu(np.ones((L, L), bool), k=1)
        assert np.all(dec[:, :, future] == 0)
        assert np.all(dec[:, :, ~future] > 0)
    assert len(sown["encoder"]["hidden_states"]) == 2


def test_sequence_longer_than_max_len_is_a_clear_error():
    """Positions past the sinusoid table would read NaN; the model refuses instead."""
    cfg = tiny_transformer_config(max_len=4)
    model = Transformer(cfg)
    ids = jnp.ones((1, 6), jnp.int32)
    with pytest.raises(ValueError, match="exceeds the model's max_len 4"):
        model.init(jax.random.key(0), ids, ids)
