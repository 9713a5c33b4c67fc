"""Fine-tuning batches for a causal LM from (prompt, completion) pairs, loss optionally on the completion only.

Each example becomes ``prompt tokens + completion tokens + end-of-text``, cut to ``sequence_length + 1``
tokens (the end is dropped first) and right-padded; ``inputs = row[:-1]``, ``labels = row[1:]``.
``sample_weight`` is 1 for every real label, except, with ``mask_prompt=True``, labels that are
still prompt tokens: the model is then trained to produce the completion, not to reproduce the
prompt. Example (prompt ``p1 p2``, completion ``c1``, end ``E``, ``sequence_length=4``)::

    token_ids     [p1 p2 c1 E ]        labels        [p2 c1 E  _ ]
    sample_weight [0  1  1  0 ]        (mask_prompt=True; [1 1 1 0] otherwise)
"""
from __future__ import annotations

import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE


def _pairs(dataset: tf.data.Dataset) -> tf.data.Dataset:
    spec = dataset.element_spec
    if isinstance(spec, dict):
        missing = {"prompt", "completion"} - set(spec)
        if missing:
            raise ValueError(f"Prompt/completion examples need keys 'prompt' and 'completion'; missing {sorted(missing)}.")
        return dataset.map(lambda example: (example["prompt"], example["completion"]))
    if isinstance(spec, tuple) and len(spec) == 2:
        return dataset
    raise ValueError("Expected a dataset of (prompt, completion) string pairs or dicts with 'prompt' and 'completion'.")


def prompt_completion_dataset(
    dataset: tf.data.Dataset,
    tokenizer,
    sequence_length: int,
    batch_size: int = 16,
    mask_prompt: bool = True,
    end_token_id: int | None = None,
    shuffle: bool = True,
    seed: int | None = None,
    shuffle_buffer: int = 10_000,
) -> tf.data.Dataset:
    """Batches ``({"token_ids", "padding_mask"}, labels, sample_weight)`` for ``CausalLM.fit``.

    Args:
        dataset: unbatched ``(prompt, completion)`` string pairs, or dicts with ``"prompt"`` and
            ``"completion"``. The completion is appended as is (include a leading space or newline
            if the tokenizer needs one).
        tokenizer: maps a batch of strings to ragged token ids (``keras_lm.tokenizers.BytePair``,
            keras-hub tokenizers).
        sequence_length: tokens per row.
        mask_prompt: give prompt labels weight 0 (train on the completion only).
        end_token_id: appended after the completion; defaults to the tokenizer's ``end_token_id``
            (None and no such attribute: nothing is appended).

    Example:
        >>> import keras_hub, tensorflow as tf
        >>> pairs = tf.data.Dataset.from_tensor_slices((["ab"], ["c"]))
        >>> x, y, w = next(iter(prompt_completion_dataset(pairs, keras_hub.tokenizers.ByteTokenizer(),
        ...                                               sequence_length=4, end_token_id=0, shuffle=False)))
        >>> x["token_ids"].numpy().tolist(), y.numpy().tolist(), w.numpy().tolist()
        ([[97, 98, 99, 0]], [[98, 99, 0, 0]], [[0.0, 1.0, 1.0, 0.0]])
    """
    if sequence_length < 1:
        raise ValueError(f"`sequence_length` must be positive, got {sequence_length}.")
    if end_token_id is None:
        end_token_id = getattr(tokenizer, "end_token_id", None)
    dataset = _pairs(dataset)
    if shuffle:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed)

    def encode(prompts, completions):
        prompt_ids = tf.cast(tokenizer(prompts), tf.int32)
        completion_ids = tf.cast(tokenizer(completions), tf.int32)
        parts = [prompt_ids, completion_ids]
        if end_token_id is not None:
            ends = tf.fill([tf.shape(prompts)[0], 1], tf.constant(end_token_id, tf.int32))
            parts.append(tf.RaggedTensor.from_tensor(ends))
        rows = tf.concat(parts, axis=1)[:, : sequence_length + 1]
        row_lengths = rows.row_lengths()
        prompt_lengths = tf.minimum(prompt_ids.row_lengths(), row_lengths)
        dense = rows.to_tensor(default_value=0, shape=[None, sequence_length + 1])
        positions = tf.range(sequence_length, dtype=row_lengths.dtype)[None, :]
        is_label = positions + 1 < row_lengths[:, None]  # a real token follows this position
        if mask_prompt:
            is_label = tf.logical_and(is_label, positions + 1 >= prompt_lengths[:, None])
        features = {
            "token_ids": dense[:, :-1],
            "padding_mask": tf.cast(positions < row_lengths[:, None], tf.int32),
        }
        return features, dense[:, 1:], tf.cast(is_label, tf.float32)

    return dataset.batch(batch_size).map(encode, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)
