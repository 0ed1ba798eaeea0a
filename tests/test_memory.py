"""Memory before running: the compile-only report equals what compiling the real step
reports, the CLI prints it without touching the workdir, a TPU topology without libtpu is
a clear error, and a mesh that would replicate most parameter bytes is refused."""
import os
import subprocess
import sys

import flax.linen as nn
import jax
import pytest

import trainer_helpers
from bert_jax import main as bert_main
from configs import bert_pretrain
from trainer_helpers import make_config
from transformer_jax import runtime
from transformer_jax.engine import memory
from transformer_jax.engine import sharding as sharding_lib
from transformer_jax.engine.trainer import Trainer
from transformer_jax.translation.task import TranslationTask

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
corpus = trainer_helpers.corpus  # the engine tests' tiny translation corpus (a fixture)


@pytest.mark.parametrize("preset", ["dp", "fsdp_tp"])
def test_compile_only_report_matches_the_real_compile(corpus, tmp_path, preset):
    config = make_config(corpus, preset)
    trainer = Trainer(config, str(tmp_path), TranslationTask(config, str(tmp_path)))
    # Shapes only: the model is sized by data.vocab_size (the real task by its vocab file).
    config.data.vocab_size = trainer.task.model_cfg.vocab_size
    shapes_only = memory.compile_only(config, TranslationTask.for_benchmark(config))
    # As Trainer.run does: the mesh and the logical axis rules of the preset.
    with jax.set_mesh(trainer.mesh), nn.logical_axis_rules(trainer.rules):
        state = trainer.restore_or_init()  # real, allocated params and optimizer state
        local = next(trainer.task.train_batches(config.batch_size, 0, 0, 1))
        batch = sharding_lib.global_batch(local, trainer.mesh)
        compiled = trainer.train_step_fn.lower(state, batch).compile()
    real = memory.memory_of(compiled, num_devices=8)
    assert shapes_only == real
    assert real["argument_bytes"] > 0 and real["temp_bytes"] > 0
    assert real["peak_bytes"] == (real["argument_bytes"] + real["output_bytes"]
                                  - real["alias_bytes"] + real["temp_bytes"])
    trainer.manager.close()


def _cli(*flags):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
    return subprocess.run([sys.executable, "-m", "bert_jax.main",
                           "--config=configs/bert_pretrain.py:size=tiny", *flags],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_cli_compile_only_reports_without_touching_the_workdir(tmp_path):
    workdir = tmp_path / "never_written"
    result = _cli(f"--workdir={workdir}", "--compile_only", "--config.batch_size=16",
                  "--config.sharding.preset=fsdp")
    assert result.returncode == 0, result.stderr[-3000:]
    assert ("compile-only memory report: bert_pretraining, global batch 16, mesh "
            "{'data': 1, 'fsdp': 8, 'tensor': 1} on 8 cpu device(s) here") in result.stderr
    assert "peak (arguments + outputs - reused + temporaries)" in result.stderr
    assert not workdir.exists()


def test_a_tpu_topology_without_libtpu_is_one_clear_line():
    """What bert_jax.main prints for --compile_only --topology=tpu:v4:2x2x4 (its error
    types and line; the CLI's one-line wiring is tested in test_bert_pretraining)."""
    config = bert_pretrain.get_config("size=tiny")
    with pytest.raises(bert_main.user_errors()) as raised:
        bert_main.compile_only(config, "tpu:v4:2x2x4")
    last = runtime.last_line(raised.value)
    assert last.startswith("cannot describe tpu:v4:2x2x4 here") and "libtpu" in last
    with pytest.raises(ValueError, match="use PLATFORM:TOPOLOGY"):
        memory.target_devices("v4-32")


def test_mostly_replicated_parameters_are_refused_on_a_sharded_mesh(corpus, tmp_path):
    """d_model 34 and d_ff 37: no dimension of the big matrices divides fsdp=4."""
    odd = {"model.d_model": 34, "model.num_heads": 2}
    config = make_config(corpus, "fsdp", **odd)
    with pytest.raises(ValueError, match=r"of the parameter bytes are replicated on mesh "
                                         r"\{'data': 2, 'fsdp': 4, 'tensor': 1\}.*fsdp/tensor"):
        Trainer(config, str(tmp_path / "fsdp"), TranslationTask.for_benchmark(config))
    # Pure data parallelism replicates by design; a looser limit lets the user through.
    dp = make_config(corpus, "dp", **odd)
    Trainer(dp, str(tmp_path / "dp"), TranslationTask.for_benchmark(dp)).manager.close()
    config.sharding.max_replicated_fraction = 1.0
    Trainer(config, str(tmp_path / "loose"),
            TranslationTask.for_benchmark(config)).manager.close()
