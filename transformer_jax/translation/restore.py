"""Loading a trained translation workdir for inference: model, params, tokenizer, metadata.

A workdir is self-describing: every checkpoint's metadata holds the model hyperparameters
(``TransformerConfig`` fields) and the full training config, and ``vocab.model`` is the
shared SentencePiece vocabulary. Only the params are read; the optimizer state stays on
disk. Params land replicated (or as the given rules say) on the given mesh.
"""

import logging
import os
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
import tensorflow as tf
from jax.sharding import Mesh

from transformer_jax.engine import checkpoint as ckpt
from transformer_jax.engine import sharding as sharding_lib
from transformer_jax.model import Transformer, TransformerConfig
from transformer_jax.translation.tokenizer import Tokenizer

log = logging.getLogger(__name__)

VOCAB_FILE = "vocab.model"


class LoadedWorkdir(NamedTuple):
    """What inference needs from a workdir; unpacks as (model, params, tokenizer, metadata)."""

    model: Transformer
    params: Any
    tokenizer: Tokenizer
    metadata: dict


def checkpoint_dir(workdir: str) -> str:
    """``<workdir>/checkpoints``, failing with one line if the workdir or folder is missing."""
    if not tf.io.gfile.isdir(workdir):
        raise FileNotFoundError(f"workdir {workdir} does not exist")
    directory = os.path.join(workdir, ckpt.CHECKPOINT_SUBDIR)
    if not tf.io.gfile.isdir(directory):
        raise FileNotFoundError(f"workdir {workdir} has no {ckpt.CHECKPOINT_SUBDIR}/ folder: "
                                "train into it first")
    # Orbax wants absolute local paths; remote URLs (gs://...) must be left as they are.
    return directory if "://" in directory else os.path.abspath(directory)


def open_manager(workdir: str) -> ocp.CheckpointManager:
    """A read-only manager over the workdir's checkpoints (never creates or deletes)."""
    return ckpt.read_only_manager(checkpoint_dir(workdir), item_names=("state", "metadata"))


def select_steps(available: list[int], step: int | None, average_last: int,
                 workdir: str) -> list[int]:
    """The ``average_last`` checkpoint steps ending at ``step`` (default: the latest)."""
    if average_last < 1:
        raise ValueError(f"average_last must be >= 1, got {average_last}")
    available = sorted(available)
    if not available:
        raise FileNotFoundError(f"no checkpoint found in {workdir}")
    if step is None:
        step = available[-1]
    elif step not in available:
        raise ValueError(f"no checkpoint at step {step} in {workdir}; available: {available}")
    candidates = [s for s in available if s <= step]
    if average_last > len(candidates):
        raise ValueError(f"cannot average the last {average_last} checkpoints up to step {step}:"
                         f" {workdir} has only {len(candidates)} ({candidates})")
    return candidates[-average_last:]


def load_tokenizer(workdir: str, metadata: dict) -> Tokenizer:
    """The workdir's vocab.model, else the training config's ``data.vocab_path``."""
    path = os.path.join(workdir, VOCAB_FILE)
    if not tf.io.gfile.exists(path):
        path = metadata.get("config", {}).get("data", {}).get("vocab_path") or path
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"no SentencePiece vocabulary: {workdir} lacks {VOCAB_FILE} and "
                                "the config names no data.vocab_path")
    return Tokenizer.from_file(path)


def abstract_params(model: Transformer, mesh: Mesh, preset: str = "dp") -> Any:
    """Shapes, dtypes and shardings of the params, computed without allocating them."""
    rules = sharding_lib.logical_rules(preset)
    dummy = jnp.ones((1, 1), jnp.int32)  # param shapes do not depend on lengths
    with nn.logical_axis_rules(rules):
        boxed = jax.eval_shape(lambda: model.init(jax.random.key(0), dummy, dummy)["params"])
    shardings = sharding_lib.logical_to_shardings(boxed, mesh, rules)
    return jax.tree_util.tree_map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
        nn.meta.unbox(boxed), shardings)


def load_workdir(workdir: str, step: int | None = None, average_last: int = 1,
                 mesh: Mesh | None = None) -> LoadedWorkdir:
    """Model, params (the mean of the last ``average_last`` checkpoints up to ``step``),
    tokenizer and the metadata of the checkpoint at ``step`` (default: the latest).

    The paper averages the last 5 (base) or 20 (big) checkpoints before decoding.
    """
    mesh = mesh or sharding_lib.make_mesh("dp")
    with open_manager(workdir) as manager:
        steps = select_steps(list(manager.all_steps()), step, average_last, workdir)
        metadata = ckpt.read_metadata(manager, steps[-1])
        if metadata.get("task") != "translation":
            raise ValueError(f"{workdir} holds a '{metadata.get('task')}' checkpoint, "
                             "not a translation model")
        # The default attention core: the run's kernel (cuDNN, say) may not exist here.
        model = Transformer(TransformerConfig.from_dict(
            dict(metadata["model"], attention_implementation="einsum")))
        abstract = abstract_params(model, mesh)
        if len(steps) == 1:
            params = ckpt.restore_params_at(manager, steps[0], abstract)
        else:
            params = ckpt.average_params(manager, steps, abstract)
    log.info("loaded %s at step(s) %s", workdir, steps)
    return LoadedWorkdir(model, params, load_tokenizer(workdir, metadata), metadata)
