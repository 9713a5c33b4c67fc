"""RoBERTa (Liu et al., 2019): BERT's encoder with RoBERTa's settings, and weight import from transformers.

The architecture is ``keras_lm.models.Encoder`` unchanged; RoBERTa differs from BERT in its
settings (exact GELU, LayerNorm epsilon 1e-5, a single segment type), its tokenizer (byte-level
BPE, ``keras_lm.tokenizers.roberta_preprocessor``) and its pretraining data (full sentences with
dynamic masking and no next-sentence prediction, ``keras_lm.pretraining.full_sentences``).

Positions: transformers' RoBERTa numbers the real tokens ``padding_idx + 1, padding_idx + 2, ...``
(padding tokens get row ``padding_idx``), so its position table has ``max_sequence_length +
padding_idx + 1`` rows. keras_lm pads on the right and numbers positions ``0, 1, ...``: for
right-padded inputs whose real tokens are never the padding id, that is the same table without its
first ``padding_idx + 1`` rows, which ``Roberta.from_hf`` drops on import (outputs at padded
positions differ and are masked out everywhere).
"""
from __future__ import annotations

import types

import keras

from keras_lm.applications.bert import BERT_SIZES, bert_config
from keras_lm.models import Encoder

ROBERTA_SIZES = types.MappingProxyType(dict(BERT_SIZES))
"""Same shapes as ``BERT_SIZES``: tiny, mini, small, medium, base (12/768/12) and large (24/1024/16)."""
#: RoBERTa's own settings on BERT's shapes: one segment type, exact GELU, LayerNorm epsilon 1e-5.
ROBERTA_DEFAULTS = types.MappingProxyType({"num_segments": 1, "activation": "gelu", "layer_norm_epsilon": 1e-5})


def roberta_config(size: str | None, vocabulary_size: int, overrides: dict) -> dict:
    """Encoder keyword arguments for a RoBERTa size plus explicit overrides.

    ``intermediate_dim`` defaults to ``4 * hidden_dim``; ``size=None`` needs ``num_layers``,
    ``hidden_dim`` and ``num_heads`` among the overrides.
    """
    return bert_config(size, vocabulary_size, overrides, family=("Roberta", "RoBERTa"),
                       defaults=dict(ROBERTA_DEFAULTS))


@keras.saving.register_keras_serializable(package="keras_lm")
class Roberta(Encoder):
    """A RoBERTa encoder in one of the standard sizes (or a custom shape).

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

    ``Roberta.sizes`` holds this table. RoBERTa's settings: exact (erf) GELU, LayerNorm epsilon
    1e-5, one segment type (``segment_ids`` are all 0), 512 positions. Inputs and outputs are the
    ``Encoder``'s; inputs are padded on the right (``<pad>``, id 1 in RoBERTa's vocabulary, with
    ``padding_mask`` 0), see the module docstring for how positions relate to transformers'.

    Args:
        size: a key of ``Roberta.sizes``, or None for a custom shape given by overrides.
        vocabulary_size: token vocabulary size (50265 is RoBERTa's byte-level BPE vocabulary).
        **overrides: keyword arguments of ``keras_lm.models.Encoder`` (``num_layers``, ``dropout``,
            ``max_sequence_length``, ``dtype``, ``name``, ...).

    Example:
        >>> import numpy as np
        >>> encoder = Roberta("tiny", vocabulary_size=1000, max_sequence_length=64)
        >>> encoder.num_layers, encoder.hidden_dim, encoder.num_segments, encoder.layer_norm_epsilon
        (2, 128, 1, 1e-05)
        >>> outputs = encoder({"token_ids": np.array([[0, 52, 9, 2, 1]]), "segment_ids": np.zeros((1, 5), "int32"),
        ...                    "padding_mask": np.array([[1, 1, 1, 1, 0]])})
        >>> tuple(outputs["sequence_output"].shape)
        (1, 5, 128)
    """

    sizes = ROBERTA_SIZES

    def __init__(self, size: str | None = "base", vocabulary_size: int = 50265, **overrides):
        super().__init__(**roberta_config(size, vocabulary_size, overrides))
        self.size = size

    def get_config(self):
        return {"size": self.size, **super().get_config()}

    @classmethod
    def from_hf(cls, source, config=None, dtype=None) -> "Roberta":
        """A ``Roberta`` carrying the weights of a Hugging Face transformers RoBERTa checkpoint.

        Reads ``RobertaModel`` (with or without pooler), ``RobertaForMaskedLM`` and
        ``RobertaForSequenceClassification`` checkpoints (``roberta.`` prefix; heads are ignored
        here, ``keras_lm.applications.roberta_hf.masked_lm_from_hf`` imports the masked-LM head).
        The position table loses its first ``pad_token_id + 1`` rows (see the module docstring). A
        checkpoint without a pooler leaves the pooler at its initialization and sets
        ``untrained_layers == ("pooler",)``. Safetensors are read without torch.

        Args:
            source: a checkpoint directory (``config.json`` + ``model.safetensors``, a sharded
                safetensors index or ``pytorch_model.bin``), a ``transformers`` RoBERTa model, a
                state dict with ``config``, or a hub name such as ``"FacebookAI/roberta-base"``
                (downloaded with ``huggingface_hub`` when the network allows).
            config: the transformers config (dict or object) when ``source`` is a state dict.
            dtype: dtype policy of the new model.

        Raises:
            keras_lm.applications.CheckpointError: a layout (e.g. a BERT or GPT-2 checkpoint),
                missing tensor or shape it cannot use; the message names the tensor.
            keras_lm.applications.CheckpointNotFoundError: a hub name that cannot be downloaded.

        Example:
            >>> import transformers
            >>> hf = transformers.RobertaModel(transformers.RobertaConfig(
            ...     vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
            ...     intermediate_size=32, max_position_embeddings=34, type_vocab_size=1))
            >>> roberta = Roberta.from_hf(hf)
            >>> roberta.num_layers, roberta.max_sequence_length
            (1, 32)
        """
        from keras_lm.applications.roberta_hf import roberta_from_hf

        return roberta_from_hf(cls, source, config=config, dtype=dtype)
