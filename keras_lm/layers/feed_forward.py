"""Position-wise feed-forward network of a transformer block."""
from __future__ import annotations

import keras

from keras_lm.layers.utils import clone_initializer, get_activation, serialize_activation


@keras.saving.register_keras_serializable(package="keras_lm")
class FeedForward(keras.layers.Layer):
    """``Dense(intermediate_dim, activation) -> Dense(hidden_dim) -> Dropout``.

    The output size equals the input size.

    Args:
        intermediate_dim: width of the inner layer.
        activation: activation of the inner layer; ``"gelu"`` is the exact erf GELU,
            ``"gelu_approximate"`` the tanh form used by the original BERT code and keras-hub.
        dropout: dropout rate on the output.
        kernel_initializer, bias_initializer: initializers of both dense layers.

    Example:
        >>> import numpy as np
        >>> tuple(FeedForward(intermediate_dim=32)(np.zeros((2, 5, 8), "float32")).shape)
        (2, 5, 8)
    """

    def __init__(
        self,
        intermediate_dim: int,
        activation="gelu",
        dropout: float = 0.0,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.intermediate_dim = int(intermediate_dim)
        self.activation = get_activation(activation)
        self.dropout = float(dropout)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.supports_masking = True
        self.output_dropout = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy, name="output_dropout")

    def build(self, inputs_shape):
        self.intermediate_dense = keras.layers.Dense(
            self.intermediate_dim,
            activation=self.activation,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            bias_initializer=clone_initializer(self.bias_initializer),
            dtype=self.dtype_policy,
            name="intermediate_dense",
        )
        self.intermediate_dense.build(inputs_shape)
        self.output_dense = keras.layers.Dense(
            inputs_shape[-1],
            kernel_initializer=clone_initializer(self.kernel_initializer),
            bias_initializer=clone_initializer(self.bias_initializer),
            dtype=self.dtype_policy,
            name="output_dense",
        )
        self.output_dense.build(tuple(inputs_shape[:-1]) + (self.intermediate_dim,))

    def call(self, x, training=None):
        x = self.intermediate_dense(x)
        x = self.output_dense(x)
        return self.output_dropout(x, training=training)

    def compute_output_shape(self, inputs_shape):
        return inputs_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "intermediate_dim": self.intermediate_dim,
                "activation": serialize_activation(self.activation),
                "dropout": self.dropout,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config
