"""Our own training workdirs: Orbax checkpoints written by ``transformer_jax.engine``.

Each step holds a ``metadata`` item (``task``, ``model`` = ``dataclasses.asdict(BertConfig)``)
and a ``state`` item whose ``params`` are BertForPreTraining's tree, or for a fine-tuning
task a tree with a ``bert`` subtree. Only the params of the latest step are read, as numpy
arrays on the host: no target tree, mesh or optimizer state is needed.
"""

import dataclasses
import logging

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from bert_jax.interop import layout
from bert_jax.model import BertConfig
from transformer_jax import stacking
from transformer_jax.engine import checkpoint as ckpt
from transformer_jax.engine.checkpoint import CHECKPOINT_SUBDIR

log = logging.getLogger(__name__)

VOCAB_FILE = "vocab.txt"
_KEPT = ("bert", "mlm", "nsp")  # what Pretrained carries; task heads stay with their task


def looks_like(directory: str) -> bool:
    path = epath.Path(directory)
    return path.name == CHECKPOINT_SUBDIR or (path / CHECKPOINT_SUBDIR).is_dir()


def read(directory: str) -> tuple[BertConfig, layout.Tree, str | None, str]:
    """(config, our params, vocab file or None, source) of a workdir or its checkpoints/."""
    path = epath.Path(directory)
    if path.name == CHECKPOINT_SUBDIR:
        workdir, checkpoints = path.parent, path
    else:
        workdir, checkpoints = path, path / CHECKPOINT_SUBDIR
    # Handlers named up front: without them a read-only manager cannot read item metadata.
    handlers = {"state": ocp.PyTreeCheckpointHandler(), "metadata": ocp.JsonCheckpointHandler()}
    with ckpt.read_only_manager(checkpoints, item_handlers=handlers) as manager:
        step = manager.latest_step()
        if step is None:
            raise FileNotFoundError(f"{checkpoints} holds no checkpoint steps; point at a "
                                    "workdir that has trained at least one save interval")
        metadata = manager.restore(step, args=ocp.args.Composite(
            metadata=ocp.args.JsonRestore()))["metadata"]
        config = _config(metadata, checkpoints)
        tree = manager.item_metadata(step)["state"]
        abstract = tree["params"]
        restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
            item={"params": abstract},
            restore_args={"params": jax.tree.map(
                lambda _: ocp.RestoreArgs(restore_type=np.ndarray), abstract)},
            partial_restore=True)))  # the optimizer state stays on disk
    params = restored["state"]["params"]
    if "bert" not in params:
        raise ValueError(f"{checkpoints} step {step}: params have no 'bert' subtree (top level: "
                         f"{sorted(params)}); it is not a BERT checkpoint")
    dropped = sorted(set(params) - set(_KEPT))
    if dropped:
        log.info("%s: leaving out the task's own params %s", checkpoints, dropped)
    # The interchange layout is unscanned (layer_i), whatever layout the run trained in.
    params = {k: stacking.unscan_tree(jax.tree.map(lambda x: np.asarray(x, np.float32),
                                                   params[k]))
              for k in _KEPT if k in params}
    config = dataclasses.replace(config, scan_layers=False)
    vocab = workdir / VOCAB_FILE
    return (config, params, str(vocab) if vocab.exists() else None,
            f"{metadata.get('task')} workdir {checkpoints} step {step}")


def _config(metadata: dict, where: epath.Path) -> BertConfig:
    model = metadata.get("model")
    try:
        # The default attention core: the run's kernel (cuDNN, say) may not exist here.
        return BertConfig.from_dict(dict(model, attention_implementation="einsum"))
    except (TypeError, ValueError):
        # Not the key lists BertConfig.from_dict names: they would bury the line's point.
        raise ValueError(f"{where} holds a '{metadata.get('task')}' checkpoint whose model is "
                         "not BERT: give a BERT checkpoint (a pretraining or fine-tuning "
                         "workdir, Google's TF files or a Hugging Face directory)") from None
