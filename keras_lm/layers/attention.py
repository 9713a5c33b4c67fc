"""Multi-head attention for every block of the zoo: self, causal and cross attention."""
from __future__ import annotations

import keras
from keras import ops

from keras_lm.layers.rotary import RotaryEmbedding
from keras_lm.layers.utils import clone_initializer

# Added to the float32 scores of masked keys; exp() of it underflows to exactly 0.
_MASKED_SCORE = -1e9
#: How the scores are computed: "fused" is ``keras.ops.dot_product_attention`` (cuDNN / TPU kernels
#: where the backend has them), "explicit" is matmul-softmax-matmul written out here, "auto" picks
#: per device (see ``MultiHeadAttention``).
IMPLEMENTATIONS = ("auto", "fused", "explicit")


def attention_allowed(query_segments=None, key_segments=None, query_positions=None, key_positions=None,
                      attention_mask=None):
    """Boolean ``[B or 1, 1, T, S]``: True where query ``t`` may attend to key ``s``; None if all may.

    Args:
        query_segments: ``[B, T]`` 0 for padding, else a document number (bool/1 = one document).
        key_segments: ``[B, S]``, the same for the keys. A key with 0 gets no attention; a real query
            attends only to keys of its own document; a padding query attends to every real key.
        query_positions, key_positions: ``[T]`` / ``[S]`` positions; given, a query only attends to
            keys at or before its own position (causal).
        attention_mask: ``[B, T, S]`` bool/int, True/1 where the pair is allowed.
    """
    allowed = None

    def both(a, b):
        return b if a is None else ops.logical_and(a, b)

    if key_segments is not None:
        keys = ops.cast(key_segments, "int32")
        allowed = ops.not_equal(keys, 0)[:, None, None, :]
        if query_segments is not None:
            queries = ops.cast(query_segments, "int32")[:, None, :, None]
            same_document = ops.logical_or(ops.equal(queries, keys[:, None, None, :]), ops.equal(queries, 0))
            allowed = both(allowed, same_document)
    if query_positions is not None:
        allowed = both(allowed, (key_positions[None, :] <= query_positions[:, None])[None, None, :, :])
    if attention_mask is not None:
        allowed = both(allowed, ops.cast(attention_mask, "bool")[:, None, :, :])
    return allowed


def default_implementation() -> str:
    """The fastest numerically equivalent implementation on this machine's accelerator.

    On GPU and TPU the fused op reaches the vendor kernels. On CPU the TensorFlow backend's fused op
    is an einsum that was slower than the explicit batched matmuls (BERT-base attention, batch 32,
    length 128, forward + backward on a 2-core Xeon: 122 vs 89 ms in float32, 53 vs 47 ms in
    bfloat16), so CPU computes explicitly.
    """
    try:
        import tensorflow as tf

        if tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"):
            return "fused"
    except Exception:  # a backend without TensorFlow: keep the portable path
        pass
    return "explicit"


@keras.saving.register_keras_serializable(package="keras_lm")
class MultiHeadAttention(keras.layers.Layer):
    """Scaled dot-product attention with grouped-query heads, RoPE, caches and an additive bias.

    Self-attention (the default) projects queries, keys and values with one fused ``Dense`` named
    ``qkv`` of width ``(num_heads + 2 * num_key_value_heads) * head_dim`` laid out ``[q | k | v]``
    (one large matmul). Cross-attention (``cross_attention=True``) projects the queries from ``x``
    (``query``) and keys/values from ``context`` (``key_value``, ``[k | v]``). ``num_key_value_heads``
    key/value heads serve groups of ``num_heads // num_key_value_heads`` adjacent query heads
    (1: multi-query, ``num_heads``: plain multi-head). With ``rope_max_wavelength`` set, RoPE rotates
    queries and keys (self-attention only). Scores are masked and soft-maxed in float32.

    Masks: ``padding_mask`` ``[B, S]`` holds 0 for padding and a document number (1 when unpacked)
    for real tokens. A key with 0 gets no attention, and in self-attention a real query attends only
    to keys of its own document (packed rows reset attention at document boundaries); an all-ones
    mask masks nothing. ``use_causal_mask`` forbids later keys; ``attention_mask`` ``[B, T, S]``
    adds any pairwise rule. ``position_bias`` ``[B or 1, num_heads, T, S]`` is added to the scores
    (T5's relative position buckets).

    Caches: for self-attention ``cache`` is ``[B, 2, num_key_value_heads, max_length, head_dim]``
    (keys, then values) and ``cache_index`` the position of the first token of ``x``; the layer
    writes the new keys/values there and attends over the cache causally, so unwritten slots never
    count; shapes stay static (one trace per generation loop). It returns ``(output, cache)`` then.
    For cross-attention ``context_cache = layer.context_cache(context)`` holds the projected
    context keys/values, computed once per request and passed instead of ``context``.

    ``implementation``: "fused" computes through ``keras.ops.dot_product_attention`` (cuDNN flash
    attention on GPU, fused kernels on TPU), "explicit" writes matmul-softmax-matmul out, "auto"
    takes the fastest of the two on this device (``default_implementation``). The fused op has no
    dropout on probabilities and casts the additive bias to the compute dtype, so a call that
    trains with attention dropout, or adds ``position_bias`` under a 16-bit compute dtype, computes
    explicitly whatever the setting: both paths give the same numbers (within float rounding).

    Args:
        num_heads: query heads.
        num_key_value_heads: key/value heads; must divide ``num_heads``. Defaults to ``num_heads``.
        head_dim: size of each head; defaults to ``hidden_dim // num_heads``.
        rope_max_wavelength: RoPE base (``rope_theta``), or None for no rotary embedding.
        dropout: dropout rate on the attention probabilities.
        use_bias: biases on the projections.
        cross_attention: attend from ``x`` to a ``context`` sequence.
        scale: multiplier of the scores; defaults to ``head_dim ** -0.5`` (T5 uses 1.0).
        implementation: one of "auto", "fused", "explicit".
        kernel_initializer, bias_initializer: initializers of the projections.

    Call arguments:
        x: ``[B, T, hidden]``.
        context: ``[B, S, context_hidden]`` for cross-attention.
        padding_mask: ``[B, S]`` 0 / document numbers of the keys (self-attention: of ``x``, or of
            every cache position when ``cache`` is given).
        context_padding_mask: ``[B, S]`` 0/1 of the context tokens (cross-attention).
        attention_mask, use_causal_mask, position_bias: see above.
        cache, cache_index, context_cache: see above.
        training: enables dropout.
        return_attention_scores: also return the float32 attention probabilities ``[B, num_heads,
            T, S]`` (before dropout; masked keys get exactly 0) as the last element of the result:
            ``(output, scores)`` or ``(output, cache, scores)``. The call then computes explicitly;
            off by default, so the normal path is unchanged.

    Example:
        >>> import numpy as np
        >>> attention = MultiHeadAttention(num_heads=4, num_key_value_heads=2)
        >>> x = np.random.rand(2, 5, 16).astype("float32")
        >>> tuple(attention(x, padding_mask=np.array([[1, 1, 1, 0, 0]] * 2)).shape)
        (2, 5, 16)
        >>> out, cache = attention(x, cache=np.zeros((2, 2, 2, 8, 4), "float32"), cache_index=0)
        >>> tuple(out.shape), tuple(cache.shape)
        ((2, 5, 16), (2, 2, 2, 8, 4))
        >>> cross = MultiHeadAttention(num_heads=2, cross_attention=True)
        >>> tuple(cross(x, context=np.random.rand(2, 7, 12).astype("float32")).shape)
        (2, 5, 16)
    """

    def __init__(
        self,
        num_heads: int,
        num_key_value_heads: int | None = None,
        head_dim: int | None = None,
        rope_max_wavelength: float | None = None,
        dropout: float = 0.0,
        use_bias: bool = True,
        cross_attention: bool = False,
        scale: float | None = None,
        implementation: str = "auto",
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
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
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(f"Unknown implementation {implementation!r}; use one of {', '.join(IMPLEMENTATIONS)}.")
        if cross_attention and rope_max_wavelength is not None:
            raise ValueError("RoPE rotates self-attention queries and keys; cross-attention takes none.")
        self.head_dim = None if head_dim is None else int(head_dim)
        self.rope_max_wavelength = None if rope_max_wavelength is None else float(rope_max_wavelength)
        self.dropout = float(dropout)
        self.use_bias = bool(use_bias)
        self.cross_attention = bool(cross_attention)
        self.scale = None if scale is None else float(scale)
        self.implementation = implementation
        self._fused = (default_implementation() if implementation == "auto" else implementation) == "fused"
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.supports_masking = True
        self.attention_dropout = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy, name="attention_dropout")
        self.rotary_embedding = None
        if self.rope_max_wavelength is not None:
            self.rotary_embedding = RotaryEmbedding(self.rope_max_wavelength, dtype=self.dtype_policy, name="rotary")

    def _dense(self, units, name):
        return keras.layers.Dense(
            units,
            use_bias=self.use_bias,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            bias_initializer=clone_initializer(self.bias_initializer),
            dtype=self.dtype_policy,
            name=name,
        )

    def build(self, x_shape, context_shape=None):
        hidden_dim = x_shape[-1]
        if self.head_dim is None:
            if hidden_dim % self.num_heads:
                raise ValueError(
                    f"hidden_dim={hidden_dim} is not divisible by num_heads={self.num_heads}; "
                    "pass `head_dim` or change one of them."
                )
            self._head_dim = hidden_dim // self.num_heads
        else:
            self._head_dim = self.head_dim
        query_width = self.num_heads * self._head_dim
        key_value_width = 2 * self.num_key_value_heads * self._head_dim
        if self.cross_attention:
            self.query_dense = self._dense(query_width, "query")
            self.query_dense.build(x_shape)
            context_shape = tuple(x_shape) if context_shape is None else tuple(context_shape)
            self.key_value_dense = self._dense(key_value_width, "key_value")
            self.key_value_dense.build(context_shape)
        else:
            self.qkv_dense = self._dense(query_width + key_value_width, "qkv")
            self.qkv_dense.build(x_shape)
        self.output_dense = self._dense(hidden_dim, "output")
        self.output_dense.build(tuple(x_shape[:-1]) + (query_width,))

    # --- projections ---------------------------------------------------------------------------
    def _heads(self, x, heads):
        """``[B, T, heads * head_dim] -> [B, heads, T, head_dim]``."""
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        return ops.transpose(ops.reshape(x, (batch, length, heads, self._head_dim)), (0, 2, 1, 3))

    def context_cache(self, context):
        """The projected keys/values of a cross-attention ``context``: ``[B, 2, kv_heads, S, head_dim]``."""
        if not self.cross_attention:
            raise ValueError("context_cache belongs to cross-attention layers (cross_attention=True).")
        if not self.built:
            raise ValueError("Build the layer first (call it once, or `build(x_shape, context_shape)`).")
        key, value = ops.split(self.key_value_dense(context), 2, axis=-1)
        return ops.stack([self._heads(key, self.num_key_value_heads), self._heads(value, self.num_key_value_heads)],
                         axis=1)

    def cache_shape(self, batch_size: int, max_length: int) -> tuple:
        """Shape of this layer's self-attention KV cache for ``batch_size`` rows of ``max_length``."""
        return (batch_size, 2, self.num_key_value_heads, max_length, self._head_dim)

    def call(self, x, context=None, padding_mask=None, context_padding_mask=None, attention_mask=None,
             use_causal_mask=False, position_bias=None, cache=None, cache_index=None, context_cache=None,
             training=None, return_attention_scores=False):
        length = ops.shape(x)[1]
        start = 0 if cache is None else ops.cast(0 if cache_index is None else cache_index, "int32")
        if self.cross_attention:
            if context_cache is None:
                if context is None:
                    raise ValueError("Cross-attention needs `context` (or a precomputed `context_cache`).")
                context_cache = self.context_cache(context)
            query = self._heads(self.query_dense(x), self.num_heads)
            key, value = context_cache[:, 0], context_cache[:, 1]
            allowed = attention_allowed(key_segments=context_padding_mask, attention_mask=attention_mask)
        else:
            query_width = self.num_heads * self._head_dim
            key_value_width = self.num_key_value_heads * self._head_dim
            # One split (its gradient is one concat; slicing three times costs three StridedSliceGrads).
            sections = 3 if query_width == key_value_width else [query_width, query_width + key_value_width]
            query, key, value = ops.split(self.qkv_dense(x), sections, axis=-1)
            query = self._heads(query, self.num_heads)
            key = self._heads(key, self.num_key_value_heads)
            value = self._heads(value, self.num_key_value_heads)
            if self.rotary_embedding is not None:
                query = self.rotary_embedding(query, start_index=start)
                key = self.rotary_embedding(key, start_index=start)
            query_segments = padding_mask
            if cache is not None:
                update = ops.cast(ops.stack([key, value], axis=1), cache.dtype)
                cache = ops.slice_update(cache, (0, 0, 0, start, 0), update)
                key, value = cache[:, 0], cache[:, 1]
                if padding_mask is not None:
                    query_segments = ops.slice(padding_mask, (0, start), (ops.shape(x)[0], length))
            query_positions = key_positions = None
            if use_causal_mask or cache is not None:
                query_positions = ops.arange(length) + start
                key_positions = ops.arange(ops.shape(key)[2])
            allowed = attention_allowed(query_segments, padding_mask, query_positions, key_positions,
                                        attention_mask)
        context_vectors = self._attend(query, key, value, allowed, position_bias, training,
                                       return_attention_scores)
        if return_attention_scores:
            context_vectors, scores = context_vectors
            output = self.output_dense(context_vectors)
            return (output, scores) if cache is None else (output, cache, scores)
        output = self.output_dense(context_vectors)
        return output if cache is None else (output, cache)

    # --- attention ------------------------------------------------------------------------------
    def _uses_fused(self, position_bias, training) -> bool:
        if not self._fused:
            return False
        if training and self.dropout > 0:
            return False  # the fused op has no dropout on the probabilities
        return position_bias is None or self.compute_dtype == "float32"

    def _attend(self, query, key, value, allowed, position_bias, training, return_probabilities=False):
        """``[B, heads, T, head_dim]`` queries over ``[B, kv_heads, S, head_dim]`` keys/values ->
        ``[B, T, heads * head_dim]`` (and the float32 ``[B, heads, T, S]`` probabilities when asked)."""
        batch, length = ops.shape(query)[0], ops.shape(query)[2]
        scale = self._head_dim**-0.5 if self.scale is None else self.scale
        if not return_probabilities and self._uses_fused(position_bias, training):
            key, value = (ops.transpose(ops.cast(t, query.dtype), (0, 2, 1, 3)) for t in (key, value))
            if self.num_key_value_heads == 1 < self.num_heads:  # the op repeats groups of 2 or more only
                key, value = (ops.repeat(t, self.num_heads, axis=2) for t in (key, value))
            context = ops.dot_product_attention(
                ops.transpose(query, (0, 2, 1, 3)), key, value, bias=position_bias, mask=allowed, scale=scale,
            )
            return ops.reshape(context, (batch, length, self.num_heads * self._head_dim))

        groups = self.num_heads // self.num_key_value_heads
        key_length = ops.shape(key)[2]
        query = query * ops.cast(scale, query.dtype)
        # Query heads of one group are adjacent: [B, kv_heads, groups * T, head_dim] against the
        # group's keys, without repeating keys or values.
        query = ops.reshape(query, (batch, self.num_key_value_heads, groups * length, self._head_dim))
        scores = ops.matmul(query, ops.swapaxes(ops.cast(key, query.dtype), -1, -2))
        scores = ops.cast(scores, "float32")
        if position_bias is not None or allowed is not None:
            scores = ops.reshape(scores, (batch, self.num_key_value_heads, groups, length, key_length))
            if position_bias is not None:
                bias = ops.cast(position_bias, "float32")
                bias_batch = ops.shape(bias)[0]
                scores = scores + ops.reshape(bias, (bias_batch, self.num_key_value_heads, groups, length, key_length))
            if allowed is not None:
                # Added rather than selected: the gradient of an addition is free, a select's is not.
                scores = scores + ops.where(allowed, 0.0, _MASKED_SCORE)[:, :, None, :, :]
            scores = ops.reshape(scores, (batch, self.num_key_value_heads, groups * length, key_length))
        weights = ops.softmax(scores, axis=-1)
        probabilities = self.attention_dropout(ops.cast(weights, self.compute_dtype), training=training)
        context = ops.matmul(probabilities, ops.cast(value, probabilities.dtype))
        context = ops.reshape(context, (batch, self.num_heads, length, self._head_dim))
        context = ops.transpose(context, (0, 2, 1, 3))
        context = ops.reshape(context, (batch, length, self.num_heads * self._head_dim))
        if return_probabilities:  # query heads of a group are adjacent: [kv_heads, groups] -> heads
            return context, ops.reshape(weights, (batch, self.num_heads, length, ops.shape(weights)[-1]))
        return context

    def compute_output_shape(self, x_shape, context_shape=None):
        return x_shape

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
                "cross_attention": self.cross_attention,
                "scale": self.scale,
                "implementation": self.implementation,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config
