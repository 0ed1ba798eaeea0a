"""Optimizers and learning-rate schedules, built from the `optimizer` ConfigDict.

Fields read from `config.optimizer`:
  name             'adam' | 'adamw' | 'lamb'
  learning_rate    peak LR for 'linear' and 'constant'; a multiplier of the paper's formula
                   for 'rsqrt' (1.0 reproduces the paper)
  schedule         'rsqrt' | 'linear' | 'constant'
  warmup_steps     linear warmup length (the paper: 4000)
  b1, b2, eps      Adam moments and epsilon (the paper: 0.9, 0.98, 1e-9)
  decay_steps      'linear' only: step at which the LR reaches 0; 0 means num_train_steps
  weight_decay     decoupled weight decay for 'adamw' / 'lamb'; must be 0 for 'adam'
  clip_grad_norm   clip the gradient to this global norm first; 0 turns clipping off
  grad_accum_steps average this many micro-batch gradients per update (1 = off)

Steps: schedules are indexed by optimizer *updates* (optax's inner count, starting at 0),
not by micro-batches: with gradient accumulation the `num_train_steps` passed here and the
step fields above count updates. (The trainer's own `config.num_train_steps` counts
micro-batches and passes ceil(num_train_steps / grad_accum_steps) here.)
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax

OPTIMIZERS = ("adam", "adamw", "lamb")
SCHEDULES = ("rsqrt", "linear", "constant")
_OPTIONAL_DEFAULTS = {
    "decay_steps": 0,
    "weight_decay": 0.0,
    "clip_grad_norm": 0.0,
    "grad_accum_steps": 1,
}


def _field(opt_config: ml_collections.ConfigDict, name: str):
    """Reads optimizer.<name>, with a readable error when a required field is missing."""
    if name in opt_config:
        return opt_config[name]
    if name in _OPTIONAL_DEFAULTS:
        return _OPTIONAL_DEFAULTS[name]
    raise ValueError(f"config.optimizer.{name} is missing; add it to the config")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


# ----------------------------------------------------------------------------- schedules


def rsqrt_schedule(peak_multiplier: float, d_model: int, warmup_steps: int) -> optax.Schedule:
    """The paper's schedule, section 5.3, times `peak_multiplier`:

        lrate = d_model^-0.5 * min(step^-0.5, step * warmup_steps^-1.5)

    The paper counts steps from 1 while optax counts from 0, so optax count c is the paper's
    step c + 1; otherwise the very first update would use LR 0 (or divide by zero).
    """

    def schedule(count):
        step = jnp.asarray(count, jnp.float32) + 1.0
        warmup_factor = step * warmup_steps**-1.5
        decay_factor = jax.lax.rsqrt(step)
        return peak_multiplier * d_model**-0.5 * jnp.minimum(decay_factor, warmup_factor)

    return schedule


def linear_warmup_decay_schedule(
    peak_value: float, warmup_steps: int, decay_steps: int
) -> optax.Schedule:
    """BERT's recipe: 0 → peak linearly over warmup_steps, then linearly to 0 at decay_steps."""
    decay = optax.linear_schedule(peak_value, 0.0, transition_steps=decay_steps - warmup_steps)
    if warmup_steps == 0:
        return decay
    warmup = optax.linear_schedule(0.0, peak_value, transition_steps=warmup_steps)
    return optax.join_schedules([warmup, decay], boundaries=[warmup_steps])


def constant_schedule(value: float, warmup_steps: int) -> optax.Schedule:
    """Constant LR after a linear warmup from 0."""
    if warmup_steps == 0:
        # optax.warmup_constant_schedule(0, v, 0) stays at 0 forever; avoid it.
        return optax.constant_schedule(value)
    return optax.warmup_constant_schedule(0.0, value, warmup_steps)


def create_learning_rate_schedule(
    opt_config: ml_collections.ConfigDict, *, d_model: int, num_train_steps: int
) -> optax.Schedule:
    """Returns the schedule named by optimizer.schedule (see the module docstring)."""
    name = _field(opt_config, "schedule")
    learning_rate = float(_field(opt_config, "learning_rate"))
    warmup_steps = int(_field(opt_config, "warmup_steps"))
    _require(
        name in SCHEDULES,
        f"unknown optimizer.schedule={name!r}; choose one of {', '.join(SCHEDULES)}",
    )
    _require(learning_rate >= 0, f"optimizer.learning_rate={learning_rate} is negative; use >= 0")
    _require(warmup_steps >= 0, f"optimizer.warmup_steps={warmup_steps} is negative; use >= 0")

    if name == "rsqrt":
        _require(
            warmup_steps > 0,
            "the 'rsqrt' schedule needs optimizer.warmup_steps > 0 (the paper uses 4000)",
        )
        _require(d_model > 0, f"d_model={d_model} must be positive for the 'rsqrt' schedule")
        return rsqrt_schedule(learning_rate, d_model, warmup_steps)
    if name == "linear":
        decay_steps = int(_field(opt_config, "decay_steps")) or num_train_steps
        _require(
            decay_steps > warmup_steps,
            f"linear schedule: decay end {decay_steps} must exceed warmup_steps={warmup_steps}; "
            "raise optimizer.decay_steps (or num_train_steps when it is 0)",
        )
        return linear_warmup_decay_schedule(learning_rate, warmup_steps, decay_steps)
    return constant_schedule(learning_rate, warmup_steps)


# ------------------------------------------------------------------------- decay mask


def _is_norm_module(name: str) -> bool:
    """True for module names that hold a layer norm: *LayerNorm*, *layer_norm*, ln*, *_norm."""
    lower = name.lower()
    return (
        "layernorm" in lower
        or "layer_norm" in lower
        or lower.startswith("ln")
        or lower.endswith("_norm")
    )


def _should_decay(path: tuple) -> bool:
    """Decides weight decay for one leaf from its path of dict keys."""
    # Only dict keys name modules and params; boxed values (nn.Partitioned) add an
    # attribute key 'value' after the param name, which must not count as the name.
    names = [key.key for key in path if isinstance(key, jax.tree_util.DictKey)]
    if not names:
        return True
    param_name, module_names = str(names[-1]), [str(n) for n in names[:-1]]
    if param_name == "bias" or param_name.endswith("_bias"):
        return False
    return not any(_is_norm_module(module) for module in module_names)


def decay_mask(params) -> object:
    """Pytree of bools, True where weight decay applies (google-research/bert's rule).

    A leaf is excluded when its param name is 'bias' (or ends in '_bias', e.g. an output
    bias), or when any enclosing module is a layer norm (`_is_norm_module`), which excludes
    both its 'scale' and 'bias'. Kernels and embeddings are decayed.

    Works on plain arrays and on flax boxed leaves (nn.Partitioned / LogicallyPartitioned):
    the result has the same tree structure as `params`, as optax.masked requires.
    """
    return jax.tree_util.tree_map_with_path(lambda path, _: _should_decay(path), params)


# -------------------------------------------------------------------------- optimizer


def _base_optimizer(
    opt_config: ml_collections.ConfigDict, schedule: optax.Schedule
) -> optax.GradientTransformation:
    """The optimizer proper, without clipping or accumulation."""
    name = _field(opt_config, "name")
    b1, b2, eps = (float(_field(opt_config, k)) for k in ("b1", "b2", "eps"))
    weight_decay = float(_field(opt_config, "weight_decay"))
    _require(
        name in OPTIMIZERS,
        f"unknown optimizer.name={name!r}; choose one of {', '.join(OPTIMIZERS)}",
    )
    _require(weight_decay >= 0, f"optimizer.weight_decay={weight_decay} is negative; use >= 0")
    if name == "adam":
        _require(
            weight_decay == 0,
            f"optimizer.weight_decay={weight_decay} has no effect with 'adam'; "
            "use name='adamw' or set weight_decay=0",
        )
        return optax.adam(schedule, b1=b1, b2=b2, eps=eps)
    # The mask is passed as a callable so it is computed on the very tree given to init /
    # update, whether its leaves are boxed or plain.
    if name == "adamw":
        return optax.adamw(
            schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=decay_mask
        )
    return optax.lamb(schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=decay_mask)


def check_resumable(saved: dict, opt_config: ml_collections.ConfigDict, where: str) -> None:
    """Refuses, in one line, to resume an optimizer state into an optimizer of another layout.

    ``saved`` is the checkpoint's ``config.optimizer``. Only the optimizer and whether it
    accumulates shape its state; learning rate, schedule, betas, weight decay and clipping may
    change between runs.
    """
    def layout(cfg) -> dict:
        return {"name": _field(cfg, "name"),
                "grad_accum_steps > 1": int(_field(cfg, "grad_accum_steps")) > 1}

    old = layout(ml_collections.ConfigDict(saved))
    new = layout(opt_config)
    if old != new:
        diffs = "; ".join(f"{k}: checkpoint {old[k]!r} vs config {new[k]!r}"
                          for k in new if old[k] != new[k])
        raise ValueError(
            f"{where}'s optimizer state does not fit this config's optimizer ({diffs}): "
            "set them back to resume, or start a new --workdir with config.init_from set to "
            "this one to keep its params only")


def accumulation_steps(opt_config: ml_collections.ConfigDict) -> int:
    """``optimizer.grad_accum_steps`` (default 1): micro-batches per update."""
    steps = int(_field(opt_config, "grad_accum_steps"))
    _require(steps >= 1,
             f"optimizer.grad_accum_steps={steps} must be >= 1 (1 = no accumulation)")
    return steps


def create_optimizer(
    opt_config: ml_collections.ConfigDict,
    *,
    d_model: int,
    num_train_steps: int,
    params=None,
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Builds clip → optimizer, wrapped in gradient accumulation; returns (tx, schedule).

    `params` is accepted for interface symmetry and unused: the decay mask is a callable
    evaluated on whatever tree `tx.init` receives.

    With grad_accum_steps = k > 1, `tx.update` must be called once per micro-batch; it
    returns zero updates for k - 1 calls and applies the mean gradient on the k-th.
    Clipping sits inside the accumulation, so it clips that mean (the full-batch gradient).
    """
    del params
    clip_grad_norm = float(_field(opt_config, "clip_grad_norm"))
    grad_accum_steps = accumulation_steps(opt_config)
    _require(
        clip_grad_norm >= 0,
        f"optimizer.clip_grad_norm={clip_grad_norm} is negative; use 0 (off) or e.g. 1.0",
    )

    schedule = create_learning_rate_schedule(
        opt_config, d_model=d_model, num_train_steps=num_train_steps
    )
    tx = _base_optimizer(opt_config, schedule)
    # Chained either way (both states are empty), so the state's layout does not depend on
    # clipping: a run may turn it on when it resumes, as the NaN guard's message advises.
    clip = optax.clip_by_global_norm(clip_grad_norm) if clip_grad_norm > 0 else optax.identity()
    tx = optax.chain(clip, tx)
    if grad_accum_steps > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=grad_accum_steps).gradient_transformation()
    return tx, schedule
