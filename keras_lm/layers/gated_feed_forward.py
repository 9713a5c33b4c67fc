"""Gated feed-forward network (SwiGLU, Shazeer 2020), as used by Llama."""
from __future__ import annotations

import keras
from keras import ops

from keras_lm.layers.utils import clone_initializer, get_activation, serialize_activation


@keras.saving.register_keras_serializable(package="keras_lm")
class GatedFeedForward(keras.layers.Layer):
    """``down(activation(gate(x)) * up(x))``; with ``activation="silu"`` this is SwiGLU.

    The gate and up projections are one ``Dense`` of width ``2 * intermediate_dim`` (gate first,
    then up), a single matmul instead of two.

    Args:
        intermediate_dim: width of the gated inner layer.
        activation: activation of the gate (``"silu"`` for SwiGLU, ``"gelu"`` for GeGLU).
        use_bias: biases on the projections (Llama has none).
        dropout: dropout rate on the output.
        kernel_initializer: initializer of the projections.

    Example:
        >>> import numpy as np
        >>> tuple(GatedFeedForward(intermediate_dim=32)(np.zeros((2, 5, 8), "float32")).shape)
        (2, 5, 8)
    """

    def __init__(
        self,
        intermediate_dim: int,
        activation="silu",
        use_bias: bool = False,
        dropout: float = 0.0,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.intermediate_dim = int(intermediate_dim)
        self.activation = get_activation(activation)
        self.use_bias = bool(use_bias)
        self.dropout = float(dropout)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.supports_masking = True
        self.output_dropout = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy, name="output_dropout")

    def build(self, inputs_shape):
        self.gate_up_dense = keras.layers.Dense(
            2 * self.intermediate_dim,
            use_bias=self.use_bias,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            dtype=self.dtype_policy,
            name="gate_up",
        )
        self.gate_up_dense.build(inputs_shape)
        self.output_dense = keras.layers.Dense(
            inputs_shape[-1],
            use_bias=self.use_bias,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            dtype=self.dtype_policy,
            name="down",
        )
        self.output_dense.build(tuple(inputs_shape[:-1]) + (self.intermediate_dim,))

    def call(self, x, training=None):
        gate, up = ops.split(self.gate_up_dense(x), 2, axis=-1)
        x = self.output_dense(self.activation(gate) * up)
        return self.output_dropout(x, training=training)

    def compute_output_shape(self, inputs_shape):
        return inputs_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "intermediate_dim": self.intermediate_dim,
                "activation": serialize_activation(self.activation),
                "use_bias": self.use_bias,
                "dropout": self.dropout,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
