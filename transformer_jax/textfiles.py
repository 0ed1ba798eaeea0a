"""Reading the user's text files (corpora, parallel text, vocabularies) with one-line errors.

Shared by the translation sources, BERT's vocabulary loader and BERT's pretraining corpus,
so every reader names the file, the byte and the fix in the same way. Paths may be local or
any filesystem tf.io.gfile knows (gs://...).
"""

import tensorflow as tf


def read_utf8(path: str, what: str) -> str:
    """The whole file as text; ``what`` names it in errors ("vocab file", "corpus file")."""
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{what} {path} does not exist: check the path.")
    if tf.io.gfile.isdir(path):
        raise ValueError(f"{what} {path} is a directory: pass a file inside it.")
    with tf.io.gfile.GFile(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise ValueError(f"{what} {path} is not valid UTF-8 (bad byte at offset {error.start}, "
                         f"line {line}): re-encode it as UTF-8.") from None
    # A leading byte-order mark (added by Windows editors) is not part of the first line.
    return text.removeprefix("\ufeff")


def split_lines(text: str) -> list[str]:
    """Lines split on newlines only.

    split("\n") rather than splitlines(): splitlines also breaks on U+2028 and friends,
    which can occur inside a sentence and would misalign line-aligned files or shift the
    ids of a vocab.txt.
    """
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the final newline ends the last line, it does not start a new one
    return [line.removesuffix("\r") for line in lines]  # CRLF files
