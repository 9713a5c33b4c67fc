"""Next-sentence pairs: a segment with its real successor, or with a random segment from elsewhere.

Label convention (BERT's): ``0`` = the second segment is the real next one, ``1`` = it is random.
Positives follow the document order of the source; negatives come from a second, independently
shuffled pass over all segments (documents shuffled, then segments shuffled in a buffer), so they
are almost always from another document. A negative that happens to be the real successor is
labelled 0, so a label is always true. The whole construction is a ``tf.data`` pipeline, seeded:
the same seed gives the same pairs; with ``reshuffle_each_iteration`` every pass (epoch) draws new
orders and new negatives.
"""
from __future__ import annotations

import tensorflow as tf

from keras_lm.pretraining.seeds import derive_seeds

IS_NEXT = 0
IS_RANDOM = 1


def next_sentence_pairs(
    documents: tf.data.Dataset,
    seed: int,
    negative_rate: float = 0.5,
    shuffle: bool = True,
    reshuffle_each_iteration: bool = True,
    shuffle_buffer: int = 10_000,
    document_buffer: int = 1_000,
) -> tf.data.Dataset:
    """Pairs of token segments labelled "is next" (0) or "random" (1).

    Args:
        documents: dataset of int RaggedTensors ``[num_segments, (tokens)]``, one per document, in
            order (see ``segments.split_into_segments``).
        seed: seeds every shuffle and coin flip.
        negative_rate: probability that the second segment is a random one.
        shuffle: shuffle the pairs (documents, then pairs in a buffer of ``shuffle_buffer``);
            False keeps document order.
        reshuffle_each_iteration: new orders, negatives and coin flips on every pass; False
            repeats the same pairs on every pass.
        shuffle_buffer: buffer size for segments and pairs.
        document_buffer: buffer size for shuffling whole documents.

    Returns:
        dataset of dicts ``{"first": int32 [L1], "second": int32 [L2],
        "next_sentence_label": int32 []}``.

    Example:
        >>> import tensorflow as tf
        >>> docs = tf.data.Dataset.from_tensors(tf.ragged.constant([[5, 6], [7], [8, 9]]))
        >>> pairs = next_sentence_pairs(docs, seed=1, negative_rate=0.0, shuffle=False)
        >>> [(p["first"].tolist(), p["second"].tolist()) for p in pairs.as_numpy_iterator()]
        [([5, 6], [7]), ([7], [8, 9])]
    """
    if not 0.0 <= negative_rate <= 1.0:
        raise ValueError(f"negative_rate must be in [0, 1], got {negative_rate}.")
    seeds = derive_seeds(seed, 5)
    reshuffle = reshuffle_each_iteration
    indexed = documents.enumerate()

    positives = indexed
    if shuffle:
        positives = positives.shuffle(document_buffer, seed=seeds[0], reshuffle_each_iteration=reshuffle)
    positives = positives.flat_map(_consecutive_pairs)
    if shuffle:
        positives = positives.shuffle(shuffle_buffer, seed=seeds[1], reshuffle_each_iteration=reshuffle)

    candidates = (
        indexed.shuffle(document_buffer, seed=seeds[2], reshuffle_each_iteration=reshuffle)
        .flat_map(_all_segments)
        .shuffle(shuffle_buffer, seed=seeds[3], reshuffle_each_iteration=reshuffle)
        .repeat()
    )
    coins = tf.data.Dataset.random(seed=seeds[4], rerandomize_each_iteration=reshuffle)

    def choose(pair, candidate, coin_seed):
        draw = tf.random.stateless_uniform([], seed=tf.stack([coin_seed, tf.constant(0, tf.int64)]))
        use_random = draw < negative_rate
        second = tf.cond(use_random, lambda: candidate["tokens"], lambda: pair["successor"])
        is_successor = tf.logical_and(
            tf.equal(candidate["document"], pair["document"]),
            tf.equal(candidate["position"], pair["position"] + 1),
        )
        label = tf.where(tf.logical_and(use_random, tf.logical_not(is_successor)), IS_RANDOM, IS_NEXT)
        return {"first": pair["first"], "second": second, "next_sentence_label": tf.cast(label, tf.int32)}

    pairs = tf.data.Dataset.zip((positives, candidates, coins))
    return pairs.map(choose, num_parallel_calls=tf.data.AUTOTUNE)


def _consecutive_pairs(document_index, segments):
    values, splits = _values_and_splits(segments)
    count = tf.maximum(tf.size(splits, out_type=tf.int64) - 2, 0)
    return tf.data.Dataset.range(count).map(
        lambda i: {
            "first": values[splits[i] : splits[i + 1]],
            "successor": values[splits[i + 1] : splits[i + 2]],
            "document": document_index,
            "position": i,
        }
    )


def _all_segments(document_index, segments):
    values, splits = _values_and_splits(segments)
    count = tf.size(splits, out_type=tf.int64) - 1
    return tf.data.Dataset.range(count).map(
        lambda i: {"tokens": values[splits[i] : splits[i + 1]], "document": document_index, "position": i}
    )


def _values_and_splits(segments):
    if not isinstance(segments, tf.RaggedTensor):
        segments = tf.RaggedTensor.from_tensor(segments)
    return tf.cast(segments.values, tf.int32), segments.row_splits
