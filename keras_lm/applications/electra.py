"""ELECTRA (Clark et al., 2020): the discriminator encoder and its smaller generator sharing embeddings."""
from __future__ import annotations

import types

import keras

from keras_lm.models import Encoder


def _size(num_layers: int, hidden_dim: int, num_heads: int, embedding_dim: int) -> types.MappingProxyType:
    return types.MappingProxyType(
        {"num_layers": num_layers, "hidden_dim": hidden_dim, "num_heads": num_heads,
         "intermediate_dim": 4 * hidden_dim, "embedding_dim": embedding_dim}
    )


ELECTRA_SIZES = types.MappingProxyType(
    {
        "tiny": _size(2, 128, 2, 64),
        "small": _size(12, 256, 4, 128),
        "base": _size(12, 768, 12, 768),
        "large": _size(24, 1024, 16, 1024),
    }
)
"""Discriminator shapes: ``small``/``base``/``large`` as the paper and google/electra-*-discriminator."""

GENERATOR_FRACTIONS = types.MappingProxyType({"tiny": 1 / 4, "small": 1 / 4, "base": 1 / 3, "large": 1 / 4})
"""The generator's width as a fraction of the discriminator's (the paper's Table 7)."""


def _generator_size(size: str) -> types.MappingProxyType:
    """The paper's generator for a discriminator size: same depth and embedding width, hidden size,
    feed-forward size and heads scaled by ``GENERATOR_FRACTIONS`` (heads of 64 features, at least one)."""
    discriminator = ELECTRA_SIZES[size]
    hidden_dim = int(round(discriminator["hidden_dim"] * GENERATOR_FRACTIONS[size]))
    return _size(discriminator["num_layers"], hidden_dim, max(1, hidden_dim // 64), discriminator["embedding_dim"])


GENERATOR_SIZES = types.MappingProxyType({name: _generator_size(name) for name in ELECTRA_SIZES})
_ARCHITECTURE_KEYS = ("num_layers", "hidden_dim", "num_heads")
_SHARED_KEYS = ("vocabulary_size", "embedding_dim", "max_sequence_length", "num_segments", "layer_norm_epsilon")


def electra_config(size: str | None, vocabulary_size: int, overrides: dict, sizes=ELECTRA_SIZES) -> dict:
    """Encoder keyword arguments for an ELECTRA size (from ``sizes``) plus explicit overrides.

    ``intermediate_dim`` follows an overridden ``hidden_dim`` (4x) unless given; ``embedding_dim``
    stays the size's unless given. ``size=None``: ``num_layers``, ``hidden_dim`` and ``num_heads``
    must be given (``embedding_dim`` then defaults to ``hidden_dim``).
    """
    if size is None:
        missing = [key for key in _ARCHITECTURE_KEYS if key not in overrides]
        if missing:
            raise ValueError(f"An ELECTRA model with size=None needs explicit {', '.join(missing)}.")
        base = {}
    elif size in sizes:
        base = {key: sizes[size][key] for key in (*_ARCHITECTURE_KEYS, "embedding_dim")}
    else:
        raise ValueError(f"Unknown ELECTRA size {size!r}; known sizes: {', '.join(sizes)}.")
    config = {
        **base,
        "vocabulary_size": vocabulary_size,
        "max_sequence_length": 512,
        "num_segments": 2,
        "activation": "gelu",
        "layer_norm_epsilon": 1e-12,
    }
    config.update(overrides)
    config.setdefault("intermediate_dim", 4 * config["hidden_dim"])
    return config


@keras.saving.register_keras_serializable(package="keras_lm")
class Electra(Encoder):
    """The ELECTRA discriminator: a BERT-style encoder whose embeddings may be narrower than its blocks.

    ============  ======  ======  =========  =====  ============
    size          layers  hidden  embedding  heads  intermediate
    ============  ======  ======  =========  =====  ============
    ``tiny``      2       128     64         2      512
    ``small``     12      256     128        4      1024
    ``base``      12      768     768        12     3072
    ``large``     24      1024    1024       16     4096
    ============  ======  ======  =========  =====  ============

    ``Electra.sizes`` holds this table (``tiny`` is for tests and CPU runs). The discriminator is the
    model that is fine-tuned and exported, exactly like ``Bert`` (``keras_lm.tasks.Classifier(Electra(
    ...))``). ELECTRA checkpoints carry no pooler: the pooler of an imported model starts untrained
    (``untrained_layers == ("pooler",)``) and is learned during fine-tuning. ``generator()`` builds the
    matching masked-LM generator sharing this model's embeddings; ``keras_lm.pretraining.
    ReplacedTokenDetection`` trains the two.

    Args:
        size: a key of ``Electra.sizes``, or None for a custom shape given by overrides.
        vocabulary_size: token vocabulary size (30522: the uncased English WordPiece vocabulary).
        **overrides: keyword arguments of ``keras_lm.models.Encoder`` (``embedding_dim``,
            ``max_sequence_length``, ``dropout``, ``dtype``, ``name``, ...).

    Example:
        >>> discriminator = Electra("tiny", vocabulary_size=1000, max_sequence_length=64)
        >>> discriminator.hidden_dim, discriminator.embedding_dim
        (128, 64)
        >>> generator = discriminator.generator()
        >>> generator.hidden_dim, generator.token_embedding is discriminator.token_embedding
        (32, True)
    """

    sizes = ELECTRA_SIZES

    def __init__(self, size: str | None = "small", vocabulary_size: int = 30522, **overrides):
        super().__init__(**electra_config(size, vocabulary_size, overrides))
        self.size = size

    def get_config(self):
        return {"size": self.size, **super().get_config()}

    def generator(self, size: str | None = "auto", **overrides) -> "ElectraGenerator":
        """The matching generator, sharing this model's embedding layers (see ``ElectraGenerator``).

        Args:
            size: a key of ``ElectraGenerator.sizes``; ``"auto"`` uses this model's size (a custom
                shape, ``size=None``, needs ``num_layers``, ``hidden_dim`` and ``num_heads``).
            **overrides: ``ElectraGenerator`` keyword arguments.
        """
        return ElectraGenerator(self.size if size == "auto" else size, discriminator=self, **overrides)

    @classmethod
    def from_hf(cls, source, config=None, dtype=None) -> "Electra":
        """An ``Electra`` carrying the encoder weights of a Hugging Face transformers ELECTRA checkpoint.

        Reads ``ElectraModel``, ``ElectraForPreTraining`` (the discriminator),
        ``ElectraForSequenceClassification`` and other fine-tuned checkpoints (their heads are
        ignored; ``keras_lm.pretraining.ReplacedTokenDetection.from_hf`` imports the pretraining heads),
        with or without the ``electra.`` prefix. Safetensors are read without torch.

        Args:
            source: a checkpoint directory, a ``transformers`` ELECTRA model, a state dict with
                ``config``, or a hub name such as ``"google/electra-small-discriminator"``
                (downloaded with ``huggingface_hub`` when the network allows).
            config: the transformers config (dict or object) when ``source`` is a state dict.
            dtype: dtype policy of the new model.

        Raises:
            keras_lm.applications.CheckpointError: a layout, missing tensor or shape it cannot use
                (the message names the tensor).
        """
        from keras_lm.applications.electra_hf import electra_from_hf

        return electra_from_hf(cls, source, config=config, dtype=dtype)


@keras.saving.register_keras_serializable(package="keras_lm")
class ElectraGenerator(Encoder):
    """ELECTRA's generator: a narrower encoder that shares the discriminator's embedding layers.

    ============  ======  ======  =========  =====  ============
    size          layers  hidden  embedding  heads  intermediate
    ============  ======  ======  =========  =====  ============
    ``tiny``      2       32      64         1      128
    ``small``     12      64      128        1      256
    ``base``      12      256     768        4      1024
    ``large``     24      256     1024       4      1024
    ============  ======  ======  =========  =====  ============

    The paper's generators (hidden size 1/4, 1/3, 1/4 of the discriminator's; the released
    ``google/electra-small-generator`` is wider: pass ``hidden_dim=256, num_heads=4``). With
    ``discriminator`` given, the token, position and segment embeddings and the embedding
    LayerNorm ARE the discriminator's layers (the same variables, as ELECTRA ties them); its own
    ``embedding_projection`` maps them to the generator's width. Saved alone (``get_config``), a
    generator reloads with embeddings of its own; ``ReplacedTokenDetection`` re-ties them on load.

    Args:
        size: a key of ``ElectraGenerator.sizes``, or None for a custom shape given by overrides.
        vocabulary_size: token vocabulary size (taken from ``discriminator`` when given).
        discriminator: an ``Encoder`` (``Electra``) whose embedding layers to share; its
            vocabulary, embedding width, positions, segments and LayerNorm epsilon are used.
        **overrides: keyword arguments of ``keras_lm.models.Encoder``.

    Example:
        >>> discriminator = Electra("tiny", vocabulary_size=1000, max_sequence_length=64)
        >>> generator = ElectraGenerator("tiny", discriminator=discriminator)
        >>> generator.segment_embedding is discriminator.segment_embedding
        True
    """

    sizes = GENERATOR_SIZES

    def __init__(self, size: str | None = "small", vocabulary_size: int = 30522, discriminator=None, **overrides):
        if discriminator is not None:
            overrides = _shared_settings(discriminator, vocabulary_size, overrides)
            vocabulary_size = discriminator.vocabulary_size
        # Read by _embedding_layers during Encoder.__init__, before Keras tracks attributes.
        object.__setattr__(self, "_shared_embedding_source", discriminator)
        try:
            super().__init__(**electra_config(size, vocabulary_size, overrides, sizes=GENERATOR_SIZES))
        finally:  # not kept: saving would walk into the discriminator from here
            object.__delattr__(self, "_shared_embedding_source")
        self.size = size

    def _embedding_layers(self, vocabulary_size, embedding_dim, max_sequence_length, num_segments,
                          layer_norm_epsilon, dtype) -> tuple:
        source = self.__dict__.get("_shared_embedding_source")
        if source is None:
            return super()._embedding_layers(vocabulary_size, embedding_dim, max_sequence_length, num_segments,
                                             layer_norm_epsilon, dtype)
        return (source.token_embedding, source.position_embedding, source.segment_embedding,
                source.get_layer("embeddings_layer_norm"))

    def get_config(self):
        return {"size": self.size, **super().get_config()}

    @classmethod
    def from_hf(cls, source, config=None, dtype=None, discriminator=None) -> "ElectraGenerator":
        """An ``ElectraGenerator`` carrying the encoder weights of a transformers ``ElectraForMaskedLM``.

        With ``discriminator``, the generator shares its embedding layers, and the checkpoint's
        embedding tensors must equal the discriminator's (as in Google's generator/discriminator
        pairs, converted from one checkpoint). ``generator_predictions``/``generator_lm_head`` are
        imported by ``keras_lm.pretraining.ReplacedTokenDetection.from_hf``.

        Args:
            source: as in ``Electra.from_hf`` (e.g. ``"google/electra-small-generator"``).
            config: the transformers config when ``source`` is a state dict.
            dtype: dtype policy of the new model (default: the discriminator's, if given).
            discriminator: an ``Electra`` whose embeddings to share.
        """
        from keras_lm.applications.electra_hf import electra_from_hf

        return electra_from_hf(cls, source, config=config, dtype=dtype, discriminator=discriminator)


def _shared_settings(discriminator, vocabulary_size: int, overrides: dict) -> dict:
    """``overrides`` plus the discriminator's embedding settings; one error for a conflicting one."""
    if not all(hasattr(discriminator, name) for name in ("token_embedding", "position_embedding",
                                                          "segment_embedding")):
        raise TypeError(
            f"`discriminator` must be a keras_lm Encoder (e.g. Electra) whose embeddings the generator shares; "
            f"got {type(discriminator).__name__}."
        )
    shared = {key: getattr(discriminator, key) for key in _SHARED_KEYS}
    shared["embedding_dim"] = shared["embedding_dim"] or discriminator.hidden_dim
    given = dict(overrides, vocabulary_size=vocabulary_size) if vocabulary_size != 30522 else dict(overrides)
    conflicts = [f"{key}={given[key]!r} (the discriminator's is {shared[key]!r})"
                 for key in _SHARED_KEYS if key in given and given[key] != shared[key]]
    if conflicts:
        raise ValueError("The generator shares the discriminator's embeddings, so it cannot have "
                         + "; ".join(conflicts) + ".")
    settings = {**overrides, **{key: value for key, value in shared.items() if key != "vocabulary_size"}}
    settings.setdefault("dtype", discriminator.dtype_policy)
    return settings
