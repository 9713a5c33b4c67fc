"""Shared fixtures for tokenizer tests: a small hand-written vocabulary and a tokenizer trained on Shakespeare."""
import subprocess
import sys

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


@pytest.fixture
def run_in_fresh_process():
    """Runs a script in a new Python process that must exit normally (no crash, no abort); returns its stdout."""

    def run(script: str, *args: str) -> str:
        process = subprocess.run(
            [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=300
        )
        assert process.returncode == 0, f"exit code {process.returncode}:\n{process.stderr[-3000:]}"
        return process.stdout

    return run
