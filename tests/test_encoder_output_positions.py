"""The encoder's last layer computed at a few rows only (``output_positions``, what BERT
pretraining reads) gives the full encoder's rows there, forward and backward, for post-LN,
pre-LN, remat and the scanned layout, with padding in the mask."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bert_jax.heads import BertForPreTraining, gather_positions
from bert_jax.model import BertConfig
from transformer_jax import attention
from transformer_jax.model import EncoderStack, TransformerConfig

B, S, D = 3, 7, 32
REAL_LENGTHS = (7, 5, 3)
# Row 2 repeats a position; every row keeps a position that is not its first.
POSITIONS = np.array([[0, 6, 3], [4, 1, 2], [2, 2, 0]], np.int32)


def inputs():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(B, S, D)), jnp.float32)  # [B, S, D]
    tokens = jnp.asarray(np.arange(S)[None] < np.array(REAL_LENGTHS)[:, None], jnp.int32)
    return x, attention.padding_mask(tokens, tokens, pad_id=0)  # mask [B, 1, S, S]


@pytest.mark.parametrize("overrides", [
    dict(), dict(pre_layer_norm=True), dict(remat="full"), dict(scan_layers=True)],
    ids=["post_ln", "pre_ln", "remat", "scanned"])
def test_rows_at_output_positions_equal_full_output_rows(overrides):
    cfg = TransformerConfig(vocab_size=11, d_model=D, num_heads=4, d_ff=37,
                            num_encoder_layers=3, num_decoder_layers=0, dropout_rate=0.0,
                            **overrides)
    stack = EncoderStack(cfg)
    x, mask = inputs()
    params = nn.unbox(stack.init(jax.random.key(0), x, mask, True))["params"]
    positions = jnp.asarray(POSITIONS)

    def rows(params, x):  # [B, 3, D]
        return stack.apply({"params": params}, x, mask, True, positions)

    def full_then_gathered(params, x):  # [B, 3, D]
        return gather_positions(stack.apply({"params": params}, x, mask, True), positions)

    np.testing.assert_allclose(rows(params, x), full_then_gathered(params, x), atol=1e-5)
    weights = jnp.asarray(np.random.default_rng(1).normal(size=(B, 3, D)), jnp.float32)
    loss = lambda fn: jax.grad(lambda p, x: jnp.sum(fn(p, x) * weights), argnums=(0, 1))
    got, want = loss(rows)(params, x), loss(full_then_gathered)(params, x)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), got, want)
    # The gradient reaches a real row that is not output (row 0, position 1) through the
    # last layer's keys and values, and never a padded one (row 1, position 6).
    assert np.abs(np.asarray(got[1])[0, 1]).max() > 1e-4
    assert np.abs(np.asarray(got[1])[1, 6]).max() == 0.0


def test_bert_pretraining_gradients_equal_full_encoder_then_gathered():
    cfg = BertConfig(vocab_size=53, hidden_size=D, num_layers=2, num_heads=4,
                     intermediate_size=37, max_position_embeddings=16)
    model = BertForPreTraining(cfg)
    x, _ = inputs()
    ids = jnp.asarray(np.random.default_rng(2).integers(5, 53, (B, S)), jnp.int32)
    mask = jnp.asarray(np.arange(S)[None] < np.array(REAL_LENGTHS)[:, None], jnp.int32)
    segments = jnp.zeros_like(ids)
    positions = jnp.asarray(POSITIONS)
    params = nn.unbox(model.init(jax.random.key(0), ids, mask, segments, positions))["params"]

    def sparse(p):  # the masked rows only, in the last layer too
        return model.apply({"params": p}, ids, mask, segments, positions)

    def dense(p):  # every row of every layer, the MLM head at all of them, then gathered
        mlm, nsp = model.apply({"params": p}, ids, mask, segments, None)  # [B, S, V]
        return gather_positions(mlm, positions), nsp

    for got, want in zip(sparse(params), dense(params)):
        np.testing.assert_allclose(got, want, atol=1e-5)

    def objective(fn):
        return jax.grad(lambda p: sum(logits.std() for logits in fn(p)))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5),
                 objective(sparse)(params), objective(dense)(params))
