"""Bottleneck adapters (Houlsby et al., 2019) after the attention and feed-forward sub-layers."""
from __future__ import annotations

import contextlib

import keras

from keras_lm.layers.utils import get_activation, serialize_activation
from keras_lm.models import Encoder
from keras_lm.peft.freezing import freeze
from keras_lm.peft.variables import SEED_STATE, backbone_of, head_weights


@keras.saving.register_keras_serializable(package="keras_lm")
class BottleneckAdapter(keras.layers.Layer):
    """``x + up(activation(down(x)))``: a residual bottleneck of width ``bottleneck_dim``.

    With ``up`` initialised to zero (the default) the adapter starts as the identity, so adding it
    to a trained model does not change the model's outputs.

    Args:
        bottleneck_dim: width of the bottleneck.
        activation: nonlinearity between the two projections.
        down_initializer, up_initializer: kernel initializers of the projections.

    Example:
        >>> import numpy as np
        >>> adapter = BottleneckAdapter(4)
        >>> x = np.random.rand(2, 3, 8).astype("float32")
        >>> bool(np.all(np.asarray(adapter(x)) == x))  # identity at initialisation
        True
    """

    def __init__(self, bottleneck_dim: int, activation="gelu", down_initializer=None,
                 up_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        if not isinstance(bottleneck_dim, int) or isinstance(bottleneck_dim, bool) or bottleneck_dim <= 0:
            raise ValueError(f"`bottleneck_dim` must be a positive integer, got {bottleneck_dim!r}.")
        self.bottleneck_dim = bottleneck_dim
        self.activation = get_activation(activation)
        self.down_initializer = keras.initializers.get(
            down_initializer or keras.initializers.TruncatedNormal(stddev=0.02))
        self.up_initializer = keras.initializers.get(up_initializer)

    def build(self, inputs_shape):
        self.down = keras.layers.Dense(self.bottleneck_dim, activation=self.activation,
                                       kernel_initializer=self.down_initializer, dtype=self.dtype_policy,
                                       name="down")
        self.down.build(inputs_shape)
        self.up = keras.layers.Dense(inputs_shape[-1], kernel_initializer=self.up_initializer,
                                     dtype=self.dtype_policy, name="up")
        self.up.build(tuple(inputs_shape[:-1]) + (self.bottleneck_dim,))

    def call(self, x):
        return x + self.up(self.down(x))

    def compute_output_shape(self, inputs_shape):
        return inputs_shape

    def get_config(self):
        config = super().get_config()
        config.update({
            "bottleneck_dim": self.bottleneck_dim,
            "activation": serialize_activation(self.activation),
            "down_initializer": keras.initializers.serialize(self.down_initializer),
            "up_initializer": keras.initializers.serialize(self.up_initializer),
        })
        return config


@keras.saving.register_keras_serializable(package="keras_lm")
class AdaptedOutput(keras.layers.Layer):
    """``adapter(inner(x))``: a sub-layer's last step (its output dropout) followed by an adapter.

    Takes the place of the output dropout of a block's attention or feed-forward, so the adapter
    sits where Houlsby et al. put it: on the sub-layer's output, before the residual sum and the
    LayerNorm.

    Example:
        >>> import numpy as np
        >>> layer = AdaptedOutput(keras.layers.Dropout(0.1), BottleneckAdapter(4))
        >>> tuple(layer(np.zeros((2, 3, 8), "float32")).shape)
        (2, 3, 8)
    """

    def __init__(self, inner, adapter, **kwargs):
        super().__init__(**kwargs)
        self.inner = inner
        self.adapter = adapter

    def build(self, inputs_shape):
        if not self.inner.built:
            self.inner.build(inputs_shape)
        self.adapter.build(inputs_shape)

    def call(self, x, training=None):
        return self.adapter(self.inner(x, training=training))

    def compute_output_shape(self, inputs_shape):
        return inputs_shape

    def get_config(self):
        config = super().get_config()
        config.update({"inner": keras.saving.serialize_keras_object(self.inner),
                       "adapter": keras.saving.serialize_keras_object(self.adapter)})
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["inner"] = keras.saving.deserialize_keras_object(config["inner"])
        config["adapter"] = keras.saving.deserialize_keras_object(config["adapter"])
        return cls(**config)


def _attach(parent, attribute: str, adapter: BottleneckAdapter, hidden_dim: int) -> None:
    """Replaces ``parent.<attribute>`` (a built dropout) by ``AdaptedOutput(dropout, adapter)``."""
    inner = getattr(parent, attribute)
    wrapped = AdaptedOutput(inner, adapter, dtype=parent.dtype_policy, name=f"adapted_{inner.name}")
    with contextlib.ExitStack() as scopes:  # variable paths under the parent: transformer_layer_0/...
        for part in parent.path.split("/"):
            scopes.enter_context(keras.name_scope(part))
        wrapped.build((None, None, hidden_dim))
    parent._tracker.unlock()
    try:
        setattr(parent, attribute, wrapped)
    finally:
        parent._tracker.lock()


@keras.saving.register_keras_serializable(package="keras_lm")
class AdapterEncoder(Encoder):
    """An ``Encoder`` whose blocks each carry two bottleneck adapters (Houlsby et al., 2019).

    Block ``i`` gets ``attention_adapter`` after its self-attention output and
    ``feed_forward_adapter`` after its feed-forward output (each ``x + up(gelu(down(x)))``, before
    the residual sum). Every other layer, name and variable path is the plain ``Encoder``'s, so its
    weights copy over (`add_adapters`) and the config round-trips through ``.keras`` files.

    Args:
        bottleneck_dim: adapter width.
        adapter_activation: adapter nonlinearity.
        adapter_initializer_range: standard deviation of the ``up`` kernel; 0 (default) starts every
            adapter as the identity (the encoder's outputs are unchanged until it trains).
        **encoder_arguments: the arguments of ``keras_lm.models.Encoder``.

    Example:
        >>> encoder = AdapterEncoder(bottleneck_dim=8, vocabulary_size=100, num_layers=2, num_heads=2,
        ...                          hidden_dim=16, intermediate_dim=32, max_sequence_length=16)
        >>> encoder.get_layer("transformer_layer_0").self_attention_dropout.name
        'adapted_self_attention_dropout'
    """

    def __init__(self, bottleneck_dim: int = 64, adapter_activation="gelu",
                 adapter_initializer_range: float = 0.0, **encoder_arguments):
        super().__init__(**encoder_arguments)
        if adapter_initializer_range < 0:
            raise ValueError(f"`adapter_initializer_range` must be 0 or more, got {adapter_initializer_range}.")
        up = ("zeros" if adapter_initializer_range == 0
              else keras.initializers.TruncatedNormal(stddev=adapter_initializer_range))
        for block in self.transformer_layers:
            def adapter(name):
                return BottleneckAdapter(bottleneck_dim, activation=adapter_activation, up_initializer=up,
                                         dtype=block.dtype_policy, name=name)

            _attach(block, "self_attention_dropout", adapter("attention_adapter"), self.hidden_dim)
            _attach(block.feed_forward, "output_dropout", adapter("feed_forward_adapter"), self.hidden_dim)
        self.bottleneck_dim = bottleneck_dim
        self.adapter_activation = serialize_activation(get_activation(adapter_activation))
        self.adapter_initializer_range = float(adapter_initializer_range)

    def get_config(self):
        return {
            **super().get_config(),
            "bottleneck_dim": self.bottleneck_dim,
            "adapter_activation": self.adapter_activation,
            "adapter_initializer_range": self.adapter_initializer_range,
        }


def _encoder_arguments(backbone) -> dict:
    """The ``Encoder`` arguments of a keras_lm encoder (a family's extra keys, e.g. ``size``, dropped)."""
    if not isinstance(backbone, Encoder):
        raise ValueError(
            f"Adapters go into keras_lm encoders; got {type(backbone).__name__} '{backbone.name}'. An encoder "
            "reloaded as a SavedModel layer needs Classifier.from_saved_model(directory, num_classes, rebuild=True)."
        )
    if isinstance(backbone, AdapterEncoder):
        raise ValueError(f"'{backbone.name}' already has adapters.")
    if any(getattr(layer, "lora_enabled", False) for layer in backbone._flatten_layers(include_self=False)):
        raise ValueError(f"'{backbone.name}' has LoRA layers: merge them first (keras_lm.peft.merge_lora).")
    return Encoder.get_config(backbone)


def copy_weights(source, target, exclude=lambda path: False) -> None:
    """Assigns each variable of ``target`` (but random states and ``exclude``d paths) the value of the
    ``source`` variable with the same path; one clear error when one is missing or of another shape."""
    values = {variable.path: variable for variable in source.variables if SEED_STATE not in variable.path}
    for variable in target.variables:
        if SEED_STATE in variable.path or exclude(variable.path):
            continue
        found = values.get(variable.path)
        if found is None or tuple(found.shape) != tuple(variable.shape):
            raise ValueError(f"'{source.name}' has no variable '{variable.path}' {tuple(variable.shape)} "
                             f"to copy into '{target.name}'.")
        variable.assign(found)


def with_backbone(model, backbone):
    """A new task like ``model`` (same class, arguments, preprocessor and head weights) on ``backbone``."""
    config = model.get_config()
    config.pop("backbone", None)
    config.pop("preprocessor", None)
    rebuilt = type(model)(backbone, preprocessor=getattr(model, "preprocessor", None), **config)
    inside = {id(variable) for variable in backbone.variables}
    heads = {variable.path: variable for variable in head_weights(model)}
    for variable in rebuilt.variables:
        if id(variable) in inside or SEED_STATE in variable.path:
            continue
        if variable.path not in heads or tuple(heads[variable.path].shape) != tuple(variable.shape):
            raise ValueError(f"'{model.name}' has no head variable '{variable.path}' to carry over.")
        variable.assign(heads[variable.path])
    return rebuilt


def add_adapters(model, bottleneck_dim: int = 64, activation="gelu", initializer_range: float = 0.0):
    """A new model with bottleneck adapters in every block of ``model``'s encoder; only the adapters,
    the LayerNorms and the task head train (``freeze(new_model, "adapters")``).

    The new encoder is an `AdapterEncoder` holding copies of ``model``'s weights; a task (e.g. a
    ``Classifier``) is rebuilt around it with its head weights and preprocessor. With
    ``initializer_range=0`` the new model's outputs equal ``model``'s until it trains. ``model`` is
    left unchanged. Compile the returned model.

    Example:
        >>> import keras_lm
        >>> backbone = keras_lm.applications.Bert("tiny", vocabulary_size=100, max_sequence_length=16)
        >>> classifier = add_adapters(keras_lm.tasks.Classifier(backbone, num_classes=2), bottleneck_dim=8)
        >>> type(classifier.backbone).__name__
        'AdapterEncoder'
    """
    backbone = backbone_of(model)
    arguments = _encoder_arguments(backbone)
    adapted = AdapterEncoder(bottleneck_dim=bottleneck_dim, adapter_activation=activation,
                             adapter_initializer_range=initializer_range, **arguments)
    copy_weights(backbone, adapted, exclude=lambda path: "_adapter/" in path)
    result = adapted if backbone is model else with_backbone(model, adapted)
    return freeze(result, "adapters")
