"""Sequence classification: an encoder backbone plus a dropout + dense head on the pooled output."""
import contextlib
import os
import re
import zipfile

import keras
import numpy as np
import tensorflow as tf

from keras_lm.applications.checkpoint_hf import CheckpointError
from keras_lm.layers import SentencePooling
from keras_lm.tasks.saved_model import (
    ENCODER_DIR,
    PREPROCESS_DIR,
    SavedModelEncoder,
    SavedModelPreprocessor,
    read_manifest,
    rebuild_encoder,
)
from keras_lm.tasks.task import Task, check_tokenizer_fits, is_empty

CLASSIFIER_POOLINGS = ("cls", "mean")

ENCODER_INPUTS = ("token_ids", "segment_ids", "padding_mask")


def backbone_inputs(backbone) -> dict:
    """The backbone's own symbolic inputs, or fresh int32 inputs for a reloaded SavedModel layer."""
    if isinstance(backbone, keras.Model) and isinstance(getattr(backbone, "input", None), dict):
        return backbone.input
    return {name: keras.Input((None,), dtype="int32", name=name) for name in ENCODER_INPUTS}


def load_keras_file(path: str):
    """Loads a `.keras` file, with one clear error when it is missing, truncated or not a Keras archive."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"No .keras file at '{path}'.")
    if os.path.isdir(path) or not zipfile.is_zipfile(path):
        raise ValueError(
            f"'{path}' is not a valid or complete .keras archive (a .keras file is a zip archive; this "
            "one is truncated or of another format); save the model again with model.save(path)."
        )
    with zipfile.ZipFile(path) as archive:
        missing = {"config.json", "metadata.json"} - set(archive.namelist())
    if missing:
        raise ValueError(
            f"'{path}' is not a valid or complete .keras archive: it has no {', '.join(sorted(missing))}."
        )
    try:
        return keras.saving.load_model(path)
    except Exception as error:  # corrupt weights, unknown classes, ...
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"Could not load the Keras model file '{path}': {first_line}") from error


def load_backbone_file(path: str):
    """Loads a `.keras` file holding a backbone or a model with a `.backbone` (e.g. a pretrainer)."""
    model = load_keras_file(path)
    return getattr(model, "backbone", model)


#: Marks the in-graph label checks so that their failures become one-line ValueErrors.
LABEL_ERROR = "keras_lm label error:"


def _label_problem(labels: np.ndarray, num_classes: int, sparse: bool):
    """What is wrong with a batch of labels (numpy), or None."""
    if labels.dtype.kind in "OSU":
        example = labels.reshape(-1)[0] if labels.size else ""
        if isinstance(example, bytes):
            example = example.decode("utf-8", errors="replace")
        return f"labels are strings (e.g. {example!r}); map them to integer class ids in [0, {num_classes}) first."
    if labels.dtype.kind not in "biuf":
        return f"labels must be integer class ids in [0, {num_classes}); got dtype {labels.dtype}."
    if not sparse or labels.size == 0:
        return None
    flat = labels.reshape(-1).astype("float64")
    if labels.ndim > 1 and labels.shape[-1] != 1:
        return (f"labels must be one class id per example (shape [batch]); got shape {labels.shape} "
                "(one-hot labels need loss=keras.losses.CategoricalCrossentropy(from_logits=True)).")
    fractional = flat[~np.isfinite(flat) | (flat != np.round(flat))]
    if fractional.size:
        return f"labels must be integer class ids in [0, {num_classes}); got {fractional[0]:g}."
    outside = flat[(flat < 0) | (flat >= num_classes)]
    if outside.size:
        return f"labels must be class ids in [0, {num_classes}); got {outside[0]:g}."
    return None


def _labels_spec(dataset: tf.data.Dataset):
    spec = dataset.element_spec
    return spec[1] if isinstance(spec, tuple) and len(spec) >= 2 else None


@contextlib.contextmanager
def _label_errors_as_value_errors():
    """Turns a failed in-graph label check (deep in a tf.data pipeline) into a one-line ValueError."""
    try:
        yield
    except tf.errors.InvalidArgumentError as error:
        found = re.search(re.escape(LABEL_ERROR) + r"\s*([^\]\n]*)\]\s*\[([^\]\n]*)\]", error.message)
        if not found:
            raise
        message, value = found.group(1).strip(), found.group(2).strip()
        try:
            value = f"{float(value):g}"
        except ValueError:
            pass
        raise ValueError(f"{message} {value}.") from None


@keras.saving.register_keras_serializable(package="keras_lm")
class Classifier(Task):
    """Classifies a text (or a text pair) from an encoder's pooled output.

    Args:
        backbone: a keras_lm encoder (e.g. `keras_lm.applications.Bert`) or a `SavedModelEncoder`.
        num_classes: number of classes; the model outputs float32 logits [batch, num_classes].
        preprocessor: optional; when set, `fit`/`evaluate`/`predict` take raw strings.
        dropout: dropout on the pooled output before the dense head.
        pooling: what the head reads: ``"cls"`` (default) the encoder's ``pooled_output`` (the
            pooler on ``[CLS]``, as BERT), ``"mean"`` the average of ``sequence_output`` over the real
            tokens (better for encoders pretrained without next-sentence prediction, whose pooler and
            ``[CLS]`` vector were never trained).
        label_names: optional class names ordered by id (e.g. a checkpoint's ``id2label``); kept on
            the model and in its config.

    Example:
        >>> encoder = keras_lm.applications.Bert("tiny", vocabulary_size=1000)  # doctest: +SKIP
        >>> classifier = Classifier(encoder, num_classes=2)  # doctest: +SKIP
        >>> classifier.compile(optimizer=keras_lm.training.adamw(2e-5))  # doctest: +SKIP
        >>> classifier.fit(train_ds, epochs=2)  # doctest: +SKIP
    """

    def __init__(self, backbone, num_classes: int, preprocessor=None, dropout: float = 0.1,
                 pooling: str = "cls", label_names=None, **kwargs):
        if int(num_classes) < 2:
            raise ValueError(f"`num_classes` must be at least 2, got {num_classes}.")
        if label_names is not None and len(label_names) != int(num_classes):
            raise ValueError(f"`label_names` has {len(label_names)} names for {num_classes} classes.")
        if pooling not in CLASSIFIER_POOLINGS:
            raise ValueError(f"Unknown pooling {pooling!r}; use one of {', '.join(CLASSIFIER_POOLINGS)}.")
        check_tokenizer_fits(backbone, getattr(preprocessor, "tokenizer", None))
        inputs = backbone_inputs(backbone)
        outputs = backbone(inputs)
        if pooling == "cls":
            pooled = outputs["pooled_output"]
        else:
            pooled = SentencePooling("mean", normalize=False, name="mean_pooling")(
                outputs["sequence_output"], inputs["padding_mask"]
            )
        hidden = keras.layers.Dropout(dropout, name="head_dropout")(pooled)
        logits = keras.layers.Dense(
            num_classes,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            dtype="float32",
            name="logits",
        )(hidden)
        super().__init__(inputs=inputs, outputs=logits, **kwargs)
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.num_classes = int(num_classes)
        self.dropout = dropout
        self.pooling = pooling
        self.label_names = None if label_names is None else tuple(str(name) for name in label_names)

    @classmethod
    def from_saved_model(cls, directory: str, num_classes: int, rebuild: bool = False,
                         **kwargs) -> "Classifier":
        """Reloads an exported encoder (see `keras_lm.export.encoder`) trainably and adds a head.

        The encoder's variables train with any Keras optimizer (AdamW included) and its dropout is
        active during `fit`; the export's preprocess SavedModel becomes the preprocessor.
        ``rebuild=True`` rebuilds the encoder as keras_lm layers (its class and arguments are in the
        export's manifest) holding the SavedModel's values, instead of reloading it as one
        SavedModel layer: ``keras_lm.peft`` methods (LoRA, adapters, prompts) need those layers.
        """
        read_manifest(directory)
        if rebuild:
            encoder = rebuild_encoder(directory)
        else:
            encoder = SavedModelEncoder(os.path.join(directory, ENCODER_DIR), name="encoder")
        preprocessor = kwargs.pop("preprocessor", None) or SavedModelPreprocessor(
            os.path.join(directory, PREPROCESS_DIR), name="preprocessor"
        )
        return cls(encoder, num_classes, preprocessor=preprocessor, **kwargs)

    @classmethod
    def from_keras_file(cls, path: str, num_classes: int, **kwargs) -> "Classifier":
        """Starts from a `.keras` file holding a backbone or a pretrainer (its `.backbone`)."""
        return cls(load_backbone_file(path), num_classes, **kwargs)

    @classmethod
    def from_hf(cls, source, num_classes: int | None = None, preprocessor=None, config=None, dtype=None,
                sequence_length: int | None = None, **kwargs) -> "Classifier":
        """A classifier on a Hugging Face transformers encoder checkpoint, with its head when it has one.

        The families read are the entries of ``keras_lm.tasks.hf_heads.HF_ENCODER_FAMILIES``
        (``model_type`` in ``config.json``: ``"bert"``, ``"roberta"``, ``"electra"``); the backbone is
        imported as their ``from_hf`` does. A ``*ForSequenceClassification`` checkpoint also gives the
        head, so the logits equal transformers': BERT's pooler + ``classifier``; RoBERTa's and
        ELECTRA's ``classifier.dense`` (tanh / GELU on the first token, imported as the pooler) +
        ``classifier.out_proj``. Its class count comes from the weights, its ``label_names`` from
        ``id2label``, its dropout from ``classifier_dropout`` (else ``hidden_dropout_prob``). A
        checkpoint without the head gets a fresh one of ``num_classes``.

        Args:
            source: a checkpoint directory, an in-memory transformers model, a state dict with
                ``config=``, or a hub name (downloaded when the network allows).
            num_classes: needed for a checkpoint without a head; with a head it must equal the head's.
            preprocessor: None, a preprocessor (e.g. ``RobertaPreprocessor.from_hf(directory,
                sequence_length=128)``), or ``"auto"``: the family's preprocessor read from the
                checkpoint folder's tokenizer files.
            config: the transformers config when ``source`` is a state dict.
            dtype: dtype policy of the backbone.
            sequence_length: packed length of an ``"auto"`` preprocessor (default: the tokenizer's
                ``model_max_length``).
            **kwargs: other ``Classifier`` arguments (``dropout``, ``name``, ...).

        Raises:
            keras_lm.applications.CheckpointError: an unknown ``model_type``, a missing tensor or a
                shape that does not fit (the message names the tensor), or a ``num_classes`` that
                differs from the checkpoint's head.

        Example:
            >>> classifier = Classifier.from_hf("path/to/roberta-sst2", preprocessor="auto")  # doctest: +SKIP
            >>> classifier.label_names  # doctest: +SKIP
            ('negative', 'positive')
        """
        from keras_lm.tasks.hf_heads import SEQUENCE_CLASSIFICATION, read_encoder_with_head

        checkpoint = read_encoder_with_head(source, SEQUENCE_CLASSIFICATION, "Classifier.from_hf", config=config)
        if isinstance(preprocessor, str) and preprocessor == "auto":
            preprocessor = checkpoint.preprocessor(sequence_length)
        label_names = checkpoint.label_names()
        if not checkpoint.has_head:
            if num_classes is None:
                raise ValueError(f"{checkpoint.source} has no classification head "
                                 f"('{checkpoint.head_name()}'): pass num_classes=.")
            names = label_names if label_names is not None and len(label_names) == int(num_classes) else None
            return cls(checkpoint.build_backbone(dtype), num_classes, preprocessor=preprocessor,
                       label_names=kwargs.pop("label_names", names), **kwargs)
        outputs, _ = checkpoint.head.dense_shape(checkpoint.prefix)
        weight_name = checkpoint.head_name()
        if num_classes is not None and int(num_classes) != outputs:
            raise CheckpointError(
                f"{checkpoint.source} has a {outputs}-class head ('{weight_name}'), not {num_classes} classes. "
                f"Omit num_classes to use it, or start a fresh head: Classifier(Bert.from_hf(...), {num_classes})."
            )
        if outputs < 2:
            raise CheckpointError(f"'{weight_name}' in {checkpoint.source} has {outputs} output (a regression "
                                  "head); Classifier needs at least 2 classes.")
        if label_names is not None and len(label_names) != outputs:
            raise CheckpointError(f"config.json of {checkpoint.source} names {len(label_names)} labels "
                                  f"(id2label), but '{weight_name}' has {outputs} rows.")
        kwargs.setdefault("dropout", checkpoint.dropout())
        classifier = cls(checkpoint.build_backbone(dtype), outputs, preprocessor=preprocessor,
                         label_names=kwargs.pop("label_names", label_names), **kwargs)
        checkpoint.head.copy_dense(classifier.get_layer("logits"), checkpoint.prefix)
        return classifier

    def compile(self, optimizer="adam", loss="auto", metrics="auto", **kwargs):
        """Defaults: sparse categorical cross-entropy on logits and accuracy."""
        if isinstance(loss, str) and loss == "auto":
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if isinstance(metrics, str) and metrics == "auto":
            metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        self._sparse_labels = isinstance(loss, keras.losses.SparseCategoricalCrossentropy) or loss in (
            "sparse_categorical_crossentropy", keras.losses.sparse_categorical_crossentropy
        )
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def fit(self, x=None, y=None, batch_size=None, validation_data=None, **kwargs):
        """`Model.fit` after checking the labels: integer class ids in [0, num_classes)."""
        x = self._with_checked_labels(x, y, "fit")
        if isinstance(validation_data, (tuple, list)):
            validation_data = (
                self._with_checked_labels(validation_data[0], _item(validation_data, 1), "validation_data"),
                *validation_data[1:],
            )
        elif validation_data is not None:
            validation_data = self._with_checked_labels(validation_data, None, "validation_data")
        with _label_errors_as_value_errors():
            return super().fit(x, y, batch_size=batch_size, validation_data=validation_data, **kwargs)

    def evaluate(self, x=None, y=None, batch_size=None, **kwargs):
        """`Model.evaluate` after checking the labels: integer class ids in [0, num_classes)."""
        x = self._with_checked_labels(x, y, "evaluate")
        with _label_errors_as_value_errors():
            return super().evaluate(x, y, batch_size=batch_size, **kwargs)

    def predict(self, x, batch_size=None, **kwargs):
        """`Model.predict`; no examples give an empty [0, num_classes] array."""
        if is_empty(x):
            return np.zeros((0, self.num_classes), dtype="float32")
        return super().predict(x, batch_size=batch_size, **kwargs)

    def _with_checked_labels(self, x, y, method: str):
        """Raises one clear ValueError for missing, string, fractional or out-of-range labels.

        Python/numpy labels are checked here; a tf.data.Dataset is returned with an in-graph check
        of every batch's labels (string or missing labels are seen in its element spec at once).
        """
        if x is None or is_empty(x):
            return x  # Task reports empty data
        sparse = getattr(self, "_sparse_labels", True)
        if not isinstance(x, tf.data.Dataset):
            if y is None:
                raise ValueError(f"{method} needs labels: pass y (one class id per example) with x.")
            problem = _label_problem(np.asarray(y), self.num_classes, sparse)
            if problem:
                raise ValueError(f"{method}: {problem}")
            return x
        labels = _labels_spec(x)
        if labels is None or not isinstance(labels, tf.TensorSpec):
            raise ValueError(
                f"{method} needs labels: a dataset of (features, label) pairs, e.g. (text, label); "
                f"its elements are {x.element_spec}."
            )
        if labels.dtype == tf.string:
            raise ValueError(f"{method}: labels are strings; map them to integer class ids in [0, {self.num_classes}) first.")
        if not sparse:
            return x
        return x.map(self._label_check(method), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def _label_check(self, method: str):
        num_classes = self.num_classes

        def check(*element):
            labels = tf.cast(tf.reshape(element[1], [-1]), tf.float64)
            integral = tf.logical_and(tf.math.is_finite(labels), tf.equal(labels, tf.round(labels)))
            in_range = tf.logical_and(labels >= 0, labels < num_classes)
            checks = [
                tf.debugging.Assert(
                    tf.reduce_all(integral),
                    [f"{LABEL_ERROR} {method}: labels must be integer class ids in [0, {num_classes}); got",
                     tf.boolean_mask(labels, tf.logical_not(integral))[:1]],
                ),
                tf.debugging.Assert(
                    tf.reduce_all(in_range),
                    [f"{LABEL_ERROR} {method}: labels must be class ids in [0, {num_classes}); got",
                     tf.boolean_mask(labels, tf.logical_not(in_range))[:1]],
                ),
            ]
            with tf.control_dependencies(checks):
                return (element[0], tf.identity(element[1]), *element[2:])

        return check

    def get_config(self):
        return {
            **self._base_config(),
            "num_classes": self.num_classes,
            "dropout": self.dropout,
            "pooling": self.pooling,
            "label_names": None if self.label_names is None else list(self.label_names),
        }


def _item(sequence, index):
    return sequence[index] if len(sequence) > index else None
