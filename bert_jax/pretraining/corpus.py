"""Pretraining corpora as documents: lists of sentences, in a fixed order.

Three sources, all returning ``list[Document]``:
  * text files in BERT's original format: one sentence per line, a blank line between
    documents (``files:`` patterns, comma-separated, globs allowed);
  * TensorFlow Datasets text sets by name (``tfds:wikipedia/20230601.en``), one example per
    document, split into sentences here;
  * ``stdlib``: the built-in offline corpus, the docstrings of the Python standard library
    that runs this code, one module per document. Every machine that runs this package has
    it, it is real (technical) English written by many authors, and it needs no network.

Held-out data: ``split_documents`` sends a stable ~``eval_fraction`` of documents (by a
hash of their name, so the split never changes with the corpus order) to evaluation.
"""

import ast
import dataclasses
import hashlib
import logging
import os
import re
import sysconfig

import tensorflow as tf

from transformer_jax import textfiles

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Document:
    name: str                # stable identifier: file:index, module name, TFDS id
    sentences: tuple[str, ...]


# --------------------------------------------------------------------------------------------
# The original format
# --------------------------------------------------------------------------------------------
def read_document_files(patterns: str) -> list[Document]:
    """Documents of every file matching the comma-separated ``patterns``, files sorted."""
    paths = expand_patterns(patterns, "corpus")
    documents = []
    for path in paths:
        documents.extend(parse_documents(textfiles.read_utf8(path, "corpus file"), path))
    return documents


def expand_patterns(patterns: str, what: str, hint: str = "") -> list[str]:
    """Comma-separated glob patterns -> files (each pattern's matches sorted); a pattern that
    matches nothing is an error, not a silently smaller dataset."""
    paths = []
    for pattern in filter(None, (p.strip() for p in patterns.split(","))):
        matched = sorted(tf.io.gfile.glob(pattern))
        if not matched:
            raise FileNotFoundError(f"{what} pattern {pattern} matches no file: check the "
                                    f"path{hint}")
        paths.extend(matched)
    if not paths:
        raise ValueError(f"no {what} files given (data.input_files is empty){hint}")
    return paths


def parse_documents(text: str, name: str) -> list[Document]:
    """One sentence per line, documents separated by blank lines (whitespace-only counts)."""
    documents, current = [], []
    for line in textfiles.split_lines(text):
        line = line.strip()
        if line:
            current.append(line)
        elif current:
            documents.append(Document(f"{name}:{len(documents)}", tuple(current)))
            current = []
    if current:
        documents.append(Document(f"{name}:{len(documents)}", tuple(current)))
    if not documents:
        raise ValueError(f"corpus file {name} is empty: it needs one sentence per line and a "
                         "blank line between documents")
    return documents


# --------------------------------------------------------------------------------------------
# Sentence splitting (for sources that give paragraphs, not lines)
# --------------------------------------------------------------------------------------------
# A sentence ends at . ! or ? (optionally closed by quotes/brackets) followed by white space
# and an upper-case letter, digit or opening quote. It mis-splits "e.g. Foo", which costs
# little for pretraining; a trained splitter (NLTK punkt) would be another dependency.
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(\s+)(?=[A-Z0-9\"'(\[])")
_MIN_SENTENCE_CHARS = 3


def split_sentences(paragraph: str) -> list[str]:
    """A paragraph (lines joined by spaces) -> sentences."""
    text = " ".join(paragraph.split())
    sentences, start = [], 0
    for end in _SENTENCE_END.finditer(text):  # cut at the white space, keep closing quotes
        sentences.append(text[start:end.start(1)])
        start = end.end(1)
    sentences.append(text[start:])
    return [s.strip() for s in sentences if len(s.strip()) >= _MIN_SENTENCE_CHARS]


def sentences_of_text(text: str) -> list[str]:
    """Prose of a docstring or article: paragraphs split on blank lines, code dropped."""
    sentences = []
    for paragraph in re.split(r"\n\s*\n", text):
        lines = [line for line in paragraph.splitlines() if line.strip()]
        if not lines or _looks_like_code(lines):
            continue
        sentences.extend(split_sentences(" ".join(lines)))
    return sentences


def _looks_like_code(lines: list[str]) -> bool:
    """Doctests, indented blocks and tables are not sentences."""
    first = lines[0].lstrip()
    if first.startswith((">>>", "...", "$ ", "|", "+-", "==", "--")):
        return True
    indented = sum(line.startswith(("    ", "\t")) for line in lines)
    return indented > len(lines) // 2


# --------------------------------------------------------------------------------------------
# TFDS
# --------------------------------------------------------------------------------------------
def tfds_documents(name: str, split: str, text_key: str = "text",
                   data_dir: str | None = None) -> list[Document]:
    """Each example of a TFDS text dataset (e.g. ``wikipedia/20230601.en``) is a document."""
    import tensorflow_datasets as tfds

    ds = tfds.load(name, split=split, data_dir=data_dir, shuffle_files=False)
    if text_key not in ds.element_spec:
        raise ValueError(f"TFDS dataset {name} has no feature {text_key!r} (it has "
                         f"{sorted(ds.element_spec)}): set data.tfds_text_key")
    documents = []
    for index, example in enumerate(ds.as_numpy_iterator()):
        sentences = sentences_of_text(example[text_key].decode("utf-8"))
        if sentences:
            documents.append(Document(f"{name}/{split}:{index}", tuple(sentences)))
    if not documents:
        raise ValueError(f"TFDS dataset {name} split {split} has no text")
    return documents


# --------------------------------------------------------------------------------------------
# The built-in offline corpus
# --------------------------------------------------------------------------------------------
# Packages of the standard library left out: tests (code, not prose), bundled third-party
# code, and tools whose docstrings are mostly UI strings.
_SKIPPED_PACKAGES = {"test", "tests", "idle_test", "idlelib", "lib2to3", "site-packages",
                     "dist-packages", "__pycache__", "turtledemo", "ensurepip"}


def stdlib_documents() -> list[Document]:
    """Docstrings of the standard library's modules (module, classes, functions, in source
    order), one module per document. Files are parsed, never imported: no side effects."""
    root = sysconfig.get_paths()["stdlib"]
    documents = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames
                             if d not in _SKIPPED_PACKAGES and not d.startswith("config-"))
        for filename in sorted(f for f in filenames if f.endswith(".py")):
            path = os.path.join(dirpath, filename)
            module = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
            sentences = _module_sentences(path)
            if len(sentences) >= 2:  # a one-sentence document gives no sentence pairs
                documents.append(Document(module, tuple(sentences)))
    if not documents:
        raise FileNotFoundError(f"no documented modules under {root}: this Python installation "
                                "ships without its standard library sources; use data.source="
                                "files")
    return documents


def _module_sentences(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return []  # e.g. files kept as syntax-error fixtures
    sentences = []
    for node in _documented_nodes(tree):
        sentences.extend(sentences_of_text(ast.get_docstring(node) or ""))
    return sentences


def _documented_nodes(node: ast.AST):
    """The module, then its classes and functions depth-first in source order."""
    yield node
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from _documented_nodes(child)


# --------------------------------------------------------------------------------------------
# Train / held-out split
# --------------------------------------------------------------------------------------------
def is_held_out(name: str, eval_fraction: float) -> bool:
    """A stable pseudo-random choice from the document's name alone."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < eval_fraction


def split_documents(documents: list[Document],
                    eval_fraction: float) -> tuple[list[Document], list[Document]]:
    """(train, eval) documents; both non-empty, else a clear error."""
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"data.eval_fraction={eval_fraction} must be in (0, 1)")
    train = [d for d in documents if not is_held_out(d.name, eval_fraction)]
    held_out = [d for d in documents if is_held_out(d.name, eval_fraction)]
    if len(train) < 2 or not held_out:
        raise ValueError(f"{len(documents)} documents are too few to hold out "
                         f"{eval_fraction:.0%} for evaluation and keep 2 for training (random "
                         "next sentences need another document): add documents")
    return train, held_out
