"""GLUE and SWAG metrics with the official definitions, computed by scikit-learn and scipy.

No hand-rolled math: each number is the library function the GLUE server and the usual
fine-tuning scripts use (``sklearn.metrics.accuracy_score``, ``f1_score`` of the positive
class, ``matthews_corrcoef``; ``scipy.stats.pearsonr`` and ``spearmanr``). Every function takes
numpy (or array-like) predictions and labels of equal length N, already decoded on the host
(class ids for classification, floats for STS-B), and returns ``dict[str, float]``.

  task               metrics                                   main (best checkpoint)
  cola, ax           mcc                                       mcc
  sst2, mnli_*,
  qnli, rte, wnli    accuracy                                  accuracy
  mrpc, qqp          accuracy, f1, accuracy_f1_mean            accuracy_f1_mean
  stsb               pearson, spearman, pearson_spearman_mean  pearson_spearman_mean

The two means are what the GLUE leaderboard reports as the task's single score. MNLI's
matched and mismatched dev sets are separate entries; ``ax`` (the diagnostic set) is scored
with the multi-class Matthews correlation (R3), which ``matthews_corrcoef`` computes.

Degenerate inputs keep the libraries' conventions: a constant prediction gives mcc 0.0 and
f1 0.0 (no positive predicted), and a constant input to a correlation gives nan.
"""

import dataclasses
from typing import Callable

import numpy as np
import scipy.stats
import sklearn.metrics

Metrics = dict[str, float]


def _check(predictions, labels, name: str = "predictions") -> tuple[np.ndarray, np.ndarray]:
    """Both as 1-D arrays of the same non-zero length, or a ValueError saying what is wrong."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if predictions.ndim != 1 or labels.ndim != 1:
        raise ValueError(f"{name} and labels must be 1-D, got shapes {predictions.shape} "
                         f"and {labels.shape}")
    if len(predictions) != len(labels):
        raise ValueError(f"length mismatch: {len(predictions)} {name} vs {len(labels)} labels")
    if len(labels) == 0:
        raise ValueError(f"empty {name} and labels: nothing to score")
    return predictions, labels


def accuracy(predictions, labels) -> Metrics:
    """Fraction of exact matches (SST-2, MNLI, QNLI, RTE, WNLI)."""
    predictions, labels = _check(predictions, labels)
    return {"accuracy": float(sklearn.metrics.accuracy_score(labels, predictions))}


def accuracy_and_f1(predictions, labels) -> Metrics:
    """MRPC and QQP: accuracy, F1 of the positive class (label 1) and their mean."""
    predictions, labels = _check(predictions, labels)
    acc = float(sklearn.metrics.accuracy_score(labels, predictions))
    # zero_division=0.0 is sklearn's value for "no positive anywhere", minus the warning.
    f1 = float(sklearn.metrics.f1_score(labels, predictions, pos_label=1, average="binary",
                                        zero_division=0.0))
    return {"accuracy": acc, "f1": f1, "accuracy_f1_mean": (acc + f1) / 2}


def matthews(predictions, labels) -> Metrics:
    """CoLA (binary) and the diagnostic set ax (three classes, the multi-class R3)."""
    predictions, labels = _check(predictions, labels)
    return {"mcc": float(sklearn.metrics.matthews_corrcoef(labels, predictions))}


def pearson_and_spearman(predictions, labels) -> Metrics:
    """STS-B: Pearson and Spearman correlation of the scores and their mean."""
    predictions, labels = _check(predictions, labels)
    predictions, labels = predictions.astype(np.float64), labels.astype(np.float64)
    pearson = float(scipy.stats.pearsonr(predictions, labels).statistic)
    spearman = float(scipy.stats.spearmanr(predictions, labels).statistic)
    return {"pearson": pearson, "spearman": spearman,
            "pearson_spearman_mean": (pearson + spearman) / 2}


def multiple_choice_accuracy(logits, labels) -> Metrics:
    """SWAG: accuracy of the highest-scoring choice.

    ``logits`` is [N, num_choices] (the argmax is taken) or already the chosen index [N];
    ``labels`` is the gold choice index [N].
    """
    logits = np.asarray(logits)
    if logits.ndim == 2:
        if logits.shape[1] == 0:
            raise ValueError(f"logits of shape {logits.shape} have no choices")
        logits = logits.argmax(axis=-1)
    return {"accuracy": accuracy(logits, labels)["accuracy"]}


@dataclasses.dataclass(frozen=True)
class GlueTask:
    """How one GLUE evaluation set is scored."""
    compute: Callable[..., Metrics]  # (predictions, labels) -> {name: value}
    main_metric: str                 # key of ``compute``'s result that picks the best checkpoint


GLUE_TASKS: dict[str, GlueTask] = {
    "cola": GlueTask(matthews, "mcc"),
    "sst2": GlueTask(accuracy, "accuracy"),
    "mrpc": GlueTask(accuracy_and_f1, "accuracy_f1_mean"),
    "qqp": GlueTask(accuracy_and_f1, "accuracy_f1_mean"),
    "stsb": GlueTask(pearson_and_spearman, "pearson_spearman_mean"),
    # MNLI's two dev sets are scored separately; "mnli" (the task name in glue_data) is
    # the same accuracy, for code that looks tasks up by that name.
    "mnli": GlueTask(accuracy, "accuracy"),
    "mnli_matched": GlueTask(accuracy, "accuracy"),
    "mnli_mismatched": GlueTask(accuracy, "accuracy"),
    "qnli": GlueTask(accuracy, "accuracy"),
    "rte": GlueTask(accuracy, "accuracy"),
    "wnli": GlueTask(accuracy, "accuracy"),
    "ax": GlueTask(matthews, "mcc"),
}


def glue_metrics(task: str, predictions, labels) -> Metrics:
    """The official metrics of one GLUE evaluation set, by its name in ``GLUE_TASKS``."""
    if task not in GLUE_TASKS:
        raise ValueError(f"unknown GLUE task {task!r}; known: {', '.join(GLUE_TASKS)}")
    return GLUE_TASKS[task].compute(predictions, labels)
