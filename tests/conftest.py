"""Test set-up: 8 simulated CPU devices so every test exercises sharding, and one persistent
XLA compilation cache for the whole run.

XLA_FLAGS must be set before jax is first imported, which is why this lives in conftest.
"""
import atexit
import os
import shutil
import tempfile

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow is only the input pipeline here: keep it off any accelerator.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

# The suite is compile-bound: many tests build Trainers and models of the same tiny presets,
# which lower to the same HLO, so later ones load the executable instead of compiling it again.
# Set through the environment so the subprocesses of the CLI and multi-host tests share it; a
# fresh directory per run (per xdist worker), so no stale entry outlives the code that made it.
_XLA_CACHE_DIR = tempfile.mkdtemp(prefix="xla_cache_")
atexit.register(shutil.rmtree, _XLA_CACHE_DIR, ignore_errors=True)
os.environ["JAX_COMPILATION_CACHE_DIR"] = _XLA_CACHE_DIR
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.5"

import jax  # noqa: E402  (must come after XLA_FLAGS)

assert jax.device_count() == 8, f"tests need 8 simulated devices, got {jax.device_count()}"
