"""The transformer block of every family: self-attention, optional cross-attention and a feed-forward."""
from __future__ import annotations

import keras

from keras_lm.layers.attention import IMPLEMENTATIONS, MultiHeadAttention
from keras_lm.layers.feed_forward import FeedForward
from keras_lm.layers.normalization import RMSNorm
from keras_lm.layers.utils import clone_initializer, get_activation, serialize_activation

NORMALIZATIONS = ("layer_norm", "rms_norm")
FEED_FORWARDS = ("mlp", "gated")


@keras.saving.register_keras_serializable(package="keras_lm")
class TransformerBlock(keras.layers.Layer):
    """One transformer layer for encoders, decoders and encoder-decoders.

    Post-LN (BERT, the original Transformer; ``norm_first=False``)::

        x = Norm(x + Dropout(SelfAttention(x)))
        x = Norm(x + Dropout(CrossAttention(x, context)))      # cross_attention=True
        x = Norm(x + FeedForward(x))

    Pre-LN (GPT-2, Llama, T5; ``norm_first=True``)::

        x = x + Dropout(SelfAttention(Norm(x)))
        x = x + Dropout(CrossAttention(Norm(x), context))      # cross_attention=True
        x = x + FeedForward(Norm(x))

    BERT: post-LN, ``"layer_norm"``, ``"mlp"`` with GELU, biases. GPT-2: pre-LN, causal,
    ``"gelu_approximate"``. Llama: pre-LN, causal, ``"rms_norm"``, ``"gated"`` with ``"silu"``, no
    biases, RoPE (``rope_max_wavelength``), grouped-query heads (``num_key_value_heads``). T5:
    pre-LN, ``"rms_norm"``, no biases, ``attention_scale=1.0`` and a ``position_bias`` input.

    Args:
        num_heads, num_key_value_heads, head_dim, rope_max_wavelength, implementation: see
            ``MultiHeadAttention``.
        intermediate_dim: feed-forward inner width.
        dropout: rate for the attention probabilities, the residual branches and the feed-forward output.
        activation: feed-forward (or gate) activation.
        normalization: ``"layer_norm"`` or ``"rms_norm"`` (statistics in float32).
        layer_norm_epsilon: epsilon of the norms.
        norm_first: pre-LN instead of post-LN.
        feed_forward: ``"mlp"`` or ``"gated"``.
        use_bias: biases on every projection (and LayerNorm centring is kept either way).
        cross_attention: add a cross-attention sub-layer over a ``context`` sequence.
        attention_scale: multiplier of the attention scores; defaults to ``head_dim ** -0.5``.
        kernel_initializer, bias_initializer: initializers of every projection.

    Call arguments:
        x: ``[B, T, hidden]``.
        padding_mask: ``[B, T]`` 0 for padding, else a document number (1 when unpacked); with a
            ``cache`` it covers every cache position.
        attention_mask: optional ``[B, T, T]`` pairwise mask of the self-attention.
        use_causal_mask: causal self-attention (decoders).
        position_bias: optional additive ``[B or 1, heads, T, T]`` self-attention bias.
        context, context_padding_mask, context_cache: the cross-attention inputs.
        cache, cache_index: the self-attention KV cache; given, the call returns ``(x, cache)``.
        training: enables dropout.

    Example:
        >>> import numpy as np
        >>> block = TransformerBlock(num_heads=2, intermediate_dim=32)
        >>> tuple(block(np.zeros((2, 5, 8), "float32"), padding_mask=np.ones((2, 5), "int32")).shape)
        (2, 5, 8)
        >>> decoder_block = TransformerBlock(num_heads=2, intermediate_dim=32, norm_first=True, cross_attention=True)
        >>> tuple(decoder_block(np.zeros((2, 5, 8), "float32"), use_causal_mask=True,
        ...                     context=np.zeros((2, 7, 8), "float32")).shape)
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
        activation="gelu",
        normalization: str = "layer_norm",
        layer_norm_epsilon: float = 1e-12,
        norm_first: bool = False,
        feed_forward: str = "mlp",
        use_bias: bool = True,
        cross_attention: bool = False,
        attention_scale: float | None = None,
        implementation: str = "auto",
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"Unknown normalization {normalization!r}; use one of {', '.join(NORMALIZATIONS)}.")
        if feed_forward not in FEED_FORWARDS:
            raise ValueError(f"Unknown feed_forward {feed_forward!r}; use one of {', '.join(FEED_FORWARDS)}.")
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(f"Unknown implementation {implementation!r}; use one of {', '.join(IMPLEMENTATIONS)}.")
        self.num_heads = int(num_heads)
        self.intermediate_dim = int(intermediate_dim)
        self.num_key_value_heads = int(num_key_value_heads or num_heads)
        self.head_dim = None if head_dim is None else int(head_dim)
        self.rope_max_wavelength = None if rope_max_wavelength is None else float(rope_max_wavelength)
        self.dropout = float(dropout)
        self.activation = get_activation(activation)
        self.normalization = normalization
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.norm_first = bool(norm_first)
        self.feed_forward_type = feed_forward
        self.use_bias = bool(use_bias)
        self.has_cross_attention = bool(cross_attention)
        self.attention_scale = None if attention_scale is None else float(attention_scale)
        self.implementation = implementation
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.supports_masking = True

        self.self_attention = self._attention("self_attention", self.rope_max_wavelength, cross=False)
        self.self_attention_dropout = self._dropout("self_attention_dropout")
        self.self_attention_norm = self._norm("self_attention_norm")
        self.cross_attention = self.cross_attention_dropout = self.cross_attention_norm = None
        if self.has_cross_attention:
            self.cross_attention = self._attention("cross_attention", None, cross=True)
            self.cross_attention_dropout = self._dropout("cross_attention_dropout")
            self.cross_attention_norm = self._norm("cross_attention_norm")
        self.feed_forward = FeedForward(
            intermediate_dim=self.intermediate_dim,
            activation=self.activation,
            gated=feed_forward == "gated",
            use_bias=self.use_bias,
            dropout=self.dropout,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            bias_initializer=clone_initializer(self.bias_initializer),
            dtype=self.dtype_policy,
            name="feed_forward",
        )
        self.feed_forward_norm = self._norm("feed_forward_norm")

    def _attention(self, name, rope_max_wavelength, cross):
        return MultiHeadAttention(
            num_heads=self.num_heads,
            num_key_value_heads=self.num_key_value_heads,
            head_dim=self.head_dim,
            rope_max_wavelength=rope_max_wavelength,
            dropout=self.dropout,
            use_bias=self.use_bias,
            cross_attention=cross,
            scale=self.attention_scale,
            implementation=self.implementation,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            bias_initializer=clone_initializer(self.bias_initializer),
            dtype=self.dtype_policy,
            name=name,
        )

    def _dropout(self, name):
        return keras.layers.Dropout(self.dropout, dtype=self.dtype_policy, name=name)

    def _norm(self, name):
        if self.normalization == "rms_norm":
            return RMSNorm(epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name=name)
        return keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name=name)

    def build(self, x_shape, context_shape=None):
        self.self_attention.build(x_shape)
        self.self_attention_norm.build(x_shape)
        if self.has_cross_attention:
            self.cross_attention.build(x_shape, context_shape if context_shape is not None else x_shape)
            self.cross_attention_norm.build(x_shape)
        self.feed_forward.build(x_shape)
        self.feed_forward_norm.build(x_shape)

    def _residual(self, x, sublayer, norm):
        """One residual sub-layer, pre- or post-LN; ``sublayer(h)`` returns the branch output."""
        if self.norm_first:
            return x + sublayer(norm(x))
        return norm(x + sublayer(x))

    def call(self, x, padding_mask=None, attention_mask=None, use_causal_mask=False, position_bias=None,
             context=None, context_padding_mask=None, context_cache=None, cache=None, cache_index=None,
             training=None):
        new_cache = []

        def attend(h):
            out = self.self_attention(h, padding_mask=padding_mask, attention_mask=attention_mask,
                                      use_causal_mask=use_causal_mask, position_bias=position_bias, cache=cache,
                                      cache_index=cache_index, training=training)
            if cache is not None:
                out, updated = out
                new_cache.append(updated)
            return self.self_attention_dropout(out, training=training)

        def attend_context(h):
            out = self.cross_attention(h, context=context, context_padding_mask=context_padding_mask,
                                       context_cache=context_cache, training=training)
            return self.cross_attention_dropout(out, training=training)

        x = self._residual(x, attend, self.self_attention_norm)
        if self.has_cross_attention:
            x = self._residual(x, attend_context, self.cross_attention_norm)
        x = self._residual(x, lambda h: self.feed_forward(h, training=training), self.feed_forward_norm)
        return x if cache is None else (x, new_cache[0])

    def compute_output_shape(self, x_shape, context_shape=None):
        return x_shape

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
                "norm_first": self.norm_first,
                "feed_forward": self.feed_forward_type,
                "use_bias": self.use_bias,
                "cross_attention": self.has_cross_attention,
                "attention_scale": self.attention_scale,
                "implementation": self.implementation,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config
