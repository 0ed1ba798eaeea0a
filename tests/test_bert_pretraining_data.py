"""BERT pretraining data: the tf.data pipeline (``bert_jax.pretraining.pipeline``): tokenizing,
train and eval batches, resuming, several hosts, TFRecords.

Sizes: batch 3, max_seq_length 23, max_predictions_per_seq 5 (odd and distinct); a 33-token
vocabulary and 7 short documents, so that an epoch is only a few batches. Every batch is
checked against the keys, shapes, dtypes and invariants documented in pipeline.py.
"""
import collections
import math
import os
import random
import re
import threading

import numpy as np
import pytest
import tensorflow as tf

from bert_data_helpers import CLS, MASK, MAX_SEQ_LENGTH, PAD, SEP, SPECIAL, num_to_predict

from bert_jax.pretraining import masking, pairs, pipeline
from bert_jax.tokenization import SPECIAL_TOKENS, FullTokenizer

BATCH, MAX_PREDICTIONS = 3, 5

BATCH_SPEC = {  # key: (shape, dtype), from the docstring of pipeline.py
    "input_ids": ((BATCH, MAX_SEQ_LENGTH), np.int32),
    "input_mask": ((BATCH, MAX_SEQ_LENGTH), np.int32),
    "segment_ids": ((BATCH, MAX_SEQ_LENGTH), np.int32),
    "masked_lm_positions": ((BATCH, MAX_PREDICTIONS), np.int32),
    "masked_lm_ids": ((BATCH, MAX_PREDICTIONS), np.int32),
    "masked_lm_weights": ((BATCH, MAX_PREDICTIONS), np.float32),
    "next_sentence_labels": ((BATCH,), np.int32),
    "next_sentence_weights": ((BATCH,), np.float32),
}


WORDS = ["the", "cat", "dog", "sat", "on", "mat", "a", "big", "small", "ran", "play", "walk",
         "jump", "house", "tree", "red", "green", "bird", "sun", "moon", ".", ",", "!", "?"]
SUFFIXES = ["##s", "##ing", "##ed", "##er"]
VOCAB = list(SPECIAL_TOKENS) + WORDS + SUFFIXES  # 33 tokens


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> FullTokenizer:
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("".join(token + "\n" for token in VOCAB), encoding="utf-8")
    return FullTokenizer(str(path))


@pytest.fixture(scope="module")
def spec(tokenizer) -> pipeline.ExampleSpec:
    return pipeline.ExampleSpec.create(
        tokenizer, pairs.PairRules(max_seq_length=MAX_SEQ_LENGTH, short_seq_prob=0.1),
        masking.MaskingRules(max_predictions_per_seq=MAX_PREDICTIONS))


def text_documents(num_documents, seed, sentences=(2, 4), words=(2, 6)):
    """Sentences of vocabulary words, some with '##' suffixes (play + ##ing) or unknown."""
    rng = random.Random(seed)
    stems = WORDS[:20] + ["zebra"]  # zebra -> [UNK]
    documents = []
    for _ in range(num_documents):
        documents.append([
            " ".join(rng.choice(stems) + rng.choice(["", "", "", "s", "ing", "ed", "er"])
                     for _ in range(rng.randint(*words))).capitalize() + rng.choice(".!?")
            for _ in range(rng.randint(*sentences))])
    return documents


@pytest.fixture(scope="module")
def documents(tokenizer):
    """7 short documents: an epoch is only a few batches of 3."""
    return pipeline.tokenize_documents(text_documents(7, seed=0), tokenizer)


def unmask(batch) -> np.ndarray:
    """The input ids before masking, from the masked ids and the targets."""
    original = batch["input_ids"].copy()
    rows, slots = np.nonzero(batch["masked_lm_weights"])
    original[rows, batch["masked_lm_positions"][rows, slots]] = batch["masked_lm_ids"][rows,
                                                                                       slots]
    return original


def check_batch(batch, batch_size=BATCH):
    """The documented keys, shapes, dtypes and invariants of a batch; returns its rows as
    (unmasked ids, segment ids, label) tuples (padding rows, weight 0, left out)."""
    shapes = {key: ((batch_size,) + shape[1:], dtype) for key, (shape, dtype) in
              BATCH_SPEC.items()}
    assert {key: (value.shape, value.dtype) for key, value in batch.items()} == shapes
    original = unmask(batch)
    rows = []
    for r in range(batch_size):
        if batch["next_sentence_weights"][r] == 0:  # eval padding: all zero
            assert all(not np.any(value[r]) for value in batch.values())
            continue
        assert batch["next_sentence_weights"][r] == 1
        ids, mask, segments = original[r], batch["input_mask"][r], batch["segment_ids"][r]
        n = int(mask.sum())
        np.testing.assert_array_equal(mask, ids != PAD)
        np.testing.assert_array_equal(mask, np.arange(MAX_SEQ_LENGTH) < n)
        assert ids[0] == CLS and ids[n - 1] == SEP and list(ids[:n]).count(SEP) == 2
        first_sep = list(ids).index(SEP)
        np.testing.assert_array_equal(
            segments, (np.arange(MAX_SEQ_LENGTH) > first_sep) & (np.arange(MAX_SEQ_LENGTH) < n))
        k = num_to_predict(n, MAX_PREDICTIONS)
        weights = batch["masked_lm_weights"][r]
        np.testing.assert_array_equal(weights, np.arange(MAX_PREDICTIONS) < k)
        positions = batch["masked_lm_positions"][r]
        assert np.all(np.diff(positions[:k]) > 0) and positions[k - 1] < n
        assert not np.isin(ids[positions[:k]], [CLS, SEP, PAD]).any()
        assert not positions[k:].any() and not batch["masked_lm_ids"][r, k:].any()
        assert batch["next_sentence_labels"][r] in (0, 1)
        rows.append((tuple(ids[:n]), tuple(segments[:n]), int(batch["next_sentence_labels"][r])))
    return rows


def pair_tuples(examples):
    return [(tuple(e["input_ids"]), tuple(e["segment_ids"]), int(e["next_sentence_labels"]))
            for e in examples]


def take(iterator, count):
    return [next(iterator) for _ in range(count)]


def test_tokenize_documents_matches_encode_and_drops_empty(tokenizer):
    text = [["The cat sat on the mat.", "", "Playing dogs jumped!"],
            ["   ", "\u200b"],  # nothing but white space and a zero-width space
            ["Zebras walk.", "A big green tree", "?"],
            []]
    tokenized = pipeline.tokenize_documents(text, tokenizer, batch_size=2)
    expected = [[tokenizer.encode(s) for s in document if tokenizer.encode(s)]
                for document in (text[0], text[2])]
    assert [[row.tolist() for row in document] for document in tokenized] == expected
    assert all(row.dtype == np.int32 for document in tokenized for row in document)
    assert tokenizer.convert_ids_to_tokens(tokenized[0][1]) == [
        "play", "##ing", "dog", "##s", "jump", "##ed", "!"]
    assert tokenizer.convert_ids_to_tokens(tokenized[1][0]) == ["[UNK]", "walk", "."]


def test_example_spec_create(tokenizer, spec):
    assert (spec.cls_id, spec.sep_id, spec.pad_id, spec.mask_id) == (CLS, SEP, PAD, MASK)
    assert spec.vocab == tuple(VOCAB)
    assert (spec.max_seq_length, spec.max_predictions) == (MAX_SEQ_LENGTH, MAX_PREDICTIONS)
    assert spec.special == SPECIAL
    with pytest.raises(ValueError, match="raise it to >= 4"):  # round(25 * 0.15) = 4
        pipeline.ExampleSpec.create(tokenizer, pairs.PairRules(max_seq_length=25),
                                    masking.MaskingRules(max_predictions_per_seq=3))


def test_train_batches_are_the_epochs_pairs_masked(documents, spec):
    """Rows are exactly each epoch's pairs in order (the remainder short of a batch dropped),
    unchanged except at the masked positions; and masks are fresh every epoch."""
    expected, epoch_of_row = [], []
    for epoch in range(3):
        epoch_examples = pair_tuples(pairs.epoch_pairs(documents, spec.pair_rules, spec.special,
                                                       seed=7, epoch=epoch))
        kept = len(epoch_examples) // BATCH * BATCH
        assert 2 * BATCH <= kept <= 8 * BATCH  # a few batches per epoch
        expected += epoch_examples[:kept]
        epoch_of_row += [epoch] * kept
    batches = take(pipeline.train_batches(documents, spec, batch_size_per_host=BATCH, seed=7,
                                          process_index=0, process_count=1),
                   len(expected) // BATCH)
    rows = [row for batch in batches for row in check_batch(batch)]
    assert rows == expected
    # Dynamic masking: a pair that recurs in another epoch is masked differently.
    masks = collections.defaultdict(dict)
    masked_rows = [(tuple(b["input_ids"][r]), tuple(b["masked_lm_positions"][r]))
                   for b in batches for r in range(BATCH)]
    for row, epoch, mask in zip(rows, epoch_of_row, masked_rows):
        masks[row].setdefault(epoch, mask)
    recurring = [by_epoch for by_epoch in masks.values() if len(by_epoch) > 1]
    differ = sum(len(set(by_epoch.values())) > 1 for by_epoch in recurring)
    assert len(recurring) >= 4 and differ >= 0.75 * len(recurring), (differ, len(recurring))


def test_the_epoch_is_part_of_the_masking_key(tokenizer, spec):
    """Two one-sentence documents give the same 2 pairs every epoch (in a shuffled order):
    the same pair at the same place of another epoch still gets another mask."""
    documents = pipeline.tokenize_documents(
        [["The big green bird sat on a small red house."], ["A cat ran to the moon!"]],
        tokenizer)
    batches = take(pipeline.train_batches(documents, spec, batch_size_per_host=1, seed=3,
                                          process_index=0, process_count=1), 2 * 16)
    seen = collections.defaultdict(list)  # (place in epoch, unmasked pair) -> masks
    for step, batch in enumerate(batches):
        row = check_batch(batch, batch_size=1)[0]
        seen[step % 2, row].append((tuple(batch["input_ids"][0]),
                                    tuple(batch["masked_lm_positions"][0])))
    assert len(seen) >= 2 and all(len(masks) >= 2 for masks in seen.values())
    # Keys without the epoch would give one mask per (place, pair): at most 4 in all.
    distinct = sum(len(set(masks)) for masks in seen.values())
    assert distinct >= 24, distinct


def test_train_batches_are_deterministic(documents, spec):
    def first(seed, count=9):
        return take(pipeline.train_batches(documents, spec, batch_size_per_host=BATCH,
                                           seed=seed, process_index=0, process_count=1), count)

    a, b, c = first(11), first(11), first(12)
    for x, y in zip(a, b):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])
    assert any(not np.array_equal(x["input_ids"], z["input_ids"]) for x, z in zip(a, c))


def test_start_batch_resumes_exactly_across_epoch_boundaries(documents, spec):
    def batches(start_batch, count):
        return take(pipeline.train_batches(documents, spec, batch_size_per_host=BATCH, seed=13,
                                           process_index=0, process_count=1,
                                           start_batch=start_batch), count)

    per_epoch = [len(pairs.epoch_pairs(documents, spec.pair_rules, spec.special, 13, e)) // BATCH
                 for e in range(3)]
    boundary = per_epoch[0]
    fresh = batches(0, boundary + per_epoch[1] + 4)
    # Inside epoch 0, across its end, at the start of epoch 1, into epoch 2.
    for start in (1, boundary - 1, boundary, boundary + per_epoch[1] + 1):
        resumed = batches(start, 3)
        assert len(fresh[start:start + 3]) == 3
        for x, y in zip(fresh[start:start + 3], resumed):
            for key in x:
                np.testing.assert_array_equal(x[key], y[key], err_msg=f"{start} {key}")


def test_the_next_epoch_is_built_while_one_is_read(documents, spec, monkeypatch):
    """One epoch ahead, no more: after the first batch of epoch 0, epoch 1's pairs are being
    made in the background (training does not wait for them at the boundary), epoch 2's not."""
    built = collections.defaultdict(threading.Event)
    make_pairs = pairs.epoch_pairs

    def recording(*args, **kwargs):
        result = make_pairs(*args, **kwargs)
        built[args[-1]].set()  # the epoch
        return result

    monkeypatch.setattr(pairs, "epoch_pairs", recording)
    stream = pipeline.train_batches(documents, spec, batch_size_per_host=BATCH, seed=7,
                                    process_index=0, process_count=1)
    next(stream)
    assert built[0].is_set() and built[1].wait(timeout=60)
    assert not built[2].is_set()
    stream.close()


def test_two_hosts_see_disjoint_pairs(documents, spec):
    """Host h gets records h, h + 2, ... of each epoch's pairs: disjoint parts of one stream."""
    examples = pair_tuples(pairs.epoch_pairs(documents, spec.pair_rules, spec.special, 17, 0))
    assert len(set(examples[0::2]) & set(examples[1::2])) < len(examples) // 4
    for host in range(2):
        mine = examples[host::2]
        count = len(mine) // BATCH
        assert count >= 1
        batches = take(pipeline.train_batches(documents, spec, batch_size_per_host=BATCH,
                                              seed=17, process_index=host, process_count=2),
                       count)
        rows = [row for batch in batches for row in check_batch(batch)]
        assert rows == mine[:count * BATCH]


def test_global_batches_do_not_depend_on_the_process_count(documents, spec):
    """Global batch b (the hosts' local batches together) holds the same masked examples on
    1, 2 or 3 hosts, across epoch ends and after a resume on another host count: what lets
    a preempted run continue on another topology at the same data position."""
    def global_batches(process_count, start=0, count=5):
        streams = [pipeline.train_batches(
            documents, spec, batch_size_per_host=6 // process_count, seed=4,
            process_index=p, process_count=process_count, start_batch=start)
            for p in range(process_count)]
        out = []
        for _ in range(count):
            local = [next(stream) for stream in streams]
            out.append(sorted(
                tuple(np.concatenate([b[k][i].ravel() for k in sorted(b)]).tolist())
                for b in local for i in range(len(b["input_ids"]))))
        return out

    per_epoch = len(pairs.epoch_pairs(documents, spec.pair_rules, spec.special, 4, 0)) // 6
    assert per_epoch < 5  # the 5 batches cross an epoch end
    single = global_batches(1)
    assert global_batches(2) == single and global_batches(3) == single
    assert global_batches(3, start=2, count=3) == single[2:]


def test_hosts_draw_different_masks(tokenizer, spec):
    """Six one-sentence documents of 4 pieces: every pair is [CLS] 4 [SEP] 4 [SEP], so equal
    keys on two hosts would give equal masks; the keys differ, so the masks mostly do."""
    documents = pipeline.tokenize_documents(
        [["the cat sat on"], ["a big red tree"], ["dogs ran far"], ["the sun ! ?"],
         ["moon , bird !"], ["walking house ."]], tokenizer)
    assert {len(document[0]) for document in documents} == {4}
    positions = []
    for host in range(2):
        batches = take(pipeline.train_batches(documents, spec, batch_size_per_host=BATCH,
                                              seed=1, process_index=host, process_count=2), 6)
        for batch in batches:
            check_batch(batch)
        positions.append([tuple(row) for b in batches for row in b["masked_lm_positions"]])
    # 2 of 8 candidates: equal by chance with probability 1/28 per row.
    assert sum(a == b for a, b in zip(*positions)) <= 4


def test_eval_batches_pad_every_host_to_the_same_batches(tokenizer, spec):
    documents = pipeline.tokenize_documents(text_documents(9, seed=1), tokenizer)
    examples = pairs.epoch_pairs(documents, spec.pair_rules, spec.special, seed=0, epoch=0)
    total = len(examples)
    assert total % 3 and total > 9  # uneven across 3 hosts

    def eval_batches(process_index, subset=examples):
        return pipeline.eval_batches(pipeline.pairs_as_dataset(subset, MAX_SEQ_LENGTH), spec,
                                     batch_size_per_host=BATCH, seed=5,
                                     process_index=process_index, process_count=3)

    expected = pair_tuples(examples)
    real = 0
    for host in range(3):
        batches = eval_batches(host)
        assert len(batches) == math.ceil(math.ceil(total / 3) / BATCH)
        rows = [row for batch in batches for row in check_batch(batch)]
        assert rows == expected[host::3]
        real += sum(int(batch["next_sentence_weights"].sum()) for batch in batches)
        for x, y in zip(batches, eval_batches(host)):  # masked once, the same every call
            for key in x:
                np.testing.assert_array_equal(x[key], y[key])
    assert real == total
    # Fewer pairs than hosts: the third host runs one batch of padding only.
    lone = eval_batches(2, examples[:2])
    assert len(lone) == 1 and check_batch(lone[0]) == []
    assert all(not value.any() for value in lone[0].values())
    with pytest.raises(ValueError, match="held-out set yields no sentence pairs"):
        pipeline.eval_batches(pipeline.pairs_as_dataset(examples, MAX_SEQ_LENGTH).take(0), spec,
                              batch_size_per_host=BATCH, seed=5, process_index=0,
                              process_count=3)


def test_tfrecords_round_trip(tmp_path, documents, spec):
    examples = [e for epoch in range(2)
                for e in pairs.epoch_pairs(documents, spec.pair_rules, spec.special, 1, epoch)]
    prefix = str(tmp_path / "pairs")
    paths = pipeline.pairs_to_tfrecords(iter(examples), prefix, num_shards=3)
    assert paths == [f"{prefix}-0000{i}-of-00003.tfrecord" for i in range(3)]
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(p) for p in paths)

    def read(pattern, process_index=0, process_count=1, seed=None):
        return pair_tuples(pipeline.tfrecord_pair_dataset(
            pattern, process_index, process_count, seed).as_numpy_iterator())

    expected = pair_tuples(examples)
    assert collections.Counter(read(prefix + "*")) == collections.Counter(expected)
    assert collections.Counter(read(f"{paths[2]},{paths[0]},{paths[1]}")) == \
        collections.Counter(expected)
    # Round-robin shards; with 2 hosts and 3 files, host 0 reads files 0 and 2, host 1 file 1.
    host0, host1 = read(prefix + "*", 0, 2, seed=3), read(prefix + "*", 1, 2, seed=3)
    assert collections.Counter(host0) == collections.Counter(expected[0::3] + expected[2::3])
    assert collections.Counter(host1) == collections.Counter(expected[1::3])
    # Fewer files than hosts: the records of the one file are split instead.
    assert read(paths[1], 0, 2) == expected[1::3][0::2]
    assert read(paths[1], 1, 2) == expected[1::3][1::2]

    with pytest.raises(FileExistsError, match="exists"):
        pipeline.pairs_to_tfrecords(iter(examples[:5]), prefix, num_shards=3)
    # Another shard count on the same prefix would double the data its glob reads.
    with pytest.raises(FileExistsError, match="exists \\(3 shard\\(s\\) with this prefix\\)"):
        pipeline.pairs_to_tfrecords(iter(examples[:5]), prefix, num_shards=2)

    def failing():  # the corpus fails after two pairs: no file of the prefix is left
        yield from examples[:2]
        raise ValueError("bad corpus")

    with pytest.raises(ValueError, match="bad corpus"):
        pipeline.pairs_to_tfrecords(failing(), str(tmp_path / "failed"), num_shards=2)
    assert collections.Counter(read(prefix + "*")) == collections.Counter(expected)  # intact
    with pytest.raises(ValueError, match="no sentence pairs"):
        pipeline.pairs_to_tfrecords(iter([]), str(tmp_path / "empty"), num_shards=2)
    with pytest.raises(FileNotFoundError, match="TFRecord pattern .*missing.* matches no file"):
        pipeline.tfrecord_pair_dataset(str(tmp_path / "missing*"), 0, 1, None)
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".partial")]
    assert len(os.listdir(tmp_path)) == 3
    # A prefix in a directory that does not exist yet: the directory is made.
    nested = str(tmp_path / "new" / "sub" / "pairs")
    pipeline.pairs_to_tfrecords(iter(examples[:4]), nested, num_shards=2)
    assert collections.Counter(read(nested + "*")) == collections.Counter(expected[:4])

    batches = pipeline.tfrecord_train_batches(
        pipeline.tfrecord_pair_dataset(prefix + "*", 0, 1, seed=2), spec,
        batch_size_per_host=BATCH, seed=2, shuffle_buffer=8, process_index=0, process_count=1)
    masks = collections.defaultdict(list)  # unmasked pair -> its masked positions per read
    for batch in take(batches, 2 * len(examples) // BATCH):
        for r, row in enumerate(check_batch(batch)):
            masks[row].append(tuple(batch["masked_lm_positions"][r]))
    assert set(masks) <= set(expected) and len(masks) > len(set(expected)) // 2
    # Masked as read, afresh in each pass: a pair read again gets another mask (not one fixed
    # when it was written, nor one keyed by its place in the file).
    again = [reads for reads in masks.values() if len(reads) > 1]
    assert len(again) > len(set(expected)) // 4
    assert sum(len(set(reads)) > 1 for reads in again) >= 0.9 * len(again)


def test_tfrecord_patterns_are_read_like_corpus_patterns(tmp_path, documents, spec):
    """data.input_files holds corpus patterns (source=files) or TFRecord patterns
    (source=tfrecords): "a, b" must read both, and a pattern that matches nothing must be an
    error, as in corpus.read_document_files, not silently lose its files."""
    examples = pairs.epoch_pairs(documents, spec.pair_rules, spec.special, 1, 0)
    paths = pipeline.pairs_to_tfrecords(iter(examples), str(tmp_path / "pairs"), num_shards=2)
    read = pipeline.tfrecord_pair_dataset(f"{paths[0]}, {paths[1]}", 0, 1, None)
    assert len(list(read.as_numpy_iterator())) == len(examples)
    missing = str(tmp_path / "typo*.tfrecord")
    with pytest.raises(FileNotFoundError, match=re.escape(missing)):
        pipeline.tfrecord_pair_dataset(f"{paths[0]},{paths[1]},{missing}", 0, 1, None)


def test_pairs_longer_than_max_seq_length_are_refused(tmp_path, tokenizer, spec):
    documents = pipeline.tokenize_documents(text_documents(5, seed=2, words=(6, 9)), tokenizer)
    examples = pairs.epoch_pairs(documents, pairs.PairRules(max_seq_length=41, short_seq_prob=0),
                                 spec.special, seed=0, epoch=0)
    assert max(e["input_ids"].size for e in examples) > MAX_SEQ_LENGTH
    with pytest.raises(ValueError, match="max_seq_length=23"):
        pipeline.pairs_as_dataset(examples, MAX_SEQ_LENGTH)
    prefix = str(tmp_path / "long")
    pipeline.pairs_to_tfrecords(iter(examples), prefix, num_shards=1)
    batches = pipeline.tfrecord_train_batches(
        pipeline.tfrecord_pair_dataset(prefix + "*", 0, 1, seed=None), spec,
        batch_size_per_host=BATCH, seed=0, shuffle_buffer=0, process_index=0, process_count=1)
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_seq_length"):
        take(batches, len(examples))
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_seq_length"):
        pipeline.eval_batches(pipeline.tfrecord_pair_dataset(prefix + "*", 0, 1, None), spec,
                              batch_size_per_host=BATCH, seed=0, process_index=0,
                              process_count=1)
