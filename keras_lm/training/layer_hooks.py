"""Reading or changing one layer's output inside a model's forward pass, for a training step.

Keras layers have no forward hooks. ``intercepted_call`` replaces a layer instance's ``call``
for the duration of a ``with`` block, so that a train step can read an inner output (hidden
states for distillation) or add to it (adversarial perturbations of the embeddings) while the
model runs as usual. Outside the block, and in every function traced outside it (``predict``,
``evaluate``, serving exports), the layer computes exactly what it did before.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import keras


@contextlib.contextmanager
def intercepted_call(layer: keras.layers.Layer, transform: Callable):
    """Within the block, every call of ``layer`` returns ``transform(outputs)`` instead of ``outputs``.

    ``transform`` receives the layer's outputs as ``call`` returns them and may record them or
    return other values of the same structure. Blocks nest (the innermost transform runs last);
    the layer's own ``call`` is back when the block exits, also on an error.

    Example:
        >>> import numpy as np
        >>> layer = keras.layers.Dense(2, kernel_initializer="ones")
        >>> with intercepted_call(layer, lambda y: y + 1.0):
        ...     inside = layer(np.ones((1, 3), "float32"))
        >>> inside.numpy().tolist(), layer(np.ones((1, 3), "float32")).numpy().tolist()
        ([[4.0, 4.0]], [[3.0, 3.0]])
    """
    if getattr(layer, "quantization_mode", None) is not None:
        raise ValueError(
            f"Layer '{layer.name}' is quantized ({layer.quantization_mode}); its outputs cannot be read or "
            "perturbed during training. Train the float model and quantize it afterwards."
        )
    had_own_call = "call" in vars(layer)
    previous = vars(layer).get("call")
    inner = layer.call

    def call(*args, **kwargs):
        return transform(inner(*args, **kwargs))

    object.__setattr__(layer, "call", call)  # not tracked: a plain attribute, removed on exit
    try:
        yield layer
    finally:
        if had_own_call:
            object.__setattr__(layer, "call", previous)
        else:
            object.__delattr__(layer, "call")
