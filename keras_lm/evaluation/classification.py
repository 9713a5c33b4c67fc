"""Classification metrics: accuracy, F1 (binary, macro), exact match and Matthews correlation.

Each exists twice, with the same definition:

- a function on arrays (``accuracy``, ``f1_score``, ``exact_match``, ``matthews_correlation``),
  whose values equal scikit-learn's ``accuracy_score``, ``f1_score`` and ``matthews_corrcoef``;
- a stateful ``keras.metrics.Metric`` (``ClassificationAccuracy``, ``F1Score``,
  ``MatthewsCorrelation``, ``ExactMatch``) for ``compile(metrics=[...])``. The class metrics
  accumulate a confusion matrix over batches, so the value after ``evaluate`` is the value on the
  whole set (not a mean of per-batch values, which F1 and MCC are not).

Predictions may be class ids, or scores (logits or probabilities) with one more axis than the
labels, as Keras metrics take them: scores are turned into ids with an argmax. A single score
column for a two-class problem (a sigmoid output) is thresholded at ``threshold``.
"""
from __future__ import annotations

from typing import Callable, Iterable

import keras
import numpy as np
import tensorflow as tf

F1_AVERAGES = ("binary", "macro")


# --------------------------------------------------------------------------- functions on arrays


def predicted_ids(labels, predictions, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, predicted class ids)`` as flat int64 arrays; scores become ids by argmax.

    ``predictions`` with one more axis than ``labels`` (e.g. ``[batch, classes]`` logits for
    ``[batch]`` labels) are scores; float predictions of the labels' shape whose values are not all
    whole numbers are one score per example and are thresholded at ``threshold``.
    """
    labels = np.asarray(labels)
    predictions = np.asarray(predictions)
    if predictions.ndim == labels.ndim + 1 or (
        labels.ndim >= 1 and labels.shape[-1:] == (1,) and predictions.ndim == labels.ndim
        and predictions.shape[-1] > 1
    ):
        predictions = predictions.argmax(axis=-1)
    elif predictions.dtype.kind == "f" and np.any(predictions != np.round(predictions)):
        predictions = (predictions > threshold).astype(np.int64)
    labels, predictions = labels.reshape(-1), predictions.reshape(-1)
    if labels.shape != predictions.shape:
        raise ValueError(f"labels and predictions differ in size: {labels.shape[0]} labels, "
                         f"{predictions.shape[0]} predictions.")
    return labels.astype(np.int64), predictions.astype(np.int64)


def confusion_matrix(labels, predictions, num_classes: int | None = None, sample_weight=None) -> np.ndarray:
    """``[classes, classes]`` float64 counts: row = true class, column = predicted class."""
    labels, predictions = predicted_ids(labels, predictions)
    if labels.size and min(labels.min(), predictions.min()) < 0:
        raise ValueError("class ids must not be negative; got "
                         f"{min(labels.min(), predictions.min())}.")
    size = int(num_classes or (max(labels.max(), predictions.max()) + 1 if labels.size else 1))
    weights = np.ones(labels.shape, np.float64) if sample_weight is None else np.asarray(
        sample_weight, np.float64).reshape(-1)
    matrix = np.zeros((size, size), np.float64)
    np.add.at(matrix, (labels, predictions), weights)
    return matrix


def accuracy_from_confusion(matrix: np.ndarray) -> float:
    total = matrix.sum()
    return float(np.trace(matrix) / total) if total else 0.0


def f1_from_confusion(matrix: np.ndarray, average: str = "binary", positive_label: int = 1) -> float:
    """F1 as scikit-learn computes it (a class with no true, predicted or correct example scores 0).

    ``"macro"`` averages over the classes that occur among the labels or the predictions, as
    ``sklearn.metrics.f1_score(average="macro")`` does without ``labels=``.
    """
    matrix = np.asarray(matrix, np.float64)
    true_positive = np.diag(matrix)
    denominator = matrix.sum(axis=0) + matrix.sum(axis=1)  # 2 TP + FP + FN
    per_class = np.divide(2 * true_positive, denominator, out=np.zeros_like(true_positive), where=denominator > 0)
    if average == "binary":
        return float(per_class[positive_label]) if positive_label < len(per_class) else 0.0
    present = denominator > 0
    return float(per_class[present].mean()) if present.any() else 0.0


def matthews_from_confusion(matrix: np.ndarray) -> float:
    """Matthews correlation (multi-class R_K) as ``sklearn.metrics.matthews_corrcoef``; 0 when undefined."""
    matrix = np.asarray(matrix, np.float64)
    true_sum, predicted_sum = matrix.sum(axis=1), matrix.sum(axis=0)
    samples, correct = predicted_sum.sum(), np.trace(matrix)
    covariance = correct * samples - true_sum @ predicted_sum
    predicted_variance = samples**2 - predicted_sum @ predicted_sum
    true_variance = samples**2 - true_sum @ true_sum
    product = predicted_variance * true_variance
    return float(covariance / np.sqrt(product)) if product != 0 else 0.0


def accuracy(labels, predictions, sample_weight=None) -> float:
    """The share of examples whose prediction (an id, or the argmax of scores) is the label.

    Example:
        >>> accuracy([0, 1, 1, 2], [0, 1, 0, 2])
        0.75
        >>> accuracy([1, 0], [[0.2, 0.8], [0.9, 0.1]])  # scores: argmax
        1.0
    """
    return accuracy_from_confusion(confusion_matrix(labels, predictions, sample_weight=sample_weight))


def f1_score(labels, predictions, average: str = "binary", positive_label: int = 1, sample_weight=None) -> float:
    """F1 of the ``positive_label`` class (``average="binary"``) or the mean over classes (``"macro"``).

    Example:
        >>> round(f1_score([0, 1, 1, 0], [0, 1, 0, 0]), 4)
        0.6667
        >>> round(f1_score([0, 1, 2, 2], [0, 2, 2, 2], average="macro"), 4)
        0.6
    """
    _check_average(average)
    matrix = confusion_matrix(labels, predictions, sample_weight=sample_weight)
    if average == "binary" and positive_label >= len(matrix):
        return 0.0
    return f1_from_confusion(matrix, average, positive_label)


def matthews_correlation(labels, predictions, sample_weight=None) -> float:
    """Matthews correlation coefficient (GLUE's CoLA metric), in [-1, 1]; 0 when a side has one class.

    Example:
        >>> round(matthews_correlation([1, 1, 1, 0], [1, 0, 1, 1]), 4)
        -0.3333
        >>> matthews_correlation([1, 1, 1], [1, 1, 1])
        0.0
    """
    return matthews_from_confusion(confusion_matrix(labels, predictions, sample_weight=sample_weight))


def exact_match(references: Iterable, predictions: Iterable, normalize: Callable | None = None) -> float:
    """The share of predictions equal to their reference (strings, bytes or token-id sequences).

    ``normalize`` (e.g. ``str.strip`` or ``str.lower``) is applied to both sides before comparing.

    Example:
        >>> exact_match(["Paris", "1969"], ["Paris", "in 1969"])
        0.5
        >>> exact_match(["Paris "], ["paris"], normalize=lambda s: s.strip().lower())
        1.0
    """
    references, predictions = list(references), list(predictions)
    if len(references) != len(predictions):
        raise ValueError(f"exact_match: {len(references)} references but {len(predictions)} predictions.")
    if not references:
        return 0.0
    normalize = normalize or (lambda value: value)
    same = [_as_comparable(normalize(_decoded(r))) == _as_comparable(normalize(_decoded(p)))
            for r, p in zip(references, predictions)]
    return float(np.mean(same))


def _decoded(value):
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def _as_comparable(value):
    if isinstance(value, np.ndarray):
        return tuple(value.reshape(-1).tolist())
    if isinstance(value, list):
        return tuple(value)
    return value


def _check_average(average: str) -> None:
    if average not in F1_AVERAGES:
        raise ValueError(f"average must be one of {', '.join(F1_AVERAGES)}; got {average!r}.")


# --------------------------------------------------------------------------- Keras metrics


def _ids_in_graph(y_true, y_pred, threshold: float):
    """Flat int32 ``(labels, predicted ids)`` in the graph, following ``predicted_ids``' rules."""
    y_true = tf.convert_to_tensor(y_true)
    y_pred = tf.convert_to_tensor(y_pred)
    true_rank, predicted_rank = y_true.shape.rank, y_pred.shape.rank
    scores = predicted_rank == true_rank + 1 or (
        predicted_rank == true_rank and y_true.shape[-1] == 1 and (y_pred.shape[-1] or 0) > 1
    )
    if scores:
        y_pred = tf.argmax(y_pred, axis=-1, output_type=tf.int32)
    elif y_pred.dtype.is_floating:
        whole = tf.reduce_all(tf.equal(y_pred, tf.round(y_pred)))
        y_pred = tf.where(whole, tf.cast(tf.round(y_pred), tf.int32), tf.cast(y_pred > threshold, tf.int32))
    labels = tf.reshape(tf.cast(tf.round(tf.cast(y_true, tf.float32)) if y_true.dtype.is_floating else y_true,
                                tf.int32), [-1])
    return labels, tf.reshape(tf.cast(y_pred, tf.int32), [-1])


class ConfusionMetric(keras.metrics.Metric):
    """Base of the class metrics: accumulates a ``[num_classes, num_classes]`` confusion matrix."""

    def __init__(self, num_classes: int = 2, threshold: float = 0.5, name: str | None = None, **kwargs):
        super().__init__(name=name, **kwargs)
        if int(num_classes) < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}.")
        self.num_classes = int(num_classes)
        self.threshold = float(threshold)
        self.confusion = self.add_variable(
            shape=(self.num_classes, self.num_classes), initializer="zeros", dtype="float32", name="confusion"
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels, predictions = _ids_in_graph(y_true, y_pred, self.threshold)
        weights = tf.ones_like(labels, tf.float32) if sample_weight is None else tf.reshape(
            tf.cast(sample_weight, tf.float32), [-1])
        inside = tf.logical_and(
            tf.logical_and(labels >= 0, labels < self.num_classes),
            tf.logical_and(predictions >= 0, predictions < self.num_classes),
        )
        check = tf.debugging.Assert(
            tf.reduce_all(inside),
            [f"{type(self).__name__}: class ids must be in [0, {self.num_classes}) (num_classes={self.num_classes}); "
             "got labels", labels[:8], "and predictions", predictions[:8]],
        )
        with tf.control_dependencies([check]):
            rows = tf.one_hot(labels, self.num_classes, dtype=tf.float32) * weights[:, None]
            columns = tf.one_hot(predictions, self.num_classes, dtype=tf.float32)
            self.confusion.assign_add(tf.matmul(rows, columns, transpose_a=True))

    def reset_state(self):
        self.confusion.assign(tf.zeros_like(self.confusion))

    def result(self):
        return self._from_confusion(tf.cast(self.confusion, tf.float64))

    def _from_confusion(self, matrix):
        raise NotImplementedError

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "threshold": self.threshold}


@keras.saving.register_keras_serializable(package="keras_lm")
class ClassificationAccuracy(ConfusionMetric):
    """Accuracy accumulated over batches (equal to ``accuracy`` on the whole set).

    Example:
        >>> metric = ClassificationAccuracy(num_classes=3)
        >>> metric.update_state([0, 2], [[3.0, 0.0, 1.0], [0.0, 1.0, 0.5]])
        >>> float(metric.result())
        0.5
    """

    def __init__(self, num_classes: int = 2, threshold: float = 0.5, name: str = "accuracy", **kwargs):
        super().__init__(num_classes, threshold, name=name, **kwargs)

    def _from_confusion(self, matrix):
        total = tf.reduce_sum(matrix)
        return tf.cast(tf.math.divide_no_nan(tf.linalg.trace(matrix), total), tf.float32)


@keras.saving.register_keras_serializable(package="keras_lm")
class F1Score(ConfusionMetric):
    """F1 of one class (``average="binary"``, class ``positive_label``) or the macro average.

    Unlike ``keras.metrics.F1Score`` (one-hot targets), this takes class ids and scores as
    ``SparseCategoricalAccuracy`` does, and equals ``sklearn.metrics.f1_score`` on the whole set.

    Example:
        >>> metric = F1Score(num_classes=2, average="binary")
        >>> metric.update_state([0, 1, 1, 0], [0, 1, 0, 0])
        >>> round(float(metric.result()), 4)
        0.6667
    """

    def __init__(self, num_classes: int = 2, average: str = "binary", positive_label: int = 1,
                 threshold: float = 0.5, name: str | None = None, **kwargs):
        _check_average(average)
        if average == "binary" and not 0 <= int(positive_label) < int(num_classes):
            raise ValueError(f"positive_label must be a class id in [0, {num_classes}); got {positive_label}.")
        super().__init__(num_classes, threshold, name=name or f"{average}_f1", **kwargs)
        self.average = average
        self.positive_label = int(positive_label)

    def _from_confusion(self, matrix):
        true_positive = tf.linalg.diag_part(matrix)
        denominator = tf.reduce_sum(matrix, axis=0) + tf.reduce_sum(matrix, axis=1)
        per_class = tf.math.divide_no_nan(2 * true_positive, denominator)
        if self.average == "binary":
            return tf.cast(per_class[self.positive_label], tf.float32)
        present = tf.cast(denominator > 0, tf.float64)
        return tf.cast(tf.math.divide_no_nan(tf.reduce_sum(per_class * present), tf.reduce_sum(present)), tf.float32)

    def get_config(self):
        return {**super().get_config(), "average": self.average, "positive_label": self.positive_label}


@keras.saving.register_keras_serializable(package="keras_lm")
class MatthewsCorrelation(ConfusionMetric):
    """Matthews correlation accumulated over batches (GLUE's CoLA metric); 0 when undefined.

    Example:
        >>> metric = MatthewsCorrelation(num_classes=2)
        >>> metric.update_state([1, 1, 1, 0], [1, 0, 1, 1])
        >>> round(float(metric.result()), 4)
        -0.3333
    """

    def __init__(self, num_classes: int = 2, threshold: float = 0.5, name: str = "matthews_correlation", **kwargs):
        super().__init__(num_classes, threshold, name=name, **kwargs)

    def _from_confusion(self, matrix):
        true_sum, predicted_sum = tf.reduce_sum(matrix, axis=1), tf.reduce_sum(matrix, axis=0)
        samples, correct = tf.reduce_sum(predicted_sum), tf.linalg.trace(matrix)
        covariance = correct * samples - tf.tensordot(true_sum, predicted_sum, 1)
        predicted_variance = samples**2 - tf.tensordot(predicted_sum, predicted_sum, 1)
        true_variance = samples**2 - tf.tensordot(true_sum, true_sum, 1)
        product = predicted_variance * true_variance
        value = tf.where(product > 0, covariance / tf.sqrt(tf.maximum(product, 1e-300)), tf.zeros_like(product))
        return tf.cast(value, tf.float32)


@keras.saving.register_keras_serializable(package="keras_lm")
class ExactMatch(keras.metrics.Metric):
    """The share of examples whose whole prediction equals the reference, accumulated over batches.

    An example is a row: a string (``tf.string`` ``[batch]``), a class id, or a sequence of ids
    (``[batch, length]``: every position must match). Scores with one more axis than the labels are
    turned into ids by argmax first, as Keras' accuracy metrics do.

    Example:
        >>> metric = ExactMatch()
        >>> metric.update_state(tf.constant(["Paris", "1969"]), tf.constant(["Paris", "in 1969"]))
        >>> float(metric.result())
        0.5
    """

    def __init__(self, name: str = "exact_match", **kwargs):
        super().__init__(name=name, **kwargs)
        self.matches = self.add_variable(shape=(), initializer="zeros", dtype="float32", name="matches")
        self.count = self.add_variable(shape=(), initializer="zeros", dtype="float32", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = tf.convert_to_tensor(y_true), tf.convert_to_tensor(y_pred)
        if y_pred.shape.rank == y_true.shape.rank + 1 and y_pred.dtype != tf.string:
            y_pred = tf.argmax(y_pred, axis=-1)
        if y_true.dtype != tf.string:
            y_true, y_pred = tf.cast(y_true, tf.int64), tf.cast(tf.round(tf.cast(y_pred, tf.float64))
                                                                if y_pred.dtype.is_floating else y_pred, tf.int64)
        batch = tf.shape(y_true)[0]
        equal = tf.reshape(tf.equal(y_true, y_pred), tf.stack([batch, -1]))
        row_matches = tf.cast(tf.reduce_all(equal, axis=1), tf.float32)
        weights = tf.ones_like(row_matches) if sample_weight is None else tf.reshape(
            tf.cast(sample_weight, tf.float32), [-1])
        self.matches.assign_add(tf.reduce_sum(row_matches * weights))
        self.count.assign_add(tf.reduce_sum(weights))

    def reset_state(self):
        self.matches.assign(0.0)
        self.count.assign(0.0)

    def result(self):
        return tf.math.divide_no_nan(self.matches, self.count)

    def get_config(self):
        return super().get_config()
