"""Small text helpers shared by the tokenizers."""
from __future__ import annotations

import tensorflow as tf

REPLACEMENT_CHARACTER = 0xFFFD


def sanitize_text(text):
    """Return ``text`` as a ``tf.string`` tensor that every tokenizer op accepts.

    Invalid UTF-8 sequences become U+FFFD and control characters (NUL included, which some
    tf-text ops treat as the end of the string) become spaces; the tokenizers treat control
    characters as whitespace anyway. Accepts Python strings/bytes, lists, NumPy arrays,
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
    return tf.strings.regex_replace(text, r"\p{Cc}", " ")


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
