"""Translation input pipeline: sentencepiece vocab, raw sources, tokenize/pack/pad, batching.

Sizes: batch 3, source length 7, target length 5 (odd and distinct, like tests/tiny.py).
"""
import io
import sys
import types

import numpy as np
import pytest
import sentencepiece as spm
import tensorflow as tf
import tensorflow_datasets as tfds

from transformer_jax import translation
from transformer_jax.translation import pipeline, sources
from transformer_jax.translation.tokenizer import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    Tokenizer,
    load_or_train_tokenizer,
    train_sentencepiece,
)

BATCH, SOURCE_LENGTH, TARGET_LENGTH = 3, 7, 5
BATCH_KEYS = {
    "inputs", "inputs_segment_ids", "inputs_positions",
    "decoder_inputs", "targets", "targets_segment_ids", "targets_positions",
}  # fmt: skip
ENGLISH = ["the", "cat", "dog", "sees", "a", "big", "small", "house"]
GERMAN = ["die", "katze", "hund", "sieht", "ein", "großes", "kleines", "haus", "über", "grüße"]


def make_pairs(count: int, seed: int = 0) -> list[tuple[str, str]]:
    """Word-salad pairs of 1-5 words per side, so some exceed the max lengths."""
    rng = np.random.default_rng(seed)
    return [
        (
            " ".join(rng.choice(ENGLISH, rng.integers(1, 6))),
            " ".join(rng.choice(GERMAN, rng.integers(1, 6))),
        )
        for _ in range(count)
    ]


def pairs_dataset(pairs) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(
        {"source": [s for s, _ in pairs], "target": [t for _, t in pairs]}
    )


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> Tokenizer:
    corpus = [side for pair in make_pairs(300, seed=1) for side in pair]
    path = tmp_path_factory.mktemp("vocab") / "nested" / "spm.model"
    return Tokenizer.from_file(train_sentencepiece(corpus, str(path), vocab_size=64))


# ----------------------------------------------------------------------------- tokenizer


def test_train_sentencepiece_writes_model_atomically(tokenizer, tmp_path):
    path = tmp_path / "spm.model"
    returned = train_sentencepiece(["hallo welt", "hello world"] * 50, str(path), vocab_size=30)
    assert returned == str(path)
    assert [p.name for p in tmp_path.iterdir()] == ["spm.model"]  # no temp file left behind
    assert 5 <= Tokenizer.from_file(str(path)).vocab_size <= 30  # small corpus: fewer pieces
    # 18 words + 19 characters + "▁" + 4 specials: fewer than the 64 asked for.
    assert tokenizer.vocab_size == 43


def test_special_ids_and_roundtrip(tokenizer):
    pieces = [tokenizer._processor.id_to_piece(i) for i in (PAD_ID, EOS_ID, BOS_ID, UNK_ID)]
    assert pieces == ["<pad>", "</s>", "<s>", "<unk>"]
    for text in ["die katze sieht über grüße", "a big house"]:
        ids = tokenizer.encode(text)
        assert len(ids) == len(text.split())  # each corpus word became one piece
        assert EOS_ID not in ids and all(i > UNK_ID for i in ids)
        assert tokenizer.decode(ids) == text
    # Words the vocabulary splits into several pieces (and characters) join back exactly.
    for text in ["katzehund sieht hausdie", "grüßekatze über"]:
        ids = tokenizer.encode(text)
        assert len(ids) > len(text.split())
        assert tokenizer.decode(ids) == text


def test_decode_stops_at_eos_and_drops_pad_and_bos(tokenizer):
    ids = tokenizer.encode("the small dog")
    noisy = [BOS_ID, *ids, EOS_ID, *tokenizer.encode("haus"), PAD_ID]
    assert tokenizer.decode(noisy) == "the small dog"
    assert tokenizer.decode([BOS_ID, PAD_ID, *ids]) == "the small dog"
    batch = np.array([[*ids, EOS_ID, 0], [BOS_ID, *tokenizer.encode("ein"), 0, 0, 0]])
    assert tokenizer.decode_batch(batch) == ["the small dog", "ein"]
    # Ids beyond the real vocab (a padded output layer) read as <unk> instead of crashing.
    assert tokenizer.decode([tokenizer.vocab_size + 5]) == tokenizer.decode([UNK_ID])


def test_python_and_in_graph_encoding_agree(tokenizer):
    texts = ["die katze sieht über grüße", "Grüße aus München, Äpfel!", "the cat", ""]
    in_graph = tokenizer.tf_tokenizer.tokenize(tf.constant(texts)).to_list()
    assert in_graph == [tokenizer.encode(text) for text in texts]
    assert in_graph[-1] == []


def test_load_or_train_trains_once_then_loads(tmp_path):
    path = str(tmp_path / "workdir" / "spm.model")
    calls = []

    def sentences():
        calls.append(1)
        return ["hello world", "hallo welt"] * 20

    first = load_or_train_tokenizer(path, sentences, vocab_size=25)
    second = load_or_train_tokenizer(path, lambda: pytest.fail("must not retrain"), 25)
    assert len(calls) == 1
    assert first.model_proto == second.model_proto


def test_tokenizer_errors(tmp_path):
    missing = str(tmp_path / "nope.model")
    with pytest.raises(FileNotFoundError, match="nope.model does not exist"):
        Tokenizer.from_file(missing)
    with pytest.raises(ValueError, match="vocab_size=3 is too small"):
        train_sentencepiece(["a b"], str(tmp_path / "x.model"), vocab_size=3)
    # A model with sentencepiece's default ids (unk=0) would turn padding into <unk>.
    default_ids = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(["hello world"] * 20), model_writer=default_ids,
        vocab_size=20, hard_vocab_limit=False, minloglevel=2,
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"\(pad, eos, bos, unk\) ids \(-1, 2, 1, 0\)"):
        Tokenizer(default_ids.getvalue())


# ----------------------------------------------------------------------------- sources


def write(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def test_parallel_text_and_tsv_pairs(tmp_path):
    # CRLF endings are stripped; U+2028 inside a sentence must not split the line.
    source = write(tmp_path / "a.en", "one\r\ntwo\u2028half\nthree\n".encode())
    target = write(tmp_path / "a.de", "eins\nzwei\ndrei über".encode())
    expected = [("one", "eins"), ("two\u2028half", "zwei"), ("three", "drei über")]
    assert pipeline.raw_eval_pairs(sources.parallel_text_pairs(source, target)) == expected
    tsv = write(tmp_path / "a.tsv", "one\teins\n\tleer\nthree\tdrei über\n".encode())
    expected_tsv = [("one", "eins"), ("", "leer"), ("three", "drei über")]
    assert pipeline.raw_eval_pairs(sources.tsv_pairs(tsv)) == expected_tsv


def test_local_file_errors(tmp_path):
    good = write(tmp_path / "good.txt", b"a\nb\nc\n")
    short = write(tmp_path / "short.txt", b"a\nb\n")
    with pytest.raises(FileNotFoundError, match="missing.txt does not exist"):
        sources.parallel_text_pairs(str(tmp_path / "missing.txt"), good)
    with pytest.raises(ValueError, match="empty.txt is empty"):
        sources.tsv_pairs(write(tmp_path / "empty.txt", b"\n"))
    with pytest.raises(ValueError, match=r"misaligned parallel files: .*good.txt has 3 lines, "
                                         r".*short.txt has 2 lines"):  # fmt: skip
        sources.parallel_text_pairs(good, short)
    with pytest.raises(ValueError, match="bad.tsv line 2 has 0 tabs"):
        sources.tsv_pairs(write(tmp_path / "bad.tsv", b"a\tb\nno tab\n"))
    with pytest.raises(ValueError, match="line 1 has 2 tabs"):
        sources.tsv_pairs(write(tmp_path / "two.tsv", b"a\tb\tc\n"))
    with pytest.raises(ValueError, match=r"latin1.txt is not valid UTF-8 \(bad byte at offset 6"):
        sources.tsv_pairs(write(tmp_path / "latin1.txt", "a\tb\nGr\xfc\xdfe".encode("latin-1")))


@pytest.mark.parametrize("source_lang, target_lang", [("en", "de"), ("de", "en")])
def test_tfds_pairs_maps_language_keys(tmp_path, source_lang, target_lang):
    name = "wmt14_translate/de-en"
    with tfds.testing.mock_data(num_examples=4, policy=tfds.testing.MockPolicy.USE_CODE):
        raw = list(tfds.as_numpy(tfds.load(name, split="validation", data_dir=str(tmp_path))))
        pairs = pipeline.raw_eval_pairs(
            sources.tfds_pairs(name, "validation", source_lang, target_lang, str(tmp_path))
        )
    expected = [(r[source_lang].decode(), r[target_lang].decode()) for r in raw]
    assert pairs == expected and len(pairs) == 4
    assert raw[0]["en"] != raw[0]["de"]  # so a swapped mapping would fail


def test_tfds_pairs_unknown_language(tmp_path):
    with pytest.raises(ValueError, match=r"language 'fr' is not a feature .*\['de', 'en'\]"):
        sources.tfds_pairs("wmt14_translate/de-en", "train", "en", "fr", str(tmp_path))


def test_demo_pairs(monkeypatch):
    corpus = {"train": [("a cat", "eine katze")], "validation": [("a dog", "ein hund")]}
    stand_in = types.SimpleNamespace(generate=lambda seed=0: corpus)
    # Replace both the module and the package attribute, whether or not the real one exists.
    monkeypatch.setitem(sys.modules, "transformer_jax.translation.demo_corpus", stand_in)
    monkeypatch.setattr(translation, "demo_corpus", stand_in, raising=False)
    assert pipeline.raw_eval_pairs(sources.demo_pairs("validation")) == [("a dog", "ein hund")]
    with pytest.raises(ValueError, match=r"unknown demo split 'dev': choose from \['train'"):
        sources.demo_pairs("dev")


# ----------------------------------------------------------------------------- pipeline


def tokenized(pairs, tokenizer, long_examples="drop"):
    ds = pipeline.tokenize_pairs(
        pairs_dataset(pairs), tokenizer, SOURCE_LENGTH, TARGET_LENGTH, long_examples
    )
    return list(ds.as_numpy_iterator())


def test_tokenize_shifts_targets_right(tokenizer):
    (example,) = tokenized([("the big cat", "die katze")], tokenizer)
    source_ids, target_ids = tokenizer.encode("the big cat"), tokenizer.encode("die katze")
    assert example["inputs"].tolist() == source_ids + [EOS_ID]
    assert example["targets"].tolist() == target_ids + [EOS_ID]
    assert example["decoder_inputs"].tolist() == [BOS_ID] + target_ids
    assert all(value.dtype == np.int32 for value in example.values())


def test_long_examples_dropped_or_truncated(tokenizer):
    pairs = make_pairs(40)
    lengths = [(len(tokenizer.encode(s)) + 1, len(tokenizer.encode(t)) + 1) for s, t in pairs]
    fitting = [l_s <= SOURCE_LENGTH and l_t <= TARGET_LENGTH for l_s, l_t in lengths]
    assert 0 < sum(fitting) < len(pairs)  # the data exercises both cases
    dropped = tokenized(pairs, tokenizer, "drop")
    assert len(dropped) == sum(fitting)
    truncated = tokenized(pairs, tokenizer, "truncate")
    assert len(truncated) == len(pairs)
    for example, (l_s, l_t) in zip(truncated, lengths):
        assert len(example["inputs"]) == min(l_s, SOURCE_LENGTH)
        assert len(example["targets"]) == len(example["decoder_inputs"]) == min(l_t, TARGET_LENGTH)
        assert example["inputs"][-1] == example["targets"][-1] == EOS_ID
    with pytest.raises(ValueError, match="long_examples='cut': use 'drop' or 'truncate'"):
        tokenized(pairs, tokenizer, "cut")


def unpack_row(row, side):
    """Splits one packed row into its examples' token lists, checking positions on the way."""
    segment_ids, positions = row[f"{side}_segment_ids"], row[f"{side}_positions"]
    examples = []
    for segment in range(1, segment_ids.max() + 1):
        (where,) = np.nonzero(segment_ids == segment)
        assert where.tolist() == list(range(where[0], where[0] + len(where)))  # contiguous
        assert positions[where].tolist() == list(range(len(where)))  # restart at 0
        examples.append(row[side][where].tolist())
    padding = segment_ids == 0
    assert not row[side][padding].any() and not positions[padding].any()
    assert (~padding)[: (~padding).sum()].all()  # examples first, padding only at the end
    return examples


def test_packing_keeps_whole_examples(tokenizer):
    pairs = make_pairs(40)
    examples = tokenized(pairs, tokenizer)
    tokenized_ds = pipeline.tokenize_pairs(
        pairs_dataset(pairs), tokenizer, SOURCE_LENGTH, TARGET_LENGTH
    )
    # chunk_size 7 < 31 examples, so packing crosses chunk boundaries.
    packed_ds = pipeline.pack_examples(tokenized_ds, SOURCE_LENGTH, TARGET_LENGTH, chunk_size=7)
    rows = list(packed_ds.as_numpy_iterator())
    assert len(rows) < len(examples)  # several examples share rows
    assert max(row["inputs_segment_ids"].max() for row in rows) >= 2
    unpacked = {key: [] for key in ("inputs", "targets", "decoder_inputs")}
    for row in rows:
        assert row["inputs"].shape == (SOURCE_LENGTH,) and row["targets"].shape == (TARGET_LENGTH,)
        assert row["inputs_segment_ids"].max() == row["targets_segment_ids"].max()
        unpacked["inputs"] += unpack_row(row, "inputs")
        unpacked["targets"] += unpack_row(row, "targets")
        # decoder_inputs share the targets' segments; each segment starts with BOS.
        row_decoder = dict(row, decoder_inputs_segment_ids=row["targets_segment_ids"])
        row_decoder["decoder_inputs_positions"] = row["targets_positions"]
        unpacked["decoder_inputs"] += unpack_row(row_decoder, "decoder_inputs")
    for key, values in unpacked.items():
        assert values == [example[key].tolist() for example in examples], key
    assert all(ids[0] == BOS_ID for ids in unpacked["decoder_inputs"])


def test_packing_rejects_examples_longer_than_a_row(tokenizer):
    too_long = pipeline.tokenize_pairs(
        pairs_dataset([("the big big cat sees a dog", "die")]), tokenizer, 99, 99
    )
    packed = pipeline.pack_examples(too_long, SOURCE_LENGTH, TARGET_LENGTH)
    with pytest.raises(tf.errors.InvalidArgumentError, match="inputs longer than max"):
        list(packed.as_numpy_iterator())


def assert_batches_equal(left, right):
    assert len(left) == len(right)
    for a, b in zip(left, right):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("pack", [True, False])
def test_train_batches_deterministic_and_resumable(tokenizer, pack):
    ds = pairs_dataset(make_pairs(20))

    def batches(shuffle_seed, start_batch=0, count=6):
        iterator = pipeline.train_batches(
            ds, tokenizer, batch_size_per_host=BATCH, max_source_length=SOURCE_LENGTH,
            max_target_length=TARGET_LENGTH, pack=pack, shuffle_seed=shuffle_seed,
            shuffle_buffer=64, start_batch=start_batch,
        )  # fmt: skip
        return [next(iterator) for _ in range(count)]

    first = batches(shuffle_seed=7)
    assert set(first[0]) == BATCH_KEYS
    assert first[0]["inputs"].shape == (BATCH, SOURCE_LENGTH)
    assert first[0]["targets"].shape == (BATCH, TARGET_LENGTH)
    assert all(value.dtype == np.int32 for value in first[0].values())
    assert_batches_equal(first, batches(shuffle_seed=7))
    assert_batches_equal(batches(shuffle_seed=7, start_batch=2, count=4), first[2:])
    other_seed = batches(shuffle_seed=8)
    assert any((a["inputs"] != b["inputs"]).any() for a, b in zip(first, other_seed))
    if not pack:
        assert (first[0]["inputs_segment_ids"].max(axis=1) == 1).all()


def test_train_batches_read_only_this_hosts_shard(tokenizer):
    pairs = [(f"{word} cat", "die") for word in ENGLISH[:6]]  # distinct first source token
    first_tokens = set()
    for host in range(2):
        iterator = pipeline.train_batches(
            pairs_dataset(pairs), tokenizer, batch_size_per_host=BATCH,
            max_source_length=SOURCE_LENGTH, max_target_length=TARGET_LENGTH,
            pack=False, shuffle_seed=0, process_index=host, process_count=2,
        )  # fmt: skip
        batches = [next(iterator) for _ in range(4)]
        seen = {int(b["inputs"][i, 0]) for b in batches for i in range(BATCH)}
        expected = {tokenizer.encode(pairs[i][0])[0] for i in range(host, len(pairs), 2)}
        assert seen == expected
        first_tokens |= seen
    assert len(first_tokens) == len(pairs)


def test_eval_batches_equal_counts_across_hosts_with_zero_rows(tokenizer):
    pairs = make_pairs(10)  # 3 hosts hold 4, 3 and 3 pairs -> 2 batches of 3 each
    ds = pairs_dataset(pairs)
    all_references = []
    for host in range(3):
        batches = pipeline.eval_batches(
            ds, tokenizer, batch_size_per_host=BATCH, max_source_length=SOURCE_LENGTH,
            max_target_length=TARGET_LENGTH, process_index=host, process_count=3,
        )  # fmt: skip
        references = pipeline.raw_eval_pairs(ds, host, 3)
        assert len(batches) == 2 and len(references) == (4, 3, 3)[host]
        rows = {key: np.concatenate([b[key] for b in batches]) for key in BATCH_KEYS}
        assert rows["inputs"].shape == (6, SOURCE_LENGTH)
        expected = tokenized(references, tokenizer, "truncate")  # every pair kept
        for i, example in enumerate(expected):
            length = len(example["inputs"])
            assert rows["inputs"][i, :length].tolist() == example["inputs"].tolist()
            assert rows["inputs_segment_ids"][i].tolist() == [1] * length + [0] * (7 - length)
            assert rows["inputs_positions"][i, :length].tolist() == list(range(length))
            target_length = len(example["targets"])
            assert rows["targets"][i, :target_length].tolist() == example["targets"].tolist()
        for key in BATCH_KEYS:  # padding rows are zero everywhere, so their weight is zero
            assert not rows[key][len(references):].any(), key
        all_references += references
    assert sorted(all_references) == sorted(pairs)  # hosts' shards: disjoint and complete


def test_eval_batches_reject_empty_or_infinite(tokenizer):
    kwargs = dict(batch_size_per_host=BATCH, max_source_length=7, max_target_length=5)
    empty = pairs_dataset(make_pairs(2)).take(0)
    with pytest.raises(ValueError, match="empty dataset"):
        pipeline.eval_batches(empty, tokenizer, **kwargs)
    with pytest.raises(ValueError, match="infinite"):
        pipeline.eval_batches(pairs_dataset(make_pairs(2)).repeat(), tokenizer, **kwargs)


def test_train_batches_fail_fast_when_no_pair_fits(tokenizer):
    """All pairs longer than the limits: a clear error instead of an endless wait."""
    long_pairs = [(" ".join(["der Hund"] * 6), " ".join(["the dog"] * 6))] * 3
    with pytest.raises(ValueError, match="no training pair fits max_source_length=3"):
        pipeline.train_batches(pairs_dataset(long_pairs), tokenizer, batch_size_per_host=3,
                               max_source_length=3, max_target_length=3, shuffle_seed=0)
