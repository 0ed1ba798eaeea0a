"""Text -> BERT inputs for fine-tuning: ``[CLS] A [SEP] (B [SEP])`` with segment ids,
padded to a fixed length, as the original ``run_classifier.py`` builds them.

Every task family (classification, regression, multiple choice, and the windows of QA and
token classification) ends in these three int32 arrays of length L:

  input_ids    [L]  token ids, 0-padded
  input_mask   [L]  1 on real tokens
  segment_ids  [L]  0 for [CLS] A [SEP], 1 for B [SEP], 0 on padding
"""

import numpy as np

from bert_jax.tokenization import FullTokenizer


def truncate_pair(tokens_a: list, tokens_b: list, max_tokens: int) -> None:
    """Pops tokens from the end of the longer side until the pair fits (the original's
    ``_truncate_seq_pair``: a short sentence keeps all its words, a long one loses its tail)."""
    while len(tokens_a) + len(tokens_b) > max_tokens:
        (tokens_a if len(tokens_a) > len(tokens_b) else tokens_b).pop()


def pack_ids(tokenizer: FullTokenizer, ids_a: list[int], ids_b: list[int] | None,
             max_seq_length: int) -> dict[str, np.ndarray]:
    """Word-piece ids of one or two segments -> padded inputs (truncating the longer side)."""
    ids_a = list(ids_a)
    ids_b = None if ids_b is None else list(ids_b)
    if ids_b is None:
        del ids_a[max_seq_length - 2:]  # room for [CLS] and [SEP]
        ids, segments = [tokenizer.cls_id, *ids_a, tokenizer.sep_id], [0] * (len(ids_a) + 2)
    else:
        truncate_pair(ids_a, ids_b, max_seq_length - 3)
        ids = [tokenizer.cls_id, *ids_a, tokenizer.sep_id, *ids_b, tokenizer.sep_id]
        segments = [0] * (len(ids_a) + 2) + [1] * (len(ids_b) + 1)
    padding = max_seq_length - len(ids)
    return {"input_ids": np.asarray(ids + [tokenizer.pad_id] * padding, np.int32),
            "input_mask": np.asarray([1] * len(ids) + [0] * padding, np.int32),
            "segment_ids": np.asarray(segments + [0] * padding, np.int32)}


def encode(tokenizer: FullTokenizer, text_a: str, text_b: str | None,
           max_seq_length: int) -> dict[str, np.ndarray]:
    """One sentence or a sentence pair -> padded BERT inputs."""
    if max_seq_length < (3 if text_b is None else 5):
        raise ValueError(f"max_seq_length={max_seq_length} leaves no room for text")
    return pack_ids(tokenizer, tokenizer.encode(text_a),
                    None if text_b is None else tokenizer.encode(text_b), max_seq_length)
