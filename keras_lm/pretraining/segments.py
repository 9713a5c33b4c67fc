"""Token-level text units for pretraining: documents → segments or chunks, and packing into BERT rows.

Everything here is a TensorFlow function usable inside ``tf.data.Dataset.map``; nothing loops over
the corpus in Python.
"""
from __future__ import annotations

import tensorflow as tf
import tensorflow_text as tf_text

from keras_lm.tokenizers.bert_preprocessor import LongestFirstTrimmer

_TRIMMERS = {"round_robin": tf_text.RoundRobinTrimmer, "waterfall": tf_text.WaterfallTrimmer,
             "longest_first": LongestFirstTrimmer}


def document_texts(corpus: tf.data.Dataset) -> tf.data.Dataset:
    """The text of each document: ``corpus`` of dicts with ``"text"`` or of plain strings."""
    spec = corpus.element_spec
    if isinstance(spec, dict):
        if "text" not in spec:
            raise ValueError(
                f"The corpus yields dicts without a 'text' field (fields: {sorted(spec)}); "
                "pass a dataset of documents such as keras_lm.data.load('shakespeare')."
            )
        return corpus.map(lambda example: example["text"])
    if isinstance(spec, tf.TensorSpec) and spec.dtype == tf.string and spec.shape.rank == 0:
        return corpus
    raise ValueError(
        "The corpus must yield dicts with a 'text' string or scalar strings, one per document; "
        f"got element_spec={spec}."
    )


def document_lines(text: tf.Tensor) -> tf.Tensor:
    """The non-empty, stripped lines of one document (``tf.string`` scalar → ``[N]``)."""
    lines = tf.strings.strip(tf.strings.split(text, sep="\n"))
    return tf.boolean_mask(lines, tf.strings.length(lines) > 0)


def split_into_segments(text: tf.Tensor, tokenizer, segment_length: int) -> tf.RaggedTensor:
    """Tokenizes one document and groups consecutive lines into segments of about ``segment_length``.

    Lines are never cut: a line belongs to segment ``k`` when its first token falls at offset
    ``[k * segment_length, (k + 1) * segment_length)`` of the document's token stream (blank lines
    dropped). Segments therefore hold ``segment_length`` tokens plus at most the rest of their last
    line, and concatenating them gives the document's tokens back in order — suited to verse and
    to prose alike, where a line is the natural unit.

    Returns:
        int32 RaggedTensor ``[num_segments, (tokens)]`` (no empty segment).
    """
    tokens = tokenizer(document_lines(text))
    if not isinstance(tokens, tf.RaggedTensor):
        tokens = tf.RaggedTensor.from_tensor(tokens)
    lengths = tokens.row_lengths()
    starts = tf.cumsum(lengths, exclusive=True)
    segment_of_line = starts // segment_length
    segment_of_token = tf.repeat(segment_of_line, lengths)
    num_segments = tf.reduce_max(tf.concat([segment_of_line + 1, [0]], axis=0))
    segments = tf.RaggedTensor.from_value_rowids(
        tf.cast(tokens.flat_values, tf.int32), segment_of_token, nrows=num_segments
    )
    return tf.ragged.boolean_mask(segments, segments.row_lengths() > 0)


def split_into_chunks(text: tf.Tensor, tokenizer, chunk_length: int) -> tf.RaggedTensor:
    """Tokenizes one document and cuts its token stream into consecutive chunks of ``chunk_length``.

    Returns:
        int32 RaggedTensor ``[num_chunks, (tokens)]``; only the last chunk may be shorter.
    """
    tokens = tokenizer(document_lines(text))
    if isinstance(tokens, tf.RaggedTensor):
        tokens = tokens.flat_values
    tokens = tf.cast(tf.reshape(tokens, [-1]), tf.int32)
    total = tf.size(tokens, out_type=tf.int64)
    starts = tf.range(0, total, chunk_length, dtype=tf.int64)
    return tf.RaggedTensor.from_row_splits(tokens, tf.concat([starts, [total]], axis=0))


def rows_of(ragged: tf.RaggedTensor) -> tf.data.Dataset:
    """A dataset of the rows of a 2-D RaggedTensor, as 1-D tensors (for ``Dataset.flat_map``)."""
    values, splits = ragged.values, ragged.row_splits
    count = tf.size(splits, out_type=tf.int64) - 1
    return tf.data.Dataset.range(count).map(lambda i: values[splits[i] : splits[i + 1]])


def pack_segments(
    segments: tuple[tf.RaggedTensor, ...],
    sequence_length: int,
    cls_id: int,
    sep_id: int,
    pad_id: int,
    truncate: str = "round_robin",
) -> dict[str, tf.Tensor]:
    """Packs a batch of one or two token segments into ``[CLS] a [SEP] (b [SEP])`` rows.

    Args:
        segments: one or two int RaggedTensors ``[B, (tokens)]``.
        truncate: ``"round_robin"`` takes tokens from the segments alternately, so the longer one
            is cut first (BERT's ``truncate_seq_pair``); ``"waterfall"`` cuts the last segment first;
            ``"longest_first"`` is Hugging Face tokenizers' truncation (``BertPreprocessor.from_hf``).

    Returns:
        dict of ``[B, sequence_length]`` tensors: ``token_ids`` (int32), ``segment_ids`` (int32;
        0 for ``[CLS] a [SEP]`` and padding, 1 for ``b [SEP]``) and ``padding_mask`` (bool).
    """
    if truncate not in _TRIMMERS:
        raise ValueError(f"truncate must be one of {sorted(_TRIMMERS)}, got {truncate!r}.")
    segments = [tf.cast(segment, tf.int32) for segment in segments]
    budget = sequence_length - 1 - len(segments)
    segments = _TRIMMERS[truncate](max_seq_length=budget).trim(segments)
    token_ids, segment_ids = tf_text.combine_segments(
        segments, start_of_sequence_id=cls_id, end_of_segment_id=sep_id
    )
    shape = [None, sequence_length]
    padding_mask = tf.ones_like(token_ids, dtype=tf.bool).to_tensor(default_value=False, shape=shape)
    return {
        "token_ids": token_ids.to_tensor(default_value=pad_id, shape=shape),
        "segment_ids": tf.cast(segment_ids, tf.int32).to_tensor(default_value=0, shape=shape),
        "padding_mask": padding_mask,
    }
