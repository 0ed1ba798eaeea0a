"""One entry point for pretrained BERT weights in any supported layout, and the step that
puts them into a model's freshly initialised param tree."""

import dataclasses
from typing import Any, Mapping

import flax.linen as nn
import jax
import numpy as np
import tensorflow as tf

from bert_jax.interop import hf, layout, tf_checkpoint, workdir
from bert_jax.model import BertConfig

LAYOUTS = ("a Google TF BERT directory (bert_config.json, bert_model.ckpt.*, vocab.txt) or its "
           "checkpoint prefix; a Hugging Face BERT directory (config.json, model.safetensors or "
           "pytorch_model.bin, vocab.txt); a training workdir of ours (with checkpoints/)")


@dataclasses.dataclass(frozen=True)
class Pretrained:
    """Pretrained BERT weights as our BertForPreTraining tree."""

    config: BertConfig        # the source's hyperparameters
    params: dict              # nested float32 numpy: 'bert' (+ 'mlm', 'nsp' when present)
    vocab_file: str | None    # the source's vocab.txt, if it has one
    source: str               # what was read, for logs

    def param_count(self) -> int:
        return sum(int(x.size) for x in layout.flatten(self.params).values())


def load_pretrained(path: str) -> Pretrained:
    """Reads BERT weights from any of ``LAYOUTS``; the format is told by the files present."""
    path = path.rstrip("/") or path
    if tf.io.gfile.isdir(path):
        if workdir.looks_like(path):
            return Pretrained(*workdir.read(path))
        if tf_checkpoint.looks_like(path):
            return Pretrained(*tf_checkpoint.read(tf_checkpoint.checkpoint_prefix(path)))
        if hf.looks_like(path):
            return Pretrained(*hf.read(path))
        raise ValueError(f"{path} is not a BERT checkpoint; expected {LAYOUTS}")
    if tf.io.gfile.exists(path + ".index"):
        return Pretrained(*tf_checkpoint.read(path))
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist; expected {LAYOUTS}")
    raise ValueError(f"{path} is a file, not a BERT checkpoint; expected {LAYOUTS}")


# Which config field fixes a mismatched shape, by the param's last path elements.
_SHAPE_FIELDS = {
    ("token_embed", "embedding"): "vocab_size",
    ("mlm", "output_bias"): "vocab_size",
    ("segment_embed", "embedding"): "type_vocab_size",
    ("wi", "kernel"): "intermediate_size",
    ("wi", "bias"): "intermediate_size",
    ("wo", "kernel"): "intermediate_size",
}


def _fix(path: tuple[str, ...], config: BertConfig) -> str:
    field = _SHAPE_FIELDS.get(path[-2:]) or (
        "max_position_embeddings" if path[-1] == "position_embedding" else None)
    if field:
        setting = f"model.{field}={getattr(config, field)}"
    else:
        setting = (f"model.hidden_size={config.hidden_size}, "
                   f"model.num_heads={config.num_heads}")
    return f"set {setting} / use the checkpoint's bert_config"


def _layer_count(tree: Mapping) -> int:
    encoder = layout.get_path(tree, ("encoder",)) or {}
    return sum(1 for k in encoder if k.startswith("layer_"))


def restore_into(pretrained: Pretrained, template: Mapping[str, Any]) -> tuple[dict, list[str]]:
    """The template's tree with every pretrained weight it has a place for.

    ``template``: our param tree (BertForPreTraining's, a task's tree with a ``bert``
    subtree, or BertEncoder's alone), as arrays or ``jax.ShapeDtypeStruct`` (flax boxes are
    unboxed). Returns (numpy tree of the template's structure and dtypes, paths taken from
    the template because the checkpoint lacks them, e.g. ``nsp/...`` or a task's head).
    Those leaves keep the template's value (a ShapeDtypeStruct stays one: initialise it).
    Shape mismatches and a different number of encoder layers raise ValueError.
    """
    template = nn.unbox(template)
    # A template with 'bert' at the top is matched path for path; BertEncoder's alone
    # matches the pretrained 'bert' subtree.
    source = pretrained.params if "bert" in template else pretrained.params.get("bert", {})
    ours_bert = template.get("bert", template)
    theirs_bert = source.get("bert", source)
    if _layer_count(ours_bert) != _layer_count(theirs_bert):
        n = _layer_count(theirs_bert)
        raise ValueError(f"the checkpoint has {n} encoder layers but the model "
                         f"{_layer_count(ours_bert)}: set model.num_layers={n} / use the "
                         "checkpoint's bert_config")
    restored: dict = {}
    missing = []
    for path, leaf in layout.flatten(template).items():
        value = layout.get_path(source, path)
        if value is None:
            missing.append("/".join(path))
            value = leaf if isinstance(leaf, jax.ShapeDtypeStruct) else np.asarray(leaf)
        else:
            if tuple(value.shape) != tuple(leaf.shape):
                raise ValueError(
                    f"param {'/'.join(path)} has shape {tuple(value.shape)} in "
                    f"{pretrained.source} but {tuple(leaf.shape)} in the model: "
                    f"{_fix(path, pretrained.config)}")
            value = np.asarray(value, dtype=leaf.dtype)
        layout.set_path(restored, path, value)
    return restored, missing
