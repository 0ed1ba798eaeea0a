r"""BERT's WordPiece tokenization, in Python and inside tf.data, giving identical ids.

`BasicTokenizer` and `WordpieceTokenizer` are a hand-written copy of the reference algorithm
of google-research/bert `tokenization.py` (plus Hugging Face's `strip_accents` switch). They
are the specification and the parity oracle; nothing else here re-implements tokenization.
`FullTokenizer.tf_tokenizer()` builds the in-graph version from `tensorflow_text.BertTokenizer`
with its WordPiece kernel, but replaces tf_text's text normalisation, which differs from the
reference in several corners (see `_ReferenceBasicTokenizerTF`):

  1. tf_text lower-cases with `case_fold_utf8` (NFKC_Casefold: 'ß'->'ss', 'ﬁ'->'fi',
     full-width 'Ａ'->'a'); the reference uses Python's `str.lower()`. We use
     `tf.strings.lower(encoding='utf-8')` (ICU full lower-casing, like `str.lower`).
  2. tf_text turns control/format characters (Cc, Cf) into spaces, so 'ab\u200bcd' gives two
     words; the reference deletes them (one word 'abcd') and also deletes U+FFFD.
  3. tf_text splits words on RE2's ASCII-only `\s`, so U+00A0 / U+3000 (Zs) and U+2028/U+2029
     do not separate words; the reference splits on them. We map them to ' ' first.
  4. tf_text ties accent stripping to lower-casing; we honour `strip_accents` either way.
  5. tf_text's `max_bytes_per_word` counts UTF-8 bytes, the reference counts characters, so a
     60-letter Cyrillic word would be [UNK] in-graph only. We allow 4 bytes per character and
     replace words longer than `max_input_chars_per_word` characters by [UNK] ourselves.
  6. Invalid UTF-8: the reference decodes bytes with errors='ignore'; in-graph we transcode
     with replacement characters, which the cleaning step then deletes (same result).
  7. The lookup table is built from the vocab as parsed by `load_vocab` (stripped lines, last
     duplicate wins, as in the reference). tf_text's own file reader keeps a line's trailing
     spaces (so 'ab ' never matches 'ab') and fails outright on a duplicated line.
Remaining limit, measured over all 1.1M code points (each between letters and next to 'Σ'):
ids agree everywhere except for characters that Python 3.11's `unicodedata` (Unicode 14) and
TensorFlow's tables disagree on: code points unassigned in Unicode 14 (RE2 knows newer ones)
and 40 capital letters new in Unicode 14 (U+2C2F, U+A7C0, U+A7D0, U+A7D6, U+A7D8, Vithkuqi
U+10570..U+10595) that TensorFlow's ICU does not lower-case. Other Python versions move this
boundary with their Unicode version.
"""
from __future__ import annotations

import functools
import logging
import unicodedata
from typing import Iterable, Mapping, Sequence

import tensorflow as tf
import tensorflow_text as tf_text

from transformer_jax import textfiles

log = logging.getLogger(__name__)

__all__ = ["BasicTokenizer", "WordpieceTokenizer", "FullTokenizer", "SPECIAL_TOKENS", "load_vocab"]

# Every vocab must have these; `FullTokenizer` exposes their ids as pad_id ... mask_id.
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

DEFAULT_MAX_CHARS_PER_WORD = 100
# A character is at most 4 UTF-8 bytes; see note 5 in the module docstring.
_MAX_UTF8_BYTES_PER_CHAR = 4


# ---------------------------------------------------------------------------------------------
# Reference algorithm (google-research/bert tokenization.py), kept close to the original.
# ---------------------------------------------------------------------------------------------


def _to_text(text: str | bytes) -> str:
    """Bytes -> str as the reference does (invalid UTF-8 bytes are dropped, not fatal)."""
    return text.decode("utf-8", "ignore") if isinstance(text, bytes) else text


def _is_whitespace(char: str) -> bool:
    """Space, \\t, \\n, \\r and Unicode space separators (Zs) separate words."""
    return char in " \t\n\r" or unicodedata.category(char) == "Zs"


def _is_control(char: str) -> bool:
    """Control and format characters (Cc, Cf), except \\t \\n \\r which count as whitespace."""
    if char in "\t\n\r":
        return False
    return unicodedata.category(char) in ("Cc", "Cf")


def _is_punctuation(char: str) -> bool:
    """Unicode P* plus all non-alphanumeric ASCII ('$', '^', '`' are symbols in Unicode)."""
    cp = ord(char)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


# The CJK Unified Ideographs blocks (not Hangul, Hiragana or Katakana, which use spaces).
_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


def _is_chinese_char(cp: int) -> bool:
    """Whether code point `cp` is a CJK ideograph (each becomes its own word)."""
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


class BasicTokenizer:
    """Cleans text, splits CJK characters and punctuation, optionally lower-cases."""

    def __init__(self, do_lower_case: bool = True, strip_accents: bool | None = None):
        """strip_accents=None follows do_lower_case (the original BERT behaviour)."""
        self.do_lower_case = do_lower_case
        self.strip_accents = do_lower_case if strip_accents is None else strip_accents

    def tokenize(self, text: str | bytes) -> list[str]:
        """Text -> words and punctuation marks."""
        text = self._tokenize_chinese_chars(self._clean_text(_to_text(text)))
        split_tokens = []
        for token in text.split():
            if self.do_lower_case:
                token = token.lower()
            if self.strip_accents:
                token = self._run_strip_accents(token)
            split_tokens.extend(self._run_split_on_punc(token))
        return " ".join(split_tokens).split()

    @staticmethod
    def _run_strip_accents(text: str) -> str:
        """Decomposes (NFD) and drops the non-spacing marks: 'é' -> 'e'."""
        return "".join(c for c in unicodedata.normalize("NFD", text)
                       if unicodedata.category(c) != "Mn")

    @staticmethod
    def _run_split_on_punc(text: str) -> list[str]:
        """'a,b!!' -> ['a', ',', 'b', '!', '!']: every punctuation char is its own token."""
        output: list[list[str]] = []
        start_new_word = True
        for char in text:
            if _is_punctuation(char):
                output.append([char])
                start_new_word = True
            else:
                if start_new_word:
                    output.append([])
                start_new_word = False
                output[-1].append(char)
        return ["".join(x) for x in output]

    @staticmethod
    def _tokenize_chinese_chars(text: str) -> str:
        """Puts spaces around CJK ideographs, which are written without spaces."""
        return "".join(f" {c} " if _is_chinese_char(ord(c)) else c for c in text)

    @staticmethod
    def _clean_text(text: str) -> str:
        """Drops NUL, U+FFFD and control chars; every whitespace char becomes ' '."""
        output = []
        for char in text:
            if ord(char) in (0, 0xFFFD) or _is_control(char):
                continue
            output.append(" " if _is_whitespace(char) else char)
        return "".join(output)


class WordpieceTokenizer:
    """Greedy longest-match-first WordPiece over already basic-tokenized text."""

    def __init__(self, vocab: Mapping[str, int] | Iterable[str], unk_token: str = "[UNK]",
                 max_input_chars_per_word: int = DEFAULT_MAX_CHARS_PER_WORD):
        """vocab: anything supporting `in` for strings (a dict token -> id, a set, ...)."""
        self.vocab = vocab if isinstance(vocab, Mapping) else frozenset(vocab)
        self.unk_token = unk_token
        self.max_input_chars_per_word = max_input_chars_per_word

    def tokenize(self, text: str) -> list[str]:
        """'unaffable' -> ['un', '##aff', '##able']; unsplittable words -> [unk_token]."""
        output_tokens = []
        for token in _to_text(text).split():
            output_tokens.extend(self._split_word(token))
        return output_tokens

    def _split_word(self, word: str) -> list[str]:
        """One word -> its pieces, or [unk_token] if some position matches no piece."""
        if len(word) > self.max_input_chars_per_word:
            return [self.unk_token]
        pieces = []
        start = 0
        while start < len(word):
            end = len(word)
            while end > start:  # longest piece first
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    break
                end -= 1
            if end == start:
                return [self.unk_token]
            pieces.append(piece)
            start = end
        return pieces


def load_vocab(path: str, required: Sequence[str] = SPECIAL_TOKENS) -> list[str]:
    """Reads a BERT `vocab.txt`: one token per line, id = line number, UTF-8.

    Lines are stripped and a blank line still takes an id, as in the reference `load_vocab`;
    a leading byte-order mark is ignored (Windows editors add one, and it would hide [PAD]).
    """
    if tf.io.gfile.isdir(path):
        raise ValueError(f"vocab file {path} is a directory: pass the vocab.txt inside it.")
    # Only "\n" ends a line (like the reference's readline); str.splitlines would also split
    # on U+2028, \x1c etc. and shift every later id.
    lines = textfiles.split_lines(textfiles.read_utf8(path, "vocab file"))
    tokens = [line.strip() for line in lines]
    if not tokens:
        raise ValueError(f"vocab file {path} is empty: it needs one token per line.")
    _check_vocab(path, tokens, required)
    return tokens


def same_vocab(path: str, other: str) -> bool:
    """The same tokens at the same ids: line endings and a byte-order mark do not count."""
    return load_vocab(path, required=()) == load_vocab(other, required=())


def _check_vocab(path: str, tokens: Sequence[str], required: Sequence[str]) -> None:
    """Missing special tokens are fatal; duplicated lines are legal but worth a warning."""
    present = set(tokens)
    missing = [t for t in required if t not in present]
    if missing:
        raise ValueError(f"vocab file {path} lacks the special tokens {' '.join(missing)}: add "
                         "each on its own line (ids 0..4 for a new vocab) or train one with "
                         "train_vocab().")
    if len(present) < len(tokens):
        log.warning("vocab file %s has %d duplicated lines; each such token maps to its last id.",
                    path, len(tokens) - len(present))


# ---------------------------------------------------------------------------------------------
# In-graph version: tf_text.BertTokenizer with the reference's text normalisation.
# ---------------------------------------------------------------------------------------------

# `_is_whitespace` plus U+2028/U+2029, on which the reference's str.split() also splits.
# They all become ' ', the only separator left (RE2's `\s` is ASCII-only).
_TF_WHITESPACE = r"[\t\n\r\p{Zs}\p{Zl}\p{Zp}]"
_TF_DROPPED = r"[\x{0}\x{FFFD}\p{Cc}\p{Cf}]"
# `_is_punctuation` and `_is_chinese_char` as RE2 classes; each match becomes its own word.
_TF_PUNCTUATION = r"[!-/:-@\[-`{-~]|\p{P}"
_TF_CJK = "[" + "".join(f"\\x{{{lo:X}}}-\\x{{{hi:X}}}" for lo, hi in _CJK_RANGES) + "]"
_TF_KEEP = f"{_TF_PUNCTUATION}|{_TF_CJK}"
_TF_SPLIT = f" +|{_TF_KEEP}"


class _ReferenceBasicTokenizerTF(tf_text.TokenizerWithOffsets):
    """The reference BasicTokenizer in TF ops, for `tf_text.BertTokenizer`.

    Replaces tf_text's own BasicTokenizer (notes 1-5 of the module docstring).
    `BertTokenizer` calls this class positionally, hence the tf_text-shaped signature.
    """

    def __init__(self, lower_case, keep_whitespace, normalization_form, preserve_unused_token,
                 *, strip_accents: bool, max_chars_per_word: int, unk_token: str):
        if keep_whitespace or normalization_form or preserve_unused_token:
            raise ValueError("keep_whitespace, normalization_form and preserve_unused_token "
                             "are not part of the reference algorithm: leave them unset.")
        self._lower_case = lower_case
        self._strip_accents = strip_accents
        self._max_chars_per_word = max_chars_per_word
        self._unk_token = unk_token

    def normalize(self, text: tf.Tensor) -> tf.Tensor:
        """Same string the reference splits: cleaned, maybe lower-cased and accent-free."""
        # Invalid UTF-8 -> U+FFFD, then deleted with the other dropped characters below.
        text = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace",
                                            replacement_char=0xFFFD)
        # Whitespace first: \t \n \r are Cc and must become ' ', not vanish.
        text = tf.strings.regex_replace(text, _TF_WHITESPACE, " ")
        text = tf.strings.regex_replace(text, _TF_DROPPED, "")
        if self._lower_case:
            text = tf.strings.lower(text, encoding="utf-8")
        if self._strip_accents:
            text = tf_text.normalize_utf8(text, "NFD")
            text = tf.strings.regex_replace(text, r"\p{Mn}", "")
        return text

    def tokenize(self, text_input):
        """[B] strings -> [B, words] RaggedTensor of words (too-long words are unk_token)."""
        return self.tokenize_with_offsets(text_input)[0]

    def tokenize_with_offsets(self, text_input):
        """Words and their byte offsets, which index the normalised text, not the raw input."""
        words, begin, end = tf_text.regex_split_with_offsets(
            self.normalize(text_input), _TF_SPLIT, _TF_KEEP)
        words = tf.ragged.map_flat_values(self._unk_if_too_long, words)
        return words, begin, end

    def _unk_if_too_long(self, words: tf.Tensor) -> tf.Tensor:
        """Words over `max_chars_per_word` characters -> unk_token (note 5)."""
        too_long = tf.strings.length(words, unit="UTF8_CHAR") > self._max_chars_per_word
        return tf.where(too_long, self._unk_token, words)


class FullTokenizer:
    """Basic tokenization then WordPiece, with the ids of a `vocab.txt` file."""

    def __init__(self, vocab_file: str, do_lower_case: bool = True, *,
                 strip_accents: bool | None = None,
                 max_input_chars_per_word: int = DEFAULT_MAX_CHARS_PER_WORD):
        """Loads `vocab_file` (must contain [PAD] [UNK] [CLS] [SEP] [MASK])."""
        self.vocab_file = vocab_file
        self.ids_to_tokens: list[str] = load_vocab(vocab_file)
        # Like the reference's dict: a duplicated line maps to its last id.
        self.vocab: dict[str, int] = {t: i for i, t in enumerate(self.ids_to_tokens)}
        self.do_lower_case = do_lower_case
        self.basic_tokenizer = BasicTokenizer(do_lower_case, strip_accents)
        self.wordpiece_tokenizer = WordpieceTokenizer(
            self.vocab, "[UNK]", max_input_chars_per_word)
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (
            self.vocab[t] for t in SPECIAL_TOKENS)
        self._tf_tokenizer: tf_text.BertTokenizer | None = None

    @property
    def vocab_size(self) -> int:
        """Number of lines of the vocab file: the size of the model's embedding table."""
        return len(self.ids_to_tokens)

    def tokenize(self, text: str | bytes) -> list[str]:
        """Text -> word pieces, e.g. 'UNwanted' -> ['un', '##want', '##ed']."""
        return [piece for word in self.basic_tokenizer.tokenize(text)
                for piece in self.wordpiece_tokenizer.tokenize(word)]

    def encode(self, text: str | bytes) -> list[int]:
        """Text -> piece ids, without [CLS]/[SEP]."""
        return self.convert_tokens_to_ids(self.tokenize(text))

    def convert_tokens_to_ids(self, tokens: Iterable[str]) -> list[int]:
        """Pieces -> ids; a piece not in the vocab is an error, not a silent [UNK]."""
        try:
            return [self.vocab[t] for t in tokens]
        except KeyError as e:
            raise ValueError(f"token {e.args[0]!r} is not in {self.vocab_file}: tokenize text "
                             "with .tokenize() or .encode() first.") from None

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        """Ids -> pieces."""
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"id {i} is outside the vocabulary [0, {self.vocab_size}) "
                                 f"of {self.vocab_file}.")
            out.append(self.ids_to_tokens[i])
        return out

    def tf_tokenizer(self) -> tf_text.BertTokenizer:
        """The same tokenization in-graph: `.tokenize(strings)` -> int64 [batch, word, piece]."""
        if self._tf_tokenizer is None:
            # init_scope: if first called while tracing a tf.data map, the table must still be
            # created eagerly, or the cached tokenizer would hold a dead graph's tensors.
            with tf.init_scope():
                self._tf_tokenizer = self._build_tf_tokenizer()
        return self._tf_tokenizer

    def _build_tf_tokenizer(self) -> tf_text.BertTokenizer:
        """Lookup table from the parsed vocab (note 7) + tf_text's WordPiece kernel."""
        keys, values = zip(*self.vocab.items())
        # The WordPiece kernel tests membership by looking keys up with default -1.
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(keys, tf.string), tf.constant(values, tf.int64)),
            default_value=-1)
        basic = self.basic_tokenizer
        max_chars = self.wordpiece_tokenizer.max_input_chars_per_word
        return tf_text.BertTokenizer(
            table,
            suffix_indicator="##",
            max_bytes_per_word=_MAX_UTF8_BYTES_PER_CHAR * max_chars,
            token_out_type=tf.int64,
            unknown_token=self.wordpiece_tokenizer.unk_token,
            split_unknown_characters=False,
            lower_case=basic.do_lower_case,
            basic_tokenizer_class=functools.partial(
                _ReferenceBasicTokenizerTF, strip_accents=basic.strip_accents,
                max_chars_per_word=max_chars, unk_token=self.wordpiece_tokenizer.unk_token),
        )

    def tf_encode(self, strings: tf.Tensor | str | Sequence[str]) -> tf.Tensor | tf.RaggedTensor:
        """In-graph `encode`: [B] strings -> int32 RaggedTensor [B, pieces]; a scalar -> [pieces].

        Usable inside `tf.data.Dataset.map`; ids equal `encode()` for every string.
        """
        strings = tf.convert_to_tensor(strings, tf.string)
        if strings.shape.rank not in (0, 1):
            raise ValueError(f"tf_encode takes a scalar or 1-D string tensor, got shape "
                             f"{strings.shape}: reshape or unbatch first.")
        batch = tf.reshape(strings, [-1])
        ids = self.tf_tokenizer().tokenize(batch).merge_dims(1, 2)
        ids = tf.cast(ids, tf.int32)
        return ids[0] if strings.shape.rank == 0 else ids
