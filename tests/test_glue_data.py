"""GLUE data: the original TSVs of every task, TFDS, the user's own tables, featurize, and
the GLUE server's submission files.

The fixtures copy the layout of the real GLUE distribution (download_glue_data.py), rows
included, in a few odd-sized files: CoLA's headerless train/dev, the test files without
labels, MNLI's 12/16/10-column files, QQP's malformed rows, unbalanced quotes (read as text
under csv.QUOTE_NONE).
"""
import dataclasses
import json
import logging
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from bert_jax.finetuning import glue_data, submission
from bert_jax.finetuning.glue_data import Example
from bert_jax.tokenization import SPECIAL_TOKENS, FullTokenizer

MAX_SEQ_LENGTH = 11


def tsv(*rows) -> str:
    return "".join("\t".join(row) + "\n" for row in rows)


def write(path, text: str) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return str(path)


# ============================================================================================
# The original GLUE files, one fixture directory per task
# ============================================================================================
MNLI_HEAD = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse",
             "sentence2_binary_parse", "sentence1_parse", "sentence2_parse", "sentence1",
             "sentence2"]
STSB_HEAD = ["index", "genre", "filename", "year", "old_index", "source1", "source2",
             "sentence1", "sentence2"]
MRPC_HEAD = ["#1 ID", "#2 ID", "#1 String", "#2 String"]


def mnli_row(index, premise, hypothesis, *labels):
    return [index, "31193", f"{index}n", "government", "( ( x ) )", "( y )", "(ROOT (S x))",
            "(ROOT (S y))", premise, hypothesis, *labels]


def stsb_row(index, a, b, *score):
    return [index, "main-captions", "MSRvid", "2012test", "0001", "none", "none", a, b, *score]


# task -> {file name: contents}
GLUE_FILES = {
    "cola": {
        "train.tsv": tsv(["gj04", "1", "", "Our friends won't buy this analysis."],
                         ["gj04", "0", "*", "They drank the pub."],
                         ["cj99", "1", "", 'He said "hi.']),
        "dev.tsv": tsv(["gj04", "0", "*", "The more we study verbs, the crazier they get get."]),
        "test.tsv": tsv(["index", "sentence"], ["0", "Bill whistled past the house."],
                        ["1", "She said \"no."], ["2", "The car honked."]),
    },
    "sst2": {
        "train.tsv": tsv(["sentence", "label"], ["hide new secretions ", "0"],
                         ["it 's a charming journey ", "1"], ["the greatest \" musicals ", "1"]),
        "dev.tsv": tsv(["sentence", "label"], ["unflinchingly bleak", "0"]),
        "test.tsv": tsv(["index", "sentence"], ["0", "uneasy mishmash"], ["1", "so nice"]),
    },
    "mrpc": {
        "train.tsv": tsv(["Quality", *MRPC_HEAD],
                         ["1", "702876", "702977", "Amrozi accused his brother .",
                          "Referring to him , Amrozi accused his brother ."],
                         ["0", "2108705", "2108831", "Yucaipa owned Dominick 's .",
                          "Yucaipa bought Dominick 's in 1995 ."],
                         ["1", "1330381", "1330521", "They had published an ad .",
                          "On June 10 , they published an ad ."]),
        "dev.tsv": tsv(["Quality", *MRPC_HEAD],
                       ["1", "1355540", "1355592", "He said \" foo .", "\" Foo , \" he said ."]),
        "test.tsv": tsv(["index", *MRPC_HEAD],
                        ["0", "1089874", "1089925", "PCCW 's chief .", "Current Chief ."],
                        ["1", "3019446", "3019327", "The world 's two .", "Some two ."]),
    },
    "qqp": {
        "train.tsv": tsv(["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
                         ["133273", "213221", "213222", "How is the life?", "How is life?",
                          "0"],
                         ["402555", "536040", "536041", "What is a"],    # malformed: a line
                         ["line break?", "What is?", "1"],               # break inside text
                         ["360472", "364011", "490273", "Why?", "Why not?", "1"],
                         ["150662", "155721", "7256", "A?", "B\tC?", "0"]),  # tab in text
        "dev.tsv": tsv(["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
                       ["201359", "303345", "303346", "Why are you?", "Why?", "1"]),
        "test.tsv": tsv(["id", "question1", "question2"], ["0", "Is it?", "Is it not?"],
                        ["1", "How?", "Who?"]),
    },
    "stsb": {
        "train.tsv": tsv(STSB_HEAD + ["score"],
                         stsb_row("0", "A plane is taking off.", "An air plane is taking off.",
                                  "5.000"),
                         stsb_row("1", "A man is playing a flute.", "A man plays a flute.",
                                  "3.800"),
                         stsb_row("2", "A man cuts.", "A woman dances.", "0.000")),
        "dev.tsv": tsv(STSB_HEAD + ["score"], stsb_row("0", "A man.", "A man.", "4.25")),
        "test.tsv": tsv(STSB_HEAD, stsb_row("0", "A girl.", "A boy."),
                        stsb_row("1", "A cat.", "A dog.")),
    },
    "mnli": {
        "train.tsv": tsv(MNLI_HEAD + ["label1", "gold_label"],
                         mnli_row("0", "Conceptually cream skimming.", "Product matters.",
                                  "neutral", "neutral"),
                         mnli_row("1", "you know during the season", "You lose the things.",
                                  "entailment", "entailment"),
                         mnli_row("2", "One of our number.", "A member will", "contradiction",
                                  "contradiction")),
        "dev_matched.tsv": tsv(
            MNLI_HEAD + ["label1", "label2", "label3", "label4", "label5", "gold_label"],
            mnli_row("0", "The new rights.", "Everyone loves.", "neutral", "entailment",
                     "neutral", "neutral", "neutral", "neutral")),
        "dev_mismatched.tsv": tsv(
            MNLI_HEAD + ["label1", "label2", "label3", "label4", "label5", "gold_label"],
            mnli_row("0", "Your contribution.", "Not helpful.", "contradiction",
                     "contradiction", "contradiction", "contradiction", "contradiction",
                     "contradiction"),
            mnli_row("1", "Second premise.", "Second hypothesis.", "entailment", "neutral",
                     "entailment", "entailment", "entailment", "entailment")),
        "test_matched.tsv": tsv(MNLI_HEAD, mnli_row("0", "Hierbas.", "Hierbas y ans."),
                                mnli_row("1", "The Gaelic.", "Gaelic.")),
        "test_mismatched.tsv": tsv(MNLI_HEAD, mnli_row("0", "What have you.", "I want.")),
    },
    "qnli": {
        "train.tsv": tsv(["index", "question", "sentence", "label"],
                         ["0", "When?", "In 1999.", "entailment"],
                         ["1", "Who?", "Nobody knows why.", "not_entailment"]),
        "dev.tsv": tsv(["index", "question", "sentence", "label"],
                       ["0", "What?", "This.", "not_entailment"]),
        "test.tsv": tsv(["index", "question", "sentence"], ["0", "Where?", "Here."]),
    },
    "rte": {
        "train.tsv": tsv(["index", "sentence1", "sentence2", "label"],
                         ["0", "No weapons found.", "Weapons found.", "not_entailment"],
                         ["1", "A place of sorrow.", "Pope buried.", "entailment"],
                         ["2", "Herceptin was.", "Herceptin can.", "entailment"]),
        "dev.tsv": tsv(["index", "sentence1", "sentence2", "label"],
                       ["0", "Dana Reeve.", "Reeve died.", "not_entailment"]),
        "test.tsv": tsv(["index", "sentence1", "sentence2"], ["0", "Mangla was.", "Mangla is."],
                        ["1", "Claims.", "Claim."], ["2", "Third.", "3."]),
    },
    "wnli": {
        "train.tsv": tsv(["index", "sentence1", "sentence2", "label"],
                         ["0", "I stuck a pin.", "The pin had a hole.", "1"],
                         ["1", "I stuck a pin.", "The carrot had a hole.", "0"]),
        "dev.tsv": tsv(["index", "sentence1", "sentence2", "label"],
                       ["0", "The drain is clogged.", "The hair is clogged.", "0"]),
        "test.tsv": tsv(["index", "sentence1", "sentence2"], ["0", "Maude.", "Maude did."]),
    },
    "ax": {
        "AX.tsv": tsv(["index", "sentence1", "sentence2"], ["0", "The cat sat.", "The cat did."],
                      ["1", "Cats sat.", "Cats did not."], ["2", "x", "y"]),
    },
}

E, N, C = 0, 1, 2  # MNLI ids: entailment, neutral, contradiction

# task -> split -> [(guid, text_a, text_b, label, index)]
EXPECTED = {
    "cola": {
        "train": [("train-0", "Our friends won't buy this analysis.", None, 1, None),
                  ("train-1", "They drank the pub.", None, 0, None),
                  ("train-2", 'He said "hi.', None, 1, None)],
        "dev": [("dev-0", "The more we study verbs, the crazier they get get.", None, 0, None)],
        "test": [("test-0", "Bill whistled past the house.", None, None, "0"),
                 ("test-1", 'She said "no.', None, None, "1"),
                 ("test-2", "The car honked.", None, None, "2")],
    },
    "sst2": {
        "train": [("train-0", "hide new secretions ", None, 0, None),
                  ("train-1", "it 's a charming journey ", None, 1, None),
                  ("train-2", 'the greatest " musicals ', None, 1, None)],
        "dev": [("dev-0", "unflinchingly bleak", None, 0, None)],
        "test": [("test-0", "uneasy mishmash", None, None, "0"),
                 ("test-1", "so nice", None, None, "1")],
    },
    "mrpc": {
        "train": [("train-0", "Amrozi accused his brother .",
                   "Referring to him , Amrozi accused his brother .", 1, None),
                  ("train-1", "Yucaipa owned Dominick 's .",
                   "Yucaipa bought Dominick 's in 1995 .", 0, None),
                  ("train-2", "They had published an ad .",
                   "On June 10 , they published an ad .", 1, None)],
        "dev": [("dev-0", 'He said " foo .', '" Foo , " he said .', 1, None)],
        "test": [("test-0", "PCCW 's chief .", "Current Chief .", None, "0"),
                 ("test-1", "The world 's two .", "Some two .", None, "1")],
    },
    "qqp": {
        "train": [("train-133273", "How is the life?", "How is life?", 0, "133273"),
                  ("train-360472", "Why?", "Why not?", 1, "360472")],
        "dev": [("dev-201359", "Why are you?", "Why?", 1, "201359")],
        "test": [("test-0", "Is it?", "Is it not?", None, "0"),
                 ("test-1", "How?", "Who?", None, "1")],
    },
    "stsb": {
        "train": [("train-0", "A plane is taking off.", "An air plane is taking off.", 5.0, "0"),
                  ("train-1", "A man is playing a flute.", "A man plays a flute.", 3.8, "1"),
                  ("train-2", "A man cuts.", "A woman dances.", 0.0, "2")],
        "dev": [("dev-0", "A man.", "A man.", 4.25, "0")],
        "test": [("test-0", "A girl.", "A boy.", None, "0"),
                 ("test-1", "A cat.", "A dog.", None, "1")],
    },
    "mnli": {
        "train": [("train-0", "Conceptually cream skimming.", "Product matters.", N, "0"),
                  ("train-1", "you know during the season", "You lose the things.", E, "1"),
                  ("train-2", "One of our number.", "A member will", C, "2")],
        "dev_matched": [("dev_matched-0", "The new rights.", "Everyone loves.", N, "0")],
        "dev_mismatched": [
            ("dev_mismatched-0", "Your contribution.", "Not helpful.", C, "0"),
            ("dev_mismatched-1", "Second premise.", "Second hypothesis.", E, "1")],
        "test_matched": [("test_matched-0", "Hierbas.", "Hierbas y ans.", None, "0"),
                         ("test_matched-1", "The Gaelic.", "Gaelic.", None, "1")],
        "test_mismatched": [("test_mismatched-0", "What have you.", "I want.", None, "0")],
    },
    "qnli": {
        "train": [("train-0", "When?", "In 1999.", 0, "0"),
                  ("train-1", "Who?", "Nobody knows why.", 1, "1")],
        "dev": [("dev-0", "What?", "This.", 1, "0")],
        "test": [("test-0", "Where?", "Here.", None, "0")],
    },
    "rte": {
        "train": [("train-0", "No weapons found.", "Weapons found.", 1, "0"),
                  ("train-1", "A place of sorrow.", "Pope buried.", 0, "1"),
                  ("train-2", "Herceptin was.", "Herceptin can.", 0, "2")],
        "dev": [("dev-0", "Dana Reeve.", "Reeve died.", 1, "0")],
        "test": [("test-0", "Mangla was.", "Mangla is.", None, "0"),
                 ("test-1", "Claims.", "Claim.", None, "1"),
                 ("test-2", "Third.", "3.", None, "2")],
    },
    "wnli": {
        "train": [("train-0", "I stuck a pin.", "The pin had a hole.", 1, "0"),
                  ("train-1", "I stuck a pin.", "The carrot had a hole.", 0, "1")],
        "dev": [("dev-0", "The drain is clogged.", "The hair is clogged.", 0, "0")],
        "test": [("test-0", "Maude.", "Maude did.", None, "0")],
    },
    "ax": {
        "test": [("test-0", "The cat sat.", "The cat did.", None, "0"),
                 ("test-1", "Cats sat.", "Cats did not.", None, "1"),
                 ("test-2", "x", "y", None, "2")],
    },
}


def glue_dir(root, task: str) -> str:
    """Writes the task's fixture files where download_glue_data.py puts them."""
    directory = os.path.join(str(root), glue_data.TASKS[task].glue_dir)
    for name, text in GLUE_FILES[task].items():
        write(os.path.join(directory, name), text)
    return directory


def as_tuples(examples):
    return [(e.guid, e.text_a, e.text_b, e.label, e.index) for e in examples]


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
# The user's own tables
# ============================================================================================
ROWS = [{"id": "7", "premise": "A cat, sat.", "hypothesis": 'It "sat', "label": "yes",
         "score": "4.5"},
        {"id": "8", "premise": "Dogs ran", "hypothesis": "No", "label": "no", "score": "0"},
        {"id": "9", "premise": "Birds", "hypothesis": "Fly", "label": "yes", "score": "2.25"}]


def write_table(tmp_path, name: str, rows=ROWS) -> str:
    path = tmp_path / name
    if name.endswith(".jsonl"):
        return write(path, "".join(json.dumps(row) + "\n" for row in rows))
    if name.endswith(".tsv"):
        return write(path, tsv(list(rows[0]), *[list(row.values()) for row in rows]))
    import csv
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(list(rows[0]))
        writer.writerows([list(row.values()) for row in rows])
    return str(path)


@pytest.mark.parametrize("name", ["mine.tsv", "mine.csv", "mine.jsonl"])
def test_read_table(tmp_path, name):
    path = write_table(tmp_path, name)
    examples = glue_data.read_table(path, "premise", "hypothesis", "label", ["no", "yes"])
    assert as_tuples(examples) == [
        (f"{name}-0", "A cat, sat.", 'It "sat', 1, None),
        (f"{name}-1", "Dogs ran", "No", 0, None),
        (f"{name}-2", "Birds", "Fly", 1, None)]
    scores = glue_data.read_table(path, "hypothesis", label_column="score", regression=True)
    assert [(e.text_a, e.text_b, e.label) for e in scores] == [
        ('It "sat', None, 4.5), ("No", None, 0.0), ("Fly", None, 2.25)]
    unlabeled = glue_data.read_table(path, "premise")
    assert [e.label for e in unlabeled] == [None] * 3


def test_read_table_csv_quoting_and_jsonl_values(tmp_path):
    path = write(tmp_path / "q.csv", 'text,label\n"two\nlines, and a comma",1\nplain,0\n')
    assert as_tuples(glue_data.read_table(path, "text", label_column="label",
                                          label_list=["0", "1"])) == [
        ("q.csv-0", "two\nlines, and a comma", None, 1, None), ("q.csv-1", "plain", None, 0, None)]
    # JSON numbers are compared with the label list as strings; regression takes numbers.
    path = write(tmp_path / "n.jsonl", '{"t": "a", "y": 1, "s": 2.5}\n\n{"t": "b", "y": 0, '
                                       '"s": 3}\n')
    assert [e.label for e in glue_data.read_table(path, "t", label_column="y",
                                                  label_list=[0, 1])] == [1, 0]
    assert [e.label for e in glue_data.read_table(path, "t", label_column="s",
                                                  regression=True)] == [2.5, 3.0]


def test_read_table_errors(tmp_path):
    tsv_path = write_table(tmp_path, "t.tsv")
    with pytest.raises(ValueError, match=r"t.tsv line 2: no column 'sentence' \(the header has "
                                         r"\['id', 'premise', .*\]\): fix text_b_column"):
        glue_data.read_table(tsv_path, "premise", "sentence")
    jsonl_path = write_table(tmp_path, "t.jsonl", ROWS[:1] + [{"premise": "x"}])
    with pytest.raises(ValueError, match=r"t.jsonl line 2: no column 'label' \(the object has "
                                         r"\['premise'\]\): fix label_column"):
        glue_data.read_table(jsonl_path, "premise", label_column="label", label_list=["yes"])
    with pytest.raises(ValueError, match=r"t.tsv line 3: label 'no' is not one of \['yes'\]: fix "
                                         "the value or add it to label_list"):
        glue_data.read_table(tsv_path, "premise", label_column="label", label_list=["yes"])
    with pytest.raises(ValueError, match=r"t.tsv line 2: regression label 'yes' is not a finite"):
        glue_data.read_table(tsv_path, "premise", label_column="label", regression=True)
    with pytest.raises(ValueError, match=r"label_column='label' needs label_list=\[...\]"):
        glue_data.read_table(tsv_path, "premise", label_column="label")
    with pytest.raises(ValueError, match="either label_list .* or regression=True, not both"):
        glue_data.read_table(tsv_path, "premise", label_column="score", label_list=["1"],
                             regression=True)
    for name in ("e.tsv", "e.csv", "e.jsonl"):
        with pytest.raises(ValueError, match=rf"data file .*{name} is empty"):
            glue_data.read_table(write(tmp_path / name, "\n"), "text")
    with pytest.raises(ValueError, match=r"h.csv has no examples, only a header"):
        glue_data.read_table(write(tmp_path / "h.csv", "text,label\n"), "text")
    with pytest.raises(ValueError, match=r"w.tsv line 3 has 1 fields, expected 2 as in its "
                                         "header"):
        glue_data.read_table(write(tmp_path / "w.tsv", "text\tlabel\na\t1\nb\n"), "text")
    with pytest.raises(ValueError, match=r"w.csv line 2 has 3 fields, expected 2"):
        glue_data.read_table(write(tmp_path / "w.csv", "text,label\na, b,1\n"), "text")
    with pytest.raises(ValueError, match=r"j.jsonl line 2 is not valid JSON"):
        glue_data.read_table(write(tmp_path / "j.jsonl", '{"t": "a"}\n{"t": \n'), "t")
    with pytest.raises(ValueError, match=r"j.jsonl line 1 is a JSON list, not an object"):
        glue_data.read_table(write(tmp_path / "j.jsonl", '["a"]\n'), "t")
    with pytest.raises(ValueError, match=r"j.jsonl line 1: column 't' is None, not text"):
        glue_data.read_table(write(tmp_path / "j.jsonl", '{"t": null}\n'), "t")
    with pytest.raises(ValueError, match=r"unknown table format '.xlsx': use .tsv or .csv"):
        glue_data.read_table(write(tmp_path / "x.xlsx", "a"), "t")
    with pytest.raises(FileNotFoundError, match=r"data file .*missing.tsv does not exist"):
        glue_data.read_table(str(tmp_path / "missing.tsv"), "t")


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
# featurize
# ============================================================================================
VOCAB = [*SPECIAL_TOKENS, "the", "cat", "sat", "on", "mat", "a", "dog", "ran", "."]


@pytest.fixture
def tokenizer(tmp_path):
    return FullTokenizer(write(tmp_path / "vocab.txt", "\n".join(VOCAB) + "\n"))


def ids(*tokens):
    return [VOCAB.index(t) for t in tokens]


def test_featurize_pairs_singles_and_labels(tokenizer):
    examples = [Example("a", "The cat sat on the mat .", "a dog ran", 2),  # 7 + 3 > 11 - 3
                Example("b", "the dog", None, None),
                Example("c", "a", "dog ran on the mat", 0)]
    arrays = glue_data.featurize(examples, tokenizer, MAX_SEQ_LENGTH)
    assert {k: (v.shape, v.dtype) for k, v in arrays.items()} == {
        "input_ids": ((3, 11), np.int32), "input_mask": ((3, 11), np.int32),
        "segment_ids": ((3, 11), np.int32), "label_ids": ((3,), np.int32),
        "example_weights": ((3,), np.float32)}
    # The longer side loses its tail until the pair fits in 11 - 3 = 8 pieces.
    assert arrays["input_ids"][0].tolist() == ids(
        "[CLS]", "the", "cat", "sat", "on", "the", "[SEP]", "a", "dog", "ran", "[SEP]")
    assert arrays["segment_ids"][0].tolist() == [0] * 7 + [1] * 4
    assert arrays["input_mask"][0].tolist() == [1] * 11
    assert arrays["input_ids"][1].tolist() == ids("[CLS]", "the", "dog", "[SEP]") + [0] * 7
    assert arrays["input_mask"][1].tolist() == [1] * 4 + [0] * 7
    assert arrays["segment_ids"][1].tolist() == [0] * 11
    assert arrays["input_ids"][2].tolist() == ids(
        "[CLS]", "a", "[SEP]", "dog", "ran", "on", "the", "mat", "[SEP]") + [0] * 2
    assert arrays["segment_ids"][2].tolist() == [0] * 3 + [1] * 6 + [0] * 2
    assert arrays["label_ids"].tolist() == [2, -1, 0]
    assert arrays["example_weights"].tolist() == [1.0] * 3


def test_featurize_regression_and_empty(tokenizer):
    examples = [Example("a", "the cat", "a cat", 3.5), Example("b", "a", "the", None)]
    arrays = glue_data.featurize(examples, tokenizer, 7)
    assert arrays["label_ids"].dtype == np.float32 and arrays["label_ids"].tolist() == [3.5, -1.0]
    assert arrays["input_ids"].shape == (2, 7)
    unlabeled = glue_data.featurize(examples[1:], tokenizer, 7, regression=True)
    assert unlabeled["label_ids"].dtype == np.float32
    empty = glue_data.featurize([], tokenizer, 7)
    assert empty["input_ids"].shape == (0, 7) and empty["label_ids"].shape == (0,)
    with pytest.raises(ValueError, match="example a has the float label 3.5 but regression=False"):
        glue_data.featurize(examples, tokenizer, 7, regression=False)


def test_featurize_reads_glue_end_to_end(tmp_path, tokenizer):
    examples = glue_data.read_glue_tsv("rte", "train", glue_dir(tmp_path, "rte"))
    arrays = glue_data.featurize(examples, tokenizer, 9)
    assert arrays["input_ids"].shape == (3, 9) and arrays["label_ids"].tolist() == [1, 0, 0]


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
