"""Multiple-choice data (SWAG): a context and four candidate endings -> [N, 4, L] inputs.

The SWAG release (``train.csv``, ``val.csv``, ``test.csv``) has the columns video-id,
fold-ind, startphrase, sent1, sent2, gold-source, ending0..ending3 and, except in test.csv,
label (the released files also start with an unnamed index column, which is ignored). As in
the original BERT SWAG code, an example is

  context = sent1,   choice i = sent2 + " " + ending_i,   label in 0..3 (None for test)

and each choice is the pair ``[CLS] context [SEP] choice [SEP]`` (``features.pack_ids``,
truncating the longer side), so the model scores the four pairs and a softmax over them
picks the ending.

TFDS: the installed tensorflow-datasets (4.9) has no ``swag`` builder (only ``hellaswag``,
a different data set with other columns), so SWAG is read from its CSV files only.

Arrays (N examples, C = 4 choices, L = max_seq_length):
  input_ids, input_mask, segment_ids  [N, C, L] int32
  label_ids                           [N] int32   index of the right choice; -1 if unknown
"""

import csv
import dataclasses
import io
import logging
from typing import Sequence

import numpy as np

from bert_jax.finetuning import features
from bert_jax.tokenization import FullTokenizer
from transformer_jax import textfiles

log = logging.getLogger(__name__)

NUM_CHOICES = 4
ENDING_COLUMNS = tuple(f"ending{i}" for i in range(NUM_CHOICES))
TEXT_COLUMNS = ("fold-ind", "sent1", "sent2") + ENDING_COLUMNS
LABEL_COLUMN = "label"
NO_LABEL = -1  # label_ids of examples without a label (test.csv)


@dataclasses.dataclass(frozen=True)
class MultipleChoiceExample:
    example_id: str              # SWAG's fold-ind
    context: str                 # sent1
    choices: tuple[str, ...]     # sent2 + " " + ending_i
    label: int | None            # index into choices; None where the file has no label


def read_swag_csv(path: str, has_labels: bool | None = None) -> list[MultipleChoiceExample]:
    """A SWAG CSV file -> examples.

    has_labels: None reads labels when the header has a ``label`` column (train/val) and
    leaves them None otherwise (test); True or False insists on one or the other.
    """
    text = textfiles.read_utf8(path, "SWAG file")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    if has_labels is None:
        has_labels = LABEL_COLUMN in header
    required = TEXT_COLUMNS + ((LABEL_COLUMN,) if has_labels else ())
    missing = [c for c in required if c not in header]
    if missing:
        raise ValueError(f"SWAG file {path} lacks the columns {' '.join(missing)} (its header "
                         f"has {' '.join(header) or 'nothing'}).")
    examples = []
    for row in reader:
        line = reader.line_num
        absent = [c for c in required if row.get(c) is None]
        if absent:
            raise ValueError(f"SWAG file {path} line {line} has too few fields (no "
                             f"{' '.join(absent)}).")
        label = None
        if has_labels:
            value = row[LABEL_COLUMN].strip()
            if value not in {str(i) for i in range(NUM_CHOICES)}:
                raise ValueError(f"SWAG file {path} line {line}: label {value!r} is not one "
                                 f"of 0..{NUM_CHOICES - 1}.")
            label = int(value)
        start = row["sent2"].strip()
        choices = tuple(f"{start} {row[c].strip()}".strip() for c in ENDING_COLUMNS)
        examples.append(MultipleChoiceExample(row["fold-ind"], row["sent1"].strip(), choices,
                                              label))
    log.info("SWAG file %s: %d examples (%s labels).", path, len(examples),
             "with" if has_labels else "without")
    return examples


def featurize_multiple_choice(tokenizer: FullTokenizer,
                              examples: Sequence[MultipleChoiceExample],
                              max_seq_length: int) -> dict[str, np.ndarray]:
    """Examples -> input_ids/input_mask/segment_ids [N, C, L] and label_ids [N]."""
    if max_seq_length < 5:
        raise ValueError(f"max_seq_length={max_seq_length} leaves no room for text")
    if not examples:
        raise ValueError("no multiple-choice examples to featurize.")
    num_choices = len(examples[0].choices)
    keys = ("input_ids", "input_mask", "segment_ids")
    out = {k: np.zeros((len(examples), num_choices, max_seq_length), np.int32) for k in keys}
    out["label_ids"] = np.full(len(examples), NO_LABEL, np.int32)
    for n, example in enumerate(examples):
        if len(example.choices) != num_choices:
            raise ValueError(f"example {example.example_id} has {len(example.choices)} choices,"
                             f" the first has {num_choices}: all need the same number.")
        context = tokenizer.encode(example.context)  # once, shared by the choices
        for c, choice in enumerate(example.choices):
            packed = features.pack_ids(tokenizer, context, tokenizer.encode(choice),
                                       max_seq_length)
            for k in keys:
                out[k][n, c] = packed[k]
        if example.label is not None:
            if not 0 <= example.label < num_choices:
                raise ValueError(f"example {example.example_id}: label {example.label} is not "
                                 f"in 0..{num_choices - 1}.")
            out["label_ids"][n] = example.label
    return out
