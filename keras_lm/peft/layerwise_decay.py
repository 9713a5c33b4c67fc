"""Layer-wise learning-rate decay (Clark et al., 2020; Howard & Ruder's discriminative fine-tuning).

A variable at depth ``d`` (0: the embedding block, ``i + 1``: ``transformer_layer_{i}``,
``L = num_layers + 1``: the pooler and the task head; see `keras_lm.peft.variables.depth`)
learns at ``learning_rate * decay ** (L - d)``: the head at the full rate, each block below it
``decay`` times slower. The optimizer scales the learning rate of each variable's update (and
of its decoupled weight decay), so it works with Adam-family optimizers, where scaling the
gradient would change nothing.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from keras_lm.peft.variables import depth, num_blocks, variable_key
from keras_lm.training.optimizers import AdamW


class _Multipliers:
    """Multipliers by variable key, kept out of TensorFlow's object tracking (plain, untracked)."""

    def __init__(self):
        self.by_key = {}


class LayerwiseDecay:
    """Mixin for a Keras optimizer class: per-variable learning-rate multipliers
    ``decay ** (num_layers + 1 - depth)``. Use `layerwise_decay` to wrap an optimizer."""

    def __init__(self, *args, layer_decay: float = 1.0, num_layers: int = 1, **kwargs):
        if not 0 < layer_decay <= 1:
            raise ValueError(f"`layer_decay` must be in (0, 1], got {layer_decay!r}.")
        if not isinstance(num_layers, int) or isinstance(num_layers, bool) or num_layers <= 0:
            raise ValueError(f"`num_layers` must be a positive integer, got {num_layers!r}.")
        super().__init__(*args, **kwargs)
        self.layer_decay = float(layer_decay)
        self.num_layers = num_layers
        self._multipliers = _Multipliers()

    def multiplier(self, variable) -> float:
        """The learning-rate multiplier of a (Keras) variable."""
        top = self.num_layers + 1
        return self.layer_decay ** (top - min(depth(variable_key(variable), self.num_layers), top))

    def build(self, variables):
        super().build(variables)
        self._multipliers.by_key = {self._var_key(variable): self.multiplier(variable) for variable in variables}

    def _scale(self, variable) -> float:
        return self._multipliers.by_key.get(self._var_key(variable), 1.0)

    def update_step(self, gradient, variable, learning_rate):
        return super().update_step(gradient, variable, learning_rate * self._scale(variable))

    def _apply_weight_decay(self, variables):
        if self.weight_decay is None:
            return

        def decay(distribution, variables, **kwargs):
            def decay_one(variable, scale):
                if self._use_weight_decay(variable):
                    rate = tf.cast(self.learning_rate, variable.dtype) * scale
                    variable.assign_sub(variable * tf.cast(self.weight_decay, variable.dtype) * rate)

            for variable in variables:
                scale = self._scale(variable)
                if isinstance(variable, keras.Variable):
                    variable = variable.value
                distribution.extended.update(variable, decay_one, args=(scale,), group=False)

        tf.__internal__.distribute.interim.maybe_merge_call(decay, self._distribution_strategy, variables)

    def get_config(self):
        return {**super().get_config(), "layer_decay": self.layer_decay, "num_layers": self.num_layers}


@keras.saving.register_keras_serializable(package="keras_lm")
class LayerwiseDecayAdamW(LayerwiseDecay, AdamW):
    """``keras_lm.training.AdamW`` with layer-wise learning-rate decay (see `LayerwiseDecay`)."""


@keras.saving.register_keras_serializable(package="keras_lm")
class LayerwiseDecaySGD(LayerwiseDecay, keras.optimizers.SGD):
    """``keras.optimizers.SGD`` with layer-wise learning-rate decay (see `LayerwiseDecay`)."""


@keras.saving.register_keras_serializable(package="keras_lm")
class LayerwiseDecayAdam(LayerwiseDecay, keras.optimizers.Adam):
    """``keras.optimizers.Adam`` with layer-wise learning-rate decay (see `LayerwiseDecay`)."""


_CLASSES = {AdamW: LayerwiseDecayAdamW, keras.optimizers.SGD: LayerwiseDecaySGD,
            keras.optimizers.Adam: LayerwiseDecayAdam}


def layerwise_decay(optimizer, model, decay: float = 0.8):
    """A copy of ``optimizer`` whose learning rate for each variable of ``model`` is scaled by
    ``decay ** (L - depth)`` (see this module's docstring); ``L = num_layers + 1``.

    ``optimizer`` (not yet built) is a ``keras_lm.training.AdamW`` (e.g. from ``adamw(...)``),
    ``keras.optimizers.Adam`` or ``SGD``; its settings, schedule and weight-decay exclusions carry
    over. ``model`` gives the number of blocks (a keras_lm backbone or task, or one reloaded as a
    SavedModel layer). Pass the result to ``compile``.

    Example:
        >>> import keras_lm
        >>> backbone = keras_lm.applications.Bert("tiny", vocabulary_size=100, max_sequence_length=16)
        >>> optimizer = layerwise_decay(keras_lm.training.adamw(1e-3), backbone, decay=0.5)
        >>> [optimizer.multiplier(backbone.get_layer(name).weights[0])
        ...  for name in ("token_embedding", "transformer_layer_0", "transformer_layer_1", "pooler")]
        [0.125, 0.25, 0.5, 1.0]
    """
    if getattr(optimizer, "built", False):
        raise ValueError("layerwise_decay needs an optimizer that is not built yet (pass it before compile/fit).")
    if isinstance(optimizer, LayerwiseDecay):
        raise ValueError(f"{type(optimizer).__name__} already applies layer-wise decay.")
    cls = _CLASSES.get(type(optimizer))
    if cls is None:
        names = ", ".join(sorted(c.__module__.split(".")[0] + "." + c.__name__ for c in _CLASSES))
        raise TypeError(f"layerwise_decay wraps {names}; got {type(optimizer).__name__}.")
    config = optimizer.get_config()
    wrapped = cls.from_config({**config, "layer_decay": float(decay), "num_layers": num_blocks(model)})
    for attribute in ("_exclude_from_weight_decay", "_exclude_from_weight_decay_pattern"):
        if hasattr(optimizer, attribute):
            setattr(wrapped, attribute, getattr(optimizer, attribute))
    return wrapped
