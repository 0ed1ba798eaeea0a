"""The built-in topic demo: the real standard-library splits (balanced, disjoint, one class
per sentence, deterministic), and `task=demo` fine-tuning end to end on a small stand-in
corpus with a test-prediction file."""
import collections
import csv
import hashlib
import logging

import pytest

import bert_fixtures
import run_helpers
from bert_jax.finetuning import topic_demo
from bert_jax.pretraining import corpus

SPLITS = ("train", "dev", "test")


@pytest.fixture(scope="module")
def data():
    return {split: topic_demo.demo_examples(split) for split in SPLITS}


def test_balanced_classes_and_sizes(data):
    assert topic_demo.CLASSES == ("asyncio", "email", "logging", "unittest", "web", "xml")
    for split, examples in data.items():
        counts = collections.Counter(e.label for e in examples)
        assert counts == {label: topic_demo.SPLIT_SIZES[split] for label in range(6)}, split
        assert [e.guid for e in examples] == [f"topic-{split}-{i}" for i in range(len(examples))]
        assert all(e.text_b is None for e in examples)
    # Interleaved: no run of more than a few same-class rows (a sorted file would have 260).
    labels = [e.label for e in data["train"]]
    assert max(len(list(run)) for run in _runs(labels)) < 10


def _runs(values):
    run = [values[0]]
    for value in values[1:]:
        if value != run[-1]:
            yield run
            run = []
        run.append(value)
    yield run


def test_splits_are_disjoint_and_each_sentence_has_one_class(data):
    sentences = {split: [e.text_a for e in examples] for split, examples in data.items()}
    assert all(len(set(s)) == len(s) for s in sentences.values())
    assert not set(sentences["train"]) & set(sentences["dev"])
    assert not set(sentences["train"]) & set(sentences["test"])
    assert not set(sentences["dev"]) & set(sentences["test"])
    assert all(len(s.split()) >= topic_demo.MIN_WORDS for s in sum(sentences.values(), []))
    # Each sentence really is from a module of its class's packages, and from no other's.
    where = collections.defaultdict(set)
    for document in corpus.stdlib_documents():
        for sentence in document.sentences:
            where[sentence].add(document.name.split(".")[0])
    every_class = {p for packages in topic_demo.PACKAGES.values() for p in packages}
    for examples in data.values():
        for example in examples:
            own = set(topic_demo.PACKAGES[topic_demo.CLASSES[example.label]])
            assert where[example.text_a] & every_class <= own, example
            assert where[example.text_a] & own, example


def test_split_is_by_sentence_hash_not_file_order():
    docs = [corpus.Document(f"email.m{i}", (f"email sentence number {i} is here.",
                                            f"another email line with id {i}."))
            for i in range(4)]
    forward = topic_demo.class_sentences(docs)["email"]
    assert forward == topic_demo.class_sentences(docs[::-1])["email"]
    assert forward == sorted(forward, key=lambda s: hashlib.sha256(s.encode()).digest())
    shared = corpus.Document("xml.a", ("email sentence number 0 is here.",))
    by_class = topic_demo.class_sentences(docs + [shared])
    assert "email sentence number 0 is here." not in by_class["email"] + by_class["xml"]
    short = corpus.Document("logging.x", ("Return True.", "Log a message with this level."))
    assert topic_demo.class_sentences([short])["logging"] == ["Log a message with this level."]


def test_unknown_split_and_too_small_a_library_are_named(monkeypatch):
    with pytest.raises(ValueError, match=r"no split 'validation': choose from \['train'"):
        topic_demo.demo_examples("validation")
    monkeypatch.setattr(corpus, "stdlib_documents", lambda: [
        corpus.Document("email.a", ("one two three four five.",) * 2)])
    topic_demo._generate.cache_clear()
    try:
        with pytest.raises(RuntimeError, match=r"needs 360 sentences per class.*'asyncio': 0"):
            topic_demo.demo_examples("train")
    finally:
        topic_demo._generate.cache_clear()


def _stand_in_library():
    """Six packages whose sentences name their topic, with words of the fixture vocab."""
    words = [w for w in bert_fixtures.VOCAB[5:] if w.isalpha()]
    docs = []
    for c, name in enumerate(topic_demo.CLASSES):
        package = topic_demo.PACKAGES[name][0]
        sentences = tuple(f"{words[c]} {words[c]} {words[(7 * i + c) % len(words)]} "
                          f"{words[(3 * i + 1) % len(words)]} {words[i % len(words)]} n{i}."
                          for i in range(30))
        docs.append(corpus.Document(f"{package}.mod", sentences))
    return docs


def test_task_demo_fine_tunes_and_writes_test_predictions(tmp_path, monkeypatch, caplog):
    from bert_jax.finetuning.base import write_best_predictions

    monkeypatch.setattr(corpus, "stdlib_documents", _stand_in_library)
    monkeypatch.setattr(topic_demo, "SPLIT_SIZES", {"train": 12, "dev": 3, "test": 3})
    topic_demo._generate.cache_clear()
    try:
        workdir, config, task, trainer = bert_fixtures.fine_tune(
            tmp_path, "demo", max_seq_length=11)
        with caplog.at_level(logging.INFO):
            paths = write_best_predictions(trainer, task)
        gold = [topic_demo.CLASSES[e.label] for e in topic_demo.demo_examples("test")]
    finally:
        topic_demo._generate.cache_clear()
    assert (config.data.source, config.data.task) == ("demo", "stdlib_topic")
    assert config.best_metric == "eval/accuracy" and task.num_labels == 6
    assert task.steps_per_epoch(8) == 72 // 8
    assert sorted(run_helpers.scalars(workdir, "eval/accuracy")) == [9, 18]
    [path] = paths
    with open(path, newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    assert rows[0] == ["id", "prediction"] and len(rows) == 1 + 18
    assert {row[1] for row in rows[1:]} <= set(topic_demo.CLASSES)
    accuracy = sum(row[1] == label for row, label in zip(rows[1:], gold)) / len(gold)
    assert f"test accuracy of the best epoch: {accuracy:.4f}" in caplog.text


# --- The pair demo (task=demo_pairs) ----------------------------------------------------

@pytest.fixture(scope="module")
def pairs():
    return {split: topic_demo.pair_examples(split) for split in SPLITS}


def test_pairs_are_balanced_and_labelled_by_their_module(pairs):
    module_of = collections.defaultdict(set)
    held_out = {}
    for document in corpus.stdlib_documents():
        held_out[document.name] = corpus.is_held_out(document.name, 0.1)
        for sentence in document.sentences:
            module_of[sentence].add(document.name)
    for split, examples in pairs.items():
        assert len(examples) == topic_demo.PAIR_SPLIT_SIZES[split]
        assert collections.Counter(e.label for e in examples) == {
            0: len(examples) // 2, 1: len(examples) // 2}
        for example in examples:
            assert example.text_a != example.text_b
            shared = module_of[example.text_a] & module_of[example.text_b]
            if topic_demo.PAIR_LABELS[example.label] == "same":
                assert shared, example
            # dev and test come only from modules pretraining held out; train never does.
            modules = module_of[example.text_a] | module_of[example.text_b]
            assert any(held_out[m] == (split != "train") for m in modules), example
    assert pairs == {split: topic_demo.pair_examples(split) for split in SPLITS}


def test_dev_and_test_pairs_use_different_modules(pairs):
    def sentences(split):
        return {s for e in pairs[split] for s in (e.text_a, e.text_b)}
    assert not sentences("dev") & sentences("test")
    assert not sentences("train") & (sentences("dev") | sentences("test"))
    # Neither sentence alone tells the label: text_b's length is alike in both classes.
    lengths = {label: [len(e.text_b.split()) for e in pairs["train"] if e.label == label]
               for label in (0, 1)}
    means = [sum(v) / len(v) for v in lengths.values()]
    assert abs(means[0] - means[1]) < 2.0, means
