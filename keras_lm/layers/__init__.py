"""keras_lm.layers: the building blocks of the zoo's transformers (Keras 3, backend-agnostic ops)."""
from keras_lm.layers.attention import MultiHeadSelfAttention, attention_bias
from keras_lm.layers.embeddings import (
    PositionEmbedding,
    SegmentEmbedding,
    SinusoidalPositionEncoding,
    sinusoidal_table,
)
from keras_lm.layers.feed_forward import FeedForward
from keras_lm.layers.heads import MaskedLMHead, NextSentenceHead, Pooler
from keras_lm.layers.transformer_block import TransformerEncoderBlock
from keras_lm.layers.utils import gelu_approximate

__all__ = [
    "FeedForward",
    "MaskedLMHead",
    "MultiHeadSelfAttention",
    "NextSentenceHead",
    "Pooler",
    "PositionEmbedding",
    "SegmentEmbedding",
    "SinusoidalPositionEncoding",
    "TransformerEncoderBlock",
    "attention_bias",
    "gelu_approximate",
    "sinusoidal_table",
]
