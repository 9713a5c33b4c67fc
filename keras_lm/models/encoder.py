"""Encoder: a bidirectional transformer backbone (BERT-style) as a functional Keras model."""
from __future__ import annotations

import keras

from keras_lm.layers import Pooler, PositionEmbedding, SegmentEmbedding, TransformerBlock
from keras_lm.layers.attention import IMPLEMENTATIONS
from keras_lm.layers.embeddings import TokenEmbedding
from keras_lm.layers.utils import get_activation, serialize_activation
from keras_lm.models.backbone import Backbone, check_choice, check_dropout, check_heads, check_positive_integers

INPUT_NAMES = ("token_ids", "segment_ids", "padding_mask")


def truncated_normal(stddev: float = 0.02):
    """BERT's initializer for every kernel and embedding."""
    return keras.initializers.TruncatedNormal(stddev=stddev)


def check_encoder_config(vocabulary_size, num_layers, num_heads, hidden_dim, intermediate_dim,
                         max_sequence_length, num_segments, dropout, embedding_dim=None) -> None:
    """Raise one clear ValueError for an impossible encoder configuration."""
    check_positive_integers(vocabulary_size=vocabulary_size, num_layers=num_layers, num_heads=num_heads,
                            hidden_dim=hidden_dim, intermediate_dim=intermediate_dim,
                            max_sequence_length=max_sequence_length, num_segments=num_segments)
    if embedding_dim is not None:
        check_positive_integers(embedding_dim=embedding_dim)
    check_heads(hidden_dim, num_heads)
    check_dropout(dropout)


@keras.saving.register_keras_serializable(package="keras_lm")
class Encoder(Backbone):
    """Bidirectional transformer encoder: embeddings, ``num_layers`` blocks and a pooler.

    ``token + position + segment embeddings -> LayerNorm -> Dropout [-> Dense projection] ->
    TransformerBlock x num_layers``; the pooled output is ``tanh(Dense(h[:, 0]))`` (or another
    ``pooler_activation``). Blocks are named ``transformer_layer_{i}`` and the pooler ``pooler``, so
    per-layer outputs are reachable as ``encoder.get_layer(f"transformer_layer_{i}").output``.

    Inputs (a dict of ``[batch, length]`` int tensors): ``token_ids``, ``segment_ids`` and
    ``padding_mask`` (1/true for real tokens; bool is accepted). Outputs (a dict):
    ``sequence_output`` ``[batch, length, hidden_dim]`` and ``pooled_output`` ``[batch, hidden_dim]``.

    Args:
        vocabulary_size: token vocabulary size.
        num_layers: number of transformer blocks.
        num_heads: attention heads per block; must divide ``hidden_dim``.
        hidden_dim: model width.
        intermediate_dim: feed-forward inner width.
        dropout: dropout rate everywhere (embeddings, attention, residual branches).
        max_sequence_length: number of learned positions.
        num_segments: number of segment ids.
        activation: feed-forward activation; ``"gelu"`` (erf) or ``"gelu_approximate"`` (tanh).
        layer_norm_epsilon: LayerNorm epsilon.
        norm_first: pre-LN blocks instead of BERT's post-LN.
        attention_implementation: ``"auto"`` (the fastest exact kernel for the device, see
            ``keras_lm.layers.MultiHeadAttention``), ``"fused"`` or ``"explicit"``.
        dtype: a dtype or ``keras.DTypePolicy`` (e.g. ``"mixed_bfloat16"``); None uses the global policy.
        embedding_dim: width of the token/position/segment embeddings and their LayerNorm (ELECTRA,
            ALBERT); when it differs from ``hidden_dim`` a Dense layer ``embedding_projection`` maps
            the embeddings to ``hidden_dim`` before the blocks. None: ``hidden_dim``, no projection.
        pooler_activation: activation of the pooler's dense layer: ``"tanh"`` (BERT) or e.g. ``"gelu"``
            (the first-token dense layer of ELECTRA's classification head, imported as the pooler).

    Example:
        >>> import numpy as np
        >>> encoder = Encoder(vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=16,
        ...                   intermediate_dim=32, max_sequence_length=32)
        >>> outputs = encoder({"token_ids": np.ones((2, 6), "int32"),
        ...                    "segment_ids": np.zeros((2, 6), "int32"),
        ...                    "padding_mask": np.ones((2, 6), "int32")})
        >>> tuple(outputs["sequence_output"].shape), tuple(outputs["pooled_output"].shape)
        ((2, 6, 16), (2, 16))
    """

    def __init__(
        self,
        vocabulary_size: int,
        num_layers: int,
        num_heads: int,
        hidden_dim: int,
        intermediate_dim: int,
        dropout: float = 0.1,
        max_sequence_length: int = 512,
        num_segments: int = 2,
        activation="gelu",
        layer_norm_epsilon: float = 1e-12,
        norm_first: bool = False,
        attention_implementation: str = "auto",
        dtype=None,
        embedding_dim: int | None = None,
        pooler_activation="tanh",
        **kwargs,
    ):
        self._check_kwargs(type(self).__name__, kwargs)
        check_encoder_config(vocabulary_size, num_layers, num_heads, hidden_dim, intermediate_dim,
                             max_sequence_length, num_segments, dropout, embedding_dim)
        check_choice("attention_implementation", attention_implementation, IMPLEMENTATIONS)
        activation = get_activation(activation)
        dtype = self._resolve_dtype(dtype)
        embedding_width = hidden_dim if embedding_dim is None else embedding_dim

        # === Layers ===
        token_embedding, position_embedding, segment_embedding, embeddings_layer_norm = self._embedding_layers(
            vocabulary_size, embedding_width, max_sequence_length, num_segments, layer_norm_epsilon, dtype
        )
        embedding_projection = None
        if embedding_width != hidden_dim:
            embedding_projection = keras.layers.Dense(
                hidden_dim, kernel_initializer=truncated_normal(), dtype=dtype, name="embedding_projection"
            )
        embeddings_dropout = keras.layers.Dropout(dropout, dtype=dtype, name="embeddings_dropout")
        transformer_layers = [
            TransformerBlock(
                num_heads=num_heads,
                intermediate_dim=intermediate_dim,
                dropout=dropout,
                activation=activation,
                layer_norm_epsilon=layer_norm_epsilon,
                norm_first=norm_first,
                implementation=attention_implementation,
                kernel_initializer=truncated_normal(),
                dtype=dtype,
                name=f"transformer_layer_{i}",
            )
            for i in range(num_layers)
        ]
        pooler = Pooler(kernel_initializer=truncated_normal(), activation=pooler_activation, dtype=dtype,
                        name="pooler")

        # === Functional graph ===
        inputs = {name: keras.Input(shape=(None,), dtype="int32", name=name) for name in INPUT_NAMES}
        tokens = token_embedding(inputs["token_ids"])
        x = tokens + position_embedding(tokens) + segment_embedding(inputs["segment_ids"])
        x = embeddings_dropout(embeddings_layer_norm(x))
        if embedding_projection is not None:
            x = embedding_projection(x)
        for block in transformer_layers:
            x = block(x, padding_mask=inputs["padding_mask"])
        outputs = {"sequence_output": x, "pooled_output": pooler(x)}
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self._set_dtype_policy(dtype)

        # === Attributes ===
        self.token_embedding = token_embedding
        self.position_embedding = position_embedding
        self.segment_embedding = segment_embedding
        self.transformer_layers = transformer_layers
        self.pooler = pooler
        self.vocabulary_size = vocabulary_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout
        self.max_sequence_length = max_sequence_length
        self.num_segments = num_segments
        self.activation = activation
        self.layer_norm_epsilon = layer_norm_epsilon
        self.norm_first = norm_first
        self.attention_implementation = attention_implementation
        self.embedding_dim = embedding_dim
        self.pooler_activation = serialize_activation(pooler.activation)

    def _embedding_layers(self, vocabulary_size, embedding_dim, max_sequence_length, num_segments,
                          layer_norm_epsilon, dtype) -> tuple:
        """``(token, position, segment embedding, embeddings LayerNorm)`` layers of width ``embedding_dim``.

        Called before the graph is built; a subclass may return layers it shares with another model.
        """
        token_embedding = TokenEmbedding(
            vocabulary_size, embedding_dim, embeddings_initializer=truncated_normal(),
            dtype=dtype, name="token_embedding",
        )
        position_embedding = PositionEmbedding(
            max_sequence_length, initializer=truncated_normal(), dtype=dtype, name="position_embedding"
        )
        segment_embedding = SegmentEmbedding(
            num_segments, embedding_dim, embeddings_initializer=truncated_normal(),
            dtype=dtype, name="segment_embedding",
        )
        embeddings_layer_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=dtype, name="embeddings_layer_norm"
        )
        return token_embedding, position_embedding, segment_embedding, embeddings_layer_norm

    def get_config(self):
        return {
            **self._base_config(),
            "vocabulary_size": self.vocabulary_size,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "hidden_dim": self.hidden_dim,
            "intermediate_dim": self.intermediate_dim,
            "dropout": self.dropout,
            "max_sequence_length": self.max_sequence_length,
            "num_segments": self.num_segments,
            "activation": serialize_activation(self.activation),
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "norm_first": self.norm_first,
            "attention_implementation": self.attention_implementation,
            "embedding_dim": self.embedding_dim,
            # only when it is not BERT's tanh: configs written before the option stay as they were
            **({} if self.pooler_activation == "tanh" else {"pooler_activation": self.pooler_activation}),
        }
