"""keras_lm.layers: the building blocks of the zoo's transformers (Keras 3, backend-agnostic ops)."""
from keras_lm.layers.attention import MultiHeadSelfAttention, attention_bias
from keras_lm.layers.causal_attention import CausalSelfAttention, causal_attention_bias
from keras_lm.layers.decoder_block import TransformerDecoderBlock
from keras_lm.layers.embeddings import (
    PositionEmbedding,
    SegmentEmbedding,
    SinusoidalPositionEncoding,
    TokenEmbedding,
    TokenIdError,
    sinusoidal_table,
)
from keras_lm.layers.feed_forward import FeedForward
from keras_lm.layers.gated_feed_forward import GatedFeedForward
from keras_lm.layers.heads import MaskedLMHead, NextSentenceHead, Pooler
from keras_lm.layers.normalization import RMSNorm
from keras_lm.layers.pooling import POOLINGS, SentencePooling
from keras_lm.layers.rotary import RotaryEmbedding, rotary_angles
from keras_lm.layers.transformer_block import TransformerEncoderBlock
from keras_lm.layers.utils import gelu_approximate

__all__ = [
    "CausalSelfAttention",
    "GatedFeedForward",
    "RMSNorm",
    "RotaryEmbedding",
    "TransformerDecoderBlock",
    "causal_attention_bias",
    "rotary_angles",
    "FeedForward",
    "MaskedLMHead",
    "MultiHeadSelfAttention",
    "NextSentenceHead",
    "POOLINGS",
    "Pooler",
    "SentencePooling",
    "PositionEmbedding",
    "SegmentEmbedding",
    "SinusoidalPositionEncoding",
    "TokenEmbedding",
    "TokenIdError",
    "TransformerEncoderBlock",
    "attention_bias",
    "gelu_approximate",
    "sinusoidal_table",
]
