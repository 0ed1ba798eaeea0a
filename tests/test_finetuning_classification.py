"""Fine-tuning a sentence-pair classifier on the engine: MRPC in its original TSV format
from a Google-layout TF checkpoint, epochs as steps, official dev metrics every epoch, the
best epoch kept; plus the in-memory batching (exact resume) and the recipe arithmetic."""
import os
import random

import numpy as np
import pytest

import bert_fixtures
import run_helpers
from bert_jax import main as bert_main
from bert_jax.finetuning import batching, recipe
from configs import bert_finetune
from transformer_jax.engine import checkpoint as ckpt
from transformer_jax.engine.trainer import Trainer

WORDS = [w for w in bert_fixtures.VOCAB[5:] if w.isalpha()]


def write_mrpc(directory, rows: int, seed: int, name: str, test: bool = False) -> None:
    """MRPC's GLUE TSV; the test file has an index instead of the label."""
    rng = random.Random(seed)
    lines = [f"{'index' if test else 'Quality'}\t#1 ID\t#2 ID\t#1 String\t#2 String"]
    for i in range(rows):
        a = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6)))
        same = rng.random() < 0.5
        b = a if same else " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6)))
        lines.append(f"{i if test else int(same)}\t{i}\t{i + 1000}\t{a}\t{b}")
    (directory / name).write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def mrpc_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("mrpc")
    write_mrpc(root, 27, 0, "train.tsv")
    write_mrpc(root, 11, 1, "dev.tsv")
    write_mrpc(root, 5, 2, "test.tsv", test=True)
    return bert_fixtures.fine_tune(root, "mrpc", max_seq_length=19, source="files",
                                   data_dir=str(root))


def test_epochs_become_steps_with_an_eval_and_a_best_checkpoint(mrpc_run):
    workdir, config, task, _ = mrpc_run
    assert task.steps_per_epoch(8) == 3  # 27 examples // 8, remainder dropped per epoch
    assert (config.num_train_steps, config.eval_every) == (6, 3)
    assert config.best_metric == "eval/accuracy_f1_mean"
    main_metric = run_helpers.scalars(workdir, "eval/accuracy_f1_mean")
    assert sorted(main_metric) == [3, 6]
    for tag in ("eval/accuracy", "eval/f1", "eval/cross_entropy", "train/loss"):
        assert run_helpers.scalars(workdir, tag), tag
    best = ckpt.BestParams(workdir, config.best_metric, "max")
    best_step = max(main_metric, key=lambda s: (main_metric[s], -s))
    assert best.manager.all_steps() == [best_step]
    best.close()


def test_official_dev_metrics_match_the_predictions(mrpc_run):
    """evaluate_extra's F1 is scikit-learn's on the argmax of predict(), over all 11 rows."""
    from sklearn.metrics import f1_score

    workdir, _, task, trainer = mrpc_run
    import jax
    with jax.set_mesh(trainer.mesh):
        params = ckpt.restore_params(workdir, trainer.abstract_state.params)
        logits = task.predict(params, task.dev, trainer.mesh)
        extra = task.evaluate_extra(params, 6, trainer.mesh)
    assert logits.shape == (11, 2)
    labels = task.dev["label_ids"]
    assert extra["f1"] == pytest.approx(f1_score(labels, logits.argmax(-1), zero_division=0.0))
    assert extra["accuracy"] == pytest.approx(np.mean(labels == logits.argmax(-1)))


@pytest.mark.parametrize("source", ["google", "safetensors", "pytorch_model.bin"])
def test_classifier_starts_from_the_checkpoint_encoder(mrpc_run, tmp_path, source):
    """Any checkpoint format of the same weights gives the same encoder; the head is new."""
    import jax

    from bert_jax import interop

    _, config, _, _ = mrpc_run
    weights = bert_fixtures.random_weights()
    config = config.copy_and_resolve_references()
    if source != "google":  # the same weights in Hugging Face's layout
        config.init_checkpoint = bert_fixtures.write_hf_dir(
            str(tmp_path / "hf"), bert_fixtures.hf_state_dict(weights, 2),
            torch_bin=source == "pytorch_model.bin")
    task = bert_main.make_task(config, str(tmp_path / "fresh"))
    trainer = Trainer(config, str(tmp_path / "fresh"), task)
    with jax.set_mesh(trainer.mesh):
        params = run_helpers.host(trainer.restore_or_init().params)
    run_helpers.assert_trees_equal(params["bert"],
                                   interop.load_pretrained(config.init_checkpoint).params["bert"])
    np.testing.assert_array_equal(params["bert"]["token_embed"]["embedding"],
                                  weights["bert/embeddings/word_embeddings"])
    assert params["classifier"]["kernel"].shape == (32, 2)


def test_fine_tuning_without_init_checkpoint_is_refused(tmp_path):
    config = bert_finetune.get_config("task=demo")
    with pytest.raises(ValueError, match="needs config.init_checkpoint"):
        bert_main.make_task(config, str(tmp_path))


def test_train_batches_resume_exactly_and_cover_each_epoch():
    arrays = {"x": np.arange(23), "example_weights": np.ones(23, np.float32)}
    stream = batching.train_batches(arrays, batch_size_per_host=5, seed=3, start_batch=0,
                                    process_index=0, process_count=1)
    first = [next(stream)["x"] for _ in range(9)]
    epoch0 = np.concatenate(first[:4])
    assert len(set(epoch0)) == 20  # 4 batches of 5 distinct rows, remainder 3 dropped
    resumed = batching.train_batches(arrays, batch_size_per_host=5, seed=3, start_batch=6,
                                     process_index=0, process_count=1)
    for expected in first[6:]:
        np.testing.assert_array_equal(next(resumed)["x"], expected)
    hosts = [next(batching.train_batches(arrays, batch_size_per_host=2, seed=3, start_batch=0,
                                         process_index=h, process_count=2))["x"]
             for h in (0, 1)]
    assert not set(hosts[0]) & set(hosts[1])


def test_eval_batches_pad_with_zero_weights_evenly_across_hosts():
    arrays = {"x": np.arange(1, 8), "example_weights": np.ones(7, np.float32)}
    per_host = [batching.eval_batches(arrays, batch_size_per_host=3, process_index=h,
                                      process_count=2) for h in (0, 1)]
    assert [len(b) for b in per_host] == [2, 2]
    real = [x for batches in per_host for b in batches
            for x, w in zip(b["x"], b["example_weights"]) if w > 0]
    assert sorted(real) == list(range(1, 8))


def test_recipe_numbers():
    config = bert_finetune.get_config("task=mrpc")
    recipe.apply_epochs(config, steps_per_epoch=115, main_metric="accuracy_f1_mean")
    assert (config.num_train_steps, config.optimizer.warmup_steps) == (345, 34)
    assert config.eval_every == config.checkpoint_every == 115
    config.num_train_epochs = 0.0
    with pytest.raises(ValueError, match="num_train_epochs"):
        recipe.apply_epochs(config, 115, "accuracy")


def test_config_names_every_glue_task_and_the_demos():
    for task in bert_finetune.GLUE + bert_finetune.DEMOS:
        config = bert_finetune.get_config(f"task={task}")
        assert config.kind == "finetune"
    with pytest.raises(ValueError, match="unknown task"):
        bert_finetune.get_config("task=squad")
    assert os.path.exists(bert_finetune.__file__)


def test_glue_submission_file_from_the_best_epoch(mrpc_run):
    from bert_jax.finetuning.base import write_best_predictions

    _, _, task, trainer = mrpc_run
    [path] = write_best_predictions(trainer, task)
    assert path.endswith("/MRPC.tsv")
    with open(path) as f:
        lines = f.read().splitlines()
    assert lines[0] == "index\tprediction" and len(lines) == 6
    assert all(line.split("\t")[1] in ("0", "1") for line in lines[1:])


def test_sweep_runs_each_learning_rate_and_reports_the_best(tmp_path):
    import json

    bert_fixtures.write_tf_checkpoint(str(tmp_path / "google"), bert_fixtures.random_weights())
    # mrpc_run's data sizes and recipe: its run at the default 2e-5 compiles nothing new.
    write_mrpc(tmp_path, 27, 0, "train.tsv")
    write_mrpc(tmp_path, 11, 1, "dev.tsv")
    config = bert_finetune.get_config("task=mrpc")
    config.init_checkpoint = str(tmp_path / "google")
    config.data.update(dict(source="files", data_dir=str(tmp_path), max_seq_length=19))
    config.update(dict(batch_size=8, eval_batch_size=8, num_train_epochs=2.0,
                       async_checkpoints=False, sweep=True, sweep_learning_rates=[1e-3, 2e-5]))
    workdir = str(tmp_path / "sweep")
    result = bert_main.sweep(config, workdir)
    with open(os.path.join(workdir, "sweep.json")) as f:
        summary = json.load(f)
    bests = {rate: run["best"] for rate, run in summary["runs"].items()}
    assert sorted(bests) == ["0.001", "2e-05"]
    assert summary["best_learning_rate"] == float(max(bests, key=bests.get))
    assert result["learning_rate"] == summary["best_learning_rate"]
    for rate in bests:  # each run is a complete fine-tuning run of its own
        scores = run_helpers.scalars(os.path.join(workdir, f"lr_{rate}"),
                                     "eval/accuracy_f1_mean")
        assert max(scores.values()) == pytest.approx(bests[rate])
        lr = run_helpers.scalars(os.path.join(workdir, f"lr_{rate}"), "train/learning_rate")
        assert max(lr.values()) <= float(rate) * (1 + 1e-6)


@pytest.mark.parametrize("regression", [False, True], ids=["classes", "regression"])
def test_own_table_fine_tunes_and_writes_test_predictions(tmp_path, regression):
    """Your own CSV (named columns, labels as words or floats) and a label-less test file."""
    import csv

    rng = random.Random(3)
    for name, rows, labelled in (("train.csv", 17, True), ("dev.csv", 7, True),
                                 ("test.csv", 5, False)):
        with open(tmp_path / name, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "text", "other", "score"][:4 if labelled else 3])
            for i in range(rows):
                row = [f"r{i}", " ".join(rng.choice(WORDS) for _ in range(4)), rng.choice(WORDS)]
                label = round(rng.uniform(0, 5), 2) if regression else rng.choice(["yes", "no"])
                writer.writerow(row + [label] if labelled else row)
    workdir, config, task, trainer = bert_fixtures.fine_tune(
        tmp_path, "table", max_seq_length=19, train_file=str(tmp_path / "train.csv"),
        dev_file=str(tmp_path / "dev.csv"), test_file=str(tmp_path / "test.csv"),
        text_a_column="text", text_b_column="other", label_column="score",
        label_list=["no", "yes"], regression=regression)
    main = "pearson_spearman_mean" if regression else "accuracy"
    assert config.best_metric == f"eval/{main}" and run_helpers.scalars(workdir, f"eval/{main}")
    from bert_jax.finetuning.base import write_best_predictions

    [path] = write_best_predictions(trainer, task)
    with open(path) as f:
        lines = f.read().splitlines()
    assert lines[0] == "id\tprediction" and len(lines) == 6
    values = [line.split("\t")[1] for line in lines[1:]]
    if regression:
        assert all(float(v) == float(v) for v in values)  # numbers, not NaN
    else:
        assert set(values) <= {"no", "yes"}
    config.data.update(dict(regression=False, label_list=[]))
    with pytest.raises(ValueError, match="needs data.label_list"):
        bert_main.make_task(config, str(tmp_path / "again"))
