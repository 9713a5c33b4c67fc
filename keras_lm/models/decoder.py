"""Decoder: a causal transformer backbone (GPT-2, Llama) as a functional Keras model, with a KV cache."""
from __future__ import annotations

import keras
from keras import ops

from keras_lm.layers import FEED_FORWARDS, NORMALIZATIONS, PositionEmbedding, RMSNorm, TransformerBlock
from keras_lm.layers.attention import IMPLEMENTATIONS
from keras_lm.layers.embeddings import TokenEmbedding
from keras_lm.layers.utils import get_activation, serialize_activation
from keras_lm.models.backbone import (
    Backbone,
    check_choice,
    check_dropout,
    check_heads,
    check_positive_integers,
    output_logits,
)

INPUT_NAMES = ("token_ids", "padding_mask")
POSITION_EMBEDDINGS = ("learned", "rotary")


def check_decoder_config(vocabulary_size, num_layers, num_heads, hidden_dim, intermediate_dim,
                         max_sequence_length, num_key_value_heads, head_dim, dropout, position_embedding,
                         normalization, feed_forward) -> None:
    """Raise one clear ValueError for an impossible decoder configuration."""
    positive = dict(vocabulary_size=vocabulary_size, num_layers=num_layers, num_heads=num_heads,
                    hidden_dim=hidden_dim, intermediate_dim=intermediate_dim,
                    max_sequence_length=max_sequence_length, num_key_value_heads=num_key_value_heads)
    if head_dim is not None:
        positive["head_dim"] = head_dim
    check_positive_integers(**positive)
    check_heads(hidden_dim, num_heads, head_dim, num_key_value_heads)
    check_choice("position_embedding", position_embedding, POSITION_EMBEDDINGS)
    if position_embedding == "rotary" and (head_dim or hidden_dim // num_heads) % 2:
        raise ValueError("Rotary position embedding needs an even head size.")
    check_choice("normalization", normalization, NORMALIZATIONS)
    check_choice("feed_forward", feed_forward, FEED_FORWARDS)
    check_dropout(dropout)


@keras.saving.register_keras_serializable(package="keras_lm")
class Decoder(Backbone):
    """Causal transformer decoder: token (+ learned position) embeddings, pre-LN blocks, final norm.

    ``token embedding [+ position embedding] -> Dropout -> pre-LN causal TransformerBlock x
    num_layers -> final norm``. Blocks are named ``transformer_layer_{i}``, the final norm ``final_norm``.

    Inputs (a dict of ``[batch, length]`` int tensors): ``token_ids`` and ``padding_mask``. The mask
    is 0 for padding and a document number k > 0 for real tokens: attention is allowed iff causal,
    both tokens are real and they carry the same number — an all-ones mask is ordinary causal
    attention, a packed row ``1,1,1,2,2,3,…`` resets attention at document boundaries (learned
    positions stay the row positions). Output: ``{"sequence_output": [batch, length, hidden_dim]}``.

    Language-model head: ``decoder.logits(sequence_output)`` gives float32 ``[batch, length,
    vocabulary_size]`` logits, through the transposed token embedding (``tie_word_embeddings=True``)
    or the separate ``decoder.lm_head`` Dense (no bias).

    Incremental decoding: ``cache = decoder.init_cache(batch_size, max_length)`` (a tuple with one
    ``[batch, 2, num_key_value_heads, max_length, head_dim]`` tensor per layer), then
    ``logits, hidden, cache = decoder.call_with_cache(token_ids, cache, cache_index)`` runs the tokens
    at positions ``cache_index …`` and returns their logits, final hidden states and the updated cache.

    Args:
        vocabulary_size: token vocabulary size.
        num_layers: number of decoder blocks.
        num_heads: query heads per block.
        hidden_dim: model width.
        intermediate_dim: feed-forward inner width.
        num_key_value_heads: key/value heads (grouped-query attention); must divide ``num_heads``.
            Defaults to ``num_heads``.
        head_dim: size of each head; defaults to ``hidden_dim // num_heads``.
        max_sequence_length: context length (the number of learned positions).
        position_embedding: ``"learned"`` (GPT-2) or ``"rotary"`` (RoPE, Llama).
        rope_max_wavelength: the RoPE base (``rope_theta``).
        normalization: ``"layer_norm"`` or ``"rms_norm"``.
        layer_norm_epsilon: epsilon of every norm.
        feed_forward: ``"mlp"`` or ``"gated"`` (SwiGLU with ``activation="silu"``).
        activation: feed-forward activation.
        use_bias: biases on the attention and feed-forward projections.
        tie_word_embeddings: share the token embedding with the output projection.
        dropout: dropout rate on embeddings, attention and residual branches.
        attention_implementation: ``"auto"`` (the fastest exact kernel for the device, see
            ``keras_lm.layers.MultiHeadAttention``), ``"fused"`` or ``"explicit"``.
        dtype: a dtype or ``keras.DTypePolicy``; None uses the global policy.

    Example:
        >>> import numpy as np
        >>> decoder = Decoder(vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=16,
        ...                   intermediate_dim=32, max_sequence_length=32)
        >>> inputs = {"token_ids": np.ones((2, 6), "int32"), "padding_mask": np.ones((2, 6), "int32")}
        >>> hidden = decoder(inputs)["sequence_output"]
        >>> tuple(hidden.shape), tuple(decoder.logits(hidden).shape)
        ((2, 6, 16), (2, 6, 100))
    """

    def __init__(
        self,
        vocabulary_size: int,
        num_layers: int,
        num_heads: int,
        hidden_dim: int,
        intermediate_dim: int,
        num_key_value_heads: int | None = None,
        head_dim: int | None = None,
        max_sequence_length: int = 1024,
        position_embedding: str = "learned",
        rope_max_wavelength: float = 10000.0,
        normalization: str = "layer_norm",
        layer_norm_epsilon: float = 1e-5,
        feed_forward: str = "mlp",
        activation="gelu_approximate",
        use_bias: bool = True,
        tie_word_embeddings: bool = True,
        dropout: float = 0.0,
        attention_implementation: str = "auto",
        dtype=None,
        **kwargs,
    ):
        self._check_kwargs(type(self).__name__, kwargs)
        num_key_value_heads = num_heads if num_key_value_heads is None else num_key_value_heads
        check_decoder_config(vocabulary_size, num_layers, num_heads, hidden_dim, intermediate_dim,
                             max_sequence_length, num_key_value_heads, head_dim, dropout, position_embedding,
                             normalization, feed_forward)
        check_choice("attention_implementation", attention_implementation, IMPLEMENTATIONS)
        activation = get_activation(activation)
        dtype = self._resolve_dtype(dtype)
        initializer = keras.initializers.RandomNormal(stddev=0.02)

        # === Layers ===
        token_embedding = TokenEmbedding(
            vocabulary_size, hidden_dim, embeddings_initializer=initializer, dtype=dtype, name="token_embedding"
        )
        position_layer = None
        if position_embedding == "learned":
            position_layer = PositionEmbedding(
                max_sequence_length, initializer=keras.initializers.RandomNormal(stddev=0.01),
                dtype=dtype, name="position_embedding",
            )
        embeddings_dropout = keras.layers.Dropout(dropout, dtype=dtype, name="embeddings_dropout")
        transformer_layers = [
            TransformerBlock(
                num_heads=num_heads,
                intermediate_dim=intermediate_dim,
                num_key_value_heads=num_key_value_heads,
                head_dim=head_dim,
                rope_max_wavelength=rope_max_wavelength if position_embedding == "rotary" else None,
                dropout=dropout,
                activation=activation,
                normalization=normalization,
                layer_norm_epsilon=layer_norm_epsilon,
                norm_first=True,
                feed_forward=feed_forward,
                use_bias=use_bias,
                implementation=attention_implementation,
                kernel_initializer=initializer,
                dtype=dtype,
                name=f"transformer_layer_{i}",
            )
            for i in range(num_layers)
        ]
        if normalization == "rms_norm":
            final_norm = RMSNorm(epsilon=layer_norm_epsilon, dtype=dtype, name="final_norm")
        else:
            final_norm = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, dtype=dtype, name="final_norm")

        # === Functional graph ===
        inputs = {name: keras.Input(shape=(None,), dtype="int32", name=name) for name in INPUT_NAMES}
        x = token_embedding(inputs["token_ids"])
        if position_layer is not None:
            x = x + position_layer(x)
        x = embeddings_dropout(x)
        for block in transformer_layers:
            x = block(x, padding_mask=inputs["padding_mask"], use_causal_mask=True)
        outputs = {"sequence_output": final_norm(x)}
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self._set_dtype_policy(dtype)

        # === Untied output projection (outside the graph: the backbone outputs hidden states) ===
        self.lm_head = None
        if not tie_word_embeddings:
            self.lm_head = keras.layers.Dense(
                vocabulary_size, use_bias=False, kernel_initializer=initializer, dtype=dtype, name="lm_head"
            )
            self.lm_head.build((None, None, hidden_dim))

        # === Attributes ===
        self.token_embedding = token_embedding
        self.position_embedding = position_layer
        self.embeddings_dropout = embeddings_dropout
        self.transformer_layers = transformer_layers
        self.final_norm = final_norm
        self.vocabulary_size = vocabulary_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        self.num_key_value_heads = num_key_value_heads
        self.head_dim = head_dim
        self.max_sequence_length = max_sequence_length
        self.position_embedding_type = position_embedding
        self.rope_max_wavelength = rope_max_wavelength
        self.normalization = normalization
        self.layer_norm_epsilon = layer_norm_epsilon
        self.feed_forward = feed_forward
        self.activation = activation
        self.use_bias = use_bias
        self.tie_word_embeddings = tie_word_embeddings
        self.dropout = dropout
        self.attention_implementation = attention_implementation

    # --- language-model head -------------------------------------------------------------------
    def logits(self, sequence_output):
        """Float32 next-token logits ``[..., vocabulary_size]`` for hidden states ``[..., hidden_dim]``."""
        return output_logits(sequence_output, self.token_embedding, self.lm_head)

    # --- incremental decoding ------------------------------------------------------------------
    def init_cache(self, batch_size: int, max_length: int) -> tuple:
        """A zero KV cache: one ``[batch, 2, num_key_value_heads, max_length, head_dim]`` tensor per layer."""
        if max_length > self.max_sequence_length and self.position_embedding is not None:
            raise ValueError(
                f"A cache of {max_length} positions exceeds max_sequence_length={self.max_sequence_length}."
            )
        dtype = self.transformer_layers[0].compute_dtype
        return tuple(
            ops.zeros(block.self_attention.cache_shape(batch_size, max_length), dtype=dtype)
            for block in self.transformer_layers
        )

    def call_with_cache(self, token_ids, cache, cache_index, padding_mask=None, training=False):
        """Runs ``token_ids`` ``[B, t]`` at positions ``cache_index … cache_index + t - 1``.

        Args:
            token_ids: ``[B, t]`` int tokens (t = the prompt length to fill the cache, 1 per step).
            cache: from ``init_cache`` or a previous call.
            cache_index: int or scalar int tensor, the position of ``token_ids[:, 0]``.
            padding_mask: optional ``[B, max_length]`` 0 / document-number mask over all cache
                positions; None means every position is real (plain causal attention).

        Returns:
            ``(logits [B, t, vocabulary_size] float32, hidden [B, t, hidden_dim], cache)``.
        """
        cache_index = ops.cast(cache_index, "int32")
        x = self.token_embedding(token_ids)
        if self.position_embedding is not None:
            x = x + self.position_embedding(x, start_index=cache_index)
        x = self.embeddings_dropout(x, training=training)
        new_cache = []
        for block, layer_cache in zip(self.transformer_layers, cache):
            x, layer_cache = block(x, padding_mask=padding_mask, use_causal_mask=True, cache=layer_cache,
                                   cache_index=cache_index, training=training)
            new_cache.append(layer_cache)
        hidden = self.final_norm(x)
        return self.logits(hidden), hidden, tuple(new_cache)

    def get_config(self):
        return {
            **self._base_config(),
            "vocabulary_size": self.vocabulary_size,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "hidden_dim": self.hidden_dim,
            "intermediate_dim": self.intermediate_dim,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "max_sequence_length": self.max_sequence_length,
            "position_embedding": self.position_embedding_type,
            "rope_max_wavelength": self.rope_max_wavelength,
            "normalization": self.normalization,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "feed_forward": self.feed_forward,
            "activation": serialize_activation(self.activation),
            "use_bias": self.use_bias,
            "tie_word_embeddings": self.tie_word_embeddings,
            "dropout": self.dropout,
            "attention_implementation": self.attention_implementation,
        }
