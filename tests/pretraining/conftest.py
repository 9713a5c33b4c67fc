"""Fixtures for pretraining tests: real Shakespeare text and a small WordPiece vocabulary trained on it."""
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
