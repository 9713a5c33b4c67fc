"""Train a byte-level BPE (GPT-2 style) with Hugging Face ``tokenizers``' BPE trainer."""
from __future__ import annotations

import json
from typing import Iterator, Sequence

import tensorflow as tf

DOCUMENTS_PER_BATCH = 256


def byte_level_bpe_trainer_tokenizer(
    texts: tf.data.Dataset,
    vocabulary_size: int,
    special_tokens: Sequence[str],
    min_frequency: int = 2,
):
    """A ``tokenizers.Tokenizer`` (byte-level BPE, GPT-2 word split) trained on a dataset of strings.

    The vocabulary holds ``special_tokens`` (ids 0, 1, …), the 256 byte tokens, then merged
    tokens in merge order.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    minimum = len(special_tokens) + len(alphabet)
    if vocabulary_size <= minimum:
        raise ValueError(
            f"vocabulary_size={vocabulary_size} is too small: a byte-level BPE holds the "
            f"{len(special_tokens)} special tokens and the {len(alphabet)} byte tokens, so it needs "
            f"more than {minimum} tokens to learn any merge."
        )
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocabulary_size,
        min_frequency=min_frequency,
        special_tokens=list(special_tokens),
        initial_alphabet=alphabet,
        show_progress=False,
    )
    documents = _documents(texts)
    first = next(documents, None)
    if first is None:
        raise ValueError("Cannot train a byte-level BPE: the dataset is empty.")
    tokenizer.train_from_iterator(_chain(first, documents), trainer=trainer)
    return tokenizer


def train_byte_level_bpe(
    texts: tf.data.Dataset,
    vocabulary_size: int,
    special_tokens: Sequence[str],
    min_frequency: int = 2,
) -> tuple[dict[str, int], list[str]]:
    """Vocabulary (token -> id) and merge rules (``"a b"``, by priority) learned from ``texts``."""
    tokenizer = byte_level_bpe_trainer_tokenizer(texts, vocabulary_size, special_tokens, min_frequency)
    model = json.loads(tokenizer.to_str())["model"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    return dict(model["vocab"]), merges


def _documents(texts: tf.data.Dataset) -> Iterator[list[str]]:
    for batch in texts.batch(DOCUMENTS_PER_BATCH).as_numpy_iterator():
        yield [text.decode("utf-8", errors="replace") for text in batch]


def _chain(first: list[str], rest: Iterator[list[str]]) -> Iterator[list[str]]:
    yield first
    yield from rest
