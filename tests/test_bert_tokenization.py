"""WordPiece: the reference algorithm, Python == in-graph ids, vocab training, bad vocab files.

Expected outputs in the first tests are copied from google-research/bert tokenization_test.py.
"""
import os
import unicodedata

import pytest
import tensorflow as tf

from bert_jax.tokenization import (SPECIAL_TOKENS, BasicTokenizer, FullTokenizer,
                                   WordpieceTokenizer, load_vocab)
from bert_jax.wordpiece_vocab import train_vocab, write_vocab

# google-research/bert's test vocab; [PAD] and [MASK] appended so its ids stay unchanged.
BERT_TEST_VOCAB = ["[UNK]", "[CLS]", "[SEP]", "want", "##want", "##ed", "wa", "un", "runn",
                   "##ing", ",", "[PAD]", "[MASK]"]

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Unwanted running: the runner kept running, and running again!",
    "Le café est très bon; la crème brûlée aussi. Naïve façade, déjà vu.",
    "Straße und Größe sind deutsche Wörter.",
    "北京是中国的首都。東京は日本の首都です。",
    "Ελληνικά: ΟΔΟΣ και οδός. Кириллица и русский текст.",
    "Numbers 12,345.67 and symbols $ % ^ & * ( ) [ ] { } ~ ` | \\ / < > = + - _ @ #",
    "Running runners run; the unwanted want nothing.",
] * 3

# Tricky inputs for parity: punctuation, accents, CJK, unknown and long words, control
# characters, mixed whitespace, compatibility characters, invalid UTF-8.
PARITY_TEXTS = [
    "UNwant\u00e9d,running",
    "Hello!!! How are you?... (fine) [ok] {x} \"quoted\" 'single' a-b_c/d",
    "H\u00e9llo CAF\u00c9 na\u00efve r\u00e9sum\u00e9 \u00c5ngstr\u00f6m e\u0301t\u00e9",
    "ah\u535a\u63a8zz \u5317\u4eac\u662f\u4e2d\u56fd\u7684 \u6771\u4eac\u306f\u65e5\u672c",
    "xyzzy qwertyuiop \u2603 \U0001f600 \u0e01\u0e02\u0e03",
    "a" * 101 + " " + "b" * 100 + " " + "\u043a" * 60 + " " + "\u043a" * 101,
    "ctrl\x00a\x07b\x1bc\u200bd\u200de\ufeff\ufffd\x85f\x0bg\x0ch\u00adi",
    "tab\there\nnew\r\nline\u00a0nbsp\u3000ideo\u2028ls\u2029ps\u2003em  double",
    "Stra\u00dfe \ufb01ne \uff21\uff22\uff23 \u2460 \u2026 \u00bd \u0130stanbul",
    "\u039f\u0394\u039f\u03a3. \u03a3\u039f\u03a6\u039f\u03a3 \u03c3\u03bf\u03c6\u03cc\u03c2",
    "\u00bfQu\u00e9? \u00a1S\u00ed! \u00ab\u00bb \u2014 \u201cquotes\u201d \u3001\u3002",
    "greek question mark\u037e varia\u1fefx",  # NFD turns them into ';' and '`'
    "",
    "   \t\n  ",
    "\u0301\u0301 alone marks",
]
CASE_OPTIONS = [(True, None), (False, None), (True, False), (False, True)]


def _vocab_file(tmp_path, tokens, name="vocab.txt"):
    path = tmp_path / name
    path.write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def trained_vocab_file(tmp_path_factory):
    tokens = train_vocab(CORPUS, 400, learn_params={"lower_thresh": 2})
    return write_vocab(str(tmp_path_factory.mktemp("vocab") / "vocab.txt"), tokens)


# --- The reference algorithm, checked against google-research/bert's own tests. -------------


def test_basic_tokenizer_lower():
    tok = BasicTokenizer(do_lower_case=True)
    assert tok.tokenize(" \tHeLLo!how  \n Are yoU?  ") == ["hello", "!", "how", "are", "you", "?"]
    assert tok.tokenize("H\u00e9llo") == ["hello"]


def test_basic_tokenizer_no_lower_keeps_accents():
    tok = BasicTokenizer(do_lower_case=False)
    assert tok.tokenize(" \tHeLLo!how  \n Are yoU?  ") == ["HeLLo", "!", "how", "Are", "yoU", "?"]
    assert tok.tokenize("H\u00e9llo") == ["H\u00e9llo"]


def test_strip_accents_overrides_lower_case():
    assert BasicTokenizer(True, strip_accents=False).tokenize("H\u00e9llo") == ["h\u00e9llo"]
    assert BasicTokenizer(False, strip_accents=True).tokenize("H\u00e9llo") == ["Hello"]


def test_chinese_characters_are_split():
    assert BasicTokenizer().tokenize("ah\u535a\u63a8zz") == ["ah", "\u535a", "\u63a8", "zz"]


def test_control_characters_dropped_whitespace_splits():
    tok = BasicTokenizer(do_lower_case=False)
    # NUL, U+FFFD, BEL, zero-width space are deleted (no split); tab/NBSP/U+3000 split.
    assert tok.tokenize("a\x00b\ufffdc\x07d\u200be") == ["abcde"]
    assert tok.tokenize("a\tb\u00a0c\u3000d\ne\u2028f") == ["a", "b", "c", "d", "e", "f"]


def test_punctuation_split():
    # '$' '^' '`' are Unicode symbols, not punctuation, but BERT counts all ASCII non-alnum.
    assert BasicTokenizer().tokenize("a$b^c`d\u00bfe") == list("a$b^c`d\u00bfe")


def test_wordpiece_reference_examples():
    tok = WordpieceTokenizer(BERT_TEST_VOCAB)
    assert tok.tokenize("") == []
    assert tok.tokenize("unwanted running") == ["un", "##want", "##ed", "runn", "##ing"]
    assert tok.tokenize("unwantedX running") == ["[UNK]", "runn", "##ing"]


def test_wordpiece_greedy_longest_match_and_unk():
    tok = WordpieceTokenizer(["a", "ab", "abc", "##b", "##c", "##d", "##cd"],
                             max_input_chars_per_word=5)
    assert tok.tokenize("abcd") == ["abc", "##d"]  # greedy, though 'ab' '##cd' also fits
    assert tok.tokenize("abx") == ["[UNK]"]  # the whole word, not ['ab', '[UNK]']
    assert tok.tokenize("abcdd abcddd") == ["abc", "##d", "##d", "[UNK]"]  # 6 chars > 5


def test_full_tokenizer_reference_example(tmp_path):
    tok = FullTokenizer(_vocab_file(tmp_path, BERT_TEST_VOCAB))
    tokens = tok.tokenize("UNwant\u00e9d,running")
    assert tokens == ["un", "##want", "##ed", ",", "runn", "##ing"]
    assert tok.convert_tokens_to_ids(tokens) == [7, 4, 5, 10, 8, 9]
    assert tok.encode("UNwant\u00e9d,running") == [7, 4, 5, 10, 8, 9]
    assert tok.convert_ids_to_tokens([7, 4, 5, 10, 8, 9]) == tokens
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (11, 0, 1, 2, 12)
    assert tok.vocab_size == len(BERT_TEST_VOCAB)
    # Without lower-casing 'UNwant' and 'é' survive, so the word cannot be split.
    cased = FullTokenizer(_vocab_file(tmp_path, BERT_TEST_VOCAB), do_lower_case=False)
    assert cased.tokenize("UNwant\u00e9d,running") == ["[UNK]", ",", "runn", "##ing"]


def test_full_tokenizer_bad_ids_and_tokens(tmp_path):
    tok = FullTokenizer(_vocab_file(tmp_path, BERT_TEST_VOCAB))
    with pytest.raises(ValueError, match="'nope' is not in"):
        tok.convert_tokens_to_ids(["nope"])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.convert_ids_to_tokens([len(BERT_TEST_VOCAB)])
    with pytest.raises(ValueError, match="scalar or 1-D"):
        tok.tf_encode(tf.constant([["a"]]))


# --- Python == in-graph. ---------------------------------------------------------------------


@pytest.mark.parametrize("do_lower_case,strip_accents", CASE_OPTIONS)
def test_tf_encode_matches_python(trained_vocab_file, do_lower_case, strip_accents):
    tok = FullTokenizer(trained_vocab_file, do_lower_case, strip_accents=strip_accents)
    texts = PARITY_TEXTS + CORPUS[:8]
    expected = [tok.encode(t) for t in texts]
    assert tok.tf_encode(tf.constant(texts)).to_list() == expected
    # The tokenizer must be a real tf_text.BertTokenizer giving [batch, word, piece] ids.
    pieces = tok.tf_tokenizer().tokenize(tf.constant(texts[:1]))
    assert pieces.merge_dims(1, 2).to_list() == expected[:1]
    assert any(tok.unk_id in ids for ids in expected)  # unknown words were exercised


def test_tf_encode_in_tf_data_and_invalid_utf8(trained_vocab_file):
    tok = FullTokenizer(trained_vocab_file)
    invalid = [b"caf\xc3 ok\xff\xfe \xe2\x82x", b"\xed\xa0\x80y"]  # truncated, stray, surrogate
    raw = [t.encode("utf-8") for t in PARITY_TEXTS] + invalid
    ds = tf.data.Dataset.from_tensor_slices(tf.constant(raw)).map(tok.tf_encode)
    # Python decodes bytes with errors='ignore', like the reference.
    assert [ids.numpy().tolist() for ids in ds] == [tok.encode(b) for b in raw]


@pytest.mark.parametrize("do_lower_case", [True, False])
def test_tf_encode_matches_python_code_point_sweep(tmp_path, do_lower_case):
    # Every assigned code point of the older blocks (Latin...Arabic...Indic...punctuation
    # ...CJK symbols, kana, full-width forms), between letters and next to a capital sigma.
    cps = [c for c in [*range(0x2C00), *range(0x3000, 0x3100), *range(0xFF00, 0xFFF0)]
           if unicodedata.category(chr(c)) != "Cn"]
    chars = sorted({c for cp in cps for c in unicodedata.normalize("NFD", chr(cp).lower())}
                   | {chr(cp) for cp in cps} | set("xab\u03c3\u03c2\u03a3"))
    chars = [c for c in chars if c.strip() == c and not c.isspace()]
    vocab = list(SPECIAL_TOKENS) + chars + ["##" + c for c in chars]
    tok = FullTokenizer(write_vocab(str(tmp_path / "v.txt"), vocab), do_lower_case)
    texts = [f"xA{chr(cp)}b \u03a3{chr(cp)}" for cp in cps]
    got = tok.tf_encode(tf.constant(texts)).to_list()
    mismatched = [hex(cp) for cp, text, ids in zip(cps, texts, got) if tok.encode(text) != ids]
    assert not mismatched


# --- Vocabulary training. --------------------------------------------------------------------


def test_train_vocab_specials_first_and_no_unk_in_corpus(trained_vocab_file):
    tokens = load_vocab(trained_vocab_file)
    assert tokens[:5] == list(SPECIAL_TOKENS) and len(tokens) <= 400
    assert len(set(tokens)) == len(tokens)
    assert {"the", "running", "cafe", "\u5317"} <= set(tokens)  # learned words, CJK chars
    tok = FullTokenizer(trained_vocab_file)
    assert tok.pad_id == 0
    for sentence in CORPUS:
        assert tok.unk_id not in tok.encode(sentence), sentence
        # Every character, alone or as a continuation, is a token.
        for word in tok.basic_tokenizer.tokenize(sentence):
            assert all(c in tok.vocab and "##" + c in tok.vocab for c in word)


def test_train_vocab_respects_size_and_cased():
    tokens = train_vocab(CORPUS, 250, do_lower_case=False)
    assert len(tokens) <= 250 and tokens[:5] == list(SPECIAL_TOKENS)
    assert "T" in tokens and "\u00c9" not in tokens and "\u00e9" in tokens


def test_train_vocab_bad_input():
    with pytest.raises(ValueError, match="use vocab_size >= "):
        train_vocab(CORPUS, 50)
    with pytest.raises(ValueError, match="no words"):
        train_vocab(["", "  \x00 "], 100)
    with pytest.raises(ValueError, match=r"\[PAD\]"):
        train_vocab(CORPUS, 400, reserved=("[UNK]", "[CLS]", "[SEP]", "[MASK]"))


def test_write_vocab_atomic_and_refuses_unstorable_tokens(tmp_path):
    path = str(tmp_path / "sub" / "vocab.txt")
    write_vocab(path, list(SPECIAL_TOKENS) + ["a"])
    write_vocab(path, list(SPECIAL_TOKENS) + ["b"])  # overwrite in place
    assert load_vocab(path)[-1] == "b"
    assert os.listdir(tmp_path / "sub") == ["vocab.txt"]  # no temp file left behind
    for bad in (["a", "a"], ["a b "], ["x\ny"], [""]):
        with pytest.raises(ValueError, match="token"):
            write_vocab(path, bad)


# --- Bad vocab files. ------------------------------------------------------------------------


def test_load_vocab_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_vocab(str(tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match="is a directory: pass the vocab.txt inside it"):
        load_vocab(str(tmp_path))
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("[PAD]\n[UNK]\ncaf\u00e9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"not valid UTF-8 \(bad byte at offset 15, line 3\)"):
        load_vocab(str(bad))
    with pytest.raises(ValueError, match=r"lacks the special tokens \[CLS\] \[MASK\]: add"):
        load_vocab(_vocab_file(tmp_path, ["[PAD]", "[UNK]", "[SEP]", "a"]))
    with pytest.raises(ValueError, match="is empty"):
        load_vocab(_vocab_file(tmp_path, []))


def test_load_vocab_crlf_bom_blank_lines(tmp_path):
    path = tmp_path / "win.txt"
    path.write_bytes(("\ufeff" + "\r\n".join([*SPECIAL_TOKENS, "", "a\u2028b", "c "]) + "\r\n")
                     .encode("utf-8"))
    # A blank line still takes an id; only '\n' ends a line; surrounding spaces are stripped.
    assert load_vocab(str(path)) == [*SPECIAL_TOKENS, "", "a\u2028b", "c"]
    tok = FullTokenizer(str(path))
    assert tok.encode("c") == tok.tf_encode("c").numpy().tolist() == [7]
