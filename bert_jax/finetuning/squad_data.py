"""SQuAD v1.1 / v2.0 -> BERT inputs, as the original google-research/bert ``run_squad.py``.

Two steps:

  1. ``read_squad_examples`` (a SQuAD JSON file) or ``tfds_squad_examples`` (``squad/v1.1``,
     ``squad/v2.0``) -> ``SquadExample``s: the context split on whitespace into words
     (``doc_tokens``) and, for training, the answer as word indices. An answer whose
     character offset lands on words that do not contain its text is an error (or, with
     ``on_mismatch="skip"``, dropped and counted in a warning), never silently kept.
  2. ``convert_examples_to_features`` -> one ``InputFeatures`` per window of the context:

       [CLS] question [SEP] context-window [SEP] [PAD]...

     The question is cut to ``max_query_length`` pieces; windows of ``max_seq_length -
     len(question) - 3`` context pieces start every ``doc_stride`` pieces. Each window keeps
     the maps that post-processing (``squad_postprocess``) needs to turn logits back into
     text: ``token_to_orig_map`` (window position -> word index) and
     ``token_is_max_context`` (whether this window gives the piece its most context).

Stacked int32 arrays of all features (``features_to_arrays``), N = number of windows:

  input_ids        [N, L]  token ids, 0-padded
  input_mask       [N, L]  1 on real tokens
  segment_ids      [N, L]  0 for [CLS] question [SEP], 1 for the window and its [SEP]
  start_positions  [N]     answer start in the window; 0 ([CLS]) when the answer is outside
  end_positions    [N]     the window or the question has none (also for eval features)
  example_index    [N]     index of the feature's example
  unique_id        [N]     the feature's id, to match model outputs to features
"""
from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any, Iterable, Sequence

import numpy as np

from bert_jax.tokenization import FullTokenizer
from transformer_jax import textfiles

log = logging.getLogger(__name__)

__all__ = ["SquadExample", "InputFeatures", "DocSpan", "read_squad_examples",
           "parse_squad_json", "read_squad_json", "tfds_squad_examples", "tfds_squad_json",
           "examples_from_qas",
           "split_context", "convert_examples_to_features", "features_to_arrays",
           "FIRST_UNIQUE_ID"]

# The original numbers features from 10^9 (fits int32).
FIRST_UNIQUE_ID = 1_000_000_000
_MISMATCH_MODES = ("raise", "skip")


@dataclasses.dataclass(frozen=True)
class SquadExample:
    """One question about one context.

    For training examples ``start_position``/``end_position`` are word indices into
    ``doc_tokens`` (-1 for impossible questions); for eval examples they are None and the
    gold answers are in ``answer_texts``.
    """
    qas_id: str
    question_text: str
    doc_tokens: tuple[str, ...]  # the context split on whitespace
    orig_answer_text: str | None = None
    start_position: int | None = None
    end_position: int | None = None
    is_impossible: bool = False
    answer_texts: tuple[str, ...] = ()  # every gold answer (several in dev sets)
    plausible_answer_texts: tuple[str, ...] = ()  # v2.0 only; not trained on, as the original


@dataclasses.dataclass(frozen=True)
class DocSpan:
    """A window of the context's word pieces: pieces [start, start + length)."""
    start: int
    length: int


@dataclasses.dataclass(frozen=True)
class InputFeatures:
    """One window of one example, ready for the model (lists are length max_seq_length)."""
    unique_id: int
    example_index: int
    doc_span_index: int
    tokens: list[str]  # unpadded: [CLS] question [SEP] window [SEP]
    token_to_orig_map: dict[int, int]  # position in tokens -> index in doc_tokens
    token_is_max_context: dict[int, bool]  # position in tokens -> max context for the piece
    input_ids: list[int]
    input_mask: list[int]
    segment_ids: list[int]
    start_position: int | None = None  # None for eval features
    end_position: int | None = None
    is_impossible: bool = False


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


def _is_whitespace(c: str) -> bool:
    """The original's word separators (U+202F, narrow no-break space, occurs in SQuAD)."""
    return c in " \t\r\n" or ord(c) == 0x202F


def split_context(context: str) -> tuple[list[str], list[int]]:
    """Context -> (words, char_to_word_offset): the word index of every character.

    A whitespace character maps to the word before it (-1 before the first word).
    """
    doc_tokens: list[str] = []
    char_to_word_offset: list[int] = []
    prev_is_whitespace = True
    for c in context:
        if _is_whitespace(c):
            prev_is_whitespace = True
        else:
            if prev_is_whitespace:
                doc_tokens.append(c)
            else:
                doc_tokens[-1] += c
            prev_is_whitespace = False
        char_to_word_offset.append(len(doc_tokens) - 1)
    return doc_tokens, char_to_word_offset


class _Mismatches:
    """Counts answers dropped under on_mismatch='skip' (or raises under 'raise')."""

    def __init__(self, mode: str, source: str):
        if mode not in _MISMATCH_MODES:
            raise ValueError(f"on_mismatch={mode!r}: use 'raise' or 'skip'.")
        self.mode, self.source, self.count = mode, source, 0

    def found(self, qas_id: str, why: str) -> None:
        if self.mode == "raise":
            raise ValueError(
                f"SQuAD answer span does not match its context in {self.source}, question "
                f"{qas_id!r}: {why}; fix answer_start/text in the data, or pass "
                "on_mismatch='skip' to drop such questions.")
        self.count += 1

    def report(self) -> None:
        if self.count:
            log.warning("%s: skipped %d training questions whose answer span does not match "
                        "the context (on_mismatch='skip').", self.source, self.count)


def examples_from_qas(context: str, qas: Iterable[dict], is_training: bool,
                      mismatches: _Mismatches) -> list[SquadExample]:
    """The questions of one paragraph -> examples sharing one ``doc_tokens`` tuple.

    ``qas`` are dicts in the SQuAD JSON layout: id, question, answers [{text, answer_start}],
    and for v2.0 is_impossible and plausible_answers.
    """
    words, char_to_word_offset = split_context(context)
    doc_tokens = tuple(words)
    examples = []
    for qa in qas:
        qas_id = str(qa["id"])
        answers = list(qa.get("answers") or [])
        is_impossible = bool(qa.get("is_impossible", False))
        fields: dict[str, Any] = dict(
            qas_id=qas_id, question_text=qa["question"], doc_tokens=doc_tokens,
            is_impossible=is_impossible,
            answer_texts=tuple(a["text"] for a in answers),
            plausible_answer_texts=tuple(a["text"] for a in qa.get("plausible_answers") or []))
        if is_training:
            if is_impossible:
                fields.update(orig_answer_text="", start_position=-1, end_position=-1)
            else:
                # The original demands exactly one answer; we train on the first of several.
                if not answers:
                    raise ValueError(f"training question {qas_id!r} has no answer and is not "
                                     "marked is_impossible: add an answer or set "
                                     "is_impossible (SQuAD v2.0).")
                span = _answer_word_span(answers[0], context, doc_tokens,
                                         char_to_word_offset)
                if isinstance(span, str):
                    mismatches.found(qas_id, span)
                    continue
                fields.update(orig_answer_text=answers[0]["text"], start_position=span[0],
                              end_position=span[1])
        examples.append(SquadExample(**fields))
    return examples


def _answer_word_span(answer: dict, context: str, doc_tokens: Sequence[str],
                      char_to_word_offset: Sequence[int]) -> tuple[int, int] | str:
    """(first word, last word) of an answer, or why its offset does not fit the context."""
    text, offset = answer["text"], int(answer["answer_start"])
    end_char = offset + len(text) - 1
    if not text.strip():
        return "the answer text is empty"
    if offset < 0 or end_char >= len(context):
        return (f"answer_start {offset} + {len(text)} characters is outside the "
                f"{len(context)}-character context")
    start, end = char_to_word_offset[offset], char_to_word_offset[end_char]
    actual_text = " ".join(doc_tokens[max(start, 0):end + 1])
    cleaned_answer_text = " ".join(text.split())
    if start < 0 or actual_text.find(cleaned_answer_text) == -1:
        return (f"answer_start {offset} gives words {actual_text!r}, which do not contain "
                f"{cleaned_answer_text!r}")
    return start, end


def parse_squad_json(data: dict, is_training: bool, *, on_mismatch: str = "raise",
                     source: str = "SQuAD data") -> list[SquadExample]:
    """A parsed SQuAD JSON object ({"version", "data": [{"paragraphs": ...}]}) -> examples."""
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise ValueError(f"{source} is not SQuAD JSON: expected an object with a 'data' list "
                         "of articles (as in train-v1.1.json / dev-v2.0.json).")
    mismatches = _Mismatches(on_mismatch, source)
    examples = []
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            examples.extend(examples_from_qas(paragraph["context"], paragraph["qas"],
                                              is_training, mismatches))
    mismatches.report()
    return examples


def read_squad_examples(path: str, is_training: bool, *,
                        on_mismatch: str = "raise") -> list[SquadExample]:
    """A SQuAD v1.1 or v2.0 JSON file (local or gs://) -> examples.

    on_mismatch: 'raise' (default) stops at a training answer whose offset does not match
    its text; 'skip' drops those questions and logs their number.
    """
    return parse_squad_json(read_squad_json(path), is_training, on_mismatch=on_mismatch,
                            source=f"SQuAD file {path}")


def read_squad_json(path: str) -> dict:
    """The parsed JSON of a SQuAD file (what the official scoring reads)."""
    text = textfiles.read_utf8(path, "SQuAD file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"SQuAD file {path} is not valid JSON ({error.msg} at line "
                         f"{error.lineno}, column {error.colno}): pass the original "
                         "train/dev .json file.") from None


def tfds_squad_examples(name: str, split: str, is_training: bool, *,
                        data_dir: str | None = None,
                        on_mismatch: str = "raise") -> list[SquadExample]:
    """A TFDS SQuAD dataset (``squad/v1.1``, ``squad/v2.0``; splits train, validation)."""
    return parse_squad_json(tfds_squad_json(name, split, data_dir), is_training,
                            on_mismatch=on_mismatch, source=f"TFDS {name}/{split}")


def tfds_squad_json(name: str, split: str, data_dir: str | None = None) -> dict:
    """A TFDS SQuAD split in the official JSON layout, which the official scoring reads.

    TFDS gives one record per question with its own context; consecutive questions about
    the same paragraph become one paragraph (sharing its ``doc_tokens`` when parsed).
    """
    import tensorflow_datasets as tfds

    ds = tfds.load(name, split=split, data_dir=data_dir, shuffle_files=False)
    missing = {"id", "question", "context", "answers"} - set(ds.element_spec)
    if missing:
        raise ValueError(f"TFDS dataset {name} lacks the SQuAD features {sorted(missing)} (it "
                         f"has {sorted(ds.element_spec)}): use squad/v1.1 or squad/v2.0.")
    articles: list[dict] = []
    for record in ds.as_numpy_iterator():
        title = record["title"].decode("utf-8") if "title" in record else ""
        context = record["context"].decode("utf-8")
        if not articles or articles[-1]["title"] != title:
            articles.append({"title": title, "paragraphs": []})
        paragraphs = articles[-1]["paragraphs"]
        if not paragraphs or paragraphs[-1]["context"] != context:
            paragraphs.append({"context": context, "qas": []})
        paragraphs[-1]["qas"].append(_tfds_qa(record))
    return {"version": name.rsplit("v", 1)[-1], "data": articles}


def _tfds_qa(record: dict) -> dict:
    """A TFDS SQuAD record -> the JSON layout of one question."""
    def answers(key):
        if key not in record:
            return []
        texts, starts = record[key]["text"], record[key]["answer_start"]
        return [{"text": t.decode("utf-8"), "answer_start": int(s)}
                for t, s in zip(texts, starts)]
    return {"id": record["id"].decode("utf-8"), "question": record["question"].decode("utf-8"),
            "answers": answers("answers"), "plausible_answers": answers("plausible_answers"),
            "is_impossible": bool(record.get("is_impossible", False))}


# ---------------------------------------------------------------------------------------------
# Featurizing
# ---------------------------------------------------------------------------------------------


def _improve_answer_span(doc_tokens: Sequence[str], input_start: int, input_end: int,
                         tokenizer: FullTokenizer, orig_answer_text: str) -> tuple[int, int]:
    """The smallest piece span inside [input_start, input_end] whose pieces equal the
    tokenized answer.

    The word span can be too wide: for the answer "1895" in the word "(1895)." the word's
    pieces are "( 1895 ) ." and the answer is only the second one.
    """
    tok_answer_text = " ".join(tokenizer.tokenize(orig_answer_text))
    for new_start in range(input_start, input_end + 1):
        for new_end in range(input_end, new_start - 1, -1):
            if " ".join(doc_tokens[new_start:new_end + 1]) == tok_answer_text:
                return new_start, new_end
    return input_start, input_end


def _doc_spans(num_tokens: int, max_tokens_for_doc: int, doc_stride: int) -> list[DocSpan]:
    """Windows of at most max_tokens_for_doc pieces, starting every doc_stride pieces, until
    one reaches the end (a shorter last stride when a window is shorter than the stride)."""
    spans = []
    start = 0
    while start < num_tokens:
        length = min(num_tokens - start, max_tokens_for_doc)
        spans.append(DocSpan(start, length))
        if start + length == num_tokens:
            break
        start += min(length, doc_stride)
    return spans


def _max_context_spans(doc_spans: Sequence[DocSpan], num_tokens: int) -> list[int]:
    """For each piece, the window where it has the most context (the original's
    ``_check_is_max_context``): score min(left, right context) + 0.01 * window length, the
    first window wins ties."""
    best_span = [-1] * num_tokens
    best_score = [float("-inf")] * num_tokens
    for span_index, span in enumerate(doc_spans):
        end = span.start + span.length - 1
        for position in range(span.start, end + 1):
            score = min(position - span.start, end - position) + 0.01 * span.length
            if score > best_score[position]:
                best_score[position], best_span[position] = score, span_index
    return best_span


def convert_examples_to_features(
        examples: Sequence[SquadExample], tokenizer: FullTokenizer, max_seq_length: int,
        doc_stride: int, max_query_length: int, is_training: bool, *,
        first_unique_id: int = FIRST_UNIQUE_ID,
) -> tuple[list[InputFeatures], dict[str, np.ndarray]]:
    """Examples -> (features, stacked arrays); one feature per context window."""
    if doc_stride < 1:
        raise ValueError(f"doc_stride={doc_stride} must be at least 1.")
    if max_seq_length - max_query_length - 3 < 1:
        raise ValueError(f"max_seq_length={max_seq_length} leaves no room for the context "
                         f"after a {max_query_length}-piece question, [CLS] and two [SEP]: "
                         "raise max_seq_length or lower max_query_length.")
    features: list[InputFeatures] = []
    unique_id = first_unique_id
    prev_doc_tokens = None
    for example_index, example in enumerate(examples):
        query_tokens = tokenizer.tokenize(example.question_text)[:max_query_length]
        if example.doc_tokens is not prev_doc_tokens:  # questions of a paragraph share it
            prev_doc_tokens = example.doc_tokens
            tok_to_orig_index, orig_to_tok_index, all_doc_tokens = [], [], []
            for i, word in enumerate(example.doc_tokens):
                orig_to_tok_index.append(len(all_doc_tokens))
                for sub_token in tokenizer.tokenize(word):
                    tok_to_orig_index.append(i)
                    all_doc_tokens.append(sub_token)

        tok_start = tok_end = None
        if is_training and not example.is_impossible:
            if example.start_position is None or example.end_position is None:
                raise ValueError(f"example {example.qas_id!r} has no answer position: read "
                                 "training data with is_training=True.")
            tok_start = orig_to_tok_index[example.start_position]
            if example.end_position < len(example.doc_tokens) - 1:
                tok_end = orig_to_tok_index[example.end_position + 1] - 1
            else:
                tok_end = len(all_doc_tokens) - 1
            tok_start, tok_end = _improve_answer_span(
                all_doc_tokens, tok_start, tok_end, tokenizer, example.orig_answer_text)

        max_tokens_for_doc = max_seq_length - len(query_tokens) - 3
        doc_spans = _doc_spans(len(all_doc_tokens), max_tokens_for_doc, doc_stride)
        max_context_span = _max_context_spans(doc_spans, len(all_doc_tokens))
        for span_index, span in enumerate(doc_spans):
            tokens = ["[CLS]", *query_tokens, "[SEP]"]
            segment_ids = [0] * len(tokens)
            token_to_orig_map, token_is_max_context = {}, {}
            for split_token_index in range(span.start, span.start + span.length):
                token_to_orig_map[len(tokens)] = tok_to_orig_index[split_token_index]
                token_is_max_context[len(tokens)] = (
                    max_context_span[split_token_index] == span_index)
                tokens.append(all_doc_tokens[split_token_index])
            tokens.append("[SEP]")
            segment_ids += [1] * (span.length + 1)
            input_ids = tokenizer.convert_tokens_to_ids(tokens)
            padding = max_seq_length - len(input_ids)
            start_position = end_position = None
            if is_training:
                start_position = end_position = 0
                doc_end = span.start + span.length - 1
                if (not example.is_impossible and tok_start >= span.start
                        and tok_end <= doc_end):
                    doc_offset = len(query_tokens) + 2
                    start_position = tok_start - span.start + doc_offset
                    end_position = tok_end - span.start + doc_offset
            features.append(InputFeatures(
                unique_id=unique_id, example_index=example_index, doc_span_index=span_index,
                tokens=tokens, token_to_orig_map=token_to_orig_map,
                token_is_max_context=token_is_max_context,
                input_ids=input_ids + [tokenizer.pad_id] * padding,
                input_mask=[1] * len(input_ids) + [0] * padding,
                segment_ids=segment_ids + [0] * padding,
                start_position=start_position, end_position=end_position,
                is_impossible=example.is_impossible))
            unique_id += 1
    return features, features_to_arrays(features, max_seq_length)


def features_to_arrays(features: Sequence[InputFeatures],
                       max_seq_length: int | None = None) -> dict[str, np.ndarray]:
    """Features -> stacked int32 arrays (module docstring); eval positions become 0."""
    if not features:
        if max_seq_length is None:
            raise ValueError("no features to stack: pass max_seq_length for an empty set.")
        seq = np.zeros((0, max_seq_length), np.int32)
        flat = np.zeros((0,), np.int32)
        return {"input_ids": seq, "input_mask": seq.copy(), "segment_ids": seq.copy(),
                "start_positions": flat, "end_positions": flat.copy(),
                "example_index": flat.copy(), "unique_id": flat.copy()}

    def column(get):
        return np.asarray([get(f) for f in features], np.int32)
    return {
        "input_ids": column(lambda f: f.input_ids),
        "input_mask": column(lambda f: f.input_mask),
        "segment_ids": column(lambda f: f.segment_ids),
        "start_positions": column(lambda f: f.start_position or 0),
        "end_positions": column(lambda f: f.end_position or 0),
        "example_index": column(lambda f: f.example_index),
        "unique_id": column(lambda f: f.unique_id),
    }
