"""BERT's text normalization and word split (Hugging Face ``BertNormalizer`` + ``BertPreTokenizer``) in TF ops.

The Hugging Face ``tokenizers`` library, whose ``tokenizer.json`` files BERT checkpoints ship,
decides what a control, format, non-spacing mark or punctuation character is from older Unicode
tables than TensorFlow's RE2, and lower-cases with newer ones than TensorFlow's ICU. The
``_NOT_*``/``_ALSO_*`` classes and the two code-point maps below record every difference
(found by comparing both on all 1,112,064 code points), so that the words are the same for any
text; ``tests/tokenizers/test_word_piece_hf.py`` checks it on every code point (``-m slow``).
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf
import tensorflow_text as tf_text

from keras_lm.tokenizers.text import (
    WHITESPACE,
    lookup_code_points,
    replace_invalid_utf8,
    sanitize_text,
    split_keeping_special_tokens,
)

# Format characters (Cf) the tokenizers library does not know: kept by ``clean_text``.
_NOT_FORMAT = r"\x{890}-\x{891}\x{8E2}\x{110CD}\x{13430}-\x{1343F}"
# Non-spacing marks (Mn) it does not know (not stripped), and one it still counts as Mn.
_NOT_NONSPACING_MARK = (
    r"\x{7FD}\x{898}-\x{89F}\x{8CA}-\x{8E1}\x{9FE}\x{AFA}-\x{AFF}\x{B55}\x{C04}\x{C3C}\x{D00}"
    r"\x{D3B}-\x{D3C}\x{D81}\x{EBA}\x{ECE}\x{180F}\x{1885}-\x{1886}\x{1ABF}-\x{1ACE}\x{1DF6}-\x{1DFB}"
    r"\x{A82C}\x{A8C5}\x{A8FF}\x{A9BD}\x{10D24}-\x{10D27}\x{10EAB}-\x{10EAC}\x{10EFD}-\x{10EFF}"
    r"\x{10F46}-\x{10F50}\x{10F82}-\x{10F85}\x{11070}\x{11073}-\x{11074}\x{110C2}\x{111C9}\x{111CF}"
    r"\x{1123E}\x{11241}\x{1133B}\x{11438}-\x{1143F}\x{11442}-\x{11444}\x{11446}\x{1145E}"
    r"\x{1182F}-\x{11837}\x{11839}-\x{1183A}\x{1193B}-\x{1193C}\x{1193E}\x{11943}\x{119D4}-\x{119D7}"
    r"\x{119DA}-\x{119DB}\x{119E0}\x{11A01}-\x{11A0A}\x{11A33}-\x{11A38}\x{11A3B}-\x{11A3E}\x{11A47}"
    r"\x{11A51}-\x{11A56}\x{11A59}-\x{11A5B}\x{11A8A}-\x{11A96}\x{11A98}-\x{11A99}\x{11C30}-\x{11C36}"
    r"\x{11C38}-\x{11C3D}\x{11C3F}\x{11C92}-\x{11CA7}\x{11CAA}-\x{11CB0}\x{11CB2}-\x{11CB3}"
    r"\x{11CB5}-\x{11CB6}\x{11D31}-\x{11D36}\x{11D3A}\x{11D3C}-\x{11D3D}\x{11D3F}-\x{11D45}\x{11D47}"
    r"\x{11D90}-\x{11D91}\x{11D95}\x{11D97}\x{11EF3}-\x{11EF4}\x{11F00}-\x{11F01}\x{11F36}-\x{11F3A}"
    r"\x{11F40}\x{11F42}\x{13440}\x{13447}-\x{13455}\x{16F4F}\x{16FE4}\x{1CF00}-\x{1CF2D}"
    r"\x{1CF30}-\x{1CF46}\x{1E000}-\x{1E006}\x{1E008}-\x{1E018}\x{1E01B}-\x{1E021}\x{1E023}-\x{1E024}"
    r"\x{1E026}-\x{1E02A}\x{1E08F}\x{1E130}-\x{1E136}\x{1E2AE}\x{1E2EC}-\x{1E2EF}\x{1E4EC}-\x{1E4EF}"
    r"\x{1E944}-\x{1E94A}"
)
_ALSO_NONSPACING_MARK = r"\x{1734}"
# Punctuation (P*) it does not know, and two characters it still counts as punctuation.
_NOT_PUNCTUATION = (
    r"\x{61D}\x{9FD}\x{A76}\x{C77}\x{C84}\x{1B7D}-\x{1B7E}\x{2E43}-\x{2E4F}\x{2E52}-\x{2E5D}\x{10EAD}"
    r"\x{10F55}-\x{10F59}\x{10F86}-\x{10F89}\x{1144B}-\x{1144F}\x{1145A}-\x{1145B}\x{1145D}"
    r"\x{11660}-\x{1166C}\x{116B9}\x{1183B}\x{11944}-\x{11946}\x{119E2}\x{11A3F}-\x{11A46}"
    r"\x{11A9A}-\x{11A9C}\x{11A9E}-\x{11AA2}\x{11B00}-\x{11B09}\x{11C41}-\x{11C45}\x{11C70}-\x{11C71}"
    r"\x{11EF7}-\x{11EF8}\x{11F43}-\x{11F4F}\x{11FFF}\x{12FF1}-\x{12FF2}\x{16E97}-\x{16E9A}\x{16FE2}"
    r"\x{1E95E}-\x{1E95F}"
)
_ALSO_PUNCTUATION = r"\x{166D}\x{111C9}"
# Characters it does not decompose (NFD) but TensorFlow's ICU does.
_NOT_DECOMPOSED = (
    0x105C9, 0x105E4, 0x11383, 0x11385, 0x1138E, 0x11391, 0x113C5, 0x113C7, 0x113C8, 0x11938,
    0x16121, 0x16122, 0x16123, 0x16124, 0x16125, 0x16126, 0x16127, 0x16128, 0x16D68, 0x16D69, 0x16D6A,
)
# Capital letters it lower-cases but TensorFlow's ICU does not: (first, last, step, offset to lower case).
_MORE_LOWER_CASE = (
    (0x1C89, 0x1C89, 1, 1), (0x2C2F, 0x2C2F, 1, 48), (0xA7C0, 0xA7C0, 1, 1), (0xA7CB, 0xA7CB, 1, -42343),
    (0xA7CC, 0xA7DA, 2, 1), (0xA7DC, 0xA7DC, 1, -42561), (0x10570, 0x1057A, 1, 39), (0x1057C, 0x1058A, 1, 39),
    (0x1058C, 0x10592, 1, 39), (0x10594, 0x10595, 1, 39), (0x10D50, 0x10D65, 1, 32), (0x16EA0, 0x16EB8, 1, 27),
)
_LOWER_CASE_MAP = {c: c + offset for first, last, step, offset in _MORE_LOWER_CASE for c in range(first, last + 1, step)}
# While accents are stripped, each character of _NOT_DECOMPOSED stands in as a private-use
# character (``clean_text`` has deleted every private-use character of the input).
_PLACEHOLDER = 0x10FF00
_PROTECT_MAP = {c: _PLACEHOLDER + i for i, c in enumerate(_NOT_DECOMPOSED)}
_RESTORE_MAP = {p: c for c, p in _PROTECT_MAP.items()}

# BERT punctuation: every non-alphanumeric printable ASCII character plus Unicode P*.
BERT_PUNCTUATION = rf"[!-/:-@\[-`{{-~{_ALSO_PUNCTUATION}]|[^\P{{P}}{_NOT_PUNCTUATION}]"
# The CJK ideograph blocks BERT surrounds with spaces (2B920-2CEAF, not 2B820, as the library has it).
BERT_CJK = (
    r"[\x{4E00}-\x{9FFF}\x{3400}-\x{4DBF}\x{20000}-\x{2A6DF}\x{2A700}-\x{2B73F}\x{2B740}-\x{2B81F}"
    r"\x{2B920}-\x{2CEAF}\x{F900}-\x{FAFF}\x{2F800}-\x{2FA1F}]"
)
# What BERT's ``clean_text`` deletes: NUL, U+FFFD, control characters but \t \n \r, format
# characters (zero-width space and joiner, soft hyphen, BOM, …) and private-use characters.
BERT_DELETED = rf"[\x{{0}}\x{{FFFD}}\p{{Co}}]|[^\P{{Cc}}\t\n\r]|[^\P{{Cf}}{_NOT_FORMAT}]"
NONSPACING_MARK = rf"[^\P{{Mn}}{_NOT_NONSPACING_MARK}]|[{_ALSO_NONSPACING_MARK}]"


def _class_of(code_points) -> str:
    return "[" + "".join(f"\\x{{{c:X}}}" for c in sorted(code_points)) + "]"


def _map_code_points(text: tf.Tensor, mapping: dict[int, int]) -> tf.Tensor:
    """``text`` (1-D) with each code point that is a key of ``mapping`` replaced by its value."""
    code_points = tf.strings.unicode_decode(text, "UTF-8")
    flat = code_points.flat_values
    found, value = lookup_code_points(mapping, flat)
    flat = tf.where(tf.equal(found, flat), value, flat)
    return tf.strings.unicode_encode(code_points.with_flat_values(flat), "UTF-8")


def _map_where_present(text: tf.Tensor, mapping: dict[int, int]) -> tf.Tensor:
    """``_map_code_points``, run only when some string holds a key (a regex scan otherwise)."""
    present = tf.strings.regex_full_match(text, f"(?s).*{_class_of(mapping)}.*")
    return tf.cond(tf.reduce_any(present), lambda: _map_code_points(text, mapping), lambda: tf.identity(text))


def bert_normalize(
    text: tf.Tensor,
    lowercase: bool,
    strip_accents: bool,
    split_on_cjk: bool = True,
    clean_text: bool = True,
) -> tf.Tensor:
    """BERT's text normalization (Hugging Face ``BertNormalizer``) of a 1-D ``tf.string`` batch.

    In order: ``clean_text`` deletes NUL, U+FFFD, control characters other than tab/newline/
    carriage return, format and private-use characters, and turns every Unicode whitespace
    character into a space; ``split_on_cjk`` puts spaces around CJK ideographs;
    ``strip_accents`` decomposes (NFD) and drops non-spacing marks (Mn); ``lowercase`` maps each
    character to its lower case (no case folding, no NFKC: ``ß``, ``ﬁ`` and full-width letters
    stay; a capital sigma always becomes ``σ``). The text must hold no NUL (``clean_text``
    deletes it; otherwise replace it first, TensorFlow's lower-casing stops there).

    Example:
        >>> bert_normalize(tf.constant(["Ångström\\u200b ΣΟΦΟΣ 東京"]), True, True).numpy()[0].decode()
        'angstrom σοφοσ  東  京 '
    """
    if clean_text:
        text = tf.strings.regex_replace(text, BERT_DELETED, "")
        text = tf.strings.regex_replace(text, f"[{WHITESPACE}]", " ")
    if split_on_cjk:
        text = tf.strings.regex_replace(text, BERT_CJK, r" \0 ")
    protect = strip_accents and clean_text  # placeholders are safe once private-use input is gone
    if protect:
        text = _map_where_present(text, _PROTECT_MAP)
    if strip_accents:
        text = tf.strings.regex_replace(tf_text.normalize_utf8(text, "NFD"), NONSPACING_MARK, "")
    if lowercase:
        # ICU lower-cases a final capital sigma to ς; BERT maps each character on its own.
        text = tf.strings.lower(tf.strings.regex_replace(text, "Σ", "σ"), encoding="utf-8")
        text = _map_where_present(text, _LOWER_CASE_MAP)
    if protect:
        text = _map_where_present(text, _RESTORE_MAP)
    return text


def split_bert_words(text: tf.Tensor) -> tf.RaggedTensor:
    """Words of each string of a 1-D batch, split as BERT does (``BertPreTokenizer``).

    Whitespace separates words; each punctuation character (``BERT_PUNCTUATION``) is a word.

    Example:
        >>> split_bert_words(tf.constant(["Hello, world!!"])).to_list()
        [[b'Hello', b',', b'world', b'!', b'!']]
    """
    return tf_text.regex_split(text, f"[{WHITESPACE}]+|{BERT_PUNCTUATION}", BERT_PUNCTUATION)


def bert_words(
    text: tf.Tensor,
    lowercase: bool,
    strip_accents: bool,
    split_on_cjk: bool = True,
    clean_text: bool = True,
    special_tokens: Sequence[str] = (),
) -> tf.RaggedTensor:
    """The words BERT's tokenizer hands to WordPiece, for a 1-D batch of any bytes: ``[batch, words]``.

    Invalid UTF-8 becomes U+FFFD first. With ``clean_text`` the text is normalized exactly as
    Hugging Face's ``BertNormalizer`` does; without it, control, format and space-separator
    characters become spaces (NUL and U+FFFD included) and the rest is normalized the same way.
    ``special_tokens`` found in the raw text are words of their own, never normalized.

    Example:
        >>> bert_words(tf.constant(["Café [MASK]!"]), True, True, special_tokens=["[MASK]"]).to_list()
        [[b'cafe', b'[MASK]', b'!']]
    """
    text = replace_invalid_utf8(text) if clean_text else sanitize_text(text)

    def normalize_and_split(pieces):
        return split_bert_words(bert_normalize(pieces, lowercase, strip_accents, split_on_cjk, clean_text))

    return split_keeping_special_tokens(text, special_tokens, normalize_and_split)
