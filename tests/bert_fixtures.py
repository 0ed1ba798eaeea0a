"""Tiny pretrained BERT checkpoints written from scratch, in each supported file layout.

Random weights under the original TF names are written as Google's TF checkpoint
(``tf.raw_ops.SaveV2``, with Adam slots and ``global_step`` as run_pretraining.py leaves
them), as a Hugging Face directory and as torch's zip pickle format. The HF names and
transposes are spelled out here independently of ``bert_jax.interop``.

Sizes are odd so that a swapped axis fails: vocabulary 53, hidden 32 = 4 heads x 8,
intermediate 37, 2 layers, 19 positions, 2 segment types.
"""
import collections
import io
import json
import os
import pickle
import zipfile

import numpy as np
import safetensors.numpy
import tensorflow as tf

BERT_CONFIG = dict(
    vocab_size=53, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    intermediate_size=37, hidden_act="gelu", hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1, max_position_embeddings=19, type_vocab_size=2,
    initializer_range=0.02)

_WORDS = ["the", "cat", "sat", "on", "mat", "dog", "a", "hello", "world", "ran", "is", "big",
          "un", "##want", "##ed", "##s", "play", "##ing", ".", ",", "!", "?"]
VOCAB = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + _WORDS
         + [f"w{i}" for i in range(53 - 5 - len(_WORDS))])
assert len(VOCAB) == BERT_CONFIG["vocab_size"]


def random_weights(config: dict = BERT_CONFIG, seed: int = 0) -> dict[str, np.ndarray]:
    """{original TF name: float32 array}; scales large enough for non-linear effects."""
    rng = np.random.default_rng(seed)
    d, f = config["hidden_size"], config["intermediate_size"]
    w = {}

    def normal(name, *shape, scale=0.3):
        w[name] = (scale * rng.standard_normal(shape)).astype(np.float32)

    def layer_norm(scope):
        w[f"{scope}/LayerNorm/gamma"] = (1 + 0.2 * rng.standard_normal(d)).astype(np.float32)
        normal(f"{scope}/LayerNorm/beta", d, scale=0.1)

    def dense(scope, n_in, n_out):
        normal(f"{scope}/kernel", n_in, n_out, scale=n_in ** -0.5)
        normal(f"{scope}/bias", n_out, scale=0.1)

    normal("bert/embeddings/word_embeddings", config["vocab_size"], d)
    normal("bert/embeddings/token_type_embeddings", config["type_vocab_size"], d)
    normal("bert/embeddings/position_embeddings", config["max_position_embeddings"], d)
    layer_norm("bert/embeddings")
    for i in range(config["num_hidden_layers"]):
        scope = f"bert/encoder/layer_{i}"
        for proj in ("query", "key", "value"):
            dense(f"{scope}/attention/self/{proj}", d, d)
        dense(f"{scope}/attention/output/dense", d, d)
        layer_norm(f"{scope}/attention/output")
        dense(f"{scope}/intermediate/dense", d, f)
        dense(f"{scope}/output/dense", f, d)
        layer_norm(f"{scope}/output")
    dense("bert/pooler/dense", d, d)
    dense("cls/predictions/transform/dense", d, d)
    layer_norm("cls/predictions/transform")
    normal("cls/predictions/output_bias", config["vocab_size"], scale=0.1)
    normal("cls/seq_relationship/output_weights", 2, d, scale=d ** -0.5)
    normal("cls/seq_relationship/output_bias", 2, scale=0.1)
    return w


def write_vocab(directory: str) -> str:
    path = os.path.join(directory, "vocab.txt")
    with open(path, "w") as f:
        f.write("".join(t + "\n" for t in VOCAB))
    return path


def write_tf_checkpoint(directory: str, weights: dict[str, np.ndarray],
                        config: dict = BERT_CONFIG) -> str:
    """bert_config.json + bert_model.ckpt.{index,data-*} + vocab.txt; returns the prefix."""
    os.makedirs(directory, exist_ok=True)
    tensors = dict(weights)
    # What run_pretraining.py's AdamWeightDecayOptimizer leaves beside the weights.
    for name in list(weights)[:5]:
        tensors[f"{name}/adam_m"] = np.full_like(weights[name], 7.0)
        tensors[f"{name}/adam_v"] = np.full_like(weights[name], 9.0)
    tensors["global_step"] = np.int64(1000)
    prefix = os.path.join(directory, "bert_model.ckpt")
    names = sorted(tensors)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(tensors[n]) for n in names])
    with open(os.path.join(directory, "bert_config.json"), "w") as f:
        json.dump(config, f)
    write_vocab(directory)
    return prefix


def random_tf_checkpoint(directory: str, seed: int) -> tuple[str, dict[str, np.ndarray]]:
    """(directory, weights): a TF checkpoint of ``random_weights(seed=seed)`` in directory."""
    weights = random_weights(seed=seed)
    write_tf_checkpoint(directory, weights)
    return directory, weights


def hf_state_dict(w: dict[str, np.ndarray], num_layers: int, *, heads: bool = True,
                  old_layer_norm_names: bool = False) -> dict[str, np.ndarray]:
    """HF names: BertForPreTraining's with ``heads``, else BertModel's (no 'bert.' prefix)."""
    gamma, beta = ("gamma", "beta") if old_layer_norm_names else ("weight", "bias")
    p = "bert." if heads else ""
    out = {}

    def linear(hf, tf_scope):  # torch Linear.weight is [out, in]
        out[f"{hf}.weight"] = w[f"{tf_scope}/kernel"].T.copy()
        out[f"{hf}.bias"] = w[f"{tf_scope}/bias"]

    def norm(hf, tf_scope):
        out[f"{hf}.LayerNorm.{gamma}"] = w[f"{tf_scope}/LayerNorm/gamma"]
        out[f"{hf}.LayerNorm.{beta}"] = w[f"{tf_scope}/LayerNorm/beta"]

    for kind in ("word", "position", "token_type"):
        out[f"{p}embeddings.{kind}_embeddings.weight"] = w[f"bert/embeddings/{kind}_embeddings"]
    norm(f"{p}embeddings", "bert/embeddings")
    out[f"{p}embeddings.position_ids"] = np.arange(19, dtype=np.int64)[None]  # a buffer
    for i in range(num_layers):
        hf, tf_scope = f"{p}encoder.layer.{i}", f"bert/encoder/layer_{i}"
        for proj in ("query", "key", "value"):
            linear(f"{hf}.attention.self.{proj}", f"{tf_scope}/attention/self/{proj}")
        linear(f"{hf}.attention.output.dense", f"{tf_scope}/attention/output/dense")
        norm(f"{hf}.attention.output", f"{tf_scope}/attention/output")
        linear(f"{hf}.intermediate.dense", f"{tf_scope}/intermediate/dense")
        linear(f"{hf}.output.dense", f"{tf_scope}/output/dense")
        norm(f"{hf}.output", f"{tf_scope}/output")
    linear(f"{p}pooler.dense", "bert/pooler/dense")
    if heads:
        linear("cls.predictions.transform.dense", "cls/predictions/transform/dense")
        norm("cls.predictions.transform", "cls/predictions/transform")
        out["cls.predictions.bias"] = w["cls/predictions/output_bias"]
        out["cls.predictions.decoder.weight"] = w["bert/embeddings/word_embeddings"].copy()
        out["cls.seq_relationship.weight"] = w["cls/seq_relationship/output_weights"]  # [2, D]
        out["cls.seq_relationship.bias"] = w["cls/seq_relationship/output_bias"]
    return out


def hf_config(config: dict = BERT_CONFIG) -> dict:
    return {**config, "architectures": ["BertForPreTraining"], "model_type": "bert",
            "layer_norm_eps": 1e-12, "pad_token_id": 0, "position_embedding_type": "absolute"}


def write_hf_dir(directory: str, state: dict[str, np.ndarray], *,
                 config: dict | None = None, torch_bin: bool = False) -> str:
    """config.json + model.safetensors (or pytorch_model.bin) + vocab.txt."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config or hf_config(), f)
    if torch_bin:
        write_torch_zip(os.path.join(directory, "pytorch_model.bin"), state)
    else:
        safetensors.numpy.save_file(state, os.path.join(directory, "model.safetensors"),
                                    metadata={"format": "pt"})
    write_vocab(directory)
    return directory


# --- torch's zip pickle format, without torch --------------------------------------------


class _Global:
    """Pickled as the global ``module.name`` (torch need not be importable to write it)."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):
        raise AssertionError("only pickled, never called")


_REBUILD = _Global("torch._utils", "_rebuild_tensor_v2")
_STORAGE_TYPES = {np.dtype(np.float32): _Global("torch", "FloatStorage"),
                  np.dtype(np.int64): _Global("torch", "LongStorage")}


class _Storage:
    def __init__(self, key: str, data: np.ndarray):
        self.key, self.data = key, data


class _Tensor:
    """Reduces like a torch tensor: _rebuild_tensor_v2(storage, offset, size, stride, ...)."""

    def __init__(self, storage: _Storage, shape: tuple, stride: tuple):
        self.storage, self.shape, self.stride = storage, shape, stride

    def __reduce__(self):
        return _REBUILD, (self.storage, 0, self.shape, self.stride, False,
                          collections.OrderedDict())


class _TorchPickler(pickle._Pickler):  # the pure-Python pickler: save_global is overridable

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", _STORAGE_TYPES[obj.data.dtype], obj.key, "cpu", obj.data.size)
        return None

    def save_global(self, obj, name=None):
        if isinstance(obj, _Global):
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
            self.memoize(obj)
        else:
            super().save_global(obj, name)

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[_Global] = save_global


def write_torch_zip(path: str, state: dict[str, np.ndarray], *,
                    transposed_storage: str | None = None) -> None:
    """A state dict in torch.save's zip format. ``transposed_storage`` names a 2-D tensor
    stored as a strided view of its transpose (as torch saves a ``.t()``)."""
    storages, tensors = [], collections.OrderedDict()
    for i, (name, value) in enumerate(state.items()):
        value = np.asarray(value)
        if name == transposed_storage:
            data = np.ascontiguousarray(value.T).reshape(-1)
            stride = (1, value.shape[0])  # element (r, c) at c * rows + r
        else:
            data = np.ascontiguousarray(value).reshape(-1)
            stride = tuple(int(s) // value.itemsize for s in np.ascontiguousarray(value).strides)
        storage = _Storage(str(i), data)
        storages.append(storage)
        tensors[name] = _Tensor(storage, tuple(value.shape), stride)
    buffer = io.BytesIO()
    _TorchPickler(buffer, protocol=2).dump(tensors)
    write_torch_archive(path, buffer.getvalue(), {s.key: s.data.tobytes() for s in storages})


def write_torch_archive(path: str, data_pkl: bytes, storages: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/byteorder", "little")
        for key, data in storages.items():
            archive.writestr(f"archive/data/{key}", data)
        archive.writestr("archive/version", "3\n")


def fine_tune(root, task: str, max_seq_length: int, **data):
    """A 2-epoch fine-tuning run of configs/bert_finetune.py:task=<task> from a Google-layout
    TF checkpoint of random weights written under ``root``; batch 8.

    Returns (workdir, config, task, trainer) after training.
    """
    from bert_jax import main as bert_main
    from configs import bert_finetune
    from transformer_jax.engine.trainer import Trainer

    write_tf_checkpoint(str(root / "google"), random_weights())
    config = bert_finetune.get_config(f"task={task}")
    config.init_checkpoint = str(root / "google")
    config.data.update(dict(max_seq_length=max_seq_length, **data))
    config.update(dict(batch_size=8, eval_batch_size=8, num_train_epochs=2.0,
                       async_checkpoints=False))
    workdir = str(root / "work")
    task_ = bert_main.make_task(config, workdir)
    trainer = Trainer(config, workdir, task_)
    trainer.run()
    return workdir, config, task_, trainer


# TFDS's squad builder code ships with tensorflow_datasets, so mock_data works offline:
# tfds.load finds the builder and its features without the network or prepared files, and
# our as_dataset stands in for reading them (random mock text would never match offsets).
def mock_squad(records):
    """tfds.load of squad/* yields `records` (dicts of tfds_record)."""
    import tensorflow_datasets as tfds

    def as_dataset(self, *args, **kwargs):
        features = self.info.features
        return tf.data.Dataset.from_generator(
            lambda: iter(records), output_signature=features.get_tensor_spec())
    return tfds.testing.mock_data(as_dataset_fn=as_dataset)


def tfds_record(qid, context, question, answers, plausible=None, is_impossible=None,
                title="t"):
    def seq(pairs):
        return {"text": [t for t, _ in pairs], "answer_start": np.asarray(
            [s for _, s in pairs], np.int32).reshape(-1)}
    record = {"id": qid, "title": title, "context": context, "question": question,
              "answers": seq(answers)}
    if is_impossible is not None:
        record.update(plausible_answers=seq(plausible or []), is_impossible=is_impossible)
    return record
