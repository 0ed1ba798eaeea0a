"""Device mesh, named sharding presets and host-to-global batch assembly.

The mesh always has the three axes ``(data, fsdp, tensor)``. A preset names which logical
axes map to which mesh axes; the mesh shape decides how many devices each axis gets:

  dp       pure data parallel: every weight replicated, the batch split over all devices.
  fsdp     fully-sharded data parallel: weights split along ``embed`` over ``fsdp``.
  fsdp_tp  FSDP plus tensor (model) parallelism: heads / mlp / vocab split over ``tensor``.

Models name their axes with the short vocabulary below (MaxText/T5X style), so a new
preset is a new rule table, never a model change.
"""

import logging
import math
import re
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

log = logging.getLogger(__name__)

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

# Activations are laid out the same way under every preset.
_ACTIVATION_RULES = (
    ("act_batch", BATCH_AXES),
    ("act_length", None),
    ("act_embed", None),
    ("act_heads", "tensor"),
    ("act_mlp", "tensor"),
    ("act_vocab", "tensor"),
)

_WEIGHT_RULES = {
    "dp": (("vocab", None), ("embed", None), ("mlp", None), ("heads", None), ("kv", None),
           ("layers", None)),
    "fsdp": (("vocab", None), ("embed", "fsdp"), ("mlp", None), ("heads", None), ("kv", None),
             ("layers", None)),
    "fsdp_tp": (("vocab", "tensor"), ("embed", "fsdp"), ("mlp", "tensor"), ("heads", "tensor"),
                ("kv", None), ("layers", None)),
}

# Which mesh axis takes "all remaining devices" (-1) by default under each preset.
_DEFAULT_MESH = {
    "dp": {"data": -1, "fsdp": 1, "tensor": 1},
    "fsdp": {"data": 1, "fsdp": -1, "tensor": 1},
    "fsdp_tp": {"data": 1, "fsdp": -1, "tensor": 2},
}

PRESETS = tuple(_WEIGHT_RULES)
LogicalRules = Sequence[tuple[str, Any]]


def weight_axes(preset: str) -> tuple[str, ...]:
    """The mesh axes a preset splits weights over (none for pure data parallel)."""
    used = {axis for _, axis in _WEIGHT_RULES[preset] if axis is not None}
    return tuple(a for a in MESH_AXES if a in used)


def logical_rules(preset: str) -> LogicalRules:
    """The logical-name -> mesh-axis table of a preset."""
    if preset not in _WEIGHT_RULES:
        raise ValueError(f"unknown sharding preset {preset!r}; choose one of {list(PRESETS)}")
    return _WEIGHT_RULES[preset] + _ACTIVATION_RULES


def mesh_shape(preset: str, overrides: Mapping[str, int] | None = None,
               num_devices: int | None = None) -> dict[str, int]:
    """Resolves the preset's default shape plus overrides; one axis may be -1 (the rest)."""
    logical_rules(preset)  # validates the name
    num_devices = num_devices or jax.device_count()
    shape = dict(_DEFAULT_MESH[preset])
    for axis, size in (overrides or {}).items():
        if axis not in MESH_AXES:
            raise ValueError(f"unknown mesh axis {axis!r}; mesh axes are {list(MESH_AXES)}")
        if size is not None and size != 0:
            shape[axis] = int(size)
    free = [a for a, s in shape.items() if s == -1]
    if len(free) > 1:
        raise ValueError(f"mesh {shape}: at most one axis may be -1")
    fixed = math.prod(s for s in shape.values() if s != -1)
    if free:
        if num_devices % fixed:
            raise ValueError(f"mesh {shape} does not divide {num_devices} devices")
        shape[free[0]] = num_devices // fixed
    if math.prod(shape.values()) != num_devices:
        raise ValueError(f"mesh {shape} needs {math.prod(shape.values())} devices but "
                         f"{num_devices} are available; fix sharding.mesh in the config")
    return shape


def make_mesh(preset: str, overrides: Mapping[str, int] | None = None,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A (data, fsdp, tensor) mesh over all (or the given) devices."""
    devices = list(devices) if devices is not None else jax.devices()
    shape = mesh_shape(preset, overrides, len(devices))
    sizes = tuple(shape[a] for a in MESH_AXES)
    # Auto axes: the compiler propagates shardings and our logical constraints are hints.
    # (Explicit axes would turn every with_sharding_constraint into an assertion.)
    auto = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
    if devices == jax.devices():
        return jax.make_mesh(sizes, MESH_AXES, axis_types=auto, devices=devices)
    return Mesh(np.asarray(devices).reshape(sizes), MESH_AXES, axis_types=auto)


def _axis_size(mesh: Mesh, entry: Any) -> int:
    names = entry if isinstance(entry, tuple) else (entry,)
    return math.prod(mesh.shape[n] for n in names if n is not None)


def fit_spec(spec: P, shape: Sequence[int], mesh: Mesh, name: str = "") -> P:
    """Drops mesh axes from dimensions they do not divide, and says so in the log.

    jit rejects shardings that do not divide a dimension; replicating that one dimension
    keeps odd-sized models (and tests with odd sizes) runnable on any mesh.
    """
    fitted = []
    for dim, entry in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
        if entry is not None and dim % _axis_size(mesh, entry):
            log.warning("sharding: %s dim %d not divisible by mesh axes %s; replicated",
                            name or "array", dim, entry)
            entry = None
        fitted.append(entry)
    return P(*fitted)


def logical_to_shardings(abstract_boxed: Any, mesh: Mesh, rules: LogicalRules) -> Any:
    """NamedShardings for a tree whose leaves may carry ``nn.Partitioned`` metadata.

    The returned tree has the structure of the *unboxed* tree, one sharding per array.
    """
    logical_specs = nn.get_partition_spec(abstract_boxed)
    mesh_specs = nn.logical_to_mesh(logical_specs, rules)
    shapes = nn.meta.unbox(abstract_boxed)

    def to_sharding(path, spec, shape_struct):
        spec = spec if isinstance(spec, P) else P()
        name = jax.tree_util.keystr(path)
        return NamedSharding(mesh, fit_spec(spec, shape_struct.shape, mesh, name))

    return jax.tree_util.tree_map_with_path(
        to_sharding, mesh_specs, shapes, is_leaf=lambda x: isinstance(x, P))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) dimension split over data and fsdp; the rest replicated."""
    return NamedSharding(mesh, P(BATCH_AXES))


def global_batch(local_batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Per-host numpy batch -> global jax.Arrays; each host contributes its own rows."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
            for k, v in local_batch.items()}


# The index of a stacked layer in a param path: the _3 of ['layer_3'] (not of ['Dense_3']).
_LAYER_INDEX = re.compile(r"(?<=\['layer)_\d+(?='\])")


def describe_shardings(shardings: Any) -> list[str]:
    """One line per array path and physical PartitionSpec (logged once at start), with the
    layers of a stack folded: ``['layer_*']...: P(...) (x12)`` stands for layers 0-11 when
    they share that spec, so BERT-large's 24 layers print like one."""
    groups: dict[str, list[str]] = {}  # folded line -> the unfolded lines; first-seen order
    for path, sharding in jax.tree_util.tree_leaves_with_path(shardings):
        name = jax.tree_util.keystr(path)
        line = f"{name}: {sharding.spec}"
        groups.setdefault(f"{_LAYER_INDEX.sub('_*', name)}: {sharding.spec}", []).append(line)
    return [lines[0] if len(lines) == 1 else f"{folded} (x{len(lines)})"
            for folded, lines in groups.items()]
