"""T5 span corruption (Raffel et al., 2020, section 3.1.4): noise masks, corrupted pairs and batches.

A row of ``tokens_length`` raw tokens gets a noise mask of about ``noise_density`` of its tokens,
in spans of mean length ``mean_noise_span_length`` (``random_spans_noise_mask``, T5's algorithm).
Each noise span is replaced in the encoder input by one sentinel token (sentinel 0 for the first
span, 1 for the next, ...) and the target lists every sentinel followed by the tokens it replaced;
both end with the end-of-sequence token (``span_corruption``)::

    tokens   Thank you for inviting me to your party last week
    inputs   Thank you <X> me to your party <Y> week </s>
    targets  <X> for inviting <Y> last </s>

Rows are full: ``span_corruption_lengths`` (T5's ``random_spans_helper``) picks the raw row length
so that the corrupted input fills ``inputs_length`` (all rows but the corpus' last have the same
length and the same number of spans, so their inputs and targets have fixed lengths). This is how
T5 packs its pretraining inputs: the documents are concatenated into one token stream and cut into
such rows, so no padding is wasted and no segment ids are needed (``keras_lm.models.EncoderDecoder``
takes no segment masks).

Every random choice is stateless (``tf.random.stateless_*`` from an explicit seed), so a pipeline
is reproducible and runs in ``tf.data`` graphs.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from keras_lm.pretraining.seeds import derive_seeds
from keras_lm.pretraining.segments import document_texts

AUTOTUNE = tf.data.AUTOTUNE
DOCUMENT_BUFFER = 1_000
"""Documents shuffled at once before they are concatenated (tokenized documents are held in the buffer)."""

FEATURE_NAMES = ("encoder_token_ids", "encoder_padding_mask", "decoder_token_ids", "decoder_padding_mask")


# --- settings ---------------------------------------------------------------------------------------------


def check_noise_settings(noise_density: float, mean_noise_span_length: float) -> None:
    """Raise one clear ValueError unless ``0 < noise_density < 1`` and ``mean_noise_span_length >= 1``."""
    if not 0.0 < float(noise_density) < 1.0:
        raise ValueError(
            f"noise_density must be strictly between 0 and 1 (the fraction of tokens to corrupt; T5: 0.15), "
            f"got {noise_density}."
        )
    if not float(mean_noise_span_length) >= 1.0:
        raise ValueError(
            f"mean_noise_span_length must be at least 1 (tokens per corrupted span; T5: 3.0), got "
            f"{mean_noise_span_length}."
        )


def t5_sentinel_ids(vocabulary_size: int, count: int) -> list[int]:
    """T5's sentinel ids: sentinel ``i`` (``<extra_id_i>``) is ``vocabulary_size - 1 - i``.

    ``vocabulary_size`` counts the sentinels (T5: 32000 SentencePiece pieces + 100 extra ids = 32100).

    Example:
        >>> t5_sentinel_ids(32100, 3)
        [32099, 32098, 32097]
    """
    vocabulary_size, count = int(vocabulary_size), int(count)
    if count < 0 or count > vocabulary_size:
        raise ValueError(f"Cannot take {count} sentinel ids from a vocabulary of {vocabulary_size} tokens.")
    return [vocabulary_size - 1 - i for i in range(count)]


def noise_counts(length: int, noise_density: float, mean_noise_span_length: float) -> tuple[int, int]:
    """``(noise tokens, noise spans)`` that ``random_spans_noise_mask`` draws for a row of ``length`` tokens.

    Example:
        >>> noise_counts(568, 0.15, 3.0)
        (85, 28)
    """
    length = int(length)
    padded = max(length, 2)
    # float32 arithmetic, as the mask computes it in TensorFlow (ties round to even in both).
    num_noise_tokens = int(np.round(np.float32(padded) * np.float32(noise_density)))
    num_noise_tokens = min(max(num_noise_tokens, 1), padded - 1)
    num_noise_spans = int(np.round(np.float32(num_noise_tokens) / np.float32(mean_noise_span_length)))
    num_noise_spans = max(num_noise_spans, 1)
    num_noise_spans = min(num_noise_spans, padded - num_noise_tokens)
    if length < 2:  # the mask of a 1-token row is the first token of a 2-token mask: never noise
        return 0, 0
    return num_noise_tokens, num_noise_spans


def corrupted_lengths(length: int, noise_density: float, mean_noise_span_length: float) -> tuple[int, int]:
    """``(inputs, targets)`` lengths ``span_corruption`` produces from ``length`` raw tokens (with end tokens)."""
    noise, spans = noise_counts(length, noise_density, mean_noise_span_length)
    return int(length) - noise + spans + 1, noise + spans + 1


def span_corruption_lengths(
    inputs_length: int, noise_density: float = 0.15, mean_noise_span_length: float = 3.0
) -> tuple[int, int]:
    """``(tokens_length, targets_length)``: raw tokens per row so the corrupted input fits ``inputs_length``.

    T5's ``random_spans_helper`` (one sentinel per span in inputs and targets, one end token each):
    the longest raw row whose corrupted input has at most ``inputs_length`` tokens, and the length
    of its targets.

    Raises:
        ValueError: ``inputs_length`` too short to hold a single noise span.

    Example:
        >>> span_corruption_lengths(512)
        (568, 114)
    """
    check_noise_settings(noise_density, mean_noise_span_length)
    inputs_length = int(inputs_length)
    tokens_length, targets_length = _random_spans_helper(inputs_length, noise_density, mean_noise_span_length)
    if not _holds_a_span(tokens_length, noise_density, mean_noise_span_length):
        shortest = max(inputs_length, 1)
        while not _holds_a_span(_random_spans_helper(shortest, noise_density, mean_noise_span_length)[0],
                                noise_density, mean_noise_span_length):
            shortest += 1
        raise ValueError(
            f"inputs_length={inputs_length} is too short for span corruption with noise_density={noise_density} "
            f"and mean_noise_span_length={mean_noise_span_length}: a row would not hold one noise span. Use "
            f"inputs_length >= {shortest}."
        )
    return tokens_length, targets_length


def _random_spans_helper(inputs_length: int, noise_density: float, mean_noise_span_length: float):
    """T5's ``random_spans_helper`` with one extra token per span in inputs and targets."""

    def lengths(tokens_length):
        num_noise_tokens = int(round(tokens_length * noise_density))
        num_noise_spans = int(round(num_noise_tokens / mean_noise_span_length))
        return (tokens_length - num_noise_tokens + num_noise_spans + 1, num_noise_tokens + num_noise_spans + 1)

    tokens_length = inputs_length - 1
    while lengths(tokens_length + 1)[0] <= inputs_length:
        tokens_length += 1
    targets_length = lengths(tokens_length)[1]
    if noise_density == 0.5 and targets_length > inputs_length:  # T5: keep targets as long as inputs
        tokens_length -= 1
        targets_length -= 1
    return tokens_length, targets_length


def _holds_a_span(tokens_length: int, noise_density: float, mean_noise_span_length: float) -> bool:
    """Whether T5's formula (before its clamps) gives a full row at least one noise span."""
    return tokens_length >= 2 and round(round(tokens_length * noise_density) / mean_noise_span_length) >= 1


# --- one row ----------------------------------------------------------------------------------------------


def random_spans_noise_mask(
    length,
    noise_density: float = 0.15,
    mean_noise_span_length: float = 3.0,
    seed=(0, 0),
) -> tf.Tensor:
    """A bool ``[length]`` noise mask: T5's ``random_spans_noise_mask``, stateless.

    ``round(length * noise_density)`` noise tokens (at least 1, at most ``length - 1``) in
    ``round(noise_tokens / mean_noise_span_length)`` spans (at least 1). The noise and the non-noise
    tokens are each cut into that many non-empty spans at random, and the spans alternate,
    starting with non-noise (so the mask ends with a noise span). Identical to T5 where T5 is
    defined; for densities where there would be more noise spans than non-noise tokens (T5 fails)
    the span count is capped at the non-noise token count.

    Args:
        length: tokens in the row (int or scalar int tensor; graph-safe).
        noise_density: fraction of tokens to mark, in ``(0, 1)``.
        mean_noise_span_length: mean tokens per noise span, at least 1.
        seed: shape ``[2]`` int seed (as ``tf.random.stateless_uniform``).

    Example:
        >>> mask = random_spans_noise_mask(20, seed=(1, 2))
        >>> int(tf.reduce_sum(tf.cast(mask, tf.int32))), bool(mask[0]), bool(mask[-1])
        (3, False, True)
    """
    check_noise_settings(noise_density, mean_noise_span_length)
    original_length = tf.cast(length, tf.int32)
    length = tf.maximum(original_length, 2)  # avoid degeneracy, as T5
    num_noise_tokens = tf.cast(tf.round(tf.cast(length, tf.float32) * noise_density), tf.int32)
    num_noise_tokens = tf.minimum(tf.maximum(num_noise_tokens, 1), length - 1)
    num_noise_spans = tf.cast(tf.round(tf.cast(num_noise_tokens, tf.float32) / mean_noise_span_length), tf.int32)
    num_noise_spans = tf.maximum(num_noise_spans, 1)
    num_nonnoise_tokens = length - num_noise_tokens
    num_noise_spans = tf.minimum(num_noise_spans, num_nonnoise_tokens)

    noise_seed, nonnoise_seed = tf.unstack(tf.random.experimental.stateless_split(_as_seed(seed), 2))
    noise_span_lengths = _random_segmentation(num_noise_tokens, num_noise_spans, noise_seed)
    nonnoise_span_lengths = _random_segmentation(num_nonnoise_tokens, num_noise_spans, nonnoise_seed)
    interleaved_span_lengths = tf.reshape(
        tf.stack([nonnoise_span_lengths, noise_span_lengths], axis=1), [num_noise_spans * 2]
    )
    span_starts = tf.cumsum(interleaved_span_lengths)[:-1]
    span_start_indicator = tf.math.unsorted_segment_sum(tf.ones_like(span_starts), span_starts, length)
    span_num = tf.cumsum(span_start_indicator)
    is_noise = tf.equal(span_num % 2, 1)
    return is_noise[:original_length]


def _random_segmentation(num_items, num_segments, seed):
    """Lengths of ``num_segments`` non-empty random segments of ``num_items`` items (T5)."""
    first_in_segment = tf.cast(tf.range(num_items - 1) < num_segments - 1, tf.int32)
    first_in_segment = tf.pad(_stateless_shuffle(first_in_segment, seed), [[1, 0]])
    segment_id = tf.cumsum(first_in_segment)
    return tf.math.segment_sum(tf.ones_like(segment_id), segment_id)


def _stateless_shuffle(values, seed):
    """``values`` in a random order (seqio's ``stateless_shuffle``)."""
    order = tf.argsort(tf.random.stateless_uniform(tf.shape(values), seed=seed))
    return tf.gather(values, order)


def _as_seed(seed) -> tf.Tensor:
    seed = tf.convert_to_tensor(seed)
    if seed.dtype not in (tf.int32, tf.int64):
        raise TypeError(f"seed must be an int32/int64 tensor of shape [2], got dtype {seed.dtype.name}.")
    if seed.shape.rank is not None and seed.shape.as_list() != [2]:
        raise ValueError(f"seed must have shape [2] (as tf.random.stateless_uniform), got {seed.shape}.")
    return tf.cast(seed, tf.int64)


def span_corruption(
    token_ids,
    sentinel_ids: Sequence[int],
    eos_id: int,
    noise_density: float = 0.15,
    mean_noise_span_length: float = 3.0,
    seed=(0, 0),
    noise_mask=None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """``(inputs, targets)`` of one row: noise spans → sentinels in the inputs, sentinel + span in the targets.

    Tokenizer-agnostic: ``sentinel_ids[i]`` replaces the ``i``-th noise span (T5:
    ``t5_sentinel_ids(vocabulary_size, n)``), and ``eos_id`` ends both sequences.

    Args:
        token_ids: 1-D int tokens of the row (no end token).
        sentinel_ids: one id per possible span, in order.
        eos_id: the end-of-sequence id.
        noise_density, mean_noise_span_length, seed: of ``random_spans_noise_mask``.
        noise_mask: a bool mask of the row's length to use instead of drawing one.

    Returns:
        int32 1-D ``inputs`` (non-noise tokens, one sentinel per span, ``eos_id``) and ``targets``
        (per span its sentinel and its tokens, then ``eos_id``).

    Raises:
        ValueError: when called eagerly with more spans than sentinels (in a graph the same check
            is an ``InvalidArgumentError`` with the same message).

    Example:
        >>> mask = tf.constant([False, False, True, True, False, True])
        >>> inputs, targets = span_corruption([5, 6, 7, 8, 9, 10], [99, 98], eos_id=1, noise_mask=mask)
        >>> inputs.numpy().tolist(), targets.numpy().tolist()
        ([5, 6, 99, 9, 98, 1], [99, 7, 8, 98, 10, 1])
    """
    token_ids = tf.cast(tf.reshape(tf.convert_to_tensor(token_ids), [-1]), tf.int32)
    sentinel_ids = tf.constant(list(sentinel_ids), tf.int32, shape=[len(sentinel_ids)])
    if noise_mask is None:
        noise_mask = random_spans_noise_mask(tf.size(token_ids), noise_density, mean_noise_span_length, seed)
    noise = tf.cast(noise_mask, tf.bool)
    previous_is_noise = tf.pad(noise, [[1, 0]])[:-1]  # (also right for an empty row)
    first_noise = tf.logical_and(noise, tf.logical_not(previous_is_noise))
    subsequent_noise = tf.logical_and(noise, previous_is_noise)
    span_index = tf.cumsum(tf.cast(first_noise, tf.int32)) - 1
    num_spans = tf.reduce_sum(tf.cast(first_noise, tf.int32))
    _check_enough_sentinels(num_spans, sentinel_ids)
    if sentinel_ids.shape[0] == 0:
        sentinels = tf.zeros_like(token_ids)  # unused: a row with a span was refused above
    else:
        sentinels = tf.gather(sentinel_ids, tf.clip_by_value(span_index, 0, sentinel_ids.shape[0] - 1))

    eos = tf.constant([int(eos_id)], tf.int32)
    inputs = tf.boolean_mask(tf.where(first_noise, sentinels, token_ids), tf.logical_not(subsequent_noise))
    pairs = tf.reshape(tf.stack([sentinels, token_ids], axis=1), [-1])
    keep = tf.reshape(tf.stack([first_noise, noise], axis=1), [-1])
    targets = tf.boolean_mask(pairs, keep)
    return tf.concat([inputs, eos], 0), tf.concat([targets, eos], 0)


def _check_enough_sentinels(num_spans, sentinel_ids) -> None:
    available = int(sentinel_ids.shape[0])
    message = (f"span_corruption: the row has more noise spans than the {available} sentinel ids given; pass more "
               "sentinel_ids (one per span) or use shorter rows.")
    if tf.executing_eagerly():
        if int(num_spans) > available:
            raise ValueError(message + f" (spans: {int(num_spans)})")
        return
    tf.debugging.assert_less_equal(num_spans, available, message=message)


# --- batches ----------------------------------------------------------------------------------------------


def span_corruption_dataset(
    documents: tf.data.Dataset,
    tokenizer_or_fn,
    *,
    inputs_length: int,
    targets_length: int | None = None,
    batch_size: int = 32,
    seed: int | None = None,
    noise_density: float = 0.15,
    mean_noise_span_length: float = 3.0,
    sentinel_ids: Sequence[int],
    eos_id: int,
    pad_id: int = 0,
    decoder_start_id: int | None = None,
    shuffle: bool = True,
    drop_remainder: bool = False,
    shuffle_buffer: int = 10_000,
    cache: bool = True,
) -> tf.data.Dataset:
    """Span-corruption batches ``(features, labels, sample_weight)`` for an ``EncoderDecoder``, as T5 pretrains.

    Documents are tokenized, concatenated into one token stream (no separator, as T5's
    ``reduce_concat_tokens``) and cut into rows of ``span_corruption_lengths(inputs_length, ...)[0]``
    raw tokens, so every corrupted input fills ``inputs_length`` (only the stream's last row is
    shorter and padded); each row is corrupted with a fresh stateless seed (redrawn every pass when
    ``shuffle``). Several rows are not packed into one with segment ids: the encoder-decoder takes
    no segment masks, and full-length rows leave nothing to pack.

    Args:
        documents: strings, or dicts with a ``"text"`` string (``keras_lm.data.load``).
        tokenizer_or_fn: string scalar → 1-D int ids, graph-safe: a keras-hub tokenizer
            (``keras_hub.tokenizers.SentencePieceTokenizer``), a ``keras_lm.tokenizers`` tokenizer, or
            any function of TensorFlow ops. It must not add an end token itself.
        inputs_length: encoder tokens per row (T5: 512).
        targets_length: decoder tokens per row; default (and minimum) what T5's
            ``random_spans_helper`` computes for ``inputs_length`` (T5: 114).
        batch_size: rows per batch.
        seed: makes shuffling and corruption reproducible; None draws one from NumPy.
        noise_density: fraction of corrupted tokens (T5: 0.15).
        mean_noise_span_length: mean corrupted span length (T5: 3.0).
        sentinel_ids: one id per span, in order (T5: ``t5_sentinel_ids(vocabulary_size, n)``); at
            least as many as a row has spans.
        eos_id: end-of-sequence id appended to inputs and targets (T5: 1).
        pad_id: padding id (T5: 0).
        decoder_start_id: first decoder input token; default ``pad_id`` (as T5).
        shuffle: shuffle documents and rows and redraw the corruption every pass; False: one fixed
            order and fixed corruption on every pass (for evaluation).
        drop_remainder: drop a last partial batch (static batch shapes).
        shuffle_buffer: rows shuffled at once.
        cache: keep the tokenized corpus in memory after the first pass.

    Returns:
        A ``tf.data.Dataset`` of ``(features, labels, sample_weight)``: ``features`` int32
        ``encoder_token_ids`` / ``encoder_padding_mask`` ``[B, inputs_length]`` and
        ``decoder_token_ids`` (targets shifted right after ``decoder_start_id``) /
        ``decoder_padding_mask`` ``[B, targets_length]``; ``labels`` int32 targets and
        ``sample_weight`` float32 (1 on real target tokens) ``[B, targets_length]``.

    Raises:
        ValueError: bad noise settings, ``inputs_length``/``targets_length`` too short, fewer
            sentinels than spans per row, or a corpus without text.

    Example:
        >>> import keras_hub, keras_lm
        >>> works = keras_lm.data.load("shakespeare", split="validation")
        >>> tokenizer = keras_hub.tokenizers.ByteTokenizer()
        >>> batches = span_corruption_dataset(works, tokenizer, inputs_length=64, batch_size=4, seed=1,
        ...                                   sentinel_ids=t5_sentinel_ids(356, 100), eos_id=256)
        >>> features, labels, weights = next(iter(batches))
        >>> features["encoder_token_ids"].shape, labels.shape
        (TensorShape([4, 64]), TensorShape([4, 14]))
    """
    tokens_length, needed_targets_length = span_corruption_lengths(inputs_length, noise_density,
                                                                   mean_noise_span_length)
    inputs_length = int(inputs_length)
    targets_length = needed_targets_length if targets_length is None else int(targets_length)
    _check_row_lengths(tokens_length, inputs_length, targets_length, noise_density, mean_noise_span_length)
    sentinel_ids = [int(i) for i in sentinel_ids]
    _, max_spans = noise_counts(tokens_length, noise_density, mean_noise_span_length)
    if len(sentinel_ids) < max_spans:
        raise ValueError(
            f"Rows of {tokens_length} tokens have {max_spans} noise spans but only {len(sentinel_ids)} sentinel "
            f"ids were given; pass at least {max_spans} (e.g. t5_sentinel_ids(vocabulary_size, {max_spans}))."
        )
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    decoder_start_id = int(pad_id if decoder_start_id is None else decoder_start_id)
    seed = int(np.random.randint(0, 2**31 - 1)) if seed is None else int(seed)
    document_seed, row_seed, corruption_seed = derive_seeds(seed, 3)

    texts = document_texts(documents).filter(lambda text: tf.strings.length(text) > 0)
    _check_has_text(texts)
    token_streams = texts.map(lambda text: _token_ids(tokenizer_or_fn, text), num_parallel_calls=AUTOTUNE)
    token_streams = token_streams.filter(lambda ids: tf.size(ids) > 0)
    if cache:
        token_streams = token_streams.cache()
    if shuffle:
        token_streams = token_streams.shuffle(DOCUMENT_BUFFER, seed=document_seed, reshuffle_each_iteration=True)
    rows = token_streams.rebatch(tokens_length)  # the concatenated stream, `tokens_length` tokens per row
    if shuffle:
        rows = rows.shuffle(shuffle_buffer, seed=row_seed, reshuffle_each_iteration=True)
    seeds = tf.data.Dataset.random(seed=corruption_seed, rerandomize_each_iteration=shuffle)

    def to_example(row, row_seed):
        inputs, targets = span_corruption(
            row, sentinel_ids, eos_id, noise_density, mean_noise_span_length,
            seed=tf.stack([row_seed, tf.constant(0, tf.int64)]),
        )
        return _padded_example(inputs, targets, inputs_length, targets_length, pad_id, decoder_start_id)

    examples = tf.data.Dataset.zip((rows, seeds)).map(to_example, num_parallel_calls=AUTOTUNE)
    return examples.batch(int(batch_size), drop_remainder=drop_remainder).prefetch(AUTOTUNE)


def _token_ids(tokenizer_or_fn, text):
    ids = tokenizer_or_fn(text)
    if isinstance(ids, tf.RaggedTensor):
        ids = ids.flat_values
    return tf.cast(tf.reshape(ids, [-1]), tf.int32)


def _padded_example(inputs, targets, inputs_length, targets_length, pad_id, decoder_start_id):
    def pad(values, length):
        return tf.ensure_shape(tf.pad(values, [[0, length - tf.size(values)]], constant_values=pad_id), [length])

    def real(values, length):
        return tf.ensure_shape(tf.pad(tf.ones_like(values), [[0, length - tf.size(values)]]), [length])

    decoder_inputs = tf.concat([[decoder_start_id], targets[:-1]], 0)
    features = {
        "encoder_token_ids": pad(inputs, inputs_length),
        "encoder_padding_mask": real(inputs, inputs_length),
        "decoder_token_ids": pad(decoder_inputs, targets_length),
        "decoder_padding_mask": real(targets, targets_length),
    }
    return features, pad(targets, targets_length), tf.cast(real(targets, targets_length), tf.float32)


def _check_row_lengths(tokens_length, inputs_length, targets_length, noise_density, mean_noise_span_length):
    """Every row (the stream's last may be shorter) must fit ``inputs_length`` and ``targets_length``."""
    longest_inputs = longest_targets = 0
    for length in range(1, tokens_length + 1):
        inputs, targets = corrupted_lengths(length, noise_density, mean_noise_span_length)
        longest_inputs, longest_targets = max(longest_inputs, inputs), max(longest_targets, targets)
    if longest_inputs > inputs_length:  # not reached with T5's helper; kept as a guard
        raise ValueError(f"Rows of {tokens_length} tokens corrupt to {longest_inputs} input tokens, more than "
                         f"inputs_length={inputs_length}.")
    if longest_targets > targets_length:
        raise ValueError(
            f"targets_length={targets_length} is too short: rows of {tokens_length} tokens (for inputs_length="
            f"{inputs_length}, noise_density={noise_density}, mean_noise_span_length={mean_noise_span_length}) "
            f"have targets of up to {longest_targets} tokens. Use targets_length >= {longest_targets} or leave it "
            "unset."
        )


def _check_has_text(texts: tf.data.Dataset) -> None:
    for _ in texts.take(1):
        return
    raise ValueError("The corpus is empty: it has no document with any text.")
