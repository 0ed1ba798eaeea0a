"""Inference entry points on a really trained (tiny) workdir: translate and visualize.

One module-scoped workdir: a 1+1-layer model (d_model 32, 4 heads, d_ff 37) trained for 8
steps on a 48-pair TSV, with checkpoints at steps 2, 4, 6 and 8.
"""
import dataclasses
import os
import shutil
import struct
import subprocess
import sys

import jax
import numpy as np
import pytest
import sacrebleu

from configs import transformer_demo
from transformer_jax import translate, visualize
from transformer_jax.engine import trainer
from transformer_jax.translation import restore
from transformer_jax.translation.task import TranslationTask

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ["Tom", "Jerry", "Anna", "Max"]
VERBS = [("chases", "jagt"), ("sees", "sieht"), ("likes", "mag")]
STEPS = [2, 4, 6, 8]
SENTENCES = ["Tom chases Jerry.", "Anna sees Max.", "", "Max likes Tom.", "Jerry sees Anna.",
             "Tom likes Max.", "Anna chases Jerry.", "Max sees Tom.", "Jerry likes Anna.",
             "Tom sees Tom."]  # 10 lines: not a multiple of the batch, and one empty


def corpus(count: int = 48) -> list[tuple[str, str]]:
    rng = np.random.default_rng(0)
    pairs = []
    for _ in range(count):
        a, b = rng.choice(NAMES, 2)
        english, german = VERBS[rng.integers(len(VERBS))]
        pairs.append((f"{a} {english} {b}.", f"{a} {german} {b}."))
    return pairs


def tiny_config(tsv: str):
    c = transformer_demo.get_config()
    c.model.update(dict(d_model=32, num_heads=4, d_ff=37, num_encoder_layers=1,
                        num_decoder_layers=1, max_len=40))
    c.data.update(dict(source="files", train_tsv=tsv, eval_tsv=tsv, test_tsv=tsv,
                       vocab_size=60, max_source_length=16, max_target_length=16,
                       shuffle_buffer=64))
    c.predict.update(dict(bleu_split="", max_decode_len=16))
    c.update(dict(batch_size=8, eval_batch_size=8, num_train_steps=STEPS[-1],
                  checkpoint_every=2, keep_checkpoints=5, log_every=2, eval_every=0))
    c.optimizer.warmup_steps = 4
    return c


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("trained")
    tsv = root / "pairs.tsv"
    tsv.write_text("".join(f"{s}\t{t}\n" for s, t in corpus()))
    config, directory = tiny_config(str(tsv)), str(root / "workdir")
    trainer.train_and_evaluate(config, directory, TranslationTask(config, directory))
    return directory


@pytest.fixture(scope="module")
def loaded(workdir) -> restore.LoadedWorkdir:
    return restore.load_workdir(workdir)


def write(path, lines) -> str:
    path.write_text("".join(f"{line}\n" for line in lines))
    return str(path)


def png_size(path: str) -> tuple[int, int]:
    """(width, height) from the PNG header; fails if the file is not a PNG."""
    with open(path, "rb") as f:
        header = f.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


# ------------------------------------------------------------------------------ load_workdir


def test_load_workdir_rebuilds_model_from_metadata(workdir, loaded):
    model, params, tokenizer, metadata = loaded
    assert metadata["step"] == STEPS[-1]
    assert model.config.d_model == 32 and model.config.num_encoder_layers == 1
    assert model.config.vocab_size == tokenizer.vocab_size
    embedding = params["shared_embedding"]["embedding"]
    assert embedding.shape == (tokenizer.vocab_size, 32)
    assert embedding.sharding.mesh.shape["data"] == jax.device_count()


def test_a_run_trained_with_cudnn_attention_loads_here_with_the_default_core(workdir,
                                                                             tmp_path):
    """The attention kernel is a run setting: a workdir whose metadata says cudnn (trained
    on a GPU) loads on this CPU with the einsum core and the same weights."""
    copy = str(tmp_path / "gpu_run")
    shutil.copytree(workdir, copy)
    edited = 0
    for root, _, files in os.walk(copy):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                text = f.read()
            if b'"attention_implementation": "einsum"' in text:
                with open(path, "wb") as f:
                    f.write(text.replace(b'"attention_implementation": "einsum"',
                                         b'"attention_implementation": "cudnn"'))
                edited += 1
    assert edited == len(STEPS)  # the metadata JSON of every checkpoint
    model, params, _, metadata = restore.load_workdir(copy)
    assert metadata["model"]["attention_implementation"] == "cudnn"
    assert model.config.attention_implementation == "einsum"
    assert metadata["step"] == STEPS[-1]


def test_average_last_two_is_the_mean_of_the_last_two_checkpoints(workdir, loaded):
    averaged = restore.load_workdir(workdir, average_last=2).params
    previous = restore.load_workdir(workdir, step=STEPS[-2]).params
    expected = jax.tree_util.tree_map(lambda a, b: (np.asarray(a) + np.asarray(b)) / 2,
                                      loaded.params, previous)
    jax.tree_util.tree_map(
        lambda got, want: np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6),
        averaged, expected)
    # Training moved the params, so the average really differs from the last checkpoint.
    assert not np.allclose(averaged["shared_embedding"]["embedding"],
                           loaded.params["shared_embedding"]["embedding"])


def test_select_steps_ends_at_the_requested_step():
    assert restore.select_steps(STEPS, None, 3, "w") == [4, 6, 8]
    assert restore.select_steps(STEPS, 6, 2, "w") == [4, 6]


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(average_last=5), ValueError, "has only 4"),
    (dict(step=6, average_last=4), ValueError, "has only 3"),
    (dict(step=3), ValueError, "no checkpoint at step 3"),
    (dict(average_last=0), ValueError, "average_last must be >= 1"),
])
def test_impossible_requests_fail_with_one_line(workdir, kwargs, error, message):
    with pytest.raises(error, match=message) as info:
        restore.load_workdir(workdir, **kwargs)
    assert "\n" not in str(info.value)


def test_missing_workdir_and_checkpoints_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        restore.load_workdir(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="no checkpoints/ folder"):
        restore.load_workdir(str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(FileNotFoundError, match="no checkpoint found"):
        restore.load_workdir(str(tmp_path))


# --------------------------------------------------------------------------------- translate


def test_translate_writes_one_deterministic_line_per_input(workdir, loaded, tmp_path):
    model, params, tokenizer, _ = loaded
    direct = translate.translate_lines(model, params, tokenizer, SENTENCES, batch_size=8)
    assert len(direct) == len(SENTENCES) and all("\n" not in line for line in direct)
    output = tmp_path / "out.txt"
    translate.translate(workdir, write(tmp_path / "in.txt", SENTENCES), str(output),
                        batch_size=8)
    # A second run (new compile, batch of 8 over 8 devices, 2 batches) gives the same text.
    assert output.read_text().split("\n")[:-1] == direct
    assert translate.translate_lines(model, params, tokenizer, []) == []


def test_reference_bleu_is_sacrebleu_of_the_output(workdir, tmp_path):
    references = [t for _, t in corpus(len(SENTENCES))]
    output = tmp_path / "out.txt"
    score = translate.translate(workdir, write(tmp_path / "in.txt", SENTENCES), str(output),
                                write(tmp_path / "ref.txt", references), average_last=2,
                                beam_size=2, batch_size=16)
    hypotheses = output.read_text().split("\n")[:-1]
    assert len(hypotheses) == len(SENTENCES)
    assert score == pytest.approx(sacrebleu.corpus_bleu(hypotheses, [references]).score)


def test_bleu_against_a_reference_file(tmp_path):
    hypotheses = ["Tom jagt Jerry.", "Anna sieht Max .", "Max mag"]
    references = ["Tom jagt Jerry.", "Anna sieht Max.", "Max mag Tom."]
    score = translate.bleu(hypotheses, write(tmp_path / "ref.txt", references))
    assert 0 < score < 100
    assert score == pytest.approx(sacrebleu.corpus_bleu(hypotheses, [references]).score)
    with pytest.raises(ValueError, match="has 2 lines but there are 3 input lines"):
        translate.bleu(hypotheses, write(tmp_path / "short.txt", references[:2]))


def test_missing_input_or_reference_file_fails_before_loading(tmp_path):
    # The workdir does not exist either: the file check must come first.
    with pytest.raises(FileNotFoundError, match="input file .*missing.txt does not exist"):
        translate.translate(str(tmp_path / "nowhere"), str(tmp_path / "missing.txt"))
    inputs = write(tmp_path / "in.txt", SENTENCES)
    with pytest.raises(FileNotFoundError, match="reference file .*ref.txt does not exist"):
        translate.translate(str(tmp_path / "nowhere"), inputs, None, str(tmp_path / "ref.txt"))


def _run_cli(module: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3",
               XLA_FLAGS="", CUDA_VISIBLE_DEVICES="")  # one CPU device is enough
    return subprocess.run([sys.executable, "-m", module, *args], input=stdin, cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120)


def test_cli_reads_stdin_and_writes_stdout(workdir):
    result = _run_cli("transformer_jax.translate", f"--workdir={workdir}", "--batch_size=4",
                      "--average_last=2", stdin="Tom chases Jerry.\n\nAnna sees Max.\n")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.split("\n")) == 4  # three lines, each newline-terminated
    assert result.stdout.endswith("\n")


def test_cli_error_is_one_line(tmp_path):
    result = _run_cli("transformer_jax.translate", f"--workdir={tmp_path / 'nowhere'}")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"translate: error: workdir {tmp_path / 'nowhere'} does not exist")
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------------- visualize


def test_attention_maps_are_row_stochastic_and_causal(loaded):
    model, params, tokenizer, _ = loaded
    maps = visualize.attention_maps(model, params, tokenizer, "Tom chases Jerry.",
                                    "Tom jagt Jerry.")
    source, target = maps["source_tokens"], maps["target_tokens"]
    assert source[-1] == "</s>" and target[0] == "<s>"
    assert len(source) == len(tokenizer.encode("Tom chases Jerry.")) + 1
    assert len(target) == len(tokenizer.encode("Tom jagt Jerry.")) + 1
    expected = {"encoder_self_attention": (1, 4, len(source), len(source)),
                "decoder_self_attention": (1, 4, len(target), len(target)),
                "encoder_decoder_attention": (1, 4, len(target), len(source))}
    for kind, shape in expected.items():
        assert maps[kind].shape == shape, kind
        np.testing.assert_allclose(maps[kind].sum(-1), 1.0, rtol=1e-5, err_msg=kind)
    decoder = maps["decoder_self_attention"]
    assert np.all(np.triu(decoder, k=1) == 0)  # no query sees a later position
    np.testing.assert_allclose(decoder[:, :, 0, 0], 1.0)  # BOS can only see itself


def test_attention_maps_of_a_fused_attention_model_are_the_einsum_cores(loaded):
    """A model configured for the xla core (which keeps no weights) is drawn with the einsum
    core on the same params: the same maps."""
    model, params, tokenizer, _ = loaded
    fused = model.clone(config=dataclasses.replace(model.config,
                                                   attention_implementation="xla"))
    pair = ("Tom chases Jerry.", "Tom jagt Jerry.")
    maps = visualize.attention_maps(fused, params, tokenizer, *pair)
    reference = visualize.attention_maps(model, params, tokenizer, *pair)
    for kind in visualize.KINDS:
        np.testing.assert_array_equal(maps[kind], reference[kind])


def test_visualize_writes_readable_pngs(workdir, tmp_path):
    paths = visualize.visualize(workdir, "Tom chases Jerry.", str(tmp_path / "png"),
                                beam_size=2)  # target: the model's own translation
    names = sorted(os.path.basename(p) for p in paths)
    assert names == ["decoder_self_attention_layer0.png", "encoder_decoder_attention_layer0.png",
                     "encoder_self_attention_layer0.png", "positional_encoding.png"]
    for path in paths:
        width, height = png_size(path)
        assert width >= 300 and height >= 200, path
        assert os.path.getsize(path) > 5_000, path


def test_positional_encoding_and_label_checks(tmp_path):
    path = visualize.plot_positional_encoding(str(tmp_path / "pe.png"), max_len=50, d_model=64)
    assert png_size(path)[0] >= 400 and os.path.getsize(path) > 5_000
    with pytest.raises(ValueError, match="2x3 but there are 2 row and 2 column labels"):
        visualize.plot_attention(str(tmp_path / "a.png"), np.zeros((1, 2, 3)), ["a", "b"],
                                 ["a", "b"], "title")
