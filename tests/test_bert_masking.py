"""BERT pretraining data: masked-LM masking (``bert_jax.pretraining.masking``), run inside
tf.data as the pipeline runs it.

Sizes: vocabulary 97 (ids 5..96 ordinary; for whole-word masking 61..96 are '##' pieces),
max_predictions_per_seq 5, 7, 20 or 60, sequences of 5 to 131 tokens (odd bounds).
Statistical tests draw from fixed seeds, so they are deterministic; their tolerances are ~4-5
binomial standard deviations, so they fail only when a rate is really off.
"""
import collections
import math

import numpy as np
import pytest
import tensorflow as tf

from bert_data_helpers import CLS, MASK, MAX_SEQ_LENGTH, PAD, SEP, num_to_predict, within

from bert_jax.pretraining import masking


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
