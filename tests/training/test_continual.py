"""Continual learning: L2-SP and EWC penalties (through compile/fit), the diagonal Fisher, replay mixing."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lm
from keras_lm.training.continual import (
    EWC,
    L2SP,
    AnchoredPenalty,
    ReplayBuffer,
    fisher_information,
    mix_replay,
)


def softmax_regression(features=4, classes=3, seed=0):
    """logits = x W + b, with random W and b."""
    inputs = keras.Input((features,))
    model = keras.Model(inputs, keras.layers.Dense(classes, name="dense")(inputs))
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        weight.assign(rng.normal(size=weight.shape).astype("float32"))
    return model


def perturb(variables, seed=1, scale=0.1):
    rng = np.random.default_rng(seed)
    for variable in variables:
        variable.assign(variable.numpy() + rng.normal(scale=scale, size=variable.shape).astype("float32"))


def test_l2sp_is_zero_at_the_anchor_and_equals_numpy_after_a_perturbation():
    model = softmax_regression()
    anchors = [v.numpy().copy() for v in model.trainable_variables]
    penalty = L2SP(model, alpha=0.3)
    assert float(penalty.value()) == 0.0
    with penalty:
        assert float(keras.ops.sum(model.losses)) == 0.0
    perturb(model.trainable_variables)
    expected = 0.3 / 2 * sum(np.sum((v.numpy().astype("float64") - a) ** 2)
                             for v, a in zip(model.trainable_variables, anchors))
    np.testing.assert_allclose(float(penalty.value()), expected, rtol=1e-5)
    with penalty:
        np.testing.assert_allclose(float(keras.ops.sum(model.losses)), expected, rtol=1e-5)
    assert model.losses == []  # detached


def test_attaching_keeps_a_variables_own_regularizer():
    inputs = keras.Input((3,))
    layer = keras.layers.Dense(2, kernel_regularizer=keras.regularizers.L2(0.5))
    model = keras.Model(inputs, layer(inputs))
    penalty = L2SP([layer.kernel], alpha=1.0)
    perturb([layer.kernel])
    own = float(keras.ops.sum(model.losses))
    with penalty:
        np.testing.assert_allclose(float(keras.ops.sum(model.losses)), own + float(penalty.value()), rtol=1e-6)
    np.testing.assert_allclose(float(keras.ops.sum(model.losses)), own, rtol=1e-6)


def test_fit_descends_the_penalty():
    """With a data loss of zero gradient, one SGD step of fit is exactly -lr * strength * F * (w - w*)."""
    model = softmax_regression()
    fisher = [np.random.default_rng(i).uniform(0.5, 2.0, v.shape).astype("float32")
              for i, v in enumerate(model.trainable_variables)]
    ewc = EWC(model, fisher, strength=4.0).attach()
    anchors = [v.numpy().copy() for v in model.trainable_variables]
    perturb(model.trainable_variables)
    before = [v.numpy().copy() for v in model.trainable_variables]
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=lambda y_true, y_pred: 0.0 * keras.ops.sum(y_pred))
    model.fit(np.ones((2, 4), "float32"), np.zeros((2,)), batch_size=2, epochs=1, verbose=0)
    for variable, start, anchor, weight in zip(model.trainable_variables, before, anchors, fisher):
        np.testing.assert_allclose(variable.numpy(), start - 0.01 * 4.0 * weight * (start - anchor), rtol=1e-5,
                                   atol=1e-6)
    ewc.detach()


def _hand_fisher(model, x, y, labels):
    """Closed form for softmax regression: d log p_c / dW = x (onehot_c - p), d / db = onehot_c - p."""
    kernel, bias = (v.numpy().astype("float64") for v in model.trainable_variables)
    logits = x.astype("float64") @ kernel + bias
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    fisher_kernel, fisher_bias = np.zeros_like(kernel), np.zeros_like(bias)
    for row in range(len(x)):
        classes = [(y[row], 1.0)] if labels == "empirical" else list(zip(range(len(bias)), p[row]))
        for c, weight in classes:
            residual = np.eye(len(bias))[c] - p[row]
            fisher_kernel += weight * np.outer(x[row], residual) ** 2
            fisher_bias += weight * residual ** 2
    return fisher_kernel / len(x), fisher_bias / len(x)


@pytest.mark.parametrize("labels", ["empirical", "model"])
def test_fisher_matches_the_hand_computation(labels):
    model = softmax_regression()
    rng = np.random.default_rng(2)
    x = rng.normal(size=(10, 4)).astype("float32")
    y = rng.integers(0, 3, size=10)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    fisher = fisher_information(model, data, labels=labels)
    for computed, expected in zip(fisher, _hand_fisher(model, x, y, labels)):
        np.testing.assert_allclose(computed, expected, rtol=1e-4, atol=1e-7)
    first_six = fisher_information(model, data, labels=labels, num_examples=6)
    for computed, expected in zip(first_six, _hand_fisher(model, x[:6], y[:6], labels)):
        np.testing.assert_allclose(computed, expected, rtol=1e-4, atol=1e-7)


def test_ewc_is_zero_at_the_anchor_and_equals_numpy_after_a_perturbation():
    model = softmax_regression()
    x = np.random.default_rng(3).normal(size=(8, 4)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, np.arange(8) % 3)).batch(8)
    ewc = EWC.from_data(model, data, strength=50.0)
    anchors = [v.numpy().copy() for v in model.trainable_variables]
    assert float(ewc.value()) == 0.0
    perturb(model.trainable_variables)
    expected = 50.0 / 2 * sum(np.sum(f * (v.numpy().astype("float64") - a) ** 2)
                              for f, v, a in zip(ewc.fisher, model.trainable_variables, anchors))
    assert expected > 0
    np.testing.assert_allclose(float(ewc.value()), expected, rtol=1e-5)


@pytest.fixture(scope="module")
def text_classifier(movie_sentences):
    words = sorted({w for text, _ in movie_sentences for w in text.lower().replace(",", " , ").split()})[:400]
    tokenizer = keras_lm.tokenizers.WordPiece(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words)
    backbone = keras_lm.applications.Bert(None, vocabulary_size=tokenizer.vocabulary_size(), num_layers=1,
                                          num_heads=2, hidden_dim=32, intermediate_dim=64, max_sequence_length=32,
                                          dropout=0.0)
    preprocessor = keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=32)
    return keras_lm.tasks.Classifier(backbone, num_classes=2, preprocessor=preprocessor, dropout=0.0)


def test_penalty_joins_a_raw_text_task_evaluate_and_the_fisher_takes_raw_text(text_classifier, movie_sentences):
    classifier = text_classifier
    texts = [t for t, _ in movie_sentences[:6]]
    labels = np.array([y for _, y in movie_sentences[:6]])
    data = tf.data.Dataset.from_tensor_slices((texts, labels)).batch(3)
    classifier.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    start = [v.numpy().copy() for v in classifier.variables]
    penalty = L2SP(classifier.backbone, alpha=2.0)
    assert len(penalty.variables) == len(classifier.backbone.trainable_variables)
    perturb(classifier.backbone.trainable_variables, scale=0.05)
    plain = classifier.evaluate(data, verbose=0, return_dict=True)["loss"]
    with penalty:
        classifier.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        penalised = classifier.evaluate(data, verbose=0, return_dict=True)["loss"]
    np.testing.assert_allclose(penalised, plain + float(penalty.value()), rtol=1e-4)

    # The Fisher on raw text equals per-example gradients of the log-likelihood taken by hand.
    fisher = fisher_information(classifier, data, variables=classifier.trainable_variables, num_examples=4)
    features = classifier.preprocessor(tf.constant(texts[:4]))
    expected = [np.zeros(v.shape) for v in classifier.trainable_variables]
    for row in range(4):
        with tf.GradientTape() as tape:
            logits = classifier({k: v[row: row + 1] for k, v in features.items()}, training=False)
            log_p = tf.nn.log_softmax(logits)[0, labels[row]]
        for total, gradient in zip(expected, tape.gradient(log_p, classifier.trainable_variables)):
            if gradient is not None:
                total += tf.convert_to_tensor(gradient).numpy().astype("float64") ** 2 / 4
    embedding = [i for i, v in enumerate(classifier.trainable_variables) if "token_embedding" in v.path][0]
    assert np.count_nonzero(fisher[embedding].sum(-1)) > 10  # rows of the tokens seen (sparse gradients)
    for computed, hand in zip(fisher, expected):
        np.testing.assert_allclose(computed, hand, rtol=2e-3, atol=1e-9)
    for variable, value in zip(classifier.variables, start):
        variable.assign(value)


def test_replay_mixing_ratio_is_exact_and_the_stream_is_deterministic():
    current = tf.data.Dataset.from_tensor_slices(([f"b{i}" for i in range(40)], np.full(40, 2, np.int64)))
    buffer = ReplayBuffer(capacity=10, seed=5)
    buffer.add(tf.data.Dataset.from_tensor_slices(([f"a{i}" for i in range(100)], np.zeros(100, np.int64))))
    assert len(buffer) == 10 and buffer.seen == 100
    kept = [text.decode() for text, _ in buffer.dataset().as_numpy_iterator()]
    assert len(set(kept)) == 10 and all(k.startswith("a") for k in kept)
    assert kept != [f"a{i}" for i in range(10)]  # a sample, not the first ten
    again = ReplayBuffer(capacity=10, seed=5)
    again.add(tf.data.Dataset.from_tensor_slices(([f"a{i}" for i in range(100)], np.zeros(100, np.int64))))
    assert [t.decode() for t, _ in again.dataset().as_numpy_iterator()] == kept

    for ratio in (0.25, 1 / 3, 0.5):
        stream = [(text.decode(), int(label)) for text, label in buffer.mix(current, ratio).as_numpy_iterator()]
        replayed = np.array([label == 0 for _, label in stream])
        for n in range(1, len(stream) + 1):
            assert replayed[:n].sum() == int(np.floor(n * ratio + 1e-9)), (ratio, n)
        assert [t for t, label in stream if label == 2] == [f"b{i}" for i in range(40)]  # in order, each once
        assert {t for t, label in stream if label == 0} <= set(kept)
        assert stream == [(t.decode(), int(y)) for t, y in buffer.mix(current, ratio).as_numpy_iterator()]
    with pytest.raises(ValueError, match="same structure"):
        mix_replay(current, tf.data.Dataset.from_tensor_slices(["x"]), 0.5)
    with pytest.raises(ValueError, match="ratio"):
        mix_replay(current, buffer.dataset(), 1.0)


def test_bad_arguments():
    model = softmax_regression()
    with pytest.raises(ValueError, match="strength"):
        AnchoredPenalty(model, strength=-1.0)
    with pytest.raises(ValueError, match="shape"):
        EWC(model, [np.ones((2, 2)), np.ones(3)])
    with pytest.raises(ValueError, match="labels"):
        fisher_information(model, tf.data.Dataset.from_tensor_slices((np.ones((2, 4)), [0, 1])).batch(2),
                           labels="true")
    with pytest.raises(TypeError, match="variables"):
        L2SP("backbone")
