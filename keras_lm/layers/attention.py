"""Multi-head self-attention with a fused query/key/value projection."""
from __future__ import annotations

import keras
from keras import ops

from keras_lm.layers.utils import clone_initializer

# Added to the float32 scores of masked keys; exp() of it underflows to exactly 0.
_MASKED_SCORE = -1e9


def attention_bias(padding_mask=None, attention_mask=None, use_causal_mask=False, length=None):
    """Combine masks into one additive float32 bias broadcastable to ``[B, heads, T, S]``.

    Args:
        padding_mask: ``[B, S]``, true/1 for real tokens, false/0 for padding.
        attention_mask: ``[B, T, S]``, true/1 where query ``t`` may attend to key ``s``.
        use_causal_mask: also forbid attending to later positions.
        length: the sequence length (needed for the causal mask).

    Returns:
        ``None`` when nothing is masked, else a float32 tensor of 0 / -1e9.
    """
    allowed = None
    if padding_mask is not None:
        allowed = ops.cast(padding_mask, "bool")[:, None, None, :]
    if attention_mask is not None:
        pairwise = ops.cast(attention_mask, "bool")[:, None, :, :]
        allowed = pairwise if allowed is None else ops.logical_and(allowed, pairwise)
    if use_causal_mask:
        positions = ops.arange(length)
        causal = (positions[:, None] >= positions[None, :])[None, None, :, :]
        allowed = causal if allowed is None else ops.logical_and(allowed, causal)
    if allowed is None:
        return None
    return ops.where(allowed, 0.0, _MASKED_SCORE)


@keras.saving.register_keras_serializable(package="keras_lm")
class MultiHeadSelfAttention(keras.layers.Layer):
    """Multi-head scaled dot-product self-attention.

    Queries, keys and values come from one ``Dense`` projection to ``3 * num_heads * key_dim``
    (one large matmul instead of three), split along the feature axis and transposed to
    ``[B, heads, T, key_dim]`` (a 4-D transpose per tensor; measured faster on CPU than one 5-D
    transpose followed by strided slices).
    Scores are computed in the compute dtype (bf16 under ``mixed_bfloat16``); the masking and
    softmax run in float32, and the probabilities go back to the compute dtype for the value
    matmul.

    Args:
        num_heads: number of attention heads.
        key_dim: size of each head; defaults to ``hidden_dim // num_heads``.
        dropout: dropout rate on the attention probabilities.
        use_bias: whether the projections have biases.
        kernel_initializer, bias_initializer: initializers of the projections.

    Call arguments:
        x: ``[B, T, hidden_dim]``.
        padding_mask: optional ``[B, T]`` bool/int, 1 for real tokens; padded keys get no attention.
        attention_mask: optional ``[B, T, T]`` bool/int, 1 where query t may attend to key s.
        use_causal_mask: if True, position t only attends to positions <= t.
        training: enables dropout.

    Example:
        >>> import numpy as np
        >>> attention = MultiHeadSelfAttention(num_heads=2)
        >>> x = np.random.rand(2, 5, 8).astype("float32")
        >>> tuple(attention(x, padding_mask=np.array([[1, 1, 1, 0, 0]] * 2)).shape)
        (2, 5, 8)
    """

    def __init__(
        self,
        num_heads: int,
        key_dim: int | None = None,
        dropout: float = 0.0,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.key_dim = key_dim
        self.dropout = float(dropout)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.supports_masking = True
        self.attention_dropout = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy, name="attention_dropout")

    def _dense(self, units, name):
        return keras.layers.Dense(
            units,
            use_bias=self.use_bias,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            bias_initializer=clone_initializer(self.bias_initializer),
            dtype=self.dtype_policy,
            name=name,
        )

    def build(self, inputs_shape):
        hidden_dim = inputs_shape[-1]
        if self.key_dim is None:
            if hidden_dim % self.num_heads:
                raise ValueError(
                    f"hidden_dim={hidden_dim} is not divisible by num_heads={self.num_heads}; "
                    "pass `key_dim` or change one of them."
                )
            self.head_dim = hidden_dim // self.num_heads
        else:
            self.head_dim = int(self.key_dim)
        projected_dim = self.num_heads * self.head_dim
        self.qkv_dense = self._dense(3 * projected_dim, "qkv")
        self.qkv_dense.build(inputs_shape)
        self.output_dense = self._dense(hidden_dim, "output")
        self.output_dense.build(tuple(inputs_shape[:-1]) + (projected_dim,))

    def _split_heads(self, x, batch, length):
        """``[B, T, heads * head_dim] -> [B, heads, T, head_dim]``."""
        x = ops.reshape(x, (batch, length, self.num_heads, self.head_dim))
        return ops.transpose(x, (0, 2, 1, 3))

    def call(self, x, padding_mask=None, attention_mask=None, use_causal_mask=False, training=None):
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        query, key, value = ops.split(self.qkv_dense(x), 3, axis=-1)
        query = self._split_heads(query * ops.cast(self.head_dim**-0.5, query.dtype), batch, length)
        key = self._split_heads(key, batch, length)
        value = self._split_heads(value, batch, length)

        scores = ops.matmul(query, ops.swapaxes(key, -1, -2))  # [B, heads, T, T]
        scores = ops.cast(scores, "float32")
        bias = attention_bias(padding_mask, attention_mask, use_causal_mask, length)
        if bias is not None:
            scores = scores + bias
        probabilities = ops.softmax(scores, axis=-1)
        probabilities = self.attention_dropout(
            ops.cast(probabilities, self.compute_dtype), training=training
        )

        context = ops.matmul(probabilities, value)  # [B, heads, T, head_dim]
        context = ops.transpose(context, (0, 2, 1, 3))
        context = ops.reshape(context, (batch, length, self.num_heads * self.head_dim))
        return self.output_dense(context)

    def compute_output_shape(self, inputs_shape):
        return inputs_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "key_dim": self.key_dim,
                "dropout": self.dropout,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config
