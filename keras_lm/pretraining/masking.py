"""Dynamic masked-LM masking (BERT's 15% / 80-10-10 procedure) as a stateless, tf.data-ready layer.

Why not ``keras_hub.layers.MaskedLMMaskGenerator``: it selects ``ceil(n * rate)`` tokens per
sequence, which over-masks short sequences (16.1% instead of 15% at sequence length 64), draws
its random replacements from the whole vocabulary (``[PAD]``, ``[CLS]`` ... included) and uses
stateful random ops, so a mask cannot be reproduced from a seed and a position in the data.
``MaskedLMMasker`` selects ``floor(n * rate + u)`` tokens (``u ~ U[0, 1)``: exactly ``rate`` in
expectation), replaces with ordinary tokens only, and is a pure function of its inputs and a
``[2]`` seed — a new seed per batch (e.g. from ``tf.data.Dataset.random``) gives new masks every
epoch, and the same seed gives the same masks again.
"""
from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf


@keras.saving.register_keras_serializable(package="keras_lm")
class MaskedLMMasker(keras.layers.Layer):
    """Chooses masked-LM positions and corrupts them: ``[MASK]`` / random token / unchanged.

    Selects ``mask_rate`` of the maskable tokens of each sequence (never an ``unselectable_ids``
    token such as ``[PAD]``, ``[CLS]``, ``[SEP]``), at most ``max_predictions`` of them. Each
    selected token becomes ``[MASK]`` with probability ``mask_token_rate``, a random ordinary
    token (not one of ``special_ids``) with probability ``random_token_rate``, and stays as it is
    otherwise. Works on one sequence ``[T]`` or a batch ``[B, T]`` of dense int token ids, inside
    ``tf.data.Dataset.map`` or eagerly.

    Args:
        vocabulary_size: size of the vocabulary (random replacements are drawn below it).
        mask_id: id of ``[MASK]``.
        unselectable_ids: ids that are never selected (padding and separators).
        special_ids: ids never used as random replacements; defaults to ``unselectable_ids`` plus
            ``mask_id``.
        max_predictions: length ``P`` of the outputs ``mask_positions``, ``mask_ids`` and
            ``mask_weights``; selections beyond it are dropped.
        mask_rate: fraction of maskable tokens selected.
        mask_token_rate: fraction of selected tokens replaced by ``[MASK]``.
        random_token_rate: fraction of selected tokens replaced by a random token.

    Call arguments:
        token_ids: int ``[T]`` or ``[B, T]``.
        seed: int ``[2]`` seed for the stateless random ops; None draws one from TensorFlow's
            global generator (different every call).

    Returns:
        dict with ``token_ids`` (corrupted, same shape and dtype as the input), ``mask_positions``
        (int32 ``[..., P]``, ascending, padded with 0), ``mask_ids`` (original ids at those
        positions, padded with 0) and ``mask_weights`` (float32, 1.0 for a real prediction, 0.0
        for padding).

    Example:
        >>> import tensorflow as tf
        >>> masker = MaskedLMMasker(vocabulary_size=100, mask_id=4, unselectable_ids=(0, 2, 3),
        ...                         max_predictions=4, mask_rate=0.5)
        >>> out = masker(tf.constant([2, 10, 11, 12, 13, 3, 0, 0]), seed=tf.constant([1, 2]))
        >>> [out[k].shape.as_list() for k in ("token_ids", "mask_positions", "mask_weights")]
        [[8], [4], [4]]
        >>> float(out["mask_weights"].numpy().sum())
        2.0
    """

    def __init__(
        self,
        vocabulary_size: int,
        mask_id: int,
        unselectable_ids: Sequence[int] = (0,),
        special_ids: Sequence[int] | None = None,
        max_predictions: int = 20,
        mask_rate: float = 0.15,
        mask_token_rate: float = 0.8,
        random_token_rate: float = 0.1,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "int32")
        super().__init__(**kwargs)
        self._convert_input_args = False  # keep tf tensors (ragged-free ints) as they are
        if not 0 <= mask_id < vocabulary_size:
            raise ValueError(f"mask_id={mask_id} is not below vocabulary_size={vocabulary_size}.")
        if not 0.0 < mask_rate <= 1.0:
            raise ValueError(f"mask_rate must be in (0, 1], got {mask_rate}.")
        if mask_token_rate < 0 or random_token_rate < 0 or mask_token_rate + random_token_rate > 1:
            raise ValueError(
                "mask_token_rate and random_token_rate must be non-negative and sum to at most 1, "
                f"got {mask_token_rate} and {random_token_rate}."
            )
        if max_predictions < 1:
            raise ValueError(f"max_predictions must be at least 1, got {max_predictions}.")
        self.vocabulary_size = int(vocabulary_size)
        self.mask_id = int(mask_id)
        self.unselectable_ids = tuple(int(i) for i in unselectable_ids)
        if special_ids is None:
            special_ids = self.unselectable_ids + (self.mask_id,)
        self.special_ids = tuple(sorted({int(i) for i in special_ids if 0 <= int(i) < vocabulary_size}))
        if len(self.special_ids) >= self.vocabulary_size:
            raise ValueError("The vocabulary has no ordinary tokens to use as random replacements.")
        self.max_predictions = int(max_predictions)
        self.mask_rate = float(mask_rate)
        self.mask_token_rate = float(mask_token_rate)
        self.random_token_rate = float(random_token_rate)
        self.built = True

    def call(self, token_ids, seed=None):
        token_ids = tf.convert_to_tensor(token_ids)
        if seed is None:
            seed = tf.random.uniform([2], maxval=tf.int64.max, dtype=tf.int64)
        unbatched = token_ids.shape.rank == 1
        if unbatched:
            token_ids = token_ids[tf.newaxis]
        outputs = self._mask_batch(token_ids, tf.cast(seed, tf.int64))
        if unbatched:
            outputs = {key: value[0] for key, value in outputs.items()}
        return outputs

    def _mask_batch(self, token_ids, seed):
        select_seed, count_seed, choice_seed, random_seed = tf.unstack(
            tf.random.experimental.stateless_split(seed, 4)
        )
        ids = tf.cast(token_ids, tf.int32)
        batch_size, length = tf.shape(ids)[0], tf.shape(ids)[1]
        num_predictions = self.max_predictions

        # How many to select per row: floor(n * rate + u) is n * rate in expectation.
        maskable = tf.logical_not(_isin(ids, self.unselectable_ids))
        num_maskable = tf.reduce_sum(tf.cast(maskable, tf.float32), axis=-1)
        jitter = tf.random.stateless_uniform([batch_size], seed=count_seed)
        num_selected = tf.cast(tf.floor(num_maskable * self.mask_rate + jitter), tf.int32)
        num_selected = tf.minimum(num_selected, tf.cast(num_maskable, tf.int32))
        num_selected = tf.minimum(num_selected, num_predictions)

        # Which: the `num_selected` maskable positions with the smallest random scores. Scores of
        # unmaskable positions (2.0) and of the P extra columns (3.0) sort after every maskable one.
        scores = tf.random.stateless_uniform([batch_size, length], seed=select_seed)
        scores = tf.where(maskable, scores, 2.0)
        scores = tf.concat([scores, tf.fill([batch_size, num_predictions], 3.0)], axis=-1)
        candidates = tf.argsort(scores, axis=-1, stable=True)[:, :num_predictions]
        is_real = tf.range(num_predictions)[tf.newaxis, :] < num_selected[:, tf.newaxis]
        positions = tf.sort(tf.where(is_real, candidates, length + num_predictions), axis=-1)
        positions = tf.where(is_real, positions, 0)
        original = tf.gather(ids, positions, batch_dims=1)
        original = tf.where(is_real, original, 0)

        # What they become.
        choice = tf.random.stateless_uniform([batch_size, num_predictions], seed=choice_seed)
        random_tokens = self._random_ordinary_tokens([batch_size, num_predictions], random_seed)
        replacement = tf.where(
            choice < self.mask_token_rate,
            self.mask_id,
            tf.where(choice < self.mask_token_rate + self.random_token_rate, random_tokens, original),
        )
        rows = tf.broadcast_to(tf.range(batch_size)[:, tf.newaxis], [batch_size, num_predictions])
        indices = tf.stack([rows, positions], axis=-1)
        masked = tf.tensor_scatter_nd_update(
            ids, tf.boolean_mask(indices, is_real), tf.boolean_mask(replacement, is_real)
        )
        return {
            "token_ids": tf.cast(masked, token_ids.dtype),
            "mask_positions": positions,
            "mask_ids": original,
            "mask_weights": tf.cast(is_real, tf.float32),
        }

    def _random_ordinary_tokens(self, shape, seed):
        """Uniform over the ids that are not special: draw below V - #special, then skip them."""
        tokens = tf.random.stateless_uniform(
            shape, seed=seed, minval=0, maxval=self.vocabulary_size - len(self.special_ids), dtype=tf.int32
        )
        for special in self.special_ids:  # ascending, so each shift keeps the order
            tokens = tokens + tf.cast(tokens >= special, tf.int32)
        return tokens

    def compute_output_spec(self, token_ids, seed=None):
        prefix = tuple(token_ids.shape[:-1])
        predictions = prefix + (self.max_predictions,)
        return {
            "token_ids": keras.KerasTensor(token_ids.shape, dtype=token_ids.dtype),
            "mask_positions": keras.KerasTensor(predictions, dtype="int32"),
            "mask_ids": keras.KerasTensor(predictions, dtype="int32"),
            "mask_weights": keras.KerasTensor(predictions, dtype="float32"),
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "mask_id": self.mask_id,
                "unselectable_ids": list(self.unselectable_ids),
                "special_ids": list(self.special_ids),
                "max_predictions": self.max_predictions,
                "mask_rate": self.mask_rate,
                "mask_token_rate": self.mask_token_rate,
                "random_token_rate": self.random_token_rate,
            }
        )
        return config


def _isin(ids: tf.Tensor, values: Sequence[int]) -> tf.Tensor:
    if not values:
        return tf.zeros_like(ids, dtype=tf.bool)
    values = tf.constant(np.asarray(values, dtype=np.int32))
    return tf.reduce_any(tf.equal(ids[..., tf.newaxis], values), axis=-1)
