"""bert_jax/visualize.py on a tiny TF BERT checkpoint (tests/bert_fixtures.py: vocabulary 53,
hidden 32, 4 heads, 2 layers, 19 positions): the drawn weights are the numpy BERT's
attention probabilities, and the figures are written, kept and replaced as documented."""
import os
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest

import bert_fixtures as fx
import bert_numpy_reference as ref
from bert_jax import extract_features as features_lib
from bert_jax import interop
from bert_jax import visualize as viz
from bert_jax.tokenization import FullTokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAIR = "The cat sat on the mat. ||| Hello unwanted world !"
TOKENS = ["[CLS]", "the", "cat", "sat", "on", "the", "mat", ".", "[SEP]",
          "hello", "un", "##want", "##ed", "world", "!", "[SEP]"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return fx.random_tf_checkpoint(str(tmp_path_factory.mktemp("ckpt") / "bert"), seed=5)


def maps_of(directory: str, text: str, max_seq_length: int = 19):
    pretrained = interop.load_pretrained(directory)
    tokenizer = FullTokenizer(os.path.join(directory, "vocab.txt"))
    return viz.attention_maps(pretrained.config, features_lib.encoder_params(pretrained),
                              tokenizer, text, max_seq_length)


def test_weights_are_original_berts_attention_probabilities(checkpoint):
    directory, weights = checkpoint
    maps, tokens = maps_of(directory, PAIR)
    assert tokens == TOKENS
    heads = fx.BERT_CONFIG["num_attention_heads"]
    assert maps.shape == (2, heads, len(TOKENS), len(TOKENS))  # [layers, N, T, T]
    ids = np.array([FullTokenizer(os.path.join(directory, "vocab.txt"))
                    .convert_tokens_to_ids(TOKENS)])
    segments = np.array([[0] * 9 + [1] * 7])  # [CLS] A [SEP] | B [SEP]
    expected = ref.forward(weights, heads, ids, np.ones_like(ids), segments)["attention_probs"]
    np.testing.assert_allclose(maps, np.stack([p[0] for p in expected]), atol=2e-5)
    np.testing.assert_allclose(maps.sum(-1), 1.0, atol=1e-5)  # each query row is a softmax
    # Far from uniform (1/16) and from symmetric: a transposed query/key axis would show.
    assert maps.max() > 0.3 and np.abs(maps - maps.swapaxes(-1, -2)).max() > 0.1


def test_long_text_is_truncated_like_extract_features(checkpoint):
    directory, _ = checkpoint
    maps, tokens = maps_of(directory, PAIR, max_seq_length=11)
    # The longer side loses its last token first (B on a tie) until 11 - 3 remain.
    assert tokens == ["[CLS]", "the", "cat", "sat", "on", "[SEP]", "hello", "un", "##want",
                      "##ed", "[SEP]"]
    assert maps.shape[-2:] == (11, 11)


def test_figures_are_written_and_replaced_only_with_overwrite(checkpoint, tmp_path):
    directory, _ = checkpoint
    out = str(tmp_path / "figures")
    paths = viz.visualize(directory, PAIR, out, max_seq_length=19)
    assert paths == [os.path.join(out, "layer_0.png"), os.path.join(out, "layer_1.png")]
    image = matplotlib.image.imread(paths[0])
    assert image.ndim == 3 and min(image.shape[:2]) > 300 and image.std() > 0.05
    before = open(paths[1], "rb").read()
    with pytest.raises(FileExistsError, match="already holds layer_0.png: pass --overwrite"):
        viz.visualize(directory, "The dog ran .", out, max_seq_length=19)
    assert open(paths[1], "rb").read() == before
    viz.visualize(directory, "The dog ran .", out, max_seq_length=19, overwrite=True)
    assert open(paths[1], "rb").read() != before
    with pytest.raises(ValueError, match="--text is empty"):
        viz.visualize(directory, "  ", str(tmp_path / "other"))
    with pytest.raises(ValueError, match=r"--max_seq_length=128 must lie in \[3, 19\]"):
        viz.visualize(directory, PAIR, str(tmp_path / "other"))
    assert not os.path.exists(tmp_path / "other")


def test_cli_writes_the_figures_and_errors_in_one_line(checkpoint, tmp_path):
    directory, _ = checkpoint
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3", XLA_FLAGS="",
               CUDA_VISIBLE_DEVICES="")

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "bert_jax.visualize", f"--init_checkpoint={directory}",
             f"--output_dir={tmp_path}", "--max_seq_length=19", *args],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)

    result = cli(f"--text={PAIR}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].endswith(
        f"wrote 2 figures (one per layer) to {tmp_path}")
    assert sorted(os.listdir(tmp_path)) == ["layer_0.png", "layer_1.png"]
    result = cli(f"--text={PAIR}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path} already holds layer_0.png: pass --overwrite to replace the "
        "figures, or choose another --output_dir")
