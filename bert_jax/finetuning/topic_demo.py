"""The built-in, offline fine-tuning demo: which part of the standard library does a
docstring sentence document?

Single-sentence classification (like SST-2, six classes) on the same kind of text the
pretraining main job learns from (`bert_jax.pretraining.corpus.stdlib_documents`), so a new
user sees a pretrained BERT-tiny fine-tune in minutes on CPU, with no download:

    asyncio   "Called when subprocess has exited."
    email     "The input lines should retain their terminating linesep characters."
    logging   "Add the specified handler to this logger."
    unittest  "Fail the test unless the text matches the regular expression."
    web       "Returns a tuple of the defragmented URL and the fragment."  (http, urllib, wsgiref)
    xml       "Handle an unparsed entity declaration event."

Each class is a group of top-level standard-library packages; its sentences are the
docstring sentences of their modules with at least `MIN_WORDS` words (shorter ones, such as
"Return True.", name no topic). A sentence found in two classes is dropped. The classes are
balanced: `SPLIT_SIZES[split]` sentences each, split by a hash of the sentence text, so the
split does not depend on the order the files are found in and the majority-class baseline
is exactly 1/6. Pretraining saw about 90% of these modules' text, unlabelled: that is the
point of pretraining on in-domain text.

The data depends on the installed Python's sources (the measured numbers in the README are
for CPython 3.11); too few sentences for a class is a clear error.

A second demo, `task=demo_pairs` (`pair_examples`), is a sentence-pair task that shows what
pretraining adds: do two docstring sentences document the same module? Half the pairs
are two sentences of one module, half take the second sentence from another module (both
drawn the same way, so neither sentence alone tells the label). Train pairs come from the
modules pretraining trains on, dev and test pairs from the modules it holds out
(`corpus.is_held_out(name, PRETRAINING_EVAL_FRACTION)`), half of them each, so the
pretrained model never saw their text.

Public API: `CLASSES`, `SPLIT_SIZES`, `task_spec()`, `demo_examples(split)`;
`PAIR_SPLIT_SIZES`, `pair_task_spec()`, `pair_examples(split)`.
"""
from __future__ import annotations

import functools
import hashlib
import random

from bert_jax.finetuning.examples import Example
from bert_jax.finetuning.glue_data import TaskSpec
from bert_jax.pretraining import corpus

__all__ = ["CLASSES", "PACKAGES", "SPLIT_SIZES", "MIN_WORDS", "task_spec", "demo_examples",
           "PAIR_LABELS", "PAIR_SPLIT_SIZES", "pair_task_spec", "pair_examples"]

PACKAGES = {  # class -> the top-level packages whose docstrings it holds
    "asyncio": ("asyncio",),
    "email": ("email",),
    "logging": ("logging",),
    "unittest": ("unittest",),
    "web": ("http", "urllib", "wsgiref"),
    "xml": ("xml",),
}
CLASSES = tuple(PACKAGES)
SPLITS = ("train", "dev", "test")
SPLIT_SIZES = {"train": 260, "dev": 50, "test": 50}  # sentences per class
MIN_WORDS = 5
PAIR_LABELS = ("different", "same")
PAIR_SPLIT_SIZES = {"train": 2000, "dev": 400, "test": 400}  # pairs, half of them "same"
PRETRAINING_EVAL_FRACTION = 0.1  # configs/bert_pretrain.py's data.eval_fraction


def task_spec() -> TaskSpec:
    """The demo as a classification task: its labels and splits (no GLUE files)."""
    return TaskSpec("stdlib_topic", "", ("sentence",), CLASSES, CLASSES, ("train",),
                    ("dev",), ("test",), tsv={})


def _class_of(module: str) -> str | None:
    top = module.split(".")[0]
    return next((name for name, packages in PACKAGES.items() if top in packages), None)


def _hash(sentence: str) -> bytes:
    return hashlib.sha256(sentence.encode("utf-8")).digest()


def class_sentences(documents: list[corpus.Document]) -> dict[str, list[str]]:
    """class -> its distinct sentences of `MIN_WORDS`+ words, in hash order; a sentence
    that occurs in two classes belongs to neither."""
    found: dict[str, set[str]] = {name: set() for name in CLASSES}
    for document in documents:
        name = _class_of(document.name)
        if name is not None:
            found[name].update(s for s in document.sentences if len(s.split()) >= MIN_WORDS)
    seen_twice = {s for a in CLASSES for b in CLASSES if a < b for s in found[a] & found[b]}
    return {name: sorted(found[name] - seen_twice, key=_hash) for name in CLASSES}


@functools.lru_cache(maxsize=1)
def _generate() -> dict[str, tuple[Example, ...]]:
    by_class = class_sentences(corpus.stdlib_documents())
    needed = sum(SPLIT_SIZES.values())
    short = {name: len(s) for name, s in by_class.items() if len(s) < needed}
    if short:
        raise RuntimeError(f"the topic demo needs {needed} sentences per class, this Python's "
                           f"standard library has only {short}: use a task with data files")
    splits: dict[str, list[tuple[str, int]]] = {split: [] for split in SPLITS}
    for label, name in enumerate(CLASSES):
        start = 0
        for split in SPLITS:
            stop = start + SPLIT_SIZES[split]
            splits[split].extend((s, label) for s in by_class[name][start:stop])
            start = stop
    # Rows in the order of another hash: a class's first rows all have low split hashes.
    return {split: tuple(Example(f"topic-{split}-{i}", sentence, None, label, str(i))
                         for i, (sentence, label) in enumerate(
                             sorted(rows, key=lambda row: _hash("order:" + row[0]))))
            for split, rows in splits.items()}


def demo_examples(split: str) -> list[Example]:
    """The split (train / dev / test), all labelled, the classes interleaved."""
    if split not in SPLITS:
        raise ValueError(f"the topic demo has no split {split!r}: choose from {list(SPLITS)}")
    return list(_generate()[split])


# --- The pair demo ------------------------------------------------------------------------

def pair_task_spec() -> TaskSpec:
    return TaskSpec("stdlib_same_module", "", ("sentence1", "sentence2"), PAIR_LABELS,
                    PAIR_LABELS, ("train",), ("dev",), ("test",), tsv={})


def _pair_documents() -> dict[str, list[tuple[str, ...]]]:
    """split -> the sentence lists (MIN_WORDS+ words, at least two) of its modules."""
    modules: dict[str, list[tuple[str, tuple[str, ...]]]] = {split: [] for split in SPLITS}
    for document in corpus.stdlib_documents():
        sentences = tuple(dict.fromkeys(s for s in document.sentences
                                        if len(s.split()) >= MIN_WORDS))
        if len(sentences) < 2:
            continue
        if not corpus.is_held_out(document.name, PRETRAINING_EVAL_FRACTION):
            modules["train"].append((document.name, sentences))
        else:  # the held-out modules, alternately to dev and test in hash order
            modules["dev"].append((document.name, sentences))
    held_out = sorted(modules["dev"], key=lambda m: _hash(m[0]))
    modules["dev"], modules["test"] = held_out[0::2], held_out[1::2]
    # A sentence found in modules of two splits (copied docstrings) stays in the first only.
    seen: set[str] = set()
    result = {}
    for split in SPLITS:
        kept = [[s for s in sentences if s not in seen] for _, sentences in modules[split]]
        result[split] = [sentences for sentences in kept if len(sentences) >= 2]
        seen.update(s for sentences in result[split] for s in sentences)
    if any(len(result[split]) < 2 for split in SPLITS):
        raise RuntimeError("the pair demo needs two held-out modules each for dev and test; "
                           f"this Python's standard library gives {len(held_out)}")
    return result


@functools.lru_cache(maxsize=1)
def _generate_pairs() -> dict[str, tuple[Example, ...]]:
    documents = _pair_documents()
    result = {}
    for split in SPLITS:
        rng, docs = random.Random(f"stdlib_same_module/{split}"), documents[split]
        rows = []
        for i in range(PAIR_SPLIT_SIZES[split]):
            same = i % 2 == 1
            first = rng.randrange(len(docs))
            second = first if same else rng.choice(
                [d for d in range(len(docs)) if d != first])
            text_a = rng.choice(docs[first])
            text_b = rng.choice([s for s in docs[second] if s != text_a])
            rows.append((text_a, text_b, PAIR_LABELS.index("same" if same else "different")))
        rng.shuffle(rows)
        result[split] = tuple(Example(f"pairs-{split}-{i}", a, b, label, str(i))
                              for i, (a, b, label) in enumerate(rows))
    return result


def pair_examples(split: str) -> list[Example]:
    """The pair demo's split (train / dev / test), all labelled, half "same"."""
    if split not in SPLITS:
        raise ValueError(f"the pair demo has no split {split!r}: choose from {list(SPLITS)}")
    return list(_generate_pairs()[split])
