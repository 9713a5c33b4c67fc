"""What every backbone shares: argument checks, the dtype policy, config and legacy weight paths."""
from __future__ import annotations

import keras

from keras_lm.models.legacy import translate_legacy_paths

_MODEL_KWARGS = ("name", "trainable")


def check_positive_integers(**values) -> None:
    """Raise one clear ValueError naming the first value that is not a positive integer."""
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")


def check_heads(hidden_dim: int, num_heads: int, head_dim=None, num_key_value_heads=None) -> None:
    """Raise one clear ValueError for heads that cannot split the hidden size or share keys/values."""
    if head_dim is None and hidden_dim % num_heads:
        raise ValueError(
            f"hidden_dim={hidden_dim} is not divisible by num_heads={num_heads}: each head needs "
            f"hidden_dim / num_heads features (or pass `head_dim`)."
        )
    if num_key_value_heads is not None and num_heads % num_key_value_heads:
        raise ValueError(
            f"num_key_value_heads={num_key_value_heads} does not divide num_heads={num_heads}: "
            f"each key/value head serves an equal group of query heads."
        )


def check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"Unknown {name} {value!r}; use one of {', '.join(choices)}.")


def check_dropout(dropout) -> None:
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"`dropout` must be in [0, 1), got {dropout!r}.")


def output_logits(hidden, token_embedding, lm_head=None):
    """Float32 logits ``[..., vocabulary_size]``: ``lm_head(hidden)``, or ``hidden`` times the transposed
    token embedding when the output is tied to it."""
    if lm_head is not None:
        return keras.ops.cast(lm_head(hidden), "float32")
    compute_dtype = token_embedding.compute_dtype
    embeddings = keras.ops.cast(token_embedding.embeddings, compute_dtype)
    hidden = keras.ops.cast(hidden, compute_dtype)
    if keras.backend.backend() == "tensorflow" and not isinstance(hidden, keras.KerasTensor):
        # A transposed-operand matmul; an explicit transpose would copy the whole table per call.
        import tensorflow as tf

        flat = tf.reshape(hidden, (-1, embeddings.shape[1]))
        logits = tf.matmul(flat, embeddings, transpose_b=True)
        logits = tf.reshape(logits, tf.concat([tf.shape(hidden)[:-1], [embeddings.shape[0]]], axis=0))
    else:
        logits = keras.ops.matmul(hidden, keras.ops.transpose(embeddings))
    return keras.ops.cast(logits, "float32")


class Backbone(keras.Model):
    """Base of the functional backbones (``Encoder``, ``Decoder``).

    Subclasses build their layers and graph, call ``super().__init__(inputs=..., outputs=...,
    **kwargs)`` and list their own arguments in ``get_config`` after ``_base_config()``; the graph
    is rebuilt from those arguments (``from_config``). Files saved by keras_lm 0.1 load (see
    ``keras_lm.models.legacy``).
    """

    @staticmethod
    def _check_kwargs(class_name: str, kwargs: dict) -> None:
        unexpected = sorted(set(kwargs) - set(_MODEL_KWARGS))
        if unexpected:
            raise TypeError(
                f"{class_name} got unexpected keyword argument(s) {', '.join(unexpected)}; "
                f"see the docstring for the accepted arguments."
            )

    @staticmethod
    def _resolve_dtype(dtype):
        return keras.dtype_policies.deserialize(dtype) if isinstance(dtype, dict) else dtype

    def _set_dtype_policy(self, dtype) -> None:
        if dtype is not None:
            self.dtype_policy = keras.dtype_policies.get(dtype)

    def _base_config(self) -> dict:
        # Not chained to Functional.get_config: the graph is rebuilt from the subclass's arguments.
        return {"name": self.name, "trainable": self.trainable,
                "dtype": keras.dtype_policies.serialize(self.dtype_policy)}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def load_own_variables(self, store):
        super().load_own_variables(store)
        translate_legacy_paths(store)
