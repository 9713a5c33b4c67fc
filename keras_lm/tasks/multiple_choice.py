"""Multiple choice: score each (context, choice) pair with an encoder and pick the best choice.

Each example is a context (optionally a question joined to it, as Hugging Face's SWAG example
does) and ``num_choices`` candidate texts. Every (context, choice) pair is packed as a segment pair
(``[CLS] context [SEP] choice [SEP]``), encoded, pooled and scored by one dense unit; a softmax over
the scores of an example's choices gives the choice probabilities (``BertForMultipleChoice``).
"""
from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

from keras_lm.applications.checkpoint_hf import CheckpointError
from keras_lm.tasks.classifier import ENCODER_INPUTS, load_backbone_file
from keras_lm.tasks.saved_model import (
    ENCODER_DIR,
    PREPROCESS_DIR,
    SavedModelEncoder,
    SavedModelPreprocessor,
    read_manifest,
)
from keras_lm.tasks.task import DEFAULT_BATCH_SIZE, Task, check_tokenizer_fits, is_empty, trim_padding


@keras.saving.register_keras_serializable(package="keras_lm")
class ChoicesAsRows(keras.layers.Layer):
    """``[batch, num_choices, length]`` -> ``[batch * num_choices, length]`` (one encoder row per pair)."""

    def call(self, inputs):
        return tf.reshape(inputs, tf.stack([-1, tf.shape(inputs)[-1]]))

    def compute_output_shape(self, input_shape):
        return (None, input_shape[-1])


@keras.saving.register_keras_serializable(package="keras_lm")
class RowsAsChoices(keras.layers.Layer):
    """``[batch * num_choices, 1]`` scores -> ``[batch, num_choices]``."""

    def __init__(self, num_choices: int, **kwargs):
        super().__init__(**kwargs)
        self.num_choices = int(num_choices)

    def call(self, inputs):
        return tf.reshape(inputs, [-1, self.num_choices])

    def compute_output_shape(self, input_shape):
        return (None, self.num_choices)

    def get_config(self):
        return {**super().get_config(), "num_choices": self.num_choices}


def joined_context(context, question=None):
    """``"context question"`` (a question joined to its context with a space), in the graph."""
    if question is None:
        return context
    return tf.strings.join([context, question], separator=" ")


@keras.saving.register_keras_serializable(package="keras_lm")
class MultipleChoice(Task):
    """Picks one of ``num_choices`` texts for a context, from an encoder's pooled output.

    Inputs are the encoder's features with a choice axis (``token_ids``, ``segment_ids``,
    ``padding_mask``: int32 ``[batch, num_choices, length]``); the output is float32 logits
    ``[batch, num_choices]``. With a ``preprocessor`` (a ``BertPreprocessor``), ``fit``,
    ``evaluate`` and ``predict`` also take raw text: ``(contexts, choices)`` with contexts
    ``[batch]`` and choices ``[batch, num_choices]``, and labels the index of the right choice.
    ``predict`` returns choice probabilities.

    Args:
        backbone: a keras_lm encoder (e.g. ``keras_lm.applications.Bert``) or a ``SavedModelEncoder``.
        num_choices: candidates per example.
        preprocessor: optional ``BertPreprocessor`` for raw text.
        dropout: dropout on the pooled output before the scoring unit.

    Example:
        >>> vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "cat", "dog", "barks", "meows"]
        >>> preprocessor = keras_lm.tokenizers.BertPreprocessor(
        ...     keras_lm.tokenizers.WordPiece(vocabulary), sequence_length=8)
        >>> backbone = keras_lm.applications.Bert(None, vocabulary_size=10, num_layers=1, hidden_dim=16,
        ...                                       num_heads=2, max_sequence_length=8)
        >>> model = MultipleChoice(backbone, num_choices=2, preprocessor=preprocessor)
        >>> model.predict((["a cat"], [["meows", "barks"]]), verbose=0).shape
        (1, 2)
    """

    def __init__(self, backbone, num_choices: int, preprocessor=None, dropout: float = 0.1, **kwargs):
        if int(num_choices) < 2:
            raise ValueError(f"`num_choices` must be at least 2, got {num_choices}.")
        check_tokenizer_fits(backbone, getattr(preprocessor, "tokenizer", None))
        inputs = {name: keras.Input((int(num_choices), None), dtype="int32", name=name) for name in ENCODER_INPUTS}
        rows = {name: ChoicesAsRows(name=f"{name}_rows")(inputs[name]) for name in ENCODER_INPUTS}
        pooled = backbone(rows)["pooled_output"]
        hidden = keras.layers.Dropout(dropout, name="head_dropout")(pooled)
        scores = keras.layers.Dense(
            1, kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02), dtype="float32", name="choice_score"
        )(hidden)
        logits = RowsAsChoices(num_choices, name="choice_logits")(scores)
        super().__init__(inputs=inputs, outputs=logits, **kwargs)
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.num_choices = int(num_choices)
        self.dropout = dropout

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_saved_model(cls, directory: str, num_choices: int, **kwargs) -> "MultipleChoice":
        """Reloads an exported encoder (``keras_lm.export.encoder``) trainably and adds the head."""
        read_manifest(directory)
        encoder = SavedModelEncoder(os.path.join(directory, ENCODER_DIR), name="encoder")
        preprocessor = kwargs.pop("preprocessor", None) or SavedModelPreprocessor(
            os.path.join(directory, PREPROCESS_DIR), name="preprocessor"
        )
        return cls(encoder, num_choices, preprocessor=preprocessor, **kwargs)

    @classmethod
    def from_keras_file(cls, path: str, num_choices: int, **kwargs) -> "MultipleChoice":
        """Starts from a ``.keras`` file holding a backbone or a pretrainer (its ``.backbone``)."""
        return cls(load_backbone_file(path), num_choices, **kwargs)

    @classmethod
    def from_hf(cls, source, num_choices: int = 2, preprocessor=None, config=None, dtype=None,
                sequence_length: int | None = None, **kwargs) -> "MultipleChoice":
        """A multiple-choice model on a transformers encoder checkpoint, with its head when it has one.

        The families are the entries of ``keras_lm.tasks.hf_heads.HF_ENCODER_FAMILIES`` (``bert``,
        ``roberta``, ``electra``). A ``*ForMultipleChoice`` checkpoint (``classifier.weight``
        ``[1, hidden]``) gives the scoring unit too, so the logits equal transformers': BERT and
        RoBERTa score their pooler's output; ELECTRA's ``sequence_summary.summary`` (with its
        ``summary_activation``) becomes the pooler. The dropout is the checkpoint's (BERT:
        ``classifier_dropout``, else ``hidden_dropout_prob``; RoBERTa: ``hidden_dropout_prob``;
        ELECTRA: ``summary_last_dropout``). Any other encoder checkpoint gets a fresh head.
        ``num_choices`` is free: the head scores each pair on its own.

        Args:
            source: a checkpoint directory, a transformers model, a state dict with ``config=``, or a hub name.
            num_choices: candidates per example.
            preprocessor: None, a preprocessor, or ``"auto"`` (the family's, read from the checkpoint folder).
            config: the transformers config when ``source`` is a state dict.
            dtype: dtype policy of the backbone.
            sequence_length: packed length of an ``"auto"`` preprocessor.

        Raises:
            keras_lm.applications.CheckpointError: an unknown ``model_type``, a missing tensor or a
                shape that does not fit (the message names the tensor).

        Example:
            >>> model = MultipleChoice.from_hf("path/to/bert-swag", num_choices=4)  # doctest: +SKIP
        """
        from keras_lm.tasks.hf_heads import MULTIPLE_CHOICE, read_encoder_with_head

        checkpoint = read_encoder_with_head(source, MULTIPLE_CHOICE, "MultipleChoice.from_hf", config=config)
        if checkpoint.has_head:
            outputs, _ = checkpoint.head.dense_shape(checkpoint.prefix)
            if outputs != 1:
                raise CheckpointError(
                    f"'{checkpoint.head_name()}' in {checkpoint.source} has {outputs} outputs: a multiple-choice "
                    "head scores each pair with one. Is it a sequence classification checkpoint? Use "
                    "Classifier.from_hf for it."
                )
            kwargs.setdefault("dropout", checkpoint.dropout())
        if isinstance(preprocessor, str) and preprocessor == "auto":
            preprocessor = checkpoint.preprocessor(sequence_length)
        model = cls(checkpoint.build_backbone(dtype), num_choices, preprocessor=preprocessor, **kwargs)
        if checkpoint.has_head:
            checkpoint.head.copy_dense(model.get_layer("choice_score"), checkpoint.prefix)
        return model

    # ------------------------------------------------------------------ text in

    def pack(self, contexts, choices, questions=None) -> dict:
        """Raw text -> features ``[batch, num_choices, length]`` (trimmed to the batch's longest pair).

        Args:
            contexts: tf.string ``[batch]``.
            choices: tf.string ``[batch, num_choices]``.
            questions: optional tf.string ``[batch]``, joined to each context with a space.
        """
        if self.preprocessor is None:
            raise ValueError("MultipleChoice needs a preprocessor to take raw text: "
                             "MultipleChoice(backbone, num_choices, preprocessor=BertPreprocessor(...)).")
        contexts = joined_context(tf.convert_to_tensor(contexts, tf.string),
                                  None if questions is None else tf.convert_to_tensor(questions, tf.string))
        choices = tf.convert_to_tensor(choices, tf.string)
        if choices.shape.rank != 2 or (choices.shape[1] is not None and choices.shape[1] != self.num_choices):
            raise ValueError(f"choices must be tf.string [batch, {self.num_choices}] (num_choices={self.num_choices}); "
                             f"got shape {choices.shape}.")
        batch = tf.shape(choices)[0]
        check = tf.debugging.assert_equal(
            tf.shape(contexts)[0], batch,
            message="MultipleChoice: one context per row of choices is needed; the batch sizes differ")
        with tf.control_dependencies([check]):
            repeated = tf.repeat(contexts, self.num_choices)
        features = trim_padding(self.preprocessor((repeated, tf.reshape(choices, [-1]))))
        return {name: tf.reshape(tf.cast(value, tf.int32), tf.stack([batch, self.num_choices, -1]))
                for name, value in features.items()}

    def dataset(self, examples, batch_size: int = DEFAULT_BATCH_SIZE, shuffle: bool = False,
                seed: int | None = None) -> tf.data.Dataset:
        """Batched, packed ``(features, label)`` pairs ready for ``fit``/``evaluate``.

        Args:
            examples: a ``tf.data.Dataset`` of dicts, or a list of dicts or of ``(context, choices,
                label)`` tuples; dict keys ``context``, ``choices`` (``num_choices`` texts), ``label``
                (the right choice's index) and an optional ``question``, joined to the context.
            batch_size: examples per batch.
            shuffle: shuffle the examples (a buffer of 10,000) before batching.
            seed: the shuffle's seed.
        """
        dataset = self._examples_dataset(examples)
        if shuffle:
            dataset = dataset.shuffle(10_000, seed=seed)
        dataset = dataset.batch(batch_size)

        def packed(example):
            features = self.pack(example["context"], example["choices"], example.get("question"))
            label = tf.cast(example["label"], tf.int32)
            checks = [tf.debugging.assert_less(label, self.num_choices, message=f"labels must be choice indices in "
                                               f"[0, {self.num_choices})"),
                      tf.debugging.assert_non_negative(label, message="labels must be non-negative choice indices")]
            with tf.control_dependencies(checks):
                return features, tf.identity(label)

        return dataset.map(packed, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    def _examples_dataset(self, examples) -> tf.data.Dataset:
        if isinstance(examples, tf.data.Dataset):
            spec = examples.element_spec
            if not isinstance(spec, dict) or not {"context", "choices", "label"} <= set(spec):
                raise ValueError("MultipleChoice.dataset takes a dataset of dicts with 'context', 'choices' and "
                                 f"'label' (and optionally 'question'); its elements are {spec}.")
            return examples
        rows = [example if isinstance(example, dict) else dict(zip(("context", "choices", "label"), example))
                for example in examples]
        if not rows:
            raise ValueError("MultipleChoice.dataset got no examples.")
        for index, row in enumerate(rows):
            if len(row.get("choices", ())) != self.num_choices:
                raise ValueError(f"example {index} has {len(row.get('choices', ()))} choices; this model takes "
                                 f"{self.num_choices}.")
        columns = {key: [row[key] for row in rows] for key in ("context", "choices", "label")}
        if any("question" in row for row in rows):
            columns["question"] = [row.get("question", "") for row in rows]
        columns["label"] = np.asarray(columns["label"], np.int64)
        return tf.data.Dataset.from_tensor_slices(columns)

    def _uses_preprocessing(self, x) -> bool:
        return isinstance(x, (tuple, list)) and len(x) == 2 and not isinstance(x[0], dict) and _is_text(x[0])

    def preprocess_data(self, x, y=None, sample_weight=None, batch_size=None, shuffle=False):
        """``(contexts, choices)`` text (and labels) -> a batched dataset of packed features."""
        if isinstance(x, tf.data.Dataset):
            return x  # already packed by `dataset`
        contexts, choices = x
        parts = tuple(p for p in ((np.asarray(contexts, object), np.asarray(choices, object)), y, sample_weight)
                      if p is not None)
        dataset = tf.data.Dataset.from_tensor_slices(parts)
        if shuffle:
            dataset = dataset.shuffle(len(contexts), seed=0)

        def packed(texts, *rest):
            features = self.pack(*texts)
            return (features, *rest) if rest else features

        return dataset.batch(batch_size or DEFAULT_BATCH_SIZE).map(packed).prefetch(tf.data.AUTOTUNE)

    # ------------------------------------------------------------------ training and inference

    def compile(self, optimizer="adam", loss="auto", metrics="auto", **kwargs):
        """Defaults: sparse categorical cross-entropy over the choices' logits, and accuracy."""
        if isinstance(loss, str) and loss == "auto":
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if isinstance(metrics, str) and metrics == "auto":
            metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def predict(self, x, batch_size=None, **kwargs):
        """Choice probabilities ``[batch, num_choices]`` for ``(contexts, choices)`` text or features."""
        if is_empty(x):
            return np.zeros((0, self.num_choices), dtype="float32")
        logits = super().predict(x, batch_size=batch_size, **kwargs)
        return tf.nn.softmax(logits, axis=-1).numpy()

    def get_config(self):
        return {**self._base_config(), "num_choices": self.num_choices, "dropout": self.dropout}


def _is_text(x) -> bool:
    if isinstance(x, (str, bytes)):
        return False  # a single context must still be a list
    values = np.asarray(x, dtype=object) if isinstance(x, (list, tuple)) else x
    dtype = getattr(values, "dtype", None)
    if dtype == tf.string:
        return True
    flat = values.reshape(-1) if hasattr(values, "reshape") else []
    return len(flat) > 0 and isinstance(flat[0], (str, bytes))
