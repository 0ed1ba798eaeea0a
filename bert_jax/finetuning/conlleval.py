"""Chunk (entity) precision, recall and F1 exactly as the CoNLL ``conlleval`` perl script
(version 2004-01-26) computes them.

Why not seqeval: its default mode (``mode=None``) ports these rules but extends them
(``S-`` singletons; ``B-`` always starts and ``E-`` always ends a chunk, so ``E-X B-X`` is
two chunks there and one chunk for perl), so it is not the script on every input, and it
would be one more dependency. The perl script is a small state machine, so it is written out
here literally instead.

The rules, per token, given the previous tag (a tag is prefix-type, e.g. I-ORG):
  a chunk starts at   B after B/I/O; I after O; E after E/O; I after E; any tag but O and
                      "." whose type differs from the previous type; "[" or "]".
  a chunk ends before B or O after B/I; E, I or O after E; any tag after a tag other than
                      O and "." of another type; anything after "[" or "]".
So IOB1 (CoNLL-2003's original files: I- starts a chunk after O or another type, B- only
splits two adjacent chunks of one type), IOB2 and IOE all work. Note what the script does
not know: ``S-`` is not a chunk tag (``S-X S-X`` is one chunk), and ``B-X`` right after
``E-X`` continues that chunk. Convert IOBES with ``iobes_to_iob2`` first.

A chunk counts as correct when gold and prediction start it on the same token with the same
type and end it on the same token. Sentence boundaries act as an ``O O`` token that is not
counted. Token accuracy compares full tags (``B-PER`` vs ``I-PER`` is wrong), over every
token line, ``-DOCSTART-`` lines included as the script does. Scores are percentages.
"""

import collections
import dataclasses
from typing import Iterable, Sequence

BOUNDARY = "-X-"  # a line whose first field is this is a sentence break, like a blank line


def _split(tag: str) -> tuple[str, str]:
    """``B-ORG`` -> (``B``, ``ORG``); ``O`` -> (``O``, ``""``). Split at the first hyphen, so
    types may hold hyphens (the script's 2004 fix). Perl also reads a type of "0" as false."""
    prefix, _, chunk_type = tag.partition("-")
    return prefix, (chunk_type if chunk_type != "0" else "")


def end_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """The script's ``endOfChunk``: did a chunk end between the previous token and this one?"""
    return ((prev_tag in ("B", "I") and tag in ("B", "O"))
            or (prev_tag == "E" and tag in ("E", "I", "O"))
            or (prev_tag not in ("O", ".") and prev_type != type_)
            or prev_tag in ("[", "]"))


def start_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """The script's ``startOfChunk``: did a chunk start at this token?"""
    return ((prev_tag in ("B", "I", "O") and tag == "B")
            or (prev_tag == "O" and tag in ("I", "E"))
            or (prev_tag == "E" and tag in ("E", "I"))
            or (tag not in ("O", ".") and prev_type != type_)
            or tag in ("[", "]"))


@dataclasses.dataclass
class _Counts:
    correct_chunks: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    gold_chunks: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    pred_chunks: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    correct_tags: int = 0
    tokens: int = 0


def _prf(correct: int, gold: int, pred: int) -> dict[str, float]:
    precision = 100.0 * correct / pred if pred > 0 else 0.0
    recall = 100.0 * correct / gold if gold > 0 else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def _count(lines: Iterable[tuple[str, str] | None], raw: bool, o_tag: str) -> _Counts:
    """The script's main loop over (gold, pred) tag pairs; ``None`` is a sentence break."""
    counts = _Counts()
    in_correct = False
    last_gold, last_gold_type, last_pred, last_pred_type = "O", "", "O", ""
    for line in lines:
        if line is None:
            gold_tag, pred_tag, boundary = "O", "O", True
        else:
            (gold_tag, pred_tag), boundary = line, False
            if raw:  # -r: bare types, every non-O tag starts a chunk
                gold_tag = "O" if gold_tag in (o_tag, "O") else f"B-{gold_tag}"
                pred_tag = "O" if pred_tag in (o_tag, "O") else f"B-{pred_tag}"
        gold, gold_type = _split(gold_tag)
        pred, pred_type = _split(pred_tag)
        gold_end = end_of_chunk(last_gold, gold, last_gold_type, gold_type)
        pred_end = end_of_chunk(last_pred, pred, last_pred_type, pred_type)
        gold_start = start_of_chunk(last_gold, gold, last_gold_type, gold_type)
        pred_start = start_of_chunk(last_pred, pred, last_pred_type, pred_type)

        if in_correct:
            if gold_end and pred_end and last_pred_type == last_gold_type:
                in_correct = False
                counts.correct_chunks[last_gold_type] += 1
            elif gold_end != pred_end or pred_type != gold_type:
                in_correct = False
        if gold_start and pred_start and pred_type == gold_type:
            in_correct = True
        if gold_start:
            counts.gold_chunks[gold_type] += 1
        if pred_start:
            counts.pred_chunks[pred_type] += 1
        if not boundary:
            counts.correct_tags += gold == pred and gold_type == pred_type
            counts.tokens += 1
        last_gold, last_gold_type, last_pred, last_pred_type = gold, gold_type, pred, pred_type
    if in_correct:  # at the end of the input an open candidate counts, whatever the tags
        counts.correct_chunks[last_gold_type] += 1
    return counts


def _report(counts: _Counts) -> dict:
    if counts.tokens == 0:
        raise ValueError("no tokens to score")
    correct = sum(counts.correct_chunks.values())
    gold, pred = sum(counts.gold_chunks.values()), sum(counts.pred_chunks.values())
    types = sorted(set(counts.gold_chunks) | set(counts.pred_chunks))
    return {
        **_prf(correct, gold, pred),
        "accuracy": 100.0 * counts.correct_tags / counts.tokens,
        "tokens": counts.tokens, "gold_chunks": gold, "pred_chunks": pred,
        "correct_chunks": correct,
        "per_type": {t: {**_prf(counts.correct_chunks[t], counts.gold_chunks[t],
                                counts.pred_chunks[t]),
                         "gold_chunks": counts.gold_chunks[t],
                         "pred_chunks": counts.pred_chunks[t],
                         "correct_chunks": counts.correct_chunks[t]} for t in types},
    }


def evaluate(sentences: Iterable[Sequence[tuple[str, str]]], raw: bool = False,
             o_tag: str = "O") -> dict:
    """Scores sentences of (gold tag, predicted tag) pairs, as the script scores them
    written one pair a line with a blank line after each sentence.

    Returns precision, recall, f1 (percent, over all chunks), accuracy (percent of tokens
    with the right tag), the counts tokens/gold_chunks/pred_chunks/correct_chunks, and
    per_type: {type: the same scores and counts}, types sorted as the script prints them.
    ``raw`` and ``o_tag`` are the script's ``-r`` and ``-o``.
    """
    def lines():
        for sentence in sentences:
            yield from sentence
            yield None
    return _report(_count(lines(), raw, o_tag))


def evaluate_sequences(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]],
                       **kwargs) -> dict:
    """``evaluate`` on parallel lists of gold and predicted tag sequences."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sentences vs {len(pred)} predicted")
    for i, (g, p) in enumerate(zip(gold, pred)):
        if len(g) != len(p):
            raise ValueError(f"sentence {i}: {len(g)} gold tags vs {len(p)} predicted")
    return evaluate([list(zip(g, p)) for g, p in zip(gold, pred)], **kwargs)


def evaluate_text(text: str, delimiter: str | None = None, boundary: str = BOUNDARY,
                  raw: bool = False, o_tag: str = "O") -> dict:
    """Scores conlleval's input: one token per line, ``token ... gold pred`` (the last two
    fields), a blank line (or a line starting with ``boundary``) between sentences.
    ``delimiter`` None splits on any whitespace; the script's ``-d`` sets another."""
    def lines():
        num_fields = None
        for number, line in enumerate(text.splitlines(), 1):
            fields = line.split(delimiter) if line.strip() else []
            if not fields:
                yield None
                continue
            if num_fields is None:
                num_fields = len(fields)
            elif len(fields) != num_fields:
                raise ValueError(f"line {number}: {len(fields)} fields, expected {num_fields}")
            if len(fields) < 2:
                raise ValueError(f"line {number}: need at least a gold and a predicted tag")
            # A boundary line is a break: its tags are ignored (the script reads "O O").
            yield None if fields[0] == boundary else (fields[-2], fields[-1])
    return _report(_count(lines(), raw, o_tag))


def iobes_to_iob2(tags: Sequence[str]) -> list[str]:
    """IOBES -> IOB2 (``S-`` -> ``B-``, ``E-`` -> ``I-``), the same chunks in tags the script
    reads correctly."""
    return [{"S": "B", "E": "I"}.get(t[:1], t[:1]) + t[1:] if t[1:2] == "-" else t
            for t in tags]
