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
"""
from __future__ import annotations

import re
from typing import Sequence

import tensorflow as tf
import tensorflow_text as tf_text

# Unicode White_Space (what ``\s`` means in Python's ``regex`` and Rust's ``regex``; RE2's ``\s``
# is ASCII only and lacks \v).
WHITESPACE = (
    r"\t\n\x{0b}\f\r \x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}"
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
    texts = _escape_nul(inputs)
    if special_tokens:
        # Longest first, so that a special token containing another one wins.
        alternatives = "|".join(re.escape(t) for t in sorted(set(special_tokens), key=len, reverse=True))
        pieces = tf_text.regex_split(texts, alternatives, alternatives)  # [batch, pieces]
        flat = pieces.flat_values
        special = tf.strings.regex_full_match(flat, alternatives)
        words = _split_text(flat)  # [pieces, words]
        keep = tf.repeat(tf.logical_not(special), words.row_lengths())
        text_words = tf.ragged.boolean_mask(words, words.with_flat_values(keep))
        special_words = tf.ragged.boolean_mask(flat[:, tf.newaxis], special[:, tf.newaxis])
        words = tf.concat([text_words, special_words], axis=1)  # a special piece is one word
        words = tf.RaggedTensor.from_row_splits(
            words.flat_values, tf.gather(words.row_splits, pieces.row_splits)
        )
    else:
        words = _split_text(texts)
    return words.with_flat_values(_unescape_nul(words.flat_values))


# tf-text's regex_split stops at NUL. NUL is escaped to two private-use characters of the same
# class ("other", like NUL), which keeps every word boundary; the escape character itself is
# escaped too, so unescaping restores the exact text.
_ESCAPE, _ESCAPED_NUL, _ESCAPED_ESCAPE = "\uf8ff", "\uf8ff\uf8fe", "\uf8ff\uf8fd"


def _escape_nul(texts: tf.Tensor) -> tf.Tensor:
    texts = tf.strings.regex_replace(texts, _ESCAPE, _ESCAPED_ESCAPE)
    return tf.strings.regex_replace(texts, r"\x00", _ESCAPED_NUL)


def _unescape_nul(texts: tf.Tensor) -> tf.Tensor:
    # Every escape character starts an escape, so decoding NULs first is unambiguous.
    texts = tf.strings.regex_replace(texts, _ESCAPED_NUL, "\x00")
    return tf.strings.regex_replace(texts, _ESCAPED_ESCAPE, _ESCAPE)


def _split_text(texts: tf.Tensor) -> tf.RaggedTensor:
    """GPT-2 words of each string of a 1-D batch (no special-token handling, no NUL)."""
    chunks = tf_text.regex_split(texts, CHUNK_PATTERN, CHUNK_PATTERN)  # [batch, chunks]
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
    words = tf_text.regex_split(segments.flat_values, WORD_PATTERN, WORD_PATTERN)  # [segments, words]
    return tf.RaggedTensor.from_row_splits(words.flat_values, tf.gather(words.row_splits, segment_splits))
