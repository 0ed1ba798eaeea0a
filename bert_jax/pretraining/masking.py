"""Masked-LM masking inside the tf.data graph (dynamic: fresh masks every epoch).

The rules of BERT's ``create_masked_lm_predictions``:
  * candidates are all tokens but [CLS], [SEP] (and padding); with whole-word masking a
    candidate is a word: a piece plus the ``##`` pieces that follow it;
  * ``num_to_predict = min(max_predictions_per_seq, max(1, round(len * masked_lm_prob)))``
    where len counts every token of the pair, specials included;
  * candidates are visited in random order and taken while the count of chosen tokens stays
    within num_to_predict (a word that would overflow is skipped, a shorter one after it
    may still fit);
  * each chosen token becomes [MASK] with probability 0.8, a random vocabulary id with 0.1,
    and stays unchanged with 0.1.

Randomness is stateless: every draw is keyed by (seed, example key), so the same example
index is masked the same way however tf.data schedules its work, and a resumed run
reproduces its data exactly. The training pipeline keys each example by its position in
the stream, so the same pair gets a new mask in every epoch.
"""

import dataclasses

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class MaskingRules:
    masked_lm_prob: float = 0.15
    max_predictions_per_seq: int = 20
    whole_word_mask: bool = False
    mask_token_prob: float = 0.8    # chosen tokens replaced by [MASK]
    random_token_prob: float = 0.1  # chosen tokens replaced by a random id (rest: unchanged)

    def check(self, max_seq_length: int) -> None:
        """Refuses settings that cannot be met, naming the fix."""
        if not 0.0 < self.masked_lm_prob < 1.0:
            raise ValueError(f"masked_lm_prob={self.masked_lm_prob} must be in (0, 1)")
        if not 1 <= self.max_predictions_per_seq <= max_seq_length:
            raise ValueError(f"max_predictions_per_seq={self.max_predictions_per_seq} must be "
                             f"in [1, max_seq_length={max_seq_length}]")
        needed = round(max_seq_length * self.masked_lm_prob)
        if self.max_predictions_per_seq < needed:
            raise ValueError(
                f"masked_lm_prob={self.masked_lm_prob} of max_seq_length={max_seq_length} "
                f"masks up to {needed} tokens but max_predictions_per_seq="
                f"{self.max_predictions_per_seq}: raise it to >= {needed} (BERT used 20 for "
                "128 and 80 for 512) or lower masked_lm_prob")
        if (self.mask_token_prob < 0 or self.random_token_prob < 0
                or self.mask_token_prob + self.random_token_prob > 1.0):
            raise ValueError("mask_token_prob and random_token_prob must be >= 0 and sum to at "
                             "most 1 (the rest stay unchanged)")


def continuation_table(vocab: list[str]) -> tf.Tensor:
    """bool [V]: whether each id is a '##' continuation piece (for whole-word masking)."""
    return tf.constant([token.startswith("##") for token in vocab], tf.bool)


def _seeds(seed: tf.Tensor, key: tf.Tensor, stream: int) -> tf.Tensor:
    """A stateless seed pair for one of the independent random streams of one example."""
    return tf.stack([tf.cast(seed, tf.int64) * 1_000_003 + stream, tf.cast(key, tf.int64)])


def mask_example(input_ids: tf.Tensor, *, seed: int, key: tf.Tensor, rules: MaskingRules,
                 special_ids: tf.Tensor, mask_id: int, vocab_size: int,
                 is_continuation: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
    """input_ids int32 [n] (one unpadded pair) -> masked ``input_ids`` [n] and the targets
    ``masked_lm_positions``, ``masked_lm_ids`` int32 [k] (k <= max_predictions_per_seq,
    positions ascending)."""
    n = tf.size(input_ids)
    candidate = ~tf.reduce_any(input_ids[:, None] == special_ids[None, :], axis=1)  # [n]
    if rules.whole_word_mask:
        continues = tf.gather(is_continuation, input_ids)  # [n]
        previous_candidate = tf.concat([[False], candidate[:-1]], 0)  # [n]
        # A continuation right after a special (a pair truncated mid-word) starts a word.
        word_start = candidate & ~(continues & previous_candidate)
    else:
        word_start = candidate
    word_index = tf.cumsum(tf.cast(word_start, tf.int32)) - 1  # [n]: word of each position
    num_words = tf.reduce_sum(tf.cast(word_start, tf.int32))
    word_index = tf.where(candidate, word_index, num_words)  # specials: an extra dummy word
    word_length = tf.math.unsorted_segment_sum(
        tf.cast(candidate, tf.int32), word_index, num_words + 1)[:num_words]  # [words]

    # round() half to even like Python 3's round in the original, on float64 products as
    # Python computes them (float32 turns 190 * 0.15 into 28.500002 and rounds it up).
    num_to_predict = tf.minimum(
        rules.max_predictions_per_seq,
        tf.maximum(1, tf.cast(tf.round(tf.cast(n, tf.float64) * rules.masked_lm_prob),
                              tf.int32)))
    order = tf.argsort(tf.random.stateless_uniform([num_words], _seeds(seed, key, 0)))

    def take(count_taken, length):  # scan state: (count, took-this-word)
        count, _ = count_taken
        fits = count + length <= num_to_predict
        return tf.where(fits, count + length, count), fits

    if rules.whole_word_mask:
        _, taken_in_order = tf.scan(take, tf.gather(word_length, order),
                                    initializer=(tf.constant(0), tf.constant(False)))
    else:  # every word is one token: the first num_to_predict in random order (no loop)
        taken_in_order = tf.range(num_words) < num_to_predict
    chosen_word = tf.scatter_nd(order[:, None], taken_in_order, [num_words])  # [words]
    chosen = candidate & tf.gather(tf.concat([chosen_word, [False]], 0), word_index)  # [n]

    draw = tf.random.stateless_uniform([n], _seeds(seed, key, 1))  # [n]
    random_ids = tf.random.stateless_uniform([n], _seeds(seed, key, 2), 0, vocab_size,
                                             dtype=tf.int32)  # [n]
    to_mask = chosen & (draw < rules.mask_token_prob)
    to_random = chosen & (draw >= 1.0 - rules.random_token_prob)
    masked = tf.where(to_mask, mask_id, tf.where(to_random, random_ids, input_ids))
    positions = tf.cast(tf.where(chosen)[:, 0], tf.int32)  # [k] ascending
    return {"input_ids": masked, "masked_lm_positions": positions,
            "masked_lm_ids": tf.gather(input_ids, positions)}
