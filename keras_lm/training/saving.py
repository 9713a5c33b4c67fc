"""Models whose custom ``compile`` still comes back compiled from a ``.keras`` file."""
from __future__ import annotations

import keras


class RecompiledOnLoad:
    """Mixin for ``keras.Model`` subclasses that override ``compile``.

    Keras skips ``compile_from_config`` for such models ("compile() was not called as part of model
    loading"), so a reloaded model could not ``fit`` or ``evaluate`` until compiled by hand. Here the
    saved compile arguments (optimizer with its state, loss, metrics) are passed to the model's own
    ``compile``.

    Example:
        >>> import keras
        >>> class Model(RecompiledOnLoad, keras.Model):
        ...     def compile(self, optimizer="adam", **kwargs):
        ...         super().compile(optimizer=optimizer, loss="mse", **kwargs)
        >>> Model.compile_from_config.__qualname__
        'RecompiledOnLoad.compile_from_config'
    """

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.optimizer is not None and self.built:
            self.optimizer.build(self.trainable_variables)
