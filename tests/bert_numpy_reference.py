"""Google BERT's forward pass in plain numpy, from weights named as in its TF checkpoints.

An independent oracle for checkpoint import: it follows google-research/bert
``modeling.py`` (embeddings + LayerNorm, post-LN layers with an additive -10000 padding mask
on the keys, exact erf GELU, tanh pooler on [CLS]) and ``run_pretraining.py`` (MLM
transform + LayerNorm + tied decoder + output bias; NSP on the pooled output), and shares
no code with ``bert_jax``. Computed in float64.

Legend: B batch, L length, N heads, H head dim, D hidden, F intermediate, V vocabulary.
"""
import math

import numpy as np

_erf = np.vectorize(math.erf)
EPS = 1e-12  # modeling.py's layer_norm epsilon


def gelu(x: np.ndarray) -> np.ndarray:
    """The erf GELU of the released checkpoints: x * Phi(x)."""
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + EPS) * gamma + beta


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def forward(w: dict[str, np.ndarray], num_heads: int, input_ids: np.ndarray,
            input_mask: np.ndarray, segment_ids: np.ndarray) -> dict[str, object]:
    """BERT on int [B, L] inputs with weights ``w`` keyed by original TF names.

    Returns all_layers (list of [B, L, D]), attention_probs (list of [B, N, L, L]: each
    layer's softmax weights, rows queries), sequence_output [B, L, D], pooled_output
    [B, D], mlm_logits [B, L, V] (every position) and nsp_logits [B, 2].
    """
    w = {k: np.asarray(v, np.float64) for k, v in w.items()}

    def dense(x, scope):
        return x @ w[f"{scope}/kernel"] + w[f"{scope}/bias"]

    def norm(x, scope):
        return layer_norm(x, w[f"{scope}/LayerNorm/gamma"], w[f"{scope}/LayerNorm/beta"])

    batch, length = input_ids.shape
    x = (w["bert/embeddings/word_embeddings"][input_ids]
         + w["bert/embeddings/token_type_embeddings"][segment_ids]
         + w["bert/embeddings/position_embeddings"][:length][None])  # [B, L, D]
    x = norm(x, "bert/embeddings")
    hidden = x.shape[-1]
    head_dim = hidden // num_heads
    # create_attention_mask_from_input_mask + the -10000 adder: only keys are masked.
    adder = (1.0 - input_mask[:, None, None, :].astype(np.float64)) * -10000.0  # [B, 1, 1, L]

    def heads(t):  # [B, L, N*H] -> [B, N, L, H]
        return t.reshape(batch, length, num_heads, head_dim).transpose(0, 2, 1, 3)

    all_layers, attention_probs = [], []
    i = 0
    while f"bert/encoder/layer_{i}/output/dense/kernel" in w:
        scope = f"bert/encoder/layer_{i}"
        q = heads(dense(x, f"{scope}/attention/self/query"))
        k = heads(dense(x, f"{scope}/attention/self/key"))
        v = heads(dense(x, f"{scope}/attention/self/value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(head_dim) + adder  # [B, N, L, L]
        probs = softmax(scores)  # [B, N, L, L]
        attention_probs.append(probs)
        context = probs @ v  # [B, N, L, H]
        context = context.transpose(0, 2, 1, 3).reshape(batch, length, hidden)  # [B, L, D]
        attention = norm(dense(context, f"{scope}/attention/output/dense") + x,
                         f"{scope}/attention/output")
        intermediate = gelu(dense(attention, f"{scope}/intermediate/dense"))  # [B, L, F]
        x = norm(dense(intermediate, f"{scope}/output/dense") + attention, f"{scope}/output")
        all_layers.append(x)
        i += 1
    pooled = np.tanh(dense(x[:, 0], "bert/pooler/dense"))  # [B, D]
    h = norm(gelu(dense(x, "cls/predictions/transform/dense")), "cls/predictions/transform")
    mlm_logits = (h @ w["bert/embeddings/word_embeddings"].T
                  + w["cls/predictions/output_bias"])  # [B, L, V]
    nsp_logits = (pooled @ w["cls/seq_relationship/output_weights"].T
                  + w["cls/seq_relationship/output_bias"])  # [B, 2]
    return dict(all_layers=all_layers, attention_probs=attention_probs, sequence_output=x,
                pooled_output=pooled, mlm_logits=mlm_logits, nsp_logits=nsp_logits)
