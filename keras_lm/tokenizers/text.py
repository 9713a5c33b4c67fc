"""Small text helpers shared by the tokenizers."""
from __future__ import annotations

import re
from typing import Sequence

import tensorflow as tf
import tensorflow_text as tf_text

REPLACEMENT_CHARACTER = 0xFFFD

# Unicode White_Space (what ``\s`` means in Python's ``regex``, Rust's ``char::is_whitespace`` and
# BERT's split; RE2's ``\s``, which TensorFlow uses, is ASCII only and lacks \v).
WHITESPACE = (
    r"\t\n\x{0b}\f\r \x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}"
)


class TokenizerInputError(ValueError):
    """Input a tokenizer or preprocessor cannot take (e.g. ids outside the vocabulary); one-line message."""

    _keras_call_info_injected = True  # Keras re-raises it as is, without its multi-line call context


def checked(value, condition, message: str, data=()):
    """``value`` (a tensor or a nest of them), once ``condition`` holds.

    Eagerly a ``TokenizerInputError`` if it does not; in a graph (``tf.function``, ``tf.data``,
    SavedModels) an assertion that runs before anything using the returned tensors and fails
    with ``InvalidArgumentError`` carrying ``message`` and ``data``.
    """
    if tf.executing_eagerly():
        if not bool(condition):
            details = " ".join(str(d.numpy().tolist() if hasattr(d, "numpy") else d) for d in data)
            raise TokenizerInputError(f"{message}{' ' + details if details else ''}.")
        return value
    assertion = tf.debugging.Assert(condition, [message, *data])
    with tf.control_dependencies([assertion]):
        return tf.nest.map_structure(tf.identity, value)


def as_id_tensor(ids):
    """Token ids as a ``tf.Tensor`` or ``tf.RaggedTensor`` (nested Python lists may be ragged)."""
    if isinstance(ids, (tf.Tensor, tf.RaggedTensor)):
        return ids
    try:
        return tf.convert_to_tensor(ids)
    except (ValueError, TypeError):
        return tf.ragged.constant(ids)


def ids_in_vocabulary(ids, vocabulary_size: int, owner: str):
    """``ids`` once checked to be integers in ``[0, vocabulary_size)``.

    Tokenizer kernels crash (tf-text's WordPiece) or silently drop ids (byte-level BPE) outside
    their vocabulary; ``owner`` (e.g. ``"WordPiece.detokenize"``) starts the one-line error.
    """
    ids = as_id_tensor(ids)
    if not ids.dtype.is_integer:
        raise TokenizerInputError(f"{owner} takes integer token ids; got dtype {ids.dtype.name}.")
    flat = ids.flat_values if isinstance(ids, tf.RaggedTensor) else ids
    in_range = tf.reduce_all(tf.logical_and(flat >= 0, flat < tf.cast(vocabulary_size, flat.dtype)))
    message = f"{owner}: token ids must lie in [0, {vocabulary_size}) (the vocabulary size); got ids from"
    flat = checked(flat, in_range, message, [tf.reduce_min(flat), "to", tf.reduce_max(flat)])
    return ids.with_flat_values(flat) if isinstance(ids, tf.RaggedTensor) else flat


def replace_invalid_utf8(text: tf.Tensor) -> tf.Tensor:
    """``text`` with invalid UTF-8 sequences replaced by U+FFFD (everything else kept)."""
    return tf.strings.unicode_transcode(
        text,
        input_encoding="UTF-8",
        output_encoding="UTF-8",
        errors="replace",
        replacement_char=REPLACEMENT_CHARACTER,
    )


def as_string_tensor(text):
    """Python strings/bytes, lists, NumPy arrays or tensors as a ``tf.string`` tensor (ragged kept)."""
    if not isinstance(text, (tf.Tensor, tf.RaggedTensor)):
        text = tf.convert_to_tensor(text, dtype=tf.string)
    if text.dtype != tf.string:
        raise TypeError(f"Expected string inputs, got dtype {text.dtype.name}.")
    return text


def sanitize_text(text):
    """Return ``text`` as a ``tf.string`` tensor that every tokenizer op accepts.

    Invalid UTF-8 sequences become U+FFFD; control characters (NUL included, which some tf-text
    ops treat as the end of the string), format characters (zero-width space, …) and Unicode
    space separators (no-break space U+00A0, ideographic space U+3000, …) become spaces.
    Accepts Python strings/bytes, lists, NumPy arrays, ``tf.Tensor`` and ``tf.RaggedTensor``.
    """
    text = as_string_tensor(text)
    if isinstance(text, tf.RaggedTensor):
        return tf.ragged.map_flat_values(sanitize_text, text)
    return tf.strings.regex_replace(replace_invalid_utf8(text), r"\p{Cc}|\p{Cf}|\p{Zs}", " ")


def text_only(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """A dataset of strings from a dataset of strings or of dicts with a ``"text"`` key."""
    spec = dataset.element_spec
    if isinstance(spec, dict):
        if "text" not in spec:
            raise ValueError(f"Expected a dataset of strings or of dicts with a 'text' key; got keys {sorted(spec)}.")
        dataset = dataset.map(lambda example: example["text"])
        spec = dataset.element_spec
    if not isinstance(spec, tf.TensorSpec) or spec.dtype != tf.string:
        raise ValueError(f"Expected a dataset of strings or of dicts with a 'text' key; got {spec}.")
    return dataset


# tf-text's regex_split stops at NUL. NUL is escaped to two private-use characters of the same
# class ("other", like NUL), which keeps every word boundary; the escape character itself is
# escaped too, so unescaping restores the exact text.
_ESCAPE, _ESCAPED_NUL, _ESCAPED_ESCAPE = "\uf8ff", "\uf8ff\uf8fe", "\uf8ff\uf8fd"


def escape_nul(texts: tf.Tensor) -> tf.Tensor:
    texts = tf.strings.regex_replace(texts, _ESCAPE, _ESCAPED_ESCAPE)
    return tf.strings.regex_replace(texts, r"\x00", _ESCAPED_NUL)


def unescape_nul(texts: tf.Tensor) -> tf.Tensor:
    # Every escape character starts an escape, so decoding NULs first is unambiguous.
    texts = tf.strings.regex_replace(texts, _ESCAPED_NUL, "\x00")
    return tf.strings.regex_replace(texts, _ESCAPED_ESCAPE, _ESCAPE)


def lookup_code_points(mapping: dict[int, int], code_points: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """``(found, value)`` for int32 ``code_points``: ``value`` is ``mapping[c]`` where ``found == c``.

    A sorted-table search in core TF ops (no lookup-table resource to track in SavedModels).
    """
    keys = tf.constant(sorted(mapping), tf.int32)
    values = tf.constant([mapping[k] for k in sorted(mapping)], tf.int32)
    index = tf.minimum(tf.searchsorted(keys, code_points), len(mapping) - 1)
    return tf.gather(keys, index), tf.gather(values, index)


def special_tokens_pattern(special_tokens: Sequence[str]) -> str:
    """A regular expression matching any of ``special_tokens``, longest first (leftmost-longest)."""
    return "|".join(re.escape(t) for t in sorted(set(special_tokens), key=len, reverse=True))


def split_keeping_special_tokens(texts: tf.Tensor, special_tokens: Sequence[str], split_text) -> tf.RaggedTensor:
    """``split_text(pieces)`` for the text between special tokens; each special token is one word.

    Special tokens are found in the raw text first (as Hugging Face tokenizers' added tokens
    are), so normalization never changes them. ``texts`` is 1-D; ``split_text`` maps a 1-D batch
    of strings to a ``tf.RaggedTensor`` ``[batch, words]``; so does this function.
    """
    if not special_tokens:
        return split_text(texts)
    alternatives = special_tokens_pattern(special_tokens)
    pieces = tf_text.regex_split(escape_nul(texts), alternatives, alternatives)  # [batch, pieces]
    flat = unescape_nul(pieces.flat_values)
    special = tf.strings.regex_full_match(flat, alternatives)
    words = split_text(flat)  # [pieces, words]
    keep = tf.repeat(tf.logical_not(special), words.row_lengths())
    text_words = tf.ragged.boolean_mask(words, words.with_flat_values(keep))
    special_words = tf.ragged.boolean_mask(flat[:, tf.newaxis], special[:, tf.newaxis])
    words = tf.concat([text_words, special_words], axis=1)  # a special piece is one word
    return tf.RaggedTensor.from_row_splits(words.flat_values, tf.gather(words.row_splits, pieces.row_splits))
