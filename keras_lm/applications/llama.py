"""Llama-style decoders (Touvron et al., 2023): RoPE, RMSNorm, SwiGLU, grouped-query attention."""
from __future__ import annotations

import types

import keras

from keras_lm.applications.gpt2 import zoo_config
from keras_lm.models import Decoder


def _size(num_layers, hidden_dim, num_heads, num_key_value_heads, intermediate_dim):
    return types.MappingProxyType(
        {"num_layers": num_layers, "hidden_dim": hidden_dim, "num_heads": num_heads,
         "num_key_value_heads": num_key_value_heads, "intermediate_dim": intermediate_dim}
    )


LLAMA_SIZES = types.MappingProxyType(
    {
        "tiny": _size(2, 128, 4, 2, 384),
        "mini": _size(4, 256, 8, 4, 768),
        "small": _size(12, 768, 12, 4, 2048),
    }
)
LLAMA_ARCHITECTURE = types.MappingProxyType(
    {"position_embedding": "rotary", "normalization": "rms_norm", "feed_forward": "gated"}
)


@keras.saving.register_keras_serializable(package="keras_lm")
class Llama(Decoder):
    """A Llama-style decoder in one of three small sizes (or a custom shape).

    =========  ======  ======  =====  ========  ============  ===========================
    size       layers  hidden  heads  kv heads  intermediate  weights (vocabulary 32000)
    =========  ======  ======  =====  ========  ============  ===========================
    ``tiny``   2       128     4      2         384           8.6M
    ``mini``   4       256     8      4         768           19.5M
    ``small``  12      768     12     4         2048          125M
    =========  ======  ======  =====  ========  ============  ===========================

    Pre-norm blocks with RMSNorm (epsilon 1e-5), rotary position embedding (base 10000) on
    queries and keys, grouped-query attention, a SwiGLU feed-forward and no biases; the output
    projection is a separate ``lm_head`` unless ``tie_word_embeddings=True``; context 2048. Any
    other ``Decoder`` argument can be overridden.

    Args:
        size: a key of ``Llama.sizes``, or None for a custom shape given by overrides.
        **overrides: keyword arguments of ``keras_lm.models.Decoder``.

    Example:
        >>> llama = Llama("tiny", vocabulary_size=1000)
        >>> llama.num_key_value_heads, llama.lm_head is not None, llama.count_params()
        (2, True, 649856)
    """

    sizes = LLAMA_SIZES

    def __init__(self, size: str | None = "tiny", **overrides):
        defaults = {"vocabulary_size": 32000, "max_sequence_length": 2048, "layer_norm_epsilon": 1e-5,
                    "rope_max_wavelength": 10000.0, "activation": "silu", "use_bias": False,
                    "tie_word_embeddings": False, "dropout": 0.0}
        super().__init__(**zoo_config("Llama", LLAMA_SIZES, size, defaults, LLAMA_ARCHITECTURE, overrides))
        self.size = size

    def get_config(self):
        return {"size": self.size, **super().get_config()}

    @classmethod
    def from_hf(cls, source, config=None, dtype=None) -> "Llama":
        """A ``Llama`` carrying the weights of a Hugging Face transformers Llama checkpoint.

        Args:
            source: a checkpoint directory (``config.json`` + ``model.safetensors`` or
                ``pytorch_model.bin``), a ``transformers`` Llama model, or a state dict with ``config``.
            config: the transformers config (dict or object) when ``source`` is a state dict.
            dtype: dtype policy of the new model.
        """
        from keras_lm.applications.llama_hf import llama_from_hf

        return llama_from_hf(cls, source, config=config, dtype=dtype)

    @classmethod
    def from_gguf(cls, path, dtype=None) -> "Llama":
        """A ``Llama`` carrying the (dequantized, float32) weights of a llama.cpp GGUF file.

        Args:
            path: a ``.gguf`` file of general.architecture ``llama`` (F32, F16 or a quantization
                the ``gguf`` package dequantizes, e.g. Q8_0, Q4_1), or a folder holding one.
            dtype: dtype policy of the new model.

        Raises:
            GGUFError: not a GGUF file, another architecture, a tensor type that cannot be
                dequantized, or a missing tensor (``keras_lm.applications.gguf``).

        Example:
            >>> llama = Llama.from_gguf("SmolLM2-135M-Instruct.Q4_1.gguf")  # doctest: +SKIP
        """
        from keras_lm.applications.gguf import llama_from_gguf

        return llama_from_gguf(cls, path, dtype=dtype)
