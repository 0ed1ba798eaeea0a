"""Batched beam-search translation and SacreBLEU scoring.

The paper's inference settings are the defaults: beam 4, length penalty alpha 0.6, maximum
output length = input length + 50, stopping early at EOS.
Legend: B batch, K beams, S source length, T maximum decode length.
"""

import functools
import logging
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import sacrebleu
from jax.sharding import Mesh

from transformer_jax import decode, incremental
from transformer_jax.engine import sharding as sharding_lib
from transformer_jax.model import Transformer
from transformer_jax.translation.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer

log = logging.getLogger(__name__)


def beam_search_step(params: Any, inputs: jax.Array, *, model: Transformer, beam_size: int,
                     alpha: float, max_decode_len: int, extra_length: int) -> jax.Array:
    """inputs [B, S] -> best hypothesis tokens [B, T] (EOS-terminated, PAD after)."""
    batch_size = inputs.shape[0]
    encoded = model.apply({"params": params}, inputs, method=Transformer.encode)  # [B, S, D]
    beam_encoded, beam_inputs = decode.expand_to_beams((encoded, inputs), beam_size)  # [B*K, ...]
    cache = incremental.init_cache(model, params, beam_encoded, beam_inputs, max_decode_len)
    tokens_to_logits = incremental.make_tokens_to_logits(model, params, beam_encoded, beam_inputs)
    max_lengths = jnp.sum(inputs != PAD_ID, axis=1) + extra_length  # [B]
    tokens, _ = decode.beam_search(
        tokens_to_logits, cache, batch_size, beam_size, max_decode_len, BOS_ID, EOS_ID,
        alpha=alpha, max_lengths=jnp.minimum(max_lengths, max_decode_len))
    return tokens[:, 0]  # [B, K, T] -> best beam [B, T]


class Translator:
    """Jit-compiled beam search over padded batches of sentences, sharded on the mesh."""

    def __init__(self, model: Transformer, tokenizer: Tokenizer, mesh: Mesh, *,
                 max_source_length: int, max_decode_len: int, beam_size: int = 4,
                 alpha: float = 0.6, extra_length: int = 50, batch_size: int = 32):
        self.tokenizer, self.mesh = tokenizer, mesh
        self.max_source_length = max_source_length
        shards = mesh.shape["data"] * mesh.shape["fsdp"]
        self.batch_size = -(-batch_size // shards) * shards  # round up to the batch shards
        step = functools.partial(beam_search_step, model=model, beam_size=beam_size, alpha=alpha,
                                 max_decode_len=max_decode_len, extra_length=extra_length)
        self._step = jax.jit(step, in_shardings=(None, sharding_lib.batch_sharding(mesh)))

    def _encode(self, sentences: Sequence[str]) -> np.ndarray:
        rows = np.zeros((self.batch_size, self.max_source_length), np.int32)  # [B, S]
        for i, text in enumerate(sentences):
            ids = self.tokenizer.encode(text)[: self.max_source_length - 1] + [EOS_ID]
            rows[i, : len(ids)] = ids
        return rows

    def translate(self, params: Any, sentences: Sequence[str]) -> list[str]:
        """Translates any number of sentences (single-process: inputs live on this host)."""
        outputs: list[str] = []
        for start in range(0, len(sentences), self.batch_size):
            chunk = list(sentences[start:start + self.batch_size])
            inputs = jax.device_put(self._encode(chunk), sharding_lib.batch_sharding(self.mesh))
            tokens = np.asarray(jax.device_get(self._step(params, inputs)))
            outputs.extend(self.tokenizer.decode_batch(tokens[: len(chunk)]))
        return outputs


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """SacreBLEU with its default (13a) tokenisation: the comparable, reported number."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses vs {len(references)} references")
    score = sacrebleu.corpus_bleu(list(hypotheses), [list(references)])
    log.info("SacreBLEU: %s", score)
    return float(score.score)
