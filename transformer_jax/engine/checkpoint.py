"""Orbax checkpoints: periodic async saves, keep-last-N, resume, restore onto any mesh.

Each checkpoint holds two items: ``state`` (step, params, optimizer state) and
``metadata`` (the task name, the model hyperparameters and the full config as JSON).

Restore precedence, the one rule users need to know:
  1. the latest checkpoint in ``<workdir>/checkpoints`` (resume after preemption);
  2. else ``config.init_from`` (a checkpoint directory of a previous run: params only);
  3. else a fresh initialisation.
Restoring always targets the *current* mesh: arrays are read straight into the shardings
of the abstract state, so a run saved on 8 devices resumes on 2 or on a different preset.
"""

import json
import logging
from typing import Any, Callable

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from etils import epath

log = logging.getLogger(__name__)

CHECKPOINT_SUBDIR = "checkpoints"


class CheckpointMismatchError(ValueError):
    """The checkpoint belongs to another task or model shape."""


def make_manager(workdir: str, *, max_to_keep: int = 5, async_save: bool = True,
                 save_interval_steps: int = 1) -> ocp.CheckpointManager:
    # epath, not os.path: workdirs are often gs:// URLs, which abspath would mangle.
    directory = epath.Path(workdir) / CHECKPOINT_SUBDIR
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True, enable_async_checkpointing=async_save,
        save_interval_steps=save_interval_steps)
    return ocp.CheckpointManager(directory, options=options, item_names=("state", "metadata"))


class _DropReadOnlyNotice(logging.Filter):
    """Drops orbax's 'Given directory is read only' warning, which it logs for every
    read-only manager: here that mode is the request, not news, and the line printed before
    each result or one-line error of extract_features, convert and translate."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Given directory is read only")


def read_only_manager(directory: Any, **manager_kwargs) -> ocp.CheckpointManager:
    """A manager over another run's checkpoints that never creates, saves or deletes.

    The options orbax would otherwise reset for read-only use (each with a warning line) are
    set here. ``manager_kwargs``: ``item_names`` or ``item_handlers``.
    """
    options = ocp.CheckpointManagerOptions(read_only=True, create=False, save_interval_steps=0)
    notice_filter, absl_logger = _DropReadOnlyNotice(), logging.getLogger("absl")
    absl_logger.addFilter(notice_filter)
    try:
        return ocp.CheckpointManager(directory, options=options, **manager_kwargs)
    finally:
        absl_logger.removeFilter(notice_filter)


def save(manager: ocp.CheckpointManager, step: int, state: Any, metadata: dict,
         force: bool = False) -> bool:
    """Starts an (async) save of ``state`` at ``step``; returns whether a save began."""
    return manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        metadata=ocp.args.JsonSave(json.loads(json.dumps(metadata, default=str)))), force=force)


def read_metadata(manager: ocp.CheckpointManager, step: int) -> dict:
    restored = manager.restore(step, args=ocp.args.Composite(metadata=ocp.args.JsonRestore()))
    return restored["metadata"]


def check_compatible(saved: dict, task_name: str, compat: dict, where: str) -> None:
    """Refuses a checkpoint of another task, parameter shape or vocabulary, naming fields.

    ``compat`` is the task's ``compatibility_hparams()``; it is compared with the copy
    saved in the checkpoint's metadata.
    """
    if saved.get("task") != task_name:
        raise CheckpointMismatchError(
            f"{where} holds a '{saved.get('task')}' checkpoint, not '{task_name}'; "
            "use a new --workdir")
    current = json.loads(json.dumps(compat, default=str))
    old = saved.get("compat", {})
    diffs = [f"{k}: checkpoint {old.get(k)!r} vs config {v!r}"
             for k, v in current.items() if old.get(k) != v]
    if diffs:
        raise CheckpointMismatchError(
            f"{where} holds a checkpoint of a different model ({'; '.join(diffs)}); "
            "use a new --workdir or the checkpoint's model config")


def restore_state(manager: ocp.CheckpointManager, step: int, abstract_state: Any) -> Any:
    """Restores the train state at ``step`` into the shardings of ``abstract_state``."""
    restored = manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)))
    return restored["state"]


class NoReadableCheckpointError(ValueError):
    """Every checkpoint in the workdir failed to restore."""


def restore_latest_readable(manager: ocp.CheckpointManager, abstract_state: Any,
                            check: Callable[[dict], None]) -> tuple[int, Any, dict] | None:
    """(step, state, metadata) of the newest checkpoint that restores, or None if there is
    none.

    A checkpoint that fails to read (truncated or missing files: a disk filled up, a copy
    cut short) is reported and the previous one tried. Once one restores, the unreadable
    newer ones are set aside as ``<step>.unreadable`` (kept for inspection, out of the
    way of the steps the run saves next). ``check(metadata)`` refuses a checkpoint of
    another model: that error is raised, not skipped. If none restores, nothing is moved
    and the first error is raised.
    """
    failed: list[tuple[int, Exception]] = []
    for step in sorted(manager.all_steps(), reverse=True):
        try:
            metadata = read_metadata(manager, step)
        except Exception as error:  # noqa: BLE001 (any read failure means unreadable)
            failed.append((step, error))
            continue
        check(metadata)  # a mismatch is the user's to fix, never skipped
        try:
            state = restore_state(manager, step, abstract_state)
        except Exception as error:  # noqa: BLE001
            failed.append((step, error))
            continue
        for bad, error in failed:
            log.error("checkpoint at step %d in %s is unreadable (%s): set aside as "
                      "%d.unreadable; resuming from step %d", bad, manager.directory,
                      _first_line(error), bad, step)
        _set_aside(manager, [bad for bad, _ in failed])
        return step, state, metadata
    if failed:
        steps = ", ".join(str(step) for step, _ in failed)
        raise NoReadableCheckpointError(
            f"no checkpoint in {manager.directory} restores (steps {steps}; newest: "
            f"{_first_line(failed[0][1])}): restore the files, or move checkpoints/ away to "
            "start over")
    return None


def _first_line(error: BaseException) -> str:
    """The root cause's first line: Orbax wraps the TensorStore error that names the file."""
    while (error.__cause__ or error.__context__) is not None:
        error = error.__cause__ or error.__context__
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


def _set_aside(manager: ocp.CheckpointManager, steps: list[int]) -> None:
    if not steps:
        return
    if jax.process_index() == 0:
        for step in steps:
            path = epath.Path(manager.directory) / str(step)
            path.rename(path.parent / f"{step}.unreadable")
    if jax.process_count() > 1:  # every host sees the renames before the next save
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("checkpoint_set_aside")
    manager.reload()


def restore_params(directory: str, abstract_params: Any, step: int | None = None,
                   expect: tuple[str, dict] | None = None) -> Any:
    """Params only, from a workdir or checkpoint directory of another run (``init_from``).

    ``expect``: (task name, compatibility hparams) the checkpoint must match.
    """
    directory = epath.Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"init_from checkpoint {directory} does not exist; "
                                "pass a workdir or its checkpoints/ folder")
    if (directory / CHECKPOINT_SUBDIR).is_dir():
        directory = directory / CHECKPOINT_SUBDIR
    with read_only_manager(directory, item_names=("state", "metadata")) as manager:
        step = manager.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint found in {directory}")
        if expect is not None:
            check_compatible(read_metadata(manager, step), *expect, f"init_from {directory}")
        return restore_params_at(manager, step, abstract_params)


def restore_params_at(manager: ocp.CheckpointManager, step: int, abstract_params: Any) -> Any:
    """Reads just the params subtree (the optimizer state stays on disk)."""
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.PyTreeRestore(
            item={"params": abstract_params},
            restore_args=jax.tree_util.tree_map(
                lambda a: ocp.ArrayRestoreArgs(sharding=a.sharding, dtype=a.dtype),
                {"params": abstract_params}),
            partial_restore=True)))
    return restored["state"]["params"]


def average_params(manager: ocp.CheckpointManager, steps: list[int], abstract_params: Any) -> Any:
    """The element-wise mean of the params of several checkpoints (the paper averages the
    last 5 for base models, 20 for big ones). Accumulates in float32."""
    if not steps:
        raise ValueError("no checkpoints to average")
    total = None
    for step in steps:
        params = restore_params_at(manager, step, abstract_params)
        params = jax.tree_util.tree_map(lambda x: x.astype(jnp.float32), params)
        total = params if total is None else jax.tree_util.tree_map(jnp.add, total, params)
    log.info("averaged params of checkpoints %s", steps)
    return jax.tree_util.tree_map(
        lambda t, a: (t / len(steps)).astype(a.dtype), total, abstract_params)


BEST_SUBDIR = "best"


class BestParams:
    """The params of the best evaluation so far, kept apart from the rolling checkpoints
    in ``<workdir>/best`` (fine-tuning keeps the best epoch by the task's main metric).

    One checkpoint: params only, with metadata naming the metric, its value and the step.
    Saved synchronously: it is rare, and a later step must never see a half-written best.
    """

    def __init__(self, workdir: str, metric: str, mode: str):
        if mode not in ("max", "min"):
            raise ValueError(f"config.best_mode={mode!r}: use 'max' or 'min'")
        self.metric, self.mode = metric, mode
        self.manager = ocp.CheckpointManager(
            epath.Path(workdir) / BEST_SUBDIR,
            options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True,
                                                 enable_async_checkpointing=False),
            item_names=("params", "metadata"))
        latest = self.manager.latest_step()
        self.best_value = (None if latest is None else
                           self.manager.restore(latest, args=ocp.args.Composite(
                               metadata=ocp.args.JsonRestore()))["metadata"]["value"])

    def improves(self, value: float) -> bool:
        if self.best_value is None:
            return True
        return value > self.best_value if self.mode == "max" else value < self.best_value

    def update(self, step: int, params: Any, results: dict, metadata: dict) -> bool:
        """Saves ``params`` if ``results[metric]`` beats the best so far; returns whether."""
        if self.metric not in results:
            raise ValueError(f"config.best_metric={self.metric!r} is not among the eval "
                             f"metrics {sorted(results)}: pick one of them")
        value = float(results[self.metric])
        if not self.improves(value):
            return False
        metadata = dict(metadata, metric=self.metric, value=value, step=step)
        self.manager.save(step, args=ocp.args.Composite(
            params=ocp.args.StandardSave(params),
            metadata=ocp.args.JsonSave(json.loads(json.dumps(metadata, default=str)))),
            force=True)
        self.manager.wait_until_finished()
        self.best_value = value
        log.info("new best %s=%.4f at step %d: params saved in %s", self.metric, value, step,
                 self.manager.directory)
        return True

    def restore(self, abstract_params: Any) -> Any:
        """The best params, read into the shardings of ``abstract_params``."""
        step = self.manager.latest_step()
        if step is None:
            raise FileNotFoundError(f"no best checkpoint in {self.manager.directory}: run "
                                    "training with config.best_metric set first")
        return self.manager.restore(step, args=ocp.args.Composite(
            params=ocp.args.StandardRestore(abstract_params)))["params"]

    def close(self) -> None:
        self.manager.close()
