"""The train state pytree, born sharded.

Parameters are never materialised on one device: ``jax.eval_shape`` gives the shapes and
logical axis names, the preset's rules turn those into NamedShardings, and ``jit(init)``
with those ``out_shardings`` creates every array directly in its place.
"""

from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from transformer_jax.engine import sharding as sharding_lib
from transformer_jax.engine.task import Batch, Task


@flax.struct.dataclass
class TrainState:
    """Everything a step reads and writes; the optimizer itself stays outside (static)."""

    step: jax.Array
    params: Any
    opt_state: Any


def _boxed_init_fn(task: Task, tx: optax.GradientTransformation, batch: Batch) -> Callable:
    """rng -> TrainState whose leaves keep their nn.Partitioned boxes (for specs)."""

    def init(rng):
        params = task.init_params(rng, batch)
        # optax maps over the boxes, so moments inherit the params' logical names.
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))

    return init


def state_shardings(task: Task, tx: optax.GradientTransformation, batch: Batch, mesh: Mesh,
                    rules: sharding_lib.LogicalRules) -> tuple[TrainState, TrainState]:
    """(abstract unboxed state, its NamedShardings) without allocating anything."""
    with nn.logical_axis_rules(rules):
        boxed_init = _boxed_init_fn(task, tx, batch)
        abstract_boxed = jax.eval_shape(lambda: boxed_init(jax.random.key(0)))
    shardings = sharding_lib.logical_to_shardings(abstract_boxed, mesh, rules)
    abstract = nn.meta.unbox(abstract_boxed)
    abstract = jax.tree_util.tree_map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), abstract, shardings)
    return abstract, shardings


def create_train_state(task: Task, tx: optax.GradientTransformation, batch: Batch, mesh: Mesh,
                       rules: sharding_lib.LogicalRules, seed: int,
                       shardings: TrainState) -> TrainState:
    """A freshly initialised state, each array created directly with its sharding."""
    boxed_init = _boxed_init_fn(task, tx, batch)

    def init():
        # The key is made inside jit: no host-to-device copy, not even of the seed.
        return nn.meta.unbox(boxed_init(jax.random.key(seed)))

    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        return jax.jit(init, out_shardings=shardings)()


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def param_count(params: Any) -> int:
    return sum(int(x.size) for x in jax.tree_util.tree_leaves(params))
