"""keras_lm.layers: the building blocks of the zoo's transformers (Keras 3, backend-agnostic ops)."""
from keras_lm.layers.attention import IMPLEMENTATIONS, MultiHeadAttention, attention_allowed, default_implementation
from keras_lm.layers.embeddings import (
    PositionEmbedding,
    SegmentEmbedding,
    SinusoidalPositionEncoding,
    TokenEmbedding,
    TokenIdError,
    sinusoidal_table,
)
from keras_lm.layers.feed_forward import FeedForward
from keras_lm.layers.heads import MaskedLMHead, NextSentenceHead, Pooler, ReplacedTokenDetectionHead
from keras_lm.layers.normalization import RMSNorm
from keras_lm.layers.pooling import POOLINGS, SentencePooling
from keras_lm.layers.relative_position import RelativePositionBias, relative_position_bucket
from keras_lm.layers.rotary import RotaryEmbedding, rotary_angles
from keras_lm.layers.transformer_block import FEED_FORWARDS, NORMALIZATIONS, TransformerBlock
from keras_lm.layers.utils import gelu_approximate

__all__ = [
    "FEED_FORWARDS",
    "IMPLEMENTATIONS",
    "NORMALIZATIONS",
    "RMSNorm",
    "RelativePositionBias",
    "relative_position_bucket",
    "RotaryEmbedding",
    "TransformerBlock",
    "attention_allowed",
    "default_implementation",
    "rotary_angles",
    "FeedForward",
    "MaskedLMHead",
    "MultiHeadAttention",
    "NextSentenceHead",
    "POOLINGS",
    "Pooler",
    "ReplacedTokenDetectionHead",
    "SentencePooling",
    "PositionEmbedding",
    "SegmentEmbedding",
    "SinusoidalPositionEncoding",
    "TokenEmbedding",
    "TokenIdError",
    "gelu_approximate",
    "sinusoidal_table",
]
