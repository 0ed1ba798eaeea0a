"""The encoder-decoder Transformer of "Attention Is All You Need" (Vaswani et al., 2017).

Legend: B batch, S source length, L target length, N heads, H head dim, D model dim,
F feed-forward dim, V vocabulary.

``EncoderStack`` (layers over already-embedded inputs) is what BERT reuses; ``Transformer``
adds the shared embeddings, sinusoidal positions, decoder and output layer. Modes are call
arguments (``deterministic``, ``decode``), never config fields.
"""

import dataclasses
from typing import Any, Mapping

import flax.linen as nn
import jax.numpy as jnp

from transformer_jax import attention, stacking
from transformer_jax.dropout import Dropout
from transformer_jax.layers import (
    Array, Embed, FeedForward, SinusoidalPositions, constrain, default_kernel_init, gather_rows,
    layer_norm, logical)

ACT_AXES = ("act_batch", "act_length", "act_embed")
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


class HyperParams:
    """Shared behaviour of the frozen hyperparameter dataclasses (Transformer, BERT):
    dtype names checked, resolved dtypes, and a from_dict that refuses typos."""

    _kind = "model"  # names the config in error messages

    def _check_dtypes(self) -> None:
        for field in ("dtype", "param_dtype"):
            if getattr(self, field) not in _DTYPES:
                raise ValueError(f"{field}={getattr(self, field)!r}; use one of {list(_DTYPES)}")

    @property
    def compute_dtype(self):
        return _DTYPES[self.dtype]

    @property
    def storage_dtype(self):
        return _DTYPES[self.param_dtype]

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]):
        """Builds a config, failing on keys that are not hyperparameters (typos)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown {cls._kind} config keys {unknown}; "
                             f"valid keys: {sorted(known)}")
        return cls(**dict(values))


@dataclasses.dataclass(frozen=True)
class TransformerConfig(HyperParams):
    """Hyperparameters of the Transformer (defaults: the paper's base model)."""

    vocab_size: int = 32000            # shared source/target vocabulary size
    d_model: int = 512                 # model width D
    num_heads: int = 8                 # attention heads N
    head_dim: int | None = None        # per-head width H; None = d_model // num_heads
    d_ff: int = 2048                   # feed-forward width F
    num_encoder_layers: int = 6
    num_decoder_layers: int = 6
    dropout_rate: float = 0.1          # residual + embedding dropout (P_drop)
    attention_dropout_rate: float = 0.0  # on attention weights (tensor2tensor option)
    attention_implementation: str = "einsum"  # einsum | xla | cudnn (attention.py)
    max_len: int = 512                 # longest position the sinusoid table covers
    share_embeddings: bool = True      # one embedding matrix for source and target
    tie_output: bool = True            # output projection = target embedding matrix
    pre_layer_norm: bool = False       # False: the paper's post-LN; True: pre-LN
    activation: str = "relu"           # feed-forward non-linearity
    attention_bias: bool = False       # biases on Q/K/V/O projections (BERT uses them)
    layer_norm_epsilon: float = 1e-6
    dtype: str = "float32"             # compute dtype
    param_dtype: str = "float32"       # storage dtype of parameters
    remat: str = "none"                # none | full | dots | dots_no_batch (stacking.py)
    scan_layers: bool = False          # nn.scan over layers: params stacked on "layers"

    def __post_init__(self):
        if self.remat != "none" and self.remat not in stacking.REMAT_POLICIES:
            raise ValueError(f"remat={self.remat!r}; use 'none' or one of "
                             f"{list(stacking.REMAT_POLICIES)}")
        if self.head_dim is None and self.d_model % self.num_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by num_heads="
                             f"{self.num_heads}; set head_dim explicitly")
        self._check_dtypes()
        attention.check_implementation(self.attention_implementation,
                                       self.attention_dropout_rate, self.dtype,
                                       head_dim=self.qkv_dim)

    @property
    def qkv_dim(self) -> int:
        return self.head_dim or self.d_model // self.num_heads


class SubLayer(nn.Module):
    """Residual + LayerNorm around one sub-layer, post-LN (paper) or pre-LN.

    post-LN: LayerNorm(x + Dropout(f(x)));  pre-LN: x + Dropout(f(LayerNorm(x))).
    """

    config: TransformerConfig

    @nn.compact
    def __call__(self, x: Array, fn, deterministic: bool,
                 kept_positions: Array | None = None) -> Array:
        """x [B, S, D] -> [B, S, D]; with ``kept_positions`` int [B, P], ``fn`` returns only
        those rows [B, P, D] and so does this (the residual is gathered to match)."""
        cfg = self.config
        norm = layer_norm(cfg.layer_norm_epsilon, cfg.storage_dtype, "layer_norm")
        y = fn(norm(x).astype(cfg.compute_dtype)) if cfg.pre_layer_norm else fn(x)
        y = Dropout(cfg.dropout_rate)(y, deterministic=deterministic)
        out = (x if kept_positions is None else gather_rows(x, kept_positions)) + y
        if not cfg.pre_layer_norm:
            out = norm(out).astype(cfg.compute_dtype)
        return constrain(out, ACT_AXES)


def _attention(cfg: TransformerConfig, name: str) -> attention.MultiHeadAttention:
    return attention.MultiHeadAttention(
        num_heads=cfg.num_heads, head_dim=cfg.qkv_dim, use_bias=cfg.attention_bias,
        dropout_rate=cfg.attention_dropout_rate, dtype=cfg.compute_dtype,
        param_dtype=cfg.storage_dtype, implementation=cfg.attention_implementation, name=name)


def _feed_forward(cfg: TransformerConfig) -> FeedForward:
    return FeedForward(d_ff=cfg.d_ff, activation=cfg.activation, dropout_rate=0.0,
                       dtype=cfg.compute_dtype, param_dtype=cfg.storage_dtype, name="ffn")


class EncoderLayer(nn.Module):
    """Self-attention then feed-forward, each wrapped in residual + LayerNorm.

    Called as a scan body: returns (the new carry, this layer's output if ``collect``)."""

    config: TransformerConfig
    deterministic: bool = True
    collect: bool = False

    @nn.compact
    def __call__(self, x: Array, mask: Array | None, kept_positions: Array | None = None,
                 key_lengths: Array | None = None) -> tuple[Array, Array | None]:
        """x [B, S, D], mask [B, 1, S, S] -> ([B, S, D], [B, S, D] or None).

        With ``kept_positions`` int [B, P] only those rows are computed: queries come from
        them, keys and values from all S positions, and the output is [B, P, D].
        ``key_lengths`` int [B]: right padding as lengths (see attention.py)."""
        cfg, deterministic = self.config, self.deterministic
        self_attention = _attention(cfg, "self_attention")

        def attend(h: Array) -> Array:
            if kept_positions is None:
                return self_attention(h, h, mask, deterministic=deterministic,
                                      key_lengths=key_lengths)
            query_mask = mask
            if mask is not None and mask.shape[2] > 1:  # per-query rows: keep the kept ones
                query_mask = gather_rows(mask[:, 0], kept_positions)[:, None]  # [B, 1, P, S]
            return self_attention(gather_rows(h, kept_positions), h, query_mask,
                                  deterministic=deterministic,
                                  key_lengths=key_lengths)  # [B, P, D]

        x = SubLayer(cfg, name="attention_block")(x, attend, deterministic, kept_positions)
        ffn = _feed_forward(cfg)
        x = SubLayer(cfg, name="ffn_block")(
            x, lambda h: ffn(h, deterministic=deterministic), deterministic)
        return x, (x if self.collect else None)


class DecoderLayer(nn.Module):
    """Masked self-attention, encoder-decoder attention, feed-forward (a scan body)."""

    config: TransformerConfig
    deterministic: bool = True
    decode: bool = False

    @nn.compact
    def __call__(self, y: Array, encoded: Array, self_mask: Array | None,
                 cross_mask: Array | None) -> tuple[Array, None]:
        """y [B, L, D], encoded [B, S, D], masks [B, 1, L, L] / [B, 1, L, S] -> [B, L, D]."""
        cfg, deterministic = self.config, self.deterministic
        self_attention = _attention(cfg, "self_attention")
        y = SubLayer(cfg, name="self_attention_block")(
            y, lambda h: self_attention(h, h, self_mask, deterministic=deterministic,
                                        decode=self.decode), deterministic)
        # Queries come from the decoder, keys and values from the encoder output.
        cross_attention = _attention(cfg, "cross_attention")
        y = SubLayer(cfg, name="cross_attention_block")(
            y, lambda h: cross_attention(h, encoded, cross_mask, deterministic=deterministic),
            deterministic)
        ffn = _feed_forward(cfg)
        y = SubLayer(cfg, name="ffn_block")(
            y, lambda h: ffn(h, deterministic=deterministic), deterministic)
        return y, None


class EncoderStack(nn.Module):
    """num_encoder_layers EncoderLayers over embedded inputs (+ final LN when pre-LN).

    Sows each layer's output as ``intermediates/hidden_states`` (when that collection is
    mutable), in either layout; with ``output_positions`` the last one holds those rows."""

    config: TransformerConfig

    @nn.compact
    def __call__(self, x: Array, mask: Array | None, deterministic: bool,
                 output_positions: Array | None = None,
                 key_lengths: Array | None = None) -> Array:
        """x [B, S, D] already embedded -> [B, S, D], or [B, P, D] at ``output_positions``.

        Padding comes as ``mask`` [B, 1, S, S], as right-padded ``key_lengths`` int [B] (the
        form fused attention kernels read), or both.

        ``output_positions`` int [B, P]: the only rows the caller reads (BERT pretraining:
        [CLS] and the masked tokens). The last layer then computes just those rows; its keys
        and values still cover every position, so the rows are the same as those of the
        full output, for (1 - P/S) of the last layer's query, output and FFN FLOPs. The
        scanned layout has no separate last layer and computes every row, then gathers.
        """
        cfg, count = self.config, self.config.num_encoder_layers
        collect = self.is_mutable_collection("intermediates")
        layer = stacking.layer_class(EncoderLayer, cfg.remat, cfg.scan_layers, count)
        hidden = []
        if cfg.scan_layers and count:
            x, stacked = layer(cfg, deterministic, collect, name=stacking.SCANNED)(
                x, mask, None, key_lengths)
            hidden = [stacked[i] for i in range(count)] if collect else []  # [L, B, S, D]
            if output_positions is not None:
                x = gather_rows(x, output_positions)  # [B, P, D]
                if collect:
                    hidden[-1] = x  # as unscanned: the last layer sows those rows only
        else:
            for i in range(count):
                kept = output_positions if i == count - 1 else None
                x, _ = layer(cfg, deterministic, name=f"layer_{i}")(
                    x, mask, kept, key_lengths)
                hidden.append(x)
            if output_positions is not None and not count:
                x = gather_rows(x, output_positions)  # [B, P, D]
        for h in hidden:
            self.sow("intermediates", "hidden_states", h)
        if cfg.pre_layer_norm:
            x = layer_norm(cfg.layer_norm_epsilon, cfg.storage_dtype, "final_layer_norm")(x)
        return x.astype(cfg.compute_dtype)


class DecoderStack(nn.Module):
    """num_decoder_layers DecoderLayers (+ final LN when pre-LN)."""

    config: TransformerConfig

    @nn.compact
    def __call__(self, y: Array, encoded: Array, self_mask: Array | None,
                 cross_mask: Array | None, deterministic: bool, decode: bool) -> Array:
        cfg, count = self.config, self.config.num_decoder_layers
        layer = stacking.layer_class(DecoderLayer, cfg.remat, cfg.scan_layers, count)
        if cfg.scan_layers and count:
            y, _ = layer(cfg, deterministic, decode, name=stacking.SCANNED)(
                y, encoded, self_mask, cross_mask)
        else:
            for i in range(count):
                y, _ = layer(cfg, deterministic, decode, name=f"layer_{i}")(
                    y, encoded, self_mask, cross_mask)
        if cfg.pre_layer_norm:
            y = layer_norm(cfg.layer_norm_epsilon, cfg.storage_dtype, "final_layer_norm")(y)
        return y.astype(cfg.compute_dtype)


class Transformer(nn.Module):
    """Encoder-decoder Transformer; ``encode`` and ``decode`` are separate for search.

    Token id 0 is padding. Packed batches pass segment ids (0 = padding) and per-segment
    positions; unpacked batches may leave them None.
    """

    config: TransformerConfig

    def setup(self):
        cfg = self.config
        embed = lambda name: Embed(cfg.vocab_size, cfg.d_model, dtype=cfg.compute_dtype,
                                   param_dtype=cfg.storage_dtype, name=name)
        self.source_embed = embed(
            "shared_embedding" if cfg.share_embeddings else "source_embedding")
        self.target_embed = self.source_embed if cfg.share_embeddings else embed("target_embedding")
        self.encoder_positions = SinusoidalPositions(cfg.max_len)
        self.decoder_positions = SinusoidalPositions(cfg.max_len)
        self.embed_dropout = Dropout(cfg.dropout_rate)
        self.encoder = EncoderStack(cfg)
        self.decoder = DecoderStack(cfg)
        if not cfg.tie_output:
            self.logits_dense = nn.Dense(
                cfg.vocab_size, dtype=cfg.compute_dtype, param_dtype=cfg.storage_dtype,
                kernel_init=logical(default_kernel_init, ("embed", "vocab")),
                bias_init=logical(nn.initializers.zeros, ("vocab",)))

    def encode(self, inputs: Array, inputs_segment_ids: Array | None = None,
               inputs_positions: Array | None = None, *, deterministic: bool = True) -> Array:
        """inputs [B, S] -> encoded [B, S, D]."""
        mask = attention.combine_masks(
            attention.padding_mask(inputs, inputs),
            None if inputs_segment_ids is None
            else attention.segment_mask(inputs_segment_ids, inputs_segment_ids))
        x = self.encoder_positions(self.source_embed(inputs), inputs_positions)
        x = self.embed_dropout(x, deterministic=deterministic)
        x = constrain(x.astype(self.config.compute_dtype), ACT_AXES)
        return self.encoder(x, mask, deterministic)

    def decode(self, encoded: Array, inputs: Array, decoder_inputs: Array,
               inputs_segment_ids: Array | None = None,
               targets_segment_ids: Array | None = None,
               targets_positions: Array | None = None, *,
               deterministic: bool = True, decode: bool = False) -> Array:
        """encoded [B, S, D], decoder_inputs [B, L] -> logits [B, L, V] in float32.

        With ``decode=True`` decoder_inputs is one token [B, 1] per call and self-attention
        reads/writes the ``cache`` collection; the self-attention mask then comes from it.
        """
        if decode:
            self_mask = None
            cross_mask = attention.padding_mask(jnp.ones_like(decoder_inputs), inputs)
        else:
            self_mask = attention.combine_masks(
                attention.padding_mask(decoder_inputs, decoder_inputs),
                attention.causal_mask(decoder_inputs),
                None if targets_segment_ids is None
                else attention.segment_mask(targets_segment_ids, targets_segment_ids))
            cross_mask = attention.combine_masks(
                attention.padding_mask(decoder_inputs, inputs),
                None if targets_segment_ids is None
                else attention.segment_mask(targets_segment_ids, inputs_segment_ids))
        y = self.decoder_positions(self.target_embed(decoder_inputs), targets_positions,
                                   decode=decode)
        y = self.embed_dropout(y, deterministic=deterministic)
        y = constrain(y.astype(self.config.compute_dtype), ACT_AXES)
        y = self.decoder(y, encoded, self_mask, cross_mask, deterministic, decode)
        if self.config.tie_output:
            logits = self.target_embed.attend(y)  # [B, L, V]
        else:
            logits = self.logits_dense(y).astype(jnp.float32)  # [B, L, V]
        return constrain(logits, ("act_batch", "act_length", "act_vocab"))

    def __call__(self, inputs: Array, decoder_inputs: Array,
                 inputs_segment_ids: Array | None = None,
                 inputs_positions: Array | None = None,
                 targets_segment_ids: Array | None = None,
                 targets_positions: Array | None = None, *,
                 deterministic: bool = True) -> Array:
        """Teacher-forced forward pass: inputs [B, S], decoder_inputs [B, L] -> [B, L, V]."""
        encoded = self.encode(inputs, inputs_segment_ids, inputs_positions,
                              deterministic=deterministic)
        return self.decode(encoded, inputs, decoder_inputs, inputs_segment_ids,
                           targets_segment_ids, targets_positions, deterministic=deterministic)
