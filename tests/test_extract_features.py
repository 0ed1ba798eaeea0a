"""Tests for bert_jax/extract_features.py on a tiny TF BERT checkpoint (tests/bert_fixtures.py:
vocabulary 53, hidden 32, 2 layers, 19 positions), checked against the numpy BERT."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import bert_fixtures as fx
import bert_numpy_reference as ref
from bert_jax import extract_features as ef
from bert_jax.tokenization import FullTokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HIDDEN = fx.BERT_CONFIG["hidden_size"]
LINES = ["The cat sat on the mat.", "Hello world ||| the dogs sat !", ""]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return fx.random_tf_checkpoint(str(tmp_path_factory.mktemp("ckpt") / "bert"), seed=3)


@pytest.fixture(scope="module")
def input_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("inputs") / "input.txt"
    path.write_text("".join(line + "\n" for line in LINES))
    return str(path)


def read_jsonl(path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f]


def reference_layers(weights, directory, tokens: list[str], segments: list[int]) -> list:
    """The numpy BERT's per-layer outputs [n, D] for one unpadded input."""
    tokenizer = FullTokenizer(os.path.join(directory, "vocab.txt"))
    ids = np.array([tokenizer.convert_tokens_to_ids(tokens)])
    out = ref.forward(weights, fx.BERT_CONFIG["num_attention_heads"], ids,
                      np.ones_like(ids), np.array([segments]))
    return [layer[0] for layer in out["all_layers"]]


def test_features_match_original_bert(tmp_path, checkpoint, input_file):
    directory, weights = checkpoint
    out = tmp_path / "features.jsonl"
    # batch_size 2: the second batch holds one real row and one padding row.
    n = ef.extract_features(directory, input_file, str(out), layers=[-1, -2],
                            max_seq_length=12, batch_size=2)
    assert n == 3
    records = read_jsonl(out)
    assert [r["linex_index"] for r in records] == [0, 1, 2]
    for record in records:
        assert list(record) == ["linex_index", "features"]
        for feature in record["features"]:
            assert list(feature) == ["token", "layers"]
            assert [list(layer) for layer in feature["layers"]] == [["index", "values"]] * 2
            assert [layer["index"] for layer in feature["layers"]] == [-1, -2]
            assert all(len(layer["values"]) == HIDDEN for layer in feature["layers"])
    tokens = [[f["token"] for f in r["features"]] for r in records]
    assert tokens[0] == ["[CLS]", "the", "cat", "sat", "on", "the", "mat", ".", "[SEP]"]
    assert tokens[1] == ["[CLS]", "hello", "world", "[SEP]", "the", "dog", "##s", "sat", "!",
                         "[SEP]"]
    assert tokens[2] == ["[CLS]", "[SEP]"]  # a blank line is still an input, as in the original
    segments = [[0] * 9, [0] * 4 + [1] * 6, [0, 0]]
    for record, toks, segs in zip(records, tokens, segments):
        expected = reference_layers(weights, directory, toks, segs)
        for k, layer_index in enumerate([-1, -2]):
            got = np.array([f["layers"][k]["values"] for f in record["features"]])
            np.testing.assert_allclose(got, expected[layer_index], atol=1e-4)
    value = records[0]["features"][1]["layers"][0]["values"][0]
    assert value == round(value, 6)


def test_the_original_tools_defaults_on_a_four_layer_checkpoint(tmp_path, input_file):
    """--layers=-1,-2,-3,-4 --max_seq_length=128, the defaults: the last four layers, each
    as the numpy BERT computes it (layer -4 is the first layer's output here)."""
    config = dict(fx.BERT_CONFIG, num_hidden_layers=4, max_position_embeddings=128)
    weights = fx.random_weights(config, seed=4)
    directory = fx.write_tf_checkpoint(str(tmp_path / "bert4"), weights, config)
    directory = os.path.dirname(directory)
    out = tmp_path / "features.jsonl"
    assert ef.extract_features(directory, input_file, str(out)) == 3
    record = read_jsonl(out)[1]
    tokens = [f["token"] for f in record["features"]]
    expected = reference_layers(weights, directory, tokens, [0] * 4 + [1] * 6)
    assert len(expected) == 4
    for k, layer_index in enumerate([-1, -2, -3, -4]):
        assert [f["layers"][k]["index"] for f in record["features"]] == [layer_index] * 10
        got = np.array([f["layers"][k]["values"] for f in record["features"]])  # [n, D]
        np.testing.assert_allclose(got, expected[layer_index], atol=1e-4)


def test_truncation_follows_the_original():
    a, b = list("abcdef"), list("xyz")
    ef.truncate_seq_pair(a, b, 7)
    assert (a, b) == (list("abcd"), list("xyz"))  # the longer side loses its tail first
    a, b = list("ab"), list("xy")
    ef.truncate_seq_pair(a, b, 3)
    assert (a, b) == (list("ab"), list("x"))  # on a tie, B


def test_long_inputs_are_truncated(tmp_path, checkpoint):
    directory, _ = checkpoint
    path = tmp_path / "in.txt"
    path.write_text("the cat sat on the mat . " * 3 + "\n"
                    + "the cat sat on the mat ||| hello world\n")
    out = tmp_path / "out.jsonl"
    ef.extract_features(directory, str(path), str(out), layers=[-1], max_seq_length=8)
    tokens = [[f["token"] for f in r["features"]] for r in read_jsonl(out)]
    assert tokens[0] == ["[CLS]", "the", "cat", "sat", "on", "the", "mat", "[SEP]"]
    assert tokens[1] == ["[CLS]", "the", "cat", "sat", "[SEP]", "hello", "world", "[SEP]"]


def test_bad_requests_fail_clearly(tmp_path, checkpoint, input_file):
    directory, _ = checkpoint
    out = str(tmp_path / "out.jsonl")
    with pytest.raises(FileNotFoundError, match="input file .*missing.txt does not exist"):
        ef.extract_features(directory, str(tmp_path / "missing.txt"), out)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match="input file .*empty.txt is empty: write one sentence"):
        ef.extract_features(directory, str(empty), out)
    shuffled = tmp_path / "shuffled_vocab.txt"  # the checkpoint's tokens in another order
    shuffled.write_text("\n".join(fx.VOCAB[:5] + fx.VOCAB[5:][::-1]) + "\n")
    with pytest.raises(ValueError, match="--vocab_file .*shuffled_vocab.txt differs from the "
                                         "vocab.txt of .*: omit --vocab_file"):
        ef.extract_features(directory, input_file, out, layers=[-1], max_seq_length=12,
                            vocab_file=str(shuffled))
    with pytest.raises(ValueError, match="--layers=-3: each index must lie in \\[-2, 1\\]"):
        ef.extract_features(directory, input_file, out, layers=[-3], max_seq_length=12)
    with pytest.raises(ValueError, match="--max_seq_length=128 must lie in \\[3, 19\\]"):
        ef.extract_features(directory, input_file, out, layers=[-1])


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3", XLA_FLAGS="",
               CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, "-m", "bert_jax.extract_features", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_cli(tmp_path, checkpoint, input_file):
    directory, _ = checkpoint
    out = tmp_path / "features.jsonl"
    result = _run_cli(f"--init_checkpoint={directory}", f"--input_file={input_file}",
                      f"--output_file={out}", "--max_seq_length=16", "--layers=-1,0")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith(
        f"wrote 3 JSON lines (layers -1,0) to {out}"), result.stderr[-500:]
    records = read_jsonl(out)
    assert len(records) == 3
    assert [layer["index"] for layer in records[0]["features"][0]["layers"]] == [-1, 0]
    written = out.read_text()
    result = _run_cli(f"--init_checkpoint={directory}", f"--input_file={input_file}",
                      f"--output_file={out}", "--max_seq_length=16")
    assert result.returncode == 2 and out.read_text() == written
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: output file {out} exists: pass --overwrite to replace it, or choose another "
        "--output_file")
    result = _run_cli(f"--init_checkpoint={directory}", f"--input_file={input_file}",
                      f"--output_file={out}", "--max_seq_length=16", "--layers=-1",
                      "--overwrite")
    assert result.returncode == 0, result.stderr
    assert [layer["index"] for layer in read_jsonl(out)[0]["features"][0]["layers"]] == [-1]
    result = _run_cli(f"--init_checkpoint={tmp_path / 'nowhere'}", f"--input_file={input_file}",
                      f"--output_file={tmp_path / 'other.jsonl'}", "--max_seq_length=16")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"error: checkpoint {tmp_path / 'nowhere'} does not exist")
    assert "Traceback" not in result.stderr
