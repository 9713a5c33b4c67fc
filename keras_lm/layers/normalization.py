"""Root-mean-square layer normalisation (Zhang & Sennrich, 2019), as used by Llama."""
from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_lm")
class RMSNorm(keras.layers.Layer):
    """``x / sqrt(mean(x^2) + epsilon) * scale`` over the last axis, without centring or bias.

    The statistics are computed in float32 whatever the compute dtype (e.g. under
    ``mixed_bfloat16``); the result is cast back to the compute dtype after the scale, as in
    Hugging Face's ``LlamaRMSNorm`` up to where the cast happens.

    Args:
        epsilon: added to the mean square before the square root.
        scale_initializer: initializer of the ``[hidden]`` scale.

    Example:
        >>> import numpy as np
        >>> out = RMSNorm()(np.array([[3.0, 4.0]], "float32"))
        >>> [round(float(v), 4) for v in out[0]]
        [0.8485, 1.1314]
    """

    def __init__(self, epsilon: float = 1e-6, scale_initializer="ones", **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)
        self.scale_initializer = keras.initializers.get(scale_initializer)
        self.supports_masking = True

    def build(self, inputs_shape):
        self.scale = self.add_weight(name="scale", shape=(inputs_shape[-1],), initializer=self.scale_initializer)

    def call(self, x):
        x32 = ops.cast(x, "float32")
        mean_square = ops.mean(ops.square(x32), axis=-1, keepdims=True)
        normalized = x32 * ops.rsqrt(mean_square + self.epsilon)
        return ops.cast(normalized * ops.cast(self.scale, "float32"), self.compute_dtype)

    def compute_output_shape(self, inputs_shape):
        return inputs_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {"epsilon": self.epsilon, "scale_initializer": keras.initializers.serialize(self.scale_initializer)}
        )
        return config
