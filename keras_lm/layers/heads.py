"""Output heads: pooler, masked-LM head tied to the token embedding, next-sentence and replaced-token heads."""
from __future__ import annotations

import keras
from keras import ops

from keras_lm.layers.utils import clone_initializer, get_activation, serialize_activation


@keras.saving.register_keras_serializable(package="keras_lm")
class Pooler(keras.layers.Layer):
    """``activation(Dense(sequence_output[:, 0]))``: a fixed-size summary from the first ([CLS]) token.

    BERT's pooler uses ``tanh``; ELECTRA's classification heads read the first token through a
    GELU dense layer (``activation="gelu"``).

    Args:
        hidden_dim: output size; defaults to the input's hidden size.
        activation: activation of the dense layer (``"tanh"``, ``"gelu"``, ``"gelu_approximate"``, ...).
        kernel_initializer, bias_initializer: initializers of the dense layer.

    Example:
        >>> import numpy as np
        >>> tuple(Pooler()(np.zeros((2, 5, 8), "float32")).shape)
        (2, 8)
    """

    def __init__(self, hidden_dim: int | None = None, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", activation="tanh", **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = hidden_dim
        self.activation = get_activation(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, inputs_shape):
        self.dense = keras.layers.Dense(
            self.hidden_dim or inputs_shape[-1],
            activation=self.activation,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            bias_initializer=clone_initializer(self.bias_initializer),
            dtype=self.dtype_policy,
            name="dense",
        )
        self.dense.build((inputs_shape[0], inputs_shape[-1]))

    def call(self, sequence_output):
        return self.dense(sequence_output[:, 0, :])

    def compute_output_shape(self, inputs_shape):
        return (inputs_shape[0], self.hidden_dim or inputs_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "activation": serialize_activation(self.activation),
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_lm")
class MaskedLMHead(keras.layers.Layer):
    """Masked-LM logits at selected positions, with output weights tied to the token embedding.

    ``gather -> Dense(width, activation) -> LayerNorm -> x @ embeddings.T + bias``; the logits are
    float32 under any dtype policy. ``width`` is the token embedding's ``output_dim`` (the hidden
    size, or ELECTRA's smaller embedding size, as in its generator head). Without ``token_embedding`` the head owns an untied
    ``[hidden, vocabulary_size]`` output kernel.

    Tying and saving: ``get_config`` records the embedding's config, so a head restored on its own
    gets a fresh (untied) embedding of the same shape. A model that owns both the backbone and the
    head must create the head in its constructor from ``backbone.token_embedding`` (and rebuild
    it that way in ``from_config``); the reloaded head is then tied to the reloaded embedding.

    Args:
        vocabulary_size: number of output classes; inferred from ``token_embedding`` if None.
        token_embedding: the ``keras.layers.Embedding`` whose ``[V, H]`` matrix is the output kernel.
        activation: activation of the transform dense layer (BERT: GELU).
        layer_norm_epsilon: LayerNorm epsilon.
        kernel_initializer, bias_initializer: initializers of the head's own weights.

    Call arguments:
        sequence_output: ``[B, T, H]``.
        mask_positions: int ``[B, P]`` positions to predict.

    Example:
        >>> import keras, numpy as np
        >>> embedding = keras.layers.Embedding(100, 8)
        >>> _ = embedding(np.zeros((1, 1), "int32"))
        >>> head = MaskedLMHead(token_embedding=embedding)
        >>> tuple(head(np.zeros((2, 5, 8), "float32"), np.array([[1, 3], [0, 4]])).shape)
        (2, 2, 100)
    """

    def __init__(
        self,
        vocabulary_size: int | None = None,
        token_embedding: keras.layers.Embedding | None = None,
        activation="gelu",
        layer_norm_epsilon: float = 1e-12,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if token_embedding is not None:
            if vocabulary_size is not None and vocabulary_size != token_embedding.input_dim:
                raise ValueError(
                    f"vocabulary_size={vocabulary_size} does not match the token embedding's "
                    f"input_dim={token_embedding.input_dim}."
                )
            vocabulary_size = token_embedding.input_dim
        if vocabulary_size is None:
            raise ValueError("MaskedLMHead needs `vocabulary_size` or `token_embedding`.")
        self.vocabulary_size = int(vocabulary_size)
        self.token_embedding = token_embedding
        self.activation = get_activation(activation)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, sequence_output_shape, mask_positions_shape=None):
        hidden_dim = sequence_output_shape[-1]
        width = hidden_dim  # of the transform: the embedding width when tied (ELECTRA: embedding_dim)
        if self.token_embedding is not None:
            if not self.token_embedding.built:
                self.token_embedding.build((None, None))
            width = self.token_embedding.output_dim
        self.transform_dense = keras.layers.Dense(
            width,
            activation=self.activation,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            bias_initializer=clone_initializer(self.bias_initializer),
            dtype=self.dtype_policy,
            name="transform_dense",
        )
        self.transform_dense.build((None, None, hidden_dim))
        self.transform_layer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="transform_layer_norm"
        )
        self.transform_layer_norm.build((None, None, width))
        if self.token_embedding is None:
            self.output_kernel = self.add_weight(
                name="output_kernel",
                shape=(hidden_dim, self.vocabulary_size),
                initializer=clone_initializer(self.kernel_initializer),
            )
        self.output_bias = self.add_weight(
            name="output_bias",
            shape=(self.vocabulary_size,),
            initializer=clone_initializer(self.bias_initializer),
            dtype="float32",
            autocast=False,  # added to the float32 logits at full precision
        )

    def call(self, sequence_output, mask_positions):
        positions = ops.expand_dims(ops.cast(mask_positions, "int32"), -1)
        x = ops.take_along_axis(sequence_output, positions, axis=1)  # [B, P, H]
        x = self.transform_layer_norm(self.transform_dense(x))
        if self.token_embedding is not None:
            kernel = ops.cast(self.token_embedding.embeddings, x.dtype)
            logits = ops.matmul(x, ops.transpose(kernel))
        else:
            logits = ops.matmul(x, ops.cast(self.output_kernel, x.dtype))
        return ops.cast(logits, "float32") + self.output_bias

    def compute_output_shape(self, sequence_output_shape, mask_positions_shape):
        return tuple(mask_positions_shape) + (self.vocabulary_size,)

    def compute_output_spec(self, sequence_output, mask_positions):
        shape = tuple(mask_positions.shape) + (self.vocabulary_size,)
        return keras.KerasTensor(shape, dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "token_embedding": (
                    keras.layers.serialize(self.token_embedding) if self.token_embedding is not None else None
                ),
                "activation": serialize_activation(self.activation),
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if config.get("token_embedding") is not None:
            config["token_embedding"] = keras.layers.deserialize(config["token_embedding"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_lm")
class NextSentenceHead(keras.layers.Layer):
    """Two-way "is the second segment the real continuation?" logits (float32) from the pooled output.

    Args:
        kernel_initializer, bias_initializer: initializers of the dense layer.

    Example:
        >>> import numpy as np
        >>> tuple(NextSentenceHead()(np.zeros((3, 8), "float32")).shape)
        (3, 2)
    """

    def __init__(self, kernel_initializer="glorot_uniform", bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, inputs_shape):
        self.dense = keras.layers.Dense(
            2,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            bias_initializer=clone_initializer(self.bias_initializer),
            dtype=self.dtype_policy,
            name="dense",
        )
        self.dense.build(inputs_shape)

    def call(self, pooled_output):
        return ops.cast(self.dense(pooled_output), "float32")

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape[:-1]) + (2,)

    def compute_output_spec(self, pooled_output):
        return keras.KerasTensor(tuple(pooled_output.shape[:-1]) + (2,), dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_lm")
class ReplacedTokenDetectionHead(keras.layers.Layer):
    """ELECTRA's discriminator head: one float32 "was this token replaced?" logit per position.

    ``Dense(hidden, activation) -> Dense(1)`` on every position of the sequence output, as
    transformers' ``ElectraDiscriminatorPredictions`` (``dense``, ``dense_prediction``).

    Args:
        activation: activation between the two dense layers (ELECTRA: the config's ``hidden_act``, GELU).
        kernel_initializer, bias_initializer: initializers of the dense layers.

    Example:
        >>> import numpy as np
        >>> tuple(ReplacedTokenDetectionHead()(np.zeros((2, 5, 8), "float32")).shape)
        (2, 5)
    """

    def __init__(self, activation="gelu", kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 **kwargs):
        super().__init__(**kwargs)
        self.activation = get_activation(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, sequence_output_shape):
        hidden_dim = sequence_output_shape[-1]
        self.dense = keras.layers.Dense(
            hidden_dim,
            activation=self.activation,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            bias_initializer=clone_initializer(self.bias_initializer),
            dtype=self.dtype_policy,
            name="dense",
        )
        self.dense.build((None, None, hidden_dim))
        self.prediction = keras.layers.Dense(
            1,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            bias_initializer=clone_initializer(self.bias_initializer),
            dtype=self.dtype_policy,
            name="prediction",
        )
        self.prediction.build((None, None, hidden_dim))

    def call(self, sequence_output):
        logits = self.prediction(self.dense(sequence_output))
        return ops.cast(ops.squeeze(logits, axis=-1), "float32")

    def compute_output_shape(self, sequence_output_shape):
        return tuple(sequence_output_shape[:-1])

    def compute_output_spec(self, sequence_output):
        return keras.KerasTensor(tuple(sequence_output.shape[:-1]), dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "activation": serialize_activation(self.activation),
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config
