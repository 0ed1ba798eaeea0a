"""The training engine end to end on a tiny translation task, on 8 simulated CPU devices.

Covers the sharding presets against a one-device reference, checkpoint restore onto another
mesh, bit-exact resume after a preemption, the NaN guard, refusal of a foreign checkpoint,
input errors, ``init_from``, checkpoint averaging and the ``transformer_jax.main`` CLI.

Each Trainer run costs a few compilations, so runs are shared through module fixtures:
``dp_run`` (6 uninterrupted steps) is the reference that resume, restore, ``init_from`` and
averaging are compared with. Per-step losses are read back from the TensorBoard event files
the trainer writes (``log_every=1``), the same numbers a user sees.
"""
import contextlib
import logging
import os
import shutil
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import transformer_demo
from transformer_jax.engine import checkpoint as ckpt
from transformer_jax.engine import metrics as metrics_lib
from transformer_jax.engine import sharding as sharding_lib
from transformer_jax.engine.trainer import NonFiniteLossError, Trainer
from transformer_jax.translation.task import TranslationTask
from transformer_jax.translation.tokenizer import train_sentencepiece

import run_helpers
from run_helpers import (Preempted, assert_trees_equal, checkpoint_steps, event_files, host,
                         losses, preempt_after, scalars)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 6
ENGLISH = ["the", "cat", "dog", "sees", "a", "big", "small", "house", "red", "runs"]
GERMAN = ["die", "katze", "hund", "sieht", "ein", "gross", "klein", "haus", "rot", "laeuft"]

# 2x4 layouts of the 8 devices, one per preset: (data, fsdp, tensor).
MESHES = {
    "dp": {"data": 2, "fsdp": 4, "tensor": 1},
    "fsdp": {"data": 2, "fsdp": 4, "tensor": 1},
    "fsdp_tp": {"data": 1, "fsdp": 2, "tensor": 4},
}

EMBEDDING = ("shared_embedding", "embedding")                        # [V, D]
QUERY = ("encoder", "layer_0", "self_attention", "query_kernel")     # [D, N, H]
OUT = ("decoder", "layer_0", "cross_attention", "out_kernel")        # [N, H, D]
WI = ("encoder", "layer_0", "ffn", "wi", "kernel")                   # [D, F=37]
WO = ("decoder", "layer_0", "ffn", "wo", "kernel")                   # [F=37, D]
NORM = ("encoder", "layer_0", "ffn_block", "layer_norm", "scale")    # [D]

# Physical specs expected on the 2x4 meshes above (trailing Nones written out). d_ff=37 is
# divisible by no mesh axis, so 'mlp' falls back to replicated under fsdp_tp.
EXPECTED_SPECS = {
    "dp": {EMBEDDING: (None, None), QUERY: (None, None, None), OUT: (None, None, None),
           WI: (None, None), WO: (None, None), NORM: (None,)},
    "fsdp": {EMBEDDING: (None, "fsdp"), QUERY: ("fsdp", None, None), OUT: (None, None, "fsdp"),
             WI: ("fsdp", None), WO: (None, "fsdp"), NORM: ("fsdp",)},
    "fsdp_tp": {EMBEDDING: ("tensor", "fsdp"), QUERY: ("fsdp", "tensor", None),
                OUT: ("tensor", None, "fsdp"), WI: ("fsdp", None), WO: (None, "fsdp"),
                NORM: ("fsdp",)},
}


# ----------------------------------------------------------------------------- helpers


def word_pairs(count: int, seed: int) -> list[str]:
    """'english words<TAB>german words', a word-for-word code of 2-6 words."""
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(count):
        ids = rng.integers(0, len(ENGLISH), rng.integers(2, 7))
        lines.append(" ".join(ENGLISH[i] for i in ids) + "\t" + " ".join(GERMAN[i] for i in ids))
    return lines


def write_lines(path, lines) -> str:
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))
    return str(path)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Train/eval TSV files and a shared SentencePiece model (trained once per module)."""
    root = tmp_path_factory.mktemp("corpus")
    train = word_pairs(160, seed=0)
    sentences = [side for line in train for side in line.split("\t")]
    return types.SimpleNamespace(
        root=root,
        train_tsv=write_lines(root / "train.tsv", train),
        eval_tsv=write_lines(root / "eval.tsv", word_pairs(12, seed=1)),  # 2 eval batches
        vocab_path=train_sentencepiece(sentences, str(root / "vocab.model"), vocab_size=60))


def make_config(corpus, preset: str = "dp", **overrides):
    """The demo config shrunk to seconds: 1+1 layers, d_model 32, 4 heads, d_ff 37."""
    c = transformer_demo.get_config()
    c.data.update(dict(source="files", train_tsv=corpus.train_tsv, eval_tsv=corpus.eval_tsv,
                       test_tsv=corpus.eval_tsv, vocab_path=corpus.vocab_path, vocab_size=60,
                       max_source_length=16, max_target_length=16, shuffle_buffer=64))
    c.model.update(dict(d_model=32, num_heads=4, d_ff=37, num_encoder_layers=1,
                        num_decoder_layers=1, max_len=32, dropout_rate=0.1))
    c.predict.bleu_split = ""
    c.batch_size, c.eval_batch_size = 8, 8
    c.num_train_steps, c.log_every, c.eval_every = STEPS, 1, 0
    c.checkpoint_every, c.keep_checkpoints, c.async_checkpoints = 3, 5, False
    c.optimizer.warmup_steps = 10
    c.sharding.preset = preset
    c.sharding.mesh.update(MESHES[preset])
    for key, value in overrides.items():
        target = c
        *parents, leaf = key.split(".")
        for parent in parents:
            target = target[parent]
        target[leaf] = value
    return c


def leaf(tree, path):
    for key in path:
        tree = tree[key]
    return tree


def full_spec(sharding, ndim: int) -> tuple:
    spec = tuple(sharding.spec)
    return spec + (None,) * (ndim - len(spec))


def saved_params(workdir: str, trainer: Trainer, step: int | None = None):
    """The params of a checkpoint of ``workdir`` as numpy, read onto ``trainer``'s mesh."""
    return host(ckpt.restore_params(workdir, trainer.abstract_state.params, step=step))


@contextlib.contextmanager
def captured_warnings(logger_name: str):
    """Warning messages of one logger (independent of propagation and pytest's caplog)."""
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: records.append(record.getMessage())
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def run(config, workdir, devices=None, task=None) -> Trainer:
    trainer = Trainer(config, str(workdir), task or TranslationTask(config, str(workdir)),
                      devices=devices)
    trainer.run()
    return trainer


# ----------------------------------------------------------------------------- shared runs


@pytest.fixture(scope="module")
def dp_run(corpus, tmp_path_factory):
    """The reference: 6 uninterrupted dp steps on a 2x4 mesh, checkpoints at 3 and 6."""
    workdir = str(tmp_path_factory.mktemp("dp_run"))
    with captured_warnings("transformer_jax.engine.sharding") as warned:
        trainer = run(make_config(corpus, "dp"), workdir)
    return types.SimpleNamespace(workdir=workdir, trainer=trainer, losses=losses(workdir),
                                 warnings=list(warned))


@pytest.fixture(scope="module")
def one_device_losses(corpus, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("one_device")
    config = make_config(corpus, "dp", checkpoint_every=1000)
    config.sharding.mesh.update({"data": 0, "fsdp": 0, "tensor": 0})
    trainer = run(config, workdir, devices=jax.devices()[:1])
    assert trainer.mesh.devices.size == 1
    return losses(str(workdir))


@pytest.fixture(scope="module")
def preempted_workdir(corpus, tmp_path_factory):
    """The dp run's config, killed after step 4 of 6; its last checkpoint is step 3."""
    workdir = str(tmp_path_factory.mktemp("preempted"))
    config = make_config(corpus, "dp")
    task = preempt_after(TranslationTask(config, workdir), 4)
    with pytest.raises(Preempted):
        Trainer(config, workdir, task).run()
    assert checkpoint_steps(workdir) == [3]
    assert sorted(scalars(workdir, "train/loss")) == [1, 2, 3, 4]
    return workdir


# ----------------------------------------------------------------------------- sharding


@pytest.mark.parametrize("preset", ["dp", "fsdp", "fsdp_tp"])
def test_preset_layout_and_loss_match_one_device(preset, corpus, dp_run, one_device_losses,
                                                 tmp_path):
    if preset == "dp":
        trainer, run_losses, warned = dp_run.trainer, dp_run.losses, dp_run.warnings
    else:
        with captured_warnings("transformer_jax.engine.sharding") as warned:
            trainer = run(make_config(corpus, preset, checkpoint_every=1000), tmp_path)
        run_losses = losses(str(tmp_path))

    assert dict(trainer.mesh.shape) == MESHES[preset]
    assert trainer.task.tokenizer.vocab_size % 4 == 0, "the expected vocab specs assume V % 4 == 0"
    params = trainer.state_shardings.params
    mu = trainer.state_shardings.opt_state[0].mu  # Adam's first moment, sharded like params
    for path, expected in EXPECTED_SPECS[preset].items():
        ndim = len(expected)
        assert full_spec(leaf(params, path), ndim) == expected, (preset, path)
        assert full_spec(leaf(mu, path), ndim) == expected, (preset, "mu", path)
    assert full_spec(trainer.state_shardings.step, 0) == ()

    # Only d_ff=37 fails to divide a mesh axis (tensor=4): replicated, with a warning per array.
    if preset == "fsdp_tp":
        assert any("['encoder']['layer_0']['ffn']['wi']['kernel'] dim 37 not divisible by mesh "
                   "axes tensor; replicated" in w for w in warned), warned
        assert all("dim 37 " in w for w in warned), warned
    else:
        assert warned == []

    # Same numbers as one device: the mean over the global batch does not depend on the
    # layout, nor do the dropout masks (fold_in(seed, step); threefry4x32's bits depend only
    # on an element's index).
    assert len(run_losses) == len(one_device_losses) == STEPS
    np.testing.assert_allclose(run_losses, one_device_losses, rtol=1e-5)
    assert len(set(np.round(run_losses, 4))) == STEPS  # every step moved the loss


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


# ----------------------------------------------------------------------------- checkpoints


def test_exact_resume_after_preemption(corpus, dp_run, preempted_workdir, tmp_path):
    """Killed after step 4 (checkpoint at 3), a new Trainer resumes to 6: same losses and
    params, bit for bit, as the run that never stopped (dropout is on, rate 0.1)."""
    workdir = str(tmp_path / "resumed")
    shutil.copytree(preempted_workdir, workdir)
    # The workdir's own checkpoint takes precedence over init_from (another run's params).
    config = make_config(corpus, "dp", init_from=dp_run.workdir)
    killed_run_files = event_files(workdir)
    trainer = run(config, workdir)

    before = scalars(workdir, "train/loss", killed_run_files)
    after = scalars(workdir, "train/loss", event_files(workdir) - killed_run_files)
    assert sorted(before) == [1, 2, 3, 4] and sorted(after) == [4, 5, 6]
    assert [before[s] for s in (1, 2, 3)] + [after[s] for s in (4, 5, 6)] == dp_run.losses
    assert checkpoint_steps(workdir) == [3, 6]
    assert_trees_equal(saved_params(workdir, trainer), saved_params(dp_run.workdir, trainer))


def test_restore_onto_another_mesh_and_preset(corpus, dp_run, preempted_workdir, tmp_path):
    """Saved under dp on 8 devices, restored under fsdp_tp on 4, and trained on."""
    workdir = str(tmp_path / "fsdp_tp")
    shutil.copytree(preempted_workdir, workdir)
    config = make_config(corpus, "fsdp_tp")
    config.sharding.mesh.update({"fsdp": 2, "tensor": 2})
    task = TranslationTask(config, workdir)
    trainer = Trainer(config, workdir, task, devices=jax.devices()[:4])

    state = trainer.restore_or_init()
    assert int(state.step) == 3
    embedding = leaf(state.params, EMBEDDING)
    assert embedding.sharding.mesh.devices.size == 4
    assert full_spec(embedding.sharding, 2) == ("tensor", "fsdp")
    assert full_spec(leaf(state.opt_state[0].mu, QUERY).sharding, 3) == ("fsdp", "tensor", None)
    assert_trees_equal(host(state.params), saved_params(dp_run.workdir, dp_run.trainer, step=3))
    del state

    killed_run_files = event_files(workdir)
    trainer.run()
    assert checkpoint_steps(workdir) == [3, 6]
    by_step = scalars(workdir, "train/loss", event_files(workdir) - killed_run_files)
    assert sorted(by_step) == [4, 5, 6]
    np.testing.assert_allclose([by_step[s] for s in (4, 5, 6)], dp_run.losses[3:], rtol=1e-5)
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=5e-5),
        saved_params(workdir, trainer), saved_params(dp_run.workdir, trainer))


def test_init_from_starts_at_step_zero_with_the_other_runs_params(corpus, dp_run, tmp_path):
    config = make_config(corpus, "fsdp", init_from=dp_run.workdir)
    trainer = Trainer(config, str(tmp_path), TranslationTask(config, str(tmp_path)))
    with jax.set_mesh(trainer.mesh):
        state = trainer.restore_or_init()
    assert int(state.step) == 0
    assert_trees_equal(host(state.params), saved_params(dp_run.workdir, dp_run.trainer))
    # Only the params come over: the optimizer starts fresh, laid out under fsdp.
    mu = host(state.opt_state[0].mu)
    assert all(not np.any(m) for m in jax.tree_util.tree_leaves(mu))
    assert full_spec(leaf(state.params, EMBEDDING).sharding, 2) == (None, "fsdp")
    assert full_spec(leaf(state.opt_state[0].mu, EMBEDDING).sharding, 2) == (None, "fsdp")
    assert leaf(state.opt_state[0].mu, EMBEDDING).addressable_shards[0].data.shape == (
        trainer.task.tokenizer.vocab_size, 32 // 4)  # born sharded: a quarter of D per device
    assert not os.path.exists(os.path.join(tmp_path, ckpt.CHECKPOINT_SUBDIR, "0"))


def test_init_from_a_missing_or_empty_directory_fails(dp_run, tmp_path):
    abstract = dp_run.trainer.abstract_state.params
    with pytest.raises(FileNotFoundError, match="nowhere does not exist"):
        ckpt.restore_params(str(tmp_path / "nowhere"), abstract)
    with pytest.raises(FileNotFoundError, match="no checkpoint found"):
        ckpt.restore_params(str(tmp_path), abstract)


def test_average_params_is_the_elementwise_mean(dp_run):
    abstract = dp_run.trainer.abstract_state.params
    with ckpt.make_manager(dp_run.workdir, async_save=False) as manager:
        assert manager.all_steps() == [3, 6]
        averaged = host(ckpt.average_params(manager, [3, 6], abstract))
        with pytest.raises(ValueError, match="no checkpoints"):
            ckpt.average_params(manager, [], abstract)
    at_3 = saved_params(dp_run.workdir, dp_run.trainer, step=3)
    at_6 = saved_params(dp_run.workdir, dp_run.trainer, step=6)
    expected = jax.tree_util.tree_map(lambda a, b: (a + b) / 2, at_3, at_6)
    jax.tree_util.tree_map(
        lambda got, want: np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7),
        averaged, expected)
    got, three, six = (leaf(t, EMBEDDING) for t in (averaged, at_3, at_6))
    assert got.dtype == np.float32
    assert not np.allclose(three, six)  # the two checkpoints differ, so the mean means something


# ----------------------------------------------------------------------------- failures


def test_nan_loss_stops_before_saving_and_keeps_the_last_good_checkpoint(corpus, tmp_path):
    """A NaN at step 3 (between log points) is caught at the step-4 save, which is skipped."""
    workdir = str(tmp_path)
    # Async saves (the default): the step-2 save may still be in flight when step 4 fails.
    config = make_config(corpus, "fsdp", log_every=100, checkpoint_every=2,
                         async_checkpoints=True)
    task = TranslationTask(config, workdir)
    original_loss = task.loss_fn
    poison = task.tokenizer.vocab_size + 5  # an id no real batch contains

    def loss_fn(params, batch, rng):  # NaN on poisoned batches
        loss, metrics = original_loss(params, batch, rng)
        return jnp.where(jnp.any(batch["inputs"] == poison), jnp.nan, loss), metrics

    original_batches = task.train_batches

    def train_batches(*args, **kwargs):  # batches of steps >= 3 are poisoned
        for index, batch in enumerate(original_batches(*args, **kwargs)):
            if index >= 2:
                batch = dict(batch, inputs=np.where(batch["inputs"] > 0, poison,
                                                    batch["inputs"]).astype(np.int32))
            yield batch

    task.loss_fn, task.train_batches = loss_fn, train_batches
    trainer = Trainer(config, workdir, task)
    with pytest.raises(NonFiniteLossError) as error:
        trainer.run()
    message = str(error.value)
    assert "training loss is nan by step 4" in message
    assert f"last good checkpoint: 2 in {workdir}" in message
    assert os.listdir(os.path.join(workdir, ckpt.CHECKPOINT_SUBDIR)) == ["2"]  # finalized
    params = saved_params(workdir, trainer)
    assert all(np.all(np.isfinite(p)) for p in jax.tree_util.tree_leaves(params))


def _tree_snapshot(directory: str) -> dict[str, tuple[int, int]]:
    snapshot = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            stat = os.stat(path)
            snapshot[os.path.relpath(path, directory)] = (stat.st_size, stat.st_mtime_ns)
    return snapshot


def test_checkpoint_of_another_model_is_refused_untouched(corpus, preempted_workdir, tmp_path):
    workdir = str(tmp_path / "other_model")
    shutil.copytree(preempted_workdir, workdir)
    checkpoints = os.path.join(workdir, ckpt.CHECKPOINT_SUBDIR)
    before = _tree_snapshot(checkpoints)
    config = make_config(corpus, "dp")
    config.model.d_model = 48
    trainer = Trainer(config, workdir, TranslationTask(config, workdir))
    with pytest.raises(ckpt.CheckpointMismatchError) as error:
        trainer.run()
    message = str(error.value)
    assert "\n" not in message
    assert "d_model: checkpoint 32 vs config 48" in message
    assert f"workdir {workdir}" in message
    assert "num_heads" not in message  # only the fields that differ
    assert _tree_snapshot(checkpoints) == before
    assert before  # the snapshot did see the checkpoint files


def test_resume_may_change_dropout_but_not_the_vocabulary(corpus, preempted_workdir, tmp_path):
    """Only what fixes the params' shapes and meaning must match: dropout may change on
    resume, while another vocabulary of the same size is refused (init_from too)."""
    workdir = str(tmp_path / "resume")
    shutil.copytree(preempted_workdir, workdir)
    config = make_config(corpus, "dp", **{"model.dropout_rate": 0.3})
    trainer = Trainer(config, workdir, TranslationTask(config, workdir))
    with jax.set_mesh(trainer.mesh):
        assert int(trainer.restore_or_init().step) > 0
    other = corpus.root / "other_vocab.model"
    if not other.exists():
        sentences = [side for line in word_pairs(160, seed=7) for side in line.split("\t")]
        sentences = [s[::-1] for s in sentences]  # other pieces, same requested size
        train_sentencepiece(sentences, str(other), vocab_size=60)
    for name, extra in (("workdir", {}), ("init_from", {"init_from": preempted_workdir})):
        target = workdir if name == "workdir" else str(tmp_path / "fresh")
        config = make_config(corpus, "dp", **{"data.vocab_path": str(other)}, **extra)
        task = TranslationTask(config, target)
        with pytest.raises(ckpt.CheckpointMismatchError, match="vocab_sha256"):
            Trainer(config, target, task).restore_or_init()


def test_training_makes_no_implicit_host_to_device_copies(corpus, tmp_path):
    """Init, steps, eval, BLEU decoding and checkpoints under jax.transfer_guard('disallow'):
    every batch reaches the devices through an explicit, sharded placement."""
    config = make_config(corpus, "fsdp", num_train_steps=2, checkpoint_every=1,
                         **{"predict.bleu_split": "eval", "predict.num_bleu_examples": 3,
                            "predict.max_decode_len": 16})
    workdir = str(tmp_path / "guarded")
    task = TranslationTask(config, workdir)
    with jax.transfer_guard("disallow"):
        results = Trainer(config, workdir, task).run()
    assert {"eval/nll", "eval/bleu"} <= set(results)


def test_logged_mfu_peak_comes_from_the_config_and_the_compute_dtype(corpus, tmp_path,
                                                                    monkeypatch):
    """The training log's MFU peak is asked for with peak_tflops_per_device and the model's
    compute dtype (not the parameters' storage dtype), before the first step."""
    asked = []

    class StopBeforeTraining(Exception):
        pass

    def record_and_stop(tflops_per_device, compute_dtype):
        asked.append((tflops_per_device, compute_dtype))
        raise StopBeforeTraining

    monkeypatch.setattr(metrics_lib, "peak_flops_for_mfu", record_and_stop)
    config = make_config(corpus, peak_tflops_per_device=2.5,
                         **{"model.dtype": "bfloat16", "model.param_dtype": "float32"})
    workdir = str(tmp_path / "mfu")
    with pytest.raises(StopBeforeTraining):
        Trainer(config, workdir, TranslationTask(config, workdir)).run()
    assert asked == [(2.5, "bfloat16")]


def test_workdir_with_checkpoints_but_no_vocab_is_refused(corpus, preempted_workdir, tmp_path):
    """Training a fresh vocab next to old checkpoints would scramble their token ids."""
    workdir = str(tmp_path / "lost_vocab")
    shutil.copytree(preempted_workdir, workdir)
    assert not os.path.exists(os.path.join(workdir, "vocab.model"))
    config = make_config(corpus, "dp", **{"data.vocab_path": ""})
    with pytest.raises(FileNotFoundError, match="has checkpoints but no vocab.model"):
        TranslationTask(config, workdir)
    assert not os.path.exists(os.path.join(workdir, "vocab.model"))


def test_unknown_model_key_is_named(corpus, tmp_path):
    config = make_config(corpus, "dp")
    config.model.num_layerz = 3
    with pytest.raises(ValueError, match=r"unknown model config keys \['num_layerz'\]"):
        TranslationTask(config, str(tmp_path))


@pytest.mark.parametrize("field, size", [("batch_size", 12), ("eval_batch_size", 4)])
def test_batch_size_must_divide_over_the_mesh(corpus, tmp_path, field, size):
    config = make_config(corpus, "fsdp", **{field: size})  # 2x4 mesh: 8 batch shards
    with pytest.raises(ValueError, match=rf"config.{field}={size} must be divisible by the 8 "
                                         r"batch shards of mesh"):
        Trainer(config, str(tmp_path), TranslationTask(config, str(tmp_path)))


def test_bad_training_files_fail_clearly(corpus, tmp_path):
    """No data.vocab_path: building the task trains the vocab, reading the training data."""
    def task_for(**data):
        config = make_config(corpus, "dp", **{f"data.{k}": v for k, v in data.items()})
        config.data.vocab_path = ""
        return TranslationTask(config, str(tmp_path / "workdir"))

    missing = str(tmp_path / "missing.tsv")
    with pytest.raises(FileNotFoundError, match=f"{missing} does not exist"):
        task_for(train_tsv=missing)

    source = write_lines(tmp_path / "train.en", ["the cat", "a dog", "the house"])
    target = write_lines(tmp_path / "train.de", ["die katze", "ein hund"])
    with pytest.raises(ValueError, match=r"misaligned parallel files: .*train.en has 3 lines, "
                                         r".*train.de has 2 lines"):
        task_for(train_tsv="", train_source=source, train_target=target)

    empty = write_lines(tmp_path / "empty.tsv", [])
    with pytest.raises(ValueError, match=f"{empty} is empty"):
        task_for(train_tsv=empty)
    assert not os.path.exists(tmp_path / "workdir" / "vocab.model")


def test_missing_eval_file_fails_before_training(corpus, tmp_path):
    """A typo in the eval path is reported at start, not after hours of training."""
    workdir = str(tmp_path / "workdir")
    missing = str(tmp_path / "dev.tsv")
    config = make_config(corpus, "dp", **{"data.eval_tsv": missing})
    with pytest.raises(FileNotFoundError, match=f"{missing} does not exist"):
        TranslationTask(config, workdir)
    assert not os.path.exists(workdir)


def test_failing_eval_comes_after_saving_the_trained_steps(corpus, tmp_path, monkeypatch):
    workdir = str(tmp_path / "workdir")
    config = make_config(corpus, "dp", num_train_steps=1, async_checkpoints=True)
    task = TranslationTask(config, workdir)

    def broken_eval(*args, **kwargs):
        raise OSError("eval data went away")

    monkeypatch.setattr(task, "eval_batches", broken_eval)
    with pytest.raises(OSError, match="eval data went away"):
        Trainer(config, workdir, task).run()
    # The work done is not lost to the eval error: saved first, and the (async) save was
    # finished before the error left the trainer.
    assert os.listdir(os.path.join(workdir, ckpt.CHECKPOINT_SUBDIR)) == ["1"]


# ----------------------------------------------------------------------------- main / CLI


def _main(workdir, *flags, timeout=300):
    env = dict(os.environ, JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="",
               TF_CPP_MIN_LOG_LEVEL="2",
               XLA_FLAGS="--xla_force_host_platform_device_count=8")
    return subprocess.run(
        [sys.executable, "-m", "transformer_jax.main", "--config=configs/transformer_demo.py",
         f"--workdir={workdir}", *flags],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def test_main_demo_end_to_end(tmp_path):
    """The README's main job, shrunk: 20 steps on the demo corpus, BLEU on 16 sentences."""
    workdir = str(tmp_path / "demo")
    result = _main(
        workdir, "--config.num_train_steps=20", "--config.log_every=5",
        "--config.checkpoint_every=10", "--config.eval_every=0", "--config.batch_size=16",
        "--config.eval_batch_size=64", "--config.model.d_model=32", "--config.model.d_ff=37",
        "--config.model.num_encoder_layers=1", "--config.model.num_decoder_layers=1",
        "--config.data.vocab_size=200", "--config.data.max_source_length=24",
        "--config.data.max_target_length=24", "--config.data.shuffle_buffer=1000",
        "--config.optimizer.warmup_steps=20", "--config.predict.num_bleu_examples=16",
        "--config.predict.max_decode_len=24")
    assert result.returncode == 0, result.stderr[-4000:]
    assert "final:" in result.stderr and "eval/bleu=" in result.stderr, result.stderr[-4000:]

    train_loss = scalars(workdir, "train/loss")
    assert sorted(train_loss) == [5, 10, 15, 20]
    assert all(np.isfinite(v) for v in train_loss.values())
    assert train_loss[20] < train_loss[5]  # it learns something in 20 steps
    bleu = scalars(workdir, "eval/bleu")
    assert list(bleu) == [20] and 0.0 <= bleu[20] <= 100.0
    assert sorted(scalars(workdir, "eval/accuracy")) == [20]
    assert checkpoint_steps(workdir) == [10, 20]
    assert os.path.isfile(os.path.join(workdir, "vocab.model"))


def test_main_rejects_an_unknown_config_field(tmp_path):
    result = _main(str(tmp_path / "never"), "--config.foo=1", timeout=120)
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: unknown config field 'foo'"), result.stderr[-500:]
    assert "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "never")


def test_best_params_are_kept_by_the_chosen_metric(corpus, tmp_path):
    """With best_metric, the params of the best eval so far live in <workdir>/best: one
    checkpoint, at the step whose eval metric was best (first of ties), value recorded."""
    workdir = str(tmp_path / "best")
    trainer = run(make_config(corpus, "dp", eval_every=2, best_metric="eval/nll",
                              best_mode="min"), workdir)
    nll = run_helpers.scalars(workdir, "eval/nll")
    assert sorted(nll) == [2, 4, 6]
    best_step = min(nll, key=lambda s: (nll[s], s))
    best = ckpt.BestParams(workdir, "eval/nll", "min")
    assert best.manager.all_steps() == [best_step]
    np.testing.assert_allclose(best.best_value, nll[best_step], rtol=1e-6)
    assert not best.improves(nll[best_step]) and best.improves(nll[best_step] - 1.0)
    if best_step in (3, 6):  # a rolling checkpoint at the same step holds the same params
        restored = best.manager.restore(best_step, args=ckpt.ocp.args.Composite(
            params=ckpt.ocp.args.StandardRestore(trainer.abstract_state.params)))
        assert_trees_equal(host(restored["params"]), saved_params(workdir, trainer, best_step))
    best.close()


def test_unknown_best_metric_is_named(corpus, tmp_path):
    with pytest.raises(ValueError, match="best_metric='eval/bleu' is not among the eval"):
        run(make_config(corpus, "dp", eval_every=2, best_metric="eval/bleu"), tmp_path / "w")
