"""Convert a workdir's latest checkpoint between the unscanned and scanned layer layouts.

  python -m transformer_jax.convert_layout --input=/tmp/run --output=/tmp/run_scanned \
      --layout=scanned
  # then resume there with the same config plus --config.model.scan_layers=True

The whole train state moves (params and the optimizer moments that mirror them, step and
count unchanged), so training continues exactly where it stopped. The metadata records the
new layout (``scan_layers``), which is what the resume check compares; the vocabulary
files are copied. The input is only read; the output must be a new, empty workdir.
"""
from __future__ import annotations

import json
import logging
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import app, flags
from etils import epath

from transformer_jax import runtime, stacking
from transformer_jax.engine import checkpoint as ckpt

FLAGS = flags.FLAGS
log = logging.getLogger("transformer_jax")

VOCAB_FILES = ("vocab.txt", "vocab.model")


def convert(source: str, target: str, layout: str) -> int:
    """Writes ``source``'s latest checkpoint to ``target`` in ``layout``; returns its step."""
    source_dir = epath.Path(source)
    if source_dir.name != ckpt.CHECKPOINT_SUBDIR:
        source_dir = source_dir / ckpt.CHECKPOINT_SUBDIR
    target_dir = epath.Path(target)
    if (target_dir / ckpt.CHECKPOINT_SUBDIR).exists():
        raise FileExistsError(f"{target_dir} already has checkpoints: pick a new --output")
    handlers = {"state": ocp.PyTreeCheckpointHandler(), "metadata": ocp.JsonCheckpointHandler()}
    with ckpt.read_only_manager(source_dir, item_handlers=handlers) as reader:
        step = reader.latest_step()
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {source_dir}")
        shapes = reader.item_metadata(step)["state"]
        restored = reader.restore(step, args=ocp.args.Composite(
            state=ocp.args.PyTreeRestore(item=shapes, restore_args=jax.tree.map(
                lambda _: ocp.RestoreArgs(restore_type=np.ndarray), shapes)),
            metadata=ocp.args.JsonRestore()))
    state, metadata = restored["state"], restored["metadata"]
    scanned = layout == "scanned"
    if stacking.is_scanned(state["params"]) == scanned:
        raise ValueError(f"{source_dir} step {step} is already {layout}")
    state = (stacking.scan_tree if scanned else stacking.unscan_tree)(state)
    for section in ("model", "compat"):
        metadata.setdefault(section, {})["scan_layers"] = scanned
    metadata.setdefault("config", {}).setdefault("model", {})["scan_layers"] = scanned
    writer = ckpt.make_manager(str(target_dir), async_save=False)
    writer.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        metadata=ocp.args.JsonSave(json.loads(json.dumps(metadata, default=str)))), force=True)
    writer.wait_until_finished()
    writer.close()
    workdir = source_dir.parent
    for name in VOCAB_FILES:
        if (workdir / name).exists():
            (workdir / name).copy(target_dir / name)
    return step


def define_flags() -> None:
    """Defined only when run as a program, so importing this module registers nothing."""
    flags.DEFINE_string("input", None, "Workdir (or its checkpoints/) to read.")
    flags.DEFINE_string("output", None, "New workdir to write the converted checkpoint into.")
    flags.DEFINE_enum("layout", None, ["scanned", "unscanned"], "The layout to convert to.")
    flags.mark_flags_as_required(["input", "output", "layout"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    runtime.setup_host()
    try:
        step = convert(FLAGS.input, FLAGS.output, FLAGS.layout)
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        sys.exit(f"error: {runtime.last_line(error)}")
    log.info("wrote step %d of %s to %s in the %s layout; resume there with "
             "--config.model.scan_layers=%s", step, FLAGS.input, FLAGS.output, FLAGS.layout,
             FLAGS.layout == "scanned")


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=runtime.parse_flags)
