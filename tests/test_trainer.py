"""The training engine end to end on a tiny translation task, on 8 simulated CPU devices.

Covers the sharding presets against a one-device reference, batches placed without implicit
host-to-device copies, checkpoint restore onto another mesh, bit-exact resume after a
preemption, refusal of a foreign checkpoint, ``init_from``, checkpoint averaging, the best
params kept by an eval metric and the MFU peak the training log asks for. The NaN guard and
input errors are in test_trainer_errors.py, the ``transformer_jax.main`` CLI in
test_trainer_main.py; the corpus and config helpers they share are in trainer_helpers.py.

Each Trainer run costs a few compilations, so runs are shared through module fixtures:
``dp_run`` (6 uninterrupted steps) is the reference that resume, restore, ``init_from`` and
averaging are compared with; ``fsdp_run`` is the fsdp preset's run, made under
``jax.transfer_guard("disallow")`` with BLEU decoding at the end. Per-step losses are read
back from the TensorBoard event files the trainer writes (``log_every=1``), the same numbers
a user sees.
"""
import functools
import os
import shutil
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from transformer_jax.engine import checkpoint as ckpt
from transformer_jax.engine import metrics as metrics_lib
from transformer_jax.engine.trainer import Trainer
from transformer_jax.translation.task import TranslationTask
from transformer_jax.translation.tokenizer import train_sentencepiece

import run_helpers
import trainer_helpers
from run_helpers import (Preempted, assert_trees_equal, checkpoint_steps, event_files, host,
                         losses, preempt_after, scalars)
from trainer_helpers import (MESHES, STEPS, captured_warnings, make_config, run,
                             saved_params, word_pairs)

corpus = trainer_helpers.corpus  # the tiny translation corpus (a module fixture)

EMBEDDING = ("shared_embedding", "embedding")                        # [V, D]
QUERY = ("encoder", "layer_0", "self_attention", "query_kernel")     # [D, N, H]
OUT = ("decoder", "layer_0", "cross_attention", "out_kernel")        # [N, H, D]
WI = ("encoder", "layer_0", "ffn", "wi", "kernel")                   # [D, F=37]
WO = ("decoder", "layer_0", "ffn", "wo", "kernel")                   # [F=37, D]
NORM = ("encoder", "layer_0", "ffn_block", "layer_norm", "scale")    # [D]

# Physical specs expected on the 2x4 meshes of MESHES (trailing Nones written out). d_ff=37 is
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


def leaf(tree, path):
    for key in path:
        tree = tree[key]
    return tree


def adam_mu(opt_state):  # Adam's first moment, wherever the optimizer chain keeps it
    return optax.tree_utils.tree_get(opt_state, "mu")


def full_spec(sharding, ndim: int) -> tuple:
    spec = tuple(sharding.spec)
    return spec + (None,) * (ndim - len(spec))


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
def fsdp_run(corpus, tmp_path_factory):
    """6 fsdp steps with a checkpoint every step, an eval and BLEU decoding at the end, all
    under jax.transfer_guard("disallow")."""
    workdir = str(tmp_path_factory.mktemp("fsdp_run"))
    config = make_config(corpus, "fsdp", checkpoint_every=1,
                         **{"predict.bleu_split": "eval", "predict.num_bleu_examples": 3,
                            "predict.max_decode_len": 16})
    task = TranslationTask(config, workdir)
    with captured_warnings("transformer_jax.engine.sharding") as warned:
        with jax.transfer_guard("disallow"):
            trainer = Trainer(config, workdir, task)
            results = trainer.run()
    return types.SimpleNamespace(trainer=trainer, losses=losses(workdir), results=results,
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
def test_preset_layout_and_loss_match_one_device(preset, corpus, dp_run, fsdp_run,
                                                 one_device_losses, tmp_path):
    shared = {"dp": dp_run, "fsdp": fsdp_run}.get(preset)
    if shared:
        trainer, run_losses, warned = shared.trainer, shared.losses, shared.warnings
    else:
        with captured_warnings("transformer_jax.engine.sharding") as warned:
            trainer = run(make_config(corpus, preset, checkpoint_every=1000), tmp_path)
        run_losses = losses(str(tmp_path))

    assert dict(trainer.mesh.shape) == MESHES[preset]
    assert trainer.task.tokenizer.vocab_size % 4 == 0, "the expected vocab specs assume V % 4 == 0"
    params = trainer.state_shardings.params
    mu = adam_mu(trainer.state_shardings.opt_state)  # Adam's first moment, sharded as params
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


def test_translation_metrics_count_real_target_tokens_only(dp_run):
    """eval's nll and accuracy, by hand from the model's logits: summed over the non-PAD
    targets of a padded eval batch and weighted by their count; PAD logits play no part."""
    task = dp_run.trainer.task
    params = trainer_helpers.saved_params(dp_run.workdir, dp_run.trainer)
    batch = next(iter(task.eval_batches(8, 0, 1)))
    metrics = jax.jit(task.eval_fn)(params, batch)
    logits = np.asarray(task.model.apply(
        {"params": params}, batch["inputs"], batch["decoder_inputs"],
        batch["inputs_segment_ids"], batch["inputs_positions"], batch["targets_segment_ids"],
        batch["targets_positions"], deterministic=True), np.float64)  # [B, L, V]
    targets = batch["targets"]
    real = targets != 0  # [B, L]
    assert 0 < real.sum() < real.size  # the batch is padded
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    picked = np.take_along_axis(log_probs, targets[..., None], -1)[..., 0]  # [B, L]
    nll_sum, nll_count = metrics["nll"]
    np.testing.assert_allclose(nll_sum, -(picked * real).sum(), rtol=1e-5)
    assert float(nll_count) == real.sum()
    right, count = metrics["accuracy"]
    assert float(right) == ((logits.argmax(-1) == targets) & real).sum()
    assert float(count) == real.sum()


def test_bleu_scores_the_translations_of_the_bleu_split_against_its_references(
        corpus, dp_run, monkeypatch):
    """evaluate_extra translates the split's source sentences, in order, and scores what
    comes back against the split's target sentences with sacrebleu."""
    import sacrebleu

    with open(corpus.eval_tsv, encoding="utf-8") as f:
        pairs = [line.rstrip("\n").split("\t") for line in f]
    # Each reference without its last word: a BLEU far from 0 and from 100.
    hypotheses = [" ".join(target.split()[:-1]) for _, target in pairs]
    asked = []

    class Translator:
        def translate(self, params, sources):
            asked.extend(sources)
            return hypotheses

    task = dp_run.trainer.task
    monkeypatch.setattr(task.config.predict, "bleu_split", "eval")
    monkeypatch.setattr(task.config.predict, "num_bleu_examples", 0)
    monkeypatch.setattr(task, "_bleu_pairs", None)
    monkeypatch.setattr(task, "translator", lambda mesh: Translator())
    results = task.evaluate_extra(None, 6, dp_run.trainer.mesh)
    assert asked == [source for source, _ in pairs]
    expected = sacrebleu.corpus_bleu(hypotheses, [[target for _, target in pairs]]).score
    assert results == {"bleu": pytest.approx(expected)} and 10 < expected < 90


def test_beam_search_with_the_model_returns_its_best_scored_hypothesis(dp_run):
    """On the trained tiny model, beam 3, alpha 0.6: the translator's step returns the best
    scored of the K hypotheses, and each finished one's score is its teacher-forced
    log-probability (EOS included) over the GNMT penalty ((5 + length) / 6) ** alpha."""
    from transformer_jax import decode, incremental
    from transformer_jax.model import Transformer
    from transformer_jax.translation import predict
    from transformer_jax.translation.tokenizer import BOS_ID, EOS_ID

    task, (beam, alpha, length, extra) = dp_run.trainer.task, (3, 0.6, 12, 4)
    model = task.model
    params = trainer_helpers.saved_params(dp_run.workdir, dp_run.trainer)
    inputs = np.asarray(next(iter(task.eval_batches(8, 0, 1)))["inputs"])[:3]  # [3, S]

    @jax.jit
    def all_beams(params, inputs):
        encoded = model.apply({"params": params}, inputs, method=Transformer.encode)
        encoded, beam_inputs = decode.expand_to_beams((encoded, inputs), beam)  # [3K, ...]
        cache = incremental.init_cache(model, params, encoded, beam_inputs, length)
        step = incremental.make_tokens_to_logits(model, params, encoded, beam_inputs)
        limits = jnp.minimum(jnp.sum(inputs != 0, axis=1) + extra, length)  # [3]
        return decode.beam_search(step, cache, 3, beam, length, BOS_ID, EOS_ID, alpha=alpha,
                                  max_lengths=limits)  # [3, K, L], [3, K]

    best = jax.jit(functools.partial(
        predict.beam_search_step, model=model, beam_size=beam, alpha=alpha,
        max_decode_len=length, extra_length=extra))(params, inputs)  # [3, L]
    tokens, scores = (np.asarray(x) for x in all_beams(params, inputs))
    np.testing.assert_array_equal(best, tokens[np.arange(3), scores.argmax(1)])
    checked = 0
    for b, k in np.ndindex(3, beam):
        hypothesis = list(tokens[b, k])
        if EOS_ID not in hypothesis:
            continue
        n = hypothesis.index(EOS_ID) + 1  # tokens scored, EOS included
        decoder_inputs = np.array([[BOS_ID] + hypothesis[:n - 1]], np.int32)  # [1, n]
        logits = model.apply({"params": params}, inputs[b:b + 1], decoder_inputs)  # [1, n, V]
        log_probs = jax.nn.log_softmax(np.asarray(logits[0], np.float64))
        total = float(sum(log_probs[i, t] for i, t in enumerate(hypothesis[:n])))
        assert scores[b, k] == pytest.approx(total / ((5 + n) / 6) ** alpha, rel=1e-4)
        checked += 1
    assert checked >= 3


def test_logged_learning_rate_is_the_papers_schedule(dp_run):
    """lrate = 2.0 (the demo's multiplier) * d_model^-0.5 * min(step^-0.5,
    step * warmup^-1.5), paper section 5.3, with d_model 32 and warmup 10, as the trainer
    feeds it to Adam and logs it at every step."""
    rates = run_helpers.scalars(dp_run.workdir, "train/learning_rate")
    assert sorted(rates) == list(range(1, STEPS + 1))
    for step, rate in rates.items():
        assert rate == pytest.approx(2.0 * 32 ** -0.5 * min(step ** -0.5, step * 10 ** -1.5),
                                     rel=1e-6), step


def test_training_makes_no_implicit_host_to_device_copies(fsdp_run):
    """Init, steps, eval, BLEU decoding and checkpoints ran under the transfer guard: every
    batch reached the devices through an explicit, sharded placement."""
    assert {"eval/nll", "eval/bleu"} <= set(fsdp_run.results)
    assert checkpoint_steps(fsdp_run.trainer.workdir) == list(range(2, STEPS + 1))


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
    assert full_spec(leaf(adam_mu(state.opt_state), QUERY).sharding, 3) == ("fsdp", "tensor", None)
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
    mu = host(adam_mu(state.opt_state))
    assert all(not np.any(m) for m in jax.tree_util.tree_leaves(mu))
    assert full_spec(leaf(state.params, EMBEDDING).sharding, 2) == (None, "fsdp")
    assert full_spec(leaf(adam_mu(state.opt_state), EMBEDDING).sharding, 2) == (None, "fsdp")
    assert leaf(adam_mu(state.opt_state), EMBEDDING).addressable_shards[0].data.shape == (
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
    """Only what fixes the params' shapes and meaning must match: dropout, learning rate and
    clipping may change on resume (the NaN guard advises the last two); an optimizer state
    of another layout, or another vocabulary of the same size (init_from too), is refused."""
    workdir = str(tmp_path / "resume")
    shutil.copytree(preempted_workdir, workdir)
    saved = checkpoint_steps(workdir)
    config = make_config(corpus, "dp", **{"model.dropout_rate": 0.3,
                                          "optimizer.learning_rate": 0.5,
                                          "optimizer.clip_grad_norm": 1.0})
    trainer = Trainer(config, workdir, TranslationTask(config, workdir))
    with jax.set_mesh(trainer.mesh):
        assert int(trainer.restore_or_init().step) == saved[-1]
    for change, diff in (({"optimizer.grad_accum_steps": 2}, "grad_accum_steps > 1: "
                          "checkpoint False vs config True"),
                         ({"optimizer.name": "lamb"}, "name: checkpoint 'adam' vs config 'lamb'")):
        config = make_config(corpus, "dp", **change)
        with pytest.raises(ValueError, match=f"workdir {workdir}'s optimizer state does not "
                                             f"fit this config's optimizer \\({diff}\\): set "
                                             "them back to resume") as error:
            Trainer(config, workdir, TranslationTask(config, workdir)).restore_or_init()
        assert "\n" not in str(error.value)
        assert checkpoint_steps(workdir) == saved
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


def test_workdir_with_checkpoints_but_no_vocab_is_refused(corpus, preempted_workdir, tmp_path):
    """Training a fresh vocab next to old checkpoints would scramble their token ids."""
    workdir = str(tmp_path / "lost_vocab")
    shutil.copytree(preempted_workdir, workdir)
    assert not os.path.exists(os.path.join(workdir, "vocab.model"))
    config = make_config(corpus, "dp", **{"data.vocab_path": ""})
    with pytest.raises(FileNotFoundError, match="has checkpoints but no vocab.model"):
        TranslationTask(config, workdir)
    assert not os.path.exists(os.path.join(workdir, "vocab.model"))


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


# ----------------------------------------------------------------------------- training log


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
