"""Test set-up: 8 simulated CPU devices so every test exercises sharding.

XLA_FLAGS must be set before jax is first imported, which is why this lives in conftest.
"""
import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow is only the input pipeline here: keep it off any accelerator.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import jax  # noqa: E402  (must come after XLA_FLAGS)

assert jax.device_count() == 8, f"tests need 8 simulated devices, got {jax.device_count()}"
