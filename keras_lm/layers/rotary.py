"""Rotary position embedding (RoPE, Su et al., 2021) in the "rotate half" layout of GPT-NeoX and Llama."""
from __future__ import annotations

import keras
from keras import ops


def rotary_angles(positions, head_dim: int, max_wavelength: float = 10000.0):
    """``(cos, sin)`` of shape ``[..., head_dim]`` for integer ``positions`` of shape ``[...]``.

    Frequency ``i`` (of ``head_dim // 2``) is ``max_wavelength ** (-2i / head_dim)``; the two
    halves of the last axis repeat the same angles. Computed in float32.
    """
    exponents = ops.cast(ops.arange(0, head_dim, 2), "float32") / float(head_dim)
    inverse_frequency = 1.0 / ops.power(ops.cast(max_wavelength, "float32"), exponents)
    angles = ops.cast(positions, "float32")[..., None] * inverse_frequency
    angles = ops.concatenate([angles, angles], axis=-1)
    return ops.cos(angles), ops.sin(angles)


def _rotate_half(x):
    first, second = ops.split(x, 2, axis=-1)
    return ops.concatenate([-second, first], axis=-1)


@keras.saving.register_keras_serializable(package="keras_lm")
class RotaryEmbedding(keras.layers.Layer):
    """Rotates query/key features by position-dependent angles; has no weights.

    Call arguments:
        x: ``[batch, heads, length, head_dim]`` (``head_dim`` even).
        start_index: position of the first of the ``length`` positions (an int or a scalar tensor,
            e.g. the KV-cache write index during generation).

    Args:
        max_wavelength: the RoPE base ("rope_theta"), 10000 in Llama 1/2.

    Example:
        >>> import numpy as np
        >>> x = np.ones((1, 1, 3, 4), "float32")
        >>> tuple(RotaryEmbedding()(x, start_index=5).shape)
        (1, 1, 3, 4)
    """

    def __init__(self, max_wavelength: float = 10000.0, **kwargs):
        super().__init__(**kwargs)
        self.max_wavelength = float(max_wavelength)

    def call(self, x, start_index=0):
        head_dim = x.shape[-1]
        if head_dim is None or head_dim % 2:
            raise ValueError(f"RotaryEmbedding needs an even, static head_dim; got {head_dim}.")
        positions = ops.arange(ops.shape(x)[-2]) + ops.cast(start_index, "int32")
        cos, sin = rotary_angles(positions, head_dim, self.max_wavelength)
        x32 = ops.cast(x, "float32")
        return ops.cast(x32 * cos + _rotate_half(x32) * sin, self.compute_dtype)

    def compute_output_shape(self, inputs_shape):
        return inputs_shape

    def get_config(self):
        config = super().get_config()
        config["max_wavelength"] = self.max_wavelength
        return config
