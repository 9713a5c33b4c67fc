"""Shared pieces of the keras_lm.peft tests: a small BERT on the movie_snippets vocabulary, real
sentences, and a record of which variables a real `fit` changed."""
import numpy as np
import pytest

import keras_lm


@pytest.fixture
def preprocessor(movie_vocabulary):
    tokenizer = keras_lm.tokenizers.WordPiece(vocabulary=movie_vocabulary)
    return keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=32)


@pytest.fixture
def small_bert(movie_vocabulary):
    """A function building a 2-block, 64-wide BERT over the 1,000-token movie vocabulary."""

    def build(**overrides):
        arguments = dict(num_layers=2, hidden_dim=64, num_heads=2, intermediate_dim=128,
                         vocabulary_size=len(movie_vocabulary), max_sequence_length=64)
        arguments.update(overrides)
        return keras_lm.applications.Bert(None, **arguments)

    return build


@pytest.fixture
def classifier(small_bert, preprocessor):
    return keras_lm.tasks.Classifier(small_bert(), num_classes=2, preprocessor=preprocessor)


@pytest.fixture
def texts_and_labels(movie_sentences):
    texts, labels = zip(*movie_sentences)
    return list(texts), np.array(labels)


def snapshot(model) -> dict:
    """Every variable's value by path (random-number states left out: dropout advances them)."""
    return {v.path: np.array(v.numpy()) for v in model.variables if "seed_generator_state" not in v.path}


def changed_paths(model, before: dict) -> set:
    after = snapshot(model)
    assert set(after) == set(before), "the model's variables changed identity during fit"
    return {path for path, value in after.items() if not np.array_equal(value, before[path])}


def fit_a_few_steps(model, texts, labels, learning_rate=3e-3, epochs=1, optimizer=None):
    """A real fit: 64 movie_snippets sentences in batches of 16 (4 AdamW steps per epoch)."""
    model.compile(optimizer=optimizer or keras_lm.training.adamw(learning_rate))
    return model.fit(texts, labels, batch_size=16, epochs=epochs, verbose=0)


@pytest.fixture
def fit_and_diff(texts_and_labels):
    """``fit_and_diff(model) -> (changed paths, all paths)`` after a real fit on movie_snippets text."""

    def run(model, **options):
        before = snapshot(model)
        fit_a_few_steps(model, *texts_and_labels, **options)
        return changed_paths(model, before), set(before)

    return run
