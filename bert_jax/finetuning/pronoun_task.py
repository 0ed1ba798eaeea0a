"""A built-in, offline WNLI-style pronoun task (`configs/bert_finetune.py:task=pronoun`).

A reasoning task, harder than the topic demo (`topic_demo.py`): the pretraining main job's
BERT-tiny stays at chance on it (measured: 0.50 dev accuracy at lr 1e-4..1e-3, 3..30
epochs), since its stdlib vocabulary splits the grammar's words into pieces it never saw
together ("tired" -> t ##ir ##ed) and the label is an XOR of two word classes. It is kept
as a challenge for bigger checkpoints.

Written for this project from the translation demo's grammar (`demo_grammar.py`,
`demo_corpus.coreference_sentence`): no download, the same seed always gives the same data.
Each example is a sentence pair as in GLUE's WNLI: text_a holds "it", which refers to one of
two nouns, and text_b is text_a with "it" replaced by "the <noun>" for one of them:

    text_a  The dog didn't cross the street because it was too tired.
    text_b  The dog didn't cross the street because the dog was too tired.      label "1"
    text_b  The dog didn't cross the street because the street was too tired.   label "0"
    text_a  The barn is not entered by the fox because it is too dark.
    text_b  The barn is not entered by the fox because the barn is too dark.    label "1"

Only the adjective decides: an animate one (tired, hungry, scared, ...) means the animal, a
place one (wide, deep, icy, ...) the street-like noun, a building one (dark, narrow, ...) the
building. The design leaves no surface shortcut:

  * every sentence comes with both hypotheses, one "1" and one "0", in the same split: labels
    are exactly 50/50, and neither text_a alone nor the hypothesis noun alone tells the label;
  * the animal comes first (active "didn't cross") or second (passive "was not crossed by"),
    and each split holds the same number of sentences whose referent is the first noun as the
    second, and as many whose referent is the animal as the place or building, so "pick the
    first noun" and "pick the animal" are exactly 50% (the two word orders: 50% +- 1 sentence);
  * nouns and adjectives are drawn independently, so the hypothesis's length says nothing.

`shortcut_baselines` measures these shortcuts. Splits are disjoint in their sentences
(text_a), so no (sentence, hypothesis) pair is in two splits; every (noun, adjective) and
(animal, place) combination of a dev/test sentence also occurs in train, in other sentences.
The lecture examples "The animal didn't cross the street because it was too tired / wide."
are always in test, never in train.

Labels follow `glue_data.TASKS["wnli"]`: label values ("0", "1") = (not_entailment,
entailment), `Example.label` is the index into them. Test labels are kept (score it with
`metrics`); `write_tsv` writes GLUE's WNLI files, test without labels, for `read_glue_tsv`.

Public API: `DEMO_TASK`, `SPLIT_SIZES`, `demo_examples(split)`, `shortcut_baselines(examples)`,
`write_tsv(directory)` and the sentence builder `pronoun_sentence`.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import random
from typing import Sequence

from bert_jax.finetuning.examples import Example
from bert_jax.finetuning.glue_data import get_task
from transformer_jax.translation import demo_corpus
from transformer_jax.translation import demo_grammar as g

__all__ = ["DEMO_TASK", "SPLIT_SIZES", "LABELS", "demo_examples", "shortcut_baselines",
           "write_tsv", "pronoun_sentence"]

WNLI = get_task("wnli")
LABELS = WNLI.labels  # ("0", "1"): not_entailment, entailment
ENTAILMENT = LABELS.index("1")
DEMO_TASK = {
    "name": "demo_wnli",
    "glue_task": WNLI.name,  # same format and labels: read its TSVs as GLUE WNLI
    "description": "Built-in WNLI-style pronoun resolution from the demo grammar: does "
                   "text_b (text_a with 'it' replaced by 'the <noun>') follow from text_a? "
                   "The adjective decides the referent. Offline and deterministic.",
}
SPLITS = ("train", "dev", "test")
SPLIT_SIZES = {"train": 4000, "dev": 500, "test": 500}  # examples: 2 per sentence
_PAIRS_PER_SENTENCE = 2
_OBJECT_KINDS = ("place", "building")
_VERB = {"place": "cross", "building": "enter"}
# (animal, object, adjective, tense, animal_first): the lecture pair, held out in test.
_HELD_OUT = (("animal", "street", "tired", "past", True),
             ("animal", "street", "wide", "past", True))


# --- Sentences --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Item:
    """One text_a: which nouns, which adjective, tense, and which noun comes first."""
    animal: str
    obj: str
    adjective: str
    tense: str
    animal_first: bool

    @property
    def referent(self) -> str:
        return self.animal if self.adjective in g.COREFERENCE_ADJECTIVES["animate"] else self.obj

    @property
    def cell(self) -> tuple[bool, bool]:
        """(animal first, referent is the animal): the strata balanced in every split."""
        return self.animal_first, self.referent == self.animal

    @property
    def combinations(self) -> tuple[tuple[str, str], ...]:
        """What dev/test may only use if train has it too (in other sentences)."""
        return ((self.animal, self.adjective), (self.obj, self.adjective),
                (self.animal, self.obj))

    def sentence(self) -> str:
        return pronoun_sentence(self.animal, self.obj, self.adjective, self.tense,
                                self.animal_first)


def pronoun_sentence(animal: str, obj: str, adjective: str, tense: str = "past",
                     animal_first: bool = True) -> str:
    """"The dog didn't cross the street because it was too tired." (animal_first) or
    "The street was not crossed by the dog because it was too tired." (passive)."""
    if animal_first:  # the translation demo's own coreference sentence, validated there
        return demo_corpus.coreference_sentence(animal, obj, adjective, tense)[0]
    if animal not in g.NOUNS_BY_KIND["animal"]:
        raise ValueError(f"a pronoun sentence needs an animal, got {animal!r}")
    kind = g.NOUNS[obj].kind if obj in g.NOUNS else None
    if kind not in _OBJECT_KINDS:
        raise ValueError(f"a pronoun sentence needs a place or building, got {obj!r}")
    subject, place = g.noun_phrase(animal), g.noun_phrase(obj)
    if adjective in g.COREFERENCE_ADJECTIVES["animate"]:
        antecedent = subject
    elif adjective in g.COREFERENCE_ADJECTIVES[kind]:
        antecedent = place
    else:
        raise ValueError(f"adjective {adjective!r} fits neither {animal!r} nor {obj!r}")
    reason = g.predicate(g.pronoun(antecedent), adjective, tense, intensifier="too")
    be = {"past": "was", "present": "is"}[tense]
    participle = g.TRANSITIVE_VERBS[_VERB[kind]].past  # regular: crossed, entered
    english = (f"{place.english} {be} not {participle} by {subject.english} because "
               f"{reason.english}")
    return english[0].upper() + english[1:] + "."


def _hypothesis(sentence: str, noun: str) -> str:
    """text_a with its one "it" replaced by "the <noun>"."""
    words = sentence.split(" ")
    if words.count("it") != 1:
        raise ValueError(f"expected one 'it' in {sentence!r}")
    words[words.index("it")] = f"the {noun}"
    return " ".join(words)


def _all_items() -> list[_Item]:
    items = []
    for animal in g.NOUNS_BY_KIND["animal"]:
        for kind in _OBJECT_KINDS:
            adjectives = g.COREFERENCE_ADJECTIVES["animate"] + g.COREFERENCE_ADJECTIVES[kind]
            for obj in g.NOUNS_BY_KIND[kind]:
                for adjective in adjectives:
                    for tense in g.TENSES:
                        for animal_first in (True, False):
                            items.append(_Item(animal, obj, adjective, tense, animal_first))
    return items


def _quotas(sentences: int) -> dict[tuple[bool, bool], int]:
    """Sentences per cell: as even as possible, with the referent first in exactly half
    (cells (True, True) and (False, False)) when `sentences` is even."""
    cells = [(True, True), (True, False), (False, False), (False, True)]
    return {cell: sentences // 4 + (i < sentences % 4) for i, cell in enumerate(cells)}


# --- The splits -------------------------------------------------------------------------

@functools.lru_cache(maxsize=4)
def _generate(seed: int) -> dict[str, tuple[Example, ...]]:
    rng = random.Random(seed)
    candidates = _all_items()
    rng.shuffle(candidates)
    held_out = [_Item(*case) for case in _HELD_OUT]
    taken = set(held_out)
    splits: dict[str, list[_Item]] = {"train": [], "dev": [], "test": list(held_out)}
    covered: set[tuple[str, str]] = set()
    for split in SPLITS:  # train first: dev and test only use what train covers
        quota = _quotas(SPLIT_SIZES[split] // _PAIRS_PER_SENTENCE)
        for item in splits[split]:
            quota[item.cell] -= 1
        for item in candidates:
            if not any(quota.values()):
                break
            if item in taken or not quota[item.cell]:
                continue
            if split != "train" and not set(item.combinations) <= covered:
                continue
            taken.add(item)
            splits[split].append(item)
            quota[item.cell] -= 1
        if any(quota.values()):
            raise RuntimeError(f"demo task: too few sentences for the {split} split {quota}")
        if split == "train":
            covered = {c for item in splits["train"] for c in item.combinations}
            if not all(set(item.combinations) <= covered for item in held_out):
                raise RuntimeError("demo task: train does not cover the held-out sentences")
    result = {}
    for split, items in splits.items():
        pairs = []
        for item in items:
            sentence = item.sentence()
            for noun in (item.animal, item.obj):
                label = ENTAILMENT if noun == item.referent else 1 - ENTAILMENT
                pairs.append((sentence, _hypothesis(sentence, noun), label))
        rng.shuffle(pairs)  # the two hypotheses of a sentence are not neighbours
        result[split] = tuple(Example(f"demo-{split}-{i}", a, b, label, str(i))
                              for i, (a, b, label) in enumerate(pairs))
    return result


def demo_examples(split: str, seed: int = 0) -> list[Example]:
    """The split (train / dev / test) as `Example`s, all labelled; deterministic in `seed`."""
    if split not in SPLITS:
        raise ValueError(f"demo task has no split {split!r}: choose from {list(SPLITS)}.")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"demo task seed must be an int, got {seed!r}")
    return list(_generate(seed)[split])


def write_tsv(directory, seed: int = 0) -> dict[str, str]:
    """train.tsv / dev.tsv / test.tsv in GLUE's WNLI format (test without its label column),
    readable with `glue_data.read_glue_tsv("wnli", split, directory)`; returns the paths."""
    os.makedirs(directory, exist_ok=True)
    paths = {}
    for split in SPLITS:
        labelled = split != "test"
        header = ["index", "sentence1", "sentence2"] + (["label"] if labelled else [])
        rows = [header]
        for example in demo_examples(split, seed):
            rows.append([example.index, example.text_a, example.text_b]
                        + ([LABELS[example.label]] if labelled else []))
        paths[split] = os.path.join(directory, f"{split}.tsv")
        with open(paths[split], "w", encoding="utf-8", newline="") as f:
            f.write("".join("\t".join(row) + "\n" for row in rows))
    return paths


# --- Shortcut baselines -----------------------------------------------------------------

_CANDIDATES = frozenset(g.NOUNS_BY_KIND["animal"] + sum(
    (g.NOUNS_BY_KIND[kind] for kind in _OBJECT_KINDS), ()))


def _nouns(example: Example) -> tuple[list[str], str]:
    """(the candidate nouns of text_a in order, the noun text_b puts in place of "it")."""
    words_a = example.text_a.rstrip(".").split(" ")
    words_b = example.text_b.rstrip(".").split(" ")
    position = words_a.index("it")
    if words_b[:position] != words_a[:position] or words_b[position] != "the":
        raise ValueError(f"{example.guid}: text_b is not text_a with 'it' replaced")
    return [w for w in words_a if w in _CANDIDATES], words_b[position + 1]


def shortcut_baselines(examples: Sequence[Example]) -> dict[str, float]:
    """Accuracy of label-free shortcuts that a task with a leak would let through:

      always_1           predict entailment everywhere (the majority-class baseline)
      first_noun         entailment iff text_b uses the noun that comes first in text_a
      animal_noun        entailment iff text_b uses the animal (not the place or building)
      hypothesis_length  entailment iff len(text_b) is above a threshold (or below: the
                         better direction), the threshold chosen on `examples` themselves,
                         so this is an optimistic upper bound for any length rule
      longer_of_pair     entailment iff text_b is longer than the other hypotheses of the same
                         text_a in `examples` (the demo pairs them: does pairing leak?)
    """
    labelled = [e for e in examples if e.label is not None]
    if not labelled:
        raise ValueError("shortcut_baselines needs labelled examples")
    gold = [e.label == ENTAILMENT for e in labelled]

    def accuracy(predictions) -> float:
        return sum(p == y for p, y in zip(predictions, gold)) / len(gold)

    first, animal = [], []
    for example in labelled:
        nouns, chosen = _nouns(example)
        first.append(chosen == nouns[0])
        animal.append(chosen in g.NOUNS_BY_KIND["animal"])
    lengths = [len(e.text_b) for e in labelled]
    siblings: dict[str, list[int]] = {}  # text_a -> lengths of its hypotheses
    for example, length in zip(labelled, lengths):
        siblings.setdefault(example.text_a, []).append(length)
    longer = [n == max(siblings[e.text_a]) and siblings[e.text_a].count(n) == 1  # ties: 0
              for e, n in zip(labelled, lengths)]
    best_length = max(max(accuracy([(n > t) == above for n in lengths]) for above in (True, False))
                      for t in sorted(set(lengths)))
    return {"always_1": accuracy([True] * len(gold)), "first_noun": accuracy(first),
            "animal_noun": accuracy(animal), "hypothesis_length": best_length,
            "longer_of_pair": accuracy(longer)}
