"""Google's original TF BERT checkpoints (google-research/bert and its released models).

A directory holds ``bert_config.json``, ``bert_model.ckpt.index`` + ``.data-*`` and
``vocab.txt``. Checkpoints written by the original ``run_pretraining.py`` also hold the
Adam slots (``.../adam_m``, ``.../adam_v``) and ``global_step``; only the weights are read.
"""

import json
import logging
import os

import tensorflow as tf

from bert_jax.interop import layout
from bert_jax.model import BertConfig

log = logging.getLogger(__name__)

CONFIG_FILE = "bert_config.json"
CHECKPOINT_PREFIX = "bert_model.ckpt"
VOCAB_FILE = "vocab.txt"
_OPTIMIZER_SUFFIXES = ("/adam_m", "/adam_v")


def looks_like(directory: str) -> bool:
    """Whether ``directory`` is meant to be a TF BERT checkpoint directory."""
    return (tf.io.gfile.exists(os.path.join(directory, CONFIG_FILE))
            or bool(tf.io.gfile.glob(os.path.join(directory, "*.index"))))


def checkpoint_prefix(directory: str) -> str:
    """The checkpoint prefix inside ``directory``: the one its ``checkpoint`` file names,
    else ``bert_model.ckpt``, else the only ``*.index`` file's."""
    latest = tf.train.latest_checkpoint(directory)
    # The `checkpoint` file may hold absolute paths of the machine that wrote it.
    if latest and tf.io.gfile.exists(latest + ".index"):
        return latest
    default = os.path.join(directory, CHECKPOINT_PREFIX)
    if tf.io.gfile.exists(default + ".index"):
        return default
    indexes = sorted(tf.io.gfile.glob(os.path.join(directory, "*.index")))
    if not indexes:
        raise FileNotFoundError(f"{default}.index does not exist: a TF BERT directory needs "
                                f"{CHECKPOINT_PREFIX}.index/.data-* beside {CONFIG_FILE}")
    if len(indexes) > 1:
        names = ", ".join(os.path.basename(i)[:-len(".index")] for i in indexes)
        raise ValueError(f"{directory} holds several TF checkpoints ({names}); pass the "
                         "prefix of one, e.g. --input=DIR/model.ckpt-1000")
    return indexes[0][:-len(".index")]


def read_config(path: str) -> BertConfig:
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path} does not exist: a TF BERT checkpoint needs its "
                                f"{CONFIG_FILE} beside the {CHECKPOINT_PREFIX} files")
    with tf.io.gfile.GFile(path) as f:
        try:
            values = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON ({error})") from None
    return layout.config_from_json(values, path)


def read(prefix: str) -> tuple[BertConfig, layout.Tree, str | None, str]:
    """(config, our params, vocab file or None, source) from a checkpoint prefix; the config
    and vocab are the ``bert_config.json`` and ``vocab.txt`` beside it."""
    directory = os.path.dirname(prefix)
    config = read_config(os.path.join(directory, CONFIG_FILE))
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as error:
        detail = (getattr(error, "message", "") or str(error)).splitlines()[0]
        raise ValueError(f"cannot read TF checkpoint {prefix}: {detail}") from None
    names = [n for n in reader.get_variable_to_shape_map()
             if n != "global_step" and not n.endswith(_OPTIMIZER_SUFFIXES)]
    known = {w.tf_name for w in layout.weights(config.num_layers)}
    ignored = sorted(set(names) - known)
    if ignored:
        log.warning("%s: ignoring %d variables that are not BERT pretraining weights, e.g. %s",
                    prefix, len(ignored), ignored[0])
    named = {n: reader.get_tensor(n) for n in names if n in known}
    params, absent = layout.tf_to_tree(named, config, f"TF checkpoint {prefix}")
    if absent:
        log.info("%s has no %s weights", prefix, "/".join(absent))
    vocab = os.path.join(directory, VOCAB_FILE)
    return (config, params, vocab if tf.io.gfile.exists(vocab) else None,
            f"TF checkpoint {prefix}")
