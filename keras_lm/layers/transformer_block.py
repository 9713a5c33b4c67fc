"""Transformer encoder block: self-attention and feed-forward, each with a residual and LayerNorm."""
from __future__ import annotations

import keras

from keras_lm.layers.attention import MultiHeadSelfAttention
from keras_lm.layers.feed_forward import FeedForward
from keras_lm.layers.utils import clone_initializer, get_activation, serialize_activation


@keras.saving.register_keras_serializable(package="keras_lm")
class TransformerEncoderBlock(keras.layers.Layer):
    """One bidirectional transformer layer.

    Post-LN (BERT, the default)::

        x = LayerNorm(x + Dropout(SelfAttention(x)))
        x = LayerNorm(x + Dropout(FeedForward(x)))

    Pre-LN (``norm_first=True``, GPT-2 style)::

        x = x + Dropout(SelfAttention(LayerNorm(x)))
        x = x + Dropout(FeedForward(LayerNorm(x)))

    Args:
        num_heads: attention heads; the hidden size must be divisible by it.
        intermediate_dim: feed-forward inner width.
        dropout: rate for the attention probabilities and both residual branches.
        activation: feed-forward activation (``"gelu"`` exact, ``"gelu_approximate"`` tanh form).
        layer_norm_epsilon: LayerNorm epsilon.
        norm_first: pre-LN instead of post-LN.
        kernel_initializer, bias_initializer: initializers of every dense projection.

    Call arguments:
        x: ``[B, T, hidden]``.
        padding_mask: optional ``[B, T]``, 1/true for real tokens.
        attention_mask: optional ``[B, T, T]``, 1/true where query t may attend to key s.
        training: enables dropout.

    Example:
        >>> import numpy as np
        >>> block = TransformerEncoderBlock(num_heads=2, intermediate_dim=32)
        >>> tuple(block(np.zeros((2, 5, 8), "float32"), padding_mask=np.ones((2, 5), "int32")).shape)
        (2, 5, 8)
    """

    def __init__(
        self,
        num_heads: int,
        intermediate_dim: int,
        dropout: float = 0.1,
        activation="gelu",
        layer_norm_epsilon: float = 1e-12,
        norm_first: bool = False,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.intermediate_dim = int(intermediate_dim)
        self.dropout = float(dropout)
        self.activation = get_activation(activation)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.norm_first = bool(norm_first)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.supports_masking = True

        self.self_attention = MultiHeadSelfAttention(
            num_heads=self.num_heads,
            dropout=self.dropout,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            bias_initializer=clone_initializer(self.bias_initializer),
            dtype=self.dtype_policy,
            name="self_attention",
        )
        self.self_attention_dropout = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="self_attention_dropout"
        )
        self.self_attention_layer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="self_attention_layer_norm"
        )
        self.feed_forward = FeedForward(
            intermediate_dim=self.intermediate_dim,
            activation=self.activation,
            dropout=self.dropout,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            bias_initializer=clone_initializer(self.bias_initializer),
            dtype=self.dtype_policy,
            name="feed_forward",
        )
        self.feed_forward_layer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="feed_forward_layer_norm"
        )

    def build(self, inputs_shape):
        self.self_attention.build(inputs_shape)
        self.self_attention_layer_norm.build(inputs_shape)
        self.feed_forward.build(inputs_shape)
        self.feed_forward_layer_norm.build(inputs_shape)

    def call(self, x, padding_mask=None, attention_mask=None, training=None):
        def attend(h):
            h = self.self_attention(h, padding_mask=padding_mask, attention_mask=attention_mask, training=training)
            return self.self_attention_dropout(h, training=training)

        def feed_forward(h):
            return self.feed_forward(h, training=training)

        if self.norm_first:
            x = x + attend(self.self_attention_layer_norm(x))
            return x + feed_forward(self.feed_forward_layer_norm(x))
        x = self.self_attention_layer_norm(x + attend(x))
        return self.feed_forward_layer_norm(x + feed_forward(x))

    def compute_output_shape(self, inputs_shape):
        return inputs_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "intermediate_dim": self.intermediate_dim,
                "dropout": self.dropout,
                "activation": serialize_activation(self.activation),
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "norm_first": self.norm_first,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config
