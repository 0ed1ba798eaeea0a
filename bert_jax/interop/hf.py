"""Hugging Face BERT directories: ``config.json`` + ``model.safetensors`` (or
``pytorch_model.bin``) + ``vocab.txt``; read, and written by ``export_hf``.

HF names follow the TF scopes with dots (``layout.hf_name``); torch ``Linear`` weights are
the transpose of TF kernels. ``BertForPreTraining`` files prefix the encoder with ``bert.``
and hold the heads; a plain ``BertModel`` file has neither. The MLM decoder weight is tied
to the word embeddings (and its bias to ``cls.predictions.bias``): checked, not loaded.
"""

import json
import logging
import os
from typing import Any, Mapping

import numpy as np
import safetensors
import safetensors.numpy
import tensorflow as tf

from bert_jax.interop import layout, torch_weights
from bert_jax.model import BertConfig

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
TORCH_FILE = "pytorch_model.bin"
VOCAB_FILE = "vocab.txt"
_DECODER_WEIGHT = "cls.predictions.decoder.weight"
_DECODER_BIAS = "cls.predictions.decoder.bias"
_WORD_EMBEDDINGS = "bert.embeddings.word_embeddings.weight"
_OUTPUT_BIAS = "cls.predictions.bias"
_ENCODER_SCOPES = ("embeddings", "encoder", "pooler")  # BertModel's top-level names


def looks_like(directory: str) -> bool:
    """Whether ``directory`` is meant to be a Hugging Face model directory."""
    return any(tf.io.gfile.exists(os.path.join(directory, name))
               for name in (CONFIG_FILE, SAFETENSORS_FILE, TORCH_FILE))


def read(directory: str) -> tuple[BertConfig, layout.Tree, str | None, str]:
    """(config, our params, vocab file or None, source) of a Hugging Face BERT directory."""
    config_path = os.path.join(directory, CONFIG_FILE)
    if not tf.io.gfile.exists(config_path):
        raise FileNotFoundError(f"{config_path} does not exist: a Hugging Face BERT directory "
                                f"needs {CONFIG_FILE} beside {SAFETENSORS_FILE}")
    with tf.io.gfile.GFile(config_path) as f:
        try:
            config = layout.config_from_json(json.load(f), config_path)
        except json.JSONDecodeError as error:
            raise ValueError(f"{config_path} is not valid JSON ({error})") from None
    weights_path, named = _read_weights(directory)
    where = f"Hugging Face checkpoint {weights_path}"
    params, absent = layout.tf_to_tree(hf_to_tf(named, config, where), config, where)
    if absent:
        log.info("%s has no %s weights", weights_path, "/".join(absent))
    vocab = os.path.join(directory, VOCAB_FILE)
    return config, params, vocab if tf.io.gfile.exists(vocab) else None, where


def _read_weights(directory: str) -> tuple[str, dict[str, np.ndarray]]:
    """(file, {HF name: array}) from model.safetensors, else pytorch_model.bin."""
    path = os.path.join(directory, SAFETENSORS_FILE)
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path, "rb") as f:
            try:
                return path, safetensors.numpy.load(f.read())
            except safetensors.SafetensorError as error:  # a header or size that is wrong
                raise ValueError(f"cannot read {path}: {error}; the file is damaged or "
                                 "incomplete (an interrupted download?): fetch it again") from None
            except (KeyError, ValueError) as error:
                # KeyError: a dtype numpy lacks (BF16), raised by safetensors.numpy.
                raise ValueError(f"cannot read {path}: {error!r}; only float16/32/64 "
                                 "safetensors files are supported") from None
    path = os.path.join(directory, TORCH_FILE)
    if tf.io.gfile.exists(path):
        return path, torch_weights.read_state_dict(path)
    for index in (SAFETENSORS_FILE, TORCH_FILE):
        if tf.io.gfile.exists(os.path.join(directory, f"{index}.index.json")):
            raise ValueError(f"{directory} holds a sharded {index}; save it unsharded "
                             "(save_pretrained(..., max_shard_size='10GB'))")
    raise FileNotFoundError(f"{directory} has {CONFIG_FILE} but neither {SAFETENSORS_FILE} "
                            f"nor {TORCH_FILE}")


def _hf_table(config: BertConfig) -> dict[str, tuple[str, bool]]:
    """HF name -> (original TF name, transposed?), old LayerNorm gamma/beta names included."""
    table = {}
    for weight in layout.weights(config.num_layers):
        name, transpose = layout.hf_name(weight.tf_name)
        table[name] = (weight.tf_name, transpose)
        if ".LayerNorm." in name:  # files written before transformers 4.x
            old = name.replace(".LayerNorm.weight", ".LayerNorm.gamma").replace(
                ".LayerNorm.bias", ".LayerNorm.beta")
            table[old] = (weight.tf_name, transpose)
    return table


def hf_to_tf(named: Mapping[str, np.ndarray], config: BertConfig,
             where: str) -> dict[str, np.ndarray]:
    """{HF name: array} -> {original TF name: array in the original layout}."""
    if not any(name.startswith("bert.") for name in named):
        # A BertModel file: the encoder's names carry no "bert." prefix.
        named = {(f"bert.{n}" if n.split(".")[0] in _ENCODER_SCOPES else n): v
                 for n, v in named.items()}
    named = dict(named)
    _check_tied(named, where)
    table = _hf_table(config)
    out, ignored = {}, []
    for name, value in named.items():
        if name in table:
            tf_name, transpose = table[name]
            out[tf_name] = value.T if transpose else value
        elif not name.endswith("position_ids") and name not in (_DECODER_WEIGHT, _DECODER_BIAS):
            ignored.append(name)  # position_ids: a constant buffer, not a weight
    if ignored:
        log.warning("%s: ignoring %d tensors that are not BERT pretraining weights, e.g. %s",
                    where, len(ignored), ignored[0])
    return out


def _check_tied(named: dict[str, np.ndarray], where: str) -> None:
    """The MLM decoder must equal the tensors our model ties it to (it has no other copy)."""
    if _OUTPUT_BIAS not in named and _DECODER_BIAS in named:
        named[_OUTPUT_BIAS] = named[_DECODER_BIAS]  # the tie kept only the decoder's copy
    for decoder, tied in ((_DECODER_WEIGHT, _WORD_EMBEDDINGS), (_DECODER_BIAS, _OUTPUT_BIAS)):
        if decoder in named and tied in named and not np.array_equal(named[decoder], named[tied]):
            raise ValueError(f"{where}: {decoder} differs from {tied}; BERT ties them and this "
                             "model cannot hold an untied MLM output layer")


def export_hf(directory: str, config: BertConfig, params: Mapping[str, Any],
              vocab_file: str | None, *, overwrite: bool = False) -> list[str]:
    """Writes a Hugging Face BERT directory; returns the files written.

    ``params``: our BertForPreTraining tree (numpy or jax arrays; heads optional). Writes
    ``config.json``, ``model.safetensors`` (float32, HF names) and a copy of ``vocab_file``.
    """
    files = [CONFIG_FILE, SAFETENSORS_FILE] + ([VOCAB_FILE] if vocab_file else [])
    existing = [n for n in files if tf.io.gfile.exists(os.path.join(directory, n))]
    if existing and not overwrite:
        raise FileExistsError(f"{directory} already holds {', '.join(existing)}; choose another "
                              "output directory or pass overwrite=True (--overwrite)")
    if vocab_file and not tf.io.gfile.exists(vocab_file):
        raise FileNotFoundError(f"vocab file {vocab_file} does not exist")
    named = tf_to_hf(layout.tree_to_tf(params, config))
    has_heads = "cls.seq_relationship.weight" in named and _OUTPUT_BIAS in named
    hf_config = {
        "architectures": ["BertForPreTraining" if has_heads else "BertModel"],
        "model_type": "bert",
        **layout.config_to_json(config),
        "layer_norm_eps": config.layer_norm_eps,
        "position_embedding_type": "absolute",
    }
    tf.io.gfile.makedirs(directory)
    with tf.io.gfile.GFile(os.path.join(directory, CONFIG_FILE), "w") as f:
        f.write(json.dumps(hf_config, indent=2, sort_keys=True) + "\n")
    # transformers refuses safetensors files without a "format" entry.
    data = safetensors.numpy.save(named, metadata={"format": "pt"})
    with tf.io.gfile.GFile(os.path.join(directory, SAFETENSORS_FILE), "wb") as f:
        f.write(data)
    if vocab_file:
        tf.io.gfile.copy(vocab_file, os.path.join(directory, VOCAB_FILE), overwrite=True)
    else:
        log.warning("no vocab file: %s has no %s", directory, VOCAB_FILE)
    return [os.path.join(directory, n) for n in files]


def tf_to_hf(named: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{original TF name: array} -> {HF name: contiguous float32 array}, decoder tied."""
    out = {}
    for tf_name, value in named.items():
        name, transpose = layout.hf_name(tf_name)
        out[name] = np.ascontiguousarray(value.T if transpose else value, dtype=np.float32)
    if _OUTPUT_BIAS in out:
        # safetensors cannot alias: the tied decoder is written as its own copy.
        out[_DECODER_WEIGHT] = out[_WORD_EMBEDDINGS].copy()
    return out
