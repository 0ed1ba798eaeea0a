"""The model-agnostic training loop: sharded state, jitted steps, eval, checkpoints, logs.

``train_and_evaluate(config, workdir, task)`` is the whole program; ``main.py`` files only
parse flags and build the task. The steps are pure module-level functions, jitted once
with explicit shardings and a donated state. With NamedSharding a mean over the global
batch is just a mean: there are no hand-written collectives.

Exact resume: the dropout key of step s is fold_in(key(seed), s), the data pipeline skips
the s global batches already consumed, and the optimizer state is checkpointed, so a run
stopped at step k and resumed produces the same losses as one that never stopped.
"""

import functools
import logging
import math
import time
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from transformer_jax.engine import checkpoint as ckpt
from transformer_jax.engine import metrics as metrics_lib
from transformer_jax.engine import memory, optim, preemption
from transformer_jax.engine import sharding as sharding_lib
from transformer_jax.engine import state as state_lib
from transformer_jax.engine.state import TrainState
from transformer_jax.engine.task import Batch, Task

log = logging.getLogger(__name__)


_NON_FINITE_FIX = ("Lower optimizer.learning_rate, raise warmup_steps or enable "
                   "clip_grad_norm, then rerun to resume")


class NonFiniteLossError(FloatingPointError):
    """The training loss, or the params an update left, became NaN or infinite."""


def all_finite(tree) -> jax.Array:
    """A scalar bool: no NaN or inf in any floating-point leaf of ``tree``."""
    leaves = [jnp.isfinite(x).all() for x in jax.tree.leaves(tree)
              if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


class Preempted(Exception):
    """The run stopped early on a preemption notice (SIGTERM), after saving a checkpoint."""


def train_step(state: TrainState, batch: Batch, *, task: Task,
               tx: optax.GradientTransformation, seed: int, rng_impl: str,
               metrics_due: Callable[[jax.Array], jax.Array]) -> tuple[TrainState, dict]:
    """One optimizer (micro-)step on a global batch.

    ``metrics_due(step)`` (the step after this one; traced) says whether the host reduces
    the metrics at that step. Only those steps measure the global gradient norm: it reads
    every gradient once more, 28 ms of the 1.66 s Transformer base step on a 2-core CPU,
    and ``lax.cond`` skips it elsewhere. It enters the metric with weight 1 where measured
    and 0 elsewhere, so each reported interval shows the norm at its last step.

    ``rng_impl`` (config.dropout_rng_impl, any of JAX's PRNG implementations) derives the
    keys of dropout: one per step, folded per call site by ``make_rng``. The masks' bulk
    bits are not drawn from it but hash those keys with each element's index
    (``transformer_jax.dropout``): XLA inlines the generator into every consumer of a mask,
    and Threefry there cost 8% of a BERT-base CPU step. Deriving keys is scalar work, so
    the impl no longer matters for speed; the default stays "threefry4x32".
    """
    rng = jax.random.fold_in(jax.random.key(seed, impl=rng_impl), state.step)
    grad_fn = jax.value_and_grad(task.loss_fn, has_aux=True)
    (loss, metrics), grads = grad_fn(state.params, batch, rng)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    step = state.step + 1
    measure = metrics_due(step)
    grad_norm = jax.lax.cond(measure, lambda g: optax.tree.norm(g).astype(jnp.float32),
                             lambda g: jnp.zeros((), jnp.float32), grads)
    metrics = dict(metrics, loss=(loss.astype(jnp.float32), jnp.ones((), jnp.float32)),
                   grad_norm=(grad_norm, measure.astype(jnp.float32)))
    return TrainState(step=step, params=params, opt_state=opt_state), metrics


def check_rng_impl(name: str) -> None:
    """Fails at start-up, naming the config key, when JAX has no such PRNG implementation."""
    try:
        jax.eval_shape(lambda: jax.random.key(0, impl=name))  # traced only: no device work
    except ValueError as error:
        raise ValueError(f"config.dropout_rng_impl={name!r}: {error}") from None


def num_updates(config: ml_collections.ConfigDict) -> int:
    """Optimizer updates in the run: ``num_train_steps`` counts micro-batches."""
    return math.ceil(config.num_train_steps / optim.accumulation_steps(config.optimizer))


def check_config(config: ml_collections.ConfigDict,
                 devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
    """The run's checks that need only the config and the devices: cadence, PRNG, mesh,
    batch sizes, optimizer and schedule; the first thing ``Trainer`` does (it keeps the
    returned mesh). The programs also call it before building a task whose set-up is slow (a
    vocabulary learnt from a large corpus), so a bad value fails in seconds, not after it."""
    for name in ("num_train_steps", "log_every", "checkpoint_every"):
        if config[name] <= 0:
            raise ValueError(f"config.{name}={config[name]} must be positive")
    if config.eval_every < 0:
        raise ValueError(f"config.eval_every={config.eval_every}: use 0 (only at the end) "
                         "or a positive number of steps")
    check_rng_impl(config.dropout_rng_impl)
    mesh = sharding_lib.make_mesh(config.sharding.preset, dict(config.sharding.mesh),
                                  devices=devices)
    shards = mesh.shape["data"] * mesh.shape["fsdp"]
    for name in ("batch_size", "eval_batch_size"):
        size = config[name]
        if size % shards or size % jax.process_count():
            raise ValueError(
                f"config.{name}={size} must be divisible by the {shards} batch shards of "
                f"mesh {dict(mesh.shape)} and by {jax.process_count()} processes")
    # The model's width only scales the 'rsqrt' schedule; its checks hold for any width.
    optim.create_optimizer(config.optimizer, d_model=1, num_train_steps=num_updates(config))
    return mesh


def eval_step(params: Any, batch: Batch, *, task: Task) -> dict:
    return task.eval_fn(params, batch)


class Trainer:
    """Holds the mesh, the compiled steps and the checkpoint manager of one run."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: str, task: Task,
                 devices: Sequence[jax.Device] | None = None):
        """``devices``: the mesh's devices (default all), e.g. one device as a reference."""
        self._started_at = time.perf_counter()  # goodput counts start-up and compilation
        self.restarts = metrics_lib.RestartLedger()
        self.config, self.workdir, self.task = config, workdir, task
        self.best: ckpt.BestParams | None = None  # set in run(): it writes to the workdir
        self.mesh = check_config(config, devices)
        self.rules = sharding_lib.logical_rules(config.sharding.preset)
        self.tx, self.schedule = optim.create_optimizer(
            config.optimizer, d_model=task.model_dim, num_train_steps=num_updates(config))
        init_batch = task.dummy_batch(self.num_batch_shards)
        self.abstract_state, self.state_shardings = state_lib.state_shardings(
            task, self.tx, init_batch, self.mesh, self.rules)
        self.init_batch = init_batch
        memory.check_replication(self.abstract_state.params, self.state_shardings.params,
                                 self.mesh, sharding_lib.weight_axes(config.sharding.preset),
                                 config.sharding.max_replicated_fraction)
        self.batch_sharding = sharding_lib.batch_sharding(self.mesh)
        self.manager = ckpt.make_manager(
            workdir, max_to_keep=config.keep_checkpoints, async_save=config.async_checkpoints)
        # Public: benchmarks and the compile-only report lower it ahead of time.
        self.train_step_fn = jax.jit(
            functools.partial(train_step, task=task, tx=self.tx, seed=config.seed,
                              rng_impl=config.dropout_rng_impl,
                              metrics_due=self._interval_ends),
            in_shardings=(self.state_shardings, self.batch_sharding),
            out_shardings=(self.state_shardings, state_lib.replicated(self.mesh)),
            donate_argnums=(0,))
        self._eval_step = jax.jit(
            functools.partial(eval_step, task=task),
            in_shardings=(self.state_shardings.params, self.batch_sharding),
            out_shardings=state_lib.replicated(self.mesh))
        self._params_finite = jax.jit(
            all_finite, in_shardings=(self.state_shardings.params,),
            out_shardings=state_lib.replicated(self.mesh))

    @property
    def num_batch_shards(self) -> int:
        return self.mesh.shape["data"] * self.mesh.shape["fsdp"]

    def metadata(self, step: int) -> dict:
        return {"task": self.task.name, "model": self.task.model_hparams(),
                "compat": self.task.compatibility_hparams(), "step": step,
                "config": self.config.to_dict(), **self.restarts.to_metadata()}

    def restore_or_init(self) -> TrainState:
        """Latest checkpoint in the workdir, else ``init_from`` params, else the task's
        ``initial_params`` (a pretrained model), else fresh."""
        restored = ckpt.restore_latest_readable(self.manager, self.abstract_state,
                                                self._check_resumable)
        if restored is not None:
            step, state, metadata = restored
            log.info("resuming from checkpoint at step %d", step)
            self.restarts.resumed(metadata)
            return state
        state = state_lib.create_train_state(self.task, self.tx, self.init_batch, self.mesh,
                                             self.rules, self.config.seed, self.state_shardings)
        if self.config.init_from:
            params = ckpt.restore_params(
                self.config.init_from, self.abstract_state.params,
                expect=(self.task.name, self.task.compatibility_hparams()))
            log.info("initialised params from %s", self.config.init_from)
            state = state.replace(params=params)
        elif (params := self.task.initial_params(state.params)) is not None:
            state = state.replace(params=params)
        return state

    def _check_resumable(self, metadata: dict) -> None:
        """The same task and model, and an optimizer whose state the checkpoint's fits."""
        where = f"workdir {self.workdir}"
        ckpt.check_compatible(metadata, self.task.name, self.task.compatibility_hparams(), where)
        saved = metadata.get("config", {}).get("optimizer")
        if saved and "name" in saved:  # metadata of every run of this code has it
            optim.check_resumable(saved, self.config.optimizer, where)

    def evaluate(self, state: TrainState) -> dict[str, float]:
        acc = None
        for local in self.task.eval_batches(self.config.eval_batch_size // jax.process_count(),
                                            jax.process_index(), jax.process_count()):
            batch = sharding_lib.global_batch(local, self.mesh)
            acc = metrics_lib.add_metrics(acc, self._eval_step(state.params, batch))
        results = {f"eval/{k}": v for k, v in metrics_lib.reduce_metrics(acc or {}).items()}
        extra = self.task.evaluate_extra(state.params, int(state.step), self.mesh)
        results.update({f"eval/{k}": v for k, v in extra.items()})
        return results

    def save(self, state: TrainState, step: int) -> None:
        # The NaN guard reads the loss, which the params *before* the update gave: an update
        # that overflows leaves a finite loss and inf/NaN params, which must not be saved as
        # the checkpoint a rerun resumes from.
        finite = self._params_finite(state.params)
        if not jax.device_get(finite.addressable_data(0)):
            raise NonFiniteLossError(
                f"params are not finite after the update of step {step}; last good "
                f"checkpoint: {self.manager.latest_step()} in {self.workdir} (kept). "
                f"{_NON_FINITE_FIX}")
        ckpt.save(self.manager, step, state, self.metadata(step), force=True)

    def learning_rate(self, step: int) -> float:
        """The rate the update that completed ``step`` used (optax counts from 0)."""
        # Evaluated eagerly for the log line: a deliberate, scalar host->device copy.
        with jax.transfer_guard("allow"):
            micro_steps = optim.accumulation_steps(self.config.optimizer)
            return float(self.schedule((step - 1) // micro_steps))

    def _finish_interval(self, pending: dict, step: int) -> dict[str, float]:
        """Host-side reduction of the interval's metrics; stops the run on NaN/inf."""
        values = {f"train/{k}": v for k, v in metrics_lib.reduce_metrics(pending).items()}
        if not math.isfinite(values.get("train/loss", 0.0)):
            last = self.manager.latest_step()
            raise NonFiniteLossError(
                f"training loss is {values['train/loss']} by step {step}; last good "
                f"checkpoint: {last} in {self.workdir} (kept). {_NON_FINITE_FIX}")
        values["train/learning_rate"] = self.learning_rate(step)
        return values

    def run(self) -> dict[str, float]:
        with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
            # Restore (and its compatibility checks) before anything is written, so a run
            # refused at start leaves the workdir exactly as it was.
            state = self.restore_or_init()
            self.best = (ckpt.BestParams(self.workdir, self.config.best_metric,
                                         self.config.best_mode)
                         if self.config.get("best_metric") else None)
            metrics_lib.log_once(sharding_lib.describe_shardings(self.state_shardings.params),
                                 f"params: {state_lib.param_count(state.params):,}; shardings:")
            writer = metrics_lib.SummaryWriter(self.workdir)
            try:
                with preemption.SigtermNotice() as notice:
                    return self._train_loop(state, writer, notice)
            finally:
                # Also when an error stops the run (NaN, a failing eval, preemption): a save
                # still in flight is completed, so the checkpoint an error names exists.
                self.manager.wait_until_finished()
                writer.close()
                if self.best:
                    self.best.close()

    def _train_loop(self, state: TrainState, writer: metrics_lib.SummaryWriter,
                    notice: preemption.SigtermNotice) -> dict:
        cfg = self.config
        step = int(state.step)
        if step >= cfg.num_train_steps:
            log.info("workdir already at step %d of %d: evaluating only", step,
                     cfg.num_train_steps)
            return self.evaluate(state)
        data = self.task.train_batches(cfg.batch_size // jax.process_count(), step,
                                       jax.process_index(), jax.process_count())
        peak_flops = metrics_lib.peak_flops_for_mfu(cfg.peak_tflops_per_device,
                                                    cfg.model.dtype)
        throughput = metrics_lib.Throughput(step, cfg.num_train_steps, peak_flops,
                                            started_at=self._started_at)
        pending, results = None, {}
        while step < cfg.num_train_steps:
            with throughput.timing("data_wait"):
                local = next(data)
            state, step_metrics = self.train_step_fn(
                state, sharding_lib.global_batch(local, self.mesh))
            step += 1
            pending = metrics_lib.add_metrics(pending, step_metrics)
            # Every host sees its own slice: tokens of the global batch ~ local x hosts.
            throughput.add_step(self.task.tokens_in_batch(local) * jax.process_count(),
                                self.task.flops_per_step(local))
            results = self._after_step(state, step, pending, throughput, writer) or results
            if self._interval_ends(step):  # _after_step consumed the interval's metrics
                pending = None
            if notice.reached(step, self.manager):
                log.warning("preemption notice at step %d: saving, then stopping", step)
                break
        if pending is not None:  # stopped mid-interval (preemption): NaN check before saving
            self._finish_interval(pending, step)
        if self.manager.latest_step() != step:
            self.save(state, step)
        if step < cfg.num_train_steps:
            self.manager.wait_until_finished()
            raise Preempted(f"preempted at step {step} of {cfg.num_train_steps}: checkpoint "
                            f"saved in {self.workdir}; run the same command to resume")
        return results

    def _interval_ends(self, step):
        """Steps at which metrics are reduced on the host: logs and saves (and the last).

        ``step``: an int on the host, or the traced step inside ``train_step`` (hence ``|``).
        """
        cfg = self.config
        return ((step % cfg.log_every == 0) | (step % cfg.checkpoint_every == 0)
                | (step == cfg.num_train_steps))

    def _after_step(self, state, step, pending, throughput, writer) -> dict | None:
        cfg = self.config
        is_last = step == cfg.num_train_steps
        log_now = step % cfg.log_every == 0 or is_last
        save_now = step % cfg.checkpoint_every == 0 or is_last
        eval_now = (cfg.eval_every and step % cfg.eval_every == 0) or is_last
        results = None
        if self._interval_ends(step):
            jax.block_until_ready(state.step)
            values = self._finish_interval(pending, step)  # raises before any save on NaN
            values.update(throughput.measure(step))
            values["perf/lost_to_restarts_s"] = self.restarts.lost_s
            if log_now:
                writer.scalars(step, values)
                if jax.process_index() == 0:
                    log.info(metrics_lib.progress_line(step, cfg.num_train_steps, values))
        if save_now:  # before eval, so a failing eval never costs the trained steps
            with throughput.timing("checkpoint"):
                self.save(state, step)
        if eval_now:
            with throughput.timing("eval"):
                results = self.evaluate(state)
            if self.best:
                self.best.update(step, state.params, results, self.metadata(step))
            writer.scalars(step, results)
            if jax.process_index() == 0:
                log.info("eval at step %d: %s", step,
                             ", ".join(f"{k}={v:.4f}" for k, v in sorted(results.items())))
        return results


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       task: Task) -> dict[str, float]:
    """Trains ``task`` per ``config`` in ``workdir``; returns the final eval metrics."""
    return Trainer(config, workdir, task).run()
