"""Device memory before anything runs: the ahead-of-time report and the replication check.

`compile_report` lowers and compiles the trainer's jitted train step from shapes alone
(no parameter is allocated, no batch read) and returns XLA's per-device memory analysis:
the arguments (this device's shards of params, optimizer state and batch), the outputs,
the temporaries (activations kept for the backward pass, workspace) and the generated
code. With a target topology's compile-only devices (`target_devices("tpu:v4:2x2x4")`,
which needs the TPU compiler, libtpu, but no TPU) the report is for that slice: "does
BERT-large at 512 fit a v4-32?" answered on a laptop.

`check_replication` runs at start-up: on a mesh with model axes (the axes the preset splits
weights over, fsdp and tensor, with more than one device) a parameter that no model axis
splits is stored whole on every device. A few (LayerNorm
scales, biases) are expected; most of the bytes replicated means the logical axis names
or the mesh sizes are wrong (a dimension that no mesh axis divides is replicated), and the
run would waste memory it was sized not to need.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Sequence

import jax
import numpy as np

log = logging.getLogger(__name__)


def target_devices(topology: str) -> Sequence[jax.Device]:
    """Compile-only devices of ``platform:topology`` (e.g. "tpu:v4:2x2x4" = a v4-32)."""
    platform, _, name = topology.partition(":")
    if not name:
        raise ValueError(f"--topology={topology!r}: use PLATFORM:TOPOLOGY, e.g. tpu:v4:2x2x4 "
                         "(a v4-32) or tpu:v5e:4x4")
    from jax.experimental import topologies

    try:
        return topologies.get_topology_desc(name, platform).devices
    except (RuntimeError, NotImplementedError, ValueError) as error:
        raise ValueError(f"cannot describe {topology} here ({str(error).splitlines()[0]}): "
                         "compiling for TPU needs libtpu (pip install -e '.[tpu]'; no TPU "
                         "needed); without --topology the report is for this host's devices"
                         ) from None


def compile_report(trainer) -> dict[str, float]:
    """Per-device bytes of the train step on a global batch of ``config.batch_size``,
    compiled from shapes on the trainer's mesh."""
    batch = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct((trainer.config.batch_size,) + x.shape[1:], x.dtype,
                                       sharding=trainer.batch_sharding),
        trainer.init_batch)
    state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                         trainer.abstract_state, trainer.state_shardings)
    import flax.linen as nn

    # The context Trainer.run trains in: the model's logical sharding constraints apply.
    with jax.set_mesh(trainer.mesh), nn.logical_axis_rules(trainer.rules):
        compiled = trainer.train_step_fn.lower(state, batch).compile()
    return memory_of(compiled, num_devices=trainer.mesh.devices.size)


def memory_of(compiled, num_devices: int) -> dict[str, float]:
    analysis = compiled.memory_analysis()
    report = {
        "argument_bytes": analysis.argument_size_in_bytes,
        "output_bytes": analysis.output_size_in_bytes,
        "alias_bytes": analysis.alias_size_in_bytes,
        "temp_bytes": analysis.temp_size_in_bytes,
        "code_bytes": analysis.generated_code_size_in_bytes,
    }
    # Donated state: outputs reuse the argument buffers they alias.
    report["peak_bytes"] = (report["argument_bytes"] + report["output_bytes"]
                            - report["alias_bytes"] + report["temp_bytes"])
    report["devices"] = num_devices
    return report


def format_report(report: dict[str, float], what: str) -> str:
    gib = lambda n: f"{n / 2**30:.3f} GiB"  # noqa: E731
    rows = [("arguments (params, optimizer state, batch shards)", "argument_bytes"),
            ("outputs (the new state)", "output_bytes"),
            ("  of which reuse the donated arguments", "alias_bytes"),
            ("temporaries (activations, workspace)", "temp_bytes"),
            ("generated code", "code_bytes"),
            ("peak (arguments + outputs - reused + temporaries)", "peak_bytes")]
    return "\n".join([f"compile-only memory report: {what}, per device of "
                      f"{report['devices']}"]
                     + [f"  {label:<52}{gib(report[key]):>14}" for label, key in rows])


def _split_by(sharding, mesh, model_axes: Sequence[str]) -> int:
    spec = getattr(sharding, "spec", ())
    axes = [a for entry in spec if entry is not None
            for a in (entry if isinstance(entry, tuple) else (entry,))]
    return math.prod(mesh.shape[a] for a in axes if a in model_axes)


def replicated_params(abstract_params: Any, shardings: Any, mesh,
                      model_axes: Sequence[str]) -> tuple[float, list]:
    """(fraction of parameter bytes no model axis splits, [(bytes, name)] largest first)."""
    total, replicated = 0, []
    flat = jax.tree_util.tree_flatten_with_path(abstract_params)[0]
    for (path, leaf), sharding in zip(flat, jax.tree.leaves(shardings)):
        size = int(np.prod(leaf.shape)) * np.dtype(leaf.dtype).itemsize
        total += size
        if _split_by(sharding, mesh, model_axes) == 1:
            replicated.append((size, jax.tree_util.keystr(path)))
    replicated.sort(reverse=True)
    return (sum(size for size, _ in replicated) / total if total else 0.0), replicated


def check_replication(abstract_params: Any, shardings: Any, mesh,
                      model_axes: Sequence[str], max_fraction: float) -> None:
    """Fails when more than ``max_fraction`` of the parameter bytes sit whole on every
    device although ``model_axes`` (the mesh axes the preset splits weights over) have
    several devices; no-op for pure data parallelism."""
    model_axes = [a for a in model_axes if mesh.shape[a] > 1]
    if not model_axes:
        return
    fraction, replicated = replicated_params(abstract_params, shardings, mesh, model_axes)
    if fraction > max_fraction:
        largest = ", ".join(f"{name} ({size / 2**20:.1f} MiB)" for size, name in replicated[:3])
        raise ValueError(
            f"{fraction:.0%} of the parameter bytes are replicated on mesh "
            f"{dict(mesh.shape)} (largest: {largest}): no model axis divides them; choose "
            "fsdp/tensor sizes that divide the model's dimensions, or raise "
            f"sharding.max_replicated_fraction (now {max_fraction})")


def compile_only(config, task, topology: str = "") -> dict[str, float]:
    """The report for ``config`` (its mesh, preset and batch) on this host's devices or a
    target ``topology``; logs it and returns it. Nothing is trained or written."""
    import tempfile

    from transformer_jax.engine.trainer import Trainer

    devices = target_devices(topology) if topology else None
    with tempfile.TemporaryDirectory() as scratch:  # the trainer's checkpoint dir, unused
        trainer = Trainer(config, scratch, task, devices=devices)
        report = compile_report(trainer)
        trainer.manager.close()
    where = topology or f"{len(jax.devices())} {jax.devices()[0].platform} device(s) here"
    log.info("%s", format_report(report, f"{task.name}, global batch {config.batch_size}, "
                                         f"mesh {dict(trainer.mesh.shape)} on {where}"))
    return report
