"""Causal-LM batches with multi-document sequence packing: documents → one token stream → full rows.

Each document is tokenized and followed by the end-of-text token; the documents are concatenated
into one stream, which is cut into rows of ``sequence_length + 1`` tokens. Consecutive rows overlap
by one token (the last token of a row is the first of the next), so every token of the stream is
predicted exactly once, and the very first row starts with an end-of-text token, which serves as
the beginning of text. Only the final row of the stream is padded.

``inputs = row[:-1]``, ``labels = row[1:]``. An end-of-text token belongs to the document it
*starts*, not to the one it ends: the last token of a document predicts the end-of-text token (the
model learns to stop) and the end-of-text token predicts the first token of the next document
(the model learns to start). So with ``reset_attention=True`` no prediction ever needs a token of
another document and every real label keeps ``sample_weight`` 1; only padding gets weight 0.

``padding_mask`` contract (what the decoder implements): 0 = padding; with
``reset_attention=False`` every real token is 1 (attention spans the whole row); with
``reset_attention=True`` every real token carries its document's number inside the row
(1, 2, 3, …) and a token attends only to earlier tokens with the same number.

Example (tokens ``a``=1 … ``e``=5, end-of-text = 0, ``sequence_length=4``, two documents "ab"
and "cde"): stream ``0 | 1 2 0 3 4 5 0`` → rows ``[0 1 2 0 3]`` and ``[3 4 5 0 pad]``:

    token_ids     [0 1 2 0]   [3 4 5 _]
    labels        [1 2 0 3]   [4 5 0 _]
    sample_weight [1 1 1 1]   [1 1 1 0]
    padding_mask  [1 1 1 2]   [1 1 1 0]   (reset_attention=True; all real ones are 1 otherwise)

(``_`` is padding, id 0.)
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_lm.pretraining.seeds import derive_seeds
from keras_lm.pretraining.segments import document_texts

AUTOTUNE = tf.data.AUTOTUNE
DOCUMENT_BUFFER = 1_000
"""Documents shuffled at once before packing (tokenized documents are held in the buffer)."""


def causal_lm_dataset(
    corpus: tf.data.Dataset,
    tokenizer,
    sequence_length: int,
    batch_size: int = 32,
    shuffle: bool = True,
    seed: int | None = None,
    reset_attention: bool = False,
    drop_remainder: bool = False,
    shuffle_buffer: int = 10_000,
    cache: bool = True,
    end_token_id: int | None = None,
) -> tf.data.Dataset:
    """Packed causal-LM batches ``({"token_ids", "padding_mask"}, labels, sample_weight)``.

    Args:
        corpus: documents, as dicts with a ``"text"`` string (``keras_lm.data.load``) or strings.
            Empty documents are skipped.
        tokenizer: string scalar → 1-D int token ids (``keras_lm.tokenizers.BytePair``), with an
            ``end_token_id`` attribute unless ``end_token_id`` is given.
        sequence_length: tokens per row (the model's context length), at least 2.
        batch_size: rows per batch.
        shuffle: shuffle documents before packing and rows after, differently on every pass;
            False: one fixed order (corpus order) on every pass.
        seed: makes the shuffling reproducible; None draws one from NumPy's global generator.
        reset_attention: number the documents inside each row in ``padding_mask`` so attention
            does not cross document boundaries (see the module docstring).
        drop_remainder: drop a last partial batch (static batch shapes).
        shuffle_buffer: buffer of rows for shuffling.
        cache: keep the tokenized corpus in memory after the first pass.
        end_token_id: the end-of-text id; default ``tokenizer.end_token_id``.

    Returns:
        A ``tf.data.Dataset`` of ``(features, labels, sample_weight)``: ``features["token_ids"]``
        and ``features["padding_mask"]`` int32 ``[B, sequence_length]``, ``labels`` int32
        ``[B, sequence_length]``, ``sample_weight`` float32 ``[B, sequence_length]``.

    Example:
        >>> import keras_lm
        >>> tokenizer = keras_lm.tokenizers.BytePair.gpt2()
        >>> works = keras_lm.data.load("shakespeare", split="validation")
        >>> batches = causal_lm_dataset(works, tokenizer, sequence_length=128, batch_size=8, seed=1)
        >>> features, labels, weights = next(iter(batches))
        >>> features["token_ids"].shape, labels.dtype.name, weights.dtype.name
        (TensorShape([8, 128]), 'int32', 'float32')
    """
    if int(sequence_length) < 2:
        raise ValueError(f"sequence_length must be at least 2, got {sequence_length}.")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    sequence_length = int(sequence_length)
    end_token_id = _end_token_id(tokenizer, end_token_id)
    seed = int(np.random.randint(0, 2**31 - 1)) if seed is None else int(seed)
    document_seed, row_seed = derive_seeds(seed, 2)

    texts = document_texts(corpus).filter(lambda text: tf.strings.length(text) > 0)
    _check_has_documents(texts)
    documents = texts.map(
        lambda text: tf.cast(tf.reshape(tokenizer(text), [-1]), tf.int32), num_parallel_calls=AUTOTUNE
    )
    if cache:
        documents = documents.cache()
    if shuffle:
        documents = documents.shuffle(DOCUMENT_BUFFER, seed=document_seed, reshuffle_each_iteration=True)
    rows = pack_documents(documents, sequence_length, end_token_id)
    rows = rows.map(lambda tokens, documents: _to_example(tokens, documents, sequence_length, reset_attention))
    if shuffle:
        rows = rows.shuffle(shuffle_buffer, seed=row_seed, reshuffle_each_iteration=True)
    return rows.batch(batch_size, drop_remainder=drop_remainder).prefetch(AUTOTUNE)


def pack_documents(documents: tf.data.Dataset, sequence_length: int, end_token_id: int) -> tf.data.Dataset:
    """Rows ``(tokens, document_index)`` of ``sequence_length + 1`` tokens cut from the packed stream.

    ``documents`` yields 1-D int32 token ids, one element per document. The stream is
    ``end doc_0 end doc_1 end …``; ``document_index`` numbers each token's document in the stream
    (an end token counts with the document it starts). Consecutive rows share one token; the last
    row may be shorter.

    Example:
        >>> docs = tf.data.Dataset.from_generator(lambda: iter([[1, 2], [3, 4, 5]]),
        ...                                       output_signature=tf.TensorSpec([None], tf.int32))
        >>> [(t.tolist(), d.tolist()) for t, d in pack_documents(docs, 4, 0).as_numpy_iterator()]
        [([0, 1, 2, 0, 3], [0, 0, 0, 1, 1]), ([3, 4, 5, 0], [1, 1, 1, 2])]
    """

    def with_end_token(index, tokens):
        tokens = tf.concat([tokens, [end_token_id]], axis=0)
        index = tf.cast(index, tf.int32)
        ids = tf.concat([tf.fill(tf.shape(tokens) - 1, index), [index + 1]], axis=0)
        return tokens, ids

    stream = documents.enumerate().map(with_end_token)
    blocks = stream.rebatch(sequence_length)  # consecutive stream tokens, `sequence_length` at a time

    def prepend_previous_token(previous, block):
        tokens, ids = block
        row = (tf.concat([previous[0][tf.newaxis], tokens], 0), tf.concat([previous[1][tf.newaxis], ids], 0))
        return (tokens[-1], ids[-1]), row

    initial = (tf.constant(end_token_id, tf.int32), tf.constant(0, tf.int32))
    return blocks.scan(initial, prepend_previous_token)


def _to_example(tokens: tf.Tensor, documents: tf.Tensor, sequence_length: int, reset_attention: bool):
    real = tf.shape(tokens)[0] - 1  # predictions in this row (sequence_length except in the last row)
    padding = [[0, sequence_length - real]]
    token_ids = tf.pad(tokens[:-1], padding)
    labels = tf.pad(tokens[1:], padding)
    is_real = tf.pad(tf.ones([real], tf.int32), padding)
    if reset_attention:
        padding_mask = tf.pad(documents[:-1] - documents[0] + 1, padding)
    else:
        padding_mask = is_real
    shape = [sequence_length]
    features = {
        "token_ids": tf.ensure_shape(token_ids, shape),
        "padding_mask": tf.ensure_shape(padding_mask, shape),
    }
    return features, tf.ensure_shape(labels, shape), tf.ensure_shape(tf.cast(is_real, tf.float32), shape)


def _end_token_id(tokenizer, end_token_id: int | None) -> int:
    if end_token_id is None:
        end_token_id = getattr(tokenizer, "end_token_id", None)
    if end_token_id is None:
        raise ValueError(
            "causal_lm_dataset needs the end-of-text token id: pass end_token_id=... or a tokenizer "
            "with an `end_token_id` (e.g. keras_lm.tokenizers.BytePair)."
        )
    return int(end_token_id)


def _check_has_documents(texts: tf.data.Dataset) -> None:
    for _ in texts.take(1):
        return
    raise ValueError("The corpus is empty: it has no document with any text.")
