"""GLUE -> `examples.Example`s, from the original TSVs or from TensorFlow Datasets.

Two readers give the same `Example(guid, text_a, text_b, label, index)`:

  read_glue_tsv(task, split, data_dir)   the original GLUE distribution (download_glue_data.py),
                                         read as the original run_classifier.py does: csv with
                                         tabs and quoting=csv.QUOTE_NONE, columns by index
  read_glue_tfds(task, split, data_dir)  tfds.load("glue/<task>")

(The user's own tables are read by `table_data.read_table`; `examples.featurize` turns any of
them into BERT input arrays.)

`label` is an index into `TaskSpec.labels` for classification, a float for regression (STS-B)
and None for unlabeled test rows. The label order is TensorFlow Datasets' class order, so the
TSV and TFDS readers give the same ids. `labels` holds the label values as written in the GLUE
TSVs ("0"/"1" for CoLA, SST-2, MRPC, QQP and WNLI; words for MNLI, QNLI, RTE, AX), which are
also what the GLUE server expects in a submission. Note: MNLI's order (entailment, neutral,
contradiction) differs from the original run_classifier.py (contradiction, entailment,
neutral), so a classifier head fine-tuned there must be permuted.

Splits are named train / dev / test (MNLI: dev_matched, dev_mismatched, test_matched,
test_mismatched; AX has only test). read_glue_tfds maps dev* to TFDS's validation*.

Bad input raises a one-line ValueError / FileNotFoundError naming the file, the line and the
fix. The only rows ever skipped are blank lines and QQP's known-malformed rows (the real
train.tsv has a few rows whose fields are split or merged by stray tabs and line breaks);
both are counted and logged, never dropped silently.
"""
from __future__ import annotations

import csv
import dataclasses
import logging
import os
import re

import tensorflow as tf

from bert_jax.finetuning.examples import Example, class_id, regression_target
from transformer_jax import textfiles

log = logging.getLogger(__name__)

__all__ = ["TsvFormat", "TaskSpec", "TASKS", "get_task", "read_glue_tsv", "read_glue_tfds"]

# Log at most this many line numbers of skipped rows.
_MAX_LINES_LOGGED = 10


@dataclasses.dataclass(frozen=True)
class TsvFormat:
    """Where one split of the original GLUE distribution keeps its fields.

    Column indices count from 0; negative ones from the end (MNLI's gold label is last).
    With a header, every row must have as many fields as the header; the header's names at
    the used columns are checked against `header`, so a wrong file fails on line 1.
    """
    file: str                                  # name in the task's GLUE directory
    text_a: int
    text_b: int | None = None
    label: int | None = None                   # None: unlabeled (a test file)
    index: int | None = None                   # the index/id column, if any
    header: tuple[str, ...] | None = None      # expected header; None: no header row
    num_columns: int | None = None             # fields per row when there is no header
    alt_files: tuple[str, ...] = ()            # other names the file goes by
    count_malformed: bool = False              # QQP: skip rows of the wrong width, counted


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """One GLUE task: its text fields, labels, splits and original file formats."""
    name: str                          # TFDS config name: glue/<name>
    glue_dir: str                      # directory name in the GLUE distribution
    text_columns: tuple[str, ...]      # TFDS feature names of text_a (and text_b)
    labels: tuple[str, ...] | None     # label values as in the TSVs (id = position); None: STS-B
    label_names: tuple[str, ...] | None  # TFDS class names for the same ids
    train_splits: tuple[str, ...]
    dev_splits: tuple[str, ...]
    test_splits: tuple[str, ...]
    tsv: dict[str, TsvFormat] = dataclasses.field(hash=False)  # split -> format

    @property
    def regression(self) -> bool:
        return self.labels is None

    @property
    def splits(self) -> tuple[str, ...]:
        return self.train_splits + self.dev_splits + self.test_splits

    def check_split(self, split: str) -> None:
        if split not in self.splits:
            raise ValueError(f"GLUE task {self.name} has no split {split!r}: choose from "
                             f"{list(self.splits)}.")


def _three(header: tuple[str, ...], text_a: int, text_b: int | None,
           label: int, index: int | None, test_header: tuple[str, ...], test_a: int,
           test_b: int | None, test_index: int, **kwargs) -> dict[str, TsvFormat]:
    """train/dev with one header and label, test without the label."""
    labeled = dict(text_a=text_a, text_b=text_b, label=label, index=index, header=header,
                   **kwargs)
    return {"train": TsvFormat("train.tsv", **labeled), "dev": TsvFormat("dev.tsv", **labeled),
            "test": TsvFormat("test.tsv", text_a=test_a, text_b=test_b, index=test_index,
                              header=test_header, **kwargs)}


_PAIR_HEADER = ("index", "sentence1", "sentence2")
_MNLI_HEADER = ("index", "promptID", "pairID", "genre", "sentence1_binary_parse",
                "sentence2_binary_parse", "sentence1_parse", "sentence2_parse", "sentence1",
                "sentence2")
_MNLI_DEV_HEADER = _MNLI_HEADER + ("label1", "label2", "label3", "label4", "label5", "gold_label")
_MNLI_LABELS = ("entailment", "neutral", "contradiction")
_STSB_HEADER = ("index", "genre", "filename", "year", "old_index", "source1", "source2",
                "sentence1", "sentence2")
_MRPC_COLUMNS = ("#1 ID", "#2 ID", "#1 String", "#2 String")
_NLI_PAIR = ("premise", "hypothesis")
_TRAIN_DEV_TEST = (("train",), ("dev",), ("test",))

TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in [
    TaskSpec(
        "cola", "CoLA", ("sentence",), ("0", "1"), ("unacceptable", "acceptable"),
        *_TRAIN_DEV_TEST,
        # train/dev: no header; (source, label, original author's mark, sentence).
        {split: TsvFormat(f"{split}.tsv", text_a=3, label=1, num_columns=4)
         for split in ("train", "dev")}
        | {"test": TsvFormat("test.tsv", text_a=1, index=0, header=("index", "sentence"))}),
    TaskSpec(
        "sst2", "SST-2", ("sentence",), ("0", "1"), ("negative", "positive"), *_TRAIN_DEV_TEST,
        _three(("sentence", "label"), 0, None, 1, None, ("index", "sentence"), 1, None, 0)),
    TaskSpec(
        "mrpc", "MRPC", ("sentence1", "sentence2"), ("0", "1"),
        ("not_equivalent", "equivalent"), *_TRAIN_DEV_TEST,
        _three(("Quality",) + _MRPC_COLUMNS, 3, 4, 0, None, ("index",) + _MRPC_COLUMNS,
               3, 4, 0)),
    TaskSpec(
        "qqp", "QQP", ("question1", "question2"), ("0", "1"), ("not_duplicate", "duplicate"),
        *_TRAIN_DEV_TEST,
        _three(("id", "qid1", "qid2", "question1", "question2", "is_duplicate"), 3, 4, 5, 0,
               ("id", "question1", "question2"), 1, 2, 0, count_malformed=True)),
    TaskSpec(
        "stsb", "STS-B", ("sentence1", "sentence2"), None, None, *_TRAIN_DEV_TEST,
        _three(_STSB_HEADER + ("score",), 7, 8, 9, 0, _STSB_HEADER, 7, 8, 0)),
    TaskSpec(
        "mnli", "MNLI", _NLI_PAIR, _MNLI_LABELS, _MNLI_LABELS, ("train",),
        ("dev_matched", "dev_mismatched"), ("test_matched", "test_mismatched"),
        {"train": TsvFormat("train.tsv", 8, 9, -1, 0,
                            _MNLI_HEADER + ("label1", "gold_label"))}
        | {f"dev_{m}": TsvFormat(f"dev_{m}.tsv", 8, 9, -1, 0, _MNLI_DEV_HEADER)
           for m in ("matched", "mismatched")}
        | {f"test_{m}": TsvFormat(f"test_{m}.tsv", 8, 9, None, 0, _MNLI_HEADER)
           for m in ("matched", "mismatched")}),
    TaskSpec(
        "qnli", "QNLI", ("question", "sentence"), ("entailment", "not_entailment"),
        ("entailment", "not_entailment"), *_TRAIN_DEV_TEST,
        _three(("index", "question", "sentence", "label"), 1, 2, 3, 0,
               ("index", "question", "sentence"), 1, 2, 0)),
    TaskSpec(
        "rte", "RTE", ("sentence1", "sentence2"), ("entailment", "not_entailment"),
        ("entailment", "not_entailment"), *_TRAIN_DEV_TEST,
        _three(_PAIR_HEADER + ("label",), 1, 2, 3, 0, _PAIR_HEADER, 1, 2, 0)),
    TaskSpec(
        "wnli", "WNLI", ("sentence1", "sentence2"), ("0", "1"), ("not_entailment", "entailment"),
        *_TRAIN_DEV_TEST,
        _three(_PAIR_HEADER + ("label",), 1, 2, 3, 0, _PAIR_HEADER, 1, 2, 0)),
    TaskSpec(
        # The diagnostic set, predicted with an MNLI classifier (hence MNLI's labels).
        "ax", "diagnostic", _NLI_PAIR, _MNLI_LABELS, _MNLI_LABELS, (), (), ("test",),
        {"test": TsvFormat("AX.tsv", 1, 2, None, 0, _PAIR_HEADER,
                           alt_files=("diagnostic.tsv",))}),
]}


def get_task(task: str | TaskSpec) -> TaskSpec:
    """A spec by name; case, '-' and '_' are ignored ("SST-2", "sts_b", "MNLI" all work)."""
    if isinstance(task, TaskSpec):
        return task
    key = re.sub(r"[-_]", "", str(task).lower())
    if key not in TASKS:
        raise ValueError(f"unknown GLUE task {task!r}: choose from {list(TASKS)}.")
    return TASKS[key]


# ---------------------------------------------------------------------------------------------
# The original GLUE TSVs
# ---------------------------------------------------------------------------------------------


def _tsv_fields(line: str, where: str) -> list[str]:
    """One line as the original reads it (csv, tab, QUOTE_NONE: quotes are plain text)."""
    try:
        return next(csv.reader([line], delimiter="\t", quoting=csv.QUOTE_NONE))
    except csv.Error as error:
        raise ValueError(f"{where}: {error}: remove the stray carriage return (or other "
                         "control character) from the line.") from None


def _glue_file(spec: TaskSpec, split: str, fmt: TsvFormat, data_dir: str) -> str:
    """The split's file in data_dir, or in data_dir/<GLUE directory of the task>."""
    tried = [os.path.join(directory, name)
             for directory in (data_dir, os.path.join(data_dir, spec.glue_dir))
             for name in (fmt.file, *fmt.alt_files)]
    for path in tried:
        if tf.io.gfile.exists(path):
            return path
    raise FileNotFoundError(
        f"GLUE {spec.name} {split} file not found (looked for {', '.join(tried)}): pass the "
        f"task's directory of the GLUE data (e.g. glue_data/{spec.glue_dir}) as data_dir.")


def read_glue_tsv(task: str | TaskSpec, split: str, data_dir: str) -> list[Example]:
    """One split of a GLUE task from the original distribution's TSV file.

    data_dir is the task's directory (glue_data/MRPC), like run_classifier.py's --data_dir,
    or the GLUE root above it (glue_data).
    """
    spec = get_task(task)
    spec.check_split(split)
    fmt = spec.tsv[split]
    path = _glue_file(spec, split, fmt, data_dir)
    lines = textfiles.split_lines(textfiles.read_utf8(path, f"GLUE {spec.name} {split} file"))
    if not any(line.strip() for line in lines):
        raise ValueError(f"GLUE {spec.name} {split} file {path} is empty: download it again "
                         "(download_glue_data.py) or pass the right file.")
    used = {"text_a": fmt.text_a, "text_b": fmt.text_b, "label": fmt.label, "index": fmt.index}
    used = {what: column for what, column in used.items() if column is not None}
    width = fmt.num_columns
    first = 0
    if fmt.header is not None:
        first = 1
        header = _tsv_fields(lines[0], f"{path} line 1")
        width = len(header)
        for what, column in used.items():
            got = header[column] if -width <= column < width else None
            if got != fmt.header[column]:
                raise ValueError(
                    f"{path} line 1: header column {column} ({what}) is {got!r}, expected "
                    f"{fmt.header[column]!r}: this is not the {split} file of GLUE {spec.name} "
                    f"(header {header[:6]}...); pass the right file or task.")
    examples, blank, malformed = [], 0, []
    for line_number, line in enumerate(lines[first:], start=first + 1):
        if not line.strip():
            blank += 1
            continue
        where = f"{path} line {line_number}"
        fields = _tsv_fields(line, where)
        if len(fields) != width:
            if fmt.count_malformed:
                malformed.append(line_number)
                continue
            raise ValueError(
                f"{where} has {len(fields)} tab-separated fields, expected {width} (GLUE "
                f"{spec.name} {split} format): remove stray tabs or line breaks inside the text.")
        label = None
        if fmt.label is not None:
            raw = fields[fmt.label]
            label = (regression_target(raw, where) if spec.regression else
                     class_id(raw, spec.labels, where,
                               f"fix the value or read it as another GLUE task than "
                               f"{spec.name}."))
        index = None if fmt.index is None else fields[fmt.index]
        row_id = index if index is not None else str(len(examples))
        examples.append(Example(
            guid=f"{split}-{row_id}", text_a=fields[fmt.text_a],
            text_b=None if fmt.text_b is None else fields[fmt.text_b],
            label=label, index=index))
    if blank:
        log.warning("%s: skipped %d blank lines.", path, blank)
    if malformed:
        log.warning("%s: skipped %d malformed rows (not %d fields; the real GLUE QQP files "
                    "have a few), at lines %s%s.", path, len(malformed), width,
                    malformed[:_MAX_LINES_LOGGED], " ..." if len(malformed) > _MAX_LINES_LOGGED
                    else "")
    if not examples:
        raise ValueError(f"GLUE {spec.name} {split} file {path} has no examples, only a "
                         "header: download it again or pass the right file.")
    log.info("Read %d examples from %s.", len(examples), path)
    return examples


# ---------------------------------------------------------------------------------------------
# TensorFlow Datasets
# ---------------------------------------------------------------------------------------------


def _tfds_split(split: str) -> str:
    """dev, dev_matched, dev[:10%] -> validation, validation_matched, validation[:10%]."""
    return re.sub(r"^dev(?=$|_|\[)", "validation", split)


def read_glue_tfds(task: str | TaskSpec, split: str, data_dir: str | None = None
                   ) -> list[Example]:
    """One split of tfds.load("glue/<task>"), in the original file order.

    split: our names (train, dev, dev_matched, test_mismatched, ...) or TFDS's (validation,
    validation_matched, ...), with TFDS slicing if wanted ("train[:1000]"). TFDS marks
    unlabeled test rows with label -1: they become None.
    """
    import tensorflow_datasets as tfds

    spec = get_task(task)
    name = f"glue/{spec.name}"
    ds = tfds.load(name, split=_tfds_split(split), data_dir=data_dir, shuffle_files=False)
    missing = [c for c in (*spec.text_columns, "label", "idx") if c not in ds.element_spec]
    if missing:
        raise ValueError(f"TFDS {name} has no features {missing} (it has "
                         f"{sorted(ds.element_spec)}): update tensorflow-datasets.")
    rows = sorted(tfds.as_numpy(ds), key=lambda row: int(row["idx"]))
    examples, unlabeled = [], 0
    split_name = re.sub(r"\[.*", "", split)  # "train[:1000]" -> "train" in the guids
    for row in rows:
        texts = [row[c].decode("utf-8") for c in spec.text_columns]
        raw = row["label"].item()
        label: int | float | None
        if raw == -1:
            label, unlabeled = None, unlabeled + 1
        elif spec.regression:
            label = float(raw)
        elif not 0 <= raw < len(spec.labels):
            raise ValueError(f"TFDS {name} {split} idx {row['idx']}: label {raw} is outside "
                             f"[0, {len(spec.labels)}): rebuild the dataset (tfds build).")
        else:
            label = int(raw)
        index = str(int(row["idx"]))
        examples.append(Example(f"{split_name}-{index}", texts[0], texts[1] if len(texts) > 1
                                else None, label, index))
    if unlabeled and not split.startswith("test"):
        log.warning("TFDS %s %s: %d of %d examples have no label (-1).", name, split, unlabeled,
                    len(examples))
    if not examples:
        raise ValueError(f"TFDS {name} split {split} is empty: check the split name.")
    log.info("Read %d examples from TFDS %s %s.", len(examples), name, split)
    return examples
