"""Fixtures for pretraining tests: real Shakespeare text and a small WordPiece vocabulary trained on it."""
import numpy as np
import pytest

import keras_lm

SEQUENCE_LENGTH = 64


@pytest.fixture(scope="session")
def train_works():
    """The Shakespeare training split: one document per work."""
    return keras_lm.data.load("shakespeare", split="train")


@pytest.fixture(scope="session")
def validation_works():
    """The Shakespeare validation split (Macbeth, Richard II, Sonnets, Twelfth Night)."""
    return keras_lm.data.load("shakespeare", split="validation")


@pytest.fixture(scope="session")
def tokenizer(validation_works):
    """WordPiece with 1,000 tokens trained on the validation works (small, quick to train)."""
    texts = validation_works.map(lambda work: work["text"])
    return keras_lm.tokenizers.WordPiece.train(texts, vocabulary_size=1000)


@pytest.fixture(scope="session")
def preprocessor(tokenizer):
    return keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=SEQUENCE_LENGTH)


@pytest.fixture
def tiny_backbone(tokenizer):
    return keras_lm.applications.Bert(
        "tiny", vocabulary_size=tokenizer.vocabulary_size(), max_sequence_length=SEQUENCE_LENGTH
    )


def frequency_baseline(labels, weights=None):
    """What a model knowing only token frequencies achieves on ``labels`` (numpy, no model).

    Returns ``(cross_entropy, accuracy)``: the entropy in nats of the labels' own empirical
    distribution (the lowest cross-entropy any context-free predictor can reach on them) and the
    accuracy of always answering the most frequent label. Labels with weight 0 are left out.
    """
    labels = np.asarray(labels).ravel()
    if weights is not None:
        labels = labels[np.asarray(weights).ravel() > 0]
    frequencies = np.bincount(labels) / labels.size
    frequencies = frequencies[frequencies > 0]
    return float(-(frequencies * np.log(frequencies)).sum()), float(frequencies.max())


@pytest.fixture(scope="session")
def unigram_baseline():
    """``frequency_baseline`` as a fixture: ``(cross_entropy, most_frequent_accuracy)``."""
    return frequency_baseline
