"""BERT pretraining data: next-sentence pairs (``bert_jax.pretraining.pairs``).

Sizes: max_seq_length 23 (odd), or 53 and 41 where a test needs pairs that are never
truncated or pairs of many sentences. Statistical tests draw from fixed seeds, so they are
deterministic; their tolerances are ~4-5 binomial standard deviations, so they fail only when
a rate is really off.

Synthetic tokenized documents give every token a unique id that decodes back to
(document, sentence, position), so a pair can be read back and checked against the rules of
the original ``create_pretraining_data.py``.
"""
import collections

import numpy as np
import pytest

from bert_data_helpers import CLS, MAX_SEQ_LENGTH, SEP, SPECIAL, within

from bert_jax.pretraining import pairs


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
    for epoch in range(20):  # ~8000 labels: 4.5 sigma is 2.5 points, so 45/55 fails
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
    assert total > 7000 and single_sentence_pairs > 2000
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
