"""EncoderDecoder: a sequence-to-sequence transformer backbone (T5, the original Transformer)."""
from __future__ import annotations

import math

import keras
from keras import ops

from keras_lm.layers import (
    FEED_FORWARDS,
    NORMALIZATIONS,
    RelativePositionBias,
    RMSNorm,
    SinusoidalPositionEncoding,
    TransformerBlock,
)
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

INPUT_NAMES = ("encoder_token_ids", "encoder_padding_mask", "decoder_token_ids", "decoder_padding_mask")
POSITION_EMBEDDINGS = ("relative", "sinusoidal")


def check_encoder_decoder_config(vocabulary_size, num_layers, num_decoder_layers, num_heads, hidden_dim,
                                 intermediate_dim, head_dim, position_embedding, num_buckets, max_distance,
                                 normalization, feed_forward, dropout) -> None:
    """Raise one clear ValueError for an impossible encoder-decoder configuration."""
    positive = dict(vocabulary_size=vocabulary_size, num_layers=num_layers, num_decoder_layers=num_decoder_layers,
                    num_heads=num_heads, hidden_dim=hidden_dim, intermediate_dim=intermediate_dim,
                    num_buckets=num_buckets, max_distance=max_distance)
    if head_dim is not None:
        positive["head_dim"] = head_dim
    check_positive_integers(**positive)
    check_heads(hidden_dim, num_heads, head_dim)
    check_choice("position_embedding", position_embedding, POSITION_EMBEDDINGS)
    if position_embedding == "relative" and num_buckets < 4:
        raise ValueError(f"num_buckets={num_buckets} is too small for relative positions; use at least 4 (T5: 32).")
    if position_embedding == "sinusoidal" and hidden_dim % 2:
        raise ValueError(f"Sinusoidal positions need an even hidden_dim, got {hidden_dim}.")
    check_choice("normalization", normalization, NORMALIZATIONS)
    check_choice("feed_forward", feed_forward, FEED_FORWARDS)
    check_dropout(dropout)


@keras.saving.register_keras_serializable(package="keras_lm")
class EncoderDecoder(Backbone):
    """Encoder-decoder transformer: a shared token embedding, an encoder stack and a decoder stack.

    Encoder: ``token embedding [* sqrt(hidden_dim)] [+ sinusoidal positions] -> Dropout ->
    TransformerBlock x num_layers -> final norm (pre-LN only) -> Dropout``. Decoder: the same
    over the decoder tokens with causal self-attention and cross-attention to the encoder output
    (``num_decoder_layers`` blocks). With ``position_embedding="relative"`` (T5) each stack's
    ``RelativePositionBias`` (bidirectional in the encoder, causal in the decoder) is computed once
    and added to the self-attention scores of every block of the stack.

    Layers: ``token_embedding``, ``encoder_layer_{i}``, ``decoder_layer_{i}`` (their
    ``cross_attention`` attends to the encoder), ``encoder_position_bias`` /
    ``decoder_position_bias``, ``encoder_final_norm`` / ``decoder_final_norm`` and, untied,
    ``lm_head``.

    Inputs (a dict of ``[batch, length]`` int tensors): ``encoder_token_ids``,
    ``encoder_padding_mask``, ``decoder_token_ids``, ``decoder_padding_mask`` (1 for real tokens,
    0 for padding). Outputs: ``encoder_sequence_output`` ``[batch, source_length, hidden_dim]`` and
    ``decoder_sequence_output`` ``[batch, target_length, hidden_dim]``. ``logits(decoder_output)``
    gives float32 ``[..., vocabulary_size]`` logits.

    Incremental decoding: ``encoder_output, context_caches = model.encode(inputs)`` once per
    request (the cross-attention keys/values of every decoder layer), ``cache =
    model.init_cache(batch_size, max_length)``, then per step ``logits, hidden, cache =
    model.call_with_cache(decoder_token_ids, cache, cache_index, context_caches=context_caches,
    encoder_padding_mask=...)``.

    T5 (``keras_lm.applications.T5``): the defaults — pre-LN, RMSNorm, no biases, attention scale
    1.0, relative positions; v1.0 has a ReLU ``"mlp"`` and ties the output projection with a
    ``hidden_dim ** -0.5`` rescale (``scale_decoder_output``), v1.1 a gated GELU and an untied
    ``lm_head``. The original Transformer: ``norm_first=False``, ``"layer_norm"``, biases,
    ``attention_scale=None``, ``position_embedding="sinusoidal"``, ``scale_embeddings=True``.

    Args:
        vocabulary_size: token vocabulary size (shared by source and target).
        num_layers: encoder blocks.
        num_heads: attention heads per block.
        hidden_dim: model width.
        intermediate_dim: feed-forward inner width.
        num_decoder_layers: decoder blocks; defaults to ``num_layers``.
        head_dim: size of each head; defaults to ``hidden_dim // num_heads``.
        position_embedding: ``"relative"`` (T5 buckets) or ``"sinusoidal"`` (fixed, added to the embeddings).
        num_buckets, max_distance: of the relative position buckets.
        normalization: ``"rms_norm"`` or ``"layer_norm"``.
        layer_norm_epsilon: epsilon of every norm.
        norm_first: pre-LN blocks (and a final norm per stack) instead of post-LN.
        feed_forward: ``"mlp"`` or ``"gated"``.
        activation: feed-forward activation.
        use_bias: biases on every projection.
        attention_scale: multiplier of the attention scores; None means ``head_dim ** -0.5``.
        tie_word_embeddings: project to the vocabulary with the token embedding (else ``lm_head``).
        scale_decoder_output: multiply the decoder output by ``hidden_dim ** -0.5`` before the projection.
        scale_embeddings: multiply token embeddings by ``sqrt(hidden_dim)``.
        dropout: dropout rate on embeddings, attention, residual branches and stack outputs.
        dtype: a dtype or ``keras.DTypePolicy``; None uses the global policy.

    Example:
        >>> import numpy as np
        >>> model = EncoderDecoder(vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=16,
        ...                        intermediate_dim=32, num_buckets=8, max_distance=16)
        >>> outputs = model({"encoder_token_ids": np.ones((2, 7), "int32"),
        ...                  "encoder_padding_mask": np.ones((2, 7), "int32"),
        ...                  "decoder_token_ids": np.ones((2, 5), "int32"),
        ...                  "decoder_padding_mask": np.ones((2, 5), "int32")})
        >>> tuple(outputs["encoder_sequence_output"].shape), tuple(outputs["decoder_sequence_output"].shape)
        ((2, 7, 16), (2, 5, 16))
        >>> tuple(model.logits(outputs["decoder_sequence_output"]).shape)
        (2, 5, 100)
    """

    def __init__(
        self,
        vocabulary_size: int,
        num_layers: int,
        num_heads: int,
        hidden_dim: int,
        intermediate_dim: int,
        num_decoder_layers: int | None = None,
        head_dim: int | None = None,
        position_embedding: str = "relative",
        num_buckets: int = 32,
        max_distance: int = 128,
        normalization: str = "rms_norm",
        layer_norm_epsilon: float = 1e-6,
        norm_first: bool = True,
        feed_forward: str = "mlp",
        activation="relu",
        use_bias: bool = False,
        attention_scale: float | None = 1.0,
        tie_word_embeddings: bool = True,
        scale_decoder_output: bool = False,
        scale_embeddings: bool = False,
        dropout: float = 0.0,
        dtype=None,
        **kwargs,
    ):
        self._check_kwargs(type(self).__name__, kwargs)
        num_decoder_layers = num_layers if num_decoder_layers is None else num_decoder_layers
        check_encoder_decoder_config(vocabulary_size, num_layers, num_decoder_layers, num_heads, hidden_dim,
                                     intermediate_dim, head_dim, position_embedding, num_buckets, max_distance,
                                     normalization, feed_forward, dropout)
        activation = get_activation(activation)
        dtype = self._resolve_dtype(dtype)
        embedding_initializer = keras.initializers.RandomNormal(stddev=1.0 if not scale_embeddings else
                                                                hidden_dim**-0.5)
        kernel_initializer = keras.initializers.VarianceScaling(1.0, mode="fan_in", distribution="truncated_normal")

        # === Layers ===
        token_embedding = TokenEmbedding(vocabulary_size, hidden_dim, embeddings_initializer=embedding_initializer,
                                         dtype=dtype, name="token_embedding")

        def positions(name, bidirectional):
            if position_embedding == "sinusoidal":
                return SinusoidalPositionEncoding(dtype=dtype, name=name)
            return RelativePositionBias(num_heads, num_buckets, max_distance, bidirectional=bidirectional,
                                        embeddings_initializer=keras.initializers.RandomNormal(stddev=hidden_dim**-0.5),
                                        dtype=dtype, name=name)

        def blocks(prefix, count, cross_attention):
            return [
                TransformerBlock(
                    num_heads=num_heads, intermediate_dim=intermediate_dim, head_dim=head_dim, dropout=dropout,
                    activation=activation, normalization=normalization, layer_norm_epsilon=layer_norm_epsilon,
                    norm_first=norm_first, feed_forward=feed_forward, use_bias=use_bias,
                    cross_attention=cross_attention, attention_scale=attention_scale,
                    kernel_initializer=kernel_initializer, dtype=dtype, name=f"{prefix}_layer_{i}",
                )
                for i in range(count)
            ]

        def final_norm(name):
            if not norm_first:
                return None
            if normalization == "rms_norm":
                return RMSNorm(epsilon=layer_norm_epsilon, dtype=dtype, name=name)
            return keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, dtype=dtype, name=name)

        encoder_positions = positions("encoder_position_bias" if position_embedding == "relative"
                                      else "encoder_position_encoding", True)
        decoder_positions = positions("decoder_position_bias" if position_embedding == "relative"
                                      else "decoder_position_encoding", False)
        encoder_layers = blocks("encoder", num_layers, False)
        decoder_layers = blocks("decoder", num_decoder_layers, True)
        encoder_final_norm = final_norm("encoder_final_norm")
        decoder_final_norm = final_norm("decoder_final_norm")
        encoder_dropout = keras.layers.Dropout(dropout, dtype=dtype, name="encoder_dropout")
        decoder_dropout = keras.layers.Dropout(dropout, dtype=dtype, name="decoder_dropout")

        # === Functional graph ===
        inputs = {name: keras.Input(shape=(None,), dtype="int32", name=name) for name in INPUT_NAMES}
        relative = position_embedding == "relative"
        embedding_scale = math.sqrt(hidden_dim) if scale_embeddings else None

        x = _embed(token_embedding, inputs["encoder_token_ids"], embedding_scale,
                   None if relative else encoder_positions)
        x = encoder_dropout(x)
        bias = encoder_positions(x) if relative else None
        for block in encoder_layers:
            x = block(x, padding_mask=inputs["encoder_padding_mask"], position_bias=bias)
        encoder_output = encoder_dropout(encoder_final_norm(x) if encoder_final_norm is not None else x)

        y = _embed(token_embedding, inputs["decoder_token_ids"], embedding_scale,
                   None if relative else decoder_positions)
        y = decoder_dropout(y)
        bias = decoder_positions(y) if relative else None
        for block in decoder_layers:
            y = block(y, padding_mask=inputs["decoder_padding_mask"], use_causal_mask=True, position_bias=bias,
                      context=encoder_output, context_padding_mask=inputs["encoder_padding_mask"])
        decoder_output = decoder_dropout(decoder_final_norm(y) if decoder_final_norm is not None else y)
        outputs = {"encoder_sequence_output": encoder_output, "decoder_sequence_output": decoder_output}
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self._set_dtype_policy(dtype)

        # === Untied output projection (outside the graph: the backbone outputs hidden states) ===
        self.lm_head = None
        if not tie_word_embeddings:
            self.lm_head = keras.layers.Dense(vocabulary_size, use_bias=False,
                                              kernel_initializer=embedding_initializer, dtype=dtype, name="lm_head")
            self.lm_head.build((None, None, hidden_dim))

        # === Attributes ===
        self.token_embedding = token_embedding
        self.encoder_positions = encoder_positions
        self.decoder_positions = decoder_positions
        self.encoder_layers = encoder_layers
        self.decoder_layers = decoder_layers
        self.encoder_final_norm = encoder_final_norm
        self.decoder_final_norm = decoder_final_norm
        self.encoder_dropout = encoder_dropout
        self.decoder_dropout = decoder_dropout
        self.vocabulary_size = vocabulary_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        self.num_decoder_layers = num_decoder_layers
        self.head_dim = head_dim
        self.position_embedding_type = position_embedding
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.normalization = normalization
        self.layer_norm_epsilon = layer_norm_epsilon
        self.norm_first = norm_first
        self.feed_forward = feed_forward
        self.activation = activation
        self.use_bias = use_bias
        self.attention_scale = attention_scale
        self.tie_word_embeddings = tie_word_embeddings
        self.scale_decoder_output = scale_decoder_output
        self.scale_embeddings = scale_embeddings
        self.dropout = dropout

    # --- language-model head -------------------------------------------------------------------
    def logits(self, decoder_output):
        """Float32 next-token logits ``[..., vocabulary_size]`` for decoder outputs ``[..., hidden_dim]``."""
        hidden = decoder_output
        if self.scale_decoder_output:
            hidden = hidden * ops.cast(self.hidden_dim**-0.5, hidden.dtype)
        return output_logits(hidden, self.token_embedding, self.lm_head)

    # --- incremental decoding ------------------------------------------------------------------
    def encode(self, inputs, training=False) -> tuple:
        """``(encoder_output [B, S, hidden_dim], context_caches)`` for ``encoder_token_ids`` / ``encoder_padding_mask``.

        ``context_caches`` holds one ``[B, 2, heads, S, head_dim]`` tensor per decoder layer: the
        cross-attention keys/values, computed once per request.
        """
        missing = [name for name in INPUT_NAMES[:2] if name not in inputs]
        if missing:
            raise ValueError(f"encode() needs {', '.join(missing)} in its inputs.")
        padding_mask = inputs["encoder_padding_mask"]
        x = _embed(self.token_embedding, inputs["encoder_token_ids"], self._embedding_scale(),
                   self.encoder_positions if self.position_embedding_type == "sinusoidal" else None)
        x = self.encoder_dropout(x, training=training)
        bias = self.encoder_positions(x) if self.position_embedding_type == "relative" else None
        for block in self.encoder_layers:
            x = block(x, padding_mask=padding_mask, position_bias=bias, training=training)
        if self.encoder_final_norm is not None:
            x = self.encoder_final_norm(x)
        encoder_output = self.encoder_dropout(x, training=training)
        context_caches = tuple(block.cross_attention.context_cache(encoder_output) for block in self.decoder_layers)
        return encoder_output, context_caches

    def init_cache(self, batch_size: int, max_length: int) -> tuple:
        """A zero self-attention cache: one ``[batch, 2, heads, max_length, head_dim]`` tensor per decoder layer."""
        dtype = self.decoder_layers[0].compute_dtype
        return tuple(ops.zeros(block.self_attention.cache_shape(batch_size, max_length), dtype=dtype)
                     for block in self.decoder_layers)

    def call_with_cache(self, decoder_token_ids, cache, cache_index, encoder_output=None, context_caches=None,
                        encoder_padding_mask=None, decoder_padding_mask=None, training=False):
        """Runs ``decoder_token_ids`` ``[B, t]`` at target positions ``cache_index … cache_index + t - 1``.

        Args:
            decoder_token_ids: ``[B, t]`` int tokens (the decoder start token first; 1 per step).
            cache: from ``init_cache`` or a previous call.
            cache_index: int or scalar int tensor, the position of ``decoder_token_ids[:, 0]``.
            encoder_output: ``[B, S, hidden_dim]`` from ``encode``, or give ``context_caches``.
            context_caches: from ``encode``; spares the per-step key/value projections.
            encoder_padding_mask: ``[B, S]`` 1 for real source tokens.
            decoder_padding_mask: optional ``[B, max_length]`` mask over every cache position.

        Returns:
            ``(logits [B, t, vocabulary_size] float32, hidden [B, t, hidden_dim], cache)``.
        """
        if encoder_output is None and context_caches is None:
            raise ValueError("call_with_cache needs `encoder_output` or `context_caches` (from `encode`).")
        if context_caches is not None and len(context_caches) != len(self.decoder_layers):
            raise ValueError(f"context_caches has {len(context_caches)} entries; the decoder has "
                             f"{len(self.decoder_layers)} layers.")
        decoder_token_ids = ops.convert_to_tensor(decoder_token_ids, "int32")
        max_length, length = cache[0].shape[3], decoder_token_ids.shape[1]
        if isinstance(cache_index, int) and None not in (max_length, length) and cache_index + length > max_length:
            raise ValueError(f"call_with_cache: {length} token(s) at position {cache_index} do not fit the cache of "
                             f"{max_length} positions; make the cache longer with init_cache(batch, max_length).")
        cache_index = ops.cast(cache_index, "int32")
        y = _embed(self.token_embedding, decoder_token_ids, self._embedding_scale(),
                   self.decoder_positions if self.position_embedding_type == "sinusoidal" else None, cache_index)
        y = self.decoder_dropout(y, training=training)
        bias = None
        if self.position_embedding_type == "relative":
            bias = self.decoder_positions(y, key_length=ops.shape(cache[0])[3], query_offset=cache_index)
        new_cache = []
        for i, (block, layer_cache) in enumerate(zip(self.decoder_layers, cache)):
            context_cache = None if context_caches is None else context_caches[i]
            y, layer_cache = block(y, padding_mask=decoder_padding_mask, use_causal_mask=True, position_bias=bias,
                                   context=None if context_cache is not None else encoder_output,
                                   context_padding_mask=encoder_padding_mask, context_cache=context_cache,
                                   cache=layer_cache, cache_index=cache_index, training=training)
            new_cache.append(layer_cache)
        if self.decoder_final_norm is not None:
            y = self.decoder_final_norm(y)
        hidden = self.decoder_dropout(y, training=training)
        return self.logits(hidden), hidden, tuple(new_cache)

    def _embedding_scale(self):
        return math.sqrt(self.hidden_dim) if self.scale_embeddings else None

    def get_config(self):
        return {
            **self._base_config(),
            "vocabulary_size": self.vocabulary_size,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "hidden_dim": self.hidden_dim,
            "intermediate_dim": self.intermediate_dim,
            "num_decoder_layers": self.num_decoder_layers,
            "head_dim": self.head_dim,
            "position_embedding": self.position_embedding_type,
            "num_buckets": self.num_buckets,
            "max_distance": self.max_distance,
            "normalization": self.normalization,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "norm_first": self.norm_first,
            "feed_forward": self.feed_forward,
            "activation": serialize_activation(self.activation),
            "use_bias": self.use_bias,
            "attention_scale": self.attention_scale,
            "tie_word_embeddings": self.tie_word_embeddings,
            "scale_decoder_output": self.scale_decoder_output,
            "scale_embeddings": self.scale_embeddings,
            "dropout": self.dropout,
        }


def _embed(token_embedding, token_ids, scale=None, position_encoding=None, start_index=0):
    """Token embeddings, optionally scaled and plus fixed position encodings from ``start_index``."""
    x = token_embedding(token_ids)
    if scale is not None:
        x = x * ops.cast(scale, x.dtype)
    if position_encoding is not None:
        x = x + position_encoding(x, start_index=start_index)
    return x
