"""BERT (Devlin et al., 2018): the Transformer encoder of ``transformer_jax`` plus BERT's
input embeddings and [CLS] pooler.

Legend: B batch, L sequence length, D hidden size (BERT's "H"), T type (segment) vocabulary,
P max position embeddings, V vocabulary.

What is BERT-specific lives here; the layers are ``transformer_jax.model.EncoderStack`` built
from ``BertConfig.to_transformer_config()`` (post-LN, exact-erf GELU, biased Q/K/V/O,
LayerNorm epsilon 1e-12). Heads live in ``bert_jax.heads``.

Initialisers: BERT draws every weight from a truncated normal with stddev
``initializer_range`` (0.02). Here the embeddings, the pooler and the heads do; the encoder
layers keep ``transformer_jax``'s Xavier-uniform kernels. Pretraining from scratch works with
either, and imported checkpoints overwrite all of them.
"""

import dataclasses

import flax.linen as nn
import jax.numpy as jnp

from transformer_jax import attention
from transformer_jax.dropout import Dropout
from transformer_jax.layers import Array, Embed, constrain, layer_norm, logical
from transformer_jax.model import ACT_AXES, EncoderStack, HyperParams, TransformerConfig


# The released sizes (google-research/bert README): L layers / H hidden / A heads, with the
# feed-forward width 4H and the uncased English WordPiece vocabulary of 30522 tokens.
BERT_SIZES: dict[str, dict[str, int]] = {
    name: dict(num_layers=layers, hidden_size=hidden, num_heads=heads,
               intermediate_size=4 * hidden, vocab_size=30522)
    for name, (layers, hidden, heads) in {
        "tiny": (2, 128, 2),
        "mini": (4, 256, 4),
        "small": (4, 512, 8),
        "medium": (8, 512, 8),
        "base": (12, 768, 12),
        "large": (24, 1024, 16),
    }.items()
}


@dataclasses.dataclass(frozen=True)
class BertConfig(HyperParams):
    """Hyperparameters of BERT (defaults: BERT-base)."""

    _kind = "BERT"  # not a field: no annotation

    vocab_size: int = 30522                # WordPiece vocabulary V
    hidden_size: int = 768                 # model width D
    num_layers: int = 12                   # Transformer encoder layers
    num_heads: int = 12                    # attention heads; head dim = D / heads
    intermediate_size: int = 3072          # feed-forward width (4D in the released models)
    hidden_dropout: float = 0.1            # embeddings, residual branches
    attention_dropout: float = 0.1         # on attention probabilities
    # einsum | xla | cudnn (transformer_jax/attention.py); the fused ones read padding as
    # lengths, so input_mask must be right-padded (as BERT's inputs always are).
    attention_implementation: str = "einsum"
    max_position_embeddings: int = 512     # rows of the learned position table P
    type_vocab_size: int = 2               # segment (sentence A/B) vocabulary T
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02        # stddev of the truncated-normal initialiser
    dtype: str = "float32"                 # compute dtype
    param_dtype: str = "float32"           # storage dtype of parameters
    remat: str = "none"                    # none | full | dots | dots_no_batch
    scan_layers: bool = False              # nn.scan over the encoder layers

    def __post_init__(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size={self.hidden_size} is not divisible by "
                             f"num_heads={self.num_heads}")
        if self.num_layers < 0:
            raise ValueError(f"num_layers={self.num_layers} must be >= 0")
        self._check_dtypes()
        attention.check_implementation(self.attention_implementation, self.attention_dropout,
                                       self.dtype, dropout_field="attention_dropout",
                                       head_dim=self.hidden_size // self.num_heads)

    @classmethod
    def from_size(cls, size: str, **overrides) -> "BertConfig":
        """One of the released sizes (``BERT_SIZES``) with optional overrides."""
        if size not in BERT_SIZES:
            raise ValueError(f"unknown BERT size {size!r}; choose one of {list(BERT_SIZES)}")
        return cls.from_dict({**BERT_SIZES[size], **overrides})

    def to_transformer_config(self) -> TransformerConfig:
        """The encoder stack's hyperparameters: post-LN, exact GELU, biased projections."""
        return TransformerConfig(
            vocab_size=self.vocab_size, d_model=self.hidden_size, num_heads=self.num_heads,
            d_ff=self.intermediate_size, num_encoder_layers=self.num_layers,
            num_decoder_layers=0, dropout_rate=self.hidden_dropout,
            attention_dropout_rate=self.attention_dropout,
            attention_implementation=self.attention_implementation,
            max_len=self.max_position_embeddings, pre_layer_norm=False, activation="gelu",
            attention_bias=True, layer_norm_epsilon=self.layer_norm_eps,
            dtype=self.dtype, param_dtype=self.param_dtype, remat=self.remat,
            scan_layers=self.scan_layers)


# BertConfig fields that fix the parameters' shapes and meaning (not dropout or compute
# dtype): what a checkpoint must match to be restored into a model.
SHAPE_FIELDS = ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                "max_position_embeddings", "type_vocab_size", "param_dtype", "scan_layers")


def bert_init(config: BertConfig):
    """BERT's initialiser: truncated normal (at 2 stddev) with stddev initializer_range."""
    return nn.initializers.truncated_normal(stddev=config.initializer_range)


class BertEncoder(nn.Module):
    """Embeddings -> Transformer encoder -> (sequence output, pooled [CLS] output).

    ``setup`` rather than ``@nn.compact`` because two methods share the token embedding:
    ``__call__`` reads it and ``attend`` (the tied MLM output layer) projects onto it.
    """

    config: BertConfig

    def setup(self):
        cfg = self.config
        init = bert_init(cfg)
        # The Transformer's Embed (with ``attend`` for the tied MLM output), unscaled as in
        # BERT and with BERT's initialiser.
        self.token_embed = Embed(
            num_embeddings=cfg.vocab_size, features=cfg.hidden_size, scale_by_sqrt_dim=False,
            embedding_init=init, dtype=cfg.compute_dtype, param_dtype=cfg.storage_dtype)
        self.segment_embed = nn.Embed(
            num_embeddings=cfg.type_vocab_size, features=cfg.hidden_size,
            embedding_init=logical(init, (None, "embed")), dtype=cfg.compute_dtype,
            param_dtype=cfg.storage_dtype)
        self.position_embedding = self.param(
            "position_embedding", logical(init, (None, "embed")),
            (cfg.max_position_embeddings, cfg.hidden_size), cfg.storage_dtype)  # [P, D]
        self.embed_layer_norm = layer_norm(cfg.layer_norm_eps, cfg.storage_dtype,
                                           "embed_layer_norm")
        self.embed_dropout = Dropout(cfg.hidden_dropout)
        self.encoder = EncoderStack(cfg.to_transformer_config())
        self.pooler = nn.Dense(
            cfg.hidden_size, dtype=cfg.compute_dtype, param_dtype=cfg.storage_dtype,
            kernel_init=logical(init, ("embed", "mlp")),
            bias_init=logical(nn.initializers.zeros, ("mlp",)))

    def embed(self, input_ids: Array, segment_ids: Array, deterministic: bool) -> Array:
        """LayerNorm(token + segment + position) then dropout: ids [B, L] -> [B, L, D]."""
        cfg = self.config
        length = input_ids.shape[1]
        if length > cfg.max_position_embeddings:
            raise ValueError(f"sequence length {length} exceeds max_position_embeddings="
                             f"{cfg.max_position_embeddings}; shorten the inputs")
        # The sum feeds a float32 LayerNorm, so it is taken in float32 too.
        tokens = self.token_embed(input_ids).astype(jnp.float32)  # [B, L, D]
        segments = self.segment_embed(segment_ids).astype(jnp.float32)  # [B, L, D]
        positions = jnp.asarray(self.position_embedding[:length], jnp.float32)  # [L, D]
        x = tokens + segments + positions[None]  # [B, L, D]
        x = self.embed_layer_norm(x).astype(cfg.compute_dtype)
        x = self.embed_dropout(x, deterministic=deterministic)
        return constrain(x, ACT_AXES)

    def __call__(self, input_ids: Array, input_mask: Array | None = None,
                 segment_ids: Array | None = None, deterministic: bool = True,
                 output_positions: Array | None = None) -> tuple[Array, Array]:
        """input_ids, input_mask (1 = real token), segment_ids: int [B, L].

        Returns sequence_output [B, L, D] and pooled_output [B, D], both in the compute
        dtype. The final hidden state of every layer is sown as
        ``intermediates/encoder/hidden_states``, the embedding output as
        ``intermediates/embedding_output``.

        ``output_positions`` int [B, P] (pretraining: the masked positions): sequence_output
        is then [B, P, D], those rows only, and the last layer computes just them and [CLS]
        (see ``EncoderStack``); the values are those of the full output's rows.
        """
        if input_mask is None:
            input_mask = jnp.ones_like(input_ids)
        if segment_ids is None:
            segment_ids = jnp.zeros_like(input_ids)
        x = self.embed(input_ids, segment_ids, deterministic)  # [B, L, D]
        self.sow("intermediates", "embedding_output", x)
        mask, key_lengths = self._padding(input_mask)
        if output_positions is None:
            sequence_output = self.encoder(x, mask, deterministic,
                                           key_lengths=key_lengths)  # [B, L, D]
            cls = sequence_output[:, 0]  # [B, D]: the [CLS] position
        else:
            cls_position = jnp.zeros_like(output_positions[:, :1])  # [B, 1]
            rows = jnp.concatenate([cls_position, output_positions], axis=1)  # [B, 1 + P]
            gathered = self.encoder(x, mask, deterministic, self._even_for_cudnn(rows),
                                    key_lengths=key_lengths)  # [B, 1 + P (+ 1), D]
            num_positions = output_positions.shape[1]
            cls = gathered[:, 0]  # [B, D]
            sequence_output = gathered[:, 1:1 + num_positions]  # [B, P, D]
        sequence_output = constrain(sequence_output, ACT_AXES)
        pooled_output = jnp.tanh(self.pooler(cls))  # [B, D]
        pooled_output = constrain(pooled_output, ("act_batch", "act_embed"))
        return sequence_output, pooled_output

    def _padding(self, input_mask: Array) -> tuple[Array | None, Array | None]:
        """input_mask [B, L] -> (mask [B, 1, 1, L], None) for the einsum core, whose padding
        is a mask; (None, lengths [B]) for the fused kernels, which read right padding as
        lengths. Only keys are masked, as in Google's BERT: padded positions attend to the
        real tokens, so every row (padding too, which SQuAD's softmax spans) is the same
        in any core and in the original implementation."""
        if self.config.attention_implementation == "einsum":
            return (input_mask != 0)[:, None, None, :], None
        return None, jnp.sum(input_mask != 0, axis=-1, dtype=jnp.int32)

    def _even_for_cudnn(self, rows: Array) -> Array:
        """rows int [B, R] -> [B, R + R % 2] for the cudnn core (the [CLS] row repeated).

        jax's cuDNN wrapper (0.10) checks every training call as if it had a bias, and with
        a bias cuDNN takes only even query counts; BERT's 1 + max_predictions rows are odd
        (21, 81). The extra row costs one query and is dropped by the caller."""
        if self.config.attention_implementation != "cudnn" or rows.shape[1] % 2 == 0:
            return rows
        return jnp.concatenate([rows, rows[:, :1]], axis=1)  # [B, R + 1]

    def attend(self, x: Array) -> Array:
        """Tied output layer: x [B, P, D] -> logits [B, P, V] float32 (x @ E^T)."""
        return self.token_embed.attend(x)
