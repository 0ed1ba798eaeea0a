"""Greedy and beam search against fake, deterministic models and brute-force enumeration."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transformer_jax import decode

BOS, EOS = 0, 1


# ------------------------------------------------------------------------------ fake models


def history_fake(table):
    """A model whose logits depend on row, step, previous token and the sum of tokens fed.

    table: float32[B, T, S, V, V], indexed [row, step, token_sum % S, previous token].
    The cache holds a scalar step counter (must survive beam reordering untouched), the
    per-hypothesis token sum (must be reordered with the beams) and the batch row.
    """
    table = jnp.asarray(table)
    num_sums = table.shape[2]

    def tokens_to_logits(ids, cache):
        fed = ids[:, 0]  # [N]
        token_sum = cache["token_sum"] + fed
        logits = table[cache["row"], cache["step"], token_sum % num_sums, fed]  # [N, V]
        return logits, {"step": cache["step"] + 1, "token_sum": token_sum, "row": cache["row"]}

    return tokens_to_logits


def history_cache(batch_size, beam_size=1):
    cache = {"step": jnp.array(0, jnp.int32), "token_sum": jnp.zeros((batch_size,), jnp.int32),
             "row": jnp.arange(batch_size, dtype=jnp.int32)}
    return decode.expand_to_beams(cache, beam_size)


def markov_fake(probs):
    """A model whose next-token distribution is probs[previous token] (rows sum to 1)."""
    log_table = jnp.log(jnp.asarray(probs, jnp.float32))  # [V, V]; log 0 = -inf is allowed

    def tokens_to_logits(ids, cache):
        return log_table[ids[:, 0]], cache  # [N, V]

    return tokens_to_logits


def markov_cache(rows):
    return {"unused": jnp.zeros((rows, 2), jnp.float32)}


def counting(tokens_to_logits, calls):
    """Wraps a model so that every executed step appends to `calls` (proves early exit)."""

    def wrapped(ids, cache):
        jax.debug.callback(lambda: calls.append(1))
        return tokens_to_logits(ids, cache)

    return wrapped


# ------------------------------------------------------------------------ numpy references


def np_log_softmax(x):
    x = np.asarray(x, np.float64)
    return x - np.max(x) - np.log(np.sum(np.exp(x - np.max(x))))


def brute_force(table, row, length, alpha):
    """Every finished output of a row with EOS forced at `length`, best first: [(score, seq)]."""
    num_sums = table.shape[2]
    results = []

    def extend(seq, log_prob, token_sum, fed):
        step = len(seq)
        token_sum += fed
        log_probs = np_log_softmax(table[row, step, token_sum % num_sums, fed])
        candidates = [EOS] if step + 1 == length else range(table.shape[-1])
        for token in candidates:
            new_log_prob = log_prob + log_probs[token]
            if token == EOS:
                penalty = ((5 + step + 1) / 6) ** alpha
                results.append((new_log_prob / penalty, seq + [EOS]))
            else:
                extend(seq + [token], new_log_prob, token_sum, token)

    extend([], 0.0, 0, BOS)
    return sorted(results, key=lambda item: -item[0])


def np_greedy(table, row, length):
    seq, token_sum, fed = [], 0, BOS
    while not seq or seq[-1] != EOS:
        token_sum += fed
        logits = table[row, len(seq), token_sum % table.shape[2], fed]
        fed = EOS if len(seq) + 1 == length else int(np.argmax(logits))
        seq.append(fed)
    return seq


def padded(seq, length):
    return seq + [decode.PAD_ID] * (length - len(seq))


def random_table(seed, batch=3, steps=4, sums=3, vocab=5, eos_bias=0.0):
    table = np.random.default_rng(seed).normal(size=(batch, steps, sums, vocab, vocab))
    table[..., EOS] += eos_bias
    return table.astype(np.float32)


# ---------------------------------------------------------------------------- beam search


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_wide_beam_finds_exact_top_k_of_brute_force_per_row(alpha):
    batch, vocab, length = 3, 5, 4
    # Every non-EOS prefix of length < 4 fits in 4**3 = 64 beams, so the search is exact.
    beam = 64
    # EOS bias -2 makes longer, history-dependent sequences win in every row.
    table = random_table(seed=2, batch=batch, vocab=vocab, steps=length, eos_bias=-2.0)
    tokens, scores = decode.beam_search(
        history_fake(table), history_cache(batch, beam), batch, beam, length, BOS, EOS,
        alpha=alpha, max_lengths=jnp.full((batch,), length, jnp.int32))

    best_sequences = set()
    for row in range(batch):
        expected = brute_force(table, row, length, alpha)[:beam]
        np.testing.assert_allclose(scores[row], [s for s, _ in expected], rtol=1e-5, atol=1e-5)
        assert tokens[row, 0].tolist() == padded(expected[0][1], length)
        best_sequences.add(tuple(expected[0][1]))
    assert len(best_sequences) == batch  # the rows really decode differently


def test_beam_without_cache_reordering_disagrees_with_brute_force(monkeypatch):
    """Guards the test above: the history leaf makes a skipped cache gather visible."""
    batch, beam, length = 3, 64, 4
    table = random_table(seed=2, vocab=5, steps=length, eos_bias=-2.0)
    monkeypatch.setattr(decode, "gather_beams", lambda tree, indices, beam_size: tree)
    _, scores = decode.beam_search(
        history_fake(table), history_cache(batch, beam), batch, beam, length, BOS, EOS,
        max_lengths=jnp.full((batch,), length, jnp.int32))
    for row in range(batch):
        expected = [score for score, _ in brute_force(table, row, length, 0.6)[:beam]]
        assert not np.allclose(scores[row], expected, atol=1e-3)


def test_beam_finds_the_sequence_greedy_misses():
    # After BOS: 2 (0.6) beats 3 (0.4); but 2 is followed by EOS only 0.3, while 3 is
    # followed by EOS 0.99, so [3, EOS] (0.396) beats greedy's [2, EOS] (0.18).
    probs = np.array([
        [0.0, 0.0, 0.6, 0.4, 0.0],  # after BOS
        [0.2, 0.2, 0.2, 0.2, 0.2],  # after EOS (never used)
        [0.0, 0.3, 0.25, 0.25, 0.2],  # after 2
        [0.0, 0.99, 0.0, 0.01, 0.0],  # after 3
        [0.0, 1.0, 0.0, 0.0, 0.0],  # after 4
    ])
    fake, length = markov_fake(probs), 5
    greedy = decode.greedy_search(fake, markov_cache(1), 1, length, BOS, EOS)
    tokens, scores = decode.beam_search(fake, markov_cache(2), 1, 2, length, BOS, EOS, alpha=0.0)
    assert greedy.tolist() == [[2, 1, 0, 0, 0]]
    assert tokens[0, 0].tolist() == [3, 1, 0, 0, 0]
    np.testing.assert_allclose(scores[0, 0], np.log(0.4 * 0.99), rtol=1e-6)
    np.testing.assert_allclose(scores[0, 1], np.log(0.6 * 0.3), rtol=1e-6)


# From BOS: EOS 0.3, token 2 0.7; after 2: EOS 0.4. Short = [EOS], long = [2, EOS].
ALPHA_PROBS = np.array([
    [0.0, 0.3, 0.7, 0.0, 0.0],
    [0.2, 0.2, 0.2, 0.2, 0.2],
    [0.15, 0.4, 0.15, 0.15, 0.15],
    [0.01, 0.96, 0.01, 0.01, 0.01],
    [0.01, 0.96, 0.01, 0.01, 0.01],
])


@pytest.mark.parametrize("alpha, long_wins", [(0.0, False), (0.3, False), (0.6, True), (1.0, True)])
def test_length_penalty_flips_short_and_long_as_the_formula_predicts(alpha, long_wins):
    # short: log(0.3) / (6/6)**a = -1.204; long: log(0.7 * 0.4) / (7/6)**a = -1.273 / 1.167**a.
    # They cross at a = ln(1.273 / 1.204) / ln(7/6) = 0.36.
    short_score = np.log(0.3) / 1.0 ** alpha
    long_score = np.log(0.7 * 0.4) / (7 / 6) ** alpha
    tokens, scores = decode.beam_search(
        markov_fake(ALPHA_PROBS), markov_cache(2), 1, 2, 4, BOS, EOS, alpha=alpha)
    by_rank = [[1, 0, 0, 0], [2, 1, 0, 0]][::-1 if long_wins else 1]
    assert tokens[0].tolist() == by_rank
    expected = [long_score, short_score] if long_wins else [short_score, long_score]
    np.testing.assert_allclose(scores[0], expected, rtol=1e-6)


def test_beam_stops_once_no_alive_hypothesis_can_win():
    # EOS is likely everywhere: after two steps both finished slots hold far better scores
    # than any alive hypothesis can reach, so 2 of the 6 allowed steps run.
    probs = np.full((5, 5), 0.01 / 4)
    np.fill_diagonal(probs, 0.0)
    probs[:, EOS] = 0.99
    probs[BOS] = [0.0, 0.9, 0.06, 0.04, 0.0]
    probs /= probs.sum(axis=1, keepdims=True)
    calls = []
    tokens, scores = decode.beam_search(
        counting(markov_fake(probs), calls), markov_cache(2), 1, 2, 6, BOS, EOS, alpha=0.0)
    assert len(calls) == 2
    assert tokens[0].tolist() == [[1, 0, 0, 0, 0, 0], [2, 1, 0, 0, 0, 0]]
    np.testing.assert_allclose(scores[0], np.log([0.9, 0.06 * probs[2, EOS]]), rtol=1e-5)


@pytest.mark.parametrize("alpha, expected", [(0.0, [1, 0, 0]), (2.0, [2, 3, 1])])
def test_early_stop_bound_lets_a_longer_hypothesis_overtake(alpha, expected):
    # After step 1 the alive [2] (log 0.45) is below the finished [EOS] (log 0.55), but with
    # alpha = 2 its completion [2, 3, EOS] scores log(0.45 * 0.9 * 0.95) / (8/6)**2 = -0.537
    # > -0.598: stopping on raw log-probs would be wrong, the bound must use penalty(L).
    probs = np.array([
        [0.0, 0.55, 0.45, 0.0, 0.0],
        [0.2, 0.2, 0.2, 0.2, 0.2],
        [0.0, 0.05, 0.05, 0.9, 0.0],
        [0.0, 0.95, 0.05, 0.0, 0.0],
        [0.2, 0.2, 0.2, 0.2, 0.2],
    ])
    tokens, scores = decode.beam_search(markov_fake(probs), markov_cache(1), 1, 1, 3, BOS, EOS,
                                        alpha=alpha)
    assert tokens[0, 0].tolist() == expected
    best = np.log(0.55) if alpha == 0.0 else np.log(0.45 * 0.9 * 0.95) / (8 / 6) ** 2
    np.testing.assert_allclose(scores[0, 0], best, rtol=1e-6)


def test_beam_respects_per_row_max_lengths():
    batch, beam, length = 3, 4, 7
    table = random_table(seed=2, batch=batch, steps=length, vocab=11, eos_bias=-3.0)
    limits = [1, 3, 5]
    tokens, scores = decode.beam_search(
        history_fake(table), history_cache(batch, beam), batch, beam, length, BOS, EOS,
        max_lengths=jnp.array(limits, jnp.int32))
    # Limit 1 allows one hypothesis, [EOS]; the other slots stay empty.
    assert tokens[0].tolist() == [[EOS] + [0] * 6] + [[0] * 7] * 3
    assert np.isfinite(scores[0, 0]) and np.all(scores[0, 1:] == -np.inf)
    for row, limit in [(1, 3), (2, 5)]:
        for hypothesis in tokens[row].tolist():
            end = hypothesis.index(EOS)  # every hypothesis finished...
            assert end < limit  # ...within its row's limit
            assert hypothesis[end + 1:] == [decode.PAD_ID] * (length - end - 1)
        assert np.all(np.diff(scores[row]) <= 0)  # best first
    # EOS is unlikely (bias -3), so the best hypotheses run to the limit rather than stop early.
    assert [tokens[row, 0].tolist().index(EOS) for row in (1, 2)] == [2, 4]


def test_beam_returns_alive_hypotheses_when_none_finished():
    probs = np.full((5, 5), 0.25)
    probs[:, EOS] = 0.0  # EOS impossible, so nothing ever finishes
    tokens, scores = decode.beam_search(markov_fake(probs), markov_cache(3), 1, 3, 2, BOS, EOS)
    assert not np.any(np.asarray(tokens) == EOS)
    np.testing.assert_allclose(scores[0], np.full(3, 2 * np.log(0.25) / (7 / 6) ** 0.6), rtol=1e-6)
    assert len({tuple(h) for h in tokens[0].tolist()}) == 3  # distinct hypotheses


def test_jitted_beam_search_matches_eager():
    batch, beam, length = 3, 4, 7
    table = random_table(seed=3, batch=batch, steps=length, vocab=11)
    search = functools.partial(decode.beam_search, history_fake(table), batch_size=batch,
                               beam_size=beam, max_decode_len=length, bos_id=BOS, eos_id=EOS)
    max_lengths = jnp.array([2, 7, 4], jnp.int32)
    cache = history_cache(batch, beam)
    eager_tokens, eager_scores = search(cache, max_lengths=max_lengths)
    jit_tokens, jit_scores = jax.jit(search)(cache, max_lengths=max_lengths)
    np.testing.assert_array_equal(jit_tokens, eager_tokens)
    np.testing.assert_allclose(jit_scores, eager_scores, rtol=1e-6)
    assert jit_tokens.shape == (batch, beam, length) and jit_scores.shape == (batch, beam)


# --------------------------------------------------------------------------- greedy search


def test_greedy_matches_numpy_rollout_and_beam_of_one():
    batch, length = 3, 7
    # EOS is unlikely, so it only appears where max_lengths forces it; a 1-beam search then
    # never holds an early finished hypothesis and must follow the greedy path exactly.
    table = random_table(seed=4, batch=batch, steps=length, vocab=11, eos_bias=-8.0)
    limits = [2, 7, 4]
    greedy = decode.greedy_search(history_fake(table), history_cache(batch), batch, length,
                                  BOS, EOS, max_lengths=jnp.array(limits, jnp.int32))
    expected = [padded(np_greedy(table, row, limit), length) for row, limit in enumerate(limits)]
    assert greedy.tolist() == expected
    beam_tokens, _ = decode.beam_search(history_fake(table), history_cache(batch), batch, 1,
                                        length, BOS, EOS, max_lengths=jnp.array(limits, jnp.int32))
    np.testing.assert_array_equal(beam_tokens[:, 0], greedy)


def test_greedy_pads_after_eos_and_exits_when_all_rows_finished():
    probs = np.array([
        [0.0, 0.1, 0.5, 0.4, 0.0],  # BOS -> 2
        [0.2, 0.2, 0.2, 0.2, 0.2],
        [0.0, 0.2, 0.0, 0.5, 0.3],  # 2 -> 3
        [0.0, 0.6, 0.0, 0.0, 0.4],  # 3 -> EOS
        [0.0, 0.6, 0.4, 0.0, 0.0],
    ])
    calls = []
    tokens = decode.greedy_search(counting(markov_fake(probs), calls), markov_cache(3), 3, 9,
                                  BOS, EOS, max_lengths=jnp.array([9, 2, 1], jnp.int32))
    assert tokens.tolist() == [[2, 3, 1] + [0] * 6, [2, 1] + [0] * 7, [1] + [0] * 8]
    assert len(calls) == 3  # the longest row ends at step 3 of 9


def test_greedy_without_eos_fills_the_buffer():
    probs = np.full((5, 5), 0.1)
    probs[:, 4] = 0.6
    tokens = decode.greedy_search(markov_fake(probs), markov_cache(3), 3, 5, BOS, EOS,
                                  max_lengths=jnp.array([9, 9, 9], jnp.int32))
    assert tokens.tolist() == [[4] * 5] * 3  # limits beyond the buffer never force EOS


# ------------------------------------------------------------------------------- helpers


def test_expand_to_beams_repeats_rows_beam_minor_and_keeps_scalars():
    tree = {"x": jnp.array([[1, 2], [3, 4]]), "index": jnp.array(7)}
    expanded = decode.expand_to_beams(tree, 3)
    assert expanded["x"].tolist() == [[1, 2]] * 3 + [[3, 4]] * 3
    assert expanded["index"].shape == () and int(expanded["index"]) == 7


def test_gather_beams_picks_rows_within_each_batch_row():
    # B = 2, K = 3: rows 0..2 belong to batch row 0, rows 3..5 to batch row 1.
    tree = {"x": jnp.arange(12).reshape(6, 2), "index": jnp.array(5)}
    gathered = decode.gather_beams(tree, jnp.array([[2, 0, 0], [1, 1, 2]]), beam_size=3)
    assert gathered["x"][:, 0].tolist() == [4, 0, 0, 8, 8, 10]
    assert int(gathered["index"]) == 5


def test_length_penalty_is_the_gnmt_formula():
    np.testing.assert_allclose(decode.length_penalty(7, 0.6), (12 / 6) ** 0.6, rtol=1e-6)
    assert float(decode.length_penalty(3, 0.0)) == 1.0


# ---------------------------------------------------------------------------- validation


@pytest.mark.parametrize("overrides, message", [
    ({"beam_size": 0}, "beam_size"),
    ({"max_decode_len": 0}, "max_decode_len"),
    ({"batch_size": 2.0}, "batch_size"),
    ({"alpha": -0.1}, "alpha"),
    ({"eos_id": 5}, "eos_id"),
    ({"bos_id": -1}, "bos_id"),
    ({"max_lengths": jnp.array([3, 3])}, "shape"),
    ({"max_lengths": jnp.array([3, 0, 3])}, ">= 1"),
    ({"max_lengths": jnp.array([3.0, 3.0, 3.0])}, "integers"),
    ({"cache": markov_cache(5)}, "cache leaf"),
])
def test_beam_search_rejects_bad_arguments(overrides, message):
    args = dict(tokens_to_logits=markov_fake(ALPHA_PROBS), cache=markov_cache(6), batch_size=3,
                beam_size=2, max_decode_len=4, bos_id=BOS, eos_id=EOS)
    with pytest.raises(ValueError, match=message):
        decode.beam_search(**{**args, **overrides})


def test_search_rejects_a_model_that_changes_its_cache():
    def grows_cache(ids, cache):
        return jnp.zeros((ids.shape[0], 5)), {"unused": cache["unused"].astype(jnp.int32)}

    with pytest.raises(ValueError, match="same structure"):
        decode.greedy_search(grows_cache, markov_cache(3), 3, 4, BOS, EOS)
