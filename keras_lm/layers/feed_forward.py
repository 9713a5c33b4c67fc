"""Position-wise feed-forward network of a transformer block: plain or gated (GLU family)."""
from __future__ import annotations

import keras
from keras import ops

from keras_lm.layers.utils import clone_initializer, get_activation, serialize_activation


@keras.saving.register_keras_serializable(package="keras_lm")
class FeedForward(keras.layers.Layer):
    """``Dense(hidden) <- activation <- Dense(intermediate_dim)``, then dropout; output size = input size.

    Plain (BERT, GPT-2): ``output(activation(intermediate(x)))``. Gated (``gated=True``, Shazeer 2020):
    ``output(activation(gate(x)) * up(x))`` with the gate and up projections fused into one ``Dense``
    named ``gate_up`` of width ``2 * intermediate_dim`` (gate first); with ``activation="silu"`` this
    is Llama's SwiGLU, with ``"gelu_approximate"`` T5 v1.1's GeGLU.

    Args:
        intermediate_dim: width of the inner layer.
        activation: ``"gelu"`` (exact erf), ``"gelu_approximate"`` (tanh form), ``"relu"``,
            ``"silu"``, or any Keras activation.
        gated: the GLU form above.
        use_bias: biases on the projections.
        dropout: dropout rate on the output.
        kernel_initializer, bias_initializer: initializers of the projections.

    Example:
        >>> import numpy as np
        >>> tuple(FeedForward(intermediate_dim=32)(np.zeros((2, 5, 8), "float32")).shape)
        (2, 5, 8)
        >>> tuple(FeedForward(intermediate_dim=32, gated=True, activation="silu")(np.zeros((2, 5, 8), "float32")).shape)
        (2, 5, 8)
    """

    def __init__(
        self,
        intermediate_dim: int,
        activation="gelu",
        gated: bool = False,
        use_bias: bool = True,
        dropout: float = 0.0,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.intermediate_dim = int(intermediate_dim)
        self.activation = get_activation(activation)
        self.gated = bool(gated)
        self.use_bias = bool(use_bias)
        self.dropout = float(dropout)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.supports_masking = True
        self.output_dropout = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy, name="output_dropout")

    def _dense(self, units, name, activation=None):
        return keras.layers.Dense(
            units,
            activation=activation,
            use_bias=self.use_bias,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            bias_initializer=clone_initializer(self.bias_initializer),
            dtype=self.dtype_policy,
            name=name,
        )

    def build(self, inputs_shape):
        if self.gated:
            self.gate_up_dense = self._dense(2 * self.intermediate_dim, "gate_up")
            self.gate_up_dense.build(inputs_shape)
        else:
            # The activation inside the Dense lets the backend fuse bias and activation.
            self.intermediate_dense = self._dense(self.intermediate_dim, "intermediate_dense", self.activation)
            self.intermediate_dense.build(inputs_shape)
        self.output_dense = self._dense(inputs_shape[-1], "output_dense")
        self.output_dense.build(tuple(inputs_shape[:-1]) + (self.intermediate_dim,))

    def call(self, x, training=None):
        if self.gated:
            gate, up = ops.split(self.gate_up_dense(x), 2, axis=-1)
            x = self.activation(gate) * up
        else:
            x = self.intermediate_dense(x)
        return self.output_dropout(self.output_dense(x), training=training)

    def compute_output_shape(self, inputs_shape):
        return inputs_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "intermediate_dim": self.intermediate_dim,
                "activation": serialize_activation(self.activation),
                "gated": self.gated,
                "use_bias": self.use_bias,
                "dropout": self.dropout,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config
