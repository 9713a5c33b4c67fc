"""T5's relative position bias: bucketed query-key distances, one learned scalar per bucket and head."""
from __future__ import annotations

import math

import keras
from keras import ops


def relative_position_bucket(relative_position, bidirectional: bool = True, num_buckets: int = 32,
                             max_distance: int = 128):
    """The bucket ``[0, num_buckets)`` of each ``key_position - query_position`` (int tensor).

    Half of the buckets (per direction when ``bidirectional``) hold the exact small distances, the
    other half logarithmically wider ranges up to ``max_distance``; farther keys share the last
    bucket. Without ``bidirectional`` (causal decoders) later keys all fall into bucket 0. The
    arithmetic is T5's (mesh-tensorflow, Hugging Face ``T5Attention._relative_position_bucket``),
    in float32 like theirs, so the buckets are the same integers.

    Example:
        >>> import numpy as np
        >>> [int(b) for b in relative_position_bucket(np.array([-200, -20, -3, 0, 3, 20, 200]))]
        [15, 10, 3, 0, 19, 26, 31]
    """
    position = ops.cast(relative_position, "int32")
    buckets = 0
    if bidirectional:
        num_buckets //= 2
        buckets = ops.cast(ops.greater(position, 0), "int32") * num_buckets
        position = ops.abs(position)
    else:
        position = -ops.minimum(position, 0)
    max_exact = num_buckets // 2
    is_small = ops.less(position, max_exact)
    # log(0) never reaches the result (small positions take the exact branch); 1 keeps it finite.
    ratio = ops.cast(ops.maximum(position, 1), "float32") / ops.cast(max_exact, "float32")
    log_ratio = ops.log(ratio) / ops.cast(math.log(max_distance / max_exact), "float32")
    large = max_exact + ops.cast(log_ratio * ops.cast(num_buckets - max_exact, "float32"), "int32")
    large = ops.minimum(large, num_buckets - 1)
    return buckets + ops.where(is_small, position, large)


@keras.saving.register_keras_serializable(package="keras_lm")
class RelativePositionBias(keras.layers.Layer):
    """The additive attention bias ``[1, num_heads, T, S]`` of T5 (Raffel et al., 2020).

    Each query-key pair gets the learned value of its distance bucket (``relative_position_bucket``)
    for each head, from an ``embeddings`` table ``[num_buckets, num_heads]``. Encoders use
    ``bidirectional=True``, decoders ``False``. Called on a ``[B, T, ...]`` tensor (only its length
    ``T`` is used) it returns the float32 bias of queries ``query_offset … query_offset + T - 1``
    over keys ``0 … key_length - 1`` (``key_length`` defaults to ``T``), to pass as the attention's
    ``position_bias``; in cached decoding ``query_offset`` is the cache index and ``key_length``
    the cache length.

    Args:
        num_heads: attention heads (one bias per head).
        num_buckets: distance buckets (T5: 32).
        max_distance: distances from which on all keys share the last bucket (T5: 128).
        bidirectional: separate buckets for keys before and after the query.
        embeddings_initializer: initializer of the table.

    Example:
        >>> import numpy as np
        >>> bias = RelativePositionBias(num_heads=4, num_buckets=8, max_distance=16)
        >>> tuple(bias(np.zeros((2, 5, 16), "float32")).shape)
        (1, 4, 5, 5)
        >>> tuple(bias(np.zeros((2, 1, 16), "float32"), key_length=9, query_offset=3).shape)
        (1, 4, 1, 9)
    """

    def __init__(self, num_heads: int, num_buckets: int = 32, max_distance: int = 128, bidirectional: bool = True,
                 embeddings_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        for name, value in (("num_heads", num_heads), ("num_buckets", num_buckets), ("max_distance", max_distance)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"RelativePositionBias: `{name}` must be a positive integer, got {value!r}.")
        minimum_buckets = 4 if bidirectional else 2
        if num_buckets < minimum_buckets:
            raise ValueError(f"RelativePositionBias: num_buckets={num_buckets} is too small; "
                             f"use at least {minimum_buckets} (T5 uses 32).")
        self.num_heads = num_heads
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.bidirectional = bool(bidirectional)
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)

    def build(self, inputs_shape=None):
        self.embeddings = self.add_weight(name="embeddings", shape=(self.num_buckets, self.num_heads),
                                          initializer=self.embeddings_initializer)

    def call(self, inputs, key_length=None, query_offset=0):
        query_length = ops.shape(inputs)[1]
        key_length = query_length if key_length is None else key_length
        query_positions = ops.arange(query_length, dtype="int32") + ops.cast(query_offset, "int32")
        key_positions = ops.arange(key_length, dtype="int32")
        buckets = relative_position_bucket(key_positions[None, :] - query_positions[:, None],
                                           self.bidirectional, self.num_buckets, self.max_distance)
        values = ops.take(ops.cast(self.embeddings, "float32"), buckets, axis=0)  # [T, S, heads]
        return ops.expand_dims(ops.transpose(values, (2, 0, 1)), 0)

    def compute_output_spec(self, inputs, key_length=None, query_offset=0):
        query_length = inputs.shape[1]
        if key_length is None:
            key_length = query_length
        elif not isinstance(key_length, int):
            key_length = None
        return keras.KerasTensor((1, self.num_heads, query_length, key_length), dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "num_buckets": self.num_buckets,
                "max_distance": self.max_distance,
                "bidirectional": self.bidirectional,
                "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
            }
        )
        return config
