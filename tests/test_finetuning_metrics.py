"""Fine-tuning metrics against numbers worked out by hand: GLUE/SWAG, SQuAD v1.1/v2.0, conlleval."""
import logging
import math

import numpy as np
import pytest

from bert_jax.finetuning import conlleval, metrics, squad_metrics

# ---------------------------------------------------------------- GLUE and SWAG

# 7 binary examples: TP at 0, 3, 6; FP at 1; FN at 4; TN at 2, 5.
PRED7 = np.array([1, 1, 0, 1, 0, 0, 1])
GOLD7 = np.array([1, 0, 0, 1, 1, 0, 1])


def test_accuracy():
    assert metrics.accuracy(np.array([0, 1, 1, 0, 1]), np.array([0, 1, 0, 0, 0])) == {
        "accuracy": pytest.approx(3 / 5)}


def test_accuracy_and_f1_of_the_positive_class():
    # precision = TP/(TP+FP) = 3/4, recall = TP/(TP+FN) = 3/4, F1 = 3/4; accuracy 5/7.
    out = metrics.accuracy_and_f1(PRED7, GOLD7)
    assert out == pytest.approx({"accuracy": 5 / 7, "f1": 0.75,
                                 "accuracy_f1_mean": (5 / 7 + 0.75) / 2})
    # F1 is of class 1: swapping the classes changes it (TP 2, FP 1, FN 1 -> 2/3).
    assert metrics.accuracy_and_f1(1 - PRED7, 1 - GOLD7)["f1"] == pytest.approx(2 / 3)


def test_matthews_binary_from_the_confusion_matrix():
    tp, tn, fp, fn = 3, 2, 1, 1
    mcc = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert mcc == pytest.approx(5 / 12)
    assert metrics.matthews(PRED7, GOLD7) == {"mcc": pytest.approx(mcc)}
    # A constant prediction: sklearn's convention, 0.
    assert metrics.matthews(np.ones(5, int), np.array([0, 1, 1, 0, 1]))["mcc"] == 0.0


def test_matthews_multiclass_for_the_diagnostic_set():
    # Gorodkin's R_K: (c*s - sum_k p_k t_k) / sqrt((s^2 - sum p_k^2) (s^2 - sum t_k^2)),
    # c correct = 4, s = 5, true counts t = (2, 2, 1), predicted counts p = (2, 1, 2):
    # (20 - 8) / sqrt((25 - 9) (25 - 9)) = 12 / 16.
    out = metrics.GLUE_TASKS["ax"].compute(np.array([0, 2, 2, 0, 1]), np.array([0, 1, 2, 0, 1]))
    assert out == {"mcc": pytest.approx(0.75)}


def test_pearson_and_spearman_by_hand():
    pred = np.array([0.5, 1.0, 4.0, 2.0, 5.0])
    gold = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    # Pearson: deviations p - 2.5 = (-2, -1.5, 1.5, -.5, 2.5), g - 3 = (-2, -1, 0, 1, 2);
    # sum of products 10, sums of squares 15 and 10 -> 10 / sqrt(150).
    # Spearman: ranks (1, 2, 4, 3, 5) vs (1, 2, 3, 4, 5), sum d^2 = 2 -> 1 - 6*2/(5*24) = 0.9.
    pearson, spearman = 10 / math.sqrt(150), 0.9
    assert metrics.pearson_and_spearman(pred, gold) == pytest.approx(
        {"pearson": pearson, "spearman": spearman,
         "pearson_spearman_mean": (pearson + spearman) / 2})


def test_multiple_choice_accuracy():
    logits = np.array([[0.1, 2.0, 0.3, 0.0, -1.0],
                       [3.0, 2.0, 0.3, 0.0, -1.0],
                       [0.1, 0.0, 0.3, 4.0, -1.0]])
    labels = np.array([1, 2, 3])
    assert metrics.multiple_choice_accuracy(logits, labels) == {"accuracy": pytest.approx(2 / 3)}
    assert metrics.multiple_choice_accuracy(np.array([1, 0, 3]), labels)["accuracy"] == \
        pytest.approx(2 / 3)


@pytest.mark.parametrize("fn", [metrics.accuracy, metrics.accuracy_and_f1, metrics.matthews,
                                metrics.pearson_and_spearman, metrics.multiple_choice_accuracy])
def test_empty_and_mismatched_inputs_are_errors(fn):
    with pytest.raises(ValueError, match="empty"):
        fn(np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError, match="length mismatch"):
        fn(np.zeros(3), np.zeros(5))


def test_glue_tasks_table():
    assert set(metrics.GLUE_TASKS) >= {"cola", "sst2", "mrpc", "qqp", "stsb", "mnli_matched",
                                       "mnli_mismatched", "qnli", "rte", "wnli", "ax"}
    main = {name: task.main_metric for name, task in metrics.GLUE_TASKS.items()}
    assert main["cola"] == main["ax"] == "mcc"
    assert main["mrpc"] == main["qqp"] == "accuracy_f1_mean"
    assert main["stsb"] == "pearson_spearman_mean"
    for name, task in metrics.GLUE_TASKS.items():
        values = (np.array([0.5, 1.0, 4.0, 2.0, 5.0]) if name == "stsb" else PRED7[:5])
        labels = (np.arange(1.0, 6.0) if name == "stsb" else GOLD7[:5])
        out = metrics.glue_metrics(name, values, labels)
        assert task.main_metric in out
        assert all(isinstance(v, float) for v in out.values())
    with pytest.raises(ValueError, match="unknown GLUE task"):
        metrics.glue_metrics("sst5", PRED7, GOLD7)


# ---------------------------------------------------------------- SQuAD

@pytest.mark.parametrize("text, expected", [
    ("The  Cat!", "cat"),
    ("an Apple, a day", "apple day"),
    ("  Theory of the\tatom. ", "theory of atom"),  # "the" inside a word stays
    ("A.", ""),
])
def test_normalize_answer(text, expected):
    assert squad_metrics.normalize_answer(text) == expected


def test_exact_match_and_f1_with_several_golds():
    # "the cat sat" -> [cat, sat]; "a cat sat down" -> [cat, sat, down]: 2 shared tokens,
    # precision 2/2, recall 2/3, F1 = 2 * 1 * 2/3 / (1 + 2/3) = 0.8.
    assert squad_metrics.f1("the cat sat", "a cat sat down") == pytest.approx(0.8)
    assert squad_metrics.exact_match("the cat sat", "a cat sat down") == 0
    golds = ["dog", "a cat sat down", "The cat sat."]
    assert squad_metrics.max_over_golds(squad_metrics.exact_match, "the cat sat", golds) == 1
    assert squad_metrics.max_over_golds(squad_metrics.f1, "the cat sat", golds) == 1.0
    assert squad_metrics.max_over_golds(squad_metrics.f1, "cat", golds[:2]) == pytest.approx(0.5)


def _dataset(qas: list[tuple[str, list[str]]]) -> list[dict]:
    """SQuAD ``data``: qas split over two articles to walk the whole nesting."""
    qas = [{"id": qid, "question": "?", "answers": [{"text": t, "answer_start": 0} for t in golds]}
           for qid, golds in qas]
    return [{"title": "a", "paragraphs": [{"context": "...", "qas": qas[:2]}]},
            {"title": "b", "paragraphs": [{"context": "...", "qas": qas[2:]}]}]


def test_evaluate_v1_counts_missing_predictions_as_wrong(caplog):
    data = _dataset([("q1", ["Paris", "paris france"]), ("q2", ["the cat sat down"]),
                     ("q3", ["blue"])])
    with caplog.at_level(logging.WARNING):
        out = squad_metrics.evaluate_v1(data, {"q1": "Paris", "q2": "cat sat"})
    # q1: EM 1, F1 1; q2: EM 0, F1 0.8; q3: missing, 0 and 0. Over 3 questions.
    assert out == pytest.approx({"exact_match": 100 / 3, "f1": 100 * 1.8 / 3})
    assert "1 of 3 questions have no prediction" in caplog.text
    assert squad_metrics.evaluate_v1({"version": "1.1", "data": data},
                                     {"q1": "Paris", "q2": "cat sat"}) == out


V2_DATA = _dataset([("q1", ["Paris"]), ("q2", ["the cat sat down"]), ("q3", ["blue"]),
                    ("q4", []), ("q5", [])])
V2_PREDS = {"q1": "Paris", "q2": "cat sat", "q3": "red", "q4": "", "q5": "something"}
# Raw scores: exact (1, 0, 0, 1, 0), f1 (1, .8, 0, 1, 0); q4 and q5 have no answer, so their
# gold is [""]: "" scores 1 on both, "something" 0 on both.
V2_NA = {"q1": 0.1, "q2": 0.6, "q3": 0.3, "q4": 0.9, "q5": 0.7}


def test_evaluate_v2_without_na_probs():
    out = squad_metrics.evaluate_v2(V2_DATA, V2_PREDS)
    assert out == pytest.approx({
        "exact": 100 * 2 / 5, "f1": 100 * 2.8 / 5, "total": 5,
        "HasAns_exact": 100 / 3, "HasAns_f1": 100 * 1.8 / 3, "HasAns_total": 3,
        "NoAns_exact": 50.0, "NoAns_f1": 50.0, "NoAns_total": 2})


def test_evaluate_v2_threshold_and_best_threshold():
    out = squad_metrics.evaluate_v2(V2_DATA, V2_PREDS, V2_NA, na_prob_thresh=0.5)
    # Above 0.5: q2 (has an answer -> 0), q5 and q4 (no answer -> 1).
    # exact = f1 = (1, 0, 0, 1, 1) -> 60.
    # Best threshold: answer in increasing na_prob q1 .1, q3 .3, q2 .6, q5 .7, q4 .9, starting
    # from "abstain everywhere" = 2 (the two no-answer questions):
    #   exact: +1 (q1) = 3 best @ .1, +0 = 3, +0 = 3, -1 (q5 answers "something") = 2, +0 = 2
    #   f1:    +1 = 3 @ .1, +0 = 3, +.8 (q2) = 3.8 best @ .6, -1 = 2.8, +0 ("" for q4) = 2.8
    assert out == pytest.approx({
        "exact": 60.0, "f1": 60.0, "total": 5,
        "HasAns_exact": 100 / 3, "HasAns_f1": 100 / 3, "HasAns_total": 3,
        "NoAns_exact": 100.0, "NoAns_f1": 100.0, "NoAns_total": 2,
        "best_exact": 60.0, "best_exact_thresh": 0.1,
        "best_f1": 76.0, "best_f1_thresh": 0.6})
    # The default threshold 1.0 leaves the raw scores.
    default = squad_metrics.evaluate_v2(V2_DATA, V2_PREDS, V2_NA)
    assert default["exact"] == pytest.approx(40.0) and default["f1"] == pytest.approx(56.0)


def test_evaluate_v2_quirks_kept_and_missing_predictions(caplog):
    # A gold that normalises to nothing is dropped (gold [""]), yet the question still counts
    # as HasAns because its answer list is not empty.
    data = _dataset([("q1", ["The"]), ("q2", ["blue"]), ("q3", [])])
    with caplog.at_level(logging.WARNING):
        out = squad_metrics.evaluate_v2(data, {"q1": ""})
    assert out == pytest.approx({"exact": 100 / 3, "f1": 100 / 3, "total": 3,
                                 "HasAns_exact": 50.0, "HasAns_f1": 50.0, "HasAns_total": 2,
                                 "NoAns_exact": 0.0, "NoAns_f1": 0.0, "NoAns_total": 1})
    assert "2 of 3 questions have no prediction" in caplog.text
    with pytest.raises(ValueError, match="na_probs has no value"):
        squad_metrics.evaluate_v2(data, {"q1": ""}, na_probs={"q2": 0.5})


# ---------------------------------------------------------------- conlleval

# Worked example, following the perl script's startOfChunk/endOfChunk rules; a sentence
# break acts as an uncounted "O O" token.
SENTENCES = [
    # A (IOB1):   gold                         pred
    [("I-PER", "I-PER"),   # gold PER starts (I after O)   pred PER starts: both, same type
     ("I-PER", "I-PER"),   # both continue
     ("B-PER", "I-PER"),   # gold: B after I of PER ends PER[1-2], starts PER[3]; pred goes on:
                           #   the ends differ, so no correct chunk; tag wrong
     ("O", "O"),
     ("I-LOC", "I-LOC"),   # both start LOC
     ("I-ORG", "I-LOC"),   # gold: type change ends LOC[5], starts ORG[6]; pred LOC goes on:
                           #   no correct chunk; tag wrong
     ("O", "O")],
    #   A: 7 tokens, 5 right tags; gold PER 2, LOC 1, ORG 1; pred PER 1 (1-3), LOC 1 (5-6).
    [("O", "O"), ("O", "O"), ("O", "O")],   # B: no entities; 3 tokens, 3 right
    [("O", "B-MISC"), ("O", "O")],          # C: a false MISC; 2 tokens, 1 right
    [("B-LOC", "B-LOC"),   # D: both start LOC
     ("I-LOC", "I-LOC"),
     ("B-LOC", "B-LOC"),   # both end LOC[1-2] (correct LOC) and start LOC[3]
     ("I-PER", "I-PER"),   # type change: both end LOC[3] (correct LOC), start PER
     ("O", "O")],          # both end PER (correct PER). 5 tokens, 5 right.
    [("I-PER", "I-PER")],  # E and F: the break between them ends E's chunk (correct PER),
    [("I-PER", "I-PER")],  # so F's I-PER starts a new one (correct PER); 2 tokens, 2 right.
]
# Totals: tokens 7+3+2+5+1+1 = 19, right tags 5+3+1+5+1+1 = 16.
#   gold:    PER 2+1+2 = 5, LOC 1+2 = 3, ORG 1         -> 9
#   pred:    PER 1+1+2 = 4, LOC 1+2 = 3, MISC 1        -> 8
#   correct: PER 1+2 = 3,   LOC 2                      -> 5
# precision 5/8 = 62.5, recall 5/9, F1 = 2*5/(8+9) = 10/17; accuracy 16/19.
# Per type: LOC 2/3, 2/3, 2/3; MISC 0 (0/1), 0 (no gold), 0; ORG 0 (no pred), 0/1, 0;
#           PER 3/4, 3/5, 2*3/(4+5) = 2/3.
EXPECTED = {"precision": 62.5, "recall": 500 / 9, "f1": 1000 / 17, "accuracy": 1600 / 19,
            "tokens": 19, "gold_chunks": 9, "pred_chunks": 8, "correct_chunks": 5}
EXPECTED_TYPES = {
    "LOC": (200 / 3, 200 / 3, 200 / 3, 3, 3, 2),
    "MISC": (0.0, 0.0, 0.0, 0, 1, 0),
    "ORG": (0.0, 0.0, 0.0, 1, 0, 0),
    "PER": (75.0, 60.0, 200 / 3, 5, 4, 3),
}


def _check_report(out, expected, expected_types):
    per_type = out.pop("per_type")
    assert out == pytest.approx(expected)
    assert list(per_type) == sorted(expected_types)
    for name, (p, r, f, gold, pred, correct) in expected_types.items():
        assert per_type[name] == pytest.approx(
            {"precision": p, "recall": r, "f1": f, "gold_chunks": gold, "pred_chunks": pred,
             "correct_chunks": correct}), name


def test_conlleval_worked_example():
    _check_report(conlleval.evaluate(SENTENCES), EXPECTED, EXPECTED_TYPES)
    gold = [[g for g, _ in s] for s in SENTENCES]
    pred = [[p for _, p in s] for s in SENTENCES]
    _check_report(conlleval.evaluate_sequences(gold, pred), EXPECTED, EXPECTED_TYPES)
    with pytest.raises(ValueError, match="sentence 1"):
        conlleval.evaluate_sequences(gold, [pred[0], pred[1][:2], *pred[2:]])


def test_conlleval_text_format():
    # The same sentences as conlleval input (word POS gold pred), after a -DOCSTART- line:
    # the script scores that line as a token tagged O O (one more token, one more right tag).
    lines = ["-DOCSTART- -X- O O", ""]
    for i, sentence in enumerate(SENTENCES):
        lines += [f"w{i}{j} NN {g} {p}" for j, (g, p) in enumerate(sentence)] + [""]
    text = "\n".join(lines)
    expected = dict(EXPECTED, tokens=20, accuracy=85.0)
    _check_report(conlleval.evaluate_text(text), expected, EXPECTED_TYPES)
    # A "-X-" line is a sentence break like a blank one.
    _check_report(conlleval.evaluate_text(text.replace("\n\n", "\n-X- -X- O O\n")),
                  expected, EXPECTED_TYPES)
    with pytest.raises(ValueError, match="line 3"):
        conlleval.evaluate_text("a NN O O\n\nb O O\n")
    with pytest.raises(ValueError, match="no tokens"):
        conlleval.evaluate_text("\n\n")


def test_conlleval_without_entities_and_script_quirks():
    out = conlleval.evaluate([[("O", "O")] * 3])
    assert out["per_type"] == {} and out["accuracy"] == 100.0
    assert (out["precision"], out["recall"], out["f1"]) == (0.0, 0.0, 0.0)
    # The script knows no S-: S-PER S-PER is one chunk (a type change or B- is needed).
    out = conlleval.evaluate([[("S-PER", "S-PER"), ("S-PER", "S-PER")]])
    assert (out["gold_chunks"], out["correct_chunks"]) == (1, 1)
    # ... so IOBES goes through iobes_to_iob2 first: two chunks, as meant.
    iob2 = conlleval.iobes_to_iob2(["S-PER", "S-PER", "B-LOC", "E-LOC", "O"])
    assert iob2 == ["B-PER", "B-PER", "B-LOC", "I-LOC", "O"]
    out = conlleval.evaluate_sequences([iob2], [iob2])
    assert (out["gold_chunks"], out["correct_chunks"], out["f1"]) == (3, 3, 100.0)
    # IOE (E ends a chunk; types may hold hyphens): gold I E E is NP-X[1-2] (E after I goes
    # on) and NP-X[3] (E after E ends and starts); pred I I E is one chunk NP-X[1-3].
    # Both start at 1; at 3 only gold ends, so the candidate is dropped: none correct.
    out = conlleval.evaluate([[("I-NP-X", "I-NP-X"), ("E-NP-X", "I-NP-X"),
                               ("E-NP-X", "E-NP-X")]])
    assert (out["gold_chunks"], out["pred_chunks"], out["correct_chunks"]) == (2, 1, 0)
    assert list(out["per_type"]) == ["NP-X"]
    # B- right after E- neither ends nor starts a chunk in the script: B E B is one chunk.
    out = conlleval.evaluate([[("B-X", "B-X"), ("E-X", "E-X"), ("B-X", "B-X")]])
    assert (out["gold_chunks"], out["pred_chunks"], out["correct_chunks"]) == (1, 1, 1)
    # -r (raw): bare types, each non-O token its own chunk.
    out = conlleval.evaluate([[("PER", "PER"), ("PER", "O"), ("O", "O")]], raw=True)
    assert (out["gold_chunks"], out["pred_chunks"], out["correct_chunks"]) == (2, 1, 1)
