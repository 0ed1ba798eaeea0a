"""Every config loads, builds a valid model, and parses the way the README launches it."""
import glob
import os
import re

import ml_collections
import pytest
from absl import flags
from ml_collections import config_flags

from configs import transformer_demo, transformer_wmt
from transformer_jax.model import TransformerConfig
from transformer_jax.translation import task as translation_task

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB = 101  # odd on purpose: the model config must not care


def parse_config_flag(spec: str, *overrides: str) -> ml_collections.ConfigDict:
    """What `python -m transformer_jax.main --config=<spec> <overrides>` would see."""
    argv = ["main", f"--config={spec}", *overrides]
    flag_values = flags.FlagValues()
    # Overrides are read from sys_argv (sys.argv by default), as in a real launch.
    config_flags.DEFINE_config_file("config", None, "config file", flag_values=flag_values,
                                    lock_config=True, sys_argv=argv)
    flag_values(argv)
    return flag_values.config


@pytest.mark.parametrize("size, d_model, heads, d_ff, layers, dropout", [
    ("tiny", 64, 4, 128, 2, 0.1),
    ("base", 512, 8, 2048, 6, 0.1),   # the paper's Table 3, base
    ("big", 1024, 16, 4096, 6, 0.3),  # the paper's Table 3, big (P_drop 0.3 for En-De)
])
def test_wmt_sizes_build_the_paper_models(size, d_model, heads, d_ff, layers, dropout):
    config = transformer_wmt.get_config(size)
    model = translation_task.model_config(config, vocab_size=VOCAB)
    assert isinstance(model, TransformerConfig)
    assert (model.vocab_size, model.d_model, model.num_heads, model.d_ff) == (
        VOCAB, d_model, heads, d_ff)
    assert (model.num_encoder_layers, model.num_decoder_layers) == (layers, layers)
    assert model.dropout_rate == dropout
    assert model.qkv_dim * model.num_heads == d_model
    # The paper's recipe, which the configs must not lose: shared vocab, post-LN,
    # label smoothing 0.1, Adam(0.9, 0.98, 1e-9), rsqrt warmup 4000, beam 4, alpha 0.6.
    assert model.share_embeddings and model.tie_output and not model.pre_layer_norm
    assert config.label_smoothing == 0.1
    assert (config.optimizer.b1, config.optimizer.b2, config.optimizer.eps) == (0.9, 0.98, 1e-9)
    assert (config.optimizer.schedule, config.optimizer.warmup_steps) == ("rsqrt", 4000)
    assert (config.predict.beam_size, config.predict.alpha) == (4, 0.6)
    assert config.num_train_steps == (300_000 if size == "big" else 100_000)


def test_wmt_default_size_is_base():
    assert transformer_wmt.get_config().model.d_model == 512
    assert transformer_wmt.get_config("").model.d_model == 512


def test_unknown_size_or_argument_raises_naming_it():
    with pytest.raises(ValueError, match=r"unknown size 'huge'.*tiny.*base.*big"):
        transformer_wmt.get_config("huge")
    with pytest.raises(ValueError, match=r"unknown size 'huge'"):
        transformer_wmt.get_config("size=huge")
    with pytest.raises(ValueError, match=r"unknown config argument 'sise'"):
        transformer_wmt.get_config("sise=big")


def test_demo_config_builds_a_small_model_on_the_demo_corpus():
    config = transformer_demo.get_config()
    model = translation_task.model_config(config, vocab_size=VOCAB)
    assert (model.d_model, model.num_heads, model.d_ff) == (128, 4, 256)
    assert (model.num_encoder_layers, model.num_decoder_layers) == (2, 2)
    assert config.data.source == "demo"
    assert config.predict.bleu_split == "test"
    # Sentences must fit the model's position table.
    assert model.max_len >= max(config.data.max_source_length, config.data.max_target_length,
                                config.predict.max_decode_len)


def test_every_config_file_loads():
    paths = sorted(p for p in glob.glob(os.path.join(REPO, "configs", "*.py"))
                   if os.path.basename(p) not in ("__init__.py", "common.py"))
    assert len(paths) >= 2, paths
    for path in paths:
        config = parse_config_flag(path)
        assert isinstance(config, ml_collections.ConfigDict), path
        for field in ("seed", "num_train_steps", "batch_size", "eval_batch_size", "log_every",
                      "eval_every", "checkpoint_every", "keep_checkpoints", "init_from"):
            assert field in config, f"{path} lacks config.{field}"
        assert config.batch_size > 0 and config.eval_batch_size > 0
        if "model" in config and os.path.basename(path).startswith("transformer"):
            translation_task.model_config(config, vocab_size=VOCAB)


def _readme_config_specs() -> list[str]:
    """Each `configs/X.py[:arg]` the README names; `a|b|c` alternatives are expanded."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        text = f.read()
    specs = set()
    for path, arg in re.findall(r"(configs/\w+\.py)(?::([\w=|]+))?", text):
        if not arg:
            specs.add(path)
            continue
        key, _, values = arg.rpartition("=")
        for value in values.split("|"):
            specs.add(f"{path}:{key}={value}" if key else f"{path}:{value}")
    return sorted(specs)


def test_readme_names_configs_that_exist_and_load():
    specs = _readme_config_specs()
    assert "configs/transformer_demo.py" in specs
    for spec in specs:
        path = spec.split(":")[0]
        assert os.path.isfile(os.path.join(REPO, path)), f"README names missing {path}"
        assert isinstance(parse_config_flag(os.path.join(REPO, spec)),
                          ml_collections.ConfigDict), spec


@pytest.mark.parametrize("size, d_model", [("tiny", 64), ("base", 512), ("big", 1024)])
def test_readme_launch_form_parses(size, d_model):
    """`--config=configs/transformer_wmt.py:size=big` hands get_config the string 'size=big'."""
    config = parse_config_flag(os.path.join(REPO, f"configs/transformer_wmt.py:size={size}"))
    assert config.model.d_model == d_model


def test_flag_overrides_apply_and_typos_fail():
    path = os.path.join(REPO, "configs/transformer_demo.py")
    config = parse_config_flag(path, "--config.batch_size=24", "--config.model.d_model=96",
                               "--config.sharding.preset=fsdp_tp")
    assert (config.batch_size, config.model.d_model, config.sharding.preset) == (24, 96, "fsdp_tp")
    # ml_collections raises AttributeError ('Did you mean "batch_size"...') for a typo.
    with pytest.raises((AttributeError, flags.Error), match="batch_sise"):
        parse_config_flag(path, "--config.batch_sise=24")


def test_head_dim_defaults_to_none_and_can_be_overridden():
    """head_dim is a typed placeholder: None (= d_model // heads) unless set by flag."""
    from transformer_jax.translation.task import model_config

    path = os.path.join(REPO, "configs/transformer_wmt.py:size=base")
    assert model_config(parse_config_flag(path), 100).qkv_dim == 64
    overridden = parse_config_flag(path, "--config.model.head_dim=80")
    assert model_config(overridden, 100).qkv_dim == 80
