"""Shared fixtures for tokenizer tests: a small hand-written vocabulary and a tokenizer trained on Shakespeare."""
import pytest

from keras_lm.data.builders import Shakespeare
from keras_lm.data.paths import data_dir

SMALL_VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",  # 0-4
    "the", "king", "is", "dead", "long",            # 5-9
    "live", "to", "be", "or", "not",                # 10-14
    "that", "question", "##s", "##ing", "##ed",     # 15-19
    ",", ".", "!", ":", "?",                        # 20-24
    "a", "horse", "my", "kingdom", "for",           # 25-29
    "w", "##a", "##l", "##k",                       # 30-33
]


@pytest.fixture
def small_vocab():
    return list(SMALL_VOCAB)


@pytest.fixture(scope="session")
def shakespeare_tokenizer():
    """WordPiece trained on the Shakespeare train split (prepared by `python -m keras_lm.data.prepare`)."""
    import keras_lm.data
    from keras_lm.tokenizers import WordPiece

    if not Shakespeare(data_dir=data_dir()).is_prepared():
        pytest.fail("Shakespeare is not prepared: run `python -m keras_lm.data.prepare` first.")
    return WordPiece.train(keras_lm.data.load("shakespeare", split="train"), vocabulary_size=8000)
