"""SQuAD v1.1 and v2.0 evaluation, following the official ``evaluate-v1.1.py`` and
``evaluate-v2.0.py`` line for line.

The official scripts are files on the SQuAD website, not a maintained library (there is no
package to depend on), so their logic is written out here, with the same normalisation,
scores and quirks. The one deliberate difference: a question with no prediction scores 0 and
counts in every total (v1.1 prints a line per question and does the same; v2.0 drops it from
``total`` or crashes), and we log one warning with the count.

Inputs: ``dataset`` is the ``data`` list of the SQuAD JSON (articles -> paragraphs -> qas),
or the whole JSON object, whose ``data`` is used. ``predictions`` maps question id to answer
text; for v2.0 the empty string means "no answer". Scores are percentages, as printed by the
official scripts.
"""

import collections
import logging
import re
import string
from typing import Callable, Iterator

log = logging.getLogger(__name__)

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower-case, drop ASCII punctuation, drop the articles a/an/the, collapse whitespace."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def _tokens(s: str) -> list[str]:
    return normalize_answer(s).split() if s else []


def exact_match(prediction: str, gold: str) -> int:
    """1 if the two normalise to the same string, else 0."""
    return int(normalize_answer(prediction) == normalize_answer(gold))


def f1(prediction: str, gold: str) -> float:
    """Bag-of-tokens F1 of the normalised strings (v2.0 rule: two empty answers agree, 1.0;
    one empty, 0.0; v1.1 gives 0.0 for both empty, which never happens with v1.1 golds)."""
    pred_toks, gold_toks = _tokens(prediction), _tokens(gold)
    if not pred_toks or not gold_toks:
        return float(pred_toks == gold_toks)
    num_same = sum((collections.Counter(pred_toks) & collections.Counter(gold_toks)).values())
    if num_same == 0:
        return 0.0
    precision, recall = num_same / len(pred_toks), num_same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def _f1_v1(prediction: str, gold: str) -> float:
    """v1.1's ``f1_score``: as ``f1`` except that two empty answers score 0."""
    if not _tokens(prediction) and not _tokens(gold):
        return 0.0
    return f1(prediction, gold)


def max_over_golds(metric: Callable[[str, str], float], prediction: str,
                   golds: list[str]) -> float:
    """The best score of ``prediction`` against any of the gold answers."""
    return max(metric(prediction, gold) for gold in golds)


def _questions(dataset) -> Iterator[dict]:
    if isinstance(dataset, dict):
        dataset = dataset["data"]
    for article in dataset:
        for paragraph in article["paragraphs"]:
            yield from paragraph["qas"]


def _warn_missing(missing: int, total: int) -> None:
    if missing:
        log.warning("%d of %d questions have no prediction; they score 0.", missing, total)


def evaluate_v1(dataset, predictions: dict[str, str]) -> dict[str, float]:
    """SQuAD v1.1: ``{"exact_match", "f1"}`` in percent, each the max over the gold answers."""
    em_sum = f1_sum = 0.0
    total = missing = 0
    for qa in _questions(dataset):
        total += 1
        if qa["id"] not in predictions:
            missing += 1
            continue
        golds = [answer["text"] for answer in qa["answers"]]
        prediction = predictions[qa["id"]]
        em_sum += max_over_golds(exact_match, prediction, golds)
        f1_sum += max_over_golds(_f1_v1, prediction, golds)
    if total == 0:
        raise ValueError("the dataset has no questions")
    _warn_missing(missing, total)
    return {"exact_match": 100.0 * em_sum / total, "f1": 100.0 * f1_sum / total}


def _find_best_thresh(predictions, scores, na_probs, has_ans, total) -> tuple[float, float]:
    """The official ``find_best_thresh``: start from "abstain everywhere" (every no-answer
    question right), then answer questions in increasing order of no-answer probability,
    keeping the running best. Ties in ``na_probs`` are taken in its own key order, as the
    official script's stable sort does. Questions without a prediction stay wrong."""
    score = best_score = sum(1 for qid in scores if not has_ans[qid])
    best_thresh = 0.0
    for qid in sorted(na_probs, key=lambda k: na_probs[k]):
        if qid not in scores:
            continue
        if has_ans[qid]:
            diff = scores[qid]
        else:
            diff = -1 if predictions[qid] else 0  # the raw text, as in the official script
        score += diff
        if score > best_score:
            best_score, best_thresh = score, na_probs[qid]
    return 100.0 * best_score / total, best_thresh


def evaluate_v2(dataset, predictions: dict[str, str], na_probs: dict[str, float] | None = None,
                na_prob_thresh: float = 1.0) -> dict[str, float]:
    """SQuAD v2.0, as the official script: exact/f1/total over all questions and over the
    HasAns and NoAns subsets (a subset's keys appear only if it is non-empty), all after the
    threshold (a question whose ``na_probs`` value is above ``na_prob_thresh`` is taken as
    answered "no answer"); with ``na_probs``, also the best threshold for exact and for f1
    and the scores it gives (computed on the raw, unthresholded scores).

    Without ``na_probs`` every predicted question has no-answer probability 0.0, as in the
    official script.
    """
    given_na_probs = na_probs is not None
    if na_probs is None:
        na_probs = {qid: 0.0 for qid in predictions}
    has_ans: dict[str, bool] = {}
    exact_raw: dict[str, float] = {}
    f1_raw: dict[str, float] = {}
    for qa in _questions(dataset):
        qid = qa["id"]
        has_ans[qid] = bool(qa["answers"])
        # Golds that normalise to nothing are dropped; none left means "no answer": [""].
        golds = [a["text"] for a in qa["answers"] if normalize_answer(a["text"])] or [""]
        if qid in predictions:
            exact_raw[qid] = max_over_golds(exact_match, predictions[qid], golds)
            f1_raw[qid] = max_over_golds(f1, predictions[qid], golds)
    if not has_ans:
        raise ValueError("the dataset has no questions")
    total = len(has_ans)
    _warn_missing(total - len(exact_raw), total)
    absent = [qid for qid in exact_raw if qid not in na_probs]
    if absent:
        raise ValueError(f"na_probs has no value for {len(absent)} predicted questions, "
                         f"e.g. {absent[0]!r}")

    def thresholded(raw: dict[str, float]) -> dict[str, float]:
        # Missing predictions score 0 here, so they count as wrong in every total.
        return {qid: (float(not has_ans[qid]) if na_probs[qid] > na_prob_thresh else raw[qid])
                if qid in raw else 0.0 for qid in has_ans}

    exact_scores, f1_scores = thresholded(exact_raw), thresholded(f1_raw)

    def summary(qids: list[str], prefix: str = "") -> dict[str, float]:
        return {f"{prefix}exact": 100.0 * sum(exact_scores[q] for q in qids) / len(qids),
                f"{prefix}f1": 100.0 * sum(f1_scores[q] for q in qids) / len(qids),
                f"{prefix}total": len(qids)}

    result = summary(list(has_ans))
    for prefix, wanted in (("HasAns_", True), ("NoAns_", False)):
        qids = [qid for qid, answerable in has_ans.items() if answerable == wanted]
        if qids:
            result.update(summary(qids, prefix))
    if given_na_probs:
        result["best_exact"], result["best_exact_thresh"] = _find_best_thresh(
            predictions, exact_raw, na_probs, has_ans, total)
        result["best_f1"], result["best_f1_thresh"] = _find_best_thresh(
            predictions, f1_raw, na_probs, has_ans, total)
    return result
