"""GLUE data: the original TSVs of every task, TFDS, and the GLUE server's submission files.

The fixtures (tests/glue_fixtures.py) copy the layout of the real GLUE distribution.
"""
import dataclasses
import logging
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from bert_jax.finetuning import glue_data, submission
from bert_jax.finetuning.examples import Example
from glue_fixtures import (C, E, EXPECTED, GLUE_FILES, N, STSB_HEAD, as_tuples, glue_dir,
                           stsb_row, tsv, write)


def test_every_task_has_fixtures_for_every_split():
    assert set(GLUE_FILES) == set(EXPECTED) == set(glue_data.TASKS)
    for name, spec in glue_data.TASKS.items():
        assert set(EXPECTED[name]) == set(spec.splits) == set(spec.tsv)


@pytest.mark.parametrize("task", list(glue_data.TASKS))
def test_read_glue_tsv_every_split_of_every_task(tmp_path, task, caplog):
    directory = glue_dir(tmp_path, task)
    for split, expected in EXPECTED[task].items():
        # The task's directory (as run_classifier.py's --data_dir) or the GLUE root above it.
        assert as_tuples(glue_data.read_glue_tsv(task, split, directory)) == expected, split
        assert as_tuples(glue_data.read_glue_tsv(task, split, str(tmp_path))) == expected


def test_task_specs():
    spec = glue_data.get_task("MNLI")
    assert spec.dev_splits == ("dev_matched", "dev_mismatched")
    assert spec.test_splits == ("test_matched", "test_mismatched")
    assert glue_data.get_task("ax").splits == ("test",)
    assert glue_data.get_task("SST-2") is glue_data.TASKS["sst2"]
    assert glue_data.get_task("sts-b").regression and not glue_data.get_task("cola").regression
    assert glue_data.get_task("qqp").text_columns == ("question1", "question2")
    with pytest.raises(ValueError, match=r"unknown GLUE task 'squad': choose from \['cola'"):
        glue_data.get_task("squad")
    with pytest.raises(ValueError, match=r"mnli has no split 'dev': choose from \['train', "
                                         "'dev_matched'"):
        glue_data.read_glue_tsv("mnli", "dev", "/nonexistent-glue-dir")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.labels = None


def test_labels_follow_tfds_class_order():
    """TSV label values and TFDS class ids agree, so both readers give the same ids."""
    names = {"cola": ["unacceptable", "acceptable"], "sst2": ["negative", "positive"],
             "mrpc": ["not_equivalent", "equivalent"], "qqp": ["not_duplicate", "duplicate"],
             "qnli": ["entailment", "not_entailment"], "rte": ["entailment", "not_entailment"],
             "wnli": ["not_entailment", "entailment"],
             "mnli": ["entailment", "neutral", "contradiction"],
             "ax": ["entailment", "neutral", "contradiction"]}
    for task, spec in glue_data.TASKS.items():
        # The builder's code ships with tensorflow_datasets: its features are known offline.
        info = tfds.builder(f"glue/{task}", data_dir="/nonexistent-tfds-dir").info
        assert set(info.features) == {*spec.text_columns, "label", "idx"}, task
        if spec.regression:
            assert spec.labels is None and task == "stsb"
            continue
        assert list(spec.label_names) == names[task] == info.features["label"].names, task
    assert glue_data.TASKS["wnli"].labels == ("0", "1")  # WNLI's "1" is entailment
    assert glue_data.TASKS["mnli"].labels == ("entailment", "neutral", "contradiction")


def test_qqp_malformed_rows_are_counted_and_logged(tmp_path, caplog):
    directory = glue_dir(tmp_path, "qqp")
    with caplog.at_level(logging.WARNING, logger=glue_data.__name__):
        examples = glue_data.read_glue_tsv("qqp", "train", directory)
    assert len(examples) == 2
    (message,) = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
    assert "skipped 3 malformed rows" in message and "lines [3, 4, 6]" in message


def test_ax_alternative_file_name(tmp_path):
    write(tmp_path / "diagnostic" / "diagnostic.tsv", GLUE_FILES["ax"]["AX.tsv"])
    assert as_tuples(glue_data.read_glue_tsv("ax", "test", str(tmp_path))) == EXPECTED["ax"]["test"]


# ----------------------------------------------------------------------------- bad GLUE files


def test_glue_tsv_errors(tmp_path, caplog):
    d = str(tmp_path)
    rte_head = ["index", "sentence1", "sentence2", "label"]
    write(tmp_path / "train.tsv", tsv(rte_head, ["0", "a", "b", "entailment"],
                                      ["1", "a", "b", "maybe"]))
    with pytest.raises(ValueError, match=r"train.tsv line 3: label 'maybe' is not one of "
                                         r"\['entailment', 'not_entailment'\]: fix the value"):
        glue_data.read_glue_tsv("rte", "train", d)
    write(tmp_path / "train.tsv", tsv(rte_head, ["0", "a", "b", "entailment"], ["1", "a b"]))
    with pytest.raises(ValueError, match=r"train.tsv line 3 has 2 tab-separated fields, expected "
                                         r"4 \(GLUE rte train format\): remove stray tabs"):
        glue_data.read_glue_tsv("rte", "train", d)
    write(tmp_path / "train.tsv", tsv(["0", "a", "b", "entailment"]))  # no header
    with pytest.raises(ValueError, match=r"train.tsv line 1: header column 1 \(text_a\) is 'a', "
                                         "expected 'sentence1': this is not the train file"):
        glue_data.read_glue_tsv("rte", "train", d)
    write(tmp_path / "train.tsv", tsv(["index", "sentence1", "sentence2"], ["0", "a", "b"]))
    with pytest.raises(ValueError, match=r"header column 3 \(label\) is None, expected 'label'"):
        glue_data.read_glue_tsv("rte", "train", d)  # the test file passed as train
    write(tmp_path / "train.tsv", "")
    with pytest.raises(ValueError, match=r"GLUE rte train file .*train.tsv is empty"):
        glue_data.read_glue_tsv("rte", "train", d)
    write(tmp_path / "train.tsv", tsv(rte_head))
    with pytest.raises(ValueError, match="has no examples, only a header"):
        glue_data.read_glue_tsv("rte", "train", d)
    with pytest.raises(FileNotFoundError, match=r"GLUE rte dev file not found \(looked for "
                                                r".*dev.tsv, .*RTE/dev.tsv\): pass the task"):
        glue_data.read_glue_tsv("rte", "dev", d)
    write(tmp_path / "dev.tsv", tsv(["gj04", "1", "", "ok"], ["gj04", "2", "", "bad label"]))
    with pytest.raises(ValueError, match=r"dev.tsv line 2: label '2' is not one of \['0', '1'\]"):
        glue_data.read_glue_tsv("cola", "dev", d)
    write(tmp_path / "dev.tsv", tsv(["gj04", "1", "", "ok"], ["gj04", "1", "three fields"]))
    with pytest.raises(ValueError, match=r"dev.tsv line 2 has 3 tab-separated fields, expected 4"):
        glue_data.read_glue_tsv("cola", "dev", d)
    write(tmp_path / "dev.tsv", tsv(STSB_HEAD + ["score"], stsb_row("0", "a", "b", "high")))
    with pytest.raises(ValueError, match=r"dev.tsv line 2: regression label 'high' is not a "
                                         "finite number"):
        glue_data.read_glue_tsv("stsb", "dev", d)
    write(tmp_path / "dev.tsv", tsv(STSB_HEAD + ["score"], stsb_row("0", "a", "b", "nan")))
    with pytest.raises(ValueError, match=r"regression label 'nan' is not a finite number"):
        glue_data.read_glue_tsv("stsb", "dev", d)
    # A malformed row is fatal everywhere but QQP, and a bad QQP label is still fatal.
    write(tmp_path / "dev.tsv", tsv(["id", "qid1", "qid2", "question1", "question2",
                                     "is_duplicate"], ["1", "2", "3", "a", "b", "yes"]))
    with pytest.raises(ValueError, match=r"dev.tsv line 2: label 'yes' is not one of"):
        glue_data.read_glue_tsv("qqp", "dev", d)
    with open(tmp_path / "test.tsv", "wb") as f:
        f.write(b"index\tsentence\n0\tGr\xfc\xdfe\n")
    with pytest.raises(ValueError, match=r"test.tsv is not valid UTF-8 \(bad byte at offset 19, "
                                         r"line 2\)"):
        glue_data.read_glue_tsv("cola", "test", d)
    write(tmp_path / "test.tsv", "index\tsentence\n0\ta\rb\n")
    with pytest.raises(ValueError, match=r"test.tsv line 2: .*remove the stray carriage return"):
        glue_data.read_glue_tsv("cola", "test", d)
    # Blank lines are skipped, and counted.
    write(tmp_path / "test.tsv", "index\tsentence\n0\ta\n\n1\tb\n")
    with caplog.at_level(logging.WARNING, logger=glue_data.__name__):
        assert len(glue_data.read_glue_tsv("cola", "test", d)) == 2
    assert any("skipped 1 blank lines" in r.getMessage() for r in caplog.records)


# ============================================================================================
# TensorFlow Datasets (mocked: the glue builder's code ships with tfds, so no network)
# ============================================================================================


def mock_glue(rows_by_split: dict, requested: list):
    """tfds.load returns `rows_by_split[tfds split]`; each requested split is recorded."""
    def as_dataset(self, split, *args, **kwargs):
        requested.append(str(split))
        rows = rows_by_split[str(split)]
        return tf.data.Dataset.from_tensor_slices(
            {key: [row[key] for row in rows] for key in rows[0]})
    return tfds.testing.mock_data(as_dataset_fn=as_dataset)


def test_read_glue_tfds_mrpc(tmp_path):
    def rows(prefix, labels):  # idx out of order: the reader restores the file order
        return [{"sentence1": f"{prefix} a{i}", "sentence2": f"{prefix} b{i}", "label": label,
                 "idx": i} for i, label in reversed(list(enumerate(labels)))]
    requested = []
    with mock_glue({"train": rows("tr", [1, 0, 1]), "validation": rows("va", [0]),
                    "test": rows("te", [-1, -1])}, requested):
        train = glue_data.read_glue_tfds("mrpc", "train", str(tmp_path))
        dev = glue_data.read_glue_tfds("mrpc", "dev", str(tmp_path))
        test = glue_data.read_glue_tfds("MRPC", "test", str(tmp_path))
    assert requested == ["train", "validation", "test"]
    assert as_tuples(train) == [("train-0", "tr a0", "tr b0", 1, "0"),
                                ("train-1", "tr a1", "tr b1", 0, "1"),
                                ("train-2", "tr a2", "tr b2", 1, "2")]
    assert as_tuples(dev) == [("dev-0", "va a0", "va b0", 0, "0")]
    assert as_tuples(test) == [("test-0", "te a0", "te b0", None, "0"),
                               ("test-1", "te a1", "te b1", None, "1")]


def test_read_glue_tfds_mnli_matched_and_mismatched(tmp_path):
    def rows(prefix, labels):
        return [{"premise": f"{prefix} p{i}", "hypothesis": f"{prefix} h{i}", "label": label,
                 "idx": i} for i, label in enumerate(labels)]
    requested = []
    splits = {"validation_matched": rows("vm", [E, C]), "validation_mismatched": rows("vmm", [N]),
              "test_matched": rows("tm", [-1]), "test_mismatched": rows("tmm", [-1, -1, -1])}
    with mock_glue(splits, requested):
        read = {split: glue_data.read_glue_tfds("mnli", split, str(tmp_path))
                for split in ("dev_matched", "dev_mismatched", "test_matched", "test_mismatched")}
        assert as_tuples(glue_data.read_glue_tfds("mnli", "validation_mismatched",
                                                  str(tmp_path))) == [
            ("validation_mismatched-0", "vmm p0", "vmm h0", N, "0")]
    assert requested == list(splits) + ["validation_mismatched"]
    assert as_tuples(read["dev_matched"]) == [("dev_matched-0", "vm p0", "vm h0", E, "0"),
                                              ("dev_matched-1", "vm p1", "vm h1", C, "1")]
    assert as_tuples(read["dev_mismatched"]) == [("dev_mismatched-0", "vmm p0", "vmm h0", N, "0")]
    assert [e.label for e in read["test_mismatched"]] == [None] * 3
    assert read["test_matched"][0].guid == "test_matched-0"


@pytest.mark.parametrize("task", list(glue_data.TASKS))
def test_read_glue_tfds_generated_mock_every_task(tmp_path, task):
    """tfds's own random examples from the real builder features: the names line up."""
    spec = glue_data.TASKS[task]
    with tfds.testing.mock_data(num_examples=3, policy=tfds.testing.MockPolicy.USE_CODE):
        examples = glue_data.read_glue_tfds(task, spec.test_splits[0], str(tmp_path))
    assert len(examples) == 3
    for e in examples:
        assert isinstance(e.text_a, str) and (e.text_b is None) == (len(spec.text_columns) == 1)
        assert isinstance(e.label, float if spec.regression else int)


# ============================================================================================
# Submission files
# ============================================================================================
# task, test split -> (file name, predictions for the fixture's test examples, expected rows)
SUBMISSIONS = {
    ("cola", "test"): ("CoLA.tsv", [1, 0, 1], ["1", "0", "1"]),
    ("sst2", "test"): ("SST-2.tsv", [[0.1, 0.9], [2.0, -1.0]], ["1", "0"]),
    ("mrpc", "test"): ("MRPC.tsv", [0, 1], ["0", "1"]),
    ("qqp", "test"): ("QQP.tsv", [1, 1], ["1", "1"]),
    ("stsb", "test"): ("STS-B.tsv", [5.7, -0.2], ["5.000", "0.000"]),
    ("mnli", "test_matched"): ("MNLI-m.tsv", [E, C], ["entailment", "contradiction"]),
    ("mnli", "test_mismatched"): ("MNLI-mm.tsv", [N], ["neutral"]),
    ("qnli", "test"): ("QNLI.tsv", [1], ["not_entailment"]),
    ("rte", "test"): ("RTE.tsv", [0, 1, 0], ["entailment", "not_entailment", "entailment"]),
    ("wnli", "test"): ("WNLI.tsv", [1], ["1"]),
    ("ax", "test"): ("AX.tsv", [N, E, C], ["neutral", "entailment", "contradiction"]),
}


def test_submission_files(tmp_path):
    out = str(tmp_path / "submission")
    assert set(SUBMISSIONS) == set(submission.SUBMISSION_FILES)
    for (task, split), (name, predictions, expected) in SUBMISSIONS.items():
        test = glue_data.read_glue_tsv(task, split, glue_dir(tmp_path / "glue", task))
        path = submission.write_glue_submission(task, test, predictions, out)
        assert path == os.path.join(out, name)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        indices = [e.index for e in test]
        assert text == tsv(["index", "prediction"], *zip(indices, expected)), (task, split)
    assert sorted(os.listdir(out)) == sorted(
        ["CoLA.tsv", "SST-2.tsv", "MRPC.tsv", "QQP.tsv", "STS-B.tsv", "MNLI-m.tsv",
         "MNLI-mm.tsv", "QNLI.tsv", "RTE.tsv", "WNLI.tsv", "AX.tsv"])


def test_submission_keeps_the_test_index_and_takes_tfds_examples(tmp_path):
    test = [Example("test-12", "a", None, None, "12"), Example("test-3", "b", None, None, "3")]
    path = submission.write_glue_submission("sst2", test, np.array([0, 1]), str(tmp_path))
    with open(path) as f:
        assert f.read() == "index\tprediction\n12\t0\n3\t1\n"
    stsb = [Example("test-0", "a", "b", None, "0")]
    path = submission.write_glue_submission("stsb", stsb, np.array([[2.71828]]), str(tmp_path))
    with open(path) as f:
        assert f.read() == "index\tprediction\n0\t2.718\n"


def test_submission_errors(tmp_path):
    out = str(tmp_path)
    test = [Example("test-0", "a", "b", None, "0"), Example("test-1", "c", "d", None, "1")]
    with pytest.raises(ValueError, match="1 predictions for 2 GLUE rte test examples"):
        submission.write_glue_submission("rte", test, [0], out)
    with pytest.raises(ValueError, match=r"rte prediction 2 \(example 1\) is not a class id in "
                                         r"\[0, 2\)"):
        submission.write_glue_submission("rte", test, [0, 2], out)
    with pytest.raises(ValueError, match="have 3 scores per example, expected 2"):
        submission.write_glue_submission("rte", test, np.zeros((2, 3)), out)
    with pytest.raises(ValueError, match="must be class ids"):
        submission.write_glue_submission("rte", test, [0.5, 1.0], out)
    with pytest.raises(ValueError, match="example train-0 has no test-file index"):
        submission.write_glue_submission("cola", [Example("train-0", "a", None, 1)], [1], out)
    with pytest.raises(ValueError, match="repeat an index"):
        submission.write_glue_submission("rte", [test[0], test[0]], [0, 1], out)
    with pytest.raises(ValueError, match=r"guids do not say which: pass split="):
        submission.write_glue_submission("mnli", test, [0, 1], out)
    with pytest.raises(ValueError, match=r"'test' is not a test split of GLUE mnli"):
        submission.write_glue_submission("mnli", test, [0, 1], out, split="test")
    assert submission.write_glue_submission(
        "mnli", test, [0, 1], out, split="test_mismatched").endswith("MNLI-mm.tsv")
    with pytest.raises(ValueError, match="STS-B predictions contain NaN"):
        submission.write_glue_submission("stsb", test, [np.nan, 1.0], out)
