"""Multi-head scaled dot-product attention with masks and an incremental-decoding cache.

Legend: B batch, L query length, S key length, N heads, H head dim, D model dim.

Masks are boolean ``[B, 1, L, S]`` (True = may attend) built with flax's own helpers and
combined by logical AND; inside the softmax, masked fp32 scores are replaced by the most
negative float so they get exactly zero weight. Right padding may instead come as per-example
key lengths ``[B]``, the form fused kernels read.

Implementations of the attention core (``IMPLEMENTATIONS``):
  einsum  this module's: two einsums and a float32 softmax. Dropout on the attention
          weights, which it sows for visualisation. The default, and the paper's model.
  xla     ``jax.nn.dot_product_attention`` lowered by XLA: the same numbers, no dropout.
  cudnn   the same function's cuDNN flash-attention kernel (NVIDIA GPUs, bf16/fp16): the
          [B, N, L, S] weights never reach memory, which is what long sequences need on a
          GPU. No dropout on the weights (jax's kernel takes a fixed seed, so the mask would
          repeat every step): pretrain with attention dropout 0, as MosaicBERT does.
          Padding given as lengths (BERT) is the kernel's own padding mask; a boolean mask
          (the Transformer's causal, cross and packed masks) reaches it as a dense
          [B, 1, L, S] bias, with its gradient: correct, but not the memory saving.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from transformer_jax.dropout import Dropout
from transformer_jax.layers import Array, Dtype, constrain, logical


def padding_mask(query_tokens: Array, key_tokens: Array, pad_id: int = 0) -> Array:
    """[B, L], [B, S] token ids -> [B, 1, L, S]: neither side is padding."""
    return nn.make_attention_mask(query_tokens != pad_id, key_tokens != pad_id)


def segment_mask(query_segment_ids: Array, key_segment_ids: Array) -> Array:
    """[B, L], [B, S] -> [B, 1, L, S]: packed examples only see their own segment."""
    return nn.make_attention_mask(query_segment_ids, key_segment_ids, jnp.equal)


def causal_mask(tokens: Array) -> Array:
    """[B, L] -> [B, 1, L, L]: position i sees positions <= i."""
    return nn.make_causal_mask(tokens)


def combine_masks(*masks: Array | None) -> Array | None:
    """Logical AND of the masks that are not None."""
    return nn.combine_masks(*masks)


IMPLEMENTATIONS = ("einsum", "xla", "cudnn")


# cuDNN's flash attention (jax's check_is_flash_attention): head dim a multiple of 8, at most
# 256 on Hopper and later, 128 before. Only the GPU knows which; the config checks the bound
# every GPU shares and the trace-time error names the rest.
CUDNN_HEAD_DIM_MULTIPLE, CUDNN_MAX_HEAD_DIM = 8, 256


def check_implementation(implementation: str, attention_dropout: float, dtype: str,
                         dropout_field: str = "attention_dropout_rate",
                         head_dim: int | None = None) -> None:
    """Refuses a config the chosen attention core cannot run (one line naming the fix)."""
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"attention_implementation={implementation!r}; use one of "
                         f"{list(IMPLEMENTATIONS)}")
    if implementation != "einsum" and attention_dropout > 0:
        raise ValueError(f"attention_implementation={implementation!r} has no dropout on "
                         f"attention weights but {dropout_field}={attention_dropout}; set "
                         f"{dropout_field}=0 or use attention_implementation='einsum'")
    if implementation == "cudnn" and dtype not in ("bfloat16", "float16"):
        raise ValueError(f"attention_implementation='cudnn' needs dtype bfloat16 or float16, "
                         f"not {dtype!r}; set dtype=bfloat16 or use 'xla'")
    if implementation == "cudnn" and head_dim is not None and (
            head_dim % CUDNN_HEAD_DIM_MULTIPLE or head_dim > CUDNN_MAX_HEAD_DIM):
        raise ValueError(f"attention_implementation='cudnn' needs a head dim that is a multiple "
                         f"of {CUDNN_HEAD_DIM_MULTIPLE} and at most {CUDNN_MAX_HEAD_DIM} (128 "
                         f"before Hopper), not {head_dim}; change the number of heads or use "
                         f"'xla'")


def length_mask(key_lengths: Array, key_length: int) -> Array:
    """int [B] real lengths -> bool [B, 1, 1, S]: keys at positions < length."""
    return (jnp.arange(key_length) < key_lengths[:, None])[:, None, None, :]


def attention_weights(query: Array, key: Array, mask: Array | None) -> Array:
    """softmax(Q K^T / sqrt(H) + mask) in float32.

    query [B, L, N, H], key [B, S, N, H], mask [B, 1|N, L, S] -> weights [B, N, L, S].
    """
    depth = query.shape[-1]
    query = query / jnp.sqrt(depth).astype(query.dtype)
    logits = jnp.einsum("BLNH,BSNH->BNLS", query, key,
                        preferred_element_type=jnp.float32)  # [B, N, L, S]
    if mask is not None:
        logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
    return jax.nn.softmax(logits, axis=-1)


def weighted_values(weights: Array, value: Array) -> Array:
    """weights [B, N, L, S], value [B, S, N, H] -> [B, L, N, H]."""
    return jnp.einsum("BNLS,BSNH->BLNH", weights.astype(value.dtype), value)


class MultiHeadAttention(nn.Module):
    """MultiHead(Q, K, V) = Concat(head_1..head_N) W^O,
    head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V).

    The per-head projections are stored as [D, N, H] kernels (all heads in one matmul) and
    W^O as [N, H, D], so "concatenate then project" is a single contraction over (N, H).
    With ``decode=True`` (self-attention only) keys and values are appended to a cache and
    the query attends to every cached position up to the current one.
    """

    num_heads: int
    head_dim: int
    use_bias: bool = False
    dropout_rate: float = 0.0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    implementation: str = "einsum"   # see IMPLEMENTATIONS

    def _param(self, name: str, shape: tuple[int, ...], axes: tuple[str, ...],
               in_axis, out_axis) -> Array:
        # Created at full rank (not via DenseGeneral's flattened init) so the logical
        # names always match the array's rank.
        init = nn.initializers.xavier_uniform(in_axis=in_axis, out_axis=out_axis)
        return self.param(name, logical(init, axes), shape, self.param_dtype)

    def _project(self, name: str, x: Array) -> Array:
        """x [B, T, D] -> [B, T, N, H] with the [D, N, H] kernel (all heads at once)."""
        d_model = x.shape[-1]
        kernel = self._param(f"{name}_kernel", (d_model, self.num_heads, self.head_dim),
                             ("embed", "heads", "kv"), 0, (1, 2))
        y = jnp.einsum("BTD,DNH->BTNH", x.astype(self.dtype), kernel.astype(self.dtype))
        if self.use_bias:
            bias = self.param(f"{name}_bias", logical(nn.initializers.zeros, ("heads", "kv")),
                              (self.num_heads, self.head_dim), self.param_dtype)
            y = y + bias.astype(self.dtype)
        return y

    def _output(self, x: Array, d_model: int) -> Array:
        """x [B, L, N, H] -> [B, L, D]: concatenating heads and W^O in one contraction."""
        kernel = self._param("out_kernel", (self.num_heads, self.head_dim, d_model),
                             ("heads", "kv", "embed"), (0, 1), 2)
        y = jnp.einsum("BLNH,NHD->BLD", x, kernel.astype(self.dtype))
        if self.use_bias:
            bias = self.param("out_bias", logical(nn.initializers.zeros, ("embed",)),
                              (d_model,), self.param_dtype)
            y = y + bias.astype(self.dtype)
        return y

    @nn.compact
    def __call__(self, inputs_q: Array, inputs_kv: Array, mask: Array | None, *,
                 deterministic: bool, decode: bool = False,
                 key_lengths: Array | None = None) -> Array:
        """inputs_q [B, L, D], inputs_kv [B, S, D], mask [B, 1, L, S] -> [B, L, D].

        ``key_lengths`` int [B]: keys at positions >= length are padding (ANDed with mask).
        """
        d_model = inputs_q.shape[-1]
        query = self._project("query", inputs_q)  # [B, L, N, H]
        key = self._project("key", inputs_kv)  # [B, S, N, H]
        value = self._project("value", inputs_kv)  # [B, S, N, H]
        head_axes = ("act_batch", "act_length", "act_heads", None)
        query, key, value = (constrain(t, head_axes) for t in (query, key, value))
        if decode:
            key, value, mask = self._update_cache(key, value)
        if self.implementation == "einsum":
            out = self._einsum_core(query, key, value, mask, key_lengths, deterministic)
        else:
            out = self._fused_core(query, key, value, mask, key_lengths, deterministic)
        return self._output(out, d_model)  # [B, L, D]

    def _einsum_core(self, query: Array, key: Array, value: Array, mask: Array | None,
                     key_lengths: Array | None, deterministic: bool) -> Array:
        """Q [B, L, N, H], K, V [B, S, N, H] -> [B, L, N, H], with dropout on the weights."""
        if key_lengths is not None:
            mask = combine_masks(mask, length_mask(key_lengths, key.shape[1]))
        weights = attention_weights(query, key, mask)  # [B, N, L, S]
        # Free unless a caller asks for the 'intermediates' collection (visualisation).
        self.sow("intermediates", "attention_weights", weights)
        weights = Dropout(self.dropout_rate)(weights, deterministic=deterministic)
        return weighted_values(weights, value)  # [B, L, N, H]

    def _fused_core(self, query: Array, key: Array, value: Array, mask: Array | None,
                    key_lengths: Array | None, deterministic: bool) -> Array:
        """The same contract through ``jax.nn.dot_product_attention`` (no weights dropout).

        Padding as lengths reaches cuDNN as its padding mask; a boolean mask becomes an
        additive bias there (slower, but any pattern)."""
        if self.dropout_rate > 0 and not deterministic:
            raise ValueError(f"attention implementation {self.implementation!r} has no "
                             f"dropout on attention weights; set the attention dropout to 0")
        if mask is not None:
            mask = mask.astype(bool)  # flax's mask helpers give float 0/1; jax wants bool
        if key_lengths is not None:
            key_lengths = key_lengths.astype(jnp.int32)
        # Scaled by 1/sqrt(H) inside, as attention_weights does.
        try:
            return jax.nn.dot_product_attention(
                query, key, value, mask=mask, key_value_seq_lengths=key_lengths,
                implementation=self.implementation)  # [B, L, N, H]
        except (RuntimeError, NotImplementedError) as error:
            if self.implementation != "cudnn":
                raise
            # jax says what cuDNN lacks ("cuDNN is not detected.", a head dim or length it
            # cannot take) but not what to do about it. A ValueError, as a config error: the
            # entry points print it as one line.
            raise ValueError(
                f"attention_implementation={self.implementation!r} cannot run here: "
                f"{str(error).strip()} Use attention_implementation='xla' (the same math, "
                f"any backend) or 'einsum'") from error

    def _update_cache(self, key: Array, value: Array) -> tuple[Array, Array, Array | None]:
        """Writes this step's key/value [B, 1, N, H] into the cache [B, T, N, H].

        At init time (no cache yet) the call sees the full-length dummy input, which only
        fixes the cache shapes; the returned mask is then None.
        """
        is_initialized = self.has_variable("cache", "cached_key")
        cached_key = self.variable("cache", "cached_key", jnp.zeros, key.shape, key.dtype)
        cached_value = self.variable("cache", "cached_value", jnp.zeros, value.shape, value.dtype)
        cache_index = self.variable("cache", "cache_index", lambda: jnp.zeros((), jnp.int32))
        if not is_initialized:
            return key, value, None
        batch, max_length = cached_key.value.shape[:2]
        if key.shape[1] != 1:
            raise ValueError(f"decode=True expects one token per call, got length {key.shape[1]}")
        index = cache_index.value
        start = (0, index, 0, 0)
        cached_key.value = jax.lax.dynamic_update_slice(cached_key.value, key, start)
        cached_value.value = jax.lax.dynamic_update_slice(cached_value.value, value, start)
        cache_index.value = index + 1
        # The new token sees cached positions 0..index, never the empty slots after it.
        visible = jnp.arange(max_length) <= index  # [T]
        mask = jnp.broadcast_to(visible, (batch, 1, 1, max_length))  # [B, 1, 1, T]
        return cached_key.value, cached_value.value, mask
