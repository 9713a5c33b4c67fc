"""The original Transformer (Vaswani et al., 2017, "Attention Is All You Need"): a post-LN encoder-decoder."""
from __future__ import annotations

import types

import keras

from keras_lm.applications.gpt2 import zoo_config
from keras_lm.models import EncoderDecoder


def _size(num_layers: int, hidden_dim: int, num_heads: int, intermediate_dim: int, **extra) -> types.MappingProxyType:
    return types.MappingProxyType({"num_layers": num_layers, "hidden_dim": hidden_dim, "num_heads": num_heads,
                                   "intermediate_dim": intermediate_dim, **extra})


#: ``base`` and ``big`` as in the paper (Table 3); ``tiny`` and ``small`` for CPU budgets.
TRANSFORMER_SIZES = types.MappingProxyType(
    {
        "tiny": _size(2, 128, 4, 512),
        "small": _size(3, 256, 4, 1024),
        "base": _size(6, 512, 8, 2048),
        "big": _size(6, 1024, 16, 4096, dropout=0.3),
    }
)
#: What the architecture fixes (an override contradicting it is an error).
TRANSFORMER_ARCHITECTURE = types.MappingProxyType(
    {
        "position_embedding": "sinusoidal",
        "normalization": "layer_norm",
        "norm_first": False,
        "feed_forward": "mlp",
        "use_bias": True,
        "attention_scale": None,
        "tie_word_embeddings": True,
        "scale_decoder_output": False,
        "scale_embeddings": True,
    }
)
_SHAPE_KEYS = ("num_layers", "hidden_dim", "num_heads", "intermediate_dim")


@keras.saving.register_keras_serializable(package="keras_lm")
class Transformer(EncoderDecoder):
    """The Transformer of "Attention Is All You Need" in four sizes (or a custom shape).

    =========  ======  ======  =====  ============  =======  ==================================
    size       layers  hidden  heads  intermediate  dropout  weights (vocabulary 37000, shared)
    =========  ======  ======  =====  ============  =======  ==================================
    ``tiny``   2       128     4      512           0.1      5.66M
    ``small``  3       256     4      1024          0.1      15.0M
    ``base``   6       512     8      2048          0.1      63.1M (44.1M without the embedding)
    ``big``    6       1024    16     4096          0.3      214M (176M without the embedding)
    =========  ======  ======  =====  ============  =======  ==================================

    Post-LN blocks (``x = LayerNorm(x + Dropout(sublayer(x)))``, LayerNorm epsilon 1e-6), scaled
    dot-product attention (``head_dim ** -0.5``), a ReLU feed-forward, biases on every
    projection, fixed sinusoidal positions added to token embeddings multiplied by
    ``sqrt(hidden_dim)``, and one token embedding shared by source, target and the (bias-free)
    output projection. ``num_layers`` encoder and as many decoder blocks (override
    ``num_decoder_layers`` for another count). ``num_layers``, ``num_heads``, ``hidden_dim``,
    ``intermediate_dim``, ``dropout``, ``layer_norm_epsilon`` and ``dtype`` may be overridden;
    ``vocabulary_size`` (the shared source/target vocabulary) is required.

    Args:
        size: a key of ``Transformer.sizes``, or None for a custom shape given by overrides.
        **overrides: keyword arguments of ``keras_lm.models.EncoderDecoder`` (not the ones the
            architecture fixes, listed in ``TRANSFORMER_ARCHITECTURE``).

    Example:
        >>> model = Transformer("tiny", vocabulary_size=1000)
        >>> model.num_layers, model.hidden_dim, model.dropout, model.count_params()
        (2, 128, 0.1, 1053696)
        >>> Transformer("big", vocabulary_size=1000, num_layers=1).dropout
        0.3
    """

    sizes = TRANSFORMER_SIZES

    def __init__(self, size: str | None = "small", **overrides):
        if "vocabulary_size" not in overrides:
            raise ValueError("Transformer needs vocabulary_size=... (the size of the shared source/target "
                             "vocabulary, e.g. tokenizer.vocabulary_size()).")
        defaults = {"dropout": 0.1, "layer_norm_epsilon": 1e-6, "activation": "relu"}
        super().__init__(**zoo_config("Transformer", TRANSFORMER_SIZES, size, defaults, TRANSFORMER_ARCHITECTURE,
                                      overrides, shape_keys=_SHAPE_KEYS,
                                      backbone="keras_lm.models.EncoderDecoder"))
        self.size = size

    def get_config(self):
        config = super().get_config()
        for key in TRANSFORMER_ARCHITECTURE:
            config.pop(key)
        for key in ("num_buckets", "max_distance"):  # relative positions only
            config.pop(key)
        return {"size": self.size, **config}


def count_transformer_parameters(vocabulary_size: int, num_layers: int, hidden_dim: int, intermediate_dim: int,
                                 num_decoder_layers: int | None = None) -> int:
    """The number of weights of a ``Transformer`` of this shape, from the architecture.

    Attention: four ``hidden x hidden`` projections with biases. Feed-forward: two projections
    with biases. LayerNorm: scale and offset. An encoder block has self-attention, a
    feed-forward and two norms; a decoder block adds cross-attention and a third norm. The
    shared embedding (``vocabulary x hidden``) is counted once; sinusoidal positions have none.

    Example:
        >>> count_transformer_parameters(37000, 6, 512, 2048)
        63082496
    """
    num_decoder_layers = num_layers if num_decoder_layers is None else num_decoder_layers
    attention = 4 * (hidden_dim * hidden_dim + hidden_dim)
    feed_forward = 2 * hidden_dim * intermediate_dim + intermediate_dim + hidden_dim
    norm = 2 * hidden_dim
    encoder_block = attention + feed_forward + 2 * norm
    decoder_block = 2 * attention + feed_forward + 3 * norm
    return vocabulary_size * hidden_dim + num_layers * encoder_block + num_decoder_layers * decoder_block
