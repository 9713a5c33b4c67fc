"""Classification metrics against scikit-learn: the functions, and the Keras metrics under evaluate()."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_lm.evaluation.classification import (
    ClassificationAccuracy,
    ExactMatch,
    F1Score,
    MatthewsCorrelation,
    accuracy,
    exact_match,
    f1_score,
    matthews_correlation,
)


def label_sets():
    """200 random (labels, predictions, classes) sets: 2-5 classes, 1-60 examples, skewed and
    degenerate ones (one class only on either side, no positive at all) included."""
    rng = np.random.default_rng(0)
    sets = []
    for index in range(200):
        classes = int(rng.integers(2, 6))
        size = int(rng.integers(1, 61))
        probabilities = rng.dirichlet(np.full(classes, 0.3 if index % 3 == 0 else 2.0))
        labels = rng.choice(classes, size, p=probabilities)
        predictions = np.where(rng.random(size) < rng.random(), labels, rng.integers(0, classes, size))
        sets.append((labels, predictions, classes))
    sets += [
        (np.ones(9, int), np.ones(9, int), 2),  # one class on both sides: MCC 0
        (np.zeros(7, int), np.zeros(7, int), 2),  # no positive anywhere: binary F1 0
        (np.array([0, 0, 1, 1]), np.zeros(4, int), 2),  # one predicted class
        (np.array([2, 2, 2]), np.array([0, 1, 2]), 3),  # one true class
    ]
    return sets


def test_functions_equal_scikit_learn_on_many_label_sets():
    from sklearn import metrics

    for labels, predictions, classes in label_sets():
        assert accuracy(labels, predictions) == pytest.approx(metrics.accuracy_score(labels, predictions), abs=1e-12)
        assert f1_score(labels, predictions, average="macro") == pytest.approx(
            metrics.f1_score(labels, predictions, average="macro", zero_division=0), abs=1e-12)
        assert matthews_correlation(labels, predictions) == pytest.approx(
            metrics.matthews_corrcoef(labels, predictions), abs=1e-12)
        binary_labels, binary_predictions = (labels > 0).astype(int), (predictions > 0).astype(int)
        for positive in (0, 1):
            assert f1_score(binary_labels, binary_predictions, positive_label=positive) == pytest.approx(
                metrics.f1_score(binary_labels, binary_predictions, pos_label=positive, zero_division=0,
                                 labels=[0, 1]), abs=1e-12)
    assert matthews_correlation(np.ones(5), np.ones(5)) == 0.0 == metrics.matthews_corrcoef(np.ones(5), np.ones(5))


def test_functions_take_scores_and_weights_like_scikit_learn():
    from sklearn import metrics

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 50)
    logits = rng.normal(size=(50, 3))
    weights = rng.random(50)
    ids = logits.argmax(-1)
    assert accuracy(labels, logits) == pytest.approx(metrics.accuracy_score(labels, ids))
    assert matthews_correlation(labels, logits, sample_weight=weights) == pytest.approx(
        metrics.matthews_corrcoef(labels, ids, sample_weight=weights))
    assert f1_score(labels, logits, average="macro", sample_weight=weights) == pytest.approx(
        metrics.f1_score(labels, ids, average="macro", sample_weight=weights))
    probabilities = rng.random(50)  # one sigmoid output per example
    binary = rng.integers(0, 2, 50)
    assert f1_score(binary, probabilities) == pytest.approx(metrics.f1_score(binary, probabilities > 0.5))


def test_exact_match_on_strings():
    assert exact_match(["Paris", "1969", b"Ada"], ["Paris", "in 1969", "Ada"]) == pytest.approx(2 / 3)
    assert exact_match([" Paris"], ["paris"], normalize=lambda s: s.strip().lower()) == 1.0
    assert exact_match([], []) == 0.0
    with pytest.raises(ValueError, match="2 references but 1 predictions"):
        exact_match(["a", "b"], ["a"])


def _keras_metrics(classes):
    return [
        ClassificationAccuracy(classes),
        F1Score(classes, average="macro"),
        MatthewsCorrelation(classes),
        F1Score(classes, average="binary", positive_label=1, name="f1_of_1"),
    ]


def test_keras_metrics_accumulated_over_batches_equal_the_whole_set_values():
    """A fixed 'model' whose logits are the inputs: evaluate() over batches of 7 equals sklearn on all."""
    from sklearn import metrics

    rng = np.random.default_rng(2)
    for classes in (2, 4):
        labels = rng.integers(0, classes, 61)
        logits = rng.normal(size=(61, classes)).astype("float32")
        logits[np.arange(61), labels] += rng.random(61).astype("float32") * 1.5  # better than chance
        inputs = keras.Input((classes,))
        model = keras.Model(inputs, keras.layers.Identity()(inputs))
        model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=_keras_metrics(classes))
        results = model.evaluate(logits, labels, batch_size=7, verbose=0, return_dict=True)
        ids = logits.argmax(-1)
        assert results["accuracy"] == pytest.approx(metrics.accuracy_score(labels, ids), abs=1e-6)
        assert results["macro_f1"] == pytest.approx(metrics.f1_score(labels, ids, average="macro"), abs=1e-6)
        assert results["matthews_correlation"] == pytest.approx(metrics.matthews_corrcoef(labels, ids), abs=1e-6)
        assert results["f1_of_1"] == pytest.approx(
            metrics.f1_score(labels, ids, labels=[1], average="macro", zero_division=0), abs=1e-6)
        # a per-batch mean would differ: the metric really accumulates counts
        batch_mean = np.mean([metrics.matthews_corrcoef(labels[i:i + 7], ids[i:i + 7]) for i in range(0, 61, 7)])
        assert abs(batch_mean - metrics.matthews_corrcoef(labels, ids)) > 1e-3


def test_keras_metrics_take_ids_probabilities_and_column_labels_and_reset():
    from sklearn import metrics

    labels = np.array([1, 0, 1, 1, 0, 0, 1])
    probabilities = np.array([0.9, 0.4, 0.3, 0.8, 0.6, 0.1, 0.7], "float32")  # one sigmoid output
    expected = metrics.matthews_corrcoef(labels, probabilities > 0.5)
    metric = MatthewsCorrelation(2)
    metric.update_state(labels[:, None], probabilities[:, None])
    assert float(metric.result()) == pytest.approx(expected, abs=1e-6)
    metric.reset_state()
    metric.update_state(labels, (probabilities > 0.5).astype("int32"))  # predicted ids
    assert float(metric.result()) == pytest.approx(expected, abs=1e-6)
    metric.reset_state()
    assert float(metric.result()) == 0.0
    one_class = MatthewsCorrelation(2)
    one_class.update_state([1, 1, 1], [1, 1, 1])
    assert float(one_class.result()) == 0.0
    logits_f1 = F1Score(2, threshold=0.0)  # thresholding logits
    logits_f1.update_state(labels, np.log(probabilities / (1 - probabilities)))
    assert float(logits_f1.result()) == pytest.approx(metrics.f1_score(labels, probabilities > 0.5), abs=1e-6)


def test_out_of_range_ids_are_one_clear_error():
    metric = ClassificationAccuracy(num_classes=2)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"class ids must be in \[0, 2\)"):
        metric.update_state([0, 3], [0, 1])
    with pytest.raises(ValueError, match="positive_label"):
        F1Score(2, positive_label=2)
    with pytest.raises(ValueError, match="average must be one of"):
        F1Score(2, average="micro")


def test_exact_match_metric_on_strings_and_sequences_with_weights():
    metric = ExactMatch()
    metric.update_state(tf.constant(["Paris", "1969"]), tf.constant(["Paris", "in 1969"]))
    metric.update_state(tf.constant([[1, 2, 3], [4, 5, 6]]), tf.constant([[1, 2, 3], [4, 0, 6]]), sample_weight=[2.0, 1.0])
    assert float(metric.result()) == pytest.approx((1 + 2) / (2 + 3))


def test_metrics_round_trip_through_get_config():
    for metric in [*_keras_metrics(3), ExactMatch(name="em")]:
        config = metric.get_config()
        clone = type(metric).from_config(config)
        assert clone.get_config() == config
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
        assert type(restored) is type(metric) and restored.get_config() == config
    assert F1Score(3, average="macro").get_config()["average"] == "macro"
