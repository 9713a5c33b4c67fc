"""Small helpers shared by the layers."""
import keras


def clone_initializer(initializer):
    """A fresh copy of an initializer, so layers sharing a config don't share seeds."""
    initializer = keras.initializers.get(initializer)
    return initializer.__class__.from_config(initializer.get_config())


@keras.saving.register_keras_serializable(package="keras_lm")
def gelu_approximate(x):
    """GELU with the tanh approximation, as in the original BERT code and keras-hub's BERT."""
    return keras.activations.gelu(x, approximate=True)


_EXTRA_ACTIVATIONS = {"gelu_approximate": gelu_approximate}


def get_activation(activation):
    """Resolve an activation name, serialized activation or callable.

    Besides Keras' names (``"gelu"`` is the exact erf form) this accepts ``"gelu_approximate"``.
    """
    if isinstance(activation, str) and activation in _EXTRA_ACTIVATIONS:
        return _EXTRA_ACTIVATIONS[activation]
    return keras.activations.get(activation)


def serialize_activation(activation):
    """The config value for an activation: its name when it has one we resolve, else Keras'."""
    for name, function in _EXTRA_ACTIVATIONS.items():
        if activation is function:
            return name
    return keras.activations.serialize(activation)
