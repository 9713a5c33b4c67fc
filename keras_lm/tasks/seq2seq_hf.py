"""A ``Seq2SeqLM`` from a Hugging Face T5 checkpoint directory: its weights and its SentencePiece tokenizer."""
from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

from keras_lm.applications.t5 import T5
from keras_lm.tasks.seq2seq_lm import Seq2SeqLM
from keras_lm.tokenizers.sentence_piece import MODEL_FILE, SentencePiece

#: Weight files a transformers checkpoint directory may hold (any one is enough).
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


@keras.saving.register_keras_serializable(package="keras_lm")
class PlainTextSentencePiece(SentencePiece):
    """``SentencePiece`` whose ``detokenize`` writes plain text: every special token is dropped.

    ``<pad>``, ``</s>``, ``<unk>`` and the sentinels ``<extra_id_i>`` are left out of the text, as
    transformers' ``tokenizer.decode(ids, skip_special_tokens=True)`` does; tokenization is
    ``SentencePiece``'s. Generated answers of a T5 checkpoint then read as transformers prints them.

    Example:
        >>> tokenizer = PlainTextSentencePiece.train(["the king is dead", "long live the king"] * 20,
        ...                                          vocabulary_size=20, num_sentinels=2)  # doctest: +ELLIPSIS
        SentencePiece.train: 40 lines -> unigram model of 18 pieces + 2 sentinels
        >>> ids = tokenizer(["the king <extra_id_0> dead"])
        >>> tokenizer.detokenize(ids).numpy().tolist()
        [b'the king dead']
    """

    def detokenize(self, inputs, *args, **kwargs):
        special = tf.constant([self.pad_id, self.eos_id, self.unk_id, *self.sentinel_ids], tf.int32)
        if not isinstance(inputs, (tf.Tensor, tf.RaggedTensor)):
            inputs = tf.ragged.constant(inputs, dtype=tf.int32) if _is_nested(inputs) else tf.constant(inputs, tf.int32)
        ids = tf.cast(inputs, tf.int32)
        if isinstance(ids, tf.RaggedTensor):
            kept = tf.logical_not(tf.reduce_any(tf.equal(ids.flat_values[:, None], special[None, :]), axis=-1))
            rows = ids.value_rowids()
            ids = tf.RaggedTensor.from_value_rowids(tf.boolean_mask(ids.flat_values, kept), tf.boolean_mask(rows, kept),
                                                    nrows=ids.nrows())
        elif ids.shape.rank == 1:
            ids = tf.boolean_mask(ids, tf.logical_not(tf.reduce_any(tf.equal(ids[:, None], special[None, :]), -1)))
        else:  # dense [batch, length]: special ids become padding, which detokenize drops
            ids = tf.where(tf.reduce_any(tf.equal(ids[..., None], special), axis=-1), self.pad_id, ids)
        return super().detokenize(ids, *args, **kwargs)


def _is_nested(values) -> bool:
    return isinstance(values, (list, tuple)) and any(isinstance(v, (list, tuple)) for v in values)


def _read_config(directory: str) -> dict:
    path = os.path.join(directory, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"seq2seq_lm_from_hf: no config.json in '{directory}': not a transformers checkpoint "
                                "directory (save one with model.save_pretrained(directory)).")
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def _check_directory(directory: str) -> None:
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"seq2seq_lm_from_hf: '{directory}' is not a directory holding a T5 checkpoint.")
    if not os.path.isfile(os.path.join(directory, MODEL_FILE)):
        found = ", ".join(sorted(os.listdir(directory))) or "no files"
        raise FileNotFoundError(
            f"seq2seq_lm_from_hf: no {MODEL_FILE} in '{directory}' (found {found}): a T5 checkpoint needs its "
            f"SentencePiece model; save the tokenizer into the same directory (tokenizer.save_pretrained(directory)) "
            f"or copy {MODEL_FILE} there."
        )
    if not any(os.path.isfile(os.path.join(directory, name)) for name in WEIGHT_FILES):
        raise FileNotFoundError(
            f"seq2seq_lm_from_hf: no weights in '{directory}': expected one of {', '.join(WEIGHT_FILES)} "
            "(save them with model.save_pretrained(directory))."
        )


def seq2seq_lm_from_hf(directory: str | os.PathLike, source_length: int = 512, target_length: int = 128,
                       dtype=None):
    """A ``Seq2SeqLM`` with the weights and the tokenizer of a Hugging Face T5 checkpoint directory.

    The backbone is ``T5.from_hf(directory)`` (v1.0 or v1.1, read from ``config.json``), the
    tokenizer ``SentencePiece.from_hf(directory)`` (``spiece.model``) with a ``detokenize`` that
    drops special tokens (``PlainTextSentencePiece``). T5's conventions: the decoder starts from
    ``decoder_start_token_id`` of ``config.json`` (T5: 0, the padding id), a hypothesis ends at
    ``</s>`` (1), and every tokenized source ends with ``</s>`` (``source_end_token=True``), as
    transformers' ``tokenizer(texts)`` writes it. Greedy ``generate`` on strings then equals
    ``tokenizer.batch_decode(model.generate(**tokenizer(texts, return_tensors="pt", padding=True)),
    skip_special_tokens=True)``.

    Args:
        directory: the checkpoint directory (``config.json``, ``model.safetensors`` or
            ``pytorch_model.bin``, ``spiece.model`` and the tokenizer's configuration files).
        source_length: tokens of a source kept (``</s>`` included); longer sources are truncated.
        target_length: decoder positions in training; the default ``max_new_tokens`` of ``generate``.
        dtype: dtype policy of the backbone (e.g. ``"mixed_bfloat16"``).

    Raises:
        FileNotFoundError: not a directory, or no ``config.json``, weights or ``spiece.model``.
        ValueError: not a T5 checkpoint, a weight layout ``T5.from_hf`` does not know, or a
            tokenizer with more ids than the model's vocabulary.

    Example:
        >>> model = seq2seq_lm_from_hf("path/to/t5-small", source_length=128)  # doctest: +SKIP
        >>> model.generate("translate English to German: The house is wonderful.", sampler="greedy")  # doctest: +SKIP
        'Das Haus ist wunderbar.'
    """
    directory = os.fspath(directory)
    _check_directory(directory)
    config = _read_config(directory)
    if config.get("model_type", "t5") != "t5":
        raise ValueError(f"seq2seq_lm_from_hf: '{directory}' holds a model_type={config.get('model_type')!r} "
                         "checkpoint; only T5 checkpoints (model_type 't5') are supported.")
    tokenizer = PlainTextSentencePiece.from_hf(directory)  # before the weights: a bad tokenizer fails fast
    backbone = T5.from_hf(directory, dtype=dtype)
    start = config.get("decoder_start_token_id")
    start = tokenizer.pad_id if start is None else int(start)
    return Seq2SeqLM(backbone, tokenizer, source_length=source_length, target_length=target_length,
                     decoder_start_token_id=start, end_token_id=tokenizer.eos_id, source_end_token=True)
