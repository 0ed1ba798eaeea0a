"""Ids, sizes and statistics shared by the BERT pretraining data tests.

Import from a test file as ``from bert_data_helpers import CLS, SEP, within`` (pytest puts the
``tests/`` folder on ``sys.path``). Special ids are those of ``SPECIAL_TOKENS``: [PAD] 0,
[UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4. Sequences are at most max_seq_length 23 (odd).
"""
import math

from bert_jax.pretraining import pairs
from bert_jax.tokenization import SPECIAL_TOKENS

PAD, UNK, CLS, SEP, MASK = range(5)
assert SPECIAL_TOKENS == ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
SPECIAL = pairs.SpecialIds(cls=CLS, sep=SEP)
MAX_SEQ_LENGTH = 23


def num_to_predict(n: int, max_predictions: int, prob: float = 0.15) -> int:
    """The original's count, in Python (double precision, round half to even)."""
    return min(max_predictions, max(1, round(n * prob)))


def within(count: int, total: int, p: float, sigmas: float = 4.5) -> bool:
    """Whether count/total is within `sigmas` binomial standard deviations of p."""
    return abs(count - total * p) <= sigmas * math.sqrt(total * p * (1 - p))
