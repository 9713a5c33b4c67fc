"""Task heads from Hugging Face checkpoints: an encoder backbone plus the head weights it carries.

A checkpoint's ``model_type`` (``config.json``) picks an entry of ``HF_ENCODER_FAMILIES``: how to build
the backbone from the checkpoint and where each task head's tensors live. Adding a family (e.g.
``"roberta"`` or ``"electra"``) is one entry there. Every error is a ``CheckpointError`` naming the
tensor (and the checkpoint) it is about; nothing is returned half-loaded.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable

import numpy as np

from keras_lm.applications.checkpoint_hf import CheckpointError, read_hf_checkpoint


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

    def dense_shape(self, prefix: str) -> tuple[int, int]:
        """``(outputs, inputs)`` of the ``nn.Linear`` at ``prefix`` (its ``.weight`` is ``[out, in]``)."""
        weight = self.take(prefix + ".weight")
        if weight.ndim != 2:
            raise CheckpointError(f"'{self.source_name(prefix + '.weight')}' in {self.source} has shape "
                                  f"{tuple(weight.shape)}; a dense head's weight is [outputs, hidden].")
        return tuple(weight.shape)

    def copy_dense(self, layer, prefix: str) -> None:
        """``prefix.weight`` ``[out, in]`` (transposed) and ``prefix.bias`` ``[out]`` into a Dense layer."""
        kernel, bias = self.take(prefix + ".weight"), self.take(prefix + ".bias")
        for name, value, needed in ((prefix + ".weight", kernel, tuple(layer.kernel.shape)[::-1]),
                                    (prefix + ".bias", bias, tuple(layer.bias.shape))):
            if tuple(value.shape) != needed:
                raise CheckpointError(f"'{self.source_name(name)}' in {self.source} has shape {tuple(value.shape)}, "
                                      f"but the head needs {needed}: the tensors do not match the config.")
        layer.kernel.assign(kernel.T.astype(np.float32))
        layer.bias.assign(bias.astype(np.float32))


@dataclasses.dataclass(frozen=True)
class EncoderFamily:
    """How to import one encoder family with a task head.

    Attributes:
        load_backbone: ``(config, state, description, dtype) -> (backbone, HeadTensors)``.
        heads: task name (``"sequence_classification"``, ``"multiple_choice"``, ...) -> the tensor
            prefix of that task's output layer in the family's transformers checkpoints.
        tokenizer_files: what a hub download fetches besides config and weights.
    """

    load_backbone: Callable
    heads: dict
    tokenizer_files: tuple = ()


def _load_bert(config: dict, state: dict, description: str, dtype):
    from keras_lm.applications.bert import Bert
    from keras_lm.applications.bert_hf import bert_from_weights, read_bert_hf

    weights = dataclasses.replace(read_bert_hf(state, config), source=description)
    backbone = bert_from_weights(Bert, weights, dtype=dtype)
    return backbone, HeadTensors(weights.state, weights.source, weights.source_name)


HF_ENCODER_FAMILIES = {
    "bert": EncoderFamily(
        load_backbone=_load_bert,
        heads={"sequence_classification": "classifier", "multiple_choice": "classifier"},
        tokenizer_files=("vocab.txt", "tokenizer_config.json"),
    ),
}


def _description(source) -> str:
    if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
        return f"the transformers checkpoint '{os.fspath(source)}'"
    if isinstance(source, dict):
        return "the state dict"
    return f"the {type(source).__name__} model"


@dataclasses.dataclass
class ImportedHead:
    """A backbone built from a checkpoint, the config, and the head tensors (None: no head in it)."""

    backbone: object
    config: dict
    head: HeadTensors
    prefix: str | None

    @property
    def has_head(self) -> bool:
        return self.prefix is not None

    def dropout(self) -> float:
        """The head's dropout in transformers: ``classifier_dropout``, else ``hidden_dropout_prob``."""
        rate = self.config.get("classifier_dropout")
        return float(self.config.get("hidden_dropout_prob", 0.1) if rate is None else rate)

    def label_names(self) -> tuple[str, ...] | None:
        """Class names ordered by id from the config's ``id2label``, or None when it has none."""
        id2label = self.config.get("id2label")
        if not id2label:
            return None
        by_id = {int(key): str(value) for key, value in id2label.items()}
        if sorted(by_id) != list(range(len(by_id))):
            raise CheckpointError(f"config.json of {self.head.source} has id2label keys {sorted(by_id)}; "
                                  "expected the ids 0..N-1.")
        return tuple(by_id[index] for index in range(len(by_id)))


def import_encoder_with_head(source, task: str, owner: str, config=None, dtype=None) -> ImportedHead:
    """Reads a transformers encoder checkpoint, builds its backbone and finds ``task``'s head tensors."""
    tokenizer_files = tuple(dict.fromkeys(f for family in HF_ENCODER_FAMILIES.values() for f in family.tokenizer_files))
    hf_config, state = read_hf_checkpoint(source, config, tokenizer_files=tokenizer_files)
    description = _description(source)
    model_type = hf_config.get("model_type", "bert")
    family = HF_ENCODER_FAMILIES.get(model_type)
    if family is None or task not in family.heads:
        known = ", ".join(repr(name) for name, entry in HF_ENCODER_FAMILIES.items() if task in entry.heads)
        raise CheckpointError(f"{owner} cannot import {description}: its config.json has model_type="
                              f"{model_type!r}; supported model types: {known}.")
    backbone, head = family.load_backbone(hf_config, state, description, dtype)
    prefix = family.heads[task]
    return ImportedHead(backbone, hf_config, head, prefix if head.has(prefix) else None)
