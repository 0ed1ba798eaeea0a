"""SQuAD fine-tuning on the engine: official JSON in, windows with doc stride, the official
exact match / F1 after n-best post-processing every epoch, the best epoch kept."""
import json
import random

import jax
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import bert_fixtures
import run_helpers
from bert_jax import main as bert_main
from bert_jax.finetuning import squad_metrics
from configs import bert_finetune
from transformer_jax.engine import checkpoint as ckpt

WORDS = [w for w in bert_fixtures.VOCAB[5:] if w.isalpha()]


def squad_json(num_paragraphs: int, seed: int, version_2: bool = False) -> dict:
    rng = random.Random(seed)
    articles = []
    for p in range(num_paragraphs):
        words = [rng.choice(WORDS) for _ in range(rng.randint(14, 22))]
        context = " ".join(words)
        qas = []
        for q in range(2):
            start = rng.randint(0, len(words) - 3)
            answer = " ".join(words[start:start + 2])
            offset = len(" ".join(words[:start])) + (1 if start else 0)
            impossible = version_2 and q == 1
            qa = {"id": f"p{p}q{q}", "question": " ".join(rng.choice(WORDS) for _ in range(3)),
                  "answers": [] if impossible else [{"text": answer, "answer_start": offset}]}
            if version_2:
                qa["is_impossible"] = impossible
            qas.append(qa)
        articles.append({"title": f"t{p}", "paragraphs": [{"context": context, "qas": qas}]})
    return {"version": "2.0" if version_2 else "1.1", "data": articles}


@pytest.fixture(scope="module", params=[False, True], ids=["v1.1", "v2.0"])
def squad_run(request, tmp_path_factory):
    version_2 = request.param
    root = tmp_path_factory.mktemp("squad")
    for name, count, seed in (("train.json", 6, 0), ("dev.json", 3, 1)):
        (root / name).write_text(json.dumps(squad_json(count, seed, version_2)))
    return bert_fixtures.fine_tune(
        root, "squad20" if version_2 else "squad11", max_seq_length=19, source="files",
        train_file=str(root / "train.json"), dev_file=str(root / "dev.json"), doc_stride=4,
        max_query_length=5)


def test_windows_epochs_and_official_metrics(squad_run):
    workdir, config, task, _ = squad_run
    # Contexts of 14-22 words in 19-token windows: several windows per question.
    assert len(task.dev_features) > len(task.dev_examples)
    per_epoch = task.steps_per_epoch(8)
    assert config.num_train_steps == 2 * per_epoch and config.best_metric == "eval/f1"
    f1 = run_helpers.scalars(workdir, "eval/f1")
    assert sorted(f1) == [per_epoch, 2 * per_epoch]
    assert all(0.0 <= v <= 100.0 for v in f1.values())
    if config.data.version_2_with_negative:
        for key in ("eval/HasAns_f1", "eval/NoAns_f1", "eval/best_f1"):
            assert run_helpers.scalars(workdir, key), key
    else:
        assert run_helpers.scalars(workdir, "eval/exact_match")
    best = ckpt.BestParams(workdir, "eval/f1", "max")
    assert len(best.manager.all_steps()) == 1
    best.close()


def test_predictions_cover_every_dev_question_and_score_officially(squad_run):
    workdir, config, task, trainer = squad_run
    with jax.set_mesh(trainer.mesh):
        params = ckpt.restore_params(workdir, trainer.abstract_state.params)
        answers = task.predictions(params, trainer.mesh)
        extra = task.evaluate_extra(params, 0, trainer.mesh)
    assert set(answers.predictions) == {e.qas_id for e in task.dev_examples}
    if config.data.version_2_with_negative:
        expected = squad_metrics.evaluate_v2(task.dev_json, answers.predictions,
                                             na_probs=answers.null_odds)
    else:
        expected = squad_metrics.evaluate_v1(task.dev_json, answers.predictions)
        contexts = {qa["id"]: p["context"] for a in task.dev_json for p in a["paragraphs"]
                    for qa in p["qas"]}
        for qas_id, text in answers.predictions.items():
            assert text in contexts[qas_id]  # a span of the context, never of the question
    assert extra == pytest.approx(expected)


def test_missing_files_are_named(tmp_path):
    config = bert_finetune.get_config("task=squad11")
    config.init_checkpoint = str(tmp_path)
    config.data.source = "files"
    with pytest.raises(ValueError, match=r"data.source='files' needs data.train_file"):
        bert_main.make_task(config, str(tmp_path / "w"))
    config.data.update(dict(train_file=str(tmp_path / "train.json"), source="squad"))
    with pytest.raises(ValueError, match="unknown data.source 'squad'; use 'files' or 'tfds'"):
        bert_main.make_task(config, str(tmp_path / "w"))


def tfds_records(squad: dict) -> list[dict]:
    """The records TFDS's squad/v2.0 builder yields for a SQuAD JSON: one per question."""
    def starts(answers):
        return [(a["text"], a["answer_start"]) for a in answers]
    records = []
    for article in squad["data"]:
        for paragraph in article["paragraphs"]:
            records += [bert_fixtures.tfds_record(
                qa["id"], paragraph["context"], qa["question"], starts(qa["answers"]),
                starts(qa.get("plausible_answers", [])), qa["is_impossible"], article["title"])
                for qa in paragraph["qas"]]
    return records


def test_tfds_source_builds_the_same_task_as_the_files(tmp_path):
    """squad/v2.0 from TFDS (mocked offline) gives the official JSON, the windows and the
    training targets that the same data gives from dev-v2.0.json / train-v2.0.json."""
    train, dev = squad_json(5, 2, True), squad_json(3, 3, True)
    for name, data in (("train.json", train), ("dev.json", dev)):
        (tmp_path / name).write_text(json.dumps(data))
    bert_fixtures.write_tf_checkpoint(str(tmp_path / "google"), bert_fixtures.random_weights())

    def build(source, **data):
        config = bert_finetune.get_config("task=squad20")
        config.init_checkpoint = str(tmp_path / "google")
        config.batch_size = 8
        config.data.update(dict(source=source, max_seq_length=19, doc_stride=4,
                                max_query_length=5, **data))
        return bert_main.make_task(config, str(tmp_path / f"work_{source}"))

    from_files = build("files", train_file=str(tmp_path / "train.json"),
                       dev_file=str(tmp_path / "dev.json"))
    records = {"train": tfds_records(train), "validation": tfds_records(dev)}

    def as_split(self, split, *args, **kwargs):
        features = self.info.features
        return tf.data.Dataset.from_generator(
            lambda: iter(records[str(split)]), output_signature=features.get_tensor_spec())
    with tfds.testing.mock_data(as_dataset_fn=as_split):
        from_tfds = build("tfds", data_dir=str(tmp_path / "tfds"))
    assert from_tfds.dev_json == [
        {"title": a["title"], "paragraphs": [
            {"context": p["context"], "qas": [dict(q, plausible_answers=[]) for q in p["qas"]]}
            for p in a["paragraphs"]]} for a in dev["data"]]
    assert from_tfds.dev_examples == from_files.dev_examples
    for key in from_files.train:
        np.testing.assert_array_equal(from_tfds.train[key], from_files.train[key], err_msg=key)


def test_best_epoch_predictions_are_written_like_run_squad(squad_run):
    from bert_jax.finetuning.base import write_best_predictions

    workdir, config, task, trainer = squad_run
    paths = write_best_predictions(trainer, task)
    names = {p.rsplit("/", 1)[-1] for p in paths}
    expected = {"predictions.json", "nbest_predictions.json"}
    assert names == expected | ({"null_odds.json"} if config.data.version_2_with_negative
                                else set())
    with open([p for p in paths if p.endswith("/predictions.json")][0]) as f:
        assert set(json.load(f)) == {e.qas_id for e in task.dev_examples}
