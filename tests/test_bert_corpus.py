"""BERT pretraining data: corpora (``bert_jax.pretraining.corpus``): reading documents from
text files, splitting sentences, the standard library's docstrings, a TFDS dataset (mocked,
offline) and the held-out split.

Sizes: a few documents per file; the standard library gives >= 100 documents of > 5000
sentences; the held-out split is checked on 2000 documents; the mocked Wikipedia has 3
articles.
"""
import random
import re

import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from bert_data_helpers import within

from bert_jax.pretraining import corpus
from bert_jax.pretraining.corpus import Document


def test_parse_documents_blank_lines_separate_documents():
    text = ("\n\nFirst sentence.\n  Second one.  \n\n\n"
            "Other document.\r\n \t \r\n"
            "Windows line one.\r\nWindows line two.\r\n\r\n"
            "Last one, no final newline.")
    documents = corpus.parse_documents(text, "f.txt")
    assert documents == [
        Document("f.txt:0", ("First sentence.", "Second one.")),
        Document("f.txt:1", ("Other document.",)),
        Document("f.txt:2", ("Windows line one.", "Windows line two.")),
        Document("f.txt:3", ("Last one, no final newline.",)),
    ]
    for empty in ("", "\n\n", " \t\r\n  \n"):
        with pytest.raises(ValueError, match="empty"):
            corpus.parse_documents(empty, "e.txt")


def test_read_document_files_globs_and_comma_separated_patterns(tmp_path):
    (tmp_path / "a2.txt").write_text("Two a.\nTwo b.\n\nTwo c.\n", encoding="utf-8")
    (tmp_path / "a1.txt").write_text("One a.\n", encoding="utf-8")
    (tmp_path / "b.txt").write_bytes(b"\xef\xbb\xbfB with BOM.\r\nB two.\r\n")
    documents = corpus.read_document_files(f"{tmp_path}/a*.txt, {tmp_path}/b.txt,")
    assert documents == [
        Document(f"{tmp_path}/a1.txt:0", ("One a.",)),
        Document(f"{tmp_path}/a2.txt:0", ("Two a.", "Two b.")),
        Document(f"{tmp_path}/a2.txt:1", ("Two c.",)),
        Document(f"{tmp_path}/b.txt:0", ("B with BOM.", "B two.")),
    ]
    missing = f"{tmp_path}/nothing*.txt"
    with pytest.raises(FileNotFoundError, match=re.escape(f"{missing} matches no file")):
        corpus.read_document_files(f"{tmp_path}/a1.txt,{missing}")
    with pytest.raises(ValueError, match="empty"):
        corpus.read_document_files(" , ")
    (tmp_path / "empty.txt").write_text("\n \n", encoding="utf-8")
    with pytest.raises(ValueError, match="empty.txt is empty"):
        corpus.read_document_files(f"{tmp_path}/empty.txt")
    (tmp_path / "latin1.txt").write_bytes("Caf\u00e9 ok.\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.txt is not valid UTF-8 \(bad byte at offset 3"):
        corpus.read_document_files(f"{tmp_path}/latin1.txt")


def test_split_sentences_documented_rules():
    split = corpus.split_sentences
    assert split("Hello world. This is BERT! Is it? yes it is.") == [
        "Hello world.", "This is BERT!", "Is it? yes it is."]  # lower case: no new sentence
    # Paragraph lines are joined; digits and opening quotes/brackets start sentences.
    assert split("Version 3.11 is out.\n  2 more follow! 'Quoted' words. (Aside) ends.") == [
        "Version 3.11 is out.", "2 more follow!", "'Quoted' words.", "(Aside) ends."]
    # Abbreviations: mis-split before a capital (documented), kept before lower case.
    assert split("See e.g. Foo for details. Use i.e. this one.") == [
        "See e.g.", "Foo for details.", "Use i.e. this one."]
    assert split("Dr. Smith arrived.") == ["Dr.", "Smith arrived."]
    assert split('He stopped. "Why?" she asked.') == ["He stopped.", '"Why?" she asked.']
    # Fragments shorter than 3 characters are dropped.
    assert split("A. B. Real sentence.") == ["Real sentence."]
    assert split("Wait... What? No!") == ["Wait...", "What?", "No!"]


def test_split_sentences_keeps_closing_quotes_and_brackets():
    """A sentence ends at . ! or ? "optionally closed by quotes/brackets": the closing
    characters belong to the sentence they close and must not vanish from the text."""
    assert corpus.split_sentences('He said "Stop." Then he left.') == [
        'He said "Stop."', "Then he left."]
    assert corpus.split_sentences("(This is an aside.) Next one. [Citation.] Done.") == [
        "(This is an aside.)", "Next one.", "[Citation.]", "Done."]


def test_sentences_of_text_drops_code():
    text = "\n".join([  # as ast.get_docstring gives it: common indentation removed
        "Summary line of a docstring.",
        "It continues here. Second sentence.",
        "",
        ">>> print('doctest')",
        "doctest",
        "   ",
        "    indented_code = 1",
        "    more_code = 2",
        "",
        "+-----+-----+",
        "| tab | le  |",
        "",
        "Back to prose! Final words.",
    ])
    assert corpus.sentences_of_text(text) == [
        "Summary line of a docstring.", "It continues here.", "Second sentence.",
        "Back to prose!", "Final words."]
    # A paragraph with mostly prose lines and one indented line stays prose.
    assert corpus.sentences_of_text("Prose here.\nMore prose.\n    one indent.") == [
        "Prose here.", "More prose. one indent."]
    assert corpus.sentences_of_text("") == []


@pytest.fixture(scope="module")
def stdlib():
    return corpus.stdlib_documents()


def test_stdlib_documents(stdlib):
    assert len(stdlib) >= 100
    assert all(len(d.sentences) >= 2 for d in stdlib)
    names = [d.name for d in stdlib]
    assert len(set(names)) == len(names) and "textwrap" in names and "json.decoder" in names
    assert not [n for n in names if {"test", "tests", "idlelib", "lib2to3"} & set(n.split("."))]
    sentences = [s for d in stdlib for s in d.sentences]
    assert len(sentences) > 5000
    assert all(len(s) >= 3 and "\n" not in s and s == s.strip() for s in sentences)
    assert not [s for s in sentences if s.startswith(">>>")]
    assert stdlib[names.index("textwrap")].sentences[0] == "Text wrapping and filling."
    assert corpus.stdlib_documents() == stdlib  # parsed in a fixed order


def test_split_documents_is_stable_and_holds_out_the_fraction():
    documents = [Document(f"doc{i}", ("One sentence.", "Two.")) for i in range(2000)]
    train, held_out = corpus.split_documents(documents, 0.1)
    assert within(len(held_out), 2000, 0.1, sigmas=5) and len(train) + len(held_out) == 2000
    assert {d.name for d in train}.isdisjoint(d.name for d in held_out)
    shuffled = documents[:]
    random.Random(0).shuffle(shuffled)
    train2, held_out2 = corpus.split_documents(shuffled, 0.1)
    assert {d.name for d in held_out2} == {d.name for d in held_out}
    assert train2 == [d for d in shuffled if d in train]  # order kept
    # The name alone decides, not the text.
    renamed = [Document(d.name, ("Other text.", "More.")) for d in documents]
    assert [d.name for d in corpus.split_documents(renamed, 0.1)[1]] == [
        d.name for d in held_out]
    assert len(corpus.split_documents(documents, 0.5)[1]) > len(held_out) * 3
    for fraction in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="eval_fraction"):
            corpus.split_documents(documents, fraction)
    with pytest.raises(ValueError, match="too few"):
        corpus.split_documents(documents[:1], 0.5)
    none_held = [d for d in documents if not corpus.is_held_out(d.name, 0.1)][:5]
    with pytest.raises(ValueError, match="too few"):
        corpus.split_documents(none_held, 0.1)


# The Wikipedia builder's code ships with tensorflow_datasets, so mock_data works offline:
# tfds.load finds the builder class and its features ('title', 'text') without the network
# and without prepared data, and our as_dataset replaces the reading of the (absent) files.
TFDS_NAME = "wikipedia/20230601.en"


def mock_articles(texts):
    def as_dataset(self, *args, **kwargs):
        return tf.data.Dataset.from_tensor_slices(
            {"title": [f"Title {i}" for i in range(len(texts))], "text": texts})
    return tfds.testing.mock_data(as_dataset_fn=as_dataset)


def test_tfds_documents_with_mock_data(tmp_path):
    texts = ["First article. It has two sentences.\n\n>>> code()\n\nA last one!",
             "    only = 'indented code'\n    nothing = 'else'",
             "Third article, in one sentence."]
    with mock_articles(texts):
        documents = corpus.tfds_documents(TFDS_NAME, "train", data_dir=str(tmp_path))
        with pytest.raises(ValueError, match=r"no feature 'body' \(it has \['text', 'title'\]"):
            corpus.tfds_documents(TFDS_NAME, "train", text_key="body", data_dir=str(tmp_path))
    assert documents == [
        Document(f"{TFDS_NAME}/train:0", ("First article.", "It has two sentences.",
                                          "A last one!")),
        Document(f"{TFDS_NAME}/train:2", ("Third article, in one sentence.",)),
    ]
    with mock_articles(["    code = 1\n    more = 2", ""]):
        with pytest.raises(ValueError, match="has no text"):
            corpus.tfds_documents(TFDS_NAME, "train", data_dir=str(tmp_path))
