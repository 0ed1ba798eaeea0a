"""Deep-model options: scan over layers gives the unscanned model's outputs with the same
(restacked) parameters, remat the same gradients, and a checkpoint converts between the
layouts both ways (exact round trip; training resumes scanned with the same losses)."""
import dataclasses
import os
import shutil
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import run_helpers
import trainer_helpers
from bert_jax.heads import BertForPreTraining
from bert_jax.model import BertConfig
from trainer_helpers import make_config, run
from transformer_jax import convert_layout, stacking
from transformer_jax.model import Transformer, TransformerConfig

corpus = trainer_helpers.corpus  # the engine tests' tiny translation corpus (a fixture)
REPO = trainer_helpers.REPO

CFG = TransformerConfig(vocab_size=41, d_model=32, num_heads=4, d_ff=37, num_encoder_layers=2,
                        num_decoder_layers=3, max_len=16, dropout_rate=0.0)


def batch():
    rng = np.random.default_rng(0)
    return (jnp.asarray(rng.integers(1, 41, (3, 7))), jnp.asarray(rng.integers(1, 41, (3, 5))))


def init(model, *args):
    # Eager: the random draws of these tiny shapes reuse kernels other tests compiled.
    return nn.meta.unbox(model.init(jax.random.key(0), *args)["params"])


def param_structure(model, *args):
    """The tree structure of ``model``'s params, traced only (no random numbers drawn)."""
    return jax.tree.structure(jax.eval_shape(lambda: init(model, *args)))


def test_tree_conversion_round_trips_and_refuses_gaps():
    tree = {"enc": {"layer_0": {"w": np.ones((2, 3))}, "layer_1": {"w": np.zeros((2, 3))},
                    "norm": np.arange(3)},
            "opt": [None, {"mu": {"layer_0": np.ones(2), "layer_1": np.full(2, 2.0)}}]}
    scanned = stacking.scan_tree(tree)
    assert scanned["enc"]["layers"]["w"].shape == (2, 2, 3)
    np.testing.assert_array_equal(scanned["opt"][1]["mu"]["layers"], [[1, 1], [2, 2]])
    assert stacking.is_scanned(scanned) and not stacking.is_scanned(tree)
    run_helpers.assert_trees_equal(stacking.unscan_tree(scanned), tree)
    with pytest.raises(ValueError, match="not layer_0..layer_1"):
        stacking.scan_tree({"layer_0": np.ones(1), "layer_2": np.ones(1)})


def test_scanned_transformer_matches_unscanned_and_remat_keeps_gradients():
    x, y = batch()
    params = init(Transformer(CFG), x, y)
    scanned_model = Transformer(dataclasses.replace(CFG, scan_layers=True))
    scanned = stacking.scan_tree(jax.device_get(params))
    assert jax.tree.structure(scanned) == param_structure(scanned_model, x, y)
    assert scanned["encoder"]["layers"]["ffn"]["wi"]["kernel"].shape == (2, 32, 37)
    np.testing.assert_allclose(scanned_model.apply({"params": scanned}, x, y),
                               Transformer(CFG).apply({"params": params}, x, y), atol=1e-5)

    def grads(model, p):
        return jax.grad(lambda p: jnp.mean(model.apply({"params": p}, x, y) ** 2))(p)

    reference = grads(scanned_model, scanned)
    for policy in stacking.REMAT_POLICIES:
        model = Transformer(dataclasses.replace(CFG, scan_layers=True, remat=policy))
        for a, b in zip(jax.tree.leaves(grads(model, scanned)), jax.tree.leaves(reference)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, err_msg=policy)
    with pytest.raises(ValueError, match="remat='some'"):
        dataclasses.replace(CFG, remat="some")


def test_scanned_bert_matches_and_sows_every_layer():
    cfg = BertConfig(vocab_size=53, hidden_size=32, num_layers=3, num_heads=4,
                     intermediate_size=37, max_position_embeddings=16, hidden_dropout=0.0,
                     attention_dropout=0.0)
    rng = np.random.default_rng(1)
    ids = jnp.asarray(rng.integers(5, 53, (3, 7)))
    mask, segments = jnp.ones((3, 7), jnp.int32), jnp.zeros((3, 7), jnp.int32)
    positions = jnp.asarray([[1, 2], [3, 4], [5, 6]])
    args = (ids, mask, segments, positions)
    params = init(BertForPreTraining(cfg), *args)
    scanned = stacking.scan_tree(jax.device_get(params))
    outputs = []
    for model, p in ((BertForPreTraining(cfg), params),
                     (BertForPreTraining(dataclasses.replace(cfg, scan_layers=True)), scanned)):
        out, state = model.apply({"params": p}, *args, mutable=["intermediates"])
        outputs.append((out, state["intermediates"]["bert"]["encoder"]["hidden_states"]))
    (plain, plain_hidden), (scan, scan_hidden) = outputs
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(scan)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert len(scan_hidden) == len(plain_hidden) == 3
    for a, b in zip(plain_hidden, scan_hidden):
        np.testing.assert_allclose(a, b, atol=1e-5)


def _convert(source, target, layout):
    return subprocess.run([sys.executable, "-m", "transformer_jax.convert_layout",
                           f"--input={source}", f"--output={target}", f"--layout={layout}"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


def test_checkpoint_converts_both_ways_and_training_resumes_scanned(corpus, tmp_path):
    # No dropout: scan draws each layer's dropout key differently from the unrolled stack.
    def config(**overrides):
        return make_config(corpus, "fsdp", **{"model.dropout_rate": 0.0, **overrides})

    reference = tmp_path / "reference"
    trainer = run(config(), reference)  # 6 unscanned steps, checkpoints at 3 and 6
    plain = tmp_path / "plain"  # the reference workdir as it was at step 3
    shutil.copytree(reference, plain, ignore=lambda directory, names: (
        ["6"] if os.path.basename(directory) == "checkpoints" else []))
    assert run_helpers.checkpoint_steps(str(plain)) == [3]
    result = _convert(plain, tmp_path / "scanned", "scanned")
    assert result.returncode == 0, result.stderr[-3000:]
    # Back to unscanned: the step-3 params are exactly what they were.
    assert convert_layout.convert(str(tmp_path / "scanned" / "checkpoints"),
                                  str(tmp_path / "back"), "unscanned") == 3
    saved_params = trainer_helpers.saved_params
    run_helpers.assert_trees_equal(saved_params(str(tmp_path / "back"), trainer),
                                   saved_params(str(reference), trainer, step=3))
    with pytest.raises(ValueError, match="step 3 is already unscanned"):
        convert_layout.convert(str(tmp_path / "back"), str(tmp_path / "back2"), "unscanned")
    # The layout is part of the resume check: the unscanned config is refused there.
    with pytest.raises(ValueError, match="scan_layers: checkpoint True vs config False"):
        run(config(), tmp_path / "scanned")
    run(config(**{"model.scan_layers": True}), tmp_path / "scanned")
    resumed = run_helpers.scalars(str(tmp_path / "scanned"), "train/loss")
    np.testing.assert_allclose([resumed[s] for s in (4, 5, 6)],
                               run_helpers.losses(str(reference))[3:], rtol=1e-5)
