"""Layer stacks for deep models: rematerialization policies and scan over layers.

``remat`` trades compute for memory: the backward pass recomputes a layer's activations
instead of keeping them (``full``), or keeps only the matmul outputs (``dots``, which also
keeps cuDNN's fused attention; with ``dots_no_batch`` only those without a batch dimension,
i.e. weights-like products).
``scan_layers`` runs one layer body under ``nn.scan`` with parameters stacked on a leading
``layers`` axis: XLA compiles the layer once instead of L times (compile time flat in depth).

The two parameter layouts hold the same numbers:

    unscanned   {"layer_0": T0, "layer_1": T1, ...}
    scanned     {"layers": stack(T0, T1, ...)}      every leaf gains a leading axis L

``scan_tree`` / ``unscan_tree`` convert any tree holding such stacks (params and the
optimizer state that mirrors them), so a checkpoint moves between layouts
(``python -m transformer_jax.convert_layout``).
"""
from __future__ import annotations

import re
from typing import Any, Callable

import flax.linen as nn
import jax
import numpy as np

SCANNED = "layers"  # name of the scanned stack's module (and of its logical axis)
_LAYER = re.compile(r"layer_(\d+)$")

# jax's cuDNN attention forward (output and softmax statistics, which its backward reads).
# It is a custom call, not a dot, so checkpoint_dots alone recomputes it in the backward
# pass. jax names no checkpoint for it, so the policy matches the primitive by name; if jax
# renames it the run stays correct and recomputes (test_attention_implementations lowers a
# remat=dots step for CUDA and counts the forward calls).
_CUDNN_ATTENTION_FORWARD = "dot_product_attention_fwd_wrapper"


def _cudnn_attention_forward(primitive, *_, **__) -> bool:
    return primitive.name == _CUDNN_ATTENTION_FORWARD


# None: save nothing, recompute everything in the backward pass.
REMAT_POLICIES: dict[str, Callable | None] = {
    "full": None,
    # Matmul outputs, and the fused attention that stands for two matmuls and a softmax.
    "dots": jax.checkpoint_policies.save_from_both_policies(
        jax.checkpoint_policies.checkpoint_dots, _cudnn_attention_forward),
    "dots_no_batch": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
}


def layer_class(cls: type[nn.Module], remat: str, scan: bool, length: int) -> Any:
    """``cls`` (a layer returning (carry, output)) wrapped for the chosen remat and scan."""
    if remat != "none":
        if remat not in REMAT_POLICIES:
            raise ValueError(f"remat={remat!r}; use 'none' or one of {list(REMAT_POLICIES)}")
        # Under scan the loop already stops XLA from merging recomputation away.
        cls = nn.remat(cls, policy=REMAT_POLICIES[remat], prevent_cse=not scan)
    if scan:
        cls = nn.scan(cls, variable_axes={"params": 0, "cache": 0, "intermediates": 0},
                      split_rngs={"params": True, "dropout": True}, in_axes=nn.broadcast,
                      length=length, metadata_params={nn.PARTITION_NAME: SCANNED})
    return cls


def scan_tree(tree: Any) -> Any:
    """Every dict with keys layer_0..layer_{L-1} -> {"layers": leaves stacked on axis 0}.
    Lists and tuples (an optimizer state's chain) are walked through."""
    if isinstance(tree, (list, tuple)):
        return type(tree)(scan_tree(item) for item in tree)
    if not isinstance(tree, dict):
        return tree
    tree = {key: scan_tree(value) for key, value in tree.items()}
    layers = sorted((int(m.group(1)), key) for key in tree if (m := _LAYER.match(key)))
    if not layers:
        return tree
    if [i for i, _ in layers] != list(range(len(layers))):
        raise ValueError(f"layers {[k for _, k in layers]} are not layer_0..layer_"
                         f"{len(layers) - 1}: cannot stack them")
    if SCANNED in tree:
        raise ValueError(f"both {SCANNED!r} and layer_i keys at one level: mixed layouts")
    stacked = jax.tree.map(_stack, *[tree.pop(key) for _, key in layers],
                           is_leaf=_is_abstract)
    return {**tree, SCANNED: stacked}


def _is_abstract(x) -> bool:
    return isinstance(x, jax.ShapeDtypeStruct)


def _stack(*xs):
    """Arrays -> one array with a leading layer axis; shapes (ShapeDtypeStruct) likewise."""
    if all(_is_abstract(x) for x in xs):
        return jax.ShapeDtypeStruct((len(xs),) + xs[0].shape, xs[0].dtype)
    if any(_is_abstract(x) for x in xs):
        raise ValueError("some layers of a stack have values and others only shapes")
    return np.stack([np.asarray(x) for x in xs])


def _take(x, i: int):
    if _is_abstract(x):
        return jax.ShapeDtypeStruct(x.shape[1:], x.dtype)
    return np.asarray(x)[i]


def is_scanned(tree: Any) -> bool:
    """Whether any level of ``tree`` holds a scanned stack."""
    return isinstance(tree, dict) and (SCANNED in tree or any(
        is_scanned(value) for value in tree.values()))


def unscan_tree(tree: Any) -> Any:
    """Inverse of ``scan_tree``: {"layers": stacked} -> layer_0..layer_{L-1}."""
    if isinstance(tree, (list, tuple)):
        return type(tree)(unscan_tree(item) for item in tree)
    if not isinstance(tree, dict):
        return tree
    tree = {key: unscan_tree(value) if key != SCANNED else value for key, value in tree.items()}
    if SCANNED not in tree:
        return tree
    stacked = tree.pop(SCANNED)
    length = jax.tree.leaves(stacked, is_leaf=_is_abstract)[0].shape[0]
    for i in range(length):
        tree[f"layer_{i}"] = jax.tree.map(lambda x, i=i: _take(x, i), stacked,
                                          is_leaf=_is_abstract)
    return tree
