"""Weight import into ``keras_lm.applications.Roberta`` (and a ``MaskedLM`` head) from transformers RoBERTa.

A RoBERTa checkpoint is read into ``bert_hf``'s canonical ``BertWeights`` form and built with
``bert_hf.bert_from_weights``: the backbone tensors have BERT's names (``roberta.`` prefix dropped).
What differs from BERT (transformers -> keras_lm)::

    embeddings.position_embeddings.weight  [P + pad + 1, H]
                                           -> position_embedding/embeddings [P, H]: rows pad+1 … (the
                                              first pad+1 rows are never used by right-padded inputs)
    lm_head.dense                          -> masked_lm_head/transform_dense
    lm_head.layer_norm                     -> masked_lm_head/transform_layer_norm
    lm_head.bias                           -> masked_lm_head/output_bias
    lm_head.decoder.weight                 -> (tied to the token embedding; checked equal)
    classifier.dense                       -> pooler/dense when the checkpoint has no pooler
                                              (RobertaForSequenceClassification: tanh(dense(h[:, 0])) is
                                              the pooler's computation); classifier.out_proj is read by
                                              ``sequence_classification_head``

Every other name is BERT's (see ``keras_lm.applications.bert_hf``). ``pad`` is the config's
``pad_token_id`` (1 in RoBERTa), ``P`` the number of usable positions (512 in RoBERTa, whose
``max_position_embeddings`` is 514).
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np

from keras_lm.applications.bert_hf import (
    HF_ACTIVATIONS,
    BertWeights,
    bert_from_weights,
    canonical_bert_state,
    check_pretraining_heads,
    copy_masked_lm_head,
    encoder_kwargs_from_bert_config,
)
from keras_lm.applications.checkpoint_hf import CheckpointError, read_hf_checkpoint

logger = logging.getLogger(__name__)

ROBERTA_TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json")
IMPORTER = "Roberta.from_hf"
_ANCHOR = "embeddings.word_embeddings.weight"
_PREFIX = "roberta."
_POSITIONS = "embeddings.position_embeddings.weight"
# RoBERTa's head names -> the canonical (BERT) names that bert_hf's head copy reads.
_HEAD_NAMES = {
    "lm_head.dense.weight": "cls.predictions.transform.dense.weight",
    "lm_head.dense.bias": "cls.predictions.transform.dense.bias",
    "lm_head.layer_norm.weight": "cls.predictions.transform.LayerNorm.weight",
    "lm_head.layer_norm.bias": "cls.predictions.transform.LayerNorm.bias",
    "lm_head.bias": "cls.predictions.bias",
    "lm_head.decoder.weight": "cls.predictions.decoder.weight",
    "lm_head.decoder.bias": "cls.predictions.decoder.bias",
}
_CLASSIFIER_AS_POOLER = {"classifier.dense.weight": "pooler.dense.weight", "classifier.dense.bias": "pooler.dense.bias"}
_OUT_PROJECTION = ("classifier.out_proj.weight", "classifier.out_proj.bias")


@dataclasses.dataclass
class RobertaWeights(BertWeights):
    """``BertWeights`` of a RoBERTa checkpoint; ``padding_idx`` is its ``pad_token_id``."""

    padding_idx: int = 1

    def describe_model(self) -> str:
        kwargs = self.encoder_kwargs
        return (f"a {kwargs['num_layers']}-layer RoBERTa with hidden size {kwargs['hidden_dim']}, intermediate size "
                f"{kwargs['intermediate_dim']}, vocabulary {kwargs['vocabulary_size']}, "
                f"{kwargs['max_sequence_length'] + self.padding_idx + 1} position rows (padding_idx "
                f"{self.padding_idx}) and {kwargs['num_segments']} segment type(s)")


def roberta_kwargs_from_hf_config(config: dict) -> tuple[dict, int]:
    """``(Roberta keyword arguments, padding_idx)`` for a transformers ``RobertaConfig`` (as a dict).

    ``max_sequence_length`` is ``max_position_embeddings - pad_token_id - 1`` (512 for RoBERTa's 514).
    """
    model_type = config.get("model_type", "roberta")
    if model_type != "roberta":
        hint = " (use Bert.from_hf)" if model_type == "bert" else ""
        raise CheckpointError(f"Not a RoBERTa checkpoint: config.json has model_type={model_type!r}; "
                              f"{IMPORTER} reads model_type 'roberta'{hint}.")
    unsupported = []
    position_embedding_type = config.get("position_embedding_type", "absolute")
    if position_embedding_type != "absolute":
        unsupported.append(f"position_embedding_type={position_embedding_type!r} (only 'absolute')")
    unsupported += [f"{flag}=True (Roberta is an encoder)" for flag in ("is_decoder", "add_cross_attention")
                    if config.get(flag)]
    if unsupported:
        raise CheckpointError(f"This RoBERTa checkpoint cannot be imported: config.json has {'; '.join(unsupported)}.")
    kwargs = encoder_kwargs_from_bert_config(config, HF_ACTIVATIONS, config.get("layer_norm_eps", 1e-12),
                                             "config.json")
    padding_idx = int(config.get("pad_token_id", 1) if config.get("pad_token_id") is not None else 1)
    positions = kwargs["max_sequence_length"] - padding_idx - 1
    if padding_idx < 0 or positions < 1:
        raise CheckpointError(
            f"config.json has max_position_embeddings={kwargs['max_sequence_length']} and pad_token_id="
            f"{padding_idx}: RoBERTa's positions start at pad_token_id + 1, which leaves no usable position."
        )
    kwargs["max_sequence_length"] = positions
    return kwargs, padding_idx


def _describe(source) -> str:
    if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
        return f"the transformers checkpoint '{source}'"
    if isinstance(source, dict):
        return "the state dict"
    return f"the {type(source).__name__} model"


def _check_layout(state: dict, source: str) -> None:
    anchors = sorted(name for name in state if name.endswith(_ANCHOR))
    if anchors in ([_ANCHOR], [_PREFIX + _ANCHOR]):
        return
    examples = ", ".join(repr(name) for name in (anchors or list(state))[:4])
    found = f"found {len(state)} tensors such as {examples}" if state else "it holds no tensors"
    raise CheckpointError(
        f"{source} is not a RoBERTa checkpoint layout: expected one 'roberta.{_ANCHOR}' (RobertaForMaskedLM, "
        f"RobertaForSequenceClassification, ...) or '{_ANCHOR}' (RobertaModel), but {found}."
    )


def read_roberta_hf(source, config=None, description: str | None = None) -> RobertaWeights:
    """``RobertaWeights`` of a transformers RoBERTa checkpoint (directory, model, state dict or hub name).

    The position table is already cut to keras_lm's right-padded numbering; head tensors are
    renamed to BERT's (see the module docstring), and every error quotes the checkpoint's own names
    and calls the checkpoint ``description`` (default: from ``source``).
    """
    hf_config, state = read_hf_checkpoint(source, config, tokenizer_files=ROBERTA_TOKENIZER_FILES)
    description = description or _describe(source)
    kwargs, padding_idx = roberta_kwargs_from_hf_config(hf_config)
    _check_layout(state, description)
    canonical, bert_source_name = canonical_bert_state(state, description)
    renamed = dict(_HEAD_NAMES)
    if not any(name in canonical for name in _CLASSIFIER_AS_POOLER.values()) and any(
            name in canonical for name in _CLASSIFIER_AS_POOLER):
        renamed.update(_CLASSIFIER_AS_POOLER)
    original_name = {new: old for old, new in renamed.items()}
    canonical = {renamed.get(name, name): value for name, value in canonical.items()}

    def source_name(name: str) -> str:
        return original_name[name] if name in original_name else bert_source_name(name)

    weights = RobertaWeights(kwargs, canonical, description, IMPORTER, source_name, padding_idx=padding_idx)
    if _POSITIONS in canonical:
        canonical[_POSITIONS] = _usable_positions(weights)
    return weights


def _usable_positions(weights: RobertaWeights) -> np.ndarray:
    """The position table without its first ``padding_idx + 1`` rows, after checking its full shape."""
    table = weights.state[_POSITIONS]
    kwargs = weights.encoder_kwargs
    needed = (kwargs["max_sequence_length"] + weights.padding_idx + 1, kwargs["hidden_dim"])
    if tuple(table.shape) != needed:
        raise CheckpointError(
            f"'{weights.source_name(_POSITIONS)}' in {weights.source} has shape {tuple(table.shape)}, but "
            f"{weights.describe_model()} needs {needed}: the tensors do not match the config."
        )
    return table[weights.padding_idx + 1:]


def roberta_from_weights(cls, weights: RobertaWeights, dtype=None):
    """A new ``cls`` (a ``Roberta``) holding the backbone weights of ``weights`` (never half-loaded).

    ``classifier.dense`` of a ``RobertaForSequenceClassification`` becomes the pooler (logged), so
    ``pooled_output`` is that classifier's hidden features.
    """
    if weights.source_name("pooler.dense.weight").startswith("classifier."):
        logger.info("%s has no pooler: its classifier.dense (tanh(dense(<s>))) becomes the pooler.", weights.source)
    return bert_from_weights(cls, weights, dtype=dtype)


def roberta_from_hf(cls, source, config=None, dtype=None):
    """Build ``cls`` (a ``Roberta``) from a transformers RoBERTa checkpoint source and copy its weights."""
    return roberta_from_weights(cls, read_roberta_hf(source, config), dtype=dtype)


def masked_lm_from_hf(source, config=None, dtype=None, **kwargs):
    """A ``keras_lm.pretraining.MaskedLM`` on ``Roberta.from_hf(source)`` with the checkpoint's trained head.

    Copies ``lm_head.dense``, ``lm_head.layer_norm`` and ``lm_head.bias``; the output projection
    stays tied to the imported word embeddings (an untied ``lm_head.decoder.weight`` is refused).
    Its logits equal ``RobertaForMaskedLM``'s at the predicted positions. A checkpoint without the
    head (``RobertaModel``, a fine-tuned classifier) is one clear error, before anything is built.

    Args:
        source: anything ``Roberta.from_hf`` reads, holding a ``RobertaForMaskedLM``.
        config: the transformers config when ``source`` is a state dict.
        dtype: dtype policy of the backbone and head.
        **kwargs: ``MaskedLM`` arguments (``max_predictions``, ``mask_rate``, ...).

    Example:
        >>> import transformers
        >>> hf = transformers.RobertaForMaskedLM(transformers.RobertaConfig(
        ...     vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        ...     intermediate_size=32, max_position_embeddings=34, type_vocab_size=1))
        >>> masked_lm = masked_lm_from_hf(hf, max_predictions=3)
        >>> masked_lm.masked_lm_head.token_embedding is masked_lm.backbone.token_embedding
        True
    """
    from keras_lm.applications.roberta import Roberta
    from keras_lm.pretraining.masked_lm import MaskedLM

    weights = read_roberta_hf(source, config)
    check_pretraining_heads(weights, MaskedLM.__name__)
    activation = weights.encoder_kwargs["activation"]
    if activation != "gelu":
        raise CheckpointError(
            f"The config of {weights.source} sets a hidden_act other than 'gelu', but RobertaForMaskedLM's head "
            "always uses the exact GELU while keras_lm's MaskedLM head follows the encoder: its logits could not "
            "match. Import "
            "the backbone alone (Roberta.from_hf) and train a fresh head."
        )
    backbone = roberta_from_weights(Roberta, weights, dtype=dtype)
    model = MaskedLM(backbone, **kwargs)
    copy_masked_lm_head(weights, model.masked_lm_head, backbone.token_embedding)
    return model


def sequence_classification_head(source, config=None) -> tuple[np.ndarray, np.ndarray]:
    """``(kernel [hidden, num_labels], bias [num_labels])`` of a ``RobertaForSequenceClassification``'s
    ``classifier.out_proj``: with ``Roberta.from_hf(source)`` (whose pooler is ``classifier.dense``),
    ``pooled_output @ kernel + bias`` are the checkpoint's logits.

    Raises:
        CheckpointError: the checkpoint has no ``classifier.out_proj`` (not a sequence classifier).
    """
    weights = read_roberta_hf(source, config)
    missing = [name for name in _OUT_PROJECTION if name not in weights.state]
    if missing:
        raise CheckpointError(
            f"{weights.source} has no '{missing[0]}': it is not a RobertaForSequenceClassification checkpoint."
        )
    kernel, bias = (np.asarray(weights.state[name], np.float32) for name in _OUT_PROJECTION)
    hidden = weights.encoder_kwargs["hidden_dim"]
    if kernel.ndim != 2 or kernel.shape[1] != hidden or bias.shape != (kernel.shape[0],):
        raise CheckpointError(
            f"'{_OUT_PROJECTION[0]}' in {weights.source} has shape {tuple(kernel.shape)} and '{_OUT_PROJECTION[1]}' "
            f"{tuple(bias.shape)}, but {weights.describe_model()} needs (num_labels, {hidden}) and (num_labels,)."
        )
    return kernel.T, bias
