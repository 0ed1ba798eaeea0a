"""BERT pretraining on the shared engine: a few-step run with exact resume, its metrics,
``init_checkpoint`` from a Google TF checkpoint, a Hugging Face directory and a phase-1
workdir (phase 2 at a longer sequence length), and TFRecord shards written offline.
The one-line errors of ``bert_jax.main`` are in ``test_bert_pretraining_errors.py``.

Sizes are odd: hidden 32 (4 heads x 8), intermediate 37, 2 layers, sequence length 23,
5 predictions per sequence. The corpus is written by the tests in the original format.
"""
import collections
import itertools
import logging
import os
import shutil
import types

import jax
import numpy as np
import optax
import pytest
import tensorflow as tf

import bert_fixtures
import run_helpers
from bert_data_helpers import write_corpus
from bert_jax import interop
from bert_jax.pretraining.task import PretrainingTask
from configs import bert_pretrain
from transformer_jax import runtime
from transformer_jax.engine import checkpoint as ckpt
from transformer_jax.engine import optim
from transformer_jax.engine.trainer import Trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 6
# model.* sizes left to an init_checkpoint (which fixes them).
NO_SIZE_OVERRIDES = dict(num_layers=None, hidden_size=None, num_heads=None,
                         intermediate_size=None, max_position_embeddings=None)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(str(tmp_path_factory.mktemp("corpus") / "docs.txt"))


def make_config(corpus: str, **overrides):
    c = bert_pretrain.get_config("size=tiny")
    c.model.update(dict(num_layers=2, hidden_size=32, num_heads=4, intermediate_size=37,
                        max_position_embeddings=29))
    # An explicit held-out file: a hash split of 24 documents named by their (temporary)
    # path could hold out none of them.
    held_out = os.path.join(os.path.dirname(corpus), "held_out.txt")
    if not os.path.exists(held_out):
        write_corpus(held_out, num_documents=5, seed=7)
    c.data.update(dict(source="files", input_files=corpus, eval_input_files=held_out,
                       vocab_size=120, max_seq_length=23, max_predictions_per_seq=5))
    c.update(dict(batch_size=8, eval_batch_size=8, num_train_steps=STEPS, log_every=1,
                  eval_every=STEPS, checkpoint_every=3, keep_checkpoints=5,
                  async_checkpoints=False))
    c.optimizer.warmup_steps = 2
    run_helpers.override(c, overrides)
    return c


def run(config, workdir, task=None) -> Trainer:
    trainer = Trainer(config, str(workdir), task or PretrainingTask(config, str(workdir)))
    trainer.run()
    return trainer


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    """Six uninterrupted steps; checkpoints at 3 and 6."""
    workdir = str(tmp_path_factory.mktemp("reference"))
    trainer = run(make_config(corpus), workdir)
    return types.SimpleNamespace(workdir=workdir, trainer=trainer,
                                 losses=run_helpers.losses(workdir))


def saved_params(workdir, trainer, step=None):
    return run_helpers.host(ckpt.restore_params(workdir, trainer.abstract_state.params,
                                                step=step))


def test_metrics_are_logged_for_training_and_held_out_data(reference):
    for tag in ("train/loss", "train/mlm_loss", "train/mlm_accuracy", "train/nsp_loss",
                "train/nsp_accuracy", "train/learning_rate"):
        assert sorted(run_helpers.scalars(reference.workdir, tag)) == list(range(1, STEPS + 1))
    final = {tag: run_helpers.scalars(reference.workdir, f"eval/{tag}")[STEPS]
             for tag in ("mlm_loss", "mlm_accuracy", "nsp_loss", "nsp_accuracy",
                         "mlm_baseline_accuracy")}
    assert 0.0 <= final["mlm_accuracy"] <= 1.0 and 0.0 <= final["nsp_accuracy"] <= 1.0
    # The most frequent masked token of this corpus is common but far from all of them.
    assert 0.02 < final["mlm_baseline_accuracy"] < 0.5
    # Loss = MLM mean + NSP mean (what the original run_pretraining.py optimises).
    train = {tag: run_helpers.scalars(reference.workdir, f"train/{tag}")[1]
             for tag in ("loss", "mlm_loss", "nsp_loss")}
    np.testing.assert_allclose(train["loss"], train["mlm_loss"] + train["nsp_loss"], rtol=1e-5)
    # An untrained MLM over V tokens starts near log(V).
    vocab_size = reference.trainer.task.model_cfg.vocab_size
    assert abs(train["mlm_loss"] - np.log(vocab_size)) < 1.0
    assert os.path.exists(os.path.join(reference.workdir, "vocab.txt"))


def test_held_out_accuracies_are_recomputed_from_the_saved_params(reference):
    """eval/mlm_accuracy and eval/nsp_accuracy at the last step equal numpy's weighted argmax
    accuracy of the saved params over the held-out batches (labels and weights as fed)."""
    task = reference.trainer.task
    params = saved_params(reference.workdir, reference.trainer, step=STEPS)
    apply = jax.jit(lambda p, b: task.model.apply(
        {"params": p}, b["input_ids"], b["input_mask"], b["segment_ids"],
        b["masked_lm_positions"], deterministic=True))  # [B, P, V], [B, 2]
    right, total = {"mlm": 0.0, "nsp": 0.0}, {"mlm": 0.0, "nsp": 0.0}
    for batch in task.eval_batches(8, 0, 1):
        mlm, nsp = apply(params, batch)
        for name, logits, labels, weights in (
                ("mlm", mlm, batch["masked_lm_ids"], batch["masked_lm_weights"]),
                ("nsp", nsp, batch["next_sentence_labels"], batch["next_sentence_weights"])):
            right[name] += float(np.sum((np.argmax(logits, -1) == labels) * weights))
            total[name] += float(np.sum(weights))
    for name in ("mlm", "nsp"):
        logged = run_helpers.scalars(reference.workdir, f"eval/{name}_accuracy")[STEPS]
        assert 0 < right[name] < total[name]
        np.testing.assert_allclose(logged, right[name] / total[name], rtol=1e-5)
    # The NSP floor: the share of the more frequent label among the real held-out pairs.
    labels = np.concatenate([b["next_sentence_labels"][b["next_sentence_weights"] > 0]
                             for b in task.eval_batches(8, 0, 1)])
    logged = run_helpers.scalars(reference.workdir, "eval/nsp_baseline_accuracy")[STEPS]
    assert labels.size == total["nsp"] and 0.5 <= logged < 1.0
    np.testing.assert_allclose(logged, max(labels.mean(), 1 - labels.mean()), rtol=1e-6)


def test_gradient_accumulation_in_the_trainer_updates_on_the_mean_of_micro_batches(
        corpus, tmp_path):
    """grad_accum_steps=2, micro-batches of 8: 4 micro-steps are 2 AdamW updates, each on
    the mean gradient of its 2 micro-batches (the stream's batches, in order). Steps,
    checkpoints and the logged learning rate count micro-steps; the schedule advances per
    update."""
    config = make_config(corpus, num_train_steps=4, checkpoint_every=2,
                         eval_every=0, **{"optimizer.grad_accum_steps": 2,
                                          "optimizer.warmup_steps": 0})
    workdir = str(tmp_path / "accumulated")
    task = PretrainingTask(config, workdir)
    # One device: the accumulation is what is tested here (8-device layouts are elsewhere),
    # and one device compiles faster.
    trainer = Trainer(config, workdir, task, devices=jax.devices()[:1])
    with jax.set_mesh(trainer.mesh):
        initial = run_helpers.host(trainer.restore_or_init().params)
    trainer.run()
    assert run_helpers.checkpoint_steps(workdir) == [2, 4]

    # The same two updates by hand: plain AdamW (2 updates) on mean micro-batch gradients.
    plain = config.optimizer.copy_and_resolve_references()
    plain.grad_accum_steps = 1
    tx, schedule = optim.create_optimizer(plain, d_model=task.model_dim, num_train_steps=2)
    grad = jax.grad(lambda p, b: task.loss_fn(p, b, jax.random.key(0))[0])

    @jax.jit
    def update(params, opt_state, first, second):
        mean = jax.tree.map(lambda a, b: (a + b) / 2, grad(params, first), grad(params, second))
        updates, opt_state = tx.update(mean, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    batches = list(itertools.islice(task.train_batches(8, 0, 0, 1), 4))
    params, opt_state, expected = initial, tx.init(initial), {}
    for step in (2, 4):
        params, opt_state = update(params, opt_state, *batches[step - 2:step])
        expected[step] = run_helpers.host(params)
    for step, want in expected.items():
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6),
                     saved_params(workdir, trainer, step=step), want)
    assert not np.allclose(expected[2]["mlm"]["output_bias"], initial["mlm"]["output_bias"])
    rates = run_helpers.scalars(workdir, "train/learning_rate")
    np.testing.assert_allclose([rates[s] for s in (1, 2, 3, 4)],
                               [schedule(0), schedule(0), schedule(1), schedule(1)], rtol=1e-6)
    assert schedule(1) < schedule(0)


def test_exact_resume(corpus, reference, tmp_path):
    """Killed after step 4 (checkpoint at 3): resumed, losses and params equal the run that
    never stopped, bit for bit (dropout, dynamic masks and pair draws included)."""
    workdir = str(tmp_path / "resumed")
    config = make_config(corpus)
    shutil.copytree(reference.workdir, workdir,
                    ignore=shutil.ignore_patterns("checkpoints", "events.*"))
    task = run_helpers.preempt_after(PretrainingTask(config, workdir), 4)
    with pytest.raises(run_helpers.Preempted):
        Trainer(config, workdir, task).run()
    assert run_helpers.checkpoint_steps(workdir) == [3]
    first = run_helpers.event_files(workdir)
    trainer = run(config, workdir)
    after = run_helpers.scalars(workdir, "train/loss", run_helpers.event_files(workdir) - first)
    before = run_helpers.scalars(workdir, "train/loss", first)
    # The resumed run starts at step 4 (a restart from step 0 would log 1..6 again) and the
    # losses all differ, so "equal to the reference" is not equal by standing still.
    assert sorted(before) == [1, 2, 3, 4] and sorted(after) == [4, 5, 6]
    assert len(set(reference.losses)) == STEPS
    assert [before[s] for s in (1, 2, 3)] + [after[s] for s in (4, 5, 6)] == reference.losses
    run_helpers.assert_trees_equal(saved_params(workdir, trainer),
                                   saved_params(reference.workdir, reference.trainer))


@pytest.mark.parametrize("source", ["google", "hugging_face"])
def test_init_checkpoint_from_google_or_hugging_face(corpus, tmp_path, source):
    """The model takes the checkpoint's shape and weights (heads included), and its vocab,
    from Google's TF layout and from a Hugging Face directory of the same weights."""
    weights = bert_fixtures.random_weights()
    if source == "google":
        checkpoint = str(tmp_path / "google")
        bert_fixtures.write_tf_checkpoint(checkpoint, weights)
    else:
        checkpoint = bert_fixtures.write_hf_dir(
            str(tmp_path / "hf"), bert_fixtures.hf_state_dict(weights, 2))
    workdir = str(tmp_path / "warm")
    config = make_config(corpus, init_checkpoint=checkpoint)
    config.model.update(NO_SIZE_OVERRIDES)
    config.data.max_seq_length = 19  # the checkpoint has 19 positions
    config.data.max_predictions_per_seq = 3
    task = PretrainingTask(config, workdir)
    assert task.model_cfg.vocab_size == bert_fixtures.BERT_CONFIG["vocab_size"]
    with open(os.path.join(workdir, "vocab.txt")) as f:
        assert f.read().split("\n")[:-1] == bert_fixtures.VOCAB
    trainer = Trainer(config, workdir, task)
    with jax.set_mesh(trainer.mesh):
        params = run_helpers.host(trainer.restore_or_init().params)
    expected = interop.load_pretrained(checkpoint).params
    run_helpers.assert_trees_equal(params, expected)
    np.testing.assert_array_equal(
        params["bert"]["token_embed"]["embedding"],
        weights["bert/embeddings/word_embeddings"])


@pytest.mark.parametrize("mismatch, message", [
    ("another vocab", "differs from the vocab.txt of init_checkpoint .*: use the checkpoint's"),
    ("a size override", "config sets model.max_position_embeddings=29 but init_checkpoint .* "
                        "has max_position_embeddings=19: drop the override"),
    ("longer sequences", "data.max_seq_length=23 exceeds model.max_position_embeddings=19: "
                         "lower it"),
    ("a vocab.txt longer than its model", "the vocab has 58 tokens but init_checkpoint .* "
                                          "has 53 token embeddings: .*vocab.txt"),
])
def test_init_checkpoint_that_does_not_fit_the_config_is_one_line_error(
        corpus, tmp_path, mismatch, message):
    """Refused at start, in one line, before any checkpoint is written."""
    tf_dir = str(tmp_path / "google")
    bert_fixtures.write_tf_checkpoint(tf_dir, bert_fixtures.random_weights())
    config = make_config(corpus, init_checkpoint=tf_dir)
    if mismatch != "a size override":
        config.model.update(NO_SIZE_OVERRIDES)
    if mismatch == "another vocab":
        # Same size and special tokens, other words: it would scramble the embeddings.
        words = bert_fixtures.VOCAB[5:]
        other_vocab = tmp_path / "vocab.txt"
        other_vocab.write_text("\n".join(bert_fixtures.VOCAB[:5] + words[::-1]) + "\n")
        config.data.vocab_file = str(other_vocab)
    if mismatch == "a vocab.txt longer than its model":
        with open(os.path.join(tf_dir, "vocab.txt"), "a") as f:
            f.write("".join(f"extra{i}\n" for i in range(5)))
    if mismatch != "longer sequences":
        config.data.update(dict(max_seq_length=19, max_predictions_per_seq=3))
    workdir = tmp_path / "work"
    with pytest.raises(ValueError, match=message) as error:
        PretrainingTask(config, str(workdir))
    assert "\n" not in str(error.value)
    assert not workdir.exists() or not any(
        name.startswith("checkpoints") for name in os.listdir(workdir))


def test_phase_two_continues_from_phase_one_at_a_longer_length(corpus, reference, tmp_path):
    """init_checkpoint = the phase-1 workdir: step 0 holds its final params; the optimizer
    starts fresh; longer sequences and more predictions per sequence."""
    workdir = str(tmp_path / "phase2")
    config = make_config(corpus, init_checkpoint=reference.workdir, num_train_steps=3,
                         eval_every=3, checkpoint_every=3)
    config.data.update(dict(vocab_file=os.path.join(reference.workdir, "vocab.txt"),
                            max_seq_length=29, max_predictions_per_seq=7))
    task = PretrainingTask(config, workdir)
    trainer = Trainer(config, workdir, task)
    with jax.set_mesh(trainer.mesh):
        state = trainer.restore_or_init()
    assert int(state.step) == 0
    run_helpers.assert_trees_equal(run_helpers.host(state.params),
                                   saved_params(reference.workdir, reference.trainer))
    # Fresh Adam moments and count (phase 1's would be non-zero), as the BERT authors did.
    moments = jax.tree.leaves(state.opt_state)
    assert len(moments) > 2 * len(jax.tree.leaves(state.params))  # mu and nu of each
    assert all(not np.any(np.asarray(leaf)) for leaf in moments)
    batch = next(task.train_batches(8, 0, 0, 1))
    assert batch["input_ids"].shape == (8, 29) and batch["masked_lm_ids"].shape == (8, 7)
    trainer.run()
    assert run_helpers.checkpoint_steps(workdir) == [3]
    # The released recipe: 90% of the steps at 128 tokens, then 10% at 512 with a new warmup.
    phase_two = bert_pretrain.get_config("size=base,phase=2")
    assert (phase_two.data.max_seq_length, phase_two.data.max_predictions_per_seq,
            phase_two.num_train_steps, phase_two.optimizer.warmup_steps) == (512, 80, 100_000,
                                                                             1_000)
    phase_one = bert_pretrain.get_config("size=base")
    assert (phase_one.data.max_seq_length, phase_one.data.max_predictions_per_seq,
            phase_one.num_train_steps) == (128, 20, 900_000)


def test_xla_attention_core_trains_like_einsum_and_exports_the_default_core(
        corpus, reference, tmp_path):
    """The size=tiny recipe has attention dropout 0, so the xla core may run it: the same
    six losses as the einsum reference, on the sharded mesh. The workdir's config keeps
    'xla', but loading it elsewhere (fine-tuning, extract_features, convert) gets the
    default core: which kernel ran is a run setting, not part of the weights."""
    workdir = str(tmp_path / "xla")
    run(make_config(corpus, **{"model.attention_implementation": "xla"}), workdir)
    np.testing.assert_allclose(run_helpers.losses(workdir), reference.losses, rtol=1e-4)
    loaded = interop.load_pretrained(workdir)
    assert loaded.config.attention_implementation == "einsum"
    assert loaded.config == interop.load_pretrained(reference.workdir).config


def test_training_reads_tfrecords_written_offline(corpus, reference, tmp_path, caplog):
    """write_tfrecords -> data.source=tfrecords: same vocab, fresh masks in the graph."""
    from bert_jax.pretraining import write_tfrecords

    vocab = os.path.join(reference.workdir, "vocab.txt")
    train = write_tfrecords.write(corpus, vocab, str(tmp_path / "train"), num_shards=3,
                                  max_seq_length=23, dupe_factor=2)
    held_out = write_corpus(str(tmp_path / "held_out.txt"), num_documents=4, seed=1)
    write_tfrecords.write(held_out, vocab, str(tmp_path / "eval"), num_shards=1,
                          max_seq_length=23, dupe_factor=1)
    assert [os.path.basename(p) for p in train] == [
        f"train-{i:05d}-of-00003.tfrecord" for i in range(3)]
    # The records are the pairs of dupe_factor=2 epochs of draws (default seed), unmasked.
    from bert_jax.pretraining import corpus as corpus_lib, pairs, pipeline
    from bert_jax.tokenization import FullTokenizer

    tokenizer = FullTokenizer(vocab, True)
    ids = pipeline.tokenize_documents(
        [d.sentences for d in corpus_lib.read_document_files(corpus)], tokenizer)
    special = pairs.SpecialIds(cls=tokenizer.cls_id, sep=tokenizer.sep_id)

    def pair_counts(examples):
        return collections.Counter((tuple(e["input_ids"]), int(e["next_sentence_labels"]))
                                   for e in examples)

    drawn = [e for epoch in (0, 1)
             for e in pairs.epoch_pairs(ids, pairs.PairRules(23, 0.1), special, 12345, epoch)]
    written = pipeline.tfrecord_pair_dataset(str(tmp_path / "train-*"), 0, 1, None)
    assert pair_counts(written.as_numpy_iterator()) == pair_counts(drawn)
    with pytest.raises(FileExistsError, match="exists"):
        write_tfrecords.write(corpus, vocab, str(tmp_path / "train"), num_shards=3)
    # The reference's config but the data: the same compiled steps.
    config = make_config(corpus)
    config.data.update(dict(source="tfrecords", input_files=str(tmp_path / "train-*"),
                            eval_input_files="", vocab_file=vocab))
    workdir = str(tmp_path / "work")
    # Shards that are not there fail at start, not at the first eval.
    with pytest.raises(ValueError, match="source='tfrecords' needs data.eval_input_files"):
        PretrainingTask(config, workdir)
    config.data.eval_input_files = str(tmp_path / "evl-*")
    with pytest.raises(FileNotFoundError, match="TFRecord pattern .*evl-.* matches no file"):
        PretrainingTask(config, workdir)
    assert not os.path.exists(workdir)
    config.data.eval_input_files = str(tmp_path / "eval-*")
    run(config, workdir)
    assert sorted(run_helpers.scalars(workdir, "train/mlm_loss")) == list(range(1, STEPS + 1))
    # The workdir keeps a copy of the vocab (fine-tuning's init_checkpoint reads it there),
    # and refuses another one later.
    with open(vocab) as given, open(os.path.join(workdir, "vocab.txt")) as kept:
        assert kept.read() == given.read()
    # write_tfrecords keeps the vocab beside the shards, and training refuses shards written
    # with another vocab of the same size (its ids would be scrambled without an error),
    # before it writes anything.
    with open(vocab) as given:
        assert (tmp_path / "train.vocab.txt").read_text() == given.read()
    other = tmp_path / "other_vocab.txt"
    other.write_text("\n".join(bert_fixtures.VOCAB[:5] + bert_fixtures.VOCAB[5:][::-1]) + "\n")
    config.data.vocab_file = str(other)
    fresh = str(tmp_path / "fresh")
    with pytest.raises(ValueError, match=r"the shards .*/train-\* were written with the vocab "
                       r".*/train\.vocab\.txt, not with .*other_vocab\.txt \(data\.vocab_file\): "
                       r"write them again with it, or train with theirs"):
        PretrainingTask(config, fresh)
    # Shards written again with that record as the vocab keep it whole.
    shutil.copy(tmp_path / "train.vocab.txt", tmp_path / "again.vocab.txt")
    write_tfrecords.write(held_out, str(tmp_path / "again.vocab.txt"), str(tmp_path / "again"),
                          num_shards=1, max_seq_length=23, dupe_factor=1)
    assert (tmp_path / "again.vocab.txt").read_text() == (tmp_path / "train.vocab.txt").read_text()
    config.data.update(dict(vocab_file=vocab, eval_input_files=str(tmp_path / "eval*")))
    with pytest.raises(ValueError, match=r"patterns match .*/eval\.vocab\.txt, the vocab of a "
                       "shard set: narrow them"):
        PretrainingTask(config, fresh)
    config.data.eval_input_files = str(tmp_path / "eval-*")
    # Text, and the original's masked examples (which parse as pairs; here past an empty
    # first shard, which a small corpus can leave), are refused at start.
    config.data.input_files = corpus
    with pytest.raises(ValueError, match=r"docs\.txt is not a TFRecord file: write pair "
                       "shards with python -m bert_jax.pretraining.write_tfrecords"):
        PretrainingTask(config, fresh)
    (tmp_path / "original-00000-of-00002.tfrecord").write_bytes(b"")
    original = str(tmp_path / "original-00001-of-00002.tfrecord")
    with tf.io.TFRecordWriter(original) as writer:
        feature = tf.train.Feature(int64_list=tf.train.Int64List(value=[2, 7, 3, 0]))
        writer.write(tf.train.Example(features=tf.train.Features(feature={
            key: feature for key in ("input_ids", "segment_ids", "masked_lm_positions",
                                     "next_sentence_labels")})).SerializeToString())
    config.data.input_files = str(tmp_path / "original-*")
    with pytest.raises(ValueError, match="original-00001-of-00002.tfrecord holds masked "
                       "examples .*create_pretraining_data"):
        PretrainingTask(config, fresh)
    config.data.input_files = str(tmp_path / "shards")
    os.makedirs(config.data.input_files)
    with pytest.raises(ValueError, match=r"shards is a directory: give a pattern of its shard "
                       r"files, such as '.*/shards/<prefix>-\*\.tfrecord'"):
        PretrainingTask(config, fresh)
    other_records = str(tmp_path / "labels-00000-of-00001.tfrecord")
    with tf.io.TFRecordWriter(other_records) as writer:
        writer.write(tf.train.Example(features=tf.train.Features(
            feature={"label": feature})).SerializeToString())
    config.data.input_files = other_records
    with pytest.raises(ValueError, match="holds no sentence pairs .*lacks input_ids, "
                       "next_sentence_labels, segment_ids"):
        PretrainingTask(config, fresh)
    assert not os.path.exists(fresh)
    config.data.input_files = str(tmp_path / "train-*")
    # Shards without that record (renamed, or written by an older version) only warn; the
    # checks below then come from the workdir and from the ids as they are read.
    os.remove(tmp_path / "train.vocab.txt")
    os.remove(tmp_path / "eval.vocab.txt")
    config.data.vocab_file = str(other)
    with caplog.at_level(logging.WARNING, logger="bert_jax.pretraining.sources"):
        with pytest.raises(ValueError, match="differs from .*the vocab this workdir was trained"):
            PretrainingTask(config, workdir)
    assert f"no {tmp_path}/train.vocab.txt beside the shards {tmp_path}/train-*" in caplog.text
    # The same tokens with Windows line endings are the same vocab.
    crlf = tmp_path / "vocab_crlf.txt"
    with open(vocab) as f:
        crlf.write_bytes(f.read().replace("\n", "\r\n").encode())
    config.data.vocab_file = str(crlf)
    PretrainingTask(config, workdir)
    config.data.vocab_file = vocab
    assert 0.0 <= run_helpers.scalars(workdir, "eval/nsp_accuracy")[STEPS] <= 1.0
    # Pairs written with a larger vocab are refused as they are read, naming the fix.
    small = tmp_path / "small_vocab.txt"
    with open(vocab) as f:
        small.write_text("".join(f.readlines()[:30]))
    config.data.vocab_file = str(small)
    task = PretrainingTask(config, str(tmp_path / "small"))
    with pytest.raises(Exception) as error:
        next(task.train_batches(8, 0, 0, 1))
    assert runtime.last_line(error.value) == (  # what bert_jax.main prints after "error: "
        "a TFRecord pair holds a token id past the 30 tokens of the vocab: it was written "
        "with another vocab; set data.vocab_file to that one or rewrite the TFRecords")
    config.data.vocab_file = vocab
    # Longer pairs than the run's max_seq_length are refused with the fix.
    config.data.max_seq_length = 17
    config.data.max_predictions_per_seq = 3
    task = PretrainingTask(config, str(tmp_path / "short"))
    with pytest.raises(Exception, match="longer than data.max_seq_length"):
        next(task.train_batches(8, 0, 0, 1))
