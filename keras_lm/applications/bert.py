"""BERT (Devlin et al., 2019) in the six sizes of the BERT miniatures, with weight import from keras-hub."""
from __future__ import annotations

import types

import keras
import numpy as np

from keras_lm.models import Encoder


def _size(num_layers: int, hidden_dim: int, num_heads: int) -> types.MappingProxyType:
    return types.MappingProxyType(
        {"num_layers": num_layers, "hidden_dim": hidden_dim, "num_heads": num_heads,
         "intermediate_dim": 4 * hidden_dim}
    )


BERT_SIZES = types.MappingProxyType(
    {
        "tiny": _size(2, 128, 2),
        "mini": _size(4, 256, 4),
        "small": _size(4, 512, 8),
        "medium": _size(8, 512, 8),
        "base": _size(12, 768, 12),
        "large": _size(24, 1024, 16),
    }
)
_ARCHITECTURE_KEYS = ("num_layers", "hidden_dim", "num_heads")


def bert_config(size: str | None, vocabulary_size: int, overrides: dict, family: tuple = ("Bert", "BERT"),
                defaults: dict | None = None) -> dict:
    """Encoder keyword arguments for a BERT size plus explicit overrides.

    ``intermediate_dim`` defaults to ``4 * hidden_dim`` of the final (overridden) width.
    ``size=None`` means a custom shape: ``num_layers``, ``hidden_dim`` and ``num_heads`` must be given.
    Families with BERT's shapes (RoBERTa) pass their ``(class name, display name)`` for messages and
    their own ``defaults`` in place of BERT's (segments, activation, epsilon).
    """
    class_name, display_name = family
    if size is None:
        missing = [key for key in _ARCHITECTURE_KEYS if key not in overrides]
        if missing:
            raise ValueError(f"{class_name}(size=None) needs explicit {', '.join(missing)}.")
        base = {}
    elif size in BERT_SIZES:
        base = {key: BERT_SIZES[size][key] for key in _ARCHITECTURE_KEYS}
    else:
        raise ValueError(f"Unknown {display_name} size {size!r}; known sizes: {', '.join(BERT_SIZES)}.")
    config = {
        **base,
        "vocabulary_size": vocabulary_size,
        "max_sequence_length": 512,
        **(defaults if defaults is not None else
           {"num_segments": 2, "activation": "gelu_approximate", "layer_norm_epsilon": 1e-12}),
    }
    config.update(overrides)
    config.setdefault("intermediate_dim", 4 * config["hidden_dim"])
    return config


@keras.saving.register_keras_serializable(package="keras_lm")
class Bert(Encoder):
    """A BERT encoder in one of the miniature-BERT sizes (or a custom shape).

    ============  ======  ======  =====  ============
    size          layers  hidden  heads  intermediate
    ============  ======  ======  =====  ============
    ``tiny``      2       128     2      512
    ``mini``      4       256     4      1024
    ``small``     4       512     8      2048
    ``medium``    8       512     8      2048
    ``base``      12      768     12     3072
    ``large``     24      1024    16     4096
    ============  ======  ======  =====  ============

    ``Bert.sizes`` holds this table. Any ``Encoder`` argument can be overridden by keyword;
    ``intermediate_dim`` follows an overridden ``hidden_dim`` (4x) unless given. The feed-forward
    activation is the tanh-approximated GELU of the original BERT code (and keras-hub's
    ``BertBackbone``); pass ``activation="gelu"`` for the exact erf form (Hugging Face checkpoints).

    Args:
        size: a key of ``Bert.sizes``, or None for a custom shape given by overrides.
        vocabulary_size: token vocabulary size (30522 is the uncased English WordPiece vocabulary).
        **overrides: keyword arguments of ``keras_lm.models.Encoder`` (``num_layers``, ``dropout``,
            ``max_sequence_length``, ``dtype``, ``name``, ...).

    Example:
        >>> encoder = Bert("tiny", vocabulary_size=1000, max_sequence_length=128)
        >>> encoder.num_layers, encoder.hidden_dim, encoder.intermediate_dim
        (2, 128, 512)
    """

    sizes = BERT_SIZES

    def __init__(self, size: str | None = "base", vocabulary_size: int = 30522, **overrides):
        super().__init__(**bert_config(size, vocabulary_size, overrides))
        self.size = size

    def get_config(self):
        return {"size": self.size, **super().get_config()}

    @classmethod
    def from_keras_hub(cls, backbone, dtype=None) -> "Bert":
        """A ``Bert`` carrying the weights of a ``keras_hub.models.BertBackbone``.

        Args:
            backbone: a built ``keras_hub.models.BertBackbone``.
            dtype: dtype policy of the new model; defaults to the backbone's.

        Example:
            >>> import keras_hub
            >>> hub = keras_hub.models.BertBackbone(vocabulary_size=100, num_layers=1, num_heads=2,
            ...                                     hidden_dim=16, intermediate_dim=32)
            >>> Bert.from_keras_hub(hub).num_layers
            1
        """
        from keras_lm.applications.bert_keras_hub import bert_kwargs_from_keras_hub, copy_keras_hub_weights

        kwargs = bert_kwargs_from_keras_hub(backbone)
        shape = {key: kwargs[key] for key in (*_ARCHITECTURE_KEYS, "intermediate_dim")}
        size = next((name for name, table in BERT_SIZES.items() if dict(table) == shape), None)
        bert = cls(size, dtype=dtype or backbone.dtype_policy, **kwargs)
        copy_keras_hub_weights(backbone, bert)
        return bert

    @classmethod
    def from_hf(cls, source, config=None, dtype=None) -> "Bert":
        """A ``Bert`` carrying the weights of a Hugging Face transformers BERT checkpoint.

        Reads ``BertModel``, ``BertForMaskedLM``, ``BertForPreTraining``,
        ``BertForSequenceClassification`` and sentence-embedding checkpoints (heads are ignored;
        ``keras_lm.pretraining.MaskedLM.from_hf`` imports the pretraining heads too). A checkpoint
        without a pooler leaves the pooler at its initialization and sets
        ``untrained_layers == ("pooler",)``. Safetensors are read without torch.

        Args:
            source: a checkpoint directory (``config.json`` + ``model.safetensors``, a sharded
                safetensors index or ``pytorch_model.bin``), a ``transformers`` BERT model, a state
                dict with ``config``, or a hub name such as ``"bert-base-uncased"`` (downloaded with
                ``huggingface_hub`` when the network allows).
            config: the transformers config (dict or object) when ``source`` is a state dict.
            dtype: dtype policy of the new model.

        Raises:
            keras_lm.applications.CheckpointError: a layout, missing tensor or shape it cannot use
                (the message names the tensor).
            keras_lm.applications.CheckpointNotFoundError: a hub name that cannot be downloaded.

        Example:
            >>> import os, tempfile
            >>> folder = Bert("tiny", vocabulary_size=100, max_sequence_length=16).to_hf(
            ...     os.path.join(tempfile.mkdtemp(), "bert"))
            >>> Bert.from_hf(folder).num_layers
            2
        """
        from keras_lm.applications.bert_hf import bert_from_hf

        return bert_from_hf(cls, source, config=config, dtype=dtype)

    @classmethod
    def from_google_checkpoint(cls, path: str, dtype=None) -> "Bert":
        """A ``Bert`` carrying the weights of an original Google BERT TF checkpoint.

        Args:
            path: a folder holding ``bert_config.json`` and ``bert_model.ckpt.{index,data-*}``, or
                the checkpoint prefix (``folder/bert_model.ckpt``). Optimizer slots are skipped.
            dtype: dtype policy of the new model.
        """
        from keras_lm.applications.bert_checkpoints import read_google_checkpoint
        from keras_lm.applications.bert_hf import bert_from_weights

        return bert_from_weights(cls, read_google_checkpoint(path), dtype=dtype)

    @classmethod
    def from_keras_hub_preset(cls, directory: str, dtype=None) -> "Bert":
        """A ``Bert`` from a local keras-hub ``BertBackbone`` preset folder (``save_to_preset``).

        Args:
            directory: the preset folder (``config.json``, ``model.weights.h5``, ``metadata.json``).
            dtype: dtype policy of the new model; defaults to the preset's.
        """
        from keras_lm.applications.keras_hub_preset import load_keras_hub_preset

        backbone = load_keras_hub_preset(directory, "BertBackbone", "Bert.from_keras_hub_preset")
        return cls.from_keras_hub(backbone, dtype=dtype)

    @classmethod
    def from_checkpoint(cls, path: str, dtype=None) -> "Bert":
        """A ``Bert`` from a checkpoint folder of any known format, detected from its files.

        Hugging Face transformers (``config.json`` with ``model_type``), original Google TF
        (``bert_config.json`` + ``*.ckpt.index``) or keras-hub preset (``config.json`` with
        ``class_name`` + ``model.weights.h5``); anything else is one error listing the three.
        """
        from keras_lm.applications.bert_checkpoints import detect_bert_checkpoint_format

        found = detect_bert_checkpoint_format(path)
        if found == "google":
            return cls.from_google_checkpoint(path, dtype=dtype)
        if found == "keras_hub":
            return cls.from_keras_hub_preset(path, dtype=dtype)
        return cls.from_hf(path, dtype=dtype)

    def to_hf(self, directory: str, tokenizer=None, overwrite: bool = False) -> str:
        """Writes this encoder as a Hugging Face transformers ``BertModel`` checkpoint folder.

        ``config.json`` + ``model.safetensors`` (no torch needed), plus ``vocab.txt`` and the
        tokenizer configs when a ``WordPiece`` tokenizer (or ``BertPreprocessor``) is given. A
        non-empty existing folder is replaced only with ``overwrite=True`` and only if it holds a
        previous ``to_hf`` export. Pretraining heads: see ``keras_lm.applications.hf_export.bert_to_hf``.

        Example:
            >>> import os, tempfile
            >>> bert = Bert("tiny", vocabulary_size=100, max_sequence_length=16)
            >>> folder = bert.to_hf(os.path.join(tempfile.mkdtemp(), "bert-hf"))
            >>> sorted(name for name in os.listdir(folder) if not name.startswith("."))
            ['config.json', 'model.safetensors']
        """
        from keras_lm.applications.hf_export import bert_to_hf

        return bert_to_hf(self, directory, tokenizer=tokenizer, overwrite=overwrite)


def count_bert_parameters(size: str | None = "base", vocabulary_size: int = 30522, **overrides) -> int:
    """Number of weights of ``Bert(size, vocabulary_size, **overrides)`` without building it.

    Example:
        >>> count_bert_parameters("base")
        109482240
    """
    config = bert_config(size, vocabulary_size, overrides)
    hidden, intermediate = config["hidden_dim"], config["intermediate_dim"]
    embeddings = (vocabulary_size + config["max_sequence_length"] + config["num_segments"]) * hidden
    embeddings += 2 * hidden  # LayerNorm
    attention = 4 * (hidden * hidden + hidden)
    feed_forward = hidden * intermediate + intermediate + intermediate * hidden + hidden
    block = attention + feed_forward + 2 * (2 * hidden)
    pooler = hidden * hidden + hidden
    return int(np.int64(embeddings) + config["num_layers"] * block + pooler)
