"""Serving export: raw strings in, probabilities and labels out, equal in a fresh process."""
import os

import numpy as np
import pytest
import tensorflow as tf

import keras_lm


@pytest.fixture
def classifier(movie_vocabulary, movie_sentences):
    tokenizer = keras_lm.tokenizers.WordPiece(vocabulary=movie_vocabulary)
    preprocessor = keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=32)
    backbone = keras_lm.applications.Bert("tiny", vocabulary_size=len(movie_vocabulary))
    model = keras_lm.tasks.Classifier(backbone, num_classes=2, preprocessor=preprocessor)
    model.compile(optimizer=keras_lm.training.adamw(1e-3))
    texts, labels = zip(*movie_sentences)
    model.fit(list(texts), np.array(labels), batch_size=16, epochs=1, verbose=0)
    return model


def _in_memory_probabilities(classifier, texts):
    logits = classifier(classifier.preprocessor(tf.constant(texts)), training=False)
    return tf.nn.softmax(logits).numpy()


def test_fresh_process_outputs_equal_in_memory_with_both_loaders(
    classifier, movie_sentences, tmp_path, load_in_fresh_process
):
    directory = keras_lm.export.serving(classifier, str(tmp_path / "serving" / "1"))
    texts = [text for text, _ in movie_sentences[:8]]
    expected = _in_memory_probabilities(classifier, texts)
    result = load_in_fresh_process(directory, texts)
    for loader in ("eager", "session"):
        probabilities = np.array(result[loader]["probabilities"])
        np.testing.assert_allclose(probabilities, expected, atol=1e-5)
        assert result[loader]["label"] == expected.argmax(-1).tolist()


def test_hostile_inputs_get_answers_in_a_fresh_process(classifier, tmp_path, load_in_fresh_process):
    directory = keras_lm.export.serving(classifier, str(tmp_path / "serving"))
    hostile = [
        "",
        "x" * (1 << 20),  # 1 MB
        b"\xff\xfe\xc3\x28 broken utf-8",
        "tab\tbell\x07 nul\x00 escape\x1b[31m",
        "   ",
    ]
    result = load_in_fresh_process(directory, hostile)
    for loader in ("eager", "session"):
        probabilities = np.array(result[loader]["probabilities"])
        assert probabilities.shape == (len(hostile), 2)
        assert np.all(np.isfinite(probabilities))
        np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)
    empty_batch = load_in_fresh_process(directory, [])
    for loader in ("eager", "session"):
        assert np.array(empty_batch[loader]["probabilities"]).reshape(-1, 2).shape == (0, 2)
        assert empty_batch[loader]["label"] == []


def test_export_never_overwrites_silently_and_keeps_old_export_on_failure(classifier, tmp_path):
    directory = str(tmp_path / "serving")
    keras_lm.export.serving(classifier, directory)
    before = sorted(os.listdir(directory))
    with pytest.raises(FileExistsError, match="already exists"):
        keras_lm.export.serving(classifier, directory)
    classifier.preprocessor = None
    with pytest.raises(ValueError, match="preprocessor"):
        keras_lm.export.serving(classifier, directory, overwrite=True)
    assert sorted(os.listdir(directory)) == before
    assert [p for p in os.listdir(tmp_path) if p.startswith(".")] == []  # no staging left behind
