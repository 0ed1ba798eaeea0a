"""Autoregressive search, model-agnostic and pure JAX: greedy and beam search.

Neither jax, flax nor optax ships a beam search, so it is written here, following the
paper ("beam size 4, length penalty alpha = 0.6", Vaswani et al. 2017 sec. 6.1) and the
tensor2tensor / flax-wmt algorithm: alive and finished hypotheses are kept apart, each step
expands the top 2K candidates, finished hypotheses are ranked by their log-probability
divided by the GNMT length penalty ((5 + length) / 6) ** alpha, and a row stops as soon as
no alive hypothesis can beat its worst finished one.

The model side is one function:

    tokens_to_logits(ids: int32[N, 1], cache) -> (logits: float[N, V], new_cache)

Cache contract: every cache leaf is either shaped [N, ...] (one row per hypothesis; beam
search reorders these rows) or a scalar of shape () (e.g. a shared decode index; left
untouched). N = B for greedy search and B * K for beam search, with the beam index minor:
row b * K + k is beam k of batch row b. `expand_to_beams` builds such trees from [B, ...].

Sequences are the generated tokens without BOS, including the EOS that ends them, followed
by PAD_ID. Lengths count generated tokens including EOS, so a bare EOS has length 1.

Dimension letters: B batch, K beam, C candidates per step (2K), V vocab,
L max_decode_len, N rows seen by the model (B or B * K).
"""
import numbers
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

PyTree = Any
TokensToLogits = Callable[[jax.Array, PyTree], tuple[jax.Array, PyTree]]

PAD_ID = 0
# Empty finished slots and impossible hypotheses score -inf: unlike a large finite
# constant, -inf stays -inf under addition and division by the length penalty.
NEG_INF = -jnp.inf


def length_penalty(length: jax.Array, alpha: float) -> jax.Array:
    """GNMT length penalty ((5 + length) / 6) ** alpha (Wu et al. 2016, eq. 14)."""
    return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def expand_to_beams(tree: PyTree, beam_size: int) -> PyTree:
    """Repeats every [B, ...] leaf to [B * K, ...], beam index minor; scalars stay as they are."""
    _check_positive("beam_size", beam_size)

    def expand(leaf):
        leaf = jnp.asarray(leaf)
        if leaf.ndim == 0:
            return leaf
        return jnp.repeat(leaf, beam_size, axis=0)  # [B, ...] -> [B * K, ...]

    return jax.tree.map(expand, tree)


def gather_beams(tree: PyTree, beam_indices: jax.Array, beam_size: int) -> PyTree:
    """Selects, per batch row, the beams `beam_indices` int32[B, K'] of every [B * K, ...] leaf.

    Returns leaves shaped [B * K', ...]; scalar leaves are returned unchanged.
    """
    batch_size, new_beam_size = beam_indices.shape

    def gather(leaf):
        if leaf.ndim == 0:
            return leaf
        per_row = leaf.reshape(batch_size, beam_size, *leaf.shape[1:])  # [B, K, ...]
        picked = _take_beams(per_row, beam_indices)  # [B, K', ...]
        return picked.reshape(batch_size * new_beam_size, *leaf.shape[1:])  # [B * K', ...]

    return jax.tree.map(gather, tree)


def _take_beams(x: jax.Array, beam_indices: jax.Array) -> jax.Array:
    """x[b, beam_indices[b, j]] for every b, j: [B, K, ...] x int32[B, K'] -> [B, K', ...]."""
    return jax.vmap(lambda row, indices: row[indices])(x, beam_indices)


# ----------------------------------------------------------------------------- validation


def _is_int(value) -> bool:
    """Python or NumPy integer; bool is excluded because True would silently mean 1."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_positive(name: str, value: int) -> None:
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_token_id(name: str, value: int) -> None:
    if not _is_int(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")


def _validated_max_lengths(max_lengths: Optional[jax.Array],
                           batch_size: int) -> Optional[jax.Array]:
    """Checks max_lengths is int[B] (values too, when concrete) and returns it as int32[B]."""
    if max_lengths is None:
        return None
    if jnp.shape(max_lengths) != (batch_size,):
        raise ValueError(
            f"max_lengths must have shape ({batch_size},), got {jnp.shape(max_lengths)}")
    if not jnp.issubdtype(jnp.result_type(max_lengths), jnp.integer):
        raise ValueError(f"max_lengths must be integers, got {jnp.result_type(max_lengths)}")
    if not isinstance(max_lengths, jax.core.Tracer) and int(jnp.min(max_lengths)) < 1:
        raise ValueError(f"max_lengths must all be >= 1, got {max_lengths}")
    return jnp.asarray(max_lengths, jnp.int32)


def _check_model_contract(tokens_to_logits: TokensToLogits, cache: PyTree, num_rows: int,
                          bos_id: int, eos_id: int) -> None:
    """Traces the model once (no FLOPs) to turn contract violations into clear errors."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(cache):
        if jnp.ndim(leaf) != 0 and jnp.shape(leaf)[0] != num_rows:
            raise ValueError(f"cache leaf {jax.tree_util.keystr(path)} has shape {jnp.shape(leaf)};"
                             f" expected [{num_rows}, ...] or a scalar")
    ids = jax.ShapeDtypeStruct((num_rows, 1), jnp.int32)
    logits, new_cache = jax.eval_shape(tokens_to_logits, ids, cache)
    if logits.ndim != 2 or logits.shape[0] != num_rows:
        raise ValueError(f"tokens_to_logits must return logits [{num_rows}, V], got {logits.shape}")
    vocab_size = logits.shape[1]
    if max(bos_id, eos_id) >= vocab_size:
        raise ValueError(f"bos_id {bos_id} and eos_id {eos_id} must be < vocab size {vocab_size}")
    old_spec = jax.tree.map(lambda x: (jnp.shape(x), jnp.result_type(x)), cache)
    new_spec = jax.tree.map(lambda x: (x.shape, x.dtype), new_cache)
    if jax.tree.structure(old_spec) != jax.tree.structure(new_spec) or old_spec != new_spec:
        raise ValueError("tokens_to_logits must return a cache with the same structure, shapes and"
                         f" dtypes as its input: got {new_spec}, expected {old_spec}")


def _row_limits(max_lengths: Optional[jax.Array], batch_size: int,
                max_decode_len: int) -> jax.Array:
    """Longest possible output per row, int32[B]: its max_length, capped by the buffer L."""
    if max_lengths is None:
        return jnp.full((batch_size,), max_decode_len, jnp.int32)
    return jnp.minimum(max_lengths, max_decode_len)


def _force_eos_at_limit(log_probs: jax.Array, reached_limit: jax.Array, eos_id: int) -> jax.Array:
    """Leaves only EOS possible where reached_limit (broadcast over all but V).

    EOS keeps the model's own log-probability (no renormalisation, as in fairseq), so a
    forced hypothesis is still scored by the probability the model gives it.
    """
    is_eos = jnp.arange(log_probs.shape[-1]) == eos_id  # [V]
    return jnp.where(reached_limit[..., None] & ~is_eos, NEG_INF, log_probs)


# -------------------------------------------------------------------------------- greedy


class _GreedyState(NamedTuple):
    step: jax.Array  # int32 (): number of tokens generated so far.
    last_tokens: jax.Array  # int32[B]: the token fed at the next step.
    tokens: jax.Array  # int32[B, L]: generated tokens, PAD_ID after EOS.
    finished: jax.Array  # bool[B]: the row has emitted EOS.
    cache: PyTree


def greedy_search(tokens_to_logits: TokensToLogits, cache: PyTree, batch_size: int,
                  max_decode_len: int, bos_id: int, eos_id: int,
                  max_lengths: Optional[jax.Array] = None) -> jax.Array:
    """Argmax decoding from BOS until every row has emitted EOS or L tokens.

    Args:
      tokens_to_logits: the model step (see the module docstring), called with N = B.
      cache: initial decoding cache; leaves [B, ...] or scalars.
      batch_size: B.
      max_decode_len: L, the output buffer length (static).
      bos_id: token fed at the first step.
      eos_id: token that ends a row.
      max_lengths: optional int[B] per-row output length limit (e.g. source length + 50);
        a row that reaches it is forced to emit EOS. A limit above L never triggers.

    Returns:
      int32[B, L]: generated tokens without BOS, including EOS, then PAD_ID.
    """
    for name, value in (("batch_size", batch_size), ("max_decode_len", max_decode_len)):
        _check_positive(name, value)
    _check_token_id("bos_id", bos_id)
    _check_token_id("eos_id", eos_id)
    max_lengths = _validated_max_lengths(max_lengths, batch_size)
    _check_model_contract(tokens_to_logits, cache, batch_size, bos_id, eos_id)

    def not_done(state: _GreedyState) -> jax.Array:
        return (state.step < max_decode_len) & ~jnp.all(state.finished)

    def step(state: _GreedyState) -> _GreedyState:
        ids = state.last_tokens[:, None]  # [B] -> [B, 1]
        logits, cache = tokens_to_logits(ids, state.cache)  # [B, V]
        logits = logits.astype(jnp.float32)
        if max_lengths is not None:
            logits = _force_eos_at_limit(logits, state.step + 1 >= max_lengths, eos_id)
        next_tokens = jnp.argmax(logits, axis=-1).astype(jnp.int32)  # [B]
        next_tokens = jnp.where(state.finished, PAD_ID, next_tokens)
        return _GreedyState(
            step=state.step + 1,
            last_tokens=next_tokens,
            tokens=state.tokens.at[:, state.step].set(next_tokens),
            finished=state.finished | (next_tokens == eos_id),
            cache=cache,
        )

    initial = _GreedyState(
        step=jnp.array(0, jnp.int32),
        last_tokens=jnp.full((batch_size,), bos_id, jnp.int32),
        tokens=jnp.full((batch_size, max_decode_len), PAD_ID, jnp.int32),
        finished=jnp.zeros((batch_size,), bool),
        cache=cache,
    )
    return jax.lax.while_loop(not_done, step, initial).tokens


# ---------------------------------------------------------------------------------- beam


class _BeamState(NamedTuple):
    """Search state. Sequences keep BOS at position 0, so column t holds the token fed at step t."""

    step: jax.Array  # int32 (): number of tokens generated so far.
    alive_seqs: jax.Array  # int32[B, K, L + 1]: unfinished hypotheses, best first.
    alive_log_probs: jax.Array  # float32[B, K]: their log-probabilities; -inf = impossible.
    finished_seqs: jax.Array  # int32[B, K, L + 1]: hypotheses ended by EOS, best first.
    finished_scores: jax.Array  # float32[B, K]: log-prob / length penalty; -inf = empty slot.
    cache: PyTree  # leaves [B * K, ...] aligned with alive_seqs, or scalars.


def _initial_beam_state(cache: PyTree, batch_size: int, beam_size: int, max_decode_len: int,
                        bos_id: int) -> _BeamState:
    seqs = jnp.full((batch_size, beam_size, max_decode_len + 1), PAD_ID, jnp.int32)
    seqs = seqs.at[:, :, 0].set(bos_id)
    # All K beams start identical; only beam 0 is possible so the first step does not
    # fill the beam with K copies of the same hypothesis.
    first_beam_only = jnp.where(jnp.arange(beam_size) == 0, 0.0, NEG_INF).astype(jnp.float32)
    return _BeamState(
        step=jnp.array(0, jnp.int32),
        alive_seqs=seqs,
        alive_log_probs=jnp.broadcast_to(first_beam_only, (batch_size, beam_size)),  # [B, K]
        finished_seqs=seqs,
        finished_scores=jnp.full((batch_size, beam_size), NEG_INF, jnp.float32),
        cache=cache,
    )


def _row_is_done(state: _BeamState, limits: jax.Array, alpha: float) -> jax.Array:
    """bool[B]: no alive hypothesis of the row can still enter its finished set.

    Log-probs only fall as a hypothesis grows and the penalty grows with length (alpha >= 0),
    so an alive hypothesis scores at most its current log-prob / penalty(row limit).
    """
    best_alive = state.alive_log_probs[:, 0]  # [B], alive is sorted best first
    best_possible = best_alive / length_penalty(limits, alpha)  # [B]
    worst_finished = state.finished_scores[:, -1]  # [B], -inf while a slot is still empty
    return (best_alive == NEG_INF) | (worst_finished > best_possible)


def _grow_alive(state: _BeamState, log_probs: jax.Array, beam_size: int):
    """Extends every alive hypothesis by every token and keeps the top 2K candidates.

    Returns candidate log-probs float32[B, C], their parent beams int32[B, C] and their
    sequences int32[B, C, L + 1] with the new token written at position step + 1.
    """
    batch_size, _, vocab_size = log_probs.shape
    candidate_log_probs = state.alive_log_probs[:, :, None] + log_probs  # [B, K, V]
    flat = candidate_log_probs.reshape(batch_size, beam_size * vocab_size)  # [B, K * V]
    # 2K candidates guarantee K non-EOS ones survive even if K of them end in EOS.
    num_candidates = min(2 * beam_size, beam_size * vocab_size)
    top_log_probs, top_flat_indices = jax.lax.top_k(flat, num_candidates)  # [B, C]
    parent_beams = top_flat_indices // vocab_size  # [B, C]
    new_tokens = top_flat_indices % vocab_size  # [B, C]
    seqs = _take_beams(state.alive_seqs, parent_beams)  # [B, C, L + 1]
    seqs = seqs.at[:, :, state.step + 1].set(new_tokens)
    return top_log_probs, parent_beams, seqs


def _beam_step(state: _BeamState, tokens_to_logits: TokensToLogits,
               max_lengths: Optional[jax.Array], beam_size: int, eos_id: int,
               alpha: float) -> _BeamState:
    """One decoding step: expand, then split candidates into alive and finished sets."""
    batch_size = state.alive_seqs.shape[0]
    last_tokens = state.alive_seqs[:, :, state.step]  # [B, K]
    ids = last_tokens.reshape(batch_size * beam_size, 1)  # [B * K, 1]
    logits, cache = tokens_to_logits(ids, state.cache)  # [B * K, V]
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    log_probs = log_probs.reshape(batch_size, beam_size, -1)  # [B, K, V]
    if max_lengths is not None:
        reached_limit = jnp.broadcast_to((state.step + 1 >= max_lengths)[:, None],
                                         (batch_size, beam_size))  # [B, K]
        log_probs = _force_eos_at_limit(log_probs, reached_limit, eos_id)

    top_log_probs, parent_beams, top_seqs = _grow_alive(state, log_probs, beam_size)
    ends_with_eos = top_seqs[:, :, state.step + 1] == eos_id  # [B, C]

    # Alive: the best K candidates that did not just end.
    alive_log_probs, alive_picks = jax.lax.top_k(
        jnp.where(ends_with_eos, NEG_INF, top_log_probs), beam_size)  # [B, K]
    alive_seqs = _take_beams(top_seqs, alive_picks)  # [B, K, L + 1]
    alive_parents = jnp.take_along_axis(parent_beams, alive_picks, axis=1)  # [B, K]

    # Finished: the best K of the old finished set and the candidates that just ended.
    # Old entries come first, so on a tie top_k keeps the shorter, earlier hypothesis.
    new_scores = top_log_probs / length_penalty(state.step + 1, alpha)  # [B, C]
    new_scores = jnp.where(ends_with_eos, new_scores, NEG_INF)
    pooled_scores = jnp.concatenate([state.finished_scores, new_scores], axis=1)  # [B, K + C]
    pooled_seqs = jnp.concatenate([state.finished_seqs, top_seqs], axis=1)  # [B, K + C, L + 1]
    finished_scores, finished_picks = jax.lax.top_k(pooled_scores, beam_size)  # [B, K]

    return _BeamState(
        step=state.step + 1,
        alive_seqs=alive_seqs,
        alive_log_probs=alive_log_probs,
        finished_seqs=_take_beams(pooled_seqs, finished_picks),  # [B, K, L + 1]
        finished_scores=finished_scores,
        cache=gather_beams(cache, alive_parents, beam_size),
    )


def beam_search(tokens_to_logits: TokensToLogits, cache: PyTree, batch_size: int, beam_size: int,
                max_decode_len: int, bos_id: int, eos_id: int, alpha: float = 0.6,
                max_lengths: Optional[jax.Array] = None) -> tuple[jax.Array, jax.Array]:
    """Beam search with the GNMT length penalty; defaults are the paper's (K = 4, alpha = 0.6).

    Args:
      tokens_to_logits: the model step (see the module docstring), called with N = B * K.
      cache: initial decoding cache already expanded to B * K rows (`expand_to_beams`).
      batch_size: B.
      beam_size: K.
      max_decode_len: L, the output buffer length (static).
      bos_id: token fed at the first step.
      eos_id: token that ends a hypothesis.
      alpha: length penalty exponent; 0 ranks by raw log-probability.
      max_lengths: optional int[B] per-row output length limit (e.g. source length + 50);
        a hypothesis that reaches it is forced to emit EOS. A limit above L never triggers.

    Returns:
      tokens int32[B, K, L]: hypotheses without BOS, including EOS, then PAD_ID; best first.
      scores float32[B, K]: log-prob / length penalty, best first. A row in which nothing
        finished returns its alive hypotheses, scored as if they ended at length L. Slots
        left empty (fewer than K possible hypotheses) score -inf and hold only PAD_ID.
    """
    for name, value in (("batch_size", batch_size), ("beam_size", beam_size),
                        ("max_decode_len", max_decode_len)):
        _check_positive(name, value)
    _check_token_id("bos_id", bos_id)
    _check_token_id("eos_id", eos_id)
    if not isinstance(alpha, numbers.Real) or alpha < 0:
        raise ValueError(f"alpha must be a non-negative number, got {alpha!r}")
    max_lengths = _validated_max_lengths(max_lengths, batch_size)
    _check_model_contract(tokens_to_logits, cache, batch_size * beam_size, bos_id, eos_id)
    limits = _row_limits(max_lengths, batch_size, max_decode_len)

    def not_done(state: _BeamState) -> jax.Array:
        return (state.step < max_decode_len) & ~jnp.all(_row_is_done(state, limits, alpha))

    def step(state: _BeamState) -> _BeamState:
        return _beam_step(state, tokens_to_logits, max_lengths, beam_size, eos_id, alpha)

    initial = _initial_beam_state(cache, batch_size, beam_size, max_decode_len, bos_id)
    final = jax.lax.while_loop(not_done, step, initial)

    any_finished = final.finished_scores[:, 0] > NEG_INF  # [B]
    alive_scores = final.alive_log_probs / length_penalty(max_decode_len, alpha)  # [B, K]
    tokens = jnp.where(any_finished[:, None, None], final.finished_seqs, final.alive_seqs)
    scores = jnp.where(any_finished[:, None], final.finished_scores, alive_scores)
    # A row with fewer than K possible hypotheses has -inf slots; make them plain PAD
    # rather than whatever top_k broke its ties with.
    tokens = jnp.where((scores > NEG_INF)[:, :, None], tokens, PAD_ID)
    return tokens[:, :, 1:], scores  # drop BOS: [B, K, L]
