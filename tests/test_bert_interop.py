"""Tests for bert_jax/interop and the convert CLI: every checkpoint layout loads into our
BertForPreTraining and gives the original BERT's outputs (tests/bert_numpy_reference.py).

Checkpoints are written from scratch by tests/bert_fixtures.py (vocabulary 53, hidden 32 =
4 heads x 8, intermediate 37, 2 layers, 19 positions). Batch 3, length 7; rows 1 and 2 are
padded after 5 and 3 tokens.
"""
import dataclasses
import json
import os
import pickle
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy

import bert_fixtures as fx
import bert_numpy_reference as ref
from bert_jax.heads import BertForPreTraining
from bert_jax.interop import Pretrained, export_hf, layout, load_pretrained, restore_into
from bert_jax.interop import torch_weights
from bert_jax.interop.torch_weights import _rebuild_tensor_v2, _Storage
from bert_jax.model import BertConfig, BertEncoder
from transformer_jax.engine import checkpoint as ckpt

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
B, L = 3, 7
REAL_LENGTHS = (7, 5, 3)
N_LAYERS, HEADS, D, V = 2, 4, 32, 53


@pytest.fixture(scope="module")
def weights():
    return fx.random_weights()


@pytest.fixture(scope="module")
def tf_dir(tmp_path_factory, weights):
    directory = str(tmp_path_factory.mktemp("tf") / "uncased_L-2_H-32_A-4")
    fx.write_tf_checkpoint(directory, weights)
    return directory


@pytest.fixture(scope="module")
def from_tf(tf_dir):
    return load_pretrained(tf_dir)


def make_batch(seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, V, size=(B, L)).astype(np.int32)
    mask = np.zeros((B, L), np.int32)
    segments = np.zeros((B, L), np.int32)
    for b, n in enumerate(REAL_LENGTHS):
        mask[b, :n] = 1
        segments[b, n // 2:n] = 1
        ids[b, n:] = 0
    return ids, mask, segments


def assert_trees_equal(a: dict, b: dict):
    fa, fb = layout.flatten(a), layout.flatten(b)
    assert fa.keys() == fb.keys()
    for path in fa:
        np.testing.assert_array_equal(fa[path], fb[path], err_msg="/".join(path))


def assert_matches_reference(params: dict, config: BertConfig, weights: dict):
    """Our encoder and heads with ``params`` vs the numpy BERT with the TF-named weights."""
    ids, mask, segments = make_batch()
    expected = ref.forward(weights, HEADS, ids, mask, segments)
    seq, pooled = BertEncoder(config).apply({"params": params["bert"]}, ids, mask, segments)
    model = BertForPreTraining(config)
    mlm, nsp = jax.jit(lambda p: model.apply({"params": p}, ids, mask, segments, None))(params)
    # Every row, padded ones too: as in the original, only keys are masked.
    np.testing.assert_allclose(seq, expected["sequence_output"], atol=1e-4)
    np.testing.assert_allclose(mlm, expected["mlm_logits"], atol=1e-4)
    np.testing.assert_allclose(pooled, expected["pooled_output"], atol=1e-4)
    np.testing.assert_allclose(nsp, expected["nsp_logits"], atol=1e-4)
    # The gathered MLM head (pretraining's path) agrees at the asked positions.
    positions = np.array([[0, 3, 6], [1, 2, 4], [0, 1, 2]], np.int32)
    gathered, _ = model.apply({"params": params}, ids, mask, segments, positions)
    np.testing.assert_allclose(
        gathered, np.take_along_axis(expected["mlm_logits"], positions[..., None], 1),
        atol=1e-4)
    # The outputs are far from trivial: a transposed kernel would not pass.
    assert np.abs(expected["mlm_logits"]).max() > 1 and np.abs(expected["nsp_logits"]).max() > 0.1


def init_params(config: BertConfig, seed: int = 1) -> dict:
    ids = jnp.zeros((1, 4), jnp.int32)
    variables = jax.jit(BertForPreTraining(config).init, static_argnums=4)(
        jax.random.key(seed), ids, ids, ids, None)
    return jax.tree.map(np.asarray, nn.unbox(variables["params"]))


def abstract_params(config: BertConfig) -> dict:
    """ShapeDtypeStructs of BertForPreTraining's params: a template without any compute."""
    ids = jnp.zeros((1, 4), jnp.int32)
    return nn.unbox(jax.eval_shape(lambda: BertForPreTraining(config).init(
        jax.random.key(0), ids, ids, ids, None))["params"])


def test_tf_checkpoint_matches_original_bert(tf_dir, from_tf, weights):
    cfg = from_tf.config
    assert (cfg.vocab_size, cfg.hidden_size, cfg.num_layers, cfg.num_heads,
            cfg.intermediate_size, cfg.max_position_embeddings, cfg.type_vocab_size) == (
        V, D, N_LAYERS, HEADS, 37, 19, 2)
    assert from_tf.vocab_file == os.path.join(tf_dir, "vocab.txt")
    assert sorted(from_tf.params) == ["bert", "mlm", "nsp"]
    # Exactly our tree: every path and shape BertForPreTraining creates, all float32.
    leaves = layout.flatten(from_tf.params)
    assert {p: v.shape for p, v in leaves.items()} == layout.model_shapes(cfg)
    assert all(v.dtype == np.float32 for v in leaves.values())
    assert from_tf.param_count() == sum(v.size for v in weights.values())  # no Adam slots
    assert_matches_reference(from_tf.params, cfg, weights)
    # The checkpoint prefix names the same checkpoint.
    assert_trees_equal(load_pretrained(os.path.join(tf_dir, "bert_model.ckpt")).params,
                       from_tf.params)


def test_hugging_face_safetensors_matches(tmp_path, from_tf, weights):
    directory = fx.write_hf_dir(str(tmp_path / "hf"), fx.hf_state_dict(weights, N_LAYERS))
    loaded = load_pretrained(directory)
    assert loaded.config == from_tf.config
    assert loaded.vocab_file == os.path.join(directory, "vocab.txt")
    assert_trees_equal(loaded.params, from_tf.params)
    assert_matches_reference(loaded.params, loaded.config, weights)


def test_untied_decoder_is_refused(tmp_path, weights):
    state = fx.hf_state_dict(weights, N_LAYERS)
    state["cls.predictions.decoder.weight"] = state["cls.predictions.decoder.weight"] + 1
    directory = fx.write_hf_dir(str(tmp_path / "hf"), state)
    with pytest.raises(ValueError, match="decoder.weight differs from .*word_embeddings"):
        load_pretrained(directory)


def test_export_hf_round_trip(tmp_path, from_tf, weights):
    out = str(tmp_path / "out")
    export_hf(out, from_tf.config, from_tf.params, from_tf.vocab_file)
    assert sorted(os.listdir(out)) == ["config.json", "model.safetensors", "vocab.txt"]
    with open(os.path.join(out, "config.json")) as f:
        config = json.load(f)
    assert config["architectures"] == ["BertForPreTraining"] and config["model_type"] == "bert"
    assert config["hidden_act"] == "gelu" and config["layer_norm_eps"] == 1e-12
    assert config["num_hidden_layers"] == N_LAYERS and config["num_attention_heads"] == HEADS
    state = safetensors.numpy.load_file(os.path.join(out, "model.safetensors"))
    assert all(v.dtype == np.float32 for v in state.values())
    # Hugging Face's names and layouts exactly, as the fixtures spell them independently of
    # our reader (position_ids is a buffer HF rebuilds, not a weight).
    expected = {k: v for k, v in fx.hf_state_dict(weights, N_LAYERS).items()
                if k != "bert.embeddings.position_ids"}
    assert sorted(state) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(state[name], value, err_msg=name)
    assert state["bert.encoder.layer.1.intermediate.dense.weight"].shape == (37, D)  # [out, in]
    loaded = load_pretrained(out)
    assert loaded.config == from_tf.config
    assert_trees_equal(loaded.params, from_tf.params)
    with pytest.raises(FileExistsError, match="already holds config.json"):
        export_hf(out, from_tf.config, from_tf.params, from_tf.vocab_file)
    export_hf(out, from_tf.config, from_tf.params, from_tf.vocab_file, overwrite=True)


def test_hugging_face_runs_our_export_to_our_outputs(tmp_path, from_tf):
    """Parity with the source implementation itself, where the optional `bench` extra
    (torch + transformers) is installed: Hugging Face's BertForPreTraining loads our export
    and gives our logits. (Without it, the numpy reference above stands in for it.)"""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    out = str(tmp_path / "out")
    export_hf(out, from_tf.config, from_tf.params, from_tf.vocab_file)
    hf = transformers.BertForPreTraining.from_pretrained(out).eval()
    ids, mask, segments = make_batch()
    with torch.no_grad():
        theirs = hf(input_ids=torch.from_numpy(ids).long(),
                    attention_mask=torch.from_numpy(mask).long(),
                    token_type_ids=torch.from_numpy(segments).long())
    model = BertForPreTraining(from_tf.config)
    mlm, nsp = model.apply({"params": from_tf.params}, ids, mask, segments, None)
    # Every row, padded ones too: both mask only the keys.
    np.testing.assert_allclose(mlm, theirs.prediction_logits.numpy(), atol=1e-4)
    np.testing.assert_allclose(nsp, theirs.seq_relationship_logits.numpy(), atol=1e-4)


def test_bert_model_file_without_heads(tmp_path, from_tf, weights):
    # A BertModel file: no "bert." prefix, no cls.*, and the pre-4.x LayerNorm gamma/beta.
    state = fx.hf_state_dict(weights, N_LAYERS, heads=False, old_layer_norm_names=True)
    assert "embeddings.LayerNorm.gamma" in state
    loaded = load_pretrained(fx.write_hf_dir(str(tmp_path / "hf"), state))
    assert sorted(loaded.params) == ["bert"]
    assert_trees_equal(loaded.params["bert"], from_tf.params["bert"])
    template = init_params(loaded.config)
    restored, missing = restore_into(loaded, template)
    assert sorted(missing) == sorted(
        "/".join(p) for p in layout.flatten(template) if p[0] in ("mlm", "nsp"))
    assert_trees_equal(restored["bert"], from_tf.params["bert"])
    np.testing.assert_array_equal(restored["nsp"]["classifier"]["kernel"],
                                  template["nsp"]["classifier"]["kernel"])
    # Exported without heads: HF calls that a BertModel.
    export_hf(str(tmp_path / "out"), loaded.config, loaded.params, None)
    with open(tmp_path / "out" / "config.json") as f:
        assert json.load(f)["architectures"] == ["BertModel"]


@pytest.mark.parametrize("reader", ["ours", "torch"])
def test_pytorch_bin_is_read_weights_only(tmp_path, from_tf, weights, monkeypatch, reader):
    """Without torch, our restricted unpickler reads it; with torch (the optional `bench`
    extra), ``torch.load(weights_only=True)`` does. The same weights either way."""
    if reader == "torch":
        pytest.importorskip("torch")
    else:  # as if torch were not installed; importing it would fail
        monkeypatch.setitem(sys.modules, "torch", None)
    state = fx.hf_state_dict(weights, N_LAYERS)
    directory = str(tmp_path / "hf")
    fx.write_hf_dir(directory, {}, torch_bin=True)  # config + vocab
    # One kernel saved as a transposed view exercises the stride handling.
    fx.write_torch_zip(os.path.join(directory, "pytorch_model.bin"), state,
                       transposed_storage="bert.encoder.layer.0.intermediate.dense.weight")
    loaded = load_pretrained(directory)
    assert loaded.source.endswith("pytorch_model.bin")
    assert_trees_equal(loaded.params, from_tf.params)


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("reader", ["ours", "torch"])
def test_malicious_pytorch_bin_is_refused(tmp_path, monkeypatch, reader):
    """Our restricted unpickler (no torch) and torch's weights-only loader both refuse."""
    if reader == "torch":
        pytest.importorskip("torch")
    else:
        monkeypatch.setattr(torch_weights, "torch_installed", lambda: False)
    marker = tmp_path / "pwned"
    directory = str(tmp_path / "hf")
    fx.write_hf_dir(directory, {}, torch_bin=True)
    fx.write_torch_archive(os.path.join(directory, "pytorch_model.bin"),
                           pickle.dumps({"x": _Payload(str(marker))}, protocol=2), {})
    with pytest.raises(ValueError, match=r"refusing to load .*pytorch_model.bin: its pickle "
                                         r"references (posix|os)\.system"):
        load_pretrained(directory)
    assert not marker.exists()
    # The same through what users run: fine-tuning (and pretraining) from init_checkpoint.
    from bert_jax import main as bert_main
    from configs import bert_finetune, bert_pretrain

    for config in (bert_finetune.get_config("task=demo"), bert_pretrain.get_config("size=tiny")):
        config.init_checkpoint = directory
        with pytest.raises(ValueError, match="refusing to load .*pytorch_model.bin"):
            bert_main.make_task(config, str(tmp_path / "work"))
    assert not marker.exists()
    if reader == "torch":
        return  # torch reads the legacy format
    path = os.path.join(directory, "pytorch_model.bin")
    with open(path, "wb") as f:
        f.write(pickle.dumps({"a": 1}))  # a legacy (non-zip) torch file
    with pytest.raises(ValueError, match="legacy .*non-zip.* format"):
        load_pretrained(directory)


def test_out_of_bounds_tensor_view_is_refused():
    storage = _Storage(np.arange(6, dtype=np.float32))
    np.testing.assert_array_equal(_rebuild_tensor_v2(storage, 0, (3, 2), (1, 3)),
                                  np.arange(6, dtype=np.float32).reshape(2, 3).T)
    with pytest.raises(ValueError, match="reads past its storage"):
        _rebuild_tensor_v2(storage, 1, (2, 3), (3, 1))
    with pytest.raises(ValueError, match="invalid tensor layout"):
        _rebuild_tensor_v2(storage, 0, (2, 3), (-3, 1))


def test_own_workdir(tmp_path, from_tf):
    workdir = str(tmp_path / "run")
    manager = ckpt.make_manager(workdir, async_save=False)
    params = init_params(from_tf.config)
    state = {"step": jnp.int32(7), "params": params,
             "opt_state": {"mu": jax.tree.map(jnp.ones_like, params)}}
    ckpt.save(manager, 7, state, {"task": "bert_pretraining",
                                  "model": dataclasses.asdict(from_tf.config)})
    manager.wait_until_finished()
    manager.close()
    fx.write_vocab(workdir)
    for path in (workdir, os.path.join(workdir, "checkpoints")):
        loaded = load_pretrained(path)
        assert loaded.config == from_tf.config
        assert loaded.vocab_file == os.path.join(workdir, "vocab.txt")
        assert "bert_pretraining" in loaded.source and "step 7" in loaded.source
        assert_trees_equal(loaded.params, params)
    # A workdir of the translation Transformer is named as not BERT, in one short line.
    other = str(tmp_path / "translation")
    manager = ckpt.make_manager(other, async_save=False)
    ckpt.save(manager, 3, {"step": jnp.int32(3), "params": {"w": jnp.ones(3)}},
              {"task": "translation", "model": {"d_model": 32, "num_encoder_layers": 2}})
    manager.wait_until_finished()
    manager.close()
    with pytest.raises(ValueError, match="holds a 'translation' checkpoint whose model is not "
                                         "BERT: give a BERT checkpoint") as error:
        load_pretrained(other)
    assert "\n" not in str(error.value) and "d_model" not in str(error.value)


def test_restore_into_templates(from_tf):
    template = init_params(from_tf.config)
    restored, missing = restore_into(from_tf, template)
    assert missing == []
    assert_trees_equal(restored, from_tf.params)
    # Abstract and boxed templates, in bfloat16: values cast, structure kept.
    cfg = dataclasses.replace(from_tf.config, param_dtype="bfloat16")
    ids = jnp.zeros((1, 4), jnp.int32)
    boxed = jax.eval_shape(lambda: BertForPreTraining(cfg).init(
        jax.random.key(0), ids, ids, ids, None))["params"]
    restored, missing = restore_into(from_tf, boxed)
    assert missing == [] and restored["mlm"]["output_bias"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(restored["mlm"]["output_bias"],
                                  from_tf.params["mlm"]["output_bias"].astype(jnp.bfloat16))
    # BertEncoder's tree alone matches the 'bert' subtree.
    encoder = jax.eval_shape(lambda: BertEncoder(from_tf.config).init(jax.random.key(0), ids))
    restored, missing = restore_into(from_tf, encoder["params"])
    assert missing == []
    assert_trees_equal(restored, from_tf.params["bert"])
    # A fine-tuning tree: the encoder comes from the checkpoint, the task head is reported.
    task = {"bert": template["bert"], "classifier": {"kernel": jax.ShapeDtypeStruct((D, 3),
                                                                                   jnp.float32)}}
    restored, missing = restore_into(from_tf, task)
    assert missing == ["classifier/kernel"]
    assert isinstance(restored["classifier"]["kernel"], jax.ShapeDtypeStruct)


def test_restore_into_refuses_other_shapes(from_tf):
    template = abstract_params(dataclasses.replace(from_tf.config, vocab_size=60))
    with pytest.raises(ValueError) as error:
        restore_into(from_tf, template)
    message = str(error.value)
    assert "\n" not in message
    assert "bert/token_embed/embedding" in message and "(53, 32)" in message
    assert "(60, 32)" in message and "set model.vocab_size=53" in message
    template = abstract_params(dataclasses.replace(from_tf.config, num_layers=3))
    with pytest.raises(ValueError, match="checkpoint has 2 encoder layers but the model 3: "
                                         "set model.num_layers=2"):
        restore_into(from_tf, template)
    template = abstract_params(dataclasses.replace(from_tf.config, intermediate_size=40))
    with pytest.raises(ValueError, match="ffn/wi/.* set model.intermediate_size=37"):
        restore_into(from_tf, template)


def test_bad_inputs_fail_clearly(tmp_path, weights):
    directory = str(tmp_path / "tf")
    fx.write_tf_checkpoint(directory, weights)
    os.remove(os.path.join(directory, "bert_config.json"))
    with pytest.raises(FileNotFoundError, match="bert_config.json does not exist"):
        load_pretrained(directory)
    fx.write_tf_checkpoint(directory, weights, {**fx.BERT_CONFIG, "hidden_act": "relu"})
    with pytest.raises(ValueError, match="hidden_act='relu'; only \\['gelu'\\]"):
        load_pretrained(directory)
    fx.write_tf_checkpoint(directory, weights, {**fx.BERT_CONFIG, "hidden_size": 64,
                                                "num_attention_heads": 8})
    with pytest.raises(ValueError, match="word_embeddings has shape \\(53, 32\\) but the "
                                         "config .* implies \\(53, 64\\)"):
        load_pretrained(directory)
    fx.write_tf_checkpoint(directory, weights, {**fx.BERT_CONFIG, "num_hidden_layers": 3})
    with pytest.raises(ValueError, match="lacks .* encoder weights, e.g. bert/encoder/layer_2"):
        load_pretrained(directory)
    with pytest.raises(FileNotFoundError, match="nowhere does not exist"):
        load_pretrained(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a BERT checkpoint; expected .*Hugging Face"):
        load_pretrained(str(tmp_path / "empty"))
    hf_dir = str(tmp_path / "hf")
    fx.write_hf_dir(hf_dir, {"bert.pooler.dense.bias": np.ones(32, np.float32)})
    with open(os.path.join(hf_dir, "model.safetensors"), "r+b") as f:
        f.truncate(len(f.read()) // 2)  # as an interrupted download leaves it
    with pytest.raises(ValueError, match="model.safetensors: .*; the file is damaged or "
                                         "incomplete .*: fetch it again"):
        load_pretrained(hf_dir)
    os.remove(os.path.join(hf_dir, "model.safetensors"))
    with pytest.raises(FileNotFoundError, match="neither model.safetensors nor pytorch_model"):
        load_pretrained(hf_dir)


def _run_convert(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3", XLA_FLAGS="",
               CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, "-m", "bert_jax.convert", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def test_convert_cli(tmp_path, tf_dir, from_tf):
    out = str(tmp_path / "hf")
    result = _run_convert(f"--input={tf_dir}", f"--output={out}")
    assert result.returncode == 0, result.stderr
    summary = result.stdout.strip()
    assert "\n" not in summary and summary.startswith("converted TF checkpoint ")
    assert "2 layers, hidden 32, 4 heads, intermediate 37, vocab 53" in summary
    assert f"{from_tf.param_count():,} params" in summary
    loaded = load_pretrained(out)
    assert loaded.config == from_tf.config
    assert_trees_equal(loaded.params, from_tf.params)
    result = _run_convert(f"--input={tmp_path / 'missing'}", f"--output={out}")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: checkpoint {tmp_path / 'missing'} does not exist")
    assert "Traceback" not in result.stderr


def test_convert_function_refuses_existing_output(tmp_path, tf_dir):
    from bert_jax.convert import convert

    out = str(tmp_path / "hf")
    convert(tf_dir, out)
    with pytest.raises(FileExistsError, match="already holds"):
        convert(tf_dir, out)
    assert convert(tf_dir, out, overwrite=True).startswith("converted")
    with pytest.raises(ValueError, match="unknown --format='tf'"):
        convert(tf_dir, out, "tf")


def test_pretrained_is_frozen(from_tf):
    with pytest.raises(dataclasses.FrozenInstanceError):
        from_tf.source = "x"
    assert isinstance(from_tf, Pretrained)
