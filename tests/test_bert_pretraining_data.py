"""BERT pretraining data: corpora, next-sentence pairs, masked-LM masking, batches, TFRecords.

Sizes: batch 3, max_seq_length 23, max_predictions_per_seq 5 (odd and distinct). Statistical
tests draw from fixed seeds, so they are deterministic; their tolerances are ~4-5 binomial
standard deviations, so they fail only when a rate is really off.

Synthetic tokenized documents give every token a unique id that decodes back to
(document, sentence, position), so a pair can be read back and checked against the rules of
the original ``create_pretraining_data.py``.
"""
import collections
import math
import os
import random
import re

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from bert_jax.pretraining import corpus, masking, pairs, pipeline
from bert_jax.pretraining.corpus import Document
from bert_jax.tokenization import SPECIAL_TOKENS, FullTokenizer

PAD, UNK, CLS, SEP, MASK = range(5)
assert SPECIAL_TOKENS == ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
SPECIAL = pairs.SpecialIds(cls=CLS, sep=SEP)
BATCH, MAX_SEQ_LENGTH, MAX_PREDICTIONS = 3, 23, 5

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


def num_to_predict(n: int, max_predictions: int, prob: float = 0.15) -> int:
    """The original's count, in Python (double precision, round half to even)."""
    return min(max_predictions, max(1, round(n * prob)))


def within(count: int, total: int, p: float, sigmas: float = 4.5) -> bool:
    """Whether count/total is within `sigmas` binomial standard deviations of p."""
    return abs(count - total * p) <= sigmas * math.sqrt(total * p * (1 - p))


# ============================================================================================
# pairs.py
# ============================================================================================
def synthetic_documents(num_documents, sentences, tokens, seed):
    """Documents of `sentences` (min, max) sentences of `tokens` (min, max) ids each; every id
    is unique, >= 100, and `where[id]` = (document, sentence, position)."""
    rng = np.random.default_rng(seed)
    documents, where, next_id = [], {}, 100
    for d in range(num_documents):
        document = []
        for s in range(rng.integers(sentences[0], sentences[1], endpoint=True)):
            n = int(rng.integers(tokens[0], tokens[1], endpoint=True))
            document.append(np.arange(next_id, next_id + n, dtype=np.int32))
            where.update({next_id + j: (d, s, j) for j in range(n)})
            next_id += n
        documents.append(document)
    return documents, where


def split_pair(pair) -> tuple[list[int], list[int]]:
    """[CLS] A [SEP] B [SEP] -> (A, B), checking the layout and segment ids on the way."""
    ids, segments = pair["input_ids"].tolist(), pair["segment_ids"].tolist()
    assert pair["input_ids"].dtype == np.int32 and len(ids) == len(segments)
    assert ids[0] == CLS and ids[-1] == SEP and ids.count(SEP) == 2 and ids.count(CLS) == 1
    first_sep = ids.index(SEP)
    assert segments == [0] * (first_sep + 1) + [1] * (len(ids) - first_sep - 1)
    assert int(pair["next_sentence_labels"]) in (0, 1)
    return ids[1:first_sep], ids[first_sep + 1:-1]


def concat(sentences) -> list[int]:
    return [int(t) for sentence in sentences for t in sentence]


def test_pairs_follow_the_original_rules_without_truncation():
    # Documents of at most 6 x 4 = 24 tokens and room for 50: every chunk is the rest of its
    # document and no pair is ever truncated, so A and B are whole sentences.
    documents, where = synthetic_documents(301, (2, 6), (1, 4), seed=0)
    rules = pairs.PairRules(max_seq_length=53, short_seq_prob=0.0)
    multi_sentence_labels, single_sentence_pairs = [], 0
    for epoch in range(5):
        own_sentences = collections.Counter()  # (doc, sentence) used as A or IsNext-B
        for pair in pairs.epoch_pairs(documents, rules, SPECIAL, seed=5, epoch=epoch):
            tokens_a, tokens_b = split_pair(pair)
            assert tokens_a and tokens_b
            d, first, start = where[tokens_a[0]]
            _, last, _ = where[tokens_a[-1]]
            assert start == 0 and tokens_a == concat(documents[d][first:last + 1])
            label = int(pair["next_sentence_labels"])
            own_sentences.update((d, s) for s in range(first, last + 1))
            b_doc, b_first, b_start = where[tokens_b[0]]
            assert b_start == 0
            # With a target longer than any document, B runs to the end of its document.
            assert tokens_b == concat(documents[b_doc][b_first:])
            if label == 0:  # IsNext: B is the text right after A, in the same document
                assert (b_doc, b_first) == (d, last + 1)
                own_sentences.update((d, s) for s in range(b_first, len(documents[d])))
            else:  # NotNext: B starts anywhere in another document
                assert b_doc != d
            if last == len(documents[d]) - 1:
                # A chunk of one sentence (what is left after a NotNext put sentences back)
                # has no B of its own: always NotNext.
                assert label == 1
                single_sentence_pairs += 1
            else:
                multi_sentence_labels.append(label)
        # No text wasted: every sentence is used exactly once by its own document per epoch.
        assert own_sentences == collections.Counter(
            (d, s) for d, document in enumerate(documents) for s in range(len(document)))
    total, not_next = len(multi_sentence_labels), sum(multi_sentence_labels)
    assert total > 1800 and single_sentence_pairs > 500
    assert within(not_next, total, 0.5), (not_next, total)


def test_truncation_keeps_pairs_within_max_seq_length_trimming_both_ends():
    documents, where = synthetic_documents(97, (2, 5), (8, 20), seed=1)
    rules = pairs.PairRules(max_seq_length=MAX_SEQ_LENGTH, short_seq_prob=0.0)
    trimmed = collections.Counter()
    examples = pairs.epoch_pairs(documents, rules, SPECIAL, seed=2, epoch=0)
    assert len(examples) > 100
    for pair in examples:
        assert pair["input_ids"].size <= MAX_SEQ_LENGTH
        segments = split_pair(pair)
        assert all(segments)
        cut = []
        for segment in segments:
            # A contiguous run of one document's text: each token follows the previous one.
            decoded = [where[t] for t in segment]
            d = decoded[0][0]
            for (_, s, j), (d2, s2, j2) in zip(decoded, decoded[1:]):
                follows_in_sentence = (s2, j2) == (s, j + 1)
                next_sentence = (s2, j2) == (s + 1, 0) and j == len(documents[d][s]) - 1
                assert d2 == d and (follows_in_sentence or next_sentence)
            _, s, j = decoded[0]
            front = j != 0
            _, s, j = decoded[-1]
            back = j != len(documents[d][s]) - 1
            trimmed.update(front=front, back=back)
            cut.append(front or back)
        if any(cut):
            # Trimming stops exactly at the limit, and only ever shortens the longer side.
            assert pair["input_ids"].size == MAX_SEQ_LENGTH
            for was_cut, mine, other in zip(cut, segments, segments[::-1]):
                if was_cut:
                    assert len(mine) >= len(other) - 1
    # Sentences of 8-20 tokens against 20 slots: most pairs are trimmed, at both ends.
    both = trimmed["front"] + trimmed["back"]
    assert both > 100 and within(trimmed["front"], both, 0.5, sigmas=5), trimmed


def test_epoch_pairs_is_a_pure_function_of_seed_and_epoch():
    documents, _ = synthetic_documents(23, (1, 5), (2, 9), seed=3)
    rules = pairs.PairRules(max_seq_length=MAX_SEQ_LENGTH)

    def as_tuples(examples):
        return [(tuple(e["input_ids"]), tuple(e["segment_ids"]), int(e["next_sentence_labels"]))
                for e in examples]

    first = as_tuples(pairs.epoch_pairs(documents, rules, SPECIAL, seed=4, epoch=0))
    assert len(first) > 20
    assert as_tuples(pairs.epoch_pairs(documents, rules, SPECIAL, seed=4, epoch=0)) == first
    assert as_tuples(pairs.epoch_pairs(documents, rules, SPECIAL, seed=4, epoch=1)) != first
    assert as_tuples(pairs.epoch_pairs(documents, rules, SPECIAL, seed=5, epoch=0)) != first
    for too_few in ([], documents[:1]):
        with pytest.raises(ValueError, match="at least 2 documents"):
            pairs.epoch_pairs(too_few, rules, SPECIAL, seed=4, epoch=0)


def test_short_seq_prob_makes_shorter_pairs():
    documents, _ = synthetic_documents(41, (8, 12), (3, 6), seed=6)

    def mean_length(short_seq_prob):
        rules = pairs.PairRules(max_seq_length=41, short_seq_prob=short_seq_prob)
        examples = [e for epoch in range(3)
                    for e in pairs.epoch_pairs(documents, rules, SPECIAL, seed=7, epoch=epoch)]
        return np.mean([e["input_ids"].size for e in examples]), len(examples)

    long_mean, long_count = mean_length(0.0)
    short_mean, short_count = mean_length(1.0)
    # Targets uniform in [2, 38] instead of always 38: about half as long, and more pairs.
    assert short_mean < 0.75 * long_mean and short_count > long_count
    assert long_mean > 30


def test_pair_rules_validation():
    with pytest.raises(ValueError, match="at least 5"):
        pairs.PairRules(max_seq_length=4)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="short_seq_prob"):
            pairs.PairRules(short_seq_prob=bad)


# ============================================================================================
# masking.py
# ============================================================================================
VOCAB_SIZE = 97  # ids 5..96 are ordinary tokens


def random_sequences(count, lengths, seed):
    """[CLS] x.. [SEP] y.. [SEP] with random ordinary ids; lengths (min, max) in total."""
    rng = np.random.default_rng(seed)
    sequences = []
    for _ in range(count):
        n = int(rng.integers(lengths[0], lengths[1], endpoint=True))
        ids = rng.integers(5, VOCAB_SIZE, n).astype(np.int32)
        ids[0], ids[-1] = CLS, SEP
        ids[int(rng.integers(2, n - 2, endpoint=True))] = SEP  # both segments non-empty
        sequences.append(ids)
    return sequences


def mask_all(sequences, rules, *, seed=0, keys=None, is_continuation=None):
    """mask_example on every sequence (key = its index unless given), inside tf.data."""
    keys = np.arange(len(sequences)) if keys is None else np.asarray(keys)
    lengths = np.asarray([len(s) for s in sequences], np.int32)
    padded = np.zeros((len(sequences), lengths.max()), np.int32)
    for row, ids in enumerate(sequences):
        padded[row, :len(ids)] = ids
    special_ids = tf.constant([CLS, SEP, PAD], tf.int32)

    def fn(row, n, key):
        return masking.mask_example(row[:n], seed=seed, key=key, rules=rules,
                                    special_ids=special_ids, mask_id=MASK,
                                    vocab_size=VOCAB_SIZE, is_continuation=is_continuation)

    ds = tf.data.Dataset.from_tensor_slices((padded, lengths, keys.astype(np.int64)))
    return list(ds.map(fn).as_numpy_iterator())


def check_masked(original, out):
    """Per-example invariants; returns the chosen positions."""
    n = len(original)
    positions, targets, masked = (out["masked_lm_positions"], out["masked_lm_ids"],
                                  out["input_ids"])
    assert masked.shape == (n,) and positions.dtype == np.int32
    assert np.all(np.diff(positions) > 0) and np.all((0 <= positions) & (positions < n))
    assert not np.isin(original[positions], [CLS, SEP, PAD]).any()
    np.testing.assert_array_equal(targets, original[positions])
    unchosen = np.setdiff1d(np.arange(n), positions)
    np.testing.assert_array_equal(masked[unchosen], original[unchosen])
    assert np.all((0 <= masked) & (masked < VOCAB_SIZE))
    return positions


def test_masking_statistics_over_many_examples():
    rules = masking.MaskingRules(max_predictions_per_seq=20)
    sequences = random_sequences(2001, (5, 61), seed=0)
    outcomes = collections.Counter()
    random_ids = set()
    for original, out in zip(sequences, mask_all(sequences, rules, seed=11)):
        positions = check_masked(original, out)
        assert positions.size == num_to_predict(len(original), 20), len(original)
        for before, after in zip(original[positions], out["input_ids"][positions]):
            kind = "mask" if after == MASK else "keep" if after == before else "random"
            outcomes[kind] += 1
            if kind == "random":
                random_ids.add(int(after))
    total = sum(outcomes.values())
    assert total > 7000
    # A random id is [MASK] or the original itself with probability 1/V each.
    assert within(outcomes["mask"], total, 0.8 + 0.1 / VOCAB_SIZE), outcomes
    assert within(outcomes["keep"], total, 0.1 + 0.1 / VOCAB_SIZE), outcomes
    assert within(outcomes["random"], total, 0.1 * (1 - 2 / VOCAB_SIZE)), outcomes
    assert len(random_ids) > 80  # drawn from the whole vocabulary


def test_every_candidate_position_is_equally_likely():
    sequence = np.concatenate([[CLS], np.arange(5, 14), [SEP], np.arange(14, 23), [SEP]])
    rules = masking.MaskingRules(max_predictions_per_seq=5)
    counts = np.zeros(21, int)
    for out in mask_all([sequence] * 1800, rules, seed=3):
        assert out["masked_lm_positions"].size == 3  # round(21 * 0.15)
        counts[out["masked_lm_positions"]] += 1
    assert counts[[0, 10, 20]].sum() == 0
    expected, std = 1800 * 3 / 18, math.sqrt(1800 * 3 / 18 * (1 - 3 / 18))
    candidates = np.delete(counts, [0, 10, 20])
    assert np.all(np.abs(candidates - expected) < 5 * std), candidates


def test_max_predictions_per_seq_caps_long_sequences():
    rules = masking.MaskingRules(max_predictions_per_seq=7)
    sequences = random_sequences(31, (101, 131), seed=2)
    for original, out in zip(sequences, mask_all(sequences, rules)):
        check_masked(original, out)
        assert round(len(original) * 0.15) >= 15
        assert out["masked_lm_positions"].size == 7


def test_num_to_predict_rounds_half_to_even_like_python():
    """Lengths where len * 0.15 is half-way in Python floats, which the original
    create_pretraining_data.py uses (10 -> 1.5 -> 2, 30 -> 4.5 -> 4, 190 -> 28.5 -> 28); the
    float32 product is 28.500002 for 190, which rounds to 29."""
    rules = masking.MaskingRules(max_predictions_per_seq=60)
    sequences = [random_sequences(1, (n, n), seed=n)[0] for n in (10, 30, 50, 70, 190, 350)]
    got = [out["masked_lm_positions"].size for out in mask_all(sequences, rules)]
    assert got == [num_to_predict(len(s), 60) for s in sequences] == [2, 4, 8, 10, 28, 52]


def test_masking_is_a_function_of_seed_and_key():
    rules = masking.MaskingRules(max_predictions_per_seq=5)
    sequences = random_sequences(5, (17, 33), seed=3)
    keys = [0, 7, 2**32 + 7, 12345, 3]
    first = mask_all(sequences, rules, seed=9, keys=keys)
    again = mask_all(sequences, rules, seed=9, keys=keys)
    special_ids = tf.constant([CLS, SEP, PAD], tf.int32)
    for ids, key, a, b in zip(sequences, keys, first, again):
        eager = masking.mask_example(tf.constant(ids), seed=9, key=tf.constant(key, tf.int64),
                                     rules=rules, special_ids=special_ids, mask_id=MASK,
                                     vocab_size=VOCAB_SIZE)
        for name in a:  # in tf.data or eagerly: the same draw
            np.testing.assert_array_equal(a[name], b[name])
            np.testing.assert_array_equal(a[name], eager[name].numpy())
    # One sequence under 200 keys, then under another seed: many different masks.
    many = mask_all([sequences[4]] * 200, rules, seed=9)
    assert len({tuple(o["masked_lm_positions"]) for o in many}) > 100
    other_seed = mask_all([sequences[4]] * 200, rules, seed=10)
    differ = sum(tuple(a["input_ids"]) != tuple(b["input_ids"])
                 for a, b in zip(many, other_seed))
    assert differ > 150


# Whole-word masking: ids 5..60 start words, 61..96 are '##' continuation pieces.
CONTINUATION = np.arange(VOCAB_SIZE) >= 61


def word_sequences(count, seed):
    """Sequences of multi-piece words, each with its word spans (as the test defines them);
    some segments open with orphan '##' pieces (a pair cut mid-word), which form a word."""
    rng = np.random.default_rng(seed)
    examples = []
    for _ in range(count):
        ids, spans = [CLS], []
        for _segment in range(2):
            if rng.random() < 0.4:  # orphan continuation pieces right after [CLS] / [SEP]
                orphan = rng.integers(61, VOCAB_SIZE, int(rng.integers(1, 3))).tolist()
                spans.append(("orphan", range(len(ids), len(ids) + len(orphan))))
                ids += orphan
            for _word in range(int(rng.integers(2, 7))):
                word = [int(rng.integers(5, 61))] + rng.integers(
                    61, VOCAB_SIZE, int(rng.choice(4, p=[0.4, 0.3, 0.2, 0.1]))).tolist()
                spans.append(("word", range(len(ids), len(ids) + len(word))))
                ids += word
            ids.append(SEP)
        examples.append((np.asarray(ids, np.int32), spans))
    return examples


def test_whole_word_masking_takes_whole_words_within_the_budget():
    rules = masking.MaskingRules(max_predictions_per_seq=7, whole_word_mask=True)
    examples = word_sequences(1501, seed=4)
    outs = mask_all([ids for ids, _ in examples], rules, seed=1,
                    is_continuation=tf.constant(CONTINUATION))
    orphans_chosen = orphan_alone = word_alone = mask_tokens = chosen_tokens = 0
    for (ids, spans), out in zip(examples, outs):
        positions = set(check_masked(ids, out).tolist())
        budget = num_to_predict(len(ids), 7)
        assert len(positions) <= budget
        chosen_spans = []
        for kind, span in spans:
            taken = [p in positions for p in span]
            assert all(taken) or not any(taken), (ids, span, positions)
            chosen_spans.append(taken[0])
            if not taken[0]:  # skipped only because it would overflow the budget
                assert len(span) > budget - len(positions)
            orphans_chosen += kind == "orphan" and taken[0]
        # An orphan after [SEP] is its own word, not the tail of the word before [SEP].
        for i, (kind, _) in enumerate(spans):
            if kind == "orphan" and i > 0:
                orphan_alone += chosen_spans[i] and not chosen_spans[i - 1]
                word_alone += chosen_spans[i - 1] and not chosen_spans[i]
        assert sum(len(span) for (_, span), taken in zip(spans, chosen_spans)
                   if taken) == len(positions)
        chosen_tokens += len(positions)
        mask_tokens += int((out["input_ids"] == MASK).sum())
    assert orphans_chosen > 50 and orphan_alone > 20 and word_alone > 20
    # 80% [MASK] per chosen token (plus a random id that happens to be [MASK]).
    assert within(mask_tokens, chosen_tokens, 0.8 + 0.1 / VOCAB_SIZE), (mask_tokens,
                                                                         chosen_tokens)


def test_without_whole_word_masking_pieces_are_chosen_alone():
    rules = masking.MaskingRules(max_predictions_per_seq=7)
    examples = word_sequences(301, seed=5)
    outs = mask_all([ids for ids, _ in examples], rules, is_continuation=None)
    split_words = 0
    for (ids, spans), out in zip(examples, outs):
        positions = set(check_masked(ids, out).tolist())
        assert len(positions) == num_to_predict(len(ids), 7)
        split_words += sum(0 < sum(p in positions for p in span) < len(span)
                           for _, span in spans)
    assert split_words > 100


def test_masking_rules_check():
    masking.MaskingRules(max_predictions_per_seq=20).check(128)  # BERT's settings pass
    masking.MaskingRules(max_predictions_per_seq=80).check(512)
    for prob in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="masked_lm_prob"):
            masking.MaskingRules(masked_lm_prob=prob).check(128)
    # round(131 * 0.15) = round(19.65) = 20 tokens to mask: 19 predictions are too few.
    with pytest.raises(ValueError, match="raise it to >= 20"):
        masking.MaskingRules(max_predictions_per_seq=19).check(131)
    masking.MaskingRules(max_predictions_per_seq=20).check(131)
    for too_many in (24, 0):
        with pytest.raises(ValueError, match="max_predictions_per_seq"):
            masking.MaskingRules(max_predictions_per_seq=too_many).check(MAX_SEQ_LENGTH)
    with pytest.raises(ValueError, match="sum to at most 1"):
        masking.MaskingRules(mask_token_prob=0.8, random_token_prob=0.3).check(128)


def test_continuation_table():
    table = masking.continuation_table(["[PAD]", "un", "##want", "##ed", "#", "a##"])
    np.testing.assert_array_equal(table.numpy(), [False, False, True, True, False, False])


# ============================================================================================
# pipeline.py
# ============================================================================================
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
    assert collections.Counter(read(prefix + "*")) == collections.Counter(expected)  # intact
    with pytest.raises(ValueError, match="no sentence pairs"):
        pipeline.pairs_to_tfrecords(iter([]), str(tmp_path / "empty"), num_shards=2)
    with pytest.raises(FileNotFoundError, match="TFRecord pattern .*missing.* matches no file"):
        pipeline.tfrecord_pair_dataset(str(tmp_path / "missing*"), 0, 1, None)
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".partial")]
    assert len(os.listdir(tmp_path)) == 3

    batches = pipeline.tfrecord_train_batches(
        pipeline.tfrecord_pair_dataset(prefix + "*", 0, 1, seed=2), spec,
        batch_size_per_host=BATCH, seed=2, shuffle_buffer=8, process_index=0, process_count=1)
    rows = [row for batch in take(batches, 2 * len(examples) // BATCH)
            for row in check_batch(batch)]
    assert set(rows) <= set(expected) and len(set(rows)) > len(set(expected)) // 2


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


# ============================================================================================
# corpus.py
# ============================================================================================
def test_parse_documents_blank_lines_separate_documents():
    text = ("\n\nFirst sentence.\n  Second one.  \n\n\n"
            "Other document.\r\n \t \r\n"
            "Windows line one.\r\nWindows line two.\r\n\r\n"
            "Last one, no final newline.")
    documents = corpus.parse_documents(text, "f.txt")
    assert documents == [
        Document("f.txt:0", ("First sentence.", "Second one.")),
        Document("f.txt:1", ("Other document.",)),
        Document("f.txt:2", ("Windows line one.", "Windows line two.")),
        Document("f.txt:3", ("Last one, no final newline.",)),
    ]
    for empty in ("", "\n\n", " \t\r\n  \n"):
        with pytest.raises(ValueError, match="empty"):
            corpus.parse_documents(empty, "e.txt")


def test_read_document_files_globs_and_comma_separated_patterns(tmp_path):
    (tmp_path / "a2.txt").write_text("Two a.\nTwo b.\n\nTwo c.\n", encoding="utf-8")
    (tmp_path / "a1.txt").write_text("One a.\n", encoding="utf-8")
    (tmp_path / "b.txt").write_bytes(b"\xef\xbb\xbfB with BOM.\r\nB two.\r\n")
    documents = corpus.read_document_files(f"{tmp_path}/a*.txt, {tmp_path}/b.txt,")
    assert documents == [
        Document(f"{tmp_path}/a1.txt:0", ("One a.",)),
        Document(f"{tmp_path}/a2.txt:0", ("Two a.", "Two b.")),
        Document(f"{tmp_path}/a2.txt:1", ("Two c.",)),
        Document(f"{tmp_path}/b.txt:0", ("B with BOM.", "B two.")),
    ]
    missing = f"{tmp_path}/nothing*.txt"
    with pytest.raises(FileNotFoundError, match=re.escape(f"{missing} matches no file")):
        corpus.read_document_files(f"{tmp_path}/a1.txt,{missing}")
    with pytest.raises(ValueError, match="empty"):
        corpus.read_document_files(" , ")
    (tmp_path / "empty.txt").write_text("\n \n", encoding="utf-8")
    with pytest.raises(ValueError, match="empty.txt is empty"):
        corpus.read_document_files(f"{tmp_path}/empty.txt")
    (tmp_path / "latin1.txt").write_bytes("Caf\u00e9 ok.\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.txt is not valid UTF-8 \(bad byte at offset 3"):
        corpus.read_document_files(f"{tmp_path}/latin1.txt")


def test_split_sentences_documented_rules():
    split = corpus.split_sentences
    assert split("Hello world. This is BERT! Is it? yes it is.") == [
        "Hello world.", "This is BERT!", "Is it? yes it is."]  # lower case: no new sentence
    # Paragraph lines are joined; digits and opening quotes/brackets start sentences.
    assert split("Version 3.11 is out.\n  2 more follow! 'Quoted' words. (Aside) ends.") == [
        "Version 3.11 is out.", "2 more follow!", "'Quoted' words.", "(Aside) ends."]
    # Abbreviations: mis-split before a capital (documented), kept before lower case.
    assert split("See e.g. Foo for details. Use i.e. this one.") == [
        "See e.g.", "Foo for details.", "Use i.e. this one."]
    assert split("Dr. Smith arrived.") == ["Dr.", "Smith arrived."]
    assert split('He stopped. "Why?" she asked.') == ["He stopped.", '"Why?" she asked.']
    # Fragments shorter than 3 characters are dropped.
    assert split("A. B. Real sentence.") == ["Real sentence."]
    assert split("Wait... What? No!") == ["Wait...", "What?", "No!"]


def test_split_sentences_keeps_closing_quotes_and_brackets():
    """A sentence ends at . ! or ? "optionally closed by quotes/brackets": the closing
    characters belong to the sentence they close and must not vanish from the text."""
    assert corpus.split_sentences('He said "Stop." Then he left.') == [
        'He said "Stop."', "Then he left."]
    assert corpus.split_sentences("(This is an aside.) Next one. [Citation.] Done.") == [
        "(This is an aside.)", "Next one.", "[Citation.]", "Done."]


def test_sentences_of_text_drops_code():
    text = "\n".join([  # as ast.get_docstring gives it: common indentation removed
        "Summary line of a docstring.",
        "It continues here. Second sentence.",
        "",
        ">>> print('doctest')",
        "doctest",
        "   ",
        "    indented_code = 1",
        "    more_code = 2",
        "",
        "+-----+-----+",
        "| tab | le  |",
        "",
        "Back to prose! Final words.",
    ])
    assert corpus.sentences_of_text(text) == [
        "Summary line of a docstring.", "It continues here.", "Second sentence.",
        "Back to prose!", "Final words."]
    # A paragraph with mostly prose lines and one indented line stays prose.
    assert corpus.sentences_of_text("Prose here.\nMore prose.\n    one indent.") == [
        "Prose here.", "More prose. one indent."]
    assert corpus.sentences_of_text("") == []


@pytest.fixture(scope="module")
def stdlib():
    return corpus.stdlib_documents()


def test_stdlib_documents(stdlib):
    assert len(stdlib) >= 100
    assert all(len(d.sentences) >= 2 for d in stdlib)
    names = [d.name for d in stdlib]
    assert len(set(names)) == len(names) and "textwrap" in names and "json.decoder" in names
    assert not [n for n in names if {"test", "tests", "idlelib", "lib2to3"} & set(n.split("."))]
    sentences = [s for d in stdlib for s in d.sentences]
    assert len(sentences) > 5000
    assert all(len(s) >= 3 and "\n" not in s and s == s.strip() for s in sentences)
    assert not [s for s in sentences if s.startswith(">>>")]
    assert stdlib[names.index("textwrap")].sentences[0] == "Text wrapping and filling."
    assert corpus.stdlib_documents() == stdlib  # parsed in a fixed order


def test_split_documents_is_stable_and_holds_out_the_fraction():
    documents = [Document(f"doc{i}", ("One sentence.", "Two.")) for i in range(2000)]
    train, held_out = corpus.split_documents(documents, 0.1)
    assert within(len(held_out), 2000, 0.1, sigmas=5) and len(train) + len(held_out) == 2000
    assert {d.name for d in train}.isdisjoint(d.name for d in held_out)
    shuffled = documents[:]
    random.Random(0).shuffle(shuffled)
    train2, held_out2 = corpus.split_documents(shuffled, 0.1)
    assert {d.name for d in held_out2} == {d.name for d in held_out}
    assert train2 == [d for d in shuffled if d in train]  # order kept
    # The name alone decides, not the text.
    renamed = [Document(d.name, ("Other text.", "More.")) for d in documents]
    assert [d.name for d in corpus.split_documents(renamed, 0.1)[1]] == [
        d.name for d in held_out]
    assert len(corpus.split_documents(documents, 0.5)[1]) > len(held_out) * 3
    for fraction in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="eval_fraction"):
            corpus.split_documents(documents, fraction)
    with pytest.raises(ValueError, match="too few"):
        corpus.split_documents(documents[:1], 0.5)
    none_held = [d for d in documents if not corpus.is_held_out(d.name, 0.1)][:5]
    with pytest.raises(ValueError, match="too few"):
        corpus.split_documents(none_held, 0.1)


# The Wikipedia builder's code ships with tensorflow_datasets, so mock_data works offline:
# tfds.load finds the builder class and its features ('title', 'text') without the network
# and without prepared data, and our as_dataset replaces the reading of the (absent) files.
TFDS_NAME = "wikipedia/20230601.en"


def mock_articles(texts):
    def as_dataset(self, *args, **kwargs):
        return tf.data.Dataset.from_tensor_slices(
            {"title": [f"Title {i}" for i in range(len(texts))], "text": texts})
    return tfds.testing.mock_data(as_dataset_fn=as_dataset)


def test_tfds_documents_with_mock_data(tmp_path):
    texts = ["First article. It has two sentences.\n\n>>> code()\n\nA last one!",
             "    only = 'indented code'\n    nothing = 'else'",
             "Third article, in one sentence."]
    with mock_articles(texts):
        documents = corpus.tfds_documents(TFDS_NAME, "train", data_dir=str(tmp_path))
        with pytest.raises(ValueError, match=r"no feature 'body' \(it has \['text', 'title'\]"):
            corpus.tfds_documents(TFDS_NAME, "train", text_key="body", data_dir=str(tmp_path))
    assert documents == [
        Document(f"{TFDS_NAME}/train:0", ("First article.", "It has two sentences.",
                                          "A last one!")),
        Document(f"{TFDS_NAME}/train:2", ("Third article, in one sentence.",)),
    ]
    with mock_articles(["    code = 1\n    more = 2", ""]):
        with pytest.raises(ValueError, match="has no text"):
            corpus.tfds_documents(TFDS_NAME, "train", data_dir=str(tmp_path))
