"""Attention heatmaps and the positional-encoding matrix of a trained workdir, as PNGs.

  python -m transformer_jax.visualize --workdir=/tmp/demo --sentence="Tom chases Jerry." \
      [--target="Tom jagt Jerry."] [--output_dir=/tmp/demo/attention]

One figure per layer and attention kind (encoder self-attention, masked decoder
self-attention, encoder-decoder attention), a grid of heads in each, axes labelled with the
SentencePiece pieces. Rows are queries, columns keys. Without ``--target`` the decoder is fed
the model's own beam-search translation (teacher forcing: one pass, no sampling).
Legend: L target (query) length, S source length, N heads.
"""

import dataclasses
import logging
import math
import os
import sys
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import sentencepiece as spm
from absl import app, flags

from transformer_jax import runtime, translate
from transformer_jax.layers import sinusoidal_table
from transformer_jax.model import Transformer
from transformer_jax.translation import restore
from transformer_jax.translation.tokenizer import BOS_ID, EOS_ID, Tokenizer

log = logging.getLogger(__name__)

FLAGS = flags.FLAGS

# Where each kind's weights are sown: (stack, sub-module) in the 'intermediates' tree.
KINDS = {
    "encoder_self_attention": ("encoder", "self_attention"),
    "decoder_self_attention": ("decoder", "self_attention"),
    "encoder_decoder_attention": ("decoder", "cross_attention"),
}
TITLES = {
    "encoder_self_attention": "Encoder self-attention",
    "decoder_self_attention": "Decoder masked self-attention",
    "encoder_decoder_attention": "Encoder-decoder attention",
}


def _pyplot():
    """pyplot on the Agg backend: files only, no display and no GUI toolkit needed."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def pieces(tokenizer: Tokenizer, ids: Sequence[int]) -> list[str]:
    """Token ids -> SentencePiece pieces ('▁Tom', '</s>', ...) for axis labels."""
    # Tokenizer exposes no id -> piece lookup, so read the same serialized model directly.
    processor = spm.SentencePieceProcessor(model_proto=tokenizer.model_proto)
    return [processor.id_to_piece(int(i)) for i in ids]


def stack_layers(tree: dict, stack: str, module: str, num_layers: int) -> np.ndarray:
    """Per-layer [1, N, L, S] sown weights (of the first batch row) in the 'intermediates'
    tree -> [layers, N, L, S] float32; also read by ``bert_jax.visualize``."""
    layers = [tree[stack][f"layer_{i}"][module]["attention_weights"][0][0]
              for i in range(num_layers)]
    return np.stack([np.asarray(w, np.float32) for w in layers])


def attention_maps(model: Transformer, params: Any, tokenizer: Tokenizer, source: str,
                   target: str) -> dict:
    """Attention weights of one teacher-forced pass over (source, target).

    Returns a dict with, for each name in ``KINDS``, an array [layers, heads, L, S] (each
    row a softmax: sums to 1), plus the axis labels ``source_tokens`` (source + EOS, the
    encoder positions) and ``target_tokens`` (BOS + target, the decoder inputs).
    """
    source_ids = tokenizer.encode(source) + [EOS_ID]
    target_ids = [BOS_ID] + tokenizer.encode(target)
    if len(source_ids) > model.config.max_len:
        raise ValueError(f"sentence longer than the model's max_len {model.config.max_len}")
    if len(target_ids) > model.config.max_len:
        # A degenerate translation can re-encode to more pieces than the model emitted.
        log.warning("target cut to the model's max_len %d pieces", model.config.max_len)
        target_ids = target_ids[: model.config.max_len]
    # Only the einsum core materialises (and sows) the weights; the parameters are the same.
    model = model.clone(config=dataclasses.replace(model.config,
                                                   attention_implementation="einsum"))
    inputs = jnp.asarray([source_ids], jnp.int32)  # [1, S]
    decoder_inputs = jnp.asarray([target_ids], jnp.int32)  # [1, L]
    # Sowing is free unless 'intermediates' is mutable; no padding, so no row is masked out.
    # Jitted: one compiled pass is faster than dispatching every op on sharded params.
    forward = jax.jit(lambda p, x, y: model.apply({"params": p}, x, y,
                                                  mutable=["intermediates"])[1])
    state = forward(params, inputs, decoder_inputs)
    tree = state["intermediates"]
    cfg = model.config
    maps: dict[str, Any] = {
        kind: stack_layers(tree, stack, module,
                            cfg.num_encoder_layers if stack == "encoder"
                            else cfg.num_decoder_layers)
        for kind, (stack, module) in KINDS.items()}
    maps["source_tokens"] = pieces(tokenizer, source_ids)
    maps["target_tokens"] = pieces(tokenizer, target_ids)
    return maps


def plot_attention(path: str, weights: np.ndarray, row_labels: Sequence[str],
                   col_labels: Sequence[str], title: str) -> str:
    """Writes a grid of per-head heatmaps for weights [heads, L, S] to ``path`` (PNG)."""
    plt = _pyplot()
    num_heads, rows, cols = weights.shape
    if (rows, cols) != (len(row_labels), len(col_labels)):
        raise ValueError(f"weights are {rows}x{cols} but there are {len(row_labels)} row and "
                         f"{len(col_labels)} column labels")
    grid_cols = min(4, num_heads)
    grid_rows = math.ceil(num_heads / grid_cols)
    cell = max(2.5, 0.28 * max(rows, cols))  # inches per head: room for one label per token
    # Constrained layout keeps each head's token labels clear of its neighbours.
    fig, axes = plt.subplots(grid_rows, grid_cols, squeeze=False, layout="constrained",
                             figsize=(cell * grid_cols + 1.5, cell * grid_rows + 0.6))
    fontsize = max(4, min(9, 220 // max(rows, cols)))
    for head, ax in enumerate(axes.flat):
        if head >= num_heads:
            ax.axis("off")
            continue
        # A fixed 0..1 colour scale so heads and layers can be compared by eye.
        image = ax.imshow(weights[head], cmap="viridis", vmin=0.0, vmax=1.0)
        ax.set_title(f"head {head}", fontsize=9)
        ax.set_xticks(range(cols), col_labels, rotation=90, fontsize=fontsize)
        ax.set_yticks(range(rows), row_labels, fontsize=fontsize)
    fig.colorbar(image, ax=axes, shrink=0.6)
    fig.suptitle(title)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_positional_encoding(path: str, max_len: int = 100, d_model: int = 512) -> str:
    """Heatmap of the sinusoidal encoding PE[pos, dim]: positions down, dimensions across."""
    plt = _pyplot()
    table = sinusoidal_table(max_len, d_model)  # [P, D]
    fig, ax = plt.subplots(figsize=(10, 5))
    image = ax.pcolormesh(table, cmap="RdBu", vmin=-1.0, vmax=1.0)
    ax.invert_yaxis()  # position 0 at the top, like the lecture's figure
    ax.set_xlabel("dimension")
    ax.set_ylabel("position")
    ax.set_title(f"Sinusoidal positional encoding (d_model={d_model})")
    fig.colorbar(image, ax=ax)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_all(maps: dict, output_dir: str) -> list[str]:
    """One PNG per attention kind and layer; returns their paths."""
    os.makedirs(output_dir, exist_ok=True)
    labels = {"encoder_self_attention": ("source_tokens", "source_tokens"),
              "decoder_self_attention": ("target_tokens", "target_tokens"),
              "encoder_decoder_attention": ("target_tokens", "source_tokens")}
    written = []
    for kind, (rows, cols) in labels.items():
        for layer, weights in enumerate(maps[kind]):
            path = os.path.join(output_dir, f"{kind}_layer{layer}.png")
            title = f"{TITLES[kind]}, layer {layer} (rows: queries, columns: keys)"
            written.append(plot_attention(path, weights, maps[rows], maps[cols], title))
    return written


def visualize(workdir: str, sentence: str, output_dir: str | None = None,
              target: str | None = None, *, beam_size: int = 4,
              checkpoint_step: int | None = None) -> list[str]:
    """The whole CLI as a function: renders every figure, returns the PNG paths."""
    model, params, tokenizer, _ = restore.load_workdir(workdir, checkpoint_step)
    if target is None:
        target = translate.translate_lines(model, params, tokenizer, [sentence],
                                           beam_size=beam_size)[0]
    output_dir = output_dir or os.path.join(workdir, "visualize")
    written = plot_all(attention_maps(model, params, tokenizer, sentence, target), output_dir)
    cfg = model.config
    written.append(plot_positional_encoding(
        os.path.join(output_dir, "positional_encoding.png"), min(cfg.max_len, 100),
        cfg.d_model))
    return written


def define_flags() -> None:
    """CLI flags, defined only when run as a program (like translate's)."""
    translate.define_workdir_flags()
    flags.DEFINE_string("sentence", None, "Source sentence to visualise.")
    flags.DEFINE_string("target", None, "Target to teacher-force; default: the model's own.")
    flags.DEFINE_string("output_dir", None, "Where PNGs go; default <workdir>/visualize.")
    flags.mark_flag_as_required("sentence")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    runtime.setup_host()
    try:
        paths = visualize(FLAGS.workdir, FLAGS.sentence, FLAGS.output_dir, FLAGS.target,
                          beam_size=FLAGS.beam_size, checkpoint_step=FLAGS.checkpoint_step)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"visualize: error: {error}")
    print("\n".join(paths))


if __name__ == "__main__":
    define_flags()
    app.run(main)
