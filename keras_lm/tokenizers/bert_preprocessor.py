"""BERT input packing: raw text (one or two segments) to token_ids, segment_ids and padding_mask."""
from __future__ import annotations

import keras
import keras_hub
import tensorflow as tf
from keras_hub.src.utils.tensor_utils import no_convert_scope

from keras_lm.tokenizers.text import TokenizerInputError, checked
from keras_lm.tokenizers.word_piece import WordPiece


@keras.saving.register_keras_serializable(package="keras_lm")
class BertPreprocessor(keras.layers.Layer):
    """Tokenize one or two text segments and pack them as ``[CLS] a [SEP]`` or ``[CLS] a [SEP] b [SEP]``.

    Segments are truncated (``"round_robin"``: take tokens alternately; ``"waterfall"``: the first
    segment first) so that the packed sequence, special tokens included, fits ``sequence_length``;
    the rest is padded with ``[PAD]``. Segment ids are 0 for ``[CLS]``, the first segment and its
    ``[SEP]``, and 1 for the second segment and the final ``[SEP]``.

    Input: a ``tf.string`` batch ``[B]`` (one segment) or a tuple/list ``(first, second)`` of them;
    scalars work too (e.g. inside ``tf.data.Dataset.map``) and give unbatched outputs. Any bytes are
    accepted: invalid UTF-8 is replaced by U+FFFD, control characters count as whitespace. The two
    segments of a pair must have the same shape (one second text per first text): otherwise a
    ``TokenizerInputError`` (a ``ValueError``), or in a graph/SavedModel an ``InvalidArgumentError``,
    before any text is tokenized.

    Output: ``{"token_ids": int32 [B, L], "segment_ids": int32 [B, L], "padding_mask": bool [B, L]}``.

    Args:
        tokenizer: a ``WordPiece`` tokenizer.
        sequence_length: packed length ``L``.
        truncate: ``"round_robin"`` or ``"waterfall"``.

    Example:
        >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "king", "is", "dead", "long", "live"]
        >>> preprocessor = BertPreprocessor(WordPiece(vocab), sequence_length=8)
        >>> out = preprocessor((["The king is dead."], ["Long live the king!"]))
        >>> out["token_ids"].numpy().tolist()
        [[2, 5, 6, 7, 3, 9, 10, 3]]
        >>> out["segment_ids"].numpy().tolist()
        [[0, 0, 0, 0, 0, 1, 1, 1]]
    """

    def __init__(
        self,
        tokenizer: WordPiece,
        sequence_length: int = 128,
        truncate: str = "round_robin",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(tokenizer, dict):
            tokenizer = keras.saving.deserialize_keras_object(tokenizer)
        if sequence_length < 3:
            raise ValueError(f"sequence_length must be at least 3 ([CLS] a [SEP]); got {sequence_length}.")
        self.tokenizer = tokenizer
        self.sequence_length = int(sequence_length)
        self.truncate = truncate
        self.packer = keras_hub.layers.MultiSegmentPacker(
            sequence_length=self.sequence_length,
            start_value=tokenizer.cls_id,
            end_value=tokenizer.sep_id,
            pad_value=tokenizer.pad_id,
            truncate=truncate,
            _allow_python_workflow=False,
        )
        self._convert_input_args = False  # strings and tuples of strings go to call() as given
        self._allow_non_tensor_positional_args = True
        self.built = True

    def call(self, inputs) -> dict[str, tf.Tensor]:
        segments = _as_segments(inputs)
        if not 1 <= len(segments) <= 2:
            raise ValueError(f"BertPreprocessor takes one or two segments; got {len(segments)}.")
        with tf.device("cpu"), no_convert_scope():
            segments = _same_shape(segments)
            token_ids, segment_ids = self.packer(tuple(self.tokenizer(s) for s in segments))
            return {
                "token_ids": tf.cast(token_ids, tf.int32),
                "segment_ids": tf.cast(segment_ids, tf.int32),
                "padding_mask": tf.not_equal(token_ids, self.tokenizer.pad_id),
            }

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "tokenizer": keras.saving.serialize_keras_object(self.tokenizer),
                "sequence_length": self.sequence_length,
                "truncate": self.truncate,
            }
        )
        return config

    @classmethod
    def from_config(cls, config: dict) -> "BertPreprocessor":
        config = dict(config)
        config["tokenizer"] = keras.saving.deserialize_keras_object(config["tokenizer"])
        return cls(**config)


def _as_segments(inputs) -> tuple:
    """A tuple (or a list of tensors/lists) is segments; anything else, a list of strings included, is one."""
    if isinstance(inputs, tuple):
        return inputs
    if isinstance(inputs, list) and inputs and not isinstance(inputs[0], (str, bytes)):
        return tuple(inputs)
    return (inputs,)


def _same_shape(segments: tuple) -> tuple:
    """The segments as tensors, once checked to have the same shape (tf-text crashes otherwise)."""
    if len(segments) < 2:
        return segments
    first, second = (s if isinstance(s, tf.Tensor) else tf.convert_to_tensor(s) for s in segments)
    message = (
        "BertPreprocessor: the two segments of a pair must have the same shape (one second text "
        "for each first text); got shapes"
    )
    if not first.shape.is_compatible_with(second.shape):
        raise TokenizerInputError(f"{message} {_dims(first)} and {_dims(second)}.")
    if first.shape.is_fully_defined() and second.shape.is_fully_defined():
        return first, second  # known to be equal: no run-time check (e.g. scalars in tf.data)
    first_shape, second_shape = tf.shape(first), tf.shape(second)
    same = tf.reduce_all(tf.equal(first_shape, second_shape))
    return checked((first, second), same, message, [first_shape, "and", second_shape])


def _dims(tensor: tf.Tensor):
    return tensor.shape.as_list() if tensor.shape.rank is not None else "unknown"
