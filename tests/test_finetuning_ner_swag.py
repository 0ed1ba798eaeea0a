"""NER (CoNLL files) and multiple choice (SWAG CSVs) fine-tuning on the engine, from a
Google-layout TF checkpoint: epochs as steps, official metrics every epoch, best kept."""
import csv
import random

import jax
import numpy as np
import pytest

import bert_fixtures
import run_helpers
from bert_jax import main as bert_main
from bert_jax.finetuning import conlleval
from transformer_jax.engine import checkpoint as ckpt

WORDS = [w for w in bert_fixtures.VOCAB[5:] if w.isalpha()]
TAGS = ("O", "B-PER", "I-PER", "B-LOC")


def write_conll(path, sentences: int, seed: int) -> None:
    rng = random.Random(seed)
    lines = ["-DOCSTART- -X- -X- O", ""]
    for _ in range(sentences):
        for _ in range(rng.randint(3, 9)):
            lines.append(f"{rng.choice(WORDS)} NN B-NP {rng.choice(TAGS)}")
        lines.append("")
    path.write_text("\n".join(lines) + "\n")


def write_swag(path, rows: int, seed: int, labelled: bool = True) -> None:
    """SWAG's CSV layout; test.csv (labelled=False) has no label column."""
    rng = random.Random(seed)
    say = lambda n: " ".join(rng.choice(WORDS) for _ in range(n))  # noqa: E731
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["", "video-id", "fold-ind", "startphrase", "sent1", "sent2",
                         "gold-source", "ending0", "ending1", "ending2", "ending3"]
                        + ["label"] * labelled)
        for i in range(rows):
            writer.writerow([i, "v", str(1000 * seed + i), say(4), say(3), say(2), "gold",
                             say(2), say(3), say(2), say(1)] + [rng.randint(0, 3)] * labelled)


@pytest.fixture(scope="module")
def ner_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ner")
    write_conll(root / "train.txt", 23, 0)
    write_conll(root / "dev.txt", 7, 1)
    return bert_fixtures.fine_tune(root, "conll2003", max_seq_length=13, source="files",
                                   train_file=str(root / "train.txt"),
                                   dev_file=str(root / "dev.txt"), labels=list(TAGS))


@pytest.fixture(scope="module")
def swag_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("swag")
    write_swag(root / "train.csv", 19, 0)
    write_swag(root / "val.csv", 5, 1)
    write_swag(root / "test.csv", 3, 2, labelled=False)
    return bert_fixtures.fine_tune(root, "swag", max_seq_length=13,
                                   train_file=str(root / "train.csv"),
                                   dev_file=str(root / "val.csv"),
                                   test_file=str(root / "test.csv"))


def test_ner_scores_every_dev_word_with_conlleval(ner_run):
    workdir, config, task, trainer = ner_run
    assert config.best_metric == "eval/f1"
    f1 = run_helpers.scalars(workdir, "eval/f1")
    assert len(f1) == 2 and run_helpers.scalars(workdir, "eval/token_accuracy")
    with jax.set_mesh(trainer.mesh):
        params = ckpt.restore_params(workdir, trainer.abstract_state.params)
        tags = task.predicted_tags(params, trainer.mesh)
        extra = task.evaluate_extra(params, 0, trainer.mesh)
    assert [len(t) for t in tags] == [len(s.words) for s in task.dev_sentences]
    assert all(tag in TAGS for sentence in tags for tag in sentence)
    expected = conlleval.evaluate_sequences([s.tags for s in task.dev_sentences], tags)
    assert extra["f1"] == pytest.approx(expected["f1"])
    # Sentences up to 9 words in 13-token windows: only first pieces carry weight.
    assert task.dev["label_weights"].sum() == sum(len(s.words) for s in task.dev_sentences)


def test_swag_trains_a_softmax_over_four_endings(swag_run):
    workdir, config, task, trainer = swag_run
    assert task.train["input_ids"].shape == (19, 4, 13)
    assert config.best_metric == "eval/accuracy"
    accuracy = run_helpers.scalars(workdir, "eval/accuracy")
    assert len(accuracy) == 2
    with jax.set_mesh(trainer.mesh):
        params = ckpt.restore_params(workdir, trainer.abstract_state.params)
        logits = task.predict(params, task.dev, trainer.mesh)
    assert logits.shape == (5, 4)
    last = accuracy[max(accuracy)]
    np.testing.assert_allclose(last, np.mean(logits.argmax(-1) == task.dev["label_ids"]),
                               rtol=1e-6)


def test_unknown_family_is_named():
    with pytest.raises(ValueError, match="unknown data.family 'poetry'"):
        bert_main.finetune_task_class("poetry")


def test_ner_best_epoch_predictions_in_conlleval_format(ner_run):
    from bert_jax.finetuning.base import write_best_predictions

    _, _, task, trainer = ner_run
    [path] = write_best_predictions(trainer, task)
    with open(path) as f:
        result = conlleval.evaluate_text(f.read())
    assert result["tokens"] == sum(len(s.words) for s in task.dev_sentences)


def test_swag_best_epoch_predictions_for_dev_and_test(swag_run):
    from bert_jax.finetuning.base import write_best_predictions

    workdir, config, task, trainer = swag_run
    paths = write_best_predictions(trainer, task)
    assert [p.rsplit("/", 1)[-1] for p in paths] == ["dev_predictions.csv",
                                                      "test_predictions.csv"]
    best = ckpt.BestParams(workdir, config.best_metric, config.best_mode)
    with jax.set_mesh(trainer.mesh):
        dev_logits = task.predict(best.restore(trainer.abstract_state.params), task.dev,
                                  trainer.mesh)
    best.close()
    for path, ids in ((paths[0], [str(1000 + i) for i in range(5)]),
                      (paths[1], [str(2000 + i) for i in range(3)])):
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        assert [r["fold-ind"] for r in rows] == ids
        scores = np.asarray([[float(r[f"score{c}"]) for c in range(4)] for r in rows])
        assert [int(r["prediction"]) for r in rows] == list(scores.argmax(-1))
    np.testing.assert_allclose(scores.shape, (3, 4))
    with open(paths[0], newline="") as f:
        dev_scores = np.asarray([[float(r[f"score{c}"]) for c in range(4)]
                                 for r in csv.DictReader(f)])
    np.testing.assert_allclose(dev_scores, dev_logits, rtol=1e-5, atol=1e-6)
