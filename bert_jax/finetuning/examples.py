"""`Example`: one sentence (pair) with its label, from any reader; `featurize` -> BERT arrays.

The readers (`glue_data.read_glue_tsv`, `glue_data.read_glue_tfds`, `table_data.read_table`)
all give `Example(guid, text_a, text_b, label, index)`. `label` is a class index, a float
regression target, or None for unlabeled rows; `class_id` and `regression_target` parse a
label value with one shared error line.

`featurize` turns examples into fixed-length arrays (features.encode per example):

  input_ids, input_mask, segment_ids  [N, L] int32
  label_ids                           [N] int32 (-1 when unlabeled), float32 for regression
  example_weights                     [N] float32, 1.0 (0.0 is left for padding examples)
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np

from bert_jax.finetuning import features
from bert_jax.tokenization import FullTokenizer

__all__ = ["Example", "class_id", "regression_target", "featurize"]


@dataclasses.dataclass(frozen=True)
class Example:
    """One sentence or sentence pair with its label."""
    guid: str                      # "<split>-<id>": unique within a split, for logs and errors
    text_a: str
    text_b: str | None
    label: int | float | None      # class index, regression target, or None (unlabeled)
    index: str | None = None       # the file's index/id column: a GLUE submission's `index`


def class_id(value: str, labels: Sequence[str], where: str, fix: str) -> int:
    """The position of `value` in `labels`; `where` and `fix` complete the error line."""
    try:
        return list(labels).index(value)
    except ValueError:
        raise ValueError(f"{where}: label {value!r} is not one of {list(labels)}: {fix}") from None


def regression_target(value: Any, where: str) -> float:
    """`value` as a finite float (bools and NaN/inf are refused)."""
    try:
        target = float(value)
    except (TypeError, ValueError):
        target = math.nan
    if isinstance(value, bool) or not math.isfinite(target):
        raise ValueError(f"{where}: regression label {value!r} is not a finite number: fix the "
                         "value (or read the file as classification with a label_list).")
    return target


def featurize(examples: Sequence[Example], tokenizer: FullTokenizer, max_seq_length: int, *,
              regression: bool | None = None) -> dict[str, np.ndarray]:
    """Examples -> [N, L] BERT inputs plus label_ids and example_weights (see module doc).

    regression=None infers it from the labels (any float label -> regression). Unlabeled
    examples get label_ids -1 (-1.0 for regression).
    """
    if regression is None:
        regression = any(isinstance(e.label, float) for e in examples)
    encoded = [features.encode(tokenizer, e.text_a, e.text_b, max_seq_length) for e in examples]
    arrays = {key: (np.stack([x[key] for x in encoded]) if encoded
                    else np.zeros((0, max_seq_length), np.int32))
              for key in ("input_ids", "input_mask", "segment_ids")}
    labels = [-1 if e.label is None else e.label for e in examples]
    if regression:
        arrays["label_ids"] = np.asarray(labels, np.float32).reshape(len(examples))
    else:
        bad = next((e for e in examples if isinstance(e.label, float)), None)
        if bad is not None:
            raise ValueError(f"example {bad.guid} has the float label {bad.label} but "
                             "regression=False: pass regression=True.")
        arrays["label_ids"] = np.asarray(labels, np.int32).reshape(len(examples))
    arrays["example_weights"] = np.ones(len(examples), np.float32)
    return arrays
