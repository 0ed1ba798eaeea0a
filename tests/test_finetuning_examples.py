"""The user's own tables (table_data.read_table: .tsv, .csv, .jsonl) and
examples.featurize (Examples -> BERT input arrays), at max_seq_length 11, 9 and 7."""
import json

import numpy as np
import pytest

from bert_jax.finetuning import examples as example_data
from bert_jax.finetuning import glue_data
from bert_jax.finetuning.examples import Example
from bert_jax.finetuning.table_data import read_table
from bert_jax.tokenization import SPECIAL_TOKENS, FullTokenizer
from glue_fixtures import as_tuples, glue_dir, tsv, write

MAX_SEQ_LENGTH = 11


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
    examples = read_table(path, "premise", "hypothesis", "label", ["no", "yes"])
    assert as_tuples(examples) == [
        (f"{name}-0", "A cat, sat.", 'It "sat', 1, None),
        (f"{name}-1", "Dogs ran", "No", 0, None),
        (f"{name}-2", "Birds", "Fly", 1, None)]
    scores = read_table(path, "hypothesis", label_column="score", regression=True)
    assert [(e.text_a, e.text_b, e.label) for e in scores] == [
        ('It "sat', None, 4.5), ("No", None, 0.0), ("Fly", None, 2.25)]
    unlabeled = read_table(path, "premise")
    assert [e.label for e in unlabeled] == [None] * 3


def test_read_table_csv_quoting_and_jsonl_values(tmp_path):
    path = write(tmp_path / "q.csv", 'text,label\n"two\nlines, and a comma",1\nplain,0\n')
    assert as_tuples(read_table(path, "text", label_column="label",
                                          label_list=["0", "1"])) == [
        ("q.csv-0", "two\nlines, and a comma", None, 1, None), ("q.csv-1", "plain", None, 0, None)]
    # JSON numbers are compared with the label list as strings; regression takes numbers.
    path = write(tmp_path / "n.jsonl", '{"t": "a", "y": 1, "s": 2.5}\n\n{"t": "b", "y": 0, '
                                       '"s": 3}\n')
    assert [e.label for e in read_table(path, "t", label_column="y",
                                                  label_list=[0, 1])] == [1, 0]
    assert [e.label for e in read_table(path, "t", label_column="s",
                                                  regression=True)] == [2.5, 3.0]


def test_read_table_errors(tmp_path):
    tsv_path = write_table(tmp_path, "t.tsv")
    with pytest.raises(ValueError, match=r"t.tsv line 2: no column 'sentence' \(the header has "
                                         r"\['id', 'premise', .*\]\): fix text_b_column"):
        read_table(tsv_path, "premise", "sentence")
    jsonl_path = write_table(tmp_path, "t.jsonl", ROWS[:1] + [{"premise": "x"}])
    with pytest.raises(ValueError, match=r"t.jsonl line 2: no column 'label' \(the object has "
                                         r"\['premise'\]\): fix label_column"):
        read_table(jsonl_path, "premise", label_column="label", label_list=["yes"])
    with pytest.raises(ValueError, match=r"t.tsv line 3: label 'no' is not one of \['yes'\]: fix "
                                         "the value or add it to label_list"):
        read_table(tsv_path, "premise", label_column="label", label_list=["yes"])
    with pytest.raises(ValueError, match=r"t.tsv line 2: regression label 'yes' is not a finite"):
        read_table(tsv_path, "premise", label_column="label", regression=True)
    with pytest.raises(ValueError, match=r"label_column='label' needs label_list=\[...\]"):
        read_table(tsv_path, "premise", label_column="label")
    with pytest.raises(ValueError, match="either label_list .* or regression=True, not both"):
        read_table(tsv_path, "premise", label_column="score", label_list=["1"],
                             regression=True)
    for name in ("e.tsv", "e.csv", "e.jsonl"):
        with pytest.raises(ValueError, match=rf"data file .*{name} is empty"):
            read_table(write(tmp_path / name, "\n"), "text")
    with pytest.raises(ValueError, match=r"h.csv has no examples, only a header"):
        read_table(write(tmp_path / "h.csv", "text,label\n"), "text")
    with pytest.raises(ValueError, match=r"w.tsv line 3 has 1 fields, expected 2 as in its "
                                         "header"):
        read_table(write(tmp_path / "w.tsv", "text\tlabel\na\t1\nb\n"), "text")
    with pytest.raises(ValueError, match=r"w.csv line 2 has 3 fields, expected 2"):
        read_table(write(tmp_path / "w.csv", "text,label\na, b,1\n"), "text")
    with pytest.raises(ValueError, match=r"j.jsonl line 2 is not valid JSON"):
        read_table(write(tmp_path / "j.jsonl", '{"t": "a"}\n{"t": \n'), "t")
    with pytest.raises(ValueError, match=r"j.jsonl line 1 is a JSON list, not an object"):
        read_table(write(tmp_path / "j.jsonl", '["a"]\n'), "t")
    with pytest.raises(ValueError, match=r"j.jsonl line 1: column 't' is None, not text"):
        read_table(write(tmp_path / "j.jsonl", '{"t": null}\n'), "t")
    with pytest.raises(ValueError, match=r"unknown table format '.xlsx': use .tsv or .csv"):
        read_table(write(tmp_path / "x.xlsx", "a"), "t")
    with pytest.raises(FileNotFoundError, match=r"data file .*missing.tsv does not exist"):
        read_table(str(tmp_path / "missing.tsv"), "t")


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
    arrays = example_data.featurize(examples, tokenizer, MAX_SEQ_LENGTH)
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
    arrays = example_data.featurize(examples, tokenizer, 7)
    assert arrays["label_ids"].dtype == np.float32 and arrays["label_ids"].tolist() == [3.5, -1.0]
    assert arrays["input_ids"].shape == (2, 7)
    unlabeled = example_data.featurize(examples[1:], tokenizer, 7, regression=True)
    assert unlabeled["label_ids"].dtype == np.float32
    empty = example_data.featurize([], tokenizer, 7)
    assert empty["input_ids"].shape == (0, 7) and empty["label_ids"].shape == (0,)
    with pytest.raises(ValueError, match="example a has the float label 3.5 but regression=False"):
        example_data.featurize(examples, tokenizer, 7, regression=False)


def test_featurize_reads_glue_end_to_end(tmp_path, tokenizer):
    examples = glue_data.read_glue_tsv("rte", "train", glue_dir(tmp_path, "rte"))
    arrays = example_data.featurize(examples, tokenizer, 9)
    assert arrays["input_ids"].shape == (3, 9) and arrays["label_ids"].tolist() == [1, 0, 0]
