"""The one-line errors of ``bert_jax.main``: a bad corpus, vocab, masking or schedule fails
with one line naming the problem and the fix, and before the workdir is written."""
import os
import re
import subprocess
import sys

import pytest

import run_helpers
from bert_data_helpers import write_corpus
from bert_jax import main as bert_main
from configs import bert_pretrain
from transformer_jax import runtime

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(str(tmp_path_factory.mktemp("corpus") / "docs.txt"))


def bad_inputs(tmp_path, corpus) -> dict:
    (tmp_path / "empty.txt").write_text("\n \n")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 ok .\n".encode("latin-1"))
    (tmp_path / "vocab.txt").write_text("the\ncat\n")
    return dict(empty=tmp_path / "empty.txt", latin1=tmp_path / "latin1.txt",
                missing=tmp_path / "nope*.txt", corpus=corpus, vocab=tmp_path / "vocab.txt")


BAD_INPUTS = {
    "empty": ({"data.input_files": "{empty}"}, "is empty"),
    "latin1": ({"data.input_files": "{latin1}"}, "is not valid UTF-8"),
    "missing": ({"data.input_files": "{missing}"}, "matches no file"),
    "no_specials": ({"data.input_files": "{corpus}", "data.vocab_file": "{vocab}"},
                    r"lacks the special tokens \[PAD\]"),
    # Checked before the corpus is read and a vocab learnt from it (minutes on a big one):
    # the missing corpus would be the error otherwise.
    "masking": ({"data.input_files": "{missing}", "data.max_predictions_per_seq": 3},
                "raise it to >= 19"),
    "positions": ({"data.input_files": "{missing}", "data.max_seq_length": 600,
                   "data.max_predictions_per_seq": 90},
                  "data.max_seq_length=600 exceeds model.max_position_embeddings=512: lower it"),
    "schedule": ({"data.input_files": "{missing}", "num_train_steps": 60},
                 r"decay end 60 must exceed warmup_steps=300; raise optimizer.decay_steps"),
    "accumulation": ({"data.input_files": "{missing}", "optimizer.grad_accum_steps": 0},
                     r"optimizer.grad_accum_steps=0 must be >= 1 \(1 = no accumulation\)"),
    "batch": ({"data.input_files": "{missing}", "batch_size": 12},
              r"config.batch_size=12 must be divisible by the 8 batch shards"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_line(corpus, tmp_path, case):
    """What bert_jax.main prints for each (its error types and line; the CLI is below)."""
    paths = bad_inputs(tmp_path, corpus)
    overrides, message = BAD_INPUTS[case]
    config = bert_pretrain.get_config("size=tiny")
    run_helpers.override(config, {"data.source": "files", "data.eval_input_files": corpus,
                                  **{key: value.format(**paths) if isinstance(value, str)
                                     else value for key, value in overrides.items()}})
    with pytest.raises(bert_main.user_errors()) as raised:
        bert_main.train_once(config, str(tmp_path / "work"))
    assert re.search(message, runtime.last_line(raised.value)), raised.value
    assert not (tmp_path / "work").exists()  # nothing written: a rerun starts clean


def test_main_bad_input_is_one_line_without_a_traceback(corpus, tmp_path):
    paths = bad_inputs(tmp_path, corpus)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
    result = subprocess.run(
        [sys.executable, "-m", "bert_jax.main",
         f"--config={REPO}/configs/bert_pretrain.py:size=tiny", f"--workdir={tmp_path / 'w'}",
         "--config.data.source=files", f"--config.data.eval_input_files={corpus}",
         f"--config.data.input_files={paths['latin1']}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    assert "is not valid UTF-8" in last, last
