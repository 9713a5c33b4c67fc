"""Task heads from Hugging Face checkpoints: one table of the encoder families and where their heads live.

``HF_ENCODER_FAMILIES`` maps a checkpoint's ``model_type`` (``config.json``) to an ``EncoderFamily``:
how to read its weights and build the backbone, where each task's head tensors are (a ``HeadLayout``
per task), which ``keras_lm.tokenizers`` preprocessor reads its tokenizer files, the prefix a
pre-split word gets before tokenizing, and the tokenizer files a hub download fetches.
``Classifier``, ``TokenClassifier``, ``SpanQA`` and ``MultipleChoice`` all import through
``read_encoder_with_head``; a new family is one entry here.

Heads in transformers (``prefix`` = ``HeadLayout.output``, ``pooler`` = ``HeadLayout.pooler``)::

    family   sequence_classification               token_classification  question_answering  multiple_choice
    bert     pooler + classifier                   classifier            qa_outputs          pooler + classifier
    roberta  classifier.dense (tanh)               classifier            qa_outputs          pooler + classifier
             + classifier.out_proj
    electra  classifier.dense (GELU)               classifier            qa_outputs          sequence_summary.summary
             + classifier.out_proj                                                           (summary_activation)
                                                                                             + classifier

A first-token dense layer of a head (``classifier.dense``, ``sequence_summary.summary``) becomes the
backbone's pooler with that head's activation, so ``pooled_output -> dropout -> dense`` gives the
checkpoint's logits. Every error is a ``CheckpointError`` naming the tensor (and the checkpoint);
nothing is returned half-loaded.
"""
from __future__ import annotations

import dataclasses
import os
from types import MappingProxyType
from typing import Callable, Mapping

import numpy as np

from keras_lm.applications.checkpoint_hf import CheckpointError, download_from_hub, is_hub_name, read_hf_checkpoint
from keras_lm.tokenizers.bert_preprocessor import BertPreprocessor
from keras_lm.tokenizers.roberta_preprocessor import RobertaPreprocessor

SEQUENCE_CLASSIFICATION = "sequence_classification"
TOKEN_CLASSIFICATION = "token_classification"
QUESTION_ANSWERING = "question_answering"
MULTIPLE_CHOICE = "multiple_choice"
#: task -> (the end of its transformers class names, the head's name in messages)
TASKS = MappingProxyType({
    SEQUENCE_CLASSIFICATION: ("ForSequenceClassification", "sequence-classification head"),
    TOKEN_CLASSIFICATION: ("ForTokenClassification", "token-classification head"),
    QUESTION_ANSWERING: ("ForQuestionAnswering", "question-answering head"),
    MULTIPLE_CHOICE: ("ForMultipleChoice", "multiple-choice head"),
})
_TOKENIZER_CONFIG = "tokenizer_config.json"


# -- head tensors -------------------------------------------------------------------------------------


@dataclasses.dataclass
class HeadTensors:
    """The non-backbone tensors of a checkpoint, with the names used in messages."""

    state: dict
    source: str
    source_name: Callable[[str], str] = lambda name: name

    def has(self, prefix: str) -> bool:
        return f"{prefix}.weight" in self.state or f"{prefix}.bias" in self.state

    def take(self, name: str) -> np.ndarray:
        if name not in self.state:
            raise CheckpointError(f"{self.source} has no '{self.source_name(name)}' (the head needs it).")
        return np.asarray(self.state[name])

    def check_complete(self, prefix: str, what: str = "head") -> None:
        """A ``CheckpointError`` when only one of ``prefix.weight`` / ``prefix.bias`` is there."""
        names = (f"{prefix}.weight", f"{prefix}.bias")
        present = [name for name in names if name in self.state]
        if len(present) == 1:
            missing = self.source_name(next(name for name in names if name not in self.state))
            raise CheckpointError(f"{self.source} has no '{missing}': its {what} is incomplete "
                                  f"('{self.source_name(present[0])}' but no '{missing}').")

    def dense_shape(self, prefix: str) -> tuple[int, int]:
        """``(outputs, inputs)`` of the ``nn.Linear`` at ``prefix`` (its ``.weight`` is ``[out, in]``)."""
        weight = self.take(prefix + ".weight")
        if weight.ndim != 2:
            raise CheckpointError(f"'{self.source_name(prefix + '.weight')}' in {self.source} has shape "
                                  f"{tuple(weight.shape)}; a dense head's weight is [outputs, hidden].")
        return tuple(weight.shape)

    def copy_dense(self, layer, prefix: str, hint: str = "the tensors do not match the config") -> None:
        """``prefix.weight`` ``[out, in]`` (transposed) and ``prefix.bias`` ``[out]`` into a Dense layer."""
        kernel, bias = self.take(prefix + ".weight"), self.take(prefix + ".bias")
        for name, value, needed in ((prefix + ".weight", kernel, tuple(layer.kernel.shape)[::-1]),
                                    (prefix + ".bias", bias, tuple(layer.bias.shape))):
            if tuple(value.shape) != needed:
                raise CheckpointError(f"'{self.source_name(name)}' has shape {tuple(value.shape)} in {self.source}, "
                                      f"but the head needs {needed}: {hint}.")
        layer.kernel.assign(kernel.T.astype(np.float32))
        layer.bias.assign(bias.astype(np.float32))


# -- the family table ---------------------------------------------------------------------------------


def classifier_dropout(config: dict) -> float:
    """``classifier_dropout``, else ``hidden_dropout_prob`` (most transformers heads)."""
    rate = config.get("classifier_dropout")
    return float(config.get("hidden_dropout_prob", 0.1) if rate is None else rate)


def hidden_dropout(config: dict) -> float:
    """``hidden_dropout_prob`` (``RobertaForMultipleChoice``)."""
    return float(config.get("hidden_dropout_prob", 0.1))


def _tanh(config: dict, source: str) -> str:
    return "tanh"


def _gelu(config: dict, source: str) -> str:
    return "gelu"  # ElectraClassificationHead: get_activation("gelu"), the exact GELU, whatever hidden_act is


def _summary_activation(config: dict, source: str) -> str:
    from keras_lm.applications.electra_hf import sequence_summary_activation

    return sequence_summary_activation(config, source)


def _summary_dropout(config: dict) -> float:
    return float(config.get("summary_last_dropout", 0.1) or 0.0)


@dataclasses.dataclass(frozen=True)
class HeadLayout:
    """Where one task's head is in a family's transformers checkpoints.

    Attributes:
        output: prefix of the head's output ``nn.Linear`` (``.weight`` ``[outputs, hidden]``, ``.bias``).
        pooler: prefix of a dense layer the head applies to the first token before ``output``; it is
            imported as the backbone's pooler. None: the head reads the backbone's own pooler (BERT)
            or the token outputs.
        pooler_activation: ``(config, source) -> activation`` of that dense layer (a Keras name).
        dropout: ``config -> rate`` of the dropout before ``output``.
    """

    output: str
    pooler: str | None = None
    pooler_activation: Callable[[dict, str], str] = _tanh
    dropout: Callable[[dict], float] = classifier_dropout


@dataclasses.dataclass(frozen=True)
class EncoderFamily:
    """How to import one encoder family (a ``model_type``) with its task heads and tokenizer.

    Attributes:
        read_weights: ``(config, state, description) -> weights`` (``bert_hf.BertWeights`` form: canonical
            names without the model prefix, heads under their own names).
        build_backbone: ``(weights, dtype) -> backbone`` holding the weights (never half-loaded).
        heads: task (a key of ``TASKS``) -> ``HeadLayout``.
        preprocessor: the ``keras_lm.tokenizers`` class whose ``from_hf(directory, sequence_length=)``
            reads the checkpoint folder's tokenizer and packs one text or a pair the family's way.
        word_prefix: prepended to every pre-split word before tokenizing (``" "`` for byte-level BPE,
            as transformers' ``is_split_into_words=True`` with ``add_prefix_space=True``).
        tokenizer_files: the tokenizer files a hub download fetches; any of them but
            ``tokenizer_config.json`` in a folder means the folder has a tokenizer.
    """

    read_weights: Callable
    build_backbone: Callable
    heads: Mapping[str, HeadLayout]
    preprocessor: type
    word_prefix: str = ""
    tokenizer_files: tuple = ()


def _read_bert(config: dict, state: dict, description: str):
    from keras_lm.applications.bert_hf import read_bert_hf

    return dataclasses.replace(read_bert_hf(state, config), source=description)


def _build_bert(weights, dtype):
    from keras_lm.applications.bert import Bert
    from keras_lm.applications.bert_hf import bert_from_weights

    return bert_from_weights(Bert, weights, dtype=dtype)


def _read_roberta(config: dict, state: dict, description: str):
    from keras_lm.applications.roberta_hf import read_roberta_hf

    return read_roberta_hf(state, config, description=description)


def _build_roberta(weights, dtype):
    from keras_lm.applications.roberta import Roberta
    from keras_lm.applications.roberta_hf import roberta_from_weights

    return roberta_from_weights(Roberta, weights, dtype=dtype)


def _read_electra(config: dict, state: dict, description: str):
    from keras_lm.applications.electra_hf import read_electra_hf

    return read_electra_hf(state, config, description=description)


def _build_electra(weights, dtype):
    from keras_lm.applications.electra import Electra
    from keras_lm.applications.electra_hf import electra_from_weights

    return electra_from_weights(Electra, weights, dtype=dtype)


_WORD_PIECE_FILES = ("vocab.txt", "tokenizer.json", _TOKENIZER_CONFIG)
_BYTE_PAIR_FILES = ("vocab.json", "merges.txt", "tokenizer.json", _TOKENIZER_CONFIG)

#: ``model_type`` -> ``EncoderFamily``: every head of ``keras_lm.tasks`` imports these families.
HF_ENCODER_FAMILIES = MappingProxyType({
    "bert": EncoderFamily(
        read_weights=_read_bert,
        build_backbone=_build_bert,
        heads=MappingProxyType({
            SEQUENCE_CLASSIFICATION: HeadLayout("classifier"),
            TOKEN_CLASSIFICATION: HeadLayout("classifier"),
            QUESTION_ANSWERING: HeadLayout("qa_outputs"),
            MULTIPLE_CHOICE: HeadLayout("classifier"),
        }),
        preprocessor=BertPreprocessor,
        tokenizer_files=_WORD_PIECE_FILES,
    ),
    "roberta": EncoderFamily(
        read_weights=_read_roberta,
        build_backbone=_build_roberta,
        heads=MappingProxyType({
            SEQUENCE_CLASSIFICATION: HeadLayout("classifier.out_proj", pooler="classifier.dense"),
            TOKEN_CLASSIFICATION: HeadLayout("classifier"),
            QUESTION_ANSWERING: HeadLayout("qa_outputs"),
            MULTIPLE_CHOICE: HeadLayout("classifier", dropout=hidden_dropout),
        }),
        preprocessor=RobertaPreprocessor,
        word_prefix=" ",
        tokenizer_files=_BYTE_PAIR_FILES,
    ),
    "electra": EncoderFamily(
        read_weights=_read_electra,
        build_backbone=_build_electra,
        heads=MappingProxyType({
            SEQUENCE_CLASSIFICATION: HeadLayout("classifier.out_proj", pooler="classifier.dense",
                                                pooler_activation=_gelu),
            TOKEN_CLASSIFICATION: HeadLayout("classifier"),
            QUESTION_ANSWERING: HeadLayout("qa_outputs"),
            MULTIPLE_CHOICE: HeadLayout("classifier", pooler="sequence_summary.summary",
                                        pooler_activation=_summary_activation, dropout=_summary_dropout),
        }),
        preprocessor=BertPreprocessor,
        tokenizer_files=_WORD_PIECE_FILES,
    ),
})


# -- reading a checkpoint -----------------------------------------------------------------------------


def _description(source) -> str:
    if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
        return f"the transformers checkpoint '{os.fspath(source)}'"
    if isinstance(source, dict):
        return "the state dict"
    return f"the {type(source).__name__} model"


def _architecture(source, config: dict) -> str | None:
    if hasattr(source, "state_dict") and hasattr(source, "config"):
        return type(source).__name__
    architectures = config.get("architectures") or []
    return architectures[0] if architectures else None


def _local_directory(source) -> str | None:
    """The folder a source reads from (a hub name is downloaded with every family's tokenizer files)."""
    if not isinstance(source, (str, os.PathLike)):
        return None
    directory = os.fspath(source)
    if not os.path.exists(directory) and isinstance(source, str) and is_hub_name(directory):
        files = tuple(dict.fromkeys(name for family in HF_ENCODER_FAMILIES.values() for name in family.tokenizer_files))
        return download_from_hub(directory, files)
    return directory


@dataclasses.dataclass
class EncoderCheckpoint:
    """A checkpoint read for one task: its weights, config, family and head, before anything is built.

    ``build_backbone(dtype)`` builds the encoder; ``prefix`` is the head's output tensor prefix when
    the checkpoint carries the head (else None).
    """

    weights: object
    config: dict
    family: EncoderFamily
    task: str
    directory: str | None
    architecture: str | None

    @property
    def layout(self) -> HeadLayout:
        return self.family.heads[self.task]

    @property
    def head(self) -> HeadTensors:
        return HeadTensors(self.weights.state, self.weights.source, self.weights.source_name)

    @property
    def source(self) -> str:
        return self.weights.source

    @property
    def prefix(self) -> str | None:
        return self.layout.output if self.head.has(self.layout.output) else None

    @property
    def has_head(self) -> bool:
        return self.prefix is not None

    def head_name(self, suffix: str = "weight") -> str:
        """The checkpoint's name of the head's output ``weight`` (or ``bias``), for messages."""
        return self.weights.source_name(f"{self.layout.output}.{suffix}")

    def dropout(self) -> float:
        """The head's dropout in transformers (e.g. ``classifier_dropout``, else ``hidden_dropout_prob``)."""
        return self.layout.dropout(self.config)

    def label_names(self) -> tuple[str, ...] | None:
        """Class names ordered by id from the config's ``id2label``, or None when it has none."""
        id2label = self.config.get("id2label")
        if not id2label:
            return None
        by_id = {int(key): str(value) for key, value in id2label.items()}
        if sorted(by_id) != list(range(len(by_id))):
            raise CheckpointError(f"config.json of {self.source} has id2label keys {sorted(by_id)}; "
                                  "expected the ids 0..N-1.")
        return tuple(by_id[index] for index in range(len(by_id)))

    def has_tokenizer(self) -> bool:
        """Whether the checkpoint is a folder holding the family's tokenizer files."""
        names = [name for name in self.family.tokenizer_files if name != _TOKENIZER_CONFIG]
        return self.directory is not None and os.path.isdir(self.directory) and any(
            os.path.isfile(os.path.join(self.directory, name)) for name in names)

    def preprocessor(self, sequence_length: int | None = None):
        """The family's preprocessor read from the checkpoint folder, or None without tokenizer files."""
        if not self.has_tokenizer():
            return None
        return self.family.preprocessor.from_hf(self.directory, sequence_length=sequence_length)

    def build_backbone(self, dtype=None):
        """The encoder holding the checkpoint's weights (and the head's first-token dense as pooler)."""
        return self.family.build_backbone(self.weights, dtype)


def _with_head_pooler(weights, layout: HeadLayout, config: dict, what: str):
    """``weights`` whose ``pooler.dense`` is the head's first-token dense layer, with its activation."""
    names = {f"{layout.pooler}.{part}": f"pooler.dense.{part}" for part in ("weight", "bias")}
    state = dict(weights.state)
    already = all(name not in state and weights.source_name(target) == name for name, target in names.items())
    if not already:  # (RoBERTa's reader already maps classifier.dense to the pooler)
        head = HeadTensors(state, weights.source, weights.source_name)
        if not head.has(layout.pooler):
            raise CheckpointError(
                f"{weights.source} has '{weights.source_name(layout.output + '.weight')}' but no "
                f"'{weights.source_name(layout.pooler + '.weight')}': its {what} is incomplete.")
        head.check_complete(layout.pooler, what)
        for name, target in names.items():
            state[target] = state.pop(name)
    original = {target: name for name, target in names.items()}
    source_name = weights.source_name
    kwargs = dict(weights.encoder_kwargs)
    activation = layout.pooler_activation(config, weights.source)
    if activation != "tanh":
        kwargs["pooler_activation"] = activation
    return dataclasses.replace(weights, state=state, encoder_kwargs=kwargs,
                               source_name=lambda name: original.get(name) or source_name(name))


def read_encoder_with_head(source, task: str, owner: str, config=None) -> EncoderCheckpoint:
    """Reads a transformers encoder checkpoint for ``task`` (a key of ``TASKS``); builds nothing yet.

    Args:
        source: a checkpoint folder, a transformers model, a state dict with ``config=``, or a hub name.
        task: ``"sequence_classification"``, ``"token_classification"``, ``"question_answering"`` or
            ``"multiple_choice"``.
        owner: the caller, for messages (``"Classifier.from_hf"``).
        config: the transformers config when ``source`` is a state dict.

    Raises:
        CheckpointError: a ``model_type`` not in ``HF_ENCODER_FAMILIES`` (the message lists the
            supported ones), an encoder layout the family does not read, or an incomplete head.
    """
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}; one of {', '.join(TASKS)}.")
    directory = _local_directory(source)
    hf_config, state = read_hf_checkpoint(directory if directory is not None else source, config)
    description = _description(source)
    model_type = hf_config.get("model_type", "bert")
    family = HF_ENCODER_FAMILIES.get(model_type)
    if family is None or task not in family.heads:
        known = ", ".join(repr(name) for name, entry in HF_ENCODER_FAMILIES.items() if task in entry.heads)
        raise CheckpointError(f"{owner} cannot import {description}: its config.json has model_type="
                              f"{model_type!r}; supported model types: {known}.")
    weights = family.read_weights(hf_config, state, description)
    layout = family.heads[task]
    what = TASKS[task][1]
    head = HeadTensors(weights.state, weights.source, weights.source_name)
    if head.has(layout.output):
        head.check_complete(layout.output, what)
        if layout.pooler is not None:
            weights = _with_head_pooler(weights, layout, hf_config, what)
    return EncoderCheckpoint(weights, hf_config, family, task, directory, _architecture(source, hf_config))
