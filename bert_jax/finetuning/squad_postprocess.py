"""SQuAD start/end logits -> answer text, as the original google-research/bert
``write_predictions`` in ``run_squad.py``.

For each example, over all its windows (``squad_data.InputFeatures``):

  1. the ``n_best_size`` highest start and end logits of each window give candidate spans;
     a span is dropped if it leaves the context (question, [CLS], [SEP], padding), if its
     start is not in the window that gives that piece the most context, if it ends before
     it starts, or if it is longer than ``max_answer_length`` pieces;
  2. v2.0: the null answer ([CLS] start + end) of the window where it scores lowest is a
     candidate too;
  3. candidates sorted by start + end logit are mapped back to the original text
     (``get_final_text``), duplicates dropped, and the first ``n_best_size`` kept with a
     softmax over their scores;
  4. v1.1 predicts the best one; v2.0 predicts the best non-null text unless
     ``score_null - score_best_non_null > null_score_diff_threshold``, then "".

Files written by ``write_predictions``: ``predictions.json`` {id: text},
``nbest_predictions.json`` {id: [{text, probability, start_logit, end_logit}]}, and for
v2.0 ``null_odds.json`` {id: score_null - score_best_non_null} (the official v2.0 eval
script's ``--na-prob-file``, from which it finds the best threshold).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from typing import Iterable, Sequence

import numpy as np

from bert_jax.finetuning.squad_data import InputFeatures, SquadExample
from bert_jax.tokenization import BasicTokenizer

log = logging.getLogger(__name__)

__all__ = ["RawResult", "SquadPredictions", "results_from_arrays", "compute_predictions",
           "write_predictions", "get_final_text"]

# Null-odds value when an example has no valid non-null span at all (the original crashes
# there); large, finite so null_odds.json stays valid JSON, and always above a threshold.
NO_SPAN_NULL_ODDS = 1e9


@dataclasses.dataclass(frozen=True)
class RawResult:
    """Model outputs for one feature: start/end logits over its max_seq_length positions."""
    unique_id: int
    start_logits: np.ndarray
    end_logits: np.ndarray


@dataclasses.dataclass(frozen=True)
class SquadPredictions:
    """predictions {qas_id: text}, nbest {qas_id: [entry dicts]}, null_odds (v2.0 only)."""
    predictions: dict[str, str]
    nbest: dict[str, list[dict]]
    null_odds: dict[str, float] | None


def results_from_arrays(unique_ids: np.ndarray, start_logits: np.ndarray,
                        end_logits: np.ndarray,
                        mask: np.ndarray | None = None) -> list[RawResult]:
    """[N] ids and [N, L] logits (e.g. concatenated predict batches) -> results; rows whose
    ``mask`` is 0 (padding of the last batch) are dropped."""
    unique_ids = np.asarray(unique_ids).reshape(-1)
    start_logits = np.asarray(start_logits, np.float32)
    end_logits = np.asarray(end_logits, np.float32)
    if start_logits.shape != end_logits.shape or start_logits.shape[:1] != unique_ids.shape:
        raise ValueError(f"shapes differ: unique_ids {unique_ids.shape}, start_logits "
                         f"{start_logits.shape}, end_logits {end_logits.shape}; expected [N] "
                         "and [N, max_seq_length] twice.")
    keep = np.ones(len(unique_ids), bool) if mask is None else np.asarray(mask).reshape(-1) > 0
    return [RawResult(int(u), s, e) for u, s, e, k
            in zip(unique_ids, start_logits, end_logits, keep) if k]


def _best_indexes(logits: np.ndarray, n_best_size: int) -> list[int]:
    """Indices of the n largest logits, largest first (ties: lower index first)."""
    order = np.argsort(-np.asarray(logits), kind="stable")
    return [int(i) for i in order[:n_best_size]]


def _softmax(scores: Sequence[float]) -> list[float]:
    if not scores:
        return []
    top = max(scores)
    exps = [math.exp(s - top) for s in scores]
    total = sum(exps)
    return [e / total for e in exps]


def get_final_text(pred_text: str, orig_text: str, do_lower_case: bool = True,
                   strip_accents: bool | None = None) -> str:
    """Projects a normalised prediction back onto the original words.

    ``pred_text`` is the de-tokenized word-piece span ("hello , world"), ``orig_text`` the
    original words it came from ("Hello, World!"). Tokenizing ``orig_text`` the same basic
    way and aligning the two without spaces character by character gives "Hello, World".
    Falls back to ``orig_text`` where the alignment fails (the normalisation changed the
    length, e.g. characters deleted or expanded).
    """
    def strip_spaces(text):
        ns_chars, ns_to_s_map = [], {}
        for i, c in enumerate(text):
            if c == " ":
                continue
            ns_to_s_map[len(ns_chars)] = i
            ns_chars.append(c)
        return "".join(ns_chars), ns_to_s_map

    tokenizer = BasicTokenizer(do_lower_case=do_lower_case, strip_accents=strip_accents)
    tok_text = " ".join(tokenizer.tokenize(orig_text))
    start_position = tok_text.find(pred_text)
    if start_position == -1:
        return orig_text
    end_position = start_position + len(pred_text) - 1

    orig_ns_text, orig_ns_to_s_map = strip_spaces(orig_text)
    tok_ns_text, tok_ns_to_s_map = strip_spaces(tok_text)
    if len(orig_ns_text) != len(tok_ns_text):
        return orig_text
    tok_s_to_ns_map = {s: ns for ns, s in tok_ns_to_s_map.items()}

    def to_orig(position):
        ns = tok_s_to_ns_map.get(position)
        return None if ns is None else orig_ns_to_s_map.get(ns)

    orig_start, orig_end = to_orig(start_position), to_orig(end_position)
    if orig_start is None or orig_end is None:
        return orig_text
    return orig_text[orig_start:orig_end + 1]


def compute_predictions(
        examples: Sequence[SquadExample], features: Sequence[InputFeatures],
        results: Iterable[RawResult], *, n_best_size: int = 20, max_answer_length: int = 30,
        do_lower_case: bool = True, strip_accents: bool | None = None,
        version_2_with_negative: bool = False,
        null_score_diff_threshold: float = 0.0) -> SquadPredictions:
    """Per-feature logits -> per-question answers (module docstring).

    ``do_lower_case``/``strip_accents`` must be the tokenizer's, for ``get_final_text``.
    Every feature needs exactly one result.
    """
    by_id: dict[int, RawResult] = {}
    for result in results:
        if result.unique_id in by_id:
            raise ValueError(f"two results for feature unique_id {result.unique_id}: predict "
                             "each feature once (drop the padding rows of the last batch).")
        by_id[result.unique_id] = result
    known = {f.unique_id for f in features}
    unknown = set(by_id) - known
    if unknown:
        raise ValueError(f"{len(unknown)} results (e.g. unique_id {min(unknown)}) match no "
                         "feature: drop the padding rows of the last batch "
                         "(results_from_arrays(..., mask=...)).")
    missing = known - set(by_id)
    if missing:
        raise ValueError(f"{len(missing)} features (e.g. unique_id {min(missing)}) have no "
                         "result: predict every feature of the eval set.")

    features_of: dict[int, list[InputFeatures]] = {}
    for feature in features:
        features_of.setdefault(feature.example_index, []).append(feature)

    predictions, all_nbest = {}, {}
    null_odds = {} if version_2_with_negative else None
    for example_index, example in enumerate(examples):
        example_features = features_of.get(example_index, [])
        prelim = []  # (score, feature_index, start, end, start_logit, end_logit)
        score_null, null_feature, null_start_logit, null_end_logit = math.inf, 0, 0.0, 0.0
        for feature_index, feature in enumerate(example_features):
            result = by_id[feature.unique_id]
            start_logits = np.asarray(result.start_logits, np.float64)
            end_logits = np.asarray(result.end_logits, np.float64)
            if version_2_with_negative:
                feature_null = start_logits[0] + end_logits[0]
                if feature_null < score_null:
                    score_null, null_feature = feature_null, feature_index
                    null_start_logit, null_end_logit = start_logits[0], end_logits[0]
            for start in _best_indexes(start_logits, n_best_size):
                for end in _best_indexes(end_logits, n_best_size):
                    # Spans outside the window's context: question, [CLS], [SEP], padding.
                    if (start not in feature.token_to_orig_map
                            or end not in feature.token_to_orig_map):
                        continue
                    if not feature.token_is_max_context.get(start, False):
                        continue
                    if end < start or end - start + 1 > max_answer_length:
                        continue
                    prelim.append((start_logits[start] + end_logits[end], feature_index,
                                   start, end, start_logits[start], end_logits[end]))
        if version_2_with_negative and example_features:
            prelim.append((score_null, null_feature, 0, 0, null_start_logit, null_end_logit))
        prelim.sort(key=lambda p: p[0], reverse=True)  # stable: ties keep their order

        seen, nbest = set(), []  # nbest: (text, start_logit, end_logit)
        for _, feature_index, start, end, start_logit, end_logit in prelim:
            if len(nbest) >= n_best_size:
                break
            if start > 0:
                feature = example_features[feature_index]
                tok_text = " ".join(feature.tokens[start:end + 1])
                tok_text = " ".join(tok_text.replace(" ##", "").replace("##", "").split())
                orig_start = feature.token_to_orig_map[start]
                orig_end = feature.token_to_orig_map[end]
                orig_text = " ".join(example.doc_tokens[orig_start:orig_end + 1])
                text = get_final_text(tok_text, orig_text, do_lower_case, strip_accents)
            else:
                text = ""
            if text in seen:
                continue
            seen.add(text)
            nbest.append((text, float(start_logit), float(end_logit)))
        if version_2_with_negative and "" not in seen and example_features:
            nbest.append(("", float(null_start_logit), float(null_end_logit)))
        if not nbest:  # no window, or no valid span (v1.1): the original's placeholder
            nbest.append(("empty", 0.0, 0.0))

        probs = _softmax([s + e for _, s, e in nbest])
        all_nbest[example.qas_id] = [
            {"text": text, "probability": p, "start_logit": s, "end_logit": e}
            for (text, s, e), p in zip(nbest, probs)]
        best_non_null = next((entry for entry in nbest if entry[0]), None)
        if not version_2_with_negative:
            predictions[example.qas_id] = nbest[0][0]
        elif best_non_null is None:
            null_odds[example.qas_id] = NO_SPAN_NULL_ODDS
            predictions[example.qas_id] = ""
        else:
            score_diff = float(score_null) - best_non_null[1] - best_non_null[2]
            null_odds[example.qas_id] = score_diff
            predictions[example.qas_id] = (
                "" if score_diff > null_score_diff_threshold else best_non_null[0])
    return SquadPredictions(predictions, all_nbest, null_odds)


def write_predictions(examples: Sequence[SquadExample], features: Sequence[InputFeatures],
                      results: Iterable[RawResult], output_dir: str,
                      **kwargs) -> SquadPredictions:
    """``compute_predictions`` (same keyword arguments), then writes predictions.json,
    nbest_predictions.json and, for v2.0, null_odds.json into ``output_dir``."""
    import tensorflow as tf  # gfile: output_dir may be gs://

    out = compute_predictions(examples, features, results, **kwargs)
    tf.io.gfile.makedirs(output_dir)
    files = {"predictions.json": out.predictions, "nbest_predictions.json": out.nbest}
    if out.null_odds is not None:
        files["null_odds.json"] = out.null_odds
    for name, content in files.items():
        with tf.io.gfile.GFile(os.path.join(output_dir, name), "w") as f:
            f.write(json.dumps(content, indent=2, ensure_ascii=False) + "\n")
    log.info("wrote %s to %s", ", ".join(files), output_dir)
    return out
