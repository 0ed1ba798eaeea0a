"""Batches of featurized fine-tuning data held in memory (GLUE-sized sets fit easily).

Training: a fresh permutation each epoch, a pure function of (seed, epoch), so a run
resumed at batch k sees exactly the batches it would have seen (skipping is index
arithmetic, not a replay). Evaluation: every row once, the last batch padded with rows of
weight 0, every host the same number of batches.
"""

import math
from typing import Iterator

import numpy as np

Arrays = dict[str, np.ndarray]


def num_rows(arrays: Arrays) -> int:
    return len(next(iter(arrays.values())))


def steps_per_epoch(arrays: Arrays, global_batch_size: int) -> int:
    steps = num_rows(arrays) // global_batch_size
    if steps == 0:
        raise ValueError(f"{num_rows(arrays)} training examples are fewer than one batch of "
                         f"{global_batch_size}: lower batch_size")
    return steps


def train_batches(arrays: Arrays, *, batch_size_per_host: int, seed: int, start_batch: int,
                  process_index: int, process_count: int) -> Iterator[Arrays]:
    """Endless per-host batches; each epoch drops the remainder short of a global batch."""
    global_batch = batch_size_per_host * process_count
    per_epoch = steps_per_epoch(arrays, global_batch)
    step = start_batch
    while True:
        epoch, index = divmod(step, per_epoch)
        order = np.random.default_rng([seed, epoch]).permutation(num_rows(arrays))
        rows = order[index * global_batch:(index + 1) * global_batch]
        rows = rows[process_index * batch_size_per_host:(process_index + 1) * batch_size_per_host]
        yield {key: value[rows] for key, value in arrays.items()}
        step += 1


def eval_batches(arrays: Arrays, *, batch_size_per_host: int, process_index: int,
                 process_count: int) -> list[Arrays]:
    """This host's rows (round robin) in full batches; padding rows have weight 0.

    ``arrays`` must hold ``example_weights``; rows come back in their original order within
    each host (``host_rows`` tells which), so predictions can be matched to examples.
    """
    total = num_rows(arrays)
    rows = host_rows(total, process_index, process_count)
    num_batches = math.ceil(math.ceil(total / process_count) / batch_size_per_host)
    padded = num_batches * batch_size_per_host
    batches = []
    for key, value in arrays.items():
        mine = value[rows]
        filler = np.zeros((padded - len(mine),) + value.shape[1:], value.dtype)
        batches.append((key, np.concatenate([mine, filler])))
    return [{key: value[i * batch_size_per_host:(i + 1) * batch_size_per_host]
             for key, value in batches} for i in range(num_batches)]


def host_rows(total: int, process_index: int, process_count: int) -> np.ndarray:
    return np.arange(process_index, total, process_count)
