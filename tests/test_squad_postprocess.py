"""SQuAD post-processing: logits -> answer text, as the original run_squad.py's
write_predictions (best valid span, max_answer_length, max-context windows, get_final_text,
SQuAD 2.0's null answer), with the sizes of tests/squad_helpers.py.
"""
import json
import os

import numpy as np
import pytest

from squad_helpers import (MAX_SEQ_LENGTH, featurize, long_context, make_tokenizer, qa,
                           squad_json)

from bert_jax.finetuning import squad_data, squad_postprocess


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return make_tokenizer(tmp_path_factory)


# ============================================================================================
# Post-processing
# ============================================================================================
def logits_for(features, spans, low=-5.0):
    """{(feature index, position): (start logit, end logit)} -> results; others `low`."""
    start = np.full((len(features), MAX_SEQ_LENGTH), low, np.float32)
    end = start.copy()
    for (f, position), (s, e) in spans.items():
        if s is not None:
            start[f, position] = s
        if e is not None:
            end[f, position] = e
    ids = np.asarray([f.unique_id for f in features])
    return squad_postprocess.results_from_arrays(ids, start, end)


def position_of(feature, word):
    return next(p for p, w in feature.token_to_orig_map.items()
                if w == word and feature.token_is_max_context[p])


def predict(examples, features, spans, **kwargs):
    return squad_postprocess.compute_predictions(
        examples, features, logits_for(features, spans), **kwargs)


HELLO = "He said: Hello, World! to me."


@pytest.fixture
def hello(tokenizer):
    examples = squad_data.parse_squad_json(
        squad_json([(HELLO, [qa("h", "What was said?")])]), False)
    features, _ = featurize(tokenizer, examples, False)
    assert len(features) == 1
    return examples, features


def test_best_valid_span_and_original_text(hello):
    examples, (feature,) = hello
    tokens = feature.tokens
    hello_at, world_at = tokens.index("hello"), tokens.index("world")
    out = predict(examples, [feature], {(0, hello_at): (3.0, None), (0, world_at): (None, 2.0)})
    assert out.predictions == {"h": "Hello, World"}  # casing and comma from the original
    nbest = out.nbest["h"]
    assert nbest[0]["text"] == "Hello, World"
    assert nbest[0]["start_logit"] == 3.0 and nbest[0]["end_logit"] == 2.0
    assert abs(sum(e["probability"] for e in nbest) - 1) < 1e-6
    assert [e["probability"] for e in nbest] == sorted(
        [e["probability"] for e in nbest], reverse=True)
    assert len({e["text"] for e in nbest}) == len(nbest)
    assert out.null_odds is None
    # End on "!": the punctuation attached to the original word comes back too.
    bang = tokens.index("!")
    out = predict(examples, [feature], {(0, hello_at): (3.0, None), (0, bang): (None, 2.0)})
    assert out.predictions["h"] == "Hello, World!"


def test_ignores_question_and_invalid_spans(hello):
    examples, (feature,) = hello
    tokens = feature.tokens
    said_in_question = tokens.index("said")  # the question "what was said ?"
    assert feature.token_to_orig_map.get(said_in_question) is None
    out = predict(examples, [feature], {
        (0, 0): (9.0, 9.0),                           # [CLS]: the null answer, not in v1.1
        (0, said_in_question): (8.0, 8.0),            # in the question
        (0, len(tokens) - 1): (7.0, 7.0),             # the final [SEP]
        (0, tokens.index("me")): (6.0, None),
        (0, tokens.index("he")): (None, 6.0),         # "me" .. "he" ends before it starts
        (0, tokens.index(".")): (None, 1.0),
    }, n_best_size=6)
    assert out.predictions["h"] == "me."


def test_max_answer_length(hello):
    examples, (feature,) = hello
    tokens = feature.tokens
    he, me = tokens.index("he", 5), tokens.index("me")
    spans = {(0, he): (5.0, None), (0, me): (None, 5.0), (0, tokens.index("world")): (None, 1.0)}
    long_span = predict(examples, [feature], spans).predictions["h"]
    assert long_span == "He said: Hello, World! to me"  # the word "me." without its "."
    short = predict(examples, [feature], spans, max_answer_length=me - he).predictions["h"]
    assert short == "He said: Hello, World"


def test_uses_max_context_window(tokenizer):
    examples = squad_data.parse_squad_json(
        squad_json([(long_context(), [qa("q", "what is it ?")])]), False)
    features, _ = featurize(tokenizer, examples, False)
    word = 13  # max context in window 3 (test_stride_windows); also in windows 2 and 4
    spans = {}
    for f, feature in enumerate(features):
        for p, w in feature.token_to_orig_map.items():
            if w == word:
                best = feature.token_is_max_context[p]
                spans[(f, p)] = (1.0, 1.0) if best else (4.0, 4.0)
    other = next(f for f, feature in enumerate(features)  # a lower valid span elsewhere
                 if any(feature.token_to_orig_map[p] == 17 and is_max
                        for p, is_max in feature.token_is_max_context.items()))
    spans[(other, position_of(features[other], 17))] = (0.5, 0.5)
    out = predict(examples, features, spans)
    assert out.predictions["q"] == "w13"
    assert out.nbest["q"][0]["start_logit"] == 1.0  # from window 3, not the 4.0 ones
    assert out.nbest["q"][1]["text"] == "w17"


def test_get_final_text():
    final = squad_postprocess.get_final_text
    assert final("hello , world", "Hello, World!", True) == "Hello, World"
    assert final("world !", "Hello, World!", True) == "World!"
    assert final("cafe", "Café", True) == "Café"
    assert final("cafe", "Café", False, strip_accents=True) == "Café"
    assert final("Hello", "Hello,", False) == "Hello"
    assert final("paris", "Lyon", True) == "Lyon"  # no alignment: the original words


def test_v2_null_answer_and_files(tokenizer, tmp_path):
    examples = squad_data.parse_squad_json(
        squad_json([(HELLO, [qa("h", "What was said?")])]), False)
    features, _ = featurize(tokenizer, examples, False)
    hello_at = features[0].tokens.index("hello")
    spans = {(0, 0): (2.0, 2.0), (0, hello_at): (1.0, 1.5)}  # null 4.0, best span 2.5
    results = logits_for(features, spans)
    out = squad_postprocess.write_predictions(
        examples, features, results, str(tmp_path / "out"), version_2_with_negative=True,
        null_score_diff_threshold=1.0)
    assert out.predictions == {"h": ""}
    assert out.null_odds == {"h": pytest.approx(1.5)}
    texts = [e["text"] for e in out.nbest["h"]]
    assert texts[0] == "" and "Hello" in texts and texts.count("") == 1
    files = sorted(os.listdir(tmp_path / "out"))
    assert files == ["nbest_predictions.json", "null_odds.json", "predictions.json"]
    with open(tmp_path / "out" / "null_odds.json") as f:
        assert json.load(f) == {"h": pytest.approx(1.5)}
    with open(tmp_path / "out" / "predictions.json") as f:
        assert json.load(f) == {"h": ""}
    # Below the threshold the best non-null text wins.
    out = squad_postprocess.compute_predictions(
        examples, features, results, version_2_with_negative=True,
        null_score_diff_threshold=2.0)
    assert out.predictions == {"h": "Hello"}
    # v1.1 files: no null_odds.json.
    squad_postprocess.write_predictions(examples, features, results, str(tmp_path / "v1"))
    assert sorted(os.listdir(tmp_path / "v1")) == ["nbest_predictions.json",
                                                   "predictions.json"]


def test_v2_minimum_null_over_windows(tokenizer):
    examples = squad_data.parse_squad_json(
        squad_json([(long_context(), [qa("q", "what is it ?")])]), False)
    features, _ = featurize(tokenizer, examples, False)
    spans = {(f, 0): (3.0, 3.0) for f in range(len(features))}
    spans[(4, 0)] = (0.5, 0.25)  # the minimum null score: 0.75
    spans[(0, position_of(features[0], 1))] = (0.5, 0.5)
    out = predict(examples, features, spans, version_2_with_negative=True)
    assert out.null_odds["q"] == pytest.approx(0.75 - 1.0)
    assert out.predictions["q"] == "w1"
    null = next(e for e in out.nbest["q"] if e["text"] == "")
    assert (null["start_logit"], null["end_logit"]) == (0.5, 0.25)


def test_results_checks(hello):
    examples, features = hello
    ids = np.asarray([features[0].unique_id, 0])
    logits = np.zeros((2, MAX_SEQ_LENGTH), np.float32)
    results = squad_postprocess.results_from_arrays(ids, logits, logits, mask=[1, 0])
    assert [r.unique_id for r in results] == [features[0].unique_id]
    with pytest.raises(ValueError, match="match no feature"):
        squad_postprocess.compute_predictions(
            examples, features, squad_postprocess.results_from_arrays(ids, logits, logits))
    with pytest.raises(ValueError, match="have no result"):
        squad_postprocess.compute_predictions(examples, features, [])
    with pytest.raises(ValueError, match="shapes differ"):
        squad_postprocess.results_from_arrays(ids, logits, logits[:1])
