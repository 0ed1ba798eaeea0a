"""Starting a run from pretrained BERT weights (``config.init_checkpoint``), in any layout
``bert_jax.interop`` reads: Google's TF checkpoints, Hugging Face directories, or a workdir
of this program (phase 2 of pretraining continues from phase 1's workdir this way).

The checkpoint decides the model's shape (its bert_config), the run's config only dropout
and dtypes; its vocab.txt becomes the run's, copied into the workdir so a resumed run never
needs the checkpoint again. Shared by pretraining and fine-tuning.
"""

import dataclasses
import logging
from typing import Any

import jax
import ml_collections
import tensorflow as tf

from bert_jax import interop
from bert_jax.model import BertConfig
from bert_jax.tokenization import same_vocab
from transformer_jax import stacking

log = logging.getLogger(__name__)

# Run settings that may differ from the checkpoint's: they leave the weights' meaning intact.
RUN_FIELDS = ("hidden_dropout", "attention_dropout", "attention_implementation", "dtype",
              "param_dtype", "remat", "scan_layers")


def model_config(pretrained: interop.Pretrained,
                 model: ml_collections.ConfigDict) -> BertConfig:
    """The checkpoint's BertConfig with the run's dropout and dtypes. A size field the
    config sets explicitly (not None) must agree with the checkpoint."""
    source = pretrained.config
    for name, value in model.to_dict().items():
        if name in RUN_FIELDS or name == "size" or value is None:
            continue
        if getattr(source, name) != value:
            raise ValueError(f"config sets model.{name}={value} but init_checkpoint "
                             f"{pretrained.source} has {name}={getattr(source, name)}: drop "
                             f"the override (the checkpoint fixes the model's shape)")
    run = {name: model[name] for name in RUN_FIELDS if name in model}
    config = dataclasses.replace(source, **run)
    log.info("model from init_checkpoint %s: %d layers, hidden %d, %d heads, vocab %d",
             pretrained.source, config.num_layers, config.hidden_size, config.num_heads,
             config.vocab_size)
    return config


def adopt_vocab(pretrained: interop.Pretrained, vocab_path: str) -> None:
    """Copies the checkpoint's vocab.txt to ``vocab_path`` (the workdir's), or checks that
    the one already there is the same: another vocabulary would scramble the embeddings."""
    if not pretrained.vocab_file:
        if not tf.io.gfile.exists(vocab_path):
            raise FileNotFoundError(f"init_checkpoint {pretrained.source} has no vocab.txt: "
                                    "set data.vocab_file to the vocab it was trained with")
        return
    if not tf.io.gfile.exists(vocab_path):
        tf.io.gfile.copy(pretrained.vocab_file, vocab_path)
        return
    check_same_vocab(pretrained, vocab_path)


def resolve_vocab(pretrained: interop.Pretrained, vocab_file: str, workdir: str) -> str:
    """The run's vocab.txt: ``vocab_file`` if given (it must be the checkpoint's), else the
    checkpoint's copied into ``workdir``."""
    if vocab_file:
        check_same_vocab(pretrained, vocab_file)
        return vocab_file
    tf.io.gfile.makedirs(workdir)
    path = f"{workdir.rstrip('/')}/vocab.txt"
    adopt_vocab(pretrained, path)
    return path


def check_same_vocab(pretrained: interop.Pretrained, vocab_path: str) -> None:
    if pretrained.vocab_file and not same_vocab(pretrained.vocab_file, vocab_path):
        raise ValueError(f"{vocab_path} differs from the vocab.txt of init_checkpoint "
                         f"{pretrained.source}: use the checkpoint's vocabulary (leave "
                         "data.vocab_file empty in a new workdir)")


def place(pretrained: interop.Pretrained, params: Any) -> Any:
    """``params`` (sharded, freshly initialised) with every pretrained weight put in place.

    Each array goes straight into its leaf's sharding (a host builds only its own shards);
    leaves the checkpoint lacks (a new head) keep their fresh values.
    """
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
    # Checkpoints come in the unscanned layout (layer_i); a scanned model stacks them.
    scanned = stacking.is_scanned(abstract)
    restored, missing = interop.restore_into(
        pretrained, stacking.unscan_tree(abstract) if scanned else abstract)
    if scanned:
        restored = stacking.scan_tree(restored)
    if missing:
        log.info("not in init_checkpoint, freshly initialised: %s", ", ".join(missing))
    return jax.tree.map(
        lambda value, fresh: fresh if isinstance(value, jax.ShapeDtypeStruct) else
        jax.make_array_from_callback(value.shape, fresh.sharding, lambda index: value[index]),
        restored, params, is_leaf=lambda x: isinstance(x, jax.ShapeDtypeStruct))
