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


# Longest modules first, so the two CI workers finish together. xdist's default order for
# --dist loadfile is by test count, which put the few-test, compile-heavy modules (multihost,
# 3 tests, 341 s) last and left one worker alone for the last ~4.5 minutes of a 28-minute run.
# Seconds per module from `pytest --durations=0 -n 2 --dist loadfile` on 2 cores, one run
# at 2026-12-07 (1732 s wall, 3381 s of test time); modules not listed (each under
# 40 s) follow in collection order. Re-measure when a module grows: the order only balances
# the run, it never changes what a test checks.
_MEASURED_SLOWEST_FIRST = (
    "test_multihost",  # 430
    "test_trainer",  # 349
    "test_bert_pretraining",  # 199, before its accumulation test (+33 s on a faster machine)
    "test_trainer_main",  # 217
    "test_stacking",  # 197
    "test_finetuning_heads",  # 196
    "test_attention_implementations",  # 169
    "test_finetuning_classification",  # 162
    "test_bench",  # 159
    "test_translate_visualize",  # 151
    "test_checkpoint_safety",  # 142
    "test_topic_demo",  # 101
    "test_model",  # 96
    "test_bert_model",  # 92
    "test_memory",  # 85
    "test_finetuning_ner_swag",  # 85
    "test_finetuning_squad",  # 59
    "test_bert_pretraining_data",  # 57
    "test_encoder_output_positions",  # 56
    "test_bert_interop",  # 55
    "test_trainer_errors",  # 44
)


def pytest_configure(config):
    # Keep the order below in the xdist work queue (the option exists when xdist is loaded).
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(_MEASURED_SLOWEST_FIRST)}
    unlisted = len(rank)
    # sort() is stable: tests keep their order within a module, unlisted modules theirs.
    items.sort(key=lambda item: rank.get(item.path.stem, unlisted))
