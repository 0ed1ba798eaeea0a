"""The user's own sentence(-pair) data: a .tsv / .csv with a header row, or a .jsonl file.

  read_table(path, text_a_column, text_b_column, label_column, label_list, regression)

gives `examples.Example`s, as the GLUE readers do. Classification labels are positions in
`label_list` (so train, dev and test agree), regression labels floats, and rows without a
`label_column` are unlabeled (None). .tsv is read as GLUE writes it (tabs, no quoting); .csv
as RFC 4180 (quoted fields may hold commas and line breaks). Bad input raises a one-line
ValueError naming the file, the line and the fix; blank lines are counted and logged.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
from typing import Any, Iterable, Sequence

from bert_jax.finetuning.examples import Example, class_id, regression_target
from transformer_jax import textfiles

log = logging.getLogger(__name__)

__all__ = ["read_table"]


def _table_rows(path: str, text: str) -> Iterable[tuple[int, dict[str, Any]]]:
    """(line number, {column: value}) of a .tsv/.csv with a header row or a .jsonl file."""
    extension = os.path.splitext(path)[1].lower()
    if extension == ".jsonl":
        blank = 0
        for line_number, line in enumerate(textfiles.split_lines(text), start=1):
            if not line.strip():
                blank += 1
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path} line {line_number} is not valid JSON ({error.msg}): "
                                 "write one JSON object per line.") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path} line {line_number} is a JSON "
                                 f"{type(row).__name__}, not an object: write one "
                                 '{"column": value, ...} object per line.')
            yield line_number, row
        if blank:
            log.warning("%s: skipped %d blank lines.", path, blank)
        return
    if extension == ".tsv":
        # As GLUE writes TSVs: tabs separate, no quoting (quotes are text), one row per line.
        reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t",
                            quoting=csv.QUOTE_NONE)
    elif extension == ".csv":
        # RFC 4180 (what spreadsheets and pandas write): quoted fields may hold commas and
        # line breaks.
        reader = csv.reader(io.StringIO(text, newline=""))
    else:
        raise ValueError(f"{path}: unknown table format {extension!r}: use .tsv or .csv (with a "
                         "header row) or .jsonl (one JSON object per line).")
    header, blank = None, 0
    try:
        for fields in reader:
            if not fields or fields == [""]:
                blank += 1
                continue
            if header is None:
                header = fields
                continue
            if len(fields) != len(header):
                raise ValueError(
                    f"{path} line {reader.line_num} has {len(fields)} fields, expected "
                    f"{len(header)} as in its header: fix the separators or quoting of that "
                    "row.")
            yield reader.line_num, dict(zip(header, fields))
    except csv.Error as error:
        raise ValueError(f"{path} line {reader.line_num}: {error}: fix the quoting of that "
                         "row.") from None
    if blank:
        log.warning("%s: skipped %d blank lines.", path, blank)


def read_table(path: str, text_a_column: str, text_b_column: str | None = None,
               label_column: str | None = None, label_list: Sequence[str] | None = None,
               regression: bool = False) -> list[Example]:
    """Examples from the user's own .tsv/.csv (header row naming the columns) or .jsonl.

    Classification needs `label_list`: label ids are positions in it, so train, dev and test
    agree (values are compared as strings, so a JSON 1 matches "1"). regression=True reads
    labels as floats. Without `label_column` every label is None (data to predict).
    """
    if label_column is not None and not regression and label_list is None:
        raise ValueError(f"{path}: label_column={label_column!r} needs label_list=[...] (the "
                         "classes in a fixed order) or regression=True.")
    if regression and label_list is not None:
        raise ValueError("pass either label_list (classification) or regression=True, not both.")
    text = textfiles.read_utf8(path, "data file")
    if not text.strip():
        raise ValueError(f"data file {path} is empty: it needs a header row and one row per "
                         "example (or one JSON object per line).")
    label_strings = None if label_list is None else [str(label) for label in label_list]
    columns = {"text_a_column": text_a_column, "text_b_column": text_b_column,
               "label_column": label_column}
    columns = {arg: name for arg, name in columns.items() if name is not None}
    stem = os.path.basename(path)
    examples = []
    for line_number, row in _table_rows(path, text):
        where = f"{path} line {line_number}"
        absent = {arg: name for arg, name in columns.items() if name not in row}
        if absent:
            what = "header" if not path.lower().endswith(".jsonl") else "object"
            raise ValueError(f"{where}: no column {' '.join(map(repr, absent.values()))} (the "
                             f"{what} has {list(row)}): fix {', '.join(absent)}.")
        texts = []
        for name in (text_a_column, text_b_column):
            value = None if name is None else row[name]
            if name is not None and not isinstance(value, str):
                raise ValueError(f"{where}: column {name!r} is {value!r}, not text: write a "
                                 "string.")
            texts.append(value)
        label = None
        if label_column is not None:
            value = row[label_column]
            if regression:
                label = regression_target(value, where)
            else:
                value = value if isinstance(value, str) else json.dumps(value)
                label = class_id(value, label_strings, where,
                                  "fix the value or add it to label_list.")
        examples.append(Example(f"{stem}-{len(examples)}", texts[0], texts[1], label))
    if not examples:
        raise ValueError(f"data file {path} has no examples, only a header: add rows.")
    log.info("Read %d examples from %s.", len(examples), path)
    return examples
