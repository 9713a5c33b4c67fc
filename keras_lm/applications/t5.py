"""T5 (Raffel et al., 2020): a pre-LN encoder-decoder with RMSNorm and relative position buckets."""
from __future__ import annotations

import types

import keras

from keras_lm.models import EncoderDecoder


def _size(num_layers, hidden_dim, num_heads, head_dim, intermediate_dim):
    return types.MappingProxyType({"num_layers": num_layers, "hidden_dim": hidden_dim, "num_heads": num_heads,
                                   "head_dim": head_dim, "intermediate_dim": intermediate_dim})


#: Shapes per variant: v1.0 as released with the paper (t5-small, t5-base; tiny and mini as in
#: google/t5-efficient-*), v1.1 as google/t5-v1_1-* (gated feed-forward, narrower).
T5_SIZES = types.MappingProxyType(
    {
        "v1.0": types.MappingProxyType({
            "tiny": _size(4, 256, 4, 64, 1024),
            "mini": _size(4, 384, 8, 32, 1536),
            "small": _size(6, 512, 8, 64, 2048),
            "base": _size(12, 768, 12, 64, 3072),
        }),
        "v1.1": types.MappingProxyType({
            "tiny": _size(4, 256, 4, 64, 1024),
            "mini": _size(4, 384, 8, 32, 1536),
            "small": _size(8, 512, 6, 64, 1024),
            "base": _size(12, 768, 12, 64, 2048),
        }),
    }
)
#: What each variant fixes: v1.0 a ReLU feed-forward and a tied, rescaled output projection;
#: v1.1 a gated-GELU feed-forward and a separate ``lm_head``.
T5_VARIANTS = types.MappingProxyType(
    {
        "v1.0": types.MappingProxyType({"feed_forward": "mlp", "activation": "relu", "tie_word_embeddings": True,
                                        "scale_decoder_output": True}),
        "v1.1": types.MappingProxyType({"feed_forward": "gated", "activation": "gelu_approximate",
                                        "tie_word_embeddings": False, "scale_decoder_output": False}),
    }
)
T5_ARCHITECTURE = types.MappingProxyType(
    {"position_embedding": "relative", "normalization": "rms_norm", "norm_first": True, "use_bias": False,
     "attention_scale": 1.0, "scale_embeddings": False}
)
_SHAPE_KEYS = ("num_layers", "hidden_dim", "num_heads", "intermediate_dim")


@keras.saving.register_keras_serializable(package="keras_lm")
class T5(EncoderDecoder):
    """T5 in four sizes and two variants (or a custom shape).

    =========  ======  ======  =====  ========  ==================  ==================
    size       layers  hidden  heads  head_dim  intermediate v1.0   v1.1 (layers/heads/ff)
    =========  ======  ======  =====  ========  ==================  ==================
    ``tiny``   4       256     4      64        1024                4 / 4 / 1024
    ``mini``   4       384     8      32        1536                4 / 8 / 1536
    ``small``  6       512     8      64        2048                8 / 6 / 1024
    ``base``   12      768     12     64        3072                12 / 12 / 2048
    =========  ======  ======  =====  ========  ==================  ==================

    Pre-LN blocks with RMSNorm (epsilon 1e-6), no biases, unscaled attention scores, relative
    position buckets (32 buckets, max distance 128; bidirectional in the encoder, causal in the
    decoder) shared by all layers of a stack, one token embedding for encoder and decoder,
    vocabulary 32128, dropout 0.1. ``variant="v1.0"``: ReLU feed-forward, output projection tied
    to the embedding after a ``hidden_dim ** -0.5`` rescale. ``variant="v1.1"``: gated-GELU
    feed-forward, separate ``lm_head``. The decoder starts from token 0 (the padding id).

    Args:
        size: a key of ``T5.sizes[variant]``, or None for a custom shape given by overrides.
        variant: ``"v1.0"`` or ``"v1.1"``.
        **overrides: keyword arguments of ``keras_lm.models.EncoderDecoder`` (not the ones the
            architecture or variant fixes).

    Example:
        >>> t5 = T5("tiny", vocabulary_size=1000)
        >>> t5.num_layers, t5.head_dim, t5.lm_head is None, t5.count_params()
        (4, 64, True, 7601920)
        >>> T5("tiny", variant="v1.1", vocabulary_size=1000).lm_head is None
        False
    """

    sizes = T5_SIZES

    def __init__(self, size: str | None = "tiny", variant: str = "v1.0", **overrides):
        if variant not in T5_VARIANTS:
            raise ValueError(f"Unknown T5 variant {variant!r}; use one of {', '.join(T5_VARIANTS)}.")
        fixed = {**T5_ARCHITECTURE, **T5_VARIANTS[variant]}
        for key, value in fixed.items():
            if key in overrides and overrides[key] != value:
                raise ValueError(f"T5 {variant} fixes {key}={value!r} (got {overrides[key]!r}); build a "
                                 "keras_lm.models.EncoderDecoder for a different architecture.")
        if size is None:
            missing = [key for key in _SHAPE_KEYS if key not in overrides]
            if missing:
                raise ValueError(f"T5(size=None) needs explicit {', '.join(missing)}.")
            base = {}
        elif isinstance(size, str) and size in T5_SIZES[variant]:
            base = dict(T5_SIZES[variant][size])
        else:
            raise ValueError(f"Unknown T5 size {size!r}; known sizes: {', '.join(T5_SIZES[variant])}.")
        defaults = {"vocabulary_size": 32128, "num_buckets": 32, "max_distance": 128, "layer_norm_epsilon": 1e-6,
                    "dropout": 0.1}
        super().__init__(**{**base, **defaults, **fixed, **overrides})
        self.size = size
        self.variant = variant

    def get_config(self):
        config = super().get_config()
        for key in T5_ARCHITECTURE.keys() | T5_VARIANTS[self.variant].keys():
            config.pop(key)
        return {"size": self.size, "variant": self.variant, **config}

    @classmethod
    def from_hf(cls, source, config=None, dtype=None) -> "T5":
        """A ``T5`` carrying the weights of a Hugging Face transformers T5 checkpoint.

        Args:
            source: a checkpoint directory (``config.json`` + ``model.safetensors`` or
                ``pytorch_model.bin``), a ``transformers`` ``T5ForConditionalGeneration``, or a state
                dict with ``config``.
            config: the transformers config (dict or object) when ``source`` is a state dict.
            dtype: dtype policy of the new model.
        """
        from keras_lm.applications.t5_hf import t5_from_hf

        return t5_from_hf(cls, source, config=config, dtype=dtype)
