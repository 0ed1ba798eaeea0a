"""How the Trainer fails, on the tiny translation task: the NaN guard (stop before saving,
keep the last good checkpoint), configuration and input-file errors reported before any
training, and an eval failure raised only after the trained steps are saved.
"""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transformer_jax.engine import checkpoint as ckpt
from transformer_jax.engine.trainer import NonFiniteLossError, Trainer
from transformer_jax.translation.task import TranslationTask

import trainer_helpers
from trainer_helpers import make_config, run, saved_params, write_lines

corpus = trainer_helpers.corpus  # the tiny translation corpus (a module fixture)


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


def test_an_update_that_overflows_is_never_saved(corpus, tmp_path):
    """Step 3's loss is finite (the params before its update gave it), but the update leaves
    inf/NaN in one weight: the step-3 save is refused and checkpoint 2 stays the latest."""
    workdir = str(tmp_path)
    config = make_config(corpus, "fsdp", log_every=100, checkpoint_every=1)
    trainer = Trainer(config, workdir, TranslationTask(config, workdir))
    real_step = trainer.train_step_fn

    def overflowing_step(state, batch):
        state, metrics = real_step(state, batch)
        if int(jax.device_get(state.step)) == 3:
            leaves, treedef = jax.tree.flatten(state.params)
            leaves[-1] = leaves[-1] * jnp.inf  # inf, and NaN where the weight is 0
            state = state.replace(params=jax.tree.unflatten(treedef, leaves))
        return state, metrics

    trainer.train_step_fn = overflowing_step
    with pytest.raises(NonFiniteLossError, match=(
            f"params are not finite after the update of step 3; last good checkpoint: 2 in "
            f"{workdir} \\(kept\\)")) as error:
        trainer.run()
    assert "\n" not in str(error.value)
    assert trainer.manager.latest_step() == 2
    params = saved_params(workdir, trainer)
    assert all(np.all(np.isfinite(p)) for p in jax.tree_util.tree_leaves(params))


def test_unknown_best_metric_is_named(corpus, tmp_path):
    with pytest.raises(ValueError, match="best_metric='eval/bleu' is not among the eval"):
        run(make_config(corpus, "dp", eval_every=2, best_metric="eval/bleu"), tmp_path / "w")


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
