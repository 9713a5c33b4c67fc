"""RoBERTa's FULL-SENTENCES input: contiguous text packed into full rows, masked anew on every pass.

RoBERTa (Liu et al., 2019, section 4.2) drops next-sentence prediction and fills every input with
contiguous sentences, crossing document boundaries with an extra separator between documents; its
masks are drawn dynamically, each time a sequence is fed to the model, instead of once in
preprocessing. Here, as ``tf.data`` stages:

1. each document is tokenized line by line (``segments.document_lines``) into one token stream that
   ends with ``</s>``, the separator between documents (cached in memory when ``cache=True``);
2. the documents (in a new order on every pass when ``shuffle``) are concatenated and cut into
   rows of ``sequence_length - 2`` tokens, wrapped as ``<s> … </s>``: every row is exactly
   ``sequence_length`` tokens without padding (the last ``< sequence_length - 2`` tokens of a pass
   are dropped); a line or a document may continue in the next row;
3. rows are shuffled, batched and masked with ``MaskedLMMasker`` from a seed drawn per batch from
   ``tf.data.Dataset.random``: a new mask on every pass (``dynamic_masking``), the same masks again
   for the same ``seed``.

Elements are ``(features, targets, sample_weights)`` for ``keras_lm.pretraining.MaskedLM``, as in
``keras_lm.pretraining.datasets``.
"""
from __future__ import annotations

import math

import tensorflow as tf

from keras_lm.pretraining.datasets import DOCUMENT_BUFFER, _check_has_text, _mask, _resolve_seed
from keras_lm.pretraining.masking import MaskedLMMasker
from keras_lm.pretraining.seeds import derive_seeds
from keras_lm.pretraining.segments import document_lines, document_texts

AUTOTUNE = tf.data.AUTOTUNE


def _special_ids(preprocessor, sequence_length: int | None):
    """``(tokenizer, ids, sequence_length)``: ``ids`` has ``cls_id``, ``sep_id``, ``pad_id`` (``mask_id`` …).

    A ``BytePair`` is wrapped in a ``RobertaPreprocessor`` (RoBERTa's special tokens); a
    ``BertPreprocessor`` lends its ``WordPiece``'s ``[CLS]``/``[SEP]``.
    """
    from keras_lm.tokenizers import BytePair
    from keras_lm.tokenizers.roberta_preprocessor import RobertaPreprocessor

    if sequence_length is None:
        sequence_length = getattr(preprocessor, "sequence_length", None)
        if sequence_length is None:
            raise ValueError("full_sentence_dataset needs sequence_length= when given a tokenizer.")
    if isinstance(preprocessor, BytePair):
        preprocessor = RobertaPreprocessor(preprocessor, sequence_length=sequence_length)
    tokenizer = getattr(preprocessor, "tokenizer", preprocessor)
    ids = preprocessor if hasattr(preprocessor, "cls_id") else tokenizer
    missing = [name for name in ("cls_id", "sep_id", "pad_id") if not hasattr(ids, name)]
    if missing:
        raise TypeError(
            f"full_sentence_dataset needs a RobertaPreprocessor, a BytePair tokenizer with RoBERTa's special "
            f"tokens, or a BertPreprocessor/WordPiece; got {type(preprocessor).__name__}, which has no "
            f"{', '.join(missing)}."
        )
    return tokenizer, ids, int(sequence_length)


def document_stream(text: tf.Tensor, tokenizer, separator_id: int) -> tf.Tensor:
    """The int32 tokens of one document's non-blank lines, in order, followed by ``separator_id``."""
    tokens = tokenizer(document_lines(text))
    if isinstance(tokens, tf.RaggedTensor):
        tokens = tokens.flat_values
    tokens = tf.cast(tf.reshape(tokens, [-1]), tf.int32)
    return tf.concat([tokens, [separator_id]], axis=0)


def full_sentence_rows(
    corpus: tf.data.Dataset,
    preprocessor,
    sequence_length: int | None = None,
    shuffle: bool = False,
    seed: int | None = None,
    cache: bool = True,
) -> tf.data.Dataset:
    """Unmasked FULL-SENTENCES rows: int32 ``[sequence_length]`` ``<s> tokens </s>`` (steps 1–2 above).

    Args:
        corpus: documents, as dicts with a ``"text"`` string (``keras_lm.data.load``) or strings.
        preprocessor: a ``RobertaPreprocessor``, a ``BytePair`` with ``<s>``/``</s>``/``<pad>``, or
            a ``BertPreprocessor``/``WordPiece`` (``[CLS]``/``[SEP]``).
        sequence_length: row length; defaults to the preprocessor's.
        shuffle: concatenate the documents in a new order on every pass.
        seed: seed of the document order.
        cache: keep the tokenized documents in memory after the first pass.

    Example:
        >>> from keras_lm.tokenizers import BytePair
        >>> vocabulary = {"<s>": 0, "<pad>": 1, "</s>": 2, "a": 3, "b": 4}
        >>> tokenizer = BytePair(vocabulary, [], end_token="</s>")
        >>> corpus = tf.data.Dataset.from_tensor_slices(["ab\\nba", "aaa"])
        >>> [row.numpy().tolist() for row in full_sentence_rows(corpus, tokenizer, sequence_length=5)]
        [[0, 3, 4, 4, 2], [0, 3, 2, 3, 2], [0, 3, 3, 2, 2]]
    """
    tokenizer, ids, sequence_length = _special_ids(preprocessor, sequence_length)
    if sequence_length < 3:
        raise ValueError(f"sequence_length must be at least 3 (<s> token </s>), got {sequence_length}.")
    texts = document_texts(corpus)
    _check_has_text(texts)
    streams = texts.map(lambda text: document_stream(text, tokenizer, ids.sep_id), num_parallel_calls=AUTOTUNE)
    streams = streams.cache() if cache else streams
    if shuffle:
        streams = streams.shuffle(DOCUMENT_BUFFER, seed=_resolve_seed(seed), reshuffle_each_iteration=True)
    start, end = tf.constant([ids.cls_id], tf.int32), tf.constant([ids.sep_id], tf.int32)
    chunks = streams.rebatch(sequence_length - 2, drop_remainder=True)
    return chunks.map(lambda chunk: tf.ensure_shape(tf.concat([start, chunk, end], 0), [sequence_length]))


def full_sentence_dataset(
    corpus: tf.data.Dataset,
    preprocessor,
    sequence_length: int | None = None,
    masker: MaskedLMMasker | None = None,
    batch_size: int = 32,
    shuffle: bool = True,
    dynamic_masking: bool = True,
    seed: int | None = None,
    shuffle_buffer: int = 10_000,
    cache: bool = True,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Masked-LM batches of RoBERTa's FULL-SENTENCES rows with dynamic masking (see the module doc).

    Args:
        corpus: documents, as dicts with a ``"text"`` string (``keras_lm.data.load``) or strings.
        preprocessor: a ``RobertaPreprocessor`` (or a ``BytePair`` with RoBERTa's special tokens;
            a ``BertPreprocessor``/``WordPiece`` works too).
        sequence_length: row length; defaults to the preprocessor's.
        masker: the masking layer, e.g. ``masked_lm.masker_for(preprocessor)``; by default BERT's
            15% / 80-10-10 masking that never selects ``<s>``, ``</s>``, ``<pad>``, with up to
            ``ceil(0.2 * sequence_length)`` predictions per row.
        batch_size: rows per batch.
        shuffle: new document and row order on every pass.
        dynamic_masking: new masks on every pass (RoBERTa); False repeats the same masks on every
            pass (a fixed evaluation set, with ``shuffle=False``).
        seed: makes the whole pipeline reproducible; None draws one.
        shuffle_buffer: rows shuffled at once.
        cache: keep the tokenized documents in memory after the first pass.
        drop_remainder: drop a last partial batch (static batch shapes).

    Returns:
        a prefetching ``tf.data.Dataset`` of ``(features, {"mlm": ids}, {"mlm": weights})`` with
        features ``token_ids``, ``segment_ids`` (zeros), ``padding_mask`` (ones), ``mask_positions``.

    Example:
        >>> import keras_lm
        >>> texts = tf.data.Dataset.from_tensor_slices(["the king is dead", "long live the king"] * 20)
        >>> tokenizer = keras_lm.tokenizers.BytePair.train(
        ...     texts, vocabulary_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
        >>> batches = full_sentence_dataset(texts, tokenizer, sequence_length=16, batch_size=4, seed=0)
        >>> features, targets, weights = next(iter(batches))
        >>> features["token_ids"].shape.as_list(), features["mask_positions"].shape.as_list()
        ([4, 16], [4, 4])
    """
    tokenizer, ids, sequence_length = _special_ids(preprocessor, sequence_length)
    seed = _resolve_seed(seed)
    document_seed, shuffle_seed, mask_seed = derive_seeds(seed, 3)
    if masker is None:
        masker = default_masker(ids, tokenizer, sequence_length)
    rows = full_sentence_rows(corpus, preprocessor, sequence_length, shuffle=shuffle, seed=document_seed,
                              cache=cache)
    if shuffle:
        rows = rows.shuffle(shuffle_buffer, seed=shuffle_seed, reshuffle_each_iteration=True)
    batches = rows.batch(batch_size, drop_remainder=drop_remainder)
    seeds = tf.data.Dataset.random(seed=mask_seed, rerandomize_each_iteration=dynamic_masking)

    def to_model_inputs(token_ids, batch_seed):
        packed = {"token_ids": token_ids, "segment_ids": tf.zeros_like(token_ids),
                  "padding_mask": tf.ones_like(token_ids, dtype=tf.bool)}
        return _mask(packed, masker, batch_seed)

    return tf.data.Dataset.zip((batches, seeds)).map(to_model_inputs, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def default_masker(ids, tokenizer, sequence_length: int, mask_rate: float = 0.15) -> MaskedLMMasker:
    """BERT's 15% / 80-10-10 masking for these special ids, ``ceil(0.2 * sequence_length)`` predictions."""
    mask_id = getattr(ids, "mask_id", None)
    if mask_id is None:
        raise ValueError("The tokenizer has no mask token: pass masker= or a vocabulary with '<mask>'.")
    unk_id = getattr(ids, "unk_id", ids.pad_id)
    return MaskedLMMasker(
        vocabulary_size=int(tokenizer.vocabulary_size()),
        mask_id=mask_id,
        unselectable_ids=(ids.pad_id, ids.cls_id, ids.sep_id),
        special_ids=(ids.pad_id, unk_id, ids.cls_id, ids.sep_id, mask_id),
        max_predictions=max(1, math.ceil(0.2 * sequence_length)),
        mask_rate=mask_rate,
    )
