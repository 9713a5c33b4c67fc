"""Causal self-attention with grouped-query heads, optional RoPE and an incremental KV cache."""
from __future__ import annotations

import keras
from keras import ops

from keras_lm.layers.rotary import RotaryEmbedding
from keras_lm.layers.utils import clone_initializer

# Added to the float32 scores of masked keys; exp() of it underflows to exactly 0.
_MASKED_SCORE = -1e9


def causal_attention_bias(query_positions, key_positions, query_segments=None, key_segments=None):
    """Additive float32 bias ``[B or 1, 1, 1, T, S]`` for decoder attention.

    Query ``t`` may attend to key ``s`` iff ``key_positions[s] <= query_positions[t]`` and, when
    segments are given (``[B, T]`` / ``[B, S]``; 0 = padding, k > 0 = document k of a packed row),
    both segments are non-zero and equal.
    """
    allowed = key_positions[None, :] <= query_positions[:, None]  # [T, S]
    allowed = allowed[None, :, :]
    if query_segments is not None:
        query_segments = ops.cast(query_segments, "int32")[:, :, None]
        key_segments = ops.cast(key_segments, "int32")[:, None, :]
        same_document = ops.logical_and(ops.equal(query_segments, key_segments), ops.not_equal(key_segments, 0))
        allowed = ops.logical_and(allowed, same_document)  # [B, T, S]
    return ops.where(allowed, 0.0, _MASKED_SCORE)[:, None, None, :, :]


@keras.saving.register_keras_serializable(package="keras_lm")
class CausalSelfAttention(keras.layers.Layer):
    """Multi-head causal self-attention for decoders, with grouped-query attention and a KV cache.

    ``num_key_value_heads`` key/value heads are shared by groups of ``num_heads //
    num_key_value_heads`` query heads (multi-query attention with 1, plain multi-head attention
    with ``num_heads``). Queries, keys and values come from one fused ``Dense`` named ``qkv`` of
    width ``(num_heads + 2 * num_key_value_heads) * head_dim`` laid out ``[q | k | v]``. With
    ``rope_max_wavelength`` set, RoPE rotates queries and keys (Llama); else positions must be
    added to the input (GPT-2). Scores are masked and soft-maxed in float32.

    Masking follows the decoder contract: ``padding_mask`` holds 0 for padding and a document
    number k > 0 for real tokens; a query attends to a key iff the key is not later, not padding
    and in the same document. An all-ones mask is plain causal attention.

    KV cache: ``cache`` is a tensor ``[B, 2, num_key_value_heads, max_length, head_dim]`` (keys,
    then values, in the compute dtype) and ``cache_index`` the position of the first input token.
    The layer writes the new keys/values at ``cache_index`` and attends over the whole cache with
    the causal mask (keys after the query are masked, so unwritten slots never matter); shapes
    are static so a compiled generation loop traces once. Returns ``(output, cache)`` then.

    Args:
        num_heads: query heads.
        num_key_value_heads: key/value heads; must divide ``num_heads``. Defaults to ``num_heads``.
        head_dim: size of each head; defaults to ``hidden_dim // num_heads``.
        rope_max_wavelength: RoPE base (``rope_theta``), or None for no rotary embedding.
        dropout: dropout rate on the attention probabilities.
        use_bias: biases on the projections (GPT-2 yes, Llama no).
        kernel_initializer: initializer of the projections.

    Call arguments:
        x: ``[B, T, hidden]``.
        padding_mask: optional ``[B, T]`` (``[B, max_length]`` covering the cache when ``cache``
            is given) of 0 / document numbers.
        cache, cache_index: see above.
        training: enables dropout.

    Example:
        >>> import numpy as np
        >>> attention = CausalSelfAttention(num_heads=4, num_key_value_heads=2)
        >>> x = np.random.rand(2, 5, 16).astype("float32")
        >>> tuple(attention(x).shape)
        (2, 5, 16)
        >>> cache = np.zeros((2, 2, 2, 8, 4), "float32")
        >>> out, cache = attention(x, cache=cache, cache_index=0)
        >>> tuple(out.shape), tuple(cache.shape)
        ((2, 5, 16), (2, 2, 2, 8, 4))
    """

    def __init__(
        self,
        num_heads: int,
        num_key_value_heads: int | None = None,
        head_dim: int | None = None,
        rope_max_wavelength: float | None = None,
        dropout: float = 0.0,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.num_key_value_heads = int(num_key_value_heads or num_heads)
        if self.num_heads <= 0 or self.num_key_value_heads <= 0 or self.num_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_key_value_heads={self.num_key_value_heads} must be a positive divisor of "
                f"num_heads={self.num_heads} (each key/value head serves a group of query heads)."
            )
        self.head_dim = None if head_dim is None else int(head_dim)
        self.rope_max_wavelength = None if rope_max_wavelength is None else float(rope_max_wavelength)
        self.dropout = float(dropout)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.attention_dropout = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy, name="attention_dropout")
        self.rotary_embedding = None
        if self.rope_max_wavelength is not None:
            self.rotary_embedding = RotaryEmbedding(self.rope_max_wavelength, dtype=self.dtype_policy, name="rotary")

    def _dense(self, units, name):
        return keras.layers.Dense(
            units,
            use_bias=self.use_bias,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            dtype=self.dtype_policy,
            name=name,
        )

    def build(self, inputs_shape):
        hidden_dim = inputs_shape[-1]
        if self.head_dim is None:
            if hidden_dim % self.num_heads:
                raise ValueError(
                    f"hidden_dim={hidden_dim} is not divisible by num_heads={self.num_heads}; "
                    "pass `head_dim` or change one of them."
                )
            self._head_dim = hidden_dim // self.num_heads
        else:
            self._head_dim = self.head_dim
        self.qkv_dense = self._dense((self.num_heads + 2 * self.num_key_value_heads) * self._head_dim, "qkv")
        self.qkv_dense.build(inputs_shape)
        self.output_dense = self._dense(hidden_dim, "output")
        self.output_dense.build(tuple(inputs_shape[:-1]) + (self.num_heads * self._head_dim,))

    def _heads(self, x, batch, length, heads):
        """``[B, T, heads * head_dim] -> [B, heads, T, head_dim]``."""
        return ops.transpose(ops.reshape(x, (batch, length, heads, self._head_dim)), (0, 2, 1, 3))

    def call(self, x, padding_mask=None, cache=None, cache_index=None, training=None):
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        query_width = self.num_heads * self._head_dim
        kv_width = self.num_key_value_heads * self._head_dim
        qkv = self.qkv_dense(x)
        query = self._heads(qkv[..., :query_width], batch, length, self.num_heads)
        key = self._heads(qkv[..., query_width:query_width + kv_width], batch, length, self.num_key_value_heads)
        value = self._heads(qkv[..., query_width + kv_width:], batch, length, self.num_key_value_heads)

        start = 0 if cache is None else ops.cast(0 if cache_index is None else cache_index, "int32")
        if self.rotary_embedding is not None:
            query = self.rotary_embedding(query, start_index=start)
            key = self.rotary_embedding(key, start_index=start)

        query_positions = ops.arange(length) + start
        if cache is None:
            key_positions = query_positions
            query_segments = key_segments = padding_mask
        else:
            update = ops.stack([key, value], axis=1)  # [B, 2, kv_heads, T, head_dim]
            cache = ops.slice_update(cache, (0, 0, 0, start, 0), ops.cast(update, cache.dtype))
            key, value = cache[:, 0], cache[:, 1]
            key_positions = ops.arange(ops.shape(cache)[3])
            key_segments = padding_mask
            query_segments = None
            if padding_mask is not None:
                query_segments = ops.slice(padding_mask, (0, start), (batch, length))

        context = self._attend(query, key, value, query_positions, key_positions,
                               query_segments, key_segments, batch, length, training)
        output = self.output_dense(context)
        return output if cache is None else (output, cache)

    def _attend(self, query, key, value, query_positions, key_positions, query_segments, key_segments,
                batch, length, training):
        groups = self.num_heads // self.num_key_value_heads
        key_length = ops.shape(key)[2]
        query = query * ops.cast(self._head_dim**-0.5, query.dtype)
        # Query heads of one group are adjacent: [B, kv_heads, groups * T, head_dim].
        query = ops.reshape(query, (batch, self.num_key_value_heads, groups * length, self._head_dim))
        scores = ops.matmul(query, ops.swapaxes(ops.cast(key, query.dtype), -1, -2))
        scores = ops.reshape(scores, (batch, self.num_key_value_heads, groups, length, key_length))
        scores = ops.cast(scores, "float32") + causal_attention_bias(
            query_positions, key_positions, query_segments, key_segments
        )
        probabilities = ops.softmax(scores, axis=-1)
        probabilities = ops.cast(probabilities, self.compute_dtype)
        probabilities = self.attention_dropout(probabilities, training=training)
        probabilities = ops.reshape(probabilities, (batch, self.num_key_value_heads, groups * length, key_length))
        context = ops.matmul(probabilities, ops.cast(value, probabilities.dtype))
        context = ops.reshape(context, (batch, self.num_heads, length, self._head_dim))
        context = ops.transpose(context, (0, 2, 1, 3))
        return ops.reshape(context, (batch, length, self.num_heads * self._head_dim))

    def cache_shape(self, batch_size: int, max_length: int) -> tuple:
        """Shape of this layer's KV cache for ``batch_size`` rows of ``max_length`` positions."""
        return (batch_size, 2, self.num_key_value_heads, max_length, self._head_dim)

    def compute_output_shape(self, inputs_shape):
        return inputs_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "num_key_value_heads": self.num_key_value_heads,
                "head_dim": self.head_dim,
                "rope_max_wavelength": self.rope_max_wavelength,
                "dropout": self.dropout,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
