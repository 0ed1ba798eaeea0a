"""Test-set predictions -> the files the GLUE server (gluebenchmark.com) accepts.

One TSV per task, zipped together for upload (the server wants all eleven):

  CoLA.tsv SST-2.tsv MRPC.tsv QQP.tsv STS-B.tsv MNLI-m.tsv MNLI-mm.tsv QNLI.tsv RTE.tsv
  WNLI.tsv AX.tsv

each with the header ``index<TAB>prediction`` and one row per test example: the test file's
index and the label as the task's TSVs write it (0/1 for CoLA, SST-2, MRPC, QQP and WNLI;
entailment/neutral/contradiction for MNLI and AX; entailment/not_entailment for QNLI and RTE),
or a float clipped to [0, 5] for STS-B. AX is predicted with the MNLI classifier.
"""
from __future__ import annotations

import logging
import os
from typing import Sequence

import numpy as np
import tensorflow as tf

from bert_jax.finetuning.examples import Example
from bert_jax.finetuning.glue_data import TaskSpec, get_task

log = logging.getLogger(__name__)

__all__ = ["SUBMISSION_FILES", "write_glue_submission"]

# (task, test split) -> the file name the server expects.
SUBMISSION_FILES: dict[tuple[str, str], str] = {
    ("cola", "test"): "CoLA.tsv",
    ("sst2", "test"): "SST-2.tsv",
    ("mrpc", "test"): "MRPC.tsv",
    ("qqp", "test"): "QQP.tsv",
    ("stsb", "test"): "STS-B.tsv",
    ("mnli", "test_matched"): "MNLI-m.tsv",
    ("mnli", "test_mismatched"): "MNLI-mm.tsv",
    ("qnli", "test"): "QNLI.tsv",
    ("rte", "test"): "RTE.tsv",
    ("wnli", "test"): "WNLI.tsv",
    ("ax", "test"): "AX.tsv",
}

STSB_RANGE = (0.0, 5.0)


def _test_split(spec: TaskSpec, examples: Sequence[Example], split: str | None) -> str:
    """The test split: given, the only one, or read off the guids ("test_matched-17")."""
    if split is None:
        if len(spec.test_splits) == 1:
            split = spec.test_splits[0]
        else:
            found = {e.guid.partition("-")[0] for e in examples}
            if len(found) != 1 or not found <= set(spec.test_splits):
                raise ValueError(f"GLUE {spec.name} has the test splits {list(spec.test_splits)} "
                                 f"and the examples' guids do not say which: pass split=.")
            split = found.pop()
    if split not in spec.test_splits:
        raise ValueError(f"{split!r} is not a test split of GLUE {spec.name}: choose from "
                         f"{list(spec.test_splits)}.")
    return split


def _prediction_strings(spec: TaskSpec, predictions: np.ndarray) -> list[str]:
    if spec.regression:
        if predictions.ndim == 2 and predictions.shape[1] == 1:
            predictions = predictions[:, 0]
        if predictions.ndim != 1:
            raise ValueError(f"STS-B predictions must have shape [N] (scores), got "
                             f"{predictions.shape}.")
        if not np.all(np.isfinite(predictions)):
            raise ValueError("STS-B predictions contain NaN or inf: check the model's outputs.")
        clipped = np.clip(predictions.astype(np.float64), *STSB_RANGE)
        return [f"{score:.3f}" for score in clipped]
    if predictions.ndim == 2:  # logits or probabilities
        if predictions.shape[1] != len(spec.labels):
            raise ValueError(f"GLUE {spec.name} predictions have {predictions.shape[1]} scores "
                             f"per example, expected {len(spec.labels)} ({list(spec.labels)}).")
        predictions = predictions.argmax(axis=1)
    if predictions.ndim != 1 or not np.issubdtype(predictions.dtype, np.integer):
        raise ValueError(f"GLUE {spec.name} predictions must be class ids [N] (integers) or "
                         f"scores [N, {len(spec.labels)}], got {predictions.dtype} "
                         f"{predictions.shape}.")
    bad = np.flatnonzero((predictions < 0) | (predictions >= len(spec.labels)))
    if bad.size:
        raise ValueError(f"GLUE {spec.name} prediction {int(predictions[bad[0]])} (example "
                         f"{bad[0]}) is not a class id in [0, {len(spec.labels)}).")
    return [spec.labels[i] for i in predictions]


def write_glue_submission(task: str | TaskSpec, test_examples: Sequence[Example],
                          predictions: Sequence | np.ndarray, output_dir: str, *,
                          split: str | None = None) -> str:
    """Writes the server's file for `task` into output_dir and returns its path.

    test_examples: as read by read_glue_tsv / read_glue_tfds from a test split (their `index`
    is the submission's index). predictions: one per example, in the same order: class ids
    [N] or scores [N, num_labels] for classification, scores [N] for STS-B. MNLI needs
    split="test_matched" / "test_mismatched" unless the guids say it.
    """
    spec = get_task(task)
    split = _test_split(spec, test_examples, split)
    predictions = np.asarray(predictions)
    if len(predictions) != len(test_examples):
        raise ValueError(f"{len(predictions)} predictions for {len(test_examples)} GLUE "
                         f"{spec.name} test examples: pass one per example, in order.")
    no_index = next((e for e in test_examples if e.index is None), None)
    if no_index is not None:
        raise ValueError(f"example {no_index.guid} has no test-file index: read the test split "
                         "with read_glue_tsv or read_glue_tfds.")
    indices = [e.index for e in test_examples]
    if len(set(indices)) != len(indices):
        raise ValueError(f"GLUE {spec.name} test examples repeat an index: pass each test "
                         "example once.")
    rows = _prediction_strings(spec, predictions)
    tf.io.gfile.makedirs(output_dir)
    path = os.path.join(output_dir, SUBMISSION_FILES[spec.name, split])
    with tf.io.gfile.GFile(path, "w") as f:
        f.write("".join(f"{index}\t{row}\n"
                        for index, row in [("index", "prediction"), *zip(indices, rows)]))
    log.info("Wrote %d GLUE %s %s predictions to %s.", len(rows), spec.name, split, path)
    return path
