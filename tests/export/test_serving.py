"""Serving export: raw strings in, probabilities and labels out, equal in a fresh process."""
import os

import numpy as np
import pytest
import tensorflow as tf

import keras_lm


@pytest.fixture(scope="module")
def classifier(movie_vocabulary, movie_sentences):
    tokenizer = keras_lm.tokenizers.WordPiece(vocabulary=movie_vocabulary)
    preprocessor = keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=32)
    backbone = keras_lm.applications.Bert("tiny", vocabulary_size=len(movie_vocabulary))
    model = keras_lm.tasks.Classifier(backbone, num_classes=2, preprocessor=preprocessor)
    model.compile(optimizer=keras_lm.training.adamw(1e-3))
    texts, labels = zip(*movie_sentences)
    model.fit(list(texts), np.array(labels), batch_size=16, epochs=1, verbose=0)
    return model


@pytest.fixture(scope="module")
def served(classifier, tmp_path_factory):
    """One serving export of the classifier, shared by the tests that only read it."""
    return keras_lm.export.serving(classifier, str(tmp_path_factory.mktemp("serving") / "1"))


def _in_memory_probabilities(classifier, texts):
    texts = [t if isinstance(t, bytes) else t.encode("utf-8") for t in texts]
    logits = classifier(classifier.preprocessor(tf.constant(texts, tf.string)), training=False)
    return tf.nn.softmax(logits).numpy()


def test_fresh_process_outputs_equal_in_memory_with_both_loaders(
    classifier, served, movie_sentences, load_in_fresh_process
):
    directory = served
    texts = [text for text, _ in movie_sentences[:8]]
    expected = _in_memory_probabilities(classifier, texts)
    assert open(os.path.join(directory, ".keras_lm_export")).read() == "serving\n"  # loaders ignore it
    result = load_in_fresh_process(directory, texts)
    for loader in ("eager", "session"):
        probabilities = np.array(result[loader]["probabilities"])
        np.testing.assert_allclose(probabilities, expected, atol=1e-5)
        assert result[loader]["label"] == expected.argmax(-1).tolist()


def test_hostile_inputs_get_the_in_memory_answers_in_a_fresh_process(classifier, served, load_in_fresh_process):
    directory = served
    hostile = [
        "",
        "x" * (1 << 20),  # 1 MB
        b"\xff\xfe\xc3\x28 broken utf-8",
        "tab\tbell\x07 nul\x00 escape\x1b[31m",
        "   ",
        "[CLS] [SEP] [PAD] [MASK] [UNK] written as text",
        "good film " * 5_000,  # many words: truncated to the sequence length
        "a" * 300,  # one word longer than WordPiece's limit
        "東京 😀 café no-break\u00a0space \u200b zero width",
    ]
    expected = _in_memory_probabilities(classifier, hostile)
    assert np.all(np.isfinite(expected)) and expected.shape == (len(hostile), 2)
    result = load_in_fresh_process(directory, hostile)
    for loader in ("eager", "session"):
        probabilities = np.array(result[loader]["probabilities"])
        np.testing.assert_allclose(probabilities, expected, atol=1e-5)
        assert result[loader]["label"] == expected.argmax(-1).tolist()
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
    preprocessor, classifier.preprocessor = classifier.preprocessor, None
    try:
        with pytest.raises(ValueError, match="preprocessor"):
            keras_lm.export.serving(classifier, directory, overwrite=True)
    finally:
        classifier.preprocessor = preprocessor
    assert sorted(os.listdir(directory)) == before
    assert [p for p in os.listdir(tmp_path) if p.startswith(".")] == []  # no staging left behind
