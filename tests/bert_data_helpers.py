"""Ids, sizes, statistics and a corpus writer shared by the BERT pretraining tests.

Import from a test file as ``from bert_data_helpers import CLS, SEP, within`` (pytest puts the
``tests/`` folder on ``sys.path``). Special ids are those of ``SPECIAL_TOKENS``: [PAD] 0,
[UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4. Sequences are at most max_seq_length 23 (odd).
"""
import math
import random

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


WORDS = ("the a cat dog house tree river stone runs sees walks likes big small red green "
         "quickly slowly under over near far").split()


def write_corpus(path: str, num_documents: int = 24, seed: int = 0) -> str:
    """One sentence per line, a blank line between documents (BERT's original format)."""
    rng = random.Random(seed)
    documents = []
    for _ in range(num_documents):
        sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8))) + " ."
                     for _ in range(rng.randint(3, 7))]
        documents.append("\n".join(sentences))
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n\n".join(documents) + "\n")
    return path
