"""Pretraining input pipelines: documents → segments → (pairs) → packed, dynamically masked batches.

Stages, all ``tf.data``:

1. tokenize each document once, line by line (cached in memory when ``cache=True``);
2. cut it into segments (next-sentence pairs) or fixed-length chunks (single-segment masked LM);
3. shuffle, batch, pack into ``[CLS] a [SEP] (b [SEP])`` rows;
4. mask each batch with a seed drawn from ``tf.data.Dataset.random`` — a fresh seed on every pass
   (epoch) unless ``shuffle=False``, which makes every pass identical (for evaluation).

Elements are ``(features, targets, sample_weights)`` as ``Model.fit`` expects:
``features = {"token_ids", "segment_ids", "padding_mask", "mask_positions"}`` (all int32),
``targets = {"mlm": mask_ids[, "nsp": next_sentence_label]}``,
``sample_weights = {"mlm": mask_weights[, "nsp": ones]}`` (same structure as the targets).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_lm.pretraining.masking import MaskedLMMasker
from keras_lm.pretraining.next_sentence import next_sentence_pairs
from keras_lm.pretraining.seeds import derive_seeds
from keras_lm.pretraining.segments import (
    document_lines,
    document_texts,
    pack_segments,
    rows_of,
    split_into_chunks,
    split_into_segments,
)

AUTOTUNE = tf.data.AUTOTUNE
DOCUMENT_BUFFER = 1_000
"""Documents shuffled at once (tokenized documents are held in the buffer)."""


def next_sentence_dataset(
    corpus: tf.data.Dataset,
    tokenizer,
    sequence_length: int,
    masker: MaskedLMMasker,
    batch_size: int = 32,
    shuffle: bool = True,
    seed: int | None = None,
    negative_rate: float = 0.5,
    shuffle_buffer: int = 10_000,
    cache: bool = True,
    drop_remainder: bool = False,
    truncate: str = "round_robin",
) -> tf.data.Dataset:
    """Masked-LM + next-sentence batches: ``[CLS] a [SEP] b [SEP]``, ``b`` next or random.

    Each segment holds about ``(sequence_length - 3) // 2`` tokens of whole lines (see
    ``segments.split_into_segments``); pairs are built by ``next_sentence.next_sentence_pairs``.

    Args:
        corpus: documents, as dicts with a ``"text"`` string (``keras_lm.data.load``) or strings.
        tokenizer: string ``[N]`` → int RaggedTensor ``[N, (tokens)]``, with ``cls_id``,
            ``sep_id``, ``pad_id`` attributes (``keras_lm.tokenizers.WordPiece``).
        sequence_length: packed length.
        masker: the masking layer (sets ``max_predictions``).
        batch_size: examples per batch.
        shuffle: shuffle and redraw masks and negatives on every pass; False: one fixed order
            and fixed masks on every pass.
        seed: makes the whole pipeline reproducible; None draws one from NumPy's global generator.
        negative_rate: fraction of pairs whose second segment is random.
        shuffle_buffer: buffer for shuffling segments and pairs.
        cache: keep the tokenized corpus in memory after the first pass (turn off for corpora
            that do not fit in memory).
        drop_remainder: drop a last partial batch (static batch shapes).
        truncate: how overlong pairs are cut, ``"round_robin"`` or ``"waterfall"`` (as in
            ``BertPreprocessor``).
    """
    _check_sequence_length(sequence_length, minimum=5)
    seed = _resolve_seed(seed)
    segment_length = max((sequence_length - 3) // 2, 1)
    segmented = _tokenized_documents(
        corpus, lambda text: split_into_segments(text, tokenizer, segment_length)
    )
    _check_has_pairs(segmented)
    segmented = segmented.cache() if cache else segmented
    pairs_seed, mask_seed = derive_seeds(seed, 2)
    pairs = next_sentence_pairs(
        segmented,
        seed=pairs_seed,
        negative_rate=negative_rate,
        shuffle=shuffle,
        reshuffle_each_iteration=shuffle,
        shuffle_buffer=shuffle_buffer,
    )

    def to_model_inputs(batch, batch_seed):
        packed = pack_segments(
            (batch["first"], batch["second"]), sequence_length,
            tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id, truncate,
        )
        features, targets, weights = _mask(packed, masker, batch_seed)
        targets["nsp"] = batch["next_sentence_label"]
        weights["nsp"] = tf.ones_like(batch["next_sentence_label"], dtype=tf.float32)
        return features, targets, weights

    return _batch_and_mask(pairs, to_model_inputs, batch_size, drop_remainder, shuffle, mask_seed)


def masked_lm_dataset(
    corpus: tf.data.Dataset,
    tokenizer,
    sequence_length: int,
    masker: MaskedLMMasker,
    batch_size: int = 32,
    shuffle: bool = True,
    seed: int | None = None,
    shuffle_buffer: int = 10_000,
    cache: bool = True,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Masked-LM batches of single segments: ``[CLS] chunk [SEP]``.

    Each document's token stream is cut into consecutive chunks of ``sequence_length - 2`` tokens,
    so rows are full except at the end of a document. When shuffling, documents are shuffled
    first, then chunks in a buffer of ``shuffle_buffer``. Arguments as in ``next_sentence_dataset``.
    """
    _check_sequence_length(sequence_length, minimum=3)
    seed = _resolve_seed(seed)
    chunked = _tokenized_documents(
        corpus, lambda text: split_into_chunks(text, tokenizer, sequence_length - 2)
    )
    chunked = chunked.cache() if cache else chunked
    document_seed, shuffle_seed, mask_seed = derive_seeds(seed, 3)
    if shuffle:
        chunked = chunked.shuffle(DOCUMENT_BUFFER, seed=document_seed, reshuffle_each_iteration=True)
    chunks = chunked.flat_map(rows_of)
    if shuffle:
        chunks = chunks.shuffle(shuffle_buffer, seed=shuffle_seed, reshuffle_each_iteration=True)

    def to_model_inputs(batch, batch_seed):
        packed = pack_segments(
            (batch,), sequence_length, tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id
        )
        return _mask(packed, masker, batch_seed)

    return _batch_and_mask(chunks, to_model_inputs, batch_size, drop_remainder, shuffle, mask_seed)


def _tokenized_documents(corpus, split_document) -> tf.data.Dataset:
    texts = document_texts(corpus)
    _check_has_text(texts)
    return texts.map(split_document, num_parallel_calls=AUTOTUNE)


def _mask(packed, masker: MaskedLMMasker, batch_seed):
    seed = tf.stack([batch_seed, tf.constant(1, tf.int64)])
    masked = masker(packed["token_ids"], seed=seed)
    features = {
        "token_ids": masked["token_ids"],
        "segment_ids": packed["segment_ids"],
        # int32, not bool: Keras reduces a first batch across replicas under tf.distribute, and
        # bool tensors cannot be summed.
        "padding_mask": tf.cast(packed["padding_mask"], tf.int32),
        "mask_positions": masked["mask_positions"],
    }
    return features, {"mlm": masked["mask_ids"]}, {"mlm": masked["mask_weights"]}


def _batch_and_mask(examples, to_model_inputs, batch_size, drop_remainder, shuffle, mask_seed):
    batches = examples.ragged_batch(batch_size, drop_remainder=drop_remainder)
    seeds = tf.data.Dataset.random(seed=mask_seed, rerandomize_each_iteration=shuffle)
    batches = tf.data.Dataset.zip((batches, seeds))
    return batches.map(to_model_inputs, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def _resolve_seed(seed: int | None) -> int:
    return int(np.random.randint(0, 2**31 - 1)) if seed is None else int(seed)


def _check_sequence_length(sequence_length: int, minimum: int) -> None:
    if sequence_length < minimum:
        raise ValueError(f"sequence_length must be at least {minimum}, got {sequence_length}.")


def _check_has_text(texts: tf.data.Dataset) -> None:
    non_empty = texts.filter(lambda text: tf.size(document_lines(text)) > 0)
    for _ in non_empty.take(1):
        return
    raise ValueError("The corpus is empty: it has no document with any non-blank line of text.")


def _check_has_pairs(segmented: tf.data.Dataset) -> None:
    long_enough = segmented.filter(lambda segments: segments.nrows() >= 2)
    for _ in long_enough.take(1):
        return
    raise ValueError(
        "No document of the corpus is long enough for a next-sentence pair (two segments); "
        "use longer documents, a shorter sequence_length, or MaskedLM for single segments."
    )
