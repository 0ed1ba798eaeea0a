"""Engine defaults shared by every config: batch, cadence, checkpoints, sharding, optimizer.

Configs import only ml_collections and this module, so they load without jax or TF.
"""

import ml_collections


def engine_config() -> ml_collections.ConfigDict:
    """Fields the trainer reads. Each task config fills in model/data and overrides these."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.dropout_rng_impl = "rbg"       # rbg (fast on CPU/TPU) or threefry2x32 (portable bits)
    c.num_train_steps = 1000
    c.batch_size = 64                # global, across all hosts and devices
    c.eval_batch_size = 64           # global
    c.log_every = 100
    c.eval_every = 1000              # 0 = only at the end
    c.checkpoint_every = 1000
    c.keep_checkpoints = 5           # the paper averages the last 5 (base) or 20 (big)
    c.async_checkpoints = True
    c.init_from = ""                 # params of another run's workdir when starting fresh
    c.peak_tflops_per_device = 0.0   # for MFU in the training log; 0 = do not report

    c.sharding = ml_collections.ConfigDict()
    c.sharding.preset = "dp"         # dp | fsdp | fsdp_tp
    # Mesh axis sizes; -1 takes the remaining devices, 0 keeps the preset's default.
    c.sharding.mesh = ml_collections.ConfigDict({"data": 0, "fsdp": 0, "tensor": 0})

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
