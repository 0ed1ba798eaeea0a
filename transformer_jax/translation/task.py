"""Machine translation as a task of the shared engine.

Loss: label-smoothed cross-entropy over non-padding target tokens (the paper uses
epsilon_ls = 0.1). Eval: smoothed loss, nll (log-perplexity per target token) and token
accuracy on the eval split, plus
SacreBLEU of beam-search translations of the BLEU split.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from transformer_jax import flops
from transformer_jax.engine import losses
from transformer_jax.engine.task import Task
from transformer_jax.model import Transformer, TransformerConfig

# The data side (tf.data pipeline, sources, SentencePiece, beam-search BLEU) is imported in the
# methods that use it: the model and loss alone, all ``for_benchmark`` needs, then run on an
# accelerator image that has JAX but not TensorFlow (as BERT's pretraining task does).
if TYPE_CHECKING:
    from transformer_jax.translation.predict import Translator
    from transformer_jax.translation.tokenizer import Tokenizer

BATCH_KEYS = ("inputs", "inputs_segment_ids", "inputs_positions", "decoder_inputs", "targets",
              "targets_segment_ids", "targets_positions")
log = logging.getLogger(__name__)
# TransformerConfig fields that fix parameter shapes or meaning (not dropout, dtype, max_len).
SHAPE_FIELDS = ("vocab_size", "d_model", "num_heads", "head_dim", "d_ff", "num_encoder_layers",
                "num_decoder_layers", "share_embeddings", "tie_output", "pre_layer_norm",
                "activation", "attention_bias", "param_dtype", "scan_layers")


def model_config(config: ml_collections.ConfigDict, vocab_size: int) -> TransformerConfig:
    return TransformerConfig.from_dict(dict(config.model.to_dict(), vocab_size=vocab_size))


class TranslationTask(Task):
    """Source -> target translation with a shared SentencePiece vocabulary."""

    name = "translation"

    def __init__(self, config: ml_collections.ConfigDict, workdir: str,
                 tokenizer: Tokenizer | None = None):
        from transformer_jax.translation import sources

        self.config, self.data = config, config.data
        if config.data.source == "files":
            # Read eval/test files now: a typo should fail at start, not after training.
            for which in {"eval", config.predict.bleu_split} - {""}:
                sources.raw_pairs(config.data, which)
        self.tokenizer = tokenizer or sources.load_tokenizer(config.data, workdir)
        self.model_cfg = model_config(config, self.tokenizer.vocab_size)
        self.model = Transformer(self.model_cfg)
        self._bleu_pairs: list[tuple[str, str]] | None = None
        self._translator = None

    @classmethod
    def for_benchmark(cls, config: ml_collections.ConfigDict) -> "TranslationTask":
        """A task with ``config.data.vocab_size`` ids and no tokenizer or data (synthetic
        batches only): the benchmark needs the model and the loss, nothing else."""
        task = cls.__new__(cls)
        task.config, task.data, task.tokenizer = config, config.data, None
        task.model_cfg = model_config(config, config.data.vocab_size)
        task.model = Transformer(task.model_cfg)
        task._bleu_pairs, task._translator = None, None
        return task

    def model_hparams(self) -> dict[str, Any]:
        return dataclasses.asdict(self.model_cfg)

    def compatibility_hparams(self) -> dict[str, Any]:
        shapes = {k: v for k, v in self.model_hparams().items() if k in SHAPE_FIELDS}
        # Same size is not enough: another vocabulary would silently scramble embeddings.
        proto = self.tokenizer.model_proto if self.tokenizer else b""
        return dict(shapes, vocab_sha256=hashlib.sha256(proto).hexdigest())

    @property
    def model_dim(self) -> int:
        return self.model_cfg.d_model

    def dummy_batch(self, batch_size: int) -> dict[str, np.ndarray]:
        lengths = {"inputs": self.data.max_source_length, "targets": self.data.max_target_length}
        return {k: np.zeros((batch_size, lengths["inputs" if k.startswith("inputs")
                                                  else "targets"]), np.int32)
                for k in BATCH_KEYS}

    def _forward(self, params, batch, deterministic: bool, rng=None) -> jax.Array:
        rngs = None if deterministic else {"dropout": rng}
        return self.model.apply(
            {"params": params}, batch["inputs"], batch["decoder_inputs"],
            batch["inputs_segment_ids"], batch["inputs_positions"],
            batch["targets_segment_ids"], batch["targets_positions"],
            deterministic=deterministic, rngs=rngs)  # [B, L, V] float32

    def init_params(self, rng, batch):
        return self.model.init(
            rng, batch["inputs"], batch["decoder_inputs"], batch["inputs_segment_ids"],
            batch["inputs_positions"], batch["targets_segment_ids"],
            batch["targets_positions"])["params"]

    def _metrics(self, logits, batch) -> dict:
        targets = batch["targets"]
        weights = (targets != 0).astype(jnp.float32)
        smoothed = losses.weighted_cross_entropy(logits, targets, weights,
                                                 self.config.label_smoothing)
        nll = losses.weighted_cross_entropy(logits, targets, weights, 0.0)
        return {"smoothed_loss": smoothed, "nll": nll,
                "accuracy": losses.weighted_accuracy(logits, targets, weights)}

    def loss_fn(self, params, batch, rng):
        metrics = self._metrics(self._forward(params, batch, False, rng), batch)
        loss_sum, weight = metrics["smoothed_loss"]
        return loss_sum / jnp.maximum(weight, 1.0), metrics

    def eval_fn(self, params, batch):
        return self._metrics(self._forward(params, batch, True), batch)

    def train_batches(self, batch_size_per_host, start_batch, process_index, process_count):
        from transformer_jax.translation import pipeline, sources

        return pipeline.train_batches(
            sources.raw_pairs(self.data, "train"), self.tokenizer,
            batch_size_per_host=batch_size_per_host,
            max_source_length=self.data.max_source_length,
            max_target_length=self.data.max_target_length, pack=self.data.pack,
            shuffle_seed=self.config.seed, shuffle_buffer=self.data.shuffle_buffer,
            process_index=process_index, process_count=process_count, start_batch=start_batch)

    def eval_batches(self, batch_size_per_host, process_index, process_count):
        from transformer_jax.translation import pipeline, sources

        return pipeline.eval_batches(
            sources.raw_pairs(self.data, "eval"), self.tokenizer,
            batch_size_per_host=batch_size_per_host,
            max_source_length=self.data.max_source_length,
            max_target_length=self.data.max_target_length,
            process_index=process_index, process_count=process_count)

    def tokens_in_batch(self, batch) -> int:
        return int(np.count_nonzero(batch["inputs"]) + np.count_nonzero(batch["targets"]))

    def flops_per_step(self, batch) -> float:
        batch_size, source_length = batch["inputs"].shape
        return flops.transformer_train_flops(self.model_cfg, batch_size * jax.process_count(),
                                             source_length, batch["targets"].shape[1])

    def translator(self, mesh) -> Translator:
        from transformer_jax.translation import predict

        if self._translator is None:
            p = self.config.predict
            self._translator = predict.Translator(
                self.model, self.tokenizer, mesh, max_source_length=self.data.max_source_length,
                max_decode_len=p.max_decode_len, beam_size=p.beam_size, alpha=p.alpha,
                extra_length=p.extra_length, batch_size=self.config.eval_batch_size)
        return self._translator

    def evaluate_extra(self, params, step, mesh) -> dict[str, float]:
        """SacreBLEU of beam-search translations of the BLEU split (single-process)."""
        p = self.config.predict
        if not p.bleu_split or jax.process_count() > 1:
            return {}
        from transformer_jax.translation import pipeline, predict, sources

        if self._bleu_pairs is None:
            pairs = pipeline.raw_eval_pairs(sources.raw_pairs(self.data, p.bleu_split))
            self._bleu_pairs = pairs[: p.num_bleu_examples] if p.num_bleu_examples else pairs
        translator = self.translator(mesh)
        hypotheses = translator.translate(params, [s for s, _ in self._bleu_pairs])
        results = {"bleu": predict.corpus_bleu(hypotheses, [t for _, t in self._bleu_pairs])}
        if self.data.source == "demo":
            results["pronoun_accuracy"] = self._pronoun_accuracy(translator, params)
        return results

    @staticmethod
    def _pronoun_accuracy(translator: Translator, params) -> float:
        """Whether "it" became the German pronoun of the noun it refers to (demo only)."""
        from transformer_jax.translation import demo_corpus

        english = [e for e, _ in demo_corpus.PRONOUN_TEST_CASES]
        references = [g for _, g in demo_corpus.PRONOUN_TEST_CASES]
        hypotheses = translator.translate(params, english)
        for source, hypothesis in zip(english[:2], hypotheses[:2]):
            log.info("%s -> %s", source, hypothesis)
        return demo_corpus.pronoun_accuracy(hypotheses, references)
