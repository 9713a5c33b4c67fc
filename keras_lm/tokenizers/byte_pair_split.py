"""GPT-2's pre-tokenization (the word split before byte-pair merges) with TensorFlow ops only.

GPT-2 splits text with the regular expression

    's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+

(leftmost-first alternation, ``\\s`` = Unicode White_Space). RE2, which TensorFlow uses, has no
lookahead, so ``\\s+(?!\\S)`` is rebuilt in two steps. A whitespace run followed by a non-space
character gives up its last character: a plain space joins the following word (`` ?\\p{L}+`` …),
any other whitespace character becomes a word of its own; a run at the end of the text stays
whole. So the text is first cut into chunks ``whitespace* non-space+`` (or a trailing
whitespace run), each chunk is cut into ``head``, ``last whitespace`` and ``word``, and the
segments are then split with the lookahead-free part of the expression. No marker characters
are inserted, so every input character is treated as itself.

Special tokens (e.g. ``<|endoftext|>``) are cut out first and kept whole, the way tiktoken's
``encode(..., allowed_special="all")`` and Hugging Face tokenizers' added tokens work.

The split expressions of other byte-level BPE tokenizers (Llama-3, Qwen2, GPT-4o; ``PATTERNS``)
end with the same ``\\s+(?!\\S)|\\s+``; ``split_by_pattern`` reproduces them by first marking
the last whitespace character before each non-space character (see ``_mark_last_whitespace``).
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf
import tensorflow_text as tf_text

from keras_lm.tokenizers.text import (
    WHITESPACE,
    escape_nul,
    lookup_code_points,
    split_keeping_special_tokens,
    unescape_nul,
)

_WS = f"[{WHITESPACE}]"
_NOT_WS = f"[^{WHITESPACE}]"
# A chunk: optional whitespace then non-space characters, or a whitespace run ending the text.
CHUNK_PATTERN = f"{_WS}*{_NOT_WS}+|{_WS}+"
# Within a chunk: head (all but the last whitespace char), last whitespace char, the word.
_CHUNK_PARTS = f"^({_WS}*?)({_WS}?)({_NOT_WS}*)$"
# GPT-2's expression without the two whitespace alternatives (segments hold no inner whitespace).
WORD_PATTERN = (
    r"'s|'t|'re|'ve|'m|'ll|'d"
    rf"| ?\p{{L}}+| ?\p{{N}}+| ?[^{WHITESPACE}\p{{L}}\p{{N}}]+"
)


def sanitize_utf8(text: tf.Tensor) -> tf.Tensor:
    """Replace invalid UTF-8 sequences with U+FFFD (all other characters, controls included, kept)."""
    return tf.strings.unicode_transcode(
        text, input_encoding="UTF-8", output_encoding="UTF-8", errors="replace",
        replacement_char=0xFFFD,
    )


def split_words(inputs: tf.Tensor, special_tokens: Sequence[str] = ()) -> tf.RaggedTensor:
    """Split a 1-D ``tf.string`` batch into GPT-2 pre-tokens: ``tf.RaggedTensor`` ``[batch, words]``.

    Example:
        >>> split_words(tf.constant(["Hello  world\\n\\nit's"])).to_list()
        [[b'Hello', b' ', b' world', b'\\n', b'\\n', b'it', b"'s"]]
    """
    return split_keeping_special_tokens(inputs, special_tokens, _split_text_keeping_nul)


def _split_text_keeping_nul(texts: tf.Tensor) -> tf.RaggedTensor:
    words = _split_text(escape_nul(texts))
    return words.with_flat_values(unescape_nul(words.flat_values))


def _tf_text_regex_split(texts: tf.Tensor, pattern: str) -> tf.RaggedTensor:
    return tf_text.regex_split(texts, pattern, pattern)


def _split_text(texts: tf.Tensor, regex_split=_tf_text_regex_split) -> tf.RaggedTensor:
    """GPT-2 words of each string of a 1-D batch (no special-token handling, no NUL).

    ``regex_split(texts, pattern)`` splits keeping every match as a piece (tf-text's by default;
    ``portable_byte_pair`` passes its core-op one).
    """
    chunks = regex_split(texts, CHUNK_PATTERN)  # [batch, chunks]
    flat = chunks.flat_values
    head = tf.strings.regex_replace(flat, _CHUNK_PARTS, r"\1")
    last_space = tf.strings.regex_replace(flat, _CHUNK_PARTS, r"\2")
    word = tf.strings.regex_replace(flat, _CHUNK_PARTS, r"\3")
    trailing_whitespace = tf.equal(word, "")
    joins_word = tf.equal(last_space, " ")
    first = tf.where(trailing_whitespace, flat, head)
    second = tf.where(trailing_whitespace, "", tf.where(joins_word, tf.strings.join([" ", word]), last_space))
    third = tf.where(trailing_whitespace | joins_word, "", word)
    segments = tf.stack([first, second, third], axis=1)  # [chunks, 3]
    segments = tf.ragged.boolean_mask(segments, tf.not_equal(segments, ""))
    segment_splits = tf.gather(segments.row_splits, chunks.row_splits)  # [batch, segments]
    # Whitespace-only segments match no alternative and come out whole.
    words = regex_split(segments.flat_values, WORD_PATTERN)  # [segments, words]
    return tf.RaggedTensor.from_row_splits(words.flat_values, tf.gather(words.row_splits, segment_splits))


# -- other split expressions ------------------------------------------------------------------------

GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
PATTERNS = {
    "gpt2": GPT2_PATTERN,
    # Llama 3 (and cl100k_base as converted to tokenizer.json).
    "llama3": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+",
    "qwen2": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
             r"|\s*[\r\n]+|\s+(?!\S)|\s+",
    "o200k": r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
             r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+"
             r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*"
             r"|\s*[\r\n]+|\s+(?!\S)|\s+",
}
"""Word-split expressions (as in ``tokenizer.json`` Split pre-tokenizers) that ``split_by_pattern`` reproduces."""

# Marking rewrites the text with characters of the same UTF-8 length, so that offsets into it are
# offsets into the original: the last whitespace character before a non-space character becomes a
# marker (a control or private-use character standing for it); input characters that share the
# markers' ranges become one representative of their kind, which every expression treats alike.
_WHITESPACE_CODE_POINTS = (0x20, 0x9, 0xA, 0xB, 0xC, 0xD, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
                           0x2028, 0x2029, 0x202F, 0x205F, 0x3000)
_MARKERS = (0x2, 0x3, 0x4, 0x5, 0x6, 0x7, 0x81, 0x82, *range(0xE001, 0xE012))
_MARKER_OF = dict(zip(_WHITESPACE_CODE_POINTS, _MARKERS))
_MARKER_CLASS = r"\x{2}-\x{7}\x{81}\x{82}\x{E001}-\x{E011}"
_MARKED_SPACE, _MARKED_NEWLINES = r"\x{2}", r"\x{4}\x{7}"  # markers of " " and of "\n", "\r"
# (first, last, representative): other one-byte controls, two-byte controls, three-byte private use.
_REPRESENTATIVES = ((0x0, 0x8, 0x1), (0xE, 0x1F, 0x1), (0x7F, 0x7F, 0x1), (0x80, 0x84, 0x80), (0x86, 0x9F, 0x80),
                    (0xE000, 0xF8FF, 0xE000))


def _marked_pattern(pattern: str) -> str:
    """``pattern`` (ending in ``\\s+(?!\\S)|\\s+``) for marked text, without lookahead.

    Markers are whitespace everywhere, except that ``\\s+(?!\\S)`` becomes a run of unmarked
    whitespace (which is always followed by a marker or the end of the text) and ``\\s+`` takes a
    lone marker.
    """
    suffix = r"|\s+(?!\S)|\s+"
    if not pattern.endswith(suffix):
        raise ValueError(f"Split pattern {pattern!r} does not end with {suffix!r}.")
    body = pattern[: -len(suffix)]
    space, any_space = f"[{WHITESPACE}]", f"[{WHITESPACE}{_MARKER_CLASS}]"
    for old, new in (
        (r"[^\s", f"[^{WHITESPACE}{_MARKER_CLASS}"),
        (r"[^\r\n", rf"[^\r\n{_MARKED_NEWLINES}"),
        (r"[\r\n", rf"[\r\n{_MARKED_NEWLINES}"),
        (" ?", f"[ {_MARKED_SPACE}]?"),
        (r"\s", any_space),
    ):
        body = body.replace(old, new)
    return f"{body}|{space}+|{any_space}+"


_MARKED_PATTERNS = {name: _marked_pattern(pattern) for name, pattern in PATTERNS.items()}


def _mark_last_whitespace(texts: tf.Tensor) -> tf.Tensor:
    """``texts`` (1-D, valid UTF-8) with every whitespace character followed by a non-space marked."""
    code_points = tf.strings.unicode_decode(texts, "UTF-8")
    flat = code_points.flat_values
    for first, last, representative in _REPRESENTATIVES:
        flat = tf.where((flat >= first) & (flat <= last), representative, flat)
    key, marker = lookup_code_points(_MARKER_OF, flat)
    is_space = tf.equal(key, flat)
    position = tf.range(tf.size(flat, out_type=tf.int64))
    is_last = tf.equal(position + 1, tf.gather(code_points.row_limits(), code_points.value_rowids()))
    next_is_space = tf.concat([is_space[1:], [True]], axis=0)
    marked = is_space & ~is_last & ~next_is_space
    flat = tf.where(marked, marker, flat)
    return tf.strings.unicode_encode(code_points.with_flat_values(flat), "UTF-8")


def _split_with_pattern(texts: tf.Tensor, name: str) -> tf.RaggedTensor:
    marked = _mark_last_whitespace(texts)
    pattern = _MARKED_PATTERNS[name]
    _, begins, ends = tf_text.regex_split_with_offsets(marked, pattern, pattern)
    rows = begins.value_rowids()
    words = tf.strings.substr(tf.gather(texts, rows), begins.flat_values, ends.flat_values - begins.flat_values)
    return begins.with_flat_values(words)


def _split_digits(texts: tf.Tensor, individual: bool) -> tf.RaggedTensor:
    pattern = r"\p{N}" if individual else r"\p{N}+"
    pieces = tf_text.regex_split(escape_nul(texts), pattern, pattern)
    return pieces.with_flat_values(unescape_nul(pieces.flat_values))


def _flat_map(pieces: tf.RaggedTensor, split) -> tf.RaggedTensor:
    """``split`` (1-D -> ``[n, words]``) applied to the flat values of ``[batch, pieces]``: ``[batch, words]``."""
    words = split(pieces.flat_values)
    return tf.RaggedTensor.from_row_splits(words.flat_values, tf.gather(words.row_splits, pieces.row_splits))


def split_by_pattern(texts: tf.Tensor, pattern: str) -> tf.RaggedTensor:
    """Words of each string of a 1-D batch, as ``regex.findall(PATTERNS[pattern], text)`` gives them.

    ``pattern`` is a key of ``PATTERNS`` (``"gpt2"``, ``"llama3"``, ``"qwen2"``, ``"o200k"``).

    Example:
        >>> split_by_pattern(tf.constant(["I'M here 12345!\\n\\nok"]), "llama3").to_list()
        [[b'I', b"'M", b' here', b' ', b'123', b'45', b'!\\n\\n', b'ok']]
    """
    if pattern not in PATTERNS:
        raise ValueError(f"Unknown split pattern {pattern!r}; known: {', '.join(PATTERNS)}.")
    if pattern == "gpt2":
        return split_words(texts)
    return _split_with_pattern(texts, pattern)


def pre_tokenize(
    texts: tf.Tensor,
    special_tokens: Sequence[str] = (),
    pattern: str | None = "gpt2",
    split_digits: str | None = None,
    normalization: str | None = None,
    add_prefix_space: bool = False,
) -> tf.RaggedTensor:
    """The words a byte-level BPE tokenizer merges, for a 1-D batch of valid UTF-8: ``[batch, words]``.

    In Hugging Face tokenizers' order: ``special_tokens`` are cut out of the raw text (each one
    word); every other piece is normalized (``normalization``: None or ``"NFC"``), gets a space
    in front unless it starts with one (``add_prefix_space``), is split around numbers
    (``split_digits``: None, ``"individual"`` or ``"runs"``, the ``Digits`` pre-tokenizer) and
    then with ``PATTERNS[pattern]`` (None: no further split).

    Example:
        >>> pre_tokenize(tf.constant(["Hi<|endoftext|>x 42"]), ["<|endoftext|>"], split_digits="individual").to_list()
        [[b'Hi', b'<|endoftext|>', b'x', b' ', b'4', b'2']]
    """
    if split_digits not in (None, "individual", "runs"):
        raise ValueError(f"split_digits must be None, 'individual' or 'runs'; got {split_digits!r}.")
    if normalization not in (None, "NFC"):
        raise ValueError(f"normalization must be None or 'NFC'; got {normalization!r}.")

    def split_piece(pieces):  # text between special tokens -> words
        if normalization:
            pieces = tf_text.normalize_utf8(pieces, normalization)
        if add_prefix_space:
            pieces = tf.where(tf.strings.regex_full_match(pieces, "(?s) .*"), pieces, tf.strings.join([" ", pieces]))
        if split_digits is None:
            words = tf.RaggedTensor.from_tensor(pieces[:, tf.newaxis])
        else:
            words = _split_digits(pieces, split_digits == "individual")
        return words if pattern is None else _flat_map(words, lambda flat: split_by_pattern(flat, pattern))

    if pattern is not None and pattern not in PATTERNS:
        raise ValueError(f"Unknown split pattern {pattern!r}; known: {', '.join(PATTERNS)}.")
    return split_keeping_special_tokens(texts, special_tokens, split_piece)
