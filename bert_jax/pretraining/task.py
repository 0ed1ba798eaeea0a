"""BERT pretraining (masked LM + next-sentence prediction) as a task of the shared engine.

Loss, as in the original ``run_pretraining.py``: the MLM cross-entropy averaged over the
real masked positions of the global batch, plus the NSP cross-entropy averaged over the
examples. Metrics: both losses, MLM accuracy, NSP accuracy, and on the held-out set also
the floors a model must rise above: ``mlm_baseline_accuracy``, the accuracy of always
predicting the most frequent masked token, and ``nsp_baseline_accuracy``, that of always
predicting the more frequent NSP label (a corpus of one-sentence documents has more
NotNext pairs, which the original's rules always make random).
"""

import dataclasses
import hashlib
import logging
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from bert_jax import flops as bert_flops
from bert_jax.heads import BertForPreTraining
from bert_jax.model import SHAPE_FIELDS, BertConfig
from transformer_jax.engine import losses
from transformer_jax.engine.task import Task

# The data side (tf.data pipeline, corpus, tokenizer, checkpoint import) is imported in the
# methods that use it: the model and loss alone, all ``for_benchmark`` needs, then run on an
# accelerator image that has JAX but not TensorFlow.

log = logging.getLogger(__name__)

BATCH_KEYS = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions",
              "masked_lm_ids", "masked_lm_weights", "next_sentence_labels",
              "next_sentence_weights")
EVAL_SEED_OFFSET = 1_000  # the held-out set's pairs and masks never reuse training draws


def bert_config(config: ml_collections.ConfigDict, vocab_size: int) -> BertConfig:
    """``config.model``: a released size plus any field set to override it."""
    overrides = {k: v for k, v in config.model.to_dict().items()
                 if k != "size" and v is not None}
    return BertConfig.from_size(config.model.size, **dict(overrides, vocab_size=vocab_size))


class PretrainingTask(Task):
    """Masked LM + next sentence prediction on ``BertForPreTraining``."""

    name = "bert_pretraining"

    def __init__(self, config: ml_collections.ConfigDict, workdir: str):
        from bert_jax import interop, warm_start
        from bert_jax.pretraining import masking, pairs, pipeline, sources

        self.config, self.data = config, config.data
        # Settings that cannot be met fail before the corpus is read and a vocab learnt.
        pair_rules = pairs.PairRules(self.data.max_seq_length, self.data.short_seq_prob)
        masking_rules = masking.MaskingRules(self.data.masked_lm_prob,
                                             self.data.max_predictions_per_seq,
                                             self.data.whole_word_mask)
        masking_rules.check(pair_rules.max_seq_length)
        if not config.init_checkpoint:  # the model's shape is the config's, known already
            self._check_length(bert_config(config, vocab_size=1))  # (the vocab comes later)
        if self.data.source == "tfrecords":
            shard_sets = sources.check_tfrecords(self.data)
            train_docs, eval_docs = None, None
        else:
            train_docs, eval_docs = sources.load_documents(self.data)
        self._pretrained = None
        if config.init_checkpoint:
            self._pretrained = interop.load_pretrained(config.init_checkpoint)
            # Puts the checkpoint's vocab.txt in the workdir, where load_tokenizer finds it.
            warm_start.resolve_vocab(self._pretrained, self.data.vocab_file, workdir)
        if self.data.source == "tfrecords":
            # Before load_tokenizer keeps a copy of data.vocab_file in the workdir.
            sources.check_shard_vocab(shard_sets, self.data, workdir)
        self.tokenizer = sources.load_tokenizer(self.data, workdir, train_docs)
        if self._pretrained:
            self.model_cfg = warm_start.model_config(self._pretrained, config.model)
            if self.tokenizer.vocab_size > self.model_cfg.vocab_size:
                raise ValueError(
                    f"the vocab has {self.tokenizer.vocab_size} tokens but init_checkpoint "
                    f"{config.init_checkpoint} has {self.model_cfg.vocab_size} token "
                    "embeddings: use the vocab.txt its model was trained with")
            self._check_length(self.model_cfg)  # the checkpoint's positions
        else:
            self.model_cfg = bert_config(config, self.tokenizer.vocab_size)
        self.model = BertForPreTraining(self.model_cfg)
        self.spec = pipeline.ExampleSpec.create(self.tokenizer, pair_rules, masking_rules)
        self._train_ids = self._eval_ids = None
        self._eval_cache: list | None = None
        if train_docs is not None:
            self._train_ids = pipeline.tokenize_documents(
                [d.sentences for d in train_docs], self.tokenizer)
            self._eval_ids = pipeline.tokenize_documents(
                [d.sentences for d in eval_docs], self.tokenizer)
            log.info("corpus: %d training documents (%d tokens), %d held out",
                     len(self._train_ids), sum(s.size for d in self._train_ids for s in d),
                     len(self._eval_ids))

    @classmethod
    def for_benchmark(cls, config: ml_collections.ConfigDict) -> "PretrainingTask":
        """Model and loss only (synthetic batches): no corpus, no tokenizer."""
        task = cls.__new__(cls)
        task.config, task.data, task.tokenizer = config, config.data, None
        task.model_cfg = bert_config(config, config.data.vocab_size)
        task.model = BertForPreTraining(task.model_cfg)
        task._eval_cache, task._pretrained = None, None
        return task

    # ---------------------------------------------------------------- identity and shapes
    def model_hparams(self) -> dict[str, Any]:
        return dataclasses.asdict(self.model_cfg)

    def compatibility_hparams(self) -> dict[str, Any]:
        shapes = {k: v for k, v in self.model_hparams().items() if k in SHAPE_FIELDS}
        vocab = "\n".join(self.tokenizer.ids_to_tokens) if self.tokenizer else ""
        return dict(shapes, vocab_sha256=hashlib.sha256(vocab.encode("utf-8")).hexdigest())

    @property
    def model_dim(self) -> int:
        return self.model_cfg.hidden_size

    def dummy_batch(self, batch_size: int) -> dict[str, np.ndarray]:
        length, predictions = self.data.max_seq_length, self.data.max_predictions_per_seq
        shapes = {"next_sentence_labels": (batch_size,), "next_sentence_weights": (batch_size,)}
        return {k: np.zeros(shapes.get(k, (batch_size, predictions if k.startswith("masked")
                                           else length)),
                            np.float32 if k.endswith("weights") else np.int32)
                for k in BATCH_KEYS}

    # ---------------------------------------------------------------- model and loss
    def init_params(self, rng, batch):
        return self.model.init(rng, batch["input_ids"], batch["input_mask"],
                               batch["segment_ids"], batch["masked_lm_positions"])["params"]

    def _metrics(self, params, batch, deterministic: bool, rng=None) -> dict:
        mlm_logits, nsp_logits = self.model.apply(
            {"params": params}, batch["input_ids"], batch["input_mask"], batch["segment_ids"],
            batch["masked_lm_positions"], deterministic=deterministic,
            rngs=None if deterministic else {"dropout": rng})  # [B, P, V], [B, 2]
        mlm_ids, mlm_weights = batch["masked_lm_ids"], batch["masked_lm_weights"]
        nsp_labels, nsp_weights = batch["next_sentence_labels"], batch["next_sentence_weights"]
        return {
            "mlm_loss": losses.weighted_cross_entropy(mlm_logits, mlm_ids, mlm_weights),
            "mlm_accuracy": losses.weighted_accuracy(mlm_logits, mlm_ids, mlm_weights),
            "nsp_loss": losses.weighted_cross_entropy(nsp_logits, nsp_labels, nsp_weights),
            "nsp_accuracy": losses.weighted_accuracy(nsp_logits, nsp_labels, nsp_weights),
        }

    def loss_fn(self, params, batch, rng):
        metrics = self._metrics(params, batch, False, rng)
        mean = lambda pair: pair[0] / jnp.maximum(pair[1], 1e-5)  # noqa: E731
        return mean(metrics["mlm_loss"]) + mean(metrics["nsp_loss"]), metrics

    def eval_fn(self, params, batch):
        return self._metrics(params, batch, True)

    def initial_params(self, params):
        """Fresh runs with ``init_checkpoint`` start from its weights (heads it lacks stay
        freshly initialised)."""
        if self._pretrained is None:
            return None
        from bert_jax import warm_start

        params = warm_start.place(self._pretrained, params)
        self._pretrained = None  # the host copy is no longer needed
        return params

    # ---------------------------------------------------------------- data
    def train_batches(self, batch_size_per_host, start_batch, process_index, process_count):
        from bert_jax.pretraining import pipeline

        common = dict(batch_size_per_host=batch_size_per_host, seed=self.config.seed,
                      process_index=process_index, process_count=process_count,
                      start_batch=start_batch)
        if self.data.source == "tfrecords":
            ds = pipeline.tfrecord_pair_dataset(self.data.input_files, process_index,
                                                process_count, self.config.seed)
            return pipeline.tfrecord_train_batches(
                ds, self.spec, shuffle_buffer=self.data.shuffle_buffer, **common)
        return pipeline.train_batches(self._train_ids, self.spec, **common)

    def _check_length(self, model_cfg: BertConfig) -> None:
        if self.data.max_seq_length > model_cfg.max_position_embeddings:
            raise ValueError(f"data.max_seq_length={self.data.max_seq_length} exceeds "
                             f"model.max_position_embeddings="
                             f"{model_cfg.max_position_embeddings}: lower it")

    def eval_batches(self, batch_size_per_host, process_index, process_count):
        from bert_jax.pretraining import pipeline

        if self._eval_cache is None:
            seed = self.config.seed + EVAL_SEED_OFFSET
            if self.data.source == "tfrecords":  # every host reads all; split by record
                ds = pipeline.tfrecord_pair_dataset(self.data.eval_input_files, 0, 1, None)
            else:
                ds = pipeline.epoch_pair_dataset(self._eval_ids, self.spec, seed, epoch=0)
            self._eval_cache = pipeline.eval_batches(
                ds, self.spec, batch_size_per_host=batch_size_per_host,
                seed=seed, process_index=process_index,
                process_count=process_count)
            self._eval_baseline = self._baselines(self._eval_cache)
            log.info("held-out set: %d masked tokens, %d pairs; baseline accuracy of the most "
                     "frequent masked token %.4f, of the most frequent NSP label %.4f",
                     *self._eval_baseline)
        return self._eval_cache

    def _baselines(self, batches) -> tuple[int, int, float, float]:
        """(masked tokens, pairs, accuracy of always predicting the most frequent masked
        token, and the most frequent NSP label) over the whole held-out set: every host's
        share counted (a collective on several hosts)."""
        def real(batch, labels, weights):
            return batch[labels][batch[weights] > 0]

        ids = np.concatenate([real(b, "masked_lm_ids", "masked_lm_weights") for b in batches])
        nsp = np.concatenate([real(b, "next_sentence_labels", "next_sentence_weights")
                              for b in batches])
        counts = np.concatenate([np.bincount(ids, minlength=self.model_cfg.vocab_size),
                                 np.bincount(nsp, minlength=2)])  # [V + 2]
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            counts = np.asarray(multihost_utils.process_allgather(counts)).sum(axis=0)
        tokens, labels = counts[:-2], counts[-2:]
        floor = lambda c: float(c.max() / c.sum()) if c.sum() else 0.0  # noqa: E731
        return int(tokens.sum()), int(labels.sum()), floor(tokens), floor(labels)

    def evaluate_extra(self, params, step, mesh) -> dict[str, float]:
        """The constant-guess floors of held-out MLM and NSP accuracy."""
        if self._eval_cache is None:
            return {}
        return {"mlm_baseline_accuracy": self._eval_baseline[2],
                "nsp_baseline_accuracy": self._eval_baseline[3]}

    def tokens_in_batch(self, batch) -> int:
        return int(np.count_nonzero(batch["input_mask"]))

    def flops_per_step(self, batch) -> float:
        batch_size, length = batch["input_ids"].shape
        return bert_flops.pretraining_train_flops(
            self.model_cfg, batch_size * jax.process_count(), length,
            batch["masked_lm_positions"].shape[1])
