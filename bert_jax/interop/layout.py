"""Where each BERT weight lives: our param tree, Google's TF checkpoint, Hugging Face.

Legend: V vocabulary, D hidden size, N heads, H head dim (N*H = D), F intermediate size,
P max positions, T type (segment) vocabulary.

The original TF names are the hub of the conversion: every reader turns its file into
``{tf_name: array in the original layout}`` and ``tf_to_tree`` builds our tree from that, so
each layout difference is written down once. Our layout differs from the original in:
  * Q/K/V kernels [D, N*H] -> [D, N, H] and biases [N*H] -> [N, H] (heads kept apart so
    they can be sharded); the output kernel [N*H, D] -> [N, H, D]. Plain reshapes: the
    original splits the N*H columns head-major (column n*H + h), as row-major reshape does.
  * the NSP classifier: original ``output_weights`` [2, D] is used as x @ W^T; ours [D, 2].
Hugging Face stores torch ``Linear`` weights as [out, in], the transpose of a TF kernel.
"""

import dataclasses
import functools
from typing import Any, Iterable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bert_jax.heads import BertForPreTraining
from bert_jax.model import BertConfig

Tree = dict[str, Any]

# bert_config.json (TF) and config.json (HF) share these keys: file key -> BertConfig field.
CONFIG_KEYS: dict[str, str] = {
    "vocab_size": "vocab_size",
    "hidden_size": "hidden_size",
    "num_hidden_layers": "num_layers",
    "num_attention_heads": "num_heads",
    "intermediate_size": "intermediate_size",
    "hidden_dropout_prob": "hidden_dropout",
    "attention_probs_dropout_prob": "attention_dropout",
    "max_position_embeddings": "max_position_embeddings",
    "type_vocab_size": "type_vocab_size",
    "initializer_range": "initializer_range",
    "layer_norm_eps": "layer_norm_eps",  # HF only: TF's BERT hard-codes 1e-12, our default
}
# Without these the weights' shapes are unknown; the rest default to BertConfig's values.
REQUIRED_CONFIG_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers",
                        "num_attention_heads", "intermediate_size")
# Both BERT's "gelu" and HF's "gelu" are the exact erf form our encoder computes.
SUPPORTED_ACTIVATIONS = ("gelu",)

# Groups load whole or not at all: a BertModel file has no heads (and sometimes no pooler).
ENCODER, POOLER, MLM, NSP = "encoder", "pooler", "mlm", "nsp"
OPTIONAL_GROUPS = (POOLER, MLM, NSP)


def config_from_json(values: Mapping[str, Any], where: str) -> BertConfig:
    """bert_config.json / config.json contents -> BertConfig; ``where`` names the file."""
    missing = [k for k in REQUIRED_CONFIG_KEYS if k not in values]
    if missing:
        raise ValueError(f"{where} lacks the keys {missing}; it is not a BERT config")
    if values.get("model_type", "bert") != "bert":
        raise ValueError(f"{where} describes a '{values['model_type']}' model; only BERT "
                         "checkpoints are supported")
    act = values.get("hidden_act", "gelu")
    if act not in SUPPORTED_ACTIVATIONS:
        raise ValueError(f"{where} has hidden_act={act!r}; only {list(SUPPORTED_ACTIVATIONS)} "
                         "(exact erf GELU, as in the released BERT checkpoints) is supported")
    position_type = values.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise ValueError(f"{where} has position_embedding_type={position_type!r}; only "
                         "'absolute' (learned position embeddings) is supported")
    return BertConfig.from_dict({field: values[key] for key, field in CONFIG_KEYS.items()
                                 if key in values})


def config_to_json(config: BertConfig) -> dict[str, Any]:
    """BertConfig -> the shared bert_config.json / config.json keys (with hidden_act)."""
    values = {key: getattr(config, field) for key, field in CONFIG_KEYS.items()}
    return {**values, "hidden_act": "gelu"}


@dataclasses.dataclass(frozen=True)
class Weight:
    """One tensor: its original TF name, its path in our tree and its group."""

    tf_name: str
    path: tuple[str, ...]
    group: str
    transpose: bool = False  # original is the transpose of ours (else: same data, reshaped)

    @property
    def path_str(self) -> str:
        return "/".join(self.path)


def _dense(tf_scope: str, path: tuple[str, ...], group: str) -> list[Weight]:
    return [Weight(f"{tf_scope}/kernel", (*path, "kernel"), group),
            Weight(f"{tf_scope}/bias", (*path, "bias"), group)]


def _layer_norm(tf_scope: str, path: tuple[str, ...], group: str) -> list[Weight]:
    return [Weight(f"{tf_scope}/LayerNorm/gamma", (*path, "scale"), group),
            Weight(f"{tf_scope}/LayerNorm/beta", (*path, "bias"), group)]


@functools.lru_cache(maxsize=None)
def weights(num_layers: int) -> tuple[Weight, ...]:
    """Every weight of BertForPreTraining with ``num_layers`` encoder layers."""
    out = [
        Weight("bert/embeddings/word_embeddings", ("bert", "token_embed", "embedding"), ENCODER),
        Weight("bert/embeddings/token_type_embeddings", ("bert", "segment_embed", "embedding"),
               ENCODER),
        Weight("bert/embeddings/position_embeddings", ("bert", "position_embedding"), ENCODER),
        *_layer_norm("bert/embeddings", ("bert", "embed_layer_norm"), ENCODER),
    ]
    for i in range(num_layers):
        tf_layer, ours = f"bert/encoder/layer_{i}", ("bert", "encoder", f"layer_{i}")
        attention = (*ours, "self_attention")
        for proj in ("query", "key", "value"):
            # [D, N*H] -> [D, N, H] and [N*H] -> [N, H]: reshapes.
            out += [Weight(f"{tf_layer}/attention/self/{proj}/kernel",
                           (*attention, f"{proj}_kernel"), ENCODER),
                    Weight(f"{tf_layer}/attention/self/{proj}/bias",
                           (*attention, f"{proj}_bias"), ENCODER)]
        out += [  # [N*H, D] -> [N, H, D]: a reshape
            Weight(f"{tf_layer}/attention/output/dense/kernel", (*attention, "out_kernel"),
                   ENCODER),
            Weight(f"{tf_layer}/attention/output/dense/bias", (*attention, "out_bias"), ENCODER),
            *_layer_norm(f"{tf_layer}/attention/output", (*ours, "attention_block", "layer_norm"),
                         ENCODER),
            *_dense(f"{tf_layer}/intermediate/dense", (*ours, "ffn", "wi"), ENCODER),
            *_dense(f"{tf_layer}/output/dense", (*ours, "ffn", "wo"), ENCODER),
            *_layer_norm(f"{tf_layer}/output", (*ours, "ffn_block", "layer_norm"), ENCODER),
        ]
    out += [
        *_dense("bert/pooler/dense", ("bert", "pooler"), POOLER),
        *_dense("cls/predictions/transform/dense", ("mlm", "transform"), MLM),
        *_layer_norm("cls/predictions/transform", ("mlm", "layer_norm"), MLM),
        Weight("cls/predictions/output_bias", ("mlm", "output_bias"), MLM),
        # Original: logits = pooled @ output_weights^T with output_weights [2, D]; ours [D, 2].
        Weight("cls/seq_relationship/output_weights", ("nsp", "classifier", "kernel"), NSP,
               transpose=True),
        Weight("cls/seq_relationship/output_bias", ("nsp", "classifier", "bias"), NSP),
    ]
    return tuple(out)


@functools.lru_cache(maxsize=None)
def model_shapes(config: BertConfig) -> dict[tuple[str, ...], tuple[int, ...]]:
    """Path -> shape of every BertForPreTraining param (abstract init: nothing allocated)."""
    ids = jnp.zeros((1, 2), jnp.int32)
    boxed = jax.eval_shape(lambda: BertForPreTraining(config).init(
        jax.random.key(0), ids, ids, ids, None))["params"]
    return {path: tuple(leaf.shape) for path, leaf in flatten(nn.unbox(boxed)).items()}


def original_shape(weight: Weight, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Our shape -> the original TF shape of the same weight."""
    if weight.transpose:
        return shape[::-1]
    if weight.path[-1] in ("query_kernel", "key_kernel", "value_kernel",
                           "query_bias", "key_bias", "value_bias"):
        return (*shape[:-2], shape[-2] * shape[-1])  # [..., N, H] -> [..., N*H]
    if weight.path[-1] == "out_kernel":
        return (shape[0] * shape[1], shape[2])  # [N, H, D] -> [N*H, D]
    return shape


def _describe(config: BertConfig) -> str:
    return (f"vocab_size={config.vocab_size}, hidden_size={config.hidden_size}, "
            f"num_heads={config.num_heads}, intermediate_size={config.intermediate_size}, "
            f"max_position_embeddings={config.max_position_embeddings}, "
            f"type_vocab_size={config.type_vocab_size}")


def tf_to_tree(named: Mapping[str, np.ndarray], config: BertConfig,
               where: str) -> tuple[Tree, list[str]]:
    """{original TF name: array} -> (our nested float32 tree, groups absent from the source).

    The encoder must be complete; the pooler and each head load whole or not at all.
    ``where`` names the source in errors.
    """
    table = weights(config.num_layers)
    shapes = model_shapes(config)
    absent = []
    for group in (ENCODER, *OPTIONAL_GROUPS):
        names = [w.tf_name for w in table if w.group == group]
        lacking = [n for n in names if n not in named]
        if lacking and (group == ENCODER or len(lacking) < len(names)):
            raise ValueError(f"{where} lacks {len(lacking)} {group} weights, e.g. {lacking[0]}; "
                             f"is its config right (num_layers={config.num_layers})?")
        if lacking:
            absent.append(group)
    tree: Tree = {}
    for weight in table:
        if weight.group in absent:
            continue
        value = np.asarray(named[weight.tf_name])
        ours = shapes[weight.path]
        expected = original_shape(weight, ours)
        if value.shape != expected:
            raise ValueError(f"{where}: {weight.tf_name} has shape {value.shape} but the config "
                             f"({_describe(config)}) implies {expected}")
        value = value.T if weight.transpose else value.reshape(ours)
        set_path(tree, weight.path, np.ascontiguousarray(value, dtype=np.float32))
    return tree, absent


def tree_to_tf(tree: Tree, config: BertConfig) -> dict[str, np.ndarray]:
    """Our tree (any subset of groups, encoder required) -> {original TF name: float32 array}."""
    out = {}
    for weight in weights(config.num_layers):
        value = get_path(tree, weight.path)
        if value is None:
            if weight.group == ENCODER:
                raise ValueError(f"params lack {weight.path_str}; pass a BertForPreTraining "
                                 f"tree (with 'bert') of the config's {config.num_layers} layers")
            continue
        value = np.asarray(value, dtype=np.float32)
        value = value.T if weight.transpose else value.reshape(original_shape(weight, value.shape))
        out[weight.tf_name] = np.ascontiguousarray(value)
    return out


def hf_name(tf_name: str) -> tuple[str, bool]:
    """Original TF name -> (Hugging Face BertForPreTraining name, transposed?)."""
    special = {  # where HF did not follow the TF scope names
        "cls/predictions/output_bias": "cls.predictions.bias",
        "cls/seq_relationship/output_weights": "cls.seq_relationship.weight",  # [2, D] both
        "cls/seq_relationship/output_bias": "cls.seq_relationship.bias",
    }
    if tf_name in special:
        return special[tf_name], False
    scope, leaf = tf_name.rsplit("/", 1)
    name = scope.replace("/layer_", "/layer/").replace("/", ".")
    if leaf.endswith("_embeddings"):  # bert/embeddings/word_embeddings: a variable, no scope
        return f"{tf_name.replace('/', '.')}.weight", False
    # torch Linear.weight is [out, in], the transpose of a TF kernel [in, out].
    return {"kernel": (f"{name}.weight", True), "bias": (f"{name}.bias", False),
            "gamma": (f"{name}.weight", False), "beta": (f"{name}.bias", False)}[leaf]


def get_path(tree: Mapping, path: Iterable[str]) -> Any:
    """The value at ``path`` in a nested mapping, or None."""
    node: Any = tree
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def set_path(tree: Tree, path: tuple[str, ...], value: Any) -> None:
    node = tree
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value


def flatten(tree: Mapping, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Nested mapping -> {path: leaf}; a leaf is anything that is not a mapping."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, (*prefix, key)))
        else:
            out[(*prefix, key)] = value
    return out
