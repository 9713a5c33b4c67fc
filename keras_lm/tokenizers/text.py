"""Small text helpers shared by the tokenizers."""
from __future__ import annotations

import tensorflow as tf

REPLACEMENT_CHARACTER = 0xFFFD


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


def sanitize_text(text):
    """Return ``text`` as a ``tf.string`` tensor that every tokenizer op accepts.

    Invalid UTF-8 sequences become U+FFFD; control characters (NUL included, which some tf-text
    ops treat as the end of the string) and Unicode space separators (no-break space U+00A0,
    ideographic space U+3000, …: whitespace for BERT, which the tokenizers' split pattern misses)
    become spaces. Accepts Python strings/bytes, lists, NumPy arrays,
    ``tf.Tensor`` and ``tf.RaggedTensor``.
    """
    if isinstance(text, tf.RaggedTensor):
        return tf.ragged.map_flat_values(sanitize_text, text)
    if not isinstance(text, tf.Tensor):
        text = tf.convert_to_tensor(text, dtype=tf.string)
    if text.dtype != tf.string:
        raise TypeError(f"Expected string inputs, got dtype {text.dtype.name}.")
    text = tf.strings.unicode_transcode(
        text,
        input_encoding="UTF-8",
        output_encoding="UTF-8",
        errors="replace",
        replacement_char=REPLACEMENT_CHARACTER,
    )
    return tf.strings.regex_replace(text, r"\p{Cc}|\p{Zs}", " ")


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
