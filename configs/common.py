"""Engine defaults shared by every config: batch, cadence, checkpoints, sharding, optimizer.

Configs import only ml_collections and this module, so they load without jax or TF.
"""

import ml_collections
from ml_collections import config_dict


def engine_config() -> ml_collections.ConfigDict:
    """Fields the trainer reads. Each task config fills in model/data and overrides these."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    # Any jax.random impl: derives each dropout call's key; the mask bits hash that key
    # (transformer_jax/dropout.py).
    c.dropout_rng_impl = "threefry4x32"
    c.num_train_steps = 1000
    c.batch_size = 64                # global, across all hosts and devices
    c.eval_batch_size = 64           # global
    c.log_every = 100
    c.eval_every = 1000              # 0 = only at the end
    c.checkpoint_every = 1000
    c.keep_checkpoints = 5           # the paper averages the last 5 (base) or 20 (big)
    c.async_checkpoints = True
    c.init_from = ""                 # params of another run's workdir when starting fresh
    c.best_metric = ""               # e.g. "eval/accuracy": keep the best params in <workdir>/best
    c.best_mode = "max"              # max | min
    # For MFU in the training log; 0 = the chip's datasheet bf16 peak where
    # transformer_jax/device_peaks.py knows it (bf16 runs on GPU/TPU), else no MFU.
    c.peak_tflops_per_device = 0.0

    c.sharding = ml_collections.ConfigDict()
    c.sharding.preset = "dp"         # dp | fsdp | fsdp_tp
    # Mesh axis sizes; -1 takes the remaining devices, 0 keeps the preset's default.
    c.sharding.mesh = ml_collections.ConfigDict({"data": 0, "fsdp": 0, "tensor": 0})
    # Start-up check: with fsdp or tensor > 1, at most this fraction of the parameter bytes
    # may be replicated on every device (more means axis names or mesh sizes are wrong).
    c.sharding.max_replicated_fraction = 0.5

    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.name = "adam"
    c.optimizer.schedule = "rsqrt"
    c.optimizer.learning_rate = 1.0  # rsqrt: multiplier of d_model^-0.5 * min(...)
    c.optimizer.warmup_steps = 4000
    c.optimizer.decay_steps = 0
    c.optimizer.b1 = 0.9
    c.optimizer.b2 = 0.98
    c.optimizer.eps = 1e-9
    c.optimizer.weight_decay = 0.0
    c.optimizer.clip_grad_norm = 0.0
    c.optimizer.grad_accum_steps = 1
    return c


def parse_arg(arg: str | None, **defaults: str) -> dict[str, str]:
    """Parses the variant string after the colon, e.g. ``size=base,seq=128``.

    Keys must be among ``defaults``; a bare value (``:base``) sets the first key.
    """
    values = dict(defaults)
    for item in filter(None, (arg or "").split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            key, value = next(iter(defaults)), key
        if key not in defaults:
            raise ValueError(f"unknown config argument {key!r}; valid: {sorted(defaults)}")
        values[key] = value
    return values


# The Transformer sizes of the paper (Table 3): base and big; tiny for smoke tests.
SIZES = {
    "tiny": dict(d_model=64, num_heads=4, d_ff=128, num_encoder_layers=2, num_decoder_layers=2,
                 dropout_rate=0.1),
    "base": dict(d_model=512, num_heads=8, d_ff=2048, num_encoder_layers=6,
                 num_decoder_layers=6, dropout_rate=0.1),
    "big": dict(d_model=1024, num_heads=16, d_ff=4096, num_encoder_layers=6,
                num_decoder_layers=6, dropout_rate=0.3),
}


def model_config(size: str) -> ml_collections.ConfigDict:
    """TransformerConfig fields for one of ``SIZES``."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {list(SIZES)}")
    m = ml_collections.ConfigDict(dict(
        # head_dim: None = d_model // num_heads; a typed placeholder so --config can set it.
        d_model=512, num_heads=8, head_dim=config_dict.placeholder(int), d_ff=2048,
        num_encoder_layers=6, num_decoder_layers=6, dropout_rate=0.1,
        attention_dropout_rate=0.0, max_len=512,
        attention_implementation="einsum",  # xla | cudnn (transformer_jax/attention.py)
        share_embeddings=True, tie_output=True, pre_layer_norm=False, activation="relu",
        attention_bias=False, layer_norm_epsilon=1e-6, dtype="float32",
        param_dtype="float32",
        remat="none",              # none | full | dots | dots_no_batch: memory for compute
        scan_layers=False))        # nn.scan over layers (compile once; other param layout)
    m.update(SIZES[size])
    return m


def translation_config(size: str) -> ml_collections.ConfigDict:
    """Everything a translation run reads, with the paper's recipe."""
    c = engine_config()
    c.model = model_config(size)
    c.label_smoothing = 0.1
    c.data = ml_collections.ConfigDict(dict(
        source="tfds", tfds_name="wmt14_translate/de-en", source_lang="en", target_lang="de",
        data_dir="", train_split="train", eval_split="validation", test_split="test",
        train_source="", train_target="", train_tsv="", eval_source="", eval_target="",
        eval_tsv="", test_source="", test_target="", test_tsv="",
        vocab_path="", vocab_size=32000, max_source_length=256, max_target_length=256,
        pack=True, shuffle_buffer=65536))
    c.predict = ml_collections.ConfigDict(dict(
        beam_size=4, alpha=0.6, extra_length=50, max_decode_len=256, bleu_split="eval",
        num_bleu_examples=0))
    # ~128 packed rows x 256 tokens: about the paper's 25k source + 25k target tokens.
    c.batch_size = 128
    c.num_train_steps = 100_000 if size != "big" else 300_000
    c.checkpoint_every = 2000
    c.eval_every = 5000
    c.keep_checkpoints = 20
    return c
