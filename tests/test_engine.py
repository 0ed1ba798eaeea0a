"""Engine pieces that need no model: mesh shapes, spec fitting, batch assembly, metrics,
metadata checks."""
import logging

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from transformer_jax.engine import checkpoint as ckpt
from transformer_jax.engine import metrics as metrics_lib
from transformer_jax.engine import sharding as sharding_lib

from trainer_helpers import captured_warnings


@pytest.mark.parametrize("preset, overrides, expected", [
    ("dp", None, {"data": 8, "fsdp": 1, "tensor": 1}),
    ("fsdp", None, {"data": 1, "fsdp": 8, "tensor": 1}),
    ("fsdp_tp", None, {"data": 1, "fsdp": 4, "tensor": 2}),
    ("fsdp_tp", {"fsdp": 2, "tensor": 4}, {"data": 1, "fsdp": 2, "tensor": 4}),
    ("fsdp", {"data": 2, "fsdp": -1}, {"data": 2, "fsdp": 4, "tensor": 1}),
    ("dp", {"data": 0, "fsdp": 0, "tensor": 0}, {"data": 8, "fsdp": 1, "tensor": 1}),  # 0 = default
])
def test_mesh_shape_resolves_presets_and_overrides(preset, overrides, expected):
    assert sharding_lib.mesh_shape(preset, overrides) == expected
    mesh = sharding_lib.make_mesh(preset, overrides)
    assert dict(mesh.shape) == expected and mesh.axis_names == sharding_lib.MESH_AXES


@pytest.mark.parametrize("preset, overrides, message", [
    ("zero3", None, r"unknown sharding preset 'zero3'; choose one of \['dp', 'fsdp', 'fsdp_tp'\]"),
    ("dp", {"model": 2}, r"unknown mesh axis 'model'"),
    ("dp", {"fsdp": -1}, r"at most one axis may be -1"),
    ("dp", {"fsdp": 3}, r"does not divide 8 devices"),
    ("dp", {"data": 2, "fsdp": 2}, r"needs 4 devices but 8 are available"),
])
def test_bad_mesh_configs_fail_at_start_up(preset, overrides, message):
    with pytest.raises(ValueError, match=message):
        sharding_lib.make_mesh(preset, overrides)


def test_make_mesh_on_a_subset_of_devices():
    devices = jax.devices()[2:5]
    mesh = sharding_lib.make_mesh("fsdp", None, devices=devices)
    assert dict(mesh.shape) == {"data": 1, "fsdp": 3, "tensor": 1}
    assert list(mesh.devices.flat) == devices


def test_fit_spec_replicates_indivisible_dims_with_a_warning():
    mesh = sharding_lib.make_mesh("fsdp_tp", {"fsdp": 2, "tensor": 4})
    spec = jax.sharding.PartitionSpec("fsdp", "tensor")
    with captured_warnings("transformer_jax.engine.sharding") as warned:
        assert sharding_lib.fit_spec(spec, (32, 44), mesh, "w") == spec
        assert warned == []
        fitted = sharding_lib.fit_spec(spec, (33, 44), mesh, "w")
        assert fitted == jax.sharding.PartitionSpec(None, "tensor")
        fitted = sharding_lib.fit_spec(jax.sharding.PartitionSpec(("fsdp", "tensor")), (12,),
                                       mesh, "v")
        assert fitted == jax.sharding.PartitionSpec(None)  # 12 % (2 * 4) != 0
    assert warned == [
        "sharding: w dim 33 not divisible by mesh axes fsdp; replicated",
        "sharding: v dim 12 not divisible by mesh axes ('fsdp', 'tensor'); replicated"]


def test_global_batch_splits_rows_over_data_and_fsdp():
    mesh = sharding_lib.make_mesh("fsdp_tp", {"data": 2, "fsdp": 2, "tensor": 2})
    local = {"inputs": np.arange(8 * 3, dtype=np.int32).reshape(8, 3)}
    batch = sharding_lib.global_batch(local, mesh)["inputs"]
    assert batch.shape == (8, 3) and batch.sharding.spec == P(("data", "fsdp"))
    np.testing.assert_array_equal(np.asarray(batch), local["inputs"])
    # 4 batch shards of 2 rows; each is held twice (the tensor axis replicates it).
    shard_rows = sorted(tuple(s.data[:, 0].tolist()) for s in batch.addressable_shards)
    assert shard_rows == sorted([(0, 3), (6, 9), (12, 15), (18, 21)] * 2)


def test_sharding_log_folds_the_layers_of_a_stack_that_share_a_spec():
    mesh = sharding_lib.make_mesh("fsdp", None)
    named = lambda *spec: jax.sharding.NamedSharding(mesh, P(*spec))  # noqa: E731
    shardings = {"encoder": {f"layer_{i}": {"kernel": named(None, "fsdp"), "bias": named()}
                             for i in range(11)},
                 "pooler": {"Dense_0": {"kernel": named("fsdp", None)},
                            "Dense_1": {"kernel": named("fsdp", None)}}}
    shardings["encoder"]["layer_7"]["kernel"] = named()  # one layer that differs keeps its name
    assert sharding_lib.describe_shardings(shardings) == [
        "['encoder']['layer_*']['bias']: P() (x11)",
        "['encoder']['layer_*']['kernel']: P(None, 'fsdp') (x10)",
        "['encoder']['layer_7']['kernel']: P()",
        "['pooler']['Dense_0']['kernel']: P('fsdp', None)",  # not a stack: never folded
        "['pooler']['Dense_1']['kernel']: P('fsdp', None)"]


def test_read_only_manager_warns_of_nothing_and_writes_nothing(tmp_path, caplog):
    """Orbax logged up to three warning lines for each read-only manager (extract_features,
    convert, translate, init_from), before every result or one-line error."""
    caplog.set_level(logging.INFO)
    with ckpt.read_only_manager(tmp_path, item_names=("state", "metadata")) as manager:
        assert manager.latest_step() is None
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "Found 0 checkpoint steps" in caplog.text  # orbax's own INFO lines still pass
    assert list(tmp_path.iterdir()) == []


def test_metrics_are_sums_and_weights_divided_once():
    a = {"loss": (np.float32(6.0), np.float32(2.0)), "acc": (np.float32(1.0), np.float32(4.0))}
    b = {"loss": (np.float32(3.0), np.float32(1.0)), "acc": (np.float32(3.0), np.float32(4.0))}
    total = metrics_lib.add_metrics(metrics_lib.add_metrics(None, a), b)
    # (6 + 3) / (2 + 1), not the mean of the two batch means (3 and 3 -> 3; 0.25, 0.75).
    assert metrics_lib.reduce_metrics(total) == {"loss": 3.0, "acc": 0.5}
    assert metrics_lib.reduce_metrics({"x": (1.0, 0.0), "lr": 0.5}) == pytest.approx(
        {"x": float("nan"), "lr": 0.5}, nan_ok=True)


MODEL = {"vocab_size": 44, "d_model": 32, "num_heads": 4, "d_ff": 37}


def test_check_compatible_accepts_the_same_model():
    ckpt.check_compatible({"task": "translation", "compat": dict(MODEL)}, "translation", MODEL,
                          "workdir /w")


def test_check_compatible_names_every_differing_field_on_one_line():
    saved = {"task": "translation", "compat": dict(MODEL, d_model=64, d_ff=128)}
    with pytest.raises(ckpt.CheckpointMismatchError) as error:
        ckpt.check_compatible(saved, "translation", MODEL, "workdir /w")
    message = str(error.value)
    assert "\n" not in message and message.startswith("workdir /w holds a checkpoint of a")
    assert "d_model: checkpoint 64 vs config 32; d_ff: checkpoint 128 vs config 37" in message
    assert "vocab_size" not in message


def test_check_compatible_refuses_another_task():
    with pytest.raises(ckpt.CheckpointMismatchError,
                       match="holds a 'bert_pretraining' checkpoint, not 'translation'"):
        ckpt.check_compatible({"task": "bert_pretraining", "compat": MODEL}, "translation", MODEL,
                              "workdir /w")


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_throughput_splits_each_interval_into_compute_data_checkpoint_and_eval(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(metrics_lib.time, "perf_counter", clock)
    started = clock.now - 10.0  # 10 s of start-up (compilation) before the first step
    meter = metrics_lib.Throughput(0, 100, peak_flops_per_s=1e3, started_at=started)
    for _ in range(4):  # 4 steps of 1 s each, 0.25 s of it waiting for data
        meter.spent("data_wait", 0.25)
        meter.add_step(tokens=50, flops=300.0)
        clock.now += 1.0
    meter.spent("checkpoint", 2.0)
    meter.spent("eval", 3.0)
    clock.now += 5.0
    out = meter.measure(4)
    assert out["perf/step_time_s"] == pytest.approx(1.0)
    assert out["perf/compute_s"] == pytest.approx(0.75)
    assert out["perf/data_wait_s"] == pytest.approx(0.25)
    assert (out["perf/checkpoint_s"], out["perf/eval_s"]) == (2.0, 3.0)
    assert out["perf/tokens_per_s"] == pytest.approx(50.0)
    assert out["perf/mfu"] == pytest.approx(0.3)  # 300 flop/s of training time / 1e3 peak
    assert out["perf/eta_s"] == pytest.approx(96.0)
    assert out["perf/goodput"] == pytest.approx(3.0 / 19.0)  # compute / all wall since start
    line = metrics_lib.progress_line(4, 100, out)
    assert "MFU 30.0%" in line and "data wait 25%" in line and "goodput 16%" in line
    clock.now += 1.0  # the next interval starts from zero
    assert meter.measure(5)["perf/data_wait_s"] == 0.0


def test_progress_line_shows_the_tasks_training_accuracies():
    """BERT's console line carries MLM and NSP accuracy beside the loss; eval metrics and the
    per-head losses stay in TensorBoard."""
    values = {"train/loss": 2.5, "train/nsp_accuracy": 0.5, "train/mlm_accuracy": 0.25,
              "train/mlm_loss": 2.0, "eval/mlm_accuracy": 0.125}
    assert metrics_lib.progress_line(4, 100, values) == (
        "step 4/100 | loss 2.5000 | mlm_accuracy 0.2500 | nsp_accuracy 0.5000")


def test_restart_ledger_adds_the_time_since_the_checkpoint_was_saved(monkeypatch):
    ledger = metrics_lib.RestartLedger()
    saved = ledger.to_metadata()
    assert saved["lost_to_restarts_s"] == 0.0
    monkeypatch.setattr(metrics_lib.time, "time", lambda: saved["saved_at"] + 90.0)
    ledger.resumed(dict(saved, lost_to_restarts_s=30.0))
    assert ledger.lost_s == pytest.approx(120.0)
    fresh = metrics_lib.RestartLedger()
    fresh.resumed({"step": 3})  # a checkpoint written before the ledger: nothing known
    assert fresh.lost_s == 0.0


def test_unknown_dropout_rng_impl_fails_naming_the_config_key_and_the_choices():
    from transformer_jax.engine.trainer import check_rng_impl
    with pytest.raises(ValueError, match=r"config.dropout_rng_impl='threefry'.*threefry4x32"):
        check_rng_impl("threefry")


def test_default_dropout_rng_keeps_the_right_fraction_with_fresh_masks_each_step():
    """Dropout under the configs' default impl: keep rate 1 - p, masks that change with the
    step, and an element's bit that does not depend on the array's sharding."""
    from configs.common import engine_config
    from transformer_jax.dropout import Dropout
    from transformer_jax.engine.trainer import check_rng_impl

    impl = engine_config().dropout_rng_impl
    check_rng_impl(impl)
    ones = np.ones((3, 7, 4096), np.float32)

    def mask(step, x):
        key = jax.random.fold_in(jax.random.key(0, impl=impl), step)
        return Dropout(0.1).apply({}, x, deterministic=False, rngs={"dropout": key}) > 0

    first, second = np.asarray(mask(0, ones)), np.asarray(mask(1, ones))
    assert abs(first.mean() - 0.9) < 0.005 and abs(second.mean() - 0.9) < 0.005
    assert abs((first == second).mean() - (0.9**2 + 0.1**2)) < 0.005  # independent steps
    mesh = jax.make_mesh((8,), ("d",), axis_types=(jax.sharding.AxisType.Explicit,))
    sharded = jax.device_put(ones, jax.sharding.NamedSharding(mesh, P(None, None, "d")))
    np.testing.assert_array_equal(np.asarray(jax.jit(mask, static_argnums=0)(0, sharded)),
                                  first)


def test_grad_norm_is_measured_on_the_steps_that_report_metrics_only():
    """grad_norm = (global norm, 1) on a step where metrics are due, (0, 0) elsewhere."""
    import types

    import jax.numpy as jnp
    import optax

    from transformer_jax.engine.state import TrainState
    from transformer_jax.engine.trainer import train_step

    params = {"w": jnp.linspace(-1.0, 1.0, 3 * 5).reshape(3, 5), "b": jnp.arange(5.0) / 7}
    batch = {"x": jnp.asarray(np.random.default_rng(0).normal(size=(7, 3)), jnp.float32)}
    task = types.SimpleNamespace(
        loss_fn=lambda p, b, rng: (jnp.mean((b["x"] @ p["w"] + p["b"]) ** 2), {}))
    tx = optax.sgd(0.1)
    step_fn = jax.jit(lambda state: train_step(
        state, batch, task=task, tx=tx, seed=0, rng_impl="threefry4x32",
        metrics_due=lambda step: step % 3 == 0))
    grads = jax.grad(lambda p: task.loss_fn(p, batch, None)[0])(params)
    norm = np.sqrt(sum(np.sum(np.square(g)) for g in jax.tree.leaves(grads)))

    for step, due in ((0, False), (2, True), (4, False)):
        state = TrainState(step=jnp.asarray(step), params=params, opt_state=tx.init(params))
        new_state, metrics = step_fn(state)
        total, weight = (float(v) for v in metrics["grad_norm"])
        assert int(new_state.step) == step + 1 and weight == float(due)
        assert total == (pytest.approx(norm, rel=1e-6) if due else 0.0)
        assert metrics_lib.reduce_metrics({"l": metrics["loss"]})["l"] > 0  # loss every step
