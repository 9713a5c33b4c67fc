"""Classifier: bad labels, empty data and bad files give one clear error, never a silent wrong answer."""
import numpy as np
import pytest
import tensorflow as tf

import keras_lm
from keras_lm.tasks import Classifier


def _backbone(vocabulary_size):
    return keras_lm.applications.Bert(
        None, vocabulary_size=vocabulary_size, num_layers=1, hidden_dim=16, num_heads=2,
        max_sequence_length=32,
    )


@pytest.fixture
def classifier(movie_vocabulary):
    tokenizer = keras_lm.tokenizers.WordPiece(vocabulary=movie_vocabulary)
    preprocessor = keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=16)
    model = Classifier(_backbone(len(movie_vocabulary)), num_classes=2, preprocessor=preprocessor)
    model.compile(optimizer=keras_lm.training.adamw(1e-3))
    return model


@pytest.fixture
def texts(movie_sentences):
    return [text for text, _ in movie_sentences[:16]]


def _weights(model):
    return [w.numpy().copy() for w in model.trainable_weights]


def _unchanged(model, before) -> bool:
    return all(np.array_equal(w.numpy(), b) for w, b in zip(model.trainable_weights, before))


def _one_line_error(call, match):
    with pytest.raises(ValueError, match=match) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message.strip() and len(message) < 300, message
    return message


BAD_LABELS = [
    pytest.param([0.7, 0.2] * 8, r"integer class ids in \[0, 2\); got 0\.7", id="fractional"),
    pytest.param(["positive", "negative"] * 8, "labels are strings", id="strings"),
    pytest.param([0, 2] * 8, r"class ids in \[0, 2\); got 2", id="too-large"),
    pytest.param([0, -1] * 8, r"class ids in \[0, 2\); got -1", id="negative"),
]


@pytest.mark.parametrize("labels, match", BAD_LABELS)
def test_bad_labels_are_refused_before_training(classifier, texts, labels, match):
    before = _weights(classifier)
    _one_line_error(lambda: classifier.fit(texts, np.array(labels), epochs=1, verbose=0), match)
    _one_line_error(lambda: classifier.evaluate(texts, np.array(labels), verbose=0), match)
    assert _unchanged(classifier, before)  # 0.7 was not truncated to class 0 and trained on


def test_bad_labels_in_a_dataset_give_one_line(classifier, texts):
    for labels, match in (param.values for param in BAD_LABELS):
        labels = np.array(labels) if isinstance(labels[0], str) else np.array(labels, "float32")  # one trace
        dataset = tf.data.Dataset.from_tensor_slices((texts, labels))
        _one_line_error(lambda: classifier.fit(dataset.batch(8), epochs=1, verbose=0), match)
        _one_line_error(lambda: classifier.evaluate(dataset, verbose=0), match)  # unbatched: batched for us
        _one_line_error(
            lambda: classifier.fit(texts, np.array([0, 1] * 8), validation_data=(texts, np.array(labels)),
                                   epochs=1, verbose=0),
            "validation_data: .*" + match,
        )


def test_missing_labels_leave_the_model_trainable(classifier, texts, movie_sentences):
    _one_line_error(lambda: classifier.fit(texts, epochs=1, verbose=0), "needs labels")
    text_only = tf.data.Dataset.from_tensor_slices(texts).batch(8)
    _one_line_error(lambda: classifier.fit(text_only, epochs=1, verbose=0), "needs labels")
    # A failure inside Keras' first trace (features missing a key) must not poison the model either.
    features = dict(classifier.preprocessor(tf.constant(texts)))
    del features["segment_ids"]
    with pytest.raises(Exception):
        classifier.fit(tf.data.Dataset.from_tensor_slices((features, [0, 1] * 8)).batch(8), verbose=0)
    before = _weights(classifier)
    labels = np.array([label for _, label in movie_sentences[:16]], "float32")  # whole floats are fine
    history = classifier.fit(texts, labels, batch_size=8, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert not _unchanged(classifier, before)


def test_empty_data(classifier, texts):
    _one_line_error(lambda: classifier.fit([], np.array([], "int32"), verbose=0), "no examples")
    labelled = tf.data.Dataset.from_tensor_slices((texts, [0, 1] * 8))
    _one_line_error(lambda: classifier.fit(labelled.take(0), verbose=0), "no examples")
    nothing = labelled.filter(lambda text, label: False)  # empty, but only known when iterated
    _one_line_error(lambda: classifier.fit(nothing.batch(4), verbose=0), "no training step")
    _one_line_error(lambda: classifier.evaluate(nothing.batch(4), verbose=0), "ran no step")
    predictions = classifier.predict([], verbose=0)
    assert predictions.shape == (0, 2) and predictions.dtype == np.float32


def test_tokenizer_larger_than_the_encoder_vocabulary(movie_vocabulary):
    tokenizer = keras_lm.tokenizers.WordPiece(vocabulary=movie_vocabulary)
    preprocessor = keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=16)
    small = _backbone(len(movie_vocabulary) // 2)
    _one_line_error(
        lambda: Classifier(small, num_classes=2, preprocessor=preprocessor),
        f"{len(movie_vocabulary)} tokens.*embeds only {len(movie_vocabulary) // 2}.*vocabulary_size=",
    )


def test_truncated_or_foreign_keras_file(movie_vocabulary, tmp_path):
    path = tmp_path / "backbone.keras"
    _backbone(len(movie_vocabulary)).save(str(path))
    data = path.read_bytes()
    for name, content in (("truncated.keras", data[: len(data) // 2]), ("text.keras", b"not a model\n")):
        (tmp_path / name).write_bytes(content)
        _one_line_error(
            lambda: Classifier.from_keras_file(str(tmp_path / name), num_classes=2),
            f"'{tmp_path / name}' is not a valid or complete .keras archive",
        )
    with pytest.raises(FileNotFoundError, match="No .keras file"):
        Classifier.from_keras_file(str(tmp_path / "missing.keras"), num_classes=2)
