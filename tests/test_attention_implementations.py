"""The attention cores of transformer_jax/attention.py agree: ``einsum`` (ours, the default)
against ``xla`` (``jax.nn.dot_product_attention``), forward and backward, with padding as a
mask or as key lengths, in the attention layer, the Transformer (teacher forcing and the
decoding cache) and BERT (plain, gathered rows, scanned, under dropout). ``cudnn`` needs an
NVIDIA GPU, so here its wiring is checked: the call jax receives (implementation, padding as
int32 lengths, bf16 operands), the config errors that keep it from running wrong, and
training and decoding steps lowered for CUDA on this CPU, where jax's own checks of what
cuDNN accepts run (the GPU probes answered by the ``cuda_probes_answer_hopper`` fixture).
"""
import dataclasses
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bert_jax import interop, warm_start
from bert_jax.heads import BertForPreTraining
from bert_jax.model import BertConfig, BertEncoder
from configs import bert_finetune
from model_helpers import init_model, make_batch as transformer_batch
from tiny import padded_bert_inputs, tiny_transformer_config
from transformer_jax import attention, incremental
from transformer_jax.model import Transformer, TransformerConfig

B, L, S, D, N, H = 3, 5, 7, 32, 4, 9  # head dim 9: not the default D / N
KEY_LENGTHS = np.array([7, 4, 1], np.int32)


def attention_layer(implementation: str) -> attention.MultiHeadAttention:
    return attention.MultiHeadAttention(num_heads=N, head_dim=H, use_bias=True,
                                        implementation=implementation)


def layer_inputs(seed: int = 0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(B, L, D)).astype(np.float32),
            rng.normal(size=(B, S, D)).astype(np.float32))


def causal_and_padding_mask() -> np.ndarray:
    """bool [B, 1, L, S]: query l sees keys <= l + 2 that are not padding."""
    visible = np.arange(S)[None, :] <= np.arange(L)[:, None] + 2  # [L, S]
    padding = np.arange(S)[None, :] < KEY_LENGTHS[:, None]  # [B, S]
    return (visible[None] & padding[:, None])[:, None]


@pytest.mark.parametrize("padding", ["mask", "lengths", "both"])
def test_layer_xla_core_matches_einsum_forward_and_backward(padding):
    """The same params give the same output and the same gradients (params and inputs)
    whichever core runs, for a general mask, for right padding given as lengths, or both."""
    query_in, kv_in = layer_inputs()
    mask = causal_and_padding_mask() if padding != "lengths" else None
    lengths = jnp.asarray(KEY_LENGTHS) if padding != "mask" else None
    variables = nn.unbox(attention_layer("einsum").init(
        jax.random.key(0), query_in, kv_in, mask, deterministic=True))

    def loss(implementation, variables, query_in, kv_in):
        out = attention_layer(implementation).apply(
            variables, query_in, kv_in, mask, deterministic=True, key_lengths=lengths)
        weights = jnp.arange(out.size, dtype=jnp.float32).reshape(out.shape) / out.size
        return jnp.sum(jnp.sin(out) * weights), out  # [B, L, D] -> scalar

    grads = {}
    for implementation in ("einsum", "xla"):
        fn = jax.jit(jax.value_and_grad(loss, argnums=(1, 2, 3), has_aux=True),
                     static_argnums=0)
        (_, out), grads[implementation] = fn(implementation, variables, query_in, kv_in)
        if implementation == "einsum":
            reference = out
        assert out.shape == (B, L, D)
    np.testing.assert_allclose(out, reference, rtol=1e-5, atol=1e-5)
    flat_einsum = jax.tree.leaves(grads["einsum"])
    flat_xla = jax.tree.leaves(grads["xla"])
    assert len(flat_einsum) == len(flat_xla) == 8 + 2  # Q/K/V/O kernels and biases; inputs
    for a, b in zip(flat_einsum, flat_xla):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_key_lengths_equal_the_padding_mask_they_stand_for():
    """In the einsum core, lengths [B] are exactly the mask keys < length."""
    query_in, kv_in = layer_inputs(1)
    layer = attention_layer("einsum")
    mask = np.broadcast_to(np.arange(S) < KEY_LENGTHS[:, None], (L, B, S)).transpose(1, 0, 2)
    variables = layer.init(jax.random.key(2), query_in, kv_in, None, deterministic=True)
    by_mask = layer.apply(variables, query_in, kv_in, mask[:, None], deterministic=True)
    by_lengths = layer.apply(variables, query_in, kv_in, None, deterministic=True,
                             key_lengths=jnp.asarray(KEY_LENGTHS))
    np.testing.assert_array_equal(by_mask, by_lengths)
    np.testing.assert_array_equal(attention.length_mask(jnp.asarray([2, 0]), 3)[:, 0, 0],
                                  [[True, True, False], [False, False, False]])


def test_fused_core_refuses_dropout_in_training():
    query_in, kv_in = layer_inputs()
    layer = attention.MultiHeadAttention(num_heads=N, head_dim=H, dropout_rate=0.1,
                                         implementation="xla")
    variables = layer.init(jax.random.key(0), query_in, kv_in, None, deterministic=True)
    with pytest.raises(ValueError, match="no dropout on attention weights"):
        layer.apply(variables, query_in, kv_in, None, deterministic=False,
                    rngs={"dropout": jax.random.key(1)})


# ------------------------------------------------------------------------------ Transformer


def test_transformer_xla_core_matches_einsum_teacher_forced_and_cached():
    """Padding, causal and cross-attention masks: the xla core's teacher-forced logits equal
    the einsum core's; its decoding cache reproduces its own full forward pass."""
    model, params = init_model()
    inputs, decoder_inputs = transformer_batch(pad_targets=True)
    fused = Transformer(dataclasses.replace(model.config, attention_implementation="xla"))
    reference = jax.jit(model.apply)({"params": params}, inputs, decoder_inputs)
    logits = jax.jit(fused.apply)({"params": params}, inputs, decoder_inputs)
    real = np.asarray(decoder_inputs) != 0  # [B, L]: padded targets' rows are never read
    np.testing.assert_allclose(np.asarray(logits)[real], np.asarray(reference)[real],
                               rtol=1e-5, atol=1e-5)

    encoded = jax.jit(lambda p, x: fused.apply({"params": p}, x, method=Transformer.encode))(
        params, inputs)
    cache = incremental.init_cache(fused, params, encoded, inputs, max_decode_len=L)
    tokens_to_logits = jax.jit(incremental.make_tokens_to_logits(fused, params, encoded,
                                                                 inputs))
    for t in range(L):
        step_logits, cache = tokens_to_logits(jnp.asarray(decoder_inputs[:, t:t + 1]), cache)
        rows = real[:, t]  # [B, V] for this step
        np.testing.assert_allclose(np.asarray(step_logits)[rows], np.asarray(logits)[rows, t],
                                   rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------- BERT

TINY_BERT = dict(vocab_size=29, hidden_size=D, num_layers=2, num_heads=N,
                 intermediate_size=37, max_position_embeddings=16, attention_dropout=0.0)
REAL_LENGTHS = (7, 5, 3)
POSITIONS = np.array([[1, 4, 6], [0, 2, 4], [1, 2, 2]], np.int32)


def bert_batch():
    ids, mask, segments = padded_bert_inputs(29, REAL_LENGTHS, 7, seed=3)
    return ids, mask, segments, POSITIONS


def test_bert_xla_core_matches_einsum_under_dropout_with_gathered_rows():
    """BertForPreTraining (MLM at the masked positions only, NSP) in training mode with
    hidden dropout: same loss and gradients from either core, since both draw the same
    dropout masks (the fused core draws none of its own)."""
    cfg = BertConfig.from_dict(dict(TINY_BERT, hidden_dropout=0.1))
    batch = bert_batch()
    params = nn.unbox(BertForPreTraining(cfg).init(jax.random.key(0), *batch))["params"]

    def loss(config, params):
        mlm, nsp = BertForPreTraining(config).apply(
            {"params": params}, *batch, deterministic=False,
            rngs={"dropout": jax.random.key(7)})  # [B, P, V], [B, 2]
        return jnp.sum(jax.nn.log_softmax(mlm)[..., 5]) + jnp.sum(nsp[:, 1]), (mlm, nsp)

    results = {}
    for implementation in ("einsum", "xla"):
        config = dataclasses.replace(cfg, attention_implementation=implementation)
        results[implementation] = jax.jit(
            jax.value_and_grad(loss, argnums=1, has_aux=True), static_argnums=0)(config, params)
    (_, (mlm, nsp)), grads = results["xla"]
    (_, (mlm_ref, nsp_ref)), grads_ref = results["einsum"]
    np.testing.assert_allclose(mlm, mlm_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(nsp, nsp_ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_ref)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_bert_cores_agree_on_every_row_padding_included():
    """Both cores mask keys only (as Google's BERT): padded rows attend to the real tokens
    and so agree too, which matters where a loss spans them (SQuAD's start/end softmax)."""
    cfg = BertConfig.from_dict(TINY_BERT)
    ids, mask, segments, _ = bert_batch()
    params = nn.unbox(BertEncoder(cfg).init(jax.random.key(0), ids, mask, segments))
    outputs = {}
    for implementation in ("einsum", "xla"):
        model = BertEncoder(dataclasses.replace(cfg, attention_implementation=implementation))
        outputs[implementation] = jax.jit(model.apply)(params, ids, mask, segments)
    (sequence, pooled), (sequence_ref, pooled_ref) = outputs["xla"], outputs["einsum"]
    assert sequence.shape == (B, 7, D) and np.asarray(mask == 0).sum() == 6
    np.testing.assert_allclose(sequence, sequence_ref, rtol=1e-5, atol=1e-5)  # [B, L, D]
    np.testing.assert_allclose(pooled, pooled_ref, rtol=1e-5, atol=1e-5)


def test_bert_scanned_layers_pass_key_lengths_to_every_layer():
    """Under nn.scan the lengths are a broadcast input of the layer body: the scanned xla
    core's outputs equal the scanned einsum core's."""
    cfg = BertConfig.from_dict(dict(TINY_BERT, scan_layers=True))
    batch = bert_batch()
    params = nn.unbox(BertForPreTraining(cfg).init(jax.random.key(0), *batch))["params"]
    outputs = {}
    for implementation in ("einsum", "xla"):
        model = BertForPreTraining(dataclasses.replace(
            cfg, attention_implementation=implementation))
        outputs[implementation] = jax.jit(model.apply)({"params": params}, *batch)
    for a, b in zip(outputs["xla"], outputs["einsum"]):  # MLM [B, P, V], NSP [B, 2]
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("positions, last_layer_queries", [
    (POSITIONS, 4),  # [CLS] + 3 rows
    (np.concatenate([POSITIONS, POSITIONS[:, :1]], axis=1), 6),  # [CLS] + 4, made even
])
def test_bert_cudnn_config_hands_jax_padding_as_int32_lengths(monkeypatch, positions,
                                                             last_layer_queries):
    """What cuDNN would get, recorded from the jax call: implementation 'cudnn', no mask,
    key lengths = the real lengths (int32 [B]), bf16 Q/K/V [B, T, N, H], and an even number
    of queries in the gathered last layer. The recorded call then runs through XLA so the
    model's output can be checked against einsum too (the extra row is dropped)."""
    calls = []
    original = jax.nn.dot_product_attention

    def recording(query, key, value, **kwargs):
        calls.append(dict(kwargs, shapes=(query.shape, key.shape), dtype=query.dtype))
        return original(query, key, value, **dict(kwargs, implementation="xla"))

    monkeypatch.setattr(jax.nn, "dot_product_attention", recording)
    cfg = BertConfig.from_dict(dict(TINY_BERT, dtype="bfloat16"))
    batch = (*bert_batch()[:3], positions)
    params = nn.unbox(BertForPreTraining(cfg).init(jax.random.key(0), *batch))["params"]
    calls.clear()
    cudnn = dataclasses.replace(cfg, attention_implementation="cudnn")
    mlm, _ = BertForPreTraining(cudnn).apply({"params": params}, *batch)  # eager: values
    assert len(calls) == cfg.num_layers
    for call in calls:
        assert call["implementation"] == "cudnn" and call["mask"] is None
        assert call["dtype"] == jnp.bfloat16
        lengths = call["key_value_seq_lengths"]
        assert lengths.dtype == jnp.int32 and lengths.tolist() == list(REAL_LENGTHS)
    assert calls[0]["shapes"] == ((B, 7, N, D // N), (B, 7, N, D // N))
    assert calls[-1]["shapes"] == ((B, last_layer_queries, N, D // N), (B, 7, N, D // N))
    mlm_ref, _ = jax.jit(BertForPreTraining(cfg).apply)({"params": params}, *batch)
    assert mlm.shape == mlm_ref.shape == (B, positions.shape[1], 29)
    np.testing.assert_allclose(np.asarray(mlm, np.float32), np.asarray(mlm_ref, np.float32),
                               rtol=0.05, atol=0.05)  # bf16: scaling order differs


@pytest.fixture
def cuda_probes_answer_hopper(monkeypatch):
    """jax's cuDNN wrapper asks the GPU for cuDNN's version and compute capability before it
    lowers. Stand-in answers (cuDNN 9.10, Hopper) let this CPU lower a step for CUDA, which
    runs jax's own checks of what cuDNN's flash attention accepts (head dim, lengths)."""
    from jax._src.cudnn import fused_attention_stablehlo as cudnn_attention

    monkeypatch.setattr(cudnn_attention, "check_cudnn_version", lambda: 91000)
    monkeypatch.setattr(cudnn_attention, "check_compute_capability", lambda capability: True)
    monkeypatch.setattr(cudnn_attention, "is_cuda_compute_capability_equal",
                        lambda capability: False)


def lowered_for_cuda(fn, *args) -> str:
    """StableHLO text of jit(fn)(*args) lowered for CUDA (needs cuda_probes_answer_hopper)."""
    return jax.jit(fn).trace(*args).lower(lowering_platforms=("cuda",)).as_text()


def bert_gradient_lowered_for_cuda(**overrides) -> str:
    """StableHLO text of a bf16 cudnn BERT training gradient at batch 3, length 8 and
    [CLS] + 4 masked rows (odd), lowered for CUDA."""
    cfg = BertConfig.from_dict(dict(TINY_BERT, dtype="bfloat16",
                                    attention_implementation="cudnn", **overrides))
    ids, mask, segments = padded_bert_inputs(29, (8, 5, 3), 8, seed=3)  # [B, 8]
    positions = np.array([[1, 4, 6, 7], [0, 2, 4, 4], [1, 2, 2, 0]], np.int32)  # [B, 4]
    xla = dataclasses.replace(cfg, attention_implementation="xla")
    params = jax.eval_shape(lambda: nn.unbox(BertForPreTraining(xla).init(
        jax.random.key(0), ids, mask, segments, positions))["params"])

    def loss(params):
        mlm, nsp = BertForPreTraining(cfg).apply(
            {"params": params}, ids, mask, segments, positions, deterministic=False,
            rngs={"dropout": jax.random.key(1)})  # [B, P, V], [B, 2]
        return jnp.mean(mlm) + jnp.mean(nsp)

    return lowered_for_cuda(jax.grad(loss), params)


def test_bert_cudnn_training_step_lowers_for_cuda_with_odd_masked_rows(
        cuda_probes_answer_hopper):
    """The gradient of a bf16 BERT step with the cudnn core lowers to cuDNN's fused
    attention, forward and backward, in every layer. jax (0.10) checks each training call as
    if it had a bias, and with one cuDNN takes only even lengths: [CLS] + 4 masked rows
    would be refused ("Unsupported sequence length Q 5"), so BERT asks for 6."""
    text = bert_gradient_lowered_for_cuda()
    queries = re.findall(r"custom_call @__cudnn\$fmhaSoftmax\(.*?: \((tensor<[^>]+>)", text)
    assert sorted(queries) == ["tensor<3x6x4x8xbf16>",  # last layer: [CLS] + 4, made even
                               "tensor<3x8x4x8xbf16>"]  # first layer: all 8 positions
    assert text.count("custom_call @__cudnn$fmhaSoftmaxBackward(") == 2  # one per layer


@pytest.mark.parametrize("remat, forward_calls", [("none", 2), ("dots", 2), ("full", 4)])
def test_remat_dots_keeps_the_cudnn_attention_forward(cuda_probes_answer_hopper, remat,
                                                       forward_calls):
    """remat='dots' saves the fused attention's outputs with the matmuls' (stacking.py), so
    the backward pass does not run cuDNN's forward again; 'full' does, once per layer."""
    text = bert_gradient_lowered_for_cuda(remat=remat)
    assert text.count("custom_call @__cudnn$fmhaSoftmax(") == forward_calls
    assert text.count("custom_call @__cudnn$fmhaSoftmaxBackward(") == 2


def test_transformer_cudnn_training_and_decoding_lower_for_cuda(cuda_probes_answer_hopper):
    """The Transformer's masks (packed segments, causal, cross) reach cuDNN as a bias: a bf16
    training gradient on a packed batch of length 8 lowers to the biased fused kernel in all
    6 attention calls (2 encoder, 2 x 2 decoder), forward and backward, and so does one
    cached decoding step (inference: 4 decoder calls, no backward)."""
    config = tiny_transformer_config(dtype="bfloat16", attention_dropout_rate=0.0)
    xla, cudnn = (Transformer(dataclasses.replace(config, attention_implementation=core))
                  for core in ("xla", "cudnn"))
    ids = np.arange(3, 3 + 3 * 8).reshape(3, 8).astype(np.int32) % 10 + 3  # [B, 8]
    segments = np.array([[1] * 5 + [2] * 3] * 3, np.int32)  # two packed examples per row
    positions = np.array([list(range(5)) + list(range(3))] * 3, np.int32)
    batch = (ids, ids, segments, positions, segments, positions)
    params = nn.unbox(xla.init(jax.random.key(0), *batch))["params"]

    def loss(params):
        logits = cudnn.apply({"params": params}, *batch, deterministic=False,
                             rngs={"dropout": jax.random.key(1)})  # [B, 8, V]
        return jnp.mean(logits.astype(jnp.float32))

    text = lowered_for_cuda(jax.grad(loss), params)
    assert text.count("custom_call @__cudnn$fmhaScaleBiasSoftmax(") == 6
    assert text.count("custom_call @__cudnn$fmhaScaleBiasSoftmaxBackward(") == 6

    encoded = xla.apply({"params": params}, ids, method=Transformer.encode)  # [B, 8, D]
    cache = incremental.init_cache(xla, params, encoded, ids, max_decode_len=8)

    def step(params, encoded, tokens, cache):  # tokens [B, 1] -> logits [B, V], cache
        return incremental.make_tokens_to_logits(cudnn, params, encoded, ids)(tokens, cache)

    text = lowered_for_cuda(step, params, encoded, jnp.ones((3, 1), jnp.int32), cache)
    assert text.count("custom_call @__cudnn$fmhaScaleBiasSoftmax(") == 4
    assert "Backward" not in text


@pytest.mark.parametrize("build, message", [
    (lambda: BertConfig(attention_implementation="flash"),
     r"attention_implementation='flash'; use one of \['einsum', 'xla', 'cudnn'\]"),
    (lambda: BertConfig(attention_implementation="xla"),
     r"'xla' has no dropout on attention weights but attention_dropout=0.1; set "
     r"attention_dropout=0 or use attention_implementation='einsum'"),
    (lambda: BertConfig(attention_implementation="cudnn", attention_dropout=0.0),
     r"'cudnn' needs dtype bfloat16 or float16, not 'float32'; set dtype=bfloat16"),
    (lambda: tiny_transformer_config(attention_implementation="xla",
                                     attention_dropout_rate=0.1),
     r"attention_dropout_rate=0.1; set attention_dropout_rate=0"),
    (lambda: TransformerConfig(attention_implementation="cudnn", dtype="float32"),
     r"needs dtype bfloat16 or float16"),
    (lambda: BertConfig(attention_implementation="cudnn", attention_dropout=0.0,
                        dtype="bfloat16", hidden_size=36, num_heads=4),
     r"'cudnn' needs a head dim that is a multiple of 8 and at most 256 \(128 before "
     r"Hopper\), not 9; change the number of heads or use 'xla'"),
    (lambda: TransformerConfig(attention_implementation="cudnn", dtype="bfloat16",
                               attention_dropout_rate=0.0, head_dim=264),
     r"multiple of 8 and at most 256 \(128 before Hopper\), not 264"),
])
def test_configs_refuse_what_the_core_cannot_run(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_cudnn_without_a_gpu_fails_at_trace_naming_the_fix():
    """On this CPU jax can only say "cuDNN is not detected."; the run's one line adds what to
    use instead, and keeps jax's reason."""
    query_in, kv_in = (x.astype(jnp.bfloat16) for x in layer_inputs())
    layer = attention.MultiHeadAttention(num_heads=N, head_dim=8, dtype=jnp.bfloat16,
                                         implementation="cudnn")
    with pytest.raises(ValueError, match=r"^attention_implementation='cudnn' cannot run "
                       r"here: cuDNN is not detected\. Use attention_implementation='xla' "
                       r"\(the same math, any backend\) or 'einsum'"):
        layer.init(jax.random.key(0), query_in, kv_in, None, deterministic=True,
                   key_lengths=jnp.asarray(KEY_LENGTHS))


def test_bf16_cudnn_config_without_attention_dropout_is_accepted():
    cfg = BertConfig(attention_implementation="cudnn", attention_dropout=0.0,
                     dtype="bfloat16")
    assert cfg.to_transformer_config().attention_implementation == "cudnn"


def test_fine_tuning_picks_its_own_core_whatever_the_checkpoint_ran():
    """The core is a run setting (warm_start.RUN_FIELDS): a fine-tuning config asking for
    cudnn in bf16 without attention dropout gets it on a checkpoint pretrained with einsum,
    and the default fine-tuning config (attention dropout 0.1) with a fused core is refused
    in one line naming the fix."""
    pretrained = interop.Pretrained(config=BertConfig.from_dict(TINY_BERT), params={},
                                    vocab_file=None, source="a test checkpoint")
    config = bert_finetune.get_config("task=mrpc")
    config.model.update(dict(attention_implementation="cudnn", attention_dropout=0.0,
                             dtype="bfloat16"))
    model = warm_start.model_config(pretrained, config.model)
    assert (model.attention_implementation, model.attention_dropout, model.dtype) == (
        "cudnn", 0.0, "bfloat16")
    assert model.hidden_size == D and model.num_layers == 2  # the rest: the checkpoint's
    config.model.update(dict(attention_implementation="xla", attention_dropout=0.1))
    with pytest.raises(ValueError, match="set attention_dropout=0"):
        warm_start.model_config(pretrained, config.model)
