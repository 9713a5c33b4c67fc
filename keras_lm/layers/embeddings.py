"""Embedding layers: token ids (range-checked), learned positions, segments and sinusoidal encodings."""
from __future__ import annotations

import math

import keras
from keras import ops


def _check_sequence_length(inputs, start_index: int, max_length: int, layer_name: str) -> None:
    """Raise a clear error when a statically known length exceeds the table."""
    length = inputs.shape[-2] if len(inputs.shape) >= 2 else None
    if isinstance(length, int) and isinstance(start_index, int) and start_index + length > max_length:
        raise ValueError(
            f"{layer_name}: the input has {length} positions (starting at {start_index}) but the "
            f"layer only holds {max_length}. Use a larger `sequence_length` / "
            f"`max_sequence_length` or truncate the input."
        )


class TokenIdError(ValueError):
    """An id outside an embedding table's range ``[0, size)``; the message is one line."""

    _keras_call_info_injected = True  # Keras re-raises it as is, without its multi-line call context


def check_token_ids(token_ids, vocabulary_size: int, layer_name: str = "token_embedding", hint: str | None = None):
    """``token_ids`` unchanged if every id lies in ``[0, vocabulary_size)``; one clear error otherwise.

    Eagerly a ``TokenIdError`` (a ``ValueError``); inside a ``tf.function`` or a SavedModel an
    assertion that fails with ``InvalidArgumentError`` (same message) before the lookup runs.
    Under XLA the check is a no-op. Costs two comparisons and one reduction per call.
    """
    if keras.backend.backend() != "tensorflow" or isinstance(token_ids, keras.KerasTensor):
        return token_ids
    import tensorflow as tf

    ids = tf.convert_to_tensor(token_ids)
    if not ids.dtype.is_integer:
        return token_ids  # keras.layers.Embedding casts (and truncates) other dtypes itself
    in_range = tf.reduce_all(tf.logical_and(ids >= 0, ids < tf.cast(vocabulary_size, ids.dtype)))
    hint = hint or (
        f"token ids must lie in [0, {vocabulary_size}) (the vocabulary size is {vocabulary_size}); "
        "ids outside it come from a tokenizer whose vocabulary does not match the model's `vocabulary_size`"
    )
    message = f"{layer_name}: {hint}. Got ids from"
    if tf.executing_eagerly():
        if not bool(in_range):
            low, high = int(tf.reduce_min(ids)), int(tf.reduce_max(ids))
            raise TokenIdError(f"{message} {low} to {high}.")
        return ids
    check = tf.debugging.Assert(
        in_range, [message, tf.reduce_min(ids), "to", tf.reduce_max(ids)], name="check_token_ids"
    )
    with tf.control_dependencies([check]):
        return tf.identity(ids)


@keras.saving.register_keras_serializable(package="keras_lm")
class TokenEmbedding(keras.layers.Embedding):
    """``keras.layers.Embedding`` of token ids that rejects ids outside ``[0, input_dim)``.

    A plain ``Embedding`` reads row ``V - 5`` for id ``-5`` (NumPy-style wrap-around) while too-large
    ids fail deep inside the gather; here both get one clear error naming the valid range: eagerly
    a ``TokenIdError`` (a ``ValueError``), in ``tf.function`` and SavedModels an
    ``InvalidArgumentError``. Same arguments, weights and config as ``keras.layers.Embedding``.

    Example:
        >>> import numpy as np
        >>> layer = TokenEmbedding(100, 8)
        >>> tuple(layer(np.array([[0, 5, 99]])).shape)
        (1, 3, 8)
        >>> layer(np.array([[3, -5]]))
        Traceback (most recent call last):
        ...
        keras_lm.layers.embeddings.TokenIdError: token_embedding: token ids must lie in [0, 100) ... Got ids from -5 to 3.
    """

    def call(self, inputs):
        return super().call(check_token_ids(inputs, self.input_dim, self.name))


@keras.saving.register_keras_serializable(package="keras_lm")
class PositionEmbedding(keras.layers.Layer):
    """Learned absolute position embeddings.

    Called on a ``[batch, length, hidden]`` tensor it returns the embeddings of positions
    ``start_index .. start_index + length - 1`` with shape ``[1, length, hidden]``, ready to be
    added (broadcast) to the input.

    Args:
        sequence_length: the largest number of positions the layer can embed.
        initializer: initializer of the ``[sequence_length, hidden]`` table.

    Example:
        >>> import numpy as np
        >>> layer = PositionEmbedding(sequence_length=16)
        >>> tuple(layer(np.zeros((2, 5, 8), "float32")).shape)
        (1, 5, 8)
    """

    def __init__(self, sequence_length: int, initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        if sequence_length is None or int(sequence_length) <= 0:
            raise ValueError(f"`sequence_length` must be a positive integer, got {sequence_length!r}.")
        self.sequence_length = int(sequence_length)
        self.initializer = keras.initializers.get(initializer)

    def build(self, inputs_shape):
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.sequence_length, inputs_shape[-1]),
            initializer=self.initializer,
        )

    def call(self, inputs, start_index=0):
        _check_sequence_length(inputs, start_index, self.sequence_length, self.name)
        length = ops.shape(inputs)[-2]
        table = ops.convert_to_tensor(self.embeddings)
        positions = ops.slice(table, (start_index, 0), (length, ops.shape(table)[-1]))
        return ops.expand_dims(positions, 0)

    def compute_output_shape(self, inputs_shape):
        return (1, inputs_shape[-2], inputs_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "sequence_length": self.sequence_length,
                "initializer": keras.initializers.serialize(self.initializer),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_lm")
class SegmentEmbedding(keras.layers.Embedding):
    """Embedding of segment (token type) ids, e.g. sentence A = 0 and sentence B = 1.

    Args:
        num_segments: number of distinct segment ids.
        output_dim: embedding size (the model's hidden size).

    Example:
        >>> import numpy as np
        >>> layer = SegmentEmbedding(num_segments=2, output_dim=8)
        >>> tuple(layer(np.array([[0, 0, 1]])).shape)
        (1, 3, 8)
    """

    def __init__(self, num_segments: int, output_dim: int, **kwargs):
        kwargs.pop("input_dim", None)
        super().__init__(input_dim=num_segments, output_dim=output_dim, **kwargs)
        self.num_segments = num_segments

    def call(self, inputs):
        hint = f"segment ids must lie in [0, {self.num_segments}) (num_segments={self.num_segments})"
        return super().call(check_token_ids(inputs, self.num_segments, self.name, hint))

    def get_config(self):
        config = super().get_config()
        config.pop("input_dim", None)
        config["num_segments"] = self.num_segments
        return config


def sinusoidal_table(length: int, hidden_dim: int, max_wavelength: float = 10000.0, start_index=0):
    """The original Transformer encoding as a ``[length, hidden_dim]`` tensor.

    ``PE[pos, 2i] = sin(pos / max_wavelength^(2i / hidden_dim))`` and
    ``PE[pos, 2i + 1] = cos(pos / max_wavelength^(2i / hidden_dim))``.
    """
    positions = ops.cast(ops.arange(length) + start_index, "float32")
    pair_index = ops.cast(ops.arange(hidden_dim) // 2, "float32")
    inverse_frequency = ops.exp(pair_index * (-2.0 * math.log(max_wavelength) / hidden_dim))
    angles = ops.expand_dims(positions, -1) * ops.expand_dims(inverse_frequency, 0)
    is_even = ops.arange(hidden_dim) % 2 == 0
    return ops.where(is_even, ops.sin(angles), ops.cos(angles))


@keras.saving.register_keras_serializable(package="keras_lm")
class SinusoidalPositionEncoding(keras.layers.Layer):
    """Fixed sinusoidal position encoding of "Attention Is All You Need".

    Even features are ``sin(pos / max_wavelength^(2i/d))``, odd features the matching cosine.
    Returns ``[1, length, hidden]`` for a ``[batch, length, hidden]`` input; there are no weights.

    Args:
        max_wavelength: the base of the geometric progression of wavelengths.

    Example:
        >>> import numpy as np
        >>> encoding = SinusoidalPositionEncoding()(np.zeros((1, 4, 6), "float32"))
        >>> [round(float(v), 4) for v in encoding[0, 1, :2]]
        [0.8415, 0.5403]
    """

    def __init__(self, max_wavelength: float = 10000.0, **kwargs):
        super().__init__(**kwargs)
        self.max_wavelength = max_wavelength

    def call(self, inputs, start_index=0):
        shape = ops.shape(inputs)
        table = sinusoidal_table(shape[-2], shape[-1], self.max_wavelength, start_index)
        return ops.cast(ops.expand_dims(table, 0), self.compute_dtype)

    def compute_output_shape(self, inputs_shape):
        return (1, inputs_shape[-2], inputs_shape[-1])

    def get_config(self):
        config = super().get_config()
        config["max_wavelength"] = self.max_wavelength
        return config
