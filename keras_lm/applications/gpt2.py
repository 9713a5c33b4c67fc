"""GPT-2 (Radford et al., 2019): pre-LN decoder, learned positions, tied embeddings, tanh GELU."""
from __future__ import annotations

import types

import keras

from keras_lm.models import Decoder


def _size(num_layers: int, hidden_dim: int, num_heads: int) -> types.MappingProxyType:
    return types.MappingProxyType(
        {"num_layers": num_layers, "hidden_dim": hidden_dim, "num_heads": num_heads, "intermediate_dim": 4 * hidden_dim}
    )


GPT2_SIZES = types.MappingProxyType(
    {
        "tiny": _size(2, 128, 2),
        "mini": _size(4, 256, 4),
        "small": _size(12, 768, 12),
        "medium": _size(24, 1024, 16),
    }
)
GPT2_ARCHITECTURE = types.MappingProxyType(
    {
        "position_embedding": "learned",
        "normalization": "layer_norm",
        "feed_forward": "mlp",
        "use_bias": True,
        "tie_word_embeddings": True,
        "head_dim": None,
    }
)


def zoo_config(family: str, sizes, size, defaults: dict, fixed, overrides: dict,
               shape_keys=("num_layers", "hidden_dim", "num_heads"), backbone: str = "keras_lm.models.Decoder") -> dict:
    """Backbone keyword arguments for ``size`` of a family with its fixed architecture and overrides.

    The size table gives the shape (and may override ``defaults``, e.g. a size's own dropout);
    ``intermediate_dim`` scales with an overridden ``hidden_dim`` unless given. ``size=None`` needs
    the shape keys as overrides. An override contradicting the family's ``fixed`` architecture is an
    error (the generic ``backbone`` builds other ones).
    """
    if size is None:
        missing = [key for key in shape_keys if key not in overrides]
        if missing:
            raise ValueError(f"{family}(size=None) needs explicit {', '.join(missing)}.")
        base = {}
    elif isinstance(size, str) and size in sizes:
        base = dict(sizes[size])
        if "hidden_dim" in overrides and "intermediate_dim" not in overrides:
            base["intermediate_dim"] = base["intermediate_dim"] * overrides["hidden_dim"] // base["hidden_dim"]
    else:
        raise ValueError(f"Unknown {family} size {size!r}; known sizes: {', '.join(sizes)}.")
    for key, value in fixed.items():
        if key in overrides and overrides[key] != value:
            raise ValueError(
                f"{family} fixes {key}={value!r} (got {overrides[key]!r}); build a {backbone} "
                "for a different architecture."
            )
    config = {**defaults, **base, **fixed, **overrides}
    config.setdefault("intermediate_dim", 4 * config.get("hidden_dim", 0))
    return config


@keras.saving.register_keras_serializable(package="keras_lm")
class Gpt2(Decoder):
    """A GPT-2 decoder in one of the standard sizes (or a custom shape).

    ==========  ======  ======  =====  ============  =========  ============================
    size        layers  hidden  heads  intermediate  positions  weights (vocabulary 50257)
    ==========  ======  ======  =====  ============  =========  ============================
    ``tiny``    2       128     2      512           1024       6.96M
    ``mini``    4       256     4      1024          1024       16.3M
    ``small``   12      768     12     3072          1024       124M (GPT-2 "124M")
    ``medium``  24      1024    16     4096          1024       355M (GPT-2 "355M")
    ==========  ======  ======  =====  ============  =========  ============================

    Pre-LN blocks with LayerNorm (epsilon 1e-5), learned positions, tanh-approximated GELU, biases
    everywhere and the output projection tied to the token embedding. Any other ``Decoder``
    argument (``vocabulary_size``, ``max_sequence_length``, ``dropout``, ``dtype``, shape keys) can
    be overridden; ``intermediate_dim`` follows an overridden ``hidden_dim`` (4x).

    Args:
        size: a key of ``Gpt2.sizes``, or None for a custom shape given by overrides.
        **overrides: keyword arguments of ``keras_lm.models.Decoder``.

    Example:
        >>> gpt = Gpt2("tiny", vocabulary_size=1000, max_sequence_length=128)
        >>> gpt.num_layers, gpt.hidden_dim, gpt.intermediate_dim, gpt.count_params()
        (2, 128, 512, 541184)
    """

    sizes = GPT2_SIZES

    def __init__(self, size: str | None = "small", **overrides):
        defaults = {"vocabulary_size": 50257, "max_sequence_length": 1024, "layer_norm_epsilon": 1e-5,
                    "activation": "gelu_approximate", "dropout": 0.0}
        config = zoo_config("Gpt2", GPT2_SIZES, size, defaults, GPT2_ARCHITECTURE, overrides)
        if config.get("num_key_value_heads") not in (None, config.get("num_heads")):
            raise ValueError("Gpt2 has no grouped-query attention: num_key_value_heads must equal num_heads.")
        super().__init__(**config)
        self.size = size

    def get_config(self):
        return {"size": self.size, **super().get_config()}

    @classmethod
    def from_hf(cls, source, config=None, dtype=None) -> "Gpt2":
        """A ``Gpt2`` carrying the weights of a Hugging Face transformers GPT-2 checkpoint.

        Args:
            source: a checkpoint directory (``config.json`` + ``model.safetensors`` or
                ``pytorch_model.bin``), a ``transformers`` GPT-2 model, or a state dict with ``config``.
            config: the transformers config (dict or object) when ``source`` is a state dict.
            dtype: dtype policy of the new model.
        """
        from keras_lm.applications.gpt2_hf import gpt2_from_hf

        return gpt2_from_hf(cls, source, config=config, dtype=dtype)

    @classmethod
    def from_keras_hub(cls, backbone, dtype=None) -> "Gpt2":
        """A ``Gpt2`` carrying the weights of a ``keras_hub.models.GPT2Backbone``.

        Example:
            >>> import keras_hub
            >>> hub = keras_hub.models.GPT2Backbone(vocabulary_size=100, num_layers=1, num_heads=2,
            ...                                     hidden_dim=16, intermediate_dim=32, max_sequence_length=8)
            >>> Gpt2.from_keras_hub(hub).num_layers
            1
        """
        from keras_lm.applications.gpt2_hf import gpt2_from_keras_hub

        return gpt2_from_keras_hub(cls, backbone, dtype=dtype)

    @classmethod
    def from_keras_hub_preset(cls, directory: str, dtype=None) -> "Gpt2":
        """A ``Gpt2`` from a local keras-hub ``GPT2Backbone`` preset folder (``save_to_preset``).

        Args:
            directory: the preset folder (``config.json``, ``model.weights.h5``, ``metadata.json``).
            dtype: dtype policy of the new model; defaults to the preset's.
        """
        from keras_lm.applications.keras_hub_preset import load_keras_hub_preset

        backbone = load_keras_hub_preset(directory, "GPT2Backbone", "Gpt2.from_keras_hub_preset")
        return cls.from_keras_hub(backbone, dtype=dtype)

    def to_hf(self, directory: str, tokenizer=None, overwrite: bool = False) -> str:
        """Writes this decoder as a Hugging Face transformers ``GPT2LMHeadModel`` checkpoint folder.

        ``config.json`` + ``model.safetensors`` (no torch needed), plus ``vocab.json``,
        ``merges.txt`` and the tokenizer configs when a ``BytePair`` tokenizer is given. A non-empty
        existing folder is replaced only with ``overwrite=True`` and only if it holds a previous
        ``to_hf`` export. ``Gpt2.from_hf`` reads the folder back.

        Example:
            >>> import os, tempfile
            >>> gpt = Gpt2("tiny", vocabulary_size=100, max_sequence_length=16)
            >>> folder = gpt.to_hf(os.path.join(tempfile.mkdtemp(), "gpt2-hf"))
            >>> sorted(name for name in os.listdir(folder) if not name.startswith("."))
            ['config.json', 'model.safetensors']
        """
        from keras_lm.applications.hf_export import gpt2_to_hf

        return gpt2_to_hf(self, directory, tokenizer=tokenizer, overwrite=overwrite)


def gpt2_size_name(shape: dict) -> str | None:
    """The ``Gpt2.sizes`` key whose shape equals ``shape``, else None."""
    return next((name for name, table in GPT2_SIZES.items() if dict(table) == shape), None)
