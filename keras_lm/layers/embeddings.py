"""Embedding layers: learned positions, segments and sinusoidal position encodings.

Token embeddings use ``keras.layers.Embedding`` directly.
"""
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
