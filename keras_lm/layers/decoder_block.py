"""Pre-LN transformer decoder block: causal self-attention and a feed-forward, each with a residual."""
from __future__ import annotations

import keras

from keras_lm.layers.causal_attention import CausalSelfAttention
from keras_lm.layers.feed_forward import FeedForward
from keras_lm.layers.gated_feed_forward import GatedFeedForward
from keras_lm.layers.normalization import RMSNorm
from keras_lm.layers.utils import clone_initializer, get_activation, serialize_activation

NORMALIZATIONS = ("layer_norm", "rms_norm")
FEED_FORWARDS = ("mlp", "gated")


@keras.saving.register_keras_serializable(package="keras_lm")
class TransformerDecoderBlock(keras.layers.Layer):
    """One pre-LN decoder layer (GPT-2, Llama)::

        x = x + Dropout(CausalSelfAttention(Norm(x)))
        x = x + FeedForward(Norm(x))

    GPT-2: ``normalization="layer_norm"``, ``feed_forward="mlp"``, ``activation="gelu_approximate"``,
    biases, learned positions outside the block. Llama: ``normalization="rms_norm"``,
    ``feed_forward="gated"`` with ``activation="silu"`` (SwiGLU), no biases, RoPE inside the
    attention (``rope_max_wavelength``), grouped-query attention (``num_key_value_heads``).

    Args:
        num_heads, num_key_value_heads, head_dim, rope_max_wavelength: see ``CausalSelfAttention``.
        intermediate_dim: feed-forward inner width.
        dropout: rate for the attention probabilities and both residual branches.
        activation: feed-forward (or gate) activation.
        normalization: ``"layer_norm"`` or ``"rms_norm"``; statistics in float32.
        layer_norm_epsilon: epsilon of the norms.
        feed_forward: ``"mlp"`` (Dense-activation-Dense) or ``"gated"`` (GLU family).
        use_bias: biases on every projection.
        kernel_initializer: initializer of every projection.

    Call arguments:
        x: ``[B, T, hidden]``.
        padding_mask: optional 0 / document-number mask (see ``CausalSelfAttention``).
        cache, cache_index: optional KV cache; when given the call returns ``(x, cache)``.
        training: enables dropout.

    Example:
        >>> import numpy as np
        >>> block = TransformerDecoderBlock(num_heads=2, intermediate_dim=32)
        >>> tuple(block(np.zeros((2, 5, 8), "float32"), padding_mask=np.ones((2, 5), "int32")).shape)
        (2, 5, 8)
    """

    def __init__(
        self,
        num_heads: int,
        intermediate_dim: int,
        num_key_value_heads: int | None = None,
        head_dim: int | None = None,
        rope_max_wavelength: float | None = None,
        dropout: float = 0.0,
        activation="gelu_approximate",
        normalization: str = "layer_norm",
        layer_norm_epsilon: float = 1e-5,
        feed_forward: str = "mlp",
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"Unknown normalization {normalization!r}; use one of {', '.join(NORMALIZATIONS)}.")
        if feed_forward not in FEED_FORWARDS:
            raise ValueError(f"Unknown feed_forward {feed_forward!r}; use one of {', '.join(FEED_FORWARDS)}.")
        self.num_heads = int(num_heads)
        self.intermediate_dim = int(intermediate_dim)
        self.num_key_value_heads = int(num_key_value_heads or num_heads)
        self.head_dim = None if head_dim is None else int(head_dim)
        self.rope_max_wavelength = None if rope_max_wavelength is None else float(rope_max_wavelength)
        self.dropout = float(dropout)
        self.activation = get_activation(activation)
        self.normalization = normalization
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.feed_forward_type = feed_forward
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.supports_masking = True

        self.self_attention = CausalSelfAttention(
            num_heads=self.num_heads,
            num_key_value_heads=self.num_key_value_heads,
            head_dim=self.head_dim,
            rope_max_wavelength=self.rope_max_wavelength,
            dropout=self.dropout,
            use_bias=self.use_bias,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            dtype=self.dtype_policy,
            name="self_attention",
        )
        self.self_attention_dropout = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="self_attention_dropout"
        )
        self.self_attention_norm = self._norm("self_attention_norm")
        if feed_forward == "mlp":
            self.feed_forward = FeedForward(
                intermediate_dim=self.intermediate_dim,
                activation=self.activation,
                dropout=self.dropout,
                kernel_initializer=clone_initializer(self.kernel_initializer),
                dtype=self.dtype_policy,
                name="feed_forward",
            )
        else:
            self.feed_forward = GatedFeedForward(
                intermediate_dim=self.intermediate_dim,
                activation=self.activation,
                use_bias=self.use_bias,
                dropout=self.dropout,
                kernel_initializer=clone_initializer(self.kernel_initializer),
                dtype=self.dtype_policy,
                name="feed_forward",
            )
        self.feed_forward_norm = self._norm("feed_forward_norm")

    def _norm(self, name):
        if self.normalization == "rms_norm":
            return RMSNorm(epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name=name)
        return keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name=name)

    def build(self, inputs_shape):
        self.self_attention_norm.build(inputs_shape)
        self.self_attention.build(inputs_shape)
        self.feed_forward_norm.build(inputs_shape)
        self.feed_forward.build(inputs_shape)

    def call(self, x, padding_mask=None, cache=None, cache_index=None, training=None):
        h = self.self_attention_norm(x)
        if cache is None:
            h = self.self_attention(h, padding_mask=padding_mask, training=training)
        else:
            h, cache = self.self_attention(
                h, padding_mask=padding_mask, cache=cache, cache_index=cache_index, training=training
            )
        x = x + self.self_attention_dropout(h, training=training)
        x = x + self.feed_forward(self.feed_forward_norm(x), training=training)
        return x if cache is None else (x, cache)

    def compute_output_shape(self, inputs_shape):
        return inputs_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "intermediate_dim": self.intermediate_dim,
                "num_key_value_heads": self.num_key_value_heads,
                "head_dim": self.head_dim,
                "rope_max_wavelength": self.rope_max_wavelength,
                "dropout": self.dropout,
                "activation": serialize_activation(self.activation),
                "normalization": self.normalization,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "feed_forward": self.feed_forward_type,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
