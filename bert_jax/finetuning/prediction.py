"""Row-by-row predictions of a fine-tuned model over a whole in-memory set, on the mesh,
gathered on every host in the set's original order (for official metrics and prediction
files, which need every example's output, not batch averages)."""

from typing import Any, Callable

import jax
import numpy as np
from jax.experimental import multihost_utils

from bert_jax.finetuning import batching
from transformer_jax.engine import sharding as sharding_lib


def predict_rows(apply: Callable[[Any, dict], Any], params: Any, arrays: batching.Arrays,
                 mesh, global_batch_size: int) -> Any:
    """``apply(params, batch)`` -> a pytree of [B, ...] outputs; returns the same pytree of
    numpy [N, ...] for the N rows of ``arrays``. ``apply`` should be jitted."""
    hosts, per_host = jax.process_count(), global_batch_size // jax.process_count()
    gathered = [
        # Each global batch is the hosts' local batches in process order.
        jax.tree.map(lambda x: np.asarray(multihost_utils.process_allgather(x, tiled=True)),
                     apply(params, sharding_lib.global_batch(batch, mesh)))
        for batch in batching.eval_batches(arrays, batch_size_per_host=per_host,
                                           process_index=jax.process_index(),
                                           process_count=hosts)]
    total = batching.num_rows(arrays)

    def reorder(*outputs):
        # [batches, hosts * per_host, ...] -> [hosts, batches * per_host, ...]
        stacked = np.stack(outputs).reshape((len(outputs), hosts, per_host) + outputs[0].shape[1:])
        by_host = np.swapaxes(stacked, 0, 1).reshape((hosts, -1) + outputs[0].shape[1:])
        result = np.zeros((total,) + outputs[0].shape[1:], outputs[0].dtype)
        for host in range(hosts):
            rows = batching.host_rows(total, host, hosts)
            result[rows] = by_host[host][:len(rows)]
        return result

    return jax.tree.map(reorder, *gathered)
