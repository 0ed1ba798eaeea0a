"""SQuAD data: JSON/TFDS reading, answer spans, doc-stride windows (the original
run_squad.py's rules).

Sizes are small and odd (tests/squad_helpers.py): max_seq_length 17, doc_stride 3,
max_query_length 5, a 37-word context.
"""
import logging

import numpy as np
import pytest

from bert_fixtures import mock_squad, tfds_record
from squad_helpers import (BORN, DOC_STRIDE, LONG_WORDS, MAX_QUERY_LENGTH, MAX_SEQ_LENGTH, at,
                           featurize, long_example, make_tokenizer, qa, squad_json, write_json)

from bert_jax.finetuning import squad_data


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return make_tokenizer(tmp_path_factory)


# ============================================================================================
# Reading
# ============================================================================================
def test_read_v11_train_and_eval(tmp_path):
    other = "The cat sat on the mat."
    data = squad_json([
        (BORN, [qa("q1", "Who was born?", [at(BORN, "He")]),
                qa("q2", "Where?", [at(BORN, "Paris, France")])]),
        (other, [qa("q3", "What sat?", [at(other, "cat"), at(other, "The cat")])]),
    ], version="1.1")
    path = write_json(tmp_path, data)
    train = squad_data.read_squad_examples(path, is_training=True)
    assert [e.qas_id for e in train] == ["q1", "q2", "q3"]
    assert train[0].doc_tokens == ("He", "was", "born", "in", "Paris,", "France", "(1895).")
    assert train[0].doc_tokens is train[1].doc_tokens  # one paragraph, one tuple
    assert (train[0].start_position, train[0].end_position) == (0, 0)
    assert (train[1].start_position, train[1].end_position) == (4, 5)
    assert train[1].orig_answer_text == "Paris, France"
    assert train[2].orig_answer_text == "cat"  # the first of several answers
    assert not any(e.is_impossible for e in train)

    dev = squad_data.read_squad_examples(path, is_training=False)
    assert dev[2].answer_texts == ("cat", "The cat")
    assert dev[2].start_position is None and dev[2].orig_answer_text is None


def test_read_v20_impossible_and_plausible(tmp_path):
    data = squad_json([(BORN, [
        qa("yes", "Where was he born?", [at(BORN, "Paris")], is_impossible=False),
        qa("no", "Where did he die?", [], is_impossible=True,
           plausible_answers=[{"text": "France", "answer_start": BORN.index("France")}]),
    ])])
    path = write_json(tmp_path, data)
    train = squad_data.read_squad_examples(path, is_training=True)
    assert train[0].is_impossible is False and train[0].start_position == 4
    impossible = train[1]
    assert impossible.is_impossible
    assert (impossible.orig_answer_text, impossible.start_position,
            impossible.end_position) == ("", -1, -1)
    assert impossible.plausible_answer_texts == ("France",)
    assert impossible.answer_texts == ()
    # An unanswerable question that is not marked so cannot be trained on.
    data["data"][0]["paragraphs"][0]["qas"][1]["is_impossible"] = False
    with pytest.raises(ValueError, match="'no' has no answer"):
        squad_data.read_squad_examples(write_json(tmp_path, data), is_training=True)


@pytest.mark.parametrize("answer, occurrence, words", [
    ("Paris", 0, (4, 4)),            # the word is "Paris," (punctuation attached)
    ("Paris, France", 0, (4, 5)),    # across words, punctuation inside
    ("rance", 0, (5, 5)),            # offset in the middle of a word
    ("1895", 0, (6, 6)),             # inside "(1895)."
    ("born in Paris", 0, (2, 4)),
    ("(1895).", 0, (6, 6)),
])
def test_answer_word_span(answer, occurrence, words):
    examples = squad_data.parse_squad_json(
        squad_json([(BORN, [qa("q", "?", [at(BORN, answer, occurrence)])])]), True)
    e = examples[0]
    assert (e.start_position, e.end_position) == words
    assert answer in " ".join(e.doc_tokens[e.start_position:e.end_position + 1])


def test_answer_span_whitespace_in_context_and_answer():
    context = "a  b\u202fc\td\n\ne "  # runs of separators, U+202F, trailing space
    words, offsets = squad_data.split_context(context)
    assert words == ["a", "b", "c", "d", "e"]
    assert len(offsets) == len(context) and offsets[1] == 0 and offsets[-1] == 4
    examples = squad_data.parse_squad_json(
        squad_json([(context, [qa("q", "?", [("c\td", context.index("c"))])])]), True)
    assert (examples[0].start_position, examples[0].end_position) == (2, 3)


def test_mismatched_span_raises_or_skips(tmp_path, caplog):
    data = squad_json([(BORN, [
        qa("good", "?", [at(BORN, "Paris")]),
        qa("shifted", "?", [("Paris", BORN.index("Paris") + 8)]),   # lands on "France"
        qa("outside", "?", [("France", len(BORN) - 2)]),            # runs past the end
    ])])
    path = write_json(tmp_path, data)
    with pytest.raises(ValueError) as error:
        squad_data.read_squad_examples(path, is_training=True)
    message = str(error.value)
    assert "\n" not in message
    assert "does not match its context" in message and "'shifted'" in message
    assert "on_mismatch='skip'" in message and path in message
    with caplog.at_level(logging.WARNING):
        kept = squad_data.read_squad_examples(path, is_training=True, on_mismatch="skip")
    assert [e.qas_id for e in kept] == ["good"]
    assert "skipped 2 training questions" in caplog.text
    # Eval reading never looks at offsets.
    assert len(squad_data.read_squad_examples(path, is_training=False)) == 3
    with pytest.raises(ValueError, match="on_mismatch='drop'"):
        squad_data.read_squad_examples(path, is_training=True, on_mismatch="drop")


def test_read_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": [', encoding="utf-8")
    with pytest.raises(ValueError, match="is not valid JSON"):
        squad_data.read_squad_examples(str(bad), True)
    with pytest.raises(ValueError, match="'data' list"):
        squad_data.read_squad_examples(write_json(tmp_path, {"version": "1.1"}), True)
    with pytest.raises(FileNotFoundError, match="SQuAD file"):
        squad_data.read_squad_examples(str(tmp_path / "missing.json"), True)


def test_tfds_v20_with_mock_data(tmp_path):
    other = "The cat sat on the mat."
    records = [
        tfds_record("a", BORN, "Where?", [at(BORN, "Paris")], is_impossible=False),
        tfds_record("b", BORN, "When did he die?", [], [at(BORN, "1895")], True),
        tfds_record("c", other, "What sat?", [at(other, "cat")], is_impossible=False),
    ]
    with mock_squad(records):
        train = squad_data.tfds_squad_examples("squad/v2.0", "train", True,
                                               data_dir=str(tmp_path))
        dev = squad_data.tfds_squad_examples("squad/v2.0", "validation", False,
                                             data_dir=str(tmp_path))
    assert [e.qas_id for e in train] == ["a", "b", "c"]
    assert train[0].doc_tokens is train[1].doc_tokens
    assert (train[0].start_position, train[0].orig_answer_text) == (4, "Paris")
    assert train[1].is_impossible and train[1].start_position == -1
    assert train[1].plausible_answer_texts == ("1895",)
    assert train[2].doc_tokens == tuple(other.split())
    assert dev[2].answer_texts == ("cat",) and dev[2].start_position is None
    bad = [tfds_record("x", BORN, "?", [("Paris", 0)], is_impossible=False)]
    with mock_squad(bad), pytest.raises(ValueError, match="does not match its context.*'x'"):
        squad_data.tfds_squad_examples("squad/v2.0", "train", True, data_dir=str(tmp_path))


def test_tfds_v11_with_mock_data(tmp_path):
    records = [tfds_record("a", BORN, "Who?", [at(BORN, "He")])]
    with mock_squad(records):
        (example,) = squad_data.tfds_squad_examples("squad/v1.1", "train", True,
                                                    data_dir=str(tmp_path))
    assert (example.start_position, example.end_position, example.is_impossible) == (0, 0, False)


# ============================================================================================
# Featurizing
# ============================================================================================
def test_stride_windows(tokenizer):
    example = long_example("w20 w21")
    features, arrays = featurize(tokenizer, [example], is_training=True)
    query = ["what", "is", "it", "?"]
    max_doc = MAX_SEQ_LENGTH - len(query) - 3  # 10 context pieces per window
    starts = list(range(0, LONG_WORDS - max_doc + 1, DOC_STRIDE))  # 0, 3, ..., 27
    assert starts[-1] + max_doc == LONG_WORDS
    assert len(features) == len(starts) == 10
    owners = {}
    for index, (feature, start) in enumerate(zip(features, starts)):
        assert feature.doc_span_index == index and feature.example_index == 0
        assert feature.unique_id == squad_data.FIRST_UNIQUE_ID + index
        assert len(feature.tokens) <= MAX_SEQ_LENGTH
        assert feature.tokens == ["[CLS]", *query, "[SEP]",
                                  *[f"w{i}" for i in range(start, start + max_doc)], "[SEP]"]
        assert sorted(feature.token_to_orig_map) == list(range(6, 6 + max_doc))
        assert all(feature.token_to_orig_map[6 + k] == start + k for k in range(max_doc))
        for position, is_max in feature.token_is_max_context.items():
            if is_max:
                word = feature.token_to_orig_map[position]
                assert word not in owners
                owners[word] = index
    assert sorted(owners) == list(range(LONG_WORDS))  # exactly one window per word
    # Word 13 is in windows 2..4 (starts 6, 9, 12): min(left, right context) = 2, 4, 1.
    # Word 12 is in windows 1..4: 0, 3, 3, 0; the first of the tied windows wins.
    assert owners[13] == 3 and owners[12] == 2
    assert owners[0] == 0 and owners[LONG_WORDS - 1] == 9
    # Consecutive windows overlap by max_doc - stride pieces.
    for a, b in zip(features, features[1:]):
        assert a.tokens[6 + DOC_STRIDE:-1] == b.tokens[6:6 + max_doc - DOC_STRIDE]
    assert arrays["input_ids"].shape == (10, MAX_SEQ_LENGTH)
    for key in ("input_ids", "input_mask", "segment_ids", "start_positions", "end_positions",
                "example_index", "unique_id"):
        assert arrays[key].dtype == np.int32 and len(arrays[key]) == 10


def test_start_end_positions_per_window(tokenizer):
    example = long_example("w20 w21")
    features, arrays = featurize(tokenizer, [example], is_training=True)
    inside = 0
    for feature, start, end in zip(features, arrays["start_positions"],
                                   arrays["end_positions"]):
        words = set(feature.token_to_orig_map.values())
        if {20, 21} <= words:
            inside += 1
            assert feature.tokens[start:end + 1] == ["w20", "w21"]
            assert feature.token_to_orig_map[start] == 20
        else:
            assert (start, end) == (0, 0)
            assert (feature.start_position, feature.end_position) == (0, 0)
    assert inside == 3  # windows starting at 12, 15, 18

    impossible = long_example(impossible=True, qid="none")
    features, arrays = featurize(tokenizer, [impossible], is_training=True)
    assert not arrays["start_positions"].any() and not arrays["end_positions"].any()
    assert all(f.is_impossible for f in features)

    features, arrays = featurize(tokenizer, [example], is_training=False)
    assert all(f.start_position is None for f in features)
    assert not arrays["start_positions"].any()


def test_padding_and_segments(tokenizer):
    short = squad_data.parse_squad_json(
        squad_json([("The cat sat.", [qa("q", "Who sat?", [("cat", 4)])])]), True)
    features, arrays = featurize(tokenizer, short, is_training=True)
    (feature,) = features
    assert feature.tokens == ["[CLS]", "who", "sat", "?", "[SEP]", "the", "cat", "sat", ".",
                              "[SEP]"]
    n = len(feature.tokens)
    np.testing.assert_array_equal(arrays["input_ids"][0],
                                  tokenizer.convert_tokens_to_ids(feature.tokens)
                                  + [0] * (MAX_SEQ_LENGTH - n))
    np.testing.assert_array_equal(arrays["input_mask"][0], [1] * n + [0] * (MAX_SEQ_LENGTH - n))
    np.testing.assert_array_equal(arrays["segment_ids"][0],
                                  [0] * 5 + [1] * 5 + [0] * (MAX_SEQ_LENGTH - n))
    assert (feature.start_position, feature.end_position) == (6, 6)


def test_question_truncated(tokenizer):
    example = long_example("w3", question="who what where when is it ?")
    features, _ = featurize(tokenizer, [example], is_training=True)
    assert features[0].tokens[:MAX_QUERY_LENGTH + 2] == [
        "[CLS]", "who", "what", "where", "when", "is", "[SEP]"]
    assert all(len(f.tokens) == MAX_SEQ_LENGTH for f in features[:-1])


def test_improve_answer_span(tokenizer):
    # "(1895)." is one word of four pieces; the answer "1895" is only the second.
    example = squad_data.parse_squad_json(
        squad_json([(BORN, [qa("q", "When?", [at(BORN, "1895")])])]), True)[0]
    assert example.doc_tokens[example.start_position] == "(1895)."
    (feature,), _ = featurize(tokenizer, [example], is_training=True)
    assert feature.tokens[feature.start_position:feature.end_position + 1] == ["1895"]
    # Word pieces: "unwanted," -> un ##want ##ed , and the answer is "unwanted".
    pieces = ["he", "un", "##want", "##ed", ",", "me"]
    assert squad_data._improve_answer_span(pieces, 1, 4, tokenizer, "unwanted") == (1, 3)
    # No sub-span matches: the naive span is kept.
    assert squad_data._improve_answer_span(pieces, 1, 4, tokenizer, "cat") == (1, 4)


def test_featurize_errors(tokenizer):
    with pytest.raises(ValueError, match="leaves no room"):
        featurize(tokenizer, [], True, max_seq_length=8)
    with pytest.raises(ValueError, match="doc_stride"):
        featurize(tokenizer, [], True, doc_stride=0)
    features, arrays = featurize(tokenizer, [], True)
    assert features == [] and arrays["input_ids"].shape == (0, MAX_SEQ_LENGTH)
