"""Pooling of token vectors into one vector per text (sentence embeddings, classification heads)."""
from __future__ import annotations

import keras
from keras import ops

POOLINGS = ("mean", "cls")


@keras.saving.register_keras_serializable(package="keras_lm")
class SentencePooling(keras.layers.Layer):
    """``[B, T, H]`` token vectors and a ``[B, T]`` padding mask -> one float32 ``[B, H]`` vector per row.

    ``"mean"`` averages the real tokens (the mask's non-zero positions, ``[CLS]``/``[SEP]``
    included, as sentence-transformers does); ``"cls"`` takes position 0. With ``normalize`` the
    result is divided by its L2 norm (at least 1e-12, as ``torch.nn.functional.normalize``). All
    the arithmetic is float32 whatever the compute dtype of the encoder.

    Args:
        pooling: ``"mean"`` or ``"cls"``.
        normalize: L2-normalize each vector.

    Example:
        >>> import numpy as np
        >>> pool = SentencePooling("mean", normalize=False)
        >>> x = np.array([[[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]]], "float32")
        >>> np.asarray(pool(x, np.array([[1, 1, 0]]))).tolist()
        [[2.0, 3.0]]
    """

    def __init__(self, pooling: str = "mean", normalize: bool = True, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if pooling not in POOLINGS:
            raise ValueError(f"Unknown pooling {pooling!r}; use one of {', '.join(POOLINGS)}.")
        self.pooling = pooling
        self.normalize = bool(normalize)

    def call(self, sequence_output, padding_mask):
        x = ops.cast(sequence_output, "float32")
        if self.pooling == "cls":
            pooled = x[:, 0, :]
        else:
            mask = ops.expand_dims(ops.cast(padding_mask, "float32"), -1)
            counts = ops.maximum(ops.sum(mask, axis=1), 1e-9)
            pooled = ops.sum(x * mask, axis=1) / counts
        if self.normalize:
            norm = ops.sqrt(ops.sum(ops.square(pooled), axis=-1, keepdims=True))
            pooled = pooled / ops.maximum(norm, 1e-12)
        return pooled

    def compute_output_shape(self, sequence_output_shape, padding_mask_shape=None):
        return (sequence_output_shape[0], sequence_output_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update({"pooling": self.pooling, "normalize": self.normalize})
        return config
