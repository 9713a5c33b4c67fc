"""Generation serving SavedModels for causal LMs: prompts (``tf.string``) in, generated text out.

Signatures (every input is required, the way TF Serving expects; variants are separate signatures):

- ``serving_default`` (greedy): ``prompts`` tf.string ``[batch]``, ``max_new_tokens`` int32 scalar.
- ``sample``: the same plus ``temperature`` float32, ``top_k`` int32, ``top_p`` float32 and ``seed``
  int64 scalars. ``temperature == 0`` is greedy, ``top_k == 0`` and ``top_p == 1`` turn those
  filters off (top-k applies first, then the nucleus of the renormalized top-k distribution); the
  same seed gives the same text. A temperature that is negative or not finite, a negative
  ``top_k`` or a ``top_p`` outside ``(0, 1]`` is an ``InvalidArgument`` error naming it.

Both return ``text`` tf.string ``[batch]`` (the continuation only, valid UTF-8, stop token
dropped), ``token_ids`` int32 ``[batch, max_new_tokens]`` (the new tokens, stop token included,
0 after ``length``) and ``length`` int32 ``[batch]``.

The decoding loop is ``keras_lm.tasks.causal_lm.decode_tokens`` (the one ``CausalLM.generate``
runs) as a plain ``tf.while_loop`` with the KV cache, without XLA, so any TF Serving build runs it.
Prompts are handled as ``generate`` handles them: a prompt longer than the context left for the
new tokens keeps its most recent tokens, an empty prompt starts from the start token (or the
end-of-text token), invalid UTF-8 is replaced, and ids past the tokenizer's vocabulary (a
backbone with a padded vocabulary) are never generated. ``max_new_tokens`` outside
``[0, context)`` is an ``InvalidArgument`` error naming it.

``weight_dtype="bfloat16"`` or ``"int8"`` exports a low-precision copy of the backbone instead of
its float32 weights (see ``keras_lm.tasks.quantized_decoding``); the SavedModel then holds only
those weights. Without XLA, bfloat16 runs oneDNN's bfloat16 matmuls, while int8 runs TensorFlow's
Eigen int8 matmul (slower than float32 on CPU): int8 halves the model's size, not its latency.
"""
from __future__ import annotations

import keras
import keras_hub
import tensorflow as tf

from keras_lm.export.files import atomic_directory
from keras_lm.tasks.causal_lm import decode_tokens, sampler_next_token
from keras_lm.tasks.quantized_decoding import check_weight_dtype, decoding_backbone
from keras_lm.tasks.task import check_tokenizer_fits, tokenizer_vocabulary_size

STOP_SLOTS = 4


def _start_token(causal_lm) -> int | None:
    """The token an empty prompt starts from: the start token, else the end-of-text token."""
    start = causal_lm._start_token()
    if start is None:
        start = getattr(causal_lm.tokenizer, "end_token_id", None)
    return None if start is None else int(start)


def _stop_token_ids(causal_lm) -> list[int]:
    end = getattr(causal_lm.tokenizer, "end_token_id", None)
    return [] if end is None else [int(end)]


def _keep_last(ids: tf.RaggedTensor, keep) -> tf.RaggedTensor:
    """The last ``keep`` tokens of every row of a ragged ``[batch, None]`` tensor."""
    starts, limits = ids.row_starts(), ids.row_limits()
    starts = tf.maximum(starts, limits - tf.cast(keep, limits.dtype))
    positions = tf.ragged.range(starts, limits)
    return tf.RaggedTensor.from_row_splits(tf.gather(ids.flat_values, positions.flat_values), positions.row_splits)


def _new_tokens_and_lengths(tokens, lengths, max_new_tokens, stop_token_ids):
    """New tokens ``[B, max_new_tokens]`` (0 after a row's end), lengths, and a mask of text tokens."""
    offsets = lengths[:, None] + tf.range(max_new_tokens)[None, :]
    new = tf.gather(tokens, offsets, batch_dims=1)
    is_stop = tf.reduce_any(tf.equal(new[:, :, None], stop_token_ids[None, None, :]), axis=-1)
    after_stop = tf.cumsum(tf.cast(is_stop, tf.int32), axis=1, exclusive=True) > 0
    kept = tf.logical_not(after_stop)
    new = tf.where(kept, new, tf.zeros_like(new))
    return new, tf.reduce_sum(tf.cast(kept, tf.int32), axis=1), tf.logical_and(kept, tf.logical_not(is_stop))


def check_sampling(temperature, top_k, top_p):
    """In-graph checks of the ``sample`` scalars: an ``InvalidArgumentError`` naming a bad one."""
    return [
        tf.debugging.Assert(
            tf.logical_and(tf.math.is_finite(temperature), temperature >= 0.0),
            ["temperature must be a finite number >= 0 (0 is greedy); got", temperature],
        ),
        tf.debugging.Assert(top_k >= 0, ["top_k must be >= 0 (0 keeps every token); got", top_k]),
        tf.debugging.Assert(
            tf.logical_and(top_p > 0.0, top_p <= 1.0),
            ["top_p must be > 0 and <= 1 (1 keeps every token); got", top_p],
        ),
    ]


def sample_next_token(temperature, top_k, top_p, seed):
    """``next_token(logits, index)``: temperature, top-k and top-p sampling from scalar tensors.

    Stateless: the draw at position ``index`` uses the seed ``(seed, index)``, so a request is
    reproducible. ``temperature <= 0`` picks the most likely token.
    """

    def next_token(logits, index):
        logits = tf.cast(logits, tf.float32)
        vocabulary = tf.shape(logits)[-1]
        greedy = tf.argmax(logits, axis=-1, output_type=tf.int32)
        scaled = logits / tf.maximum(temperature, 1e-6)
        minus_infinity = tf.fill(tf.shape(scaled), float("-inf"))
        k = tf.where(top_k > 0, tf.minimum(top_k, vocabulary), vocabulary)
        kth_largest = tf.math.top_k(scaled, k=k, sorted=True).values[:, -1:]
        scaled = tf.where(scaled < kth_largest, minus_infinity, scaled)
        # Nucleus: keep the most likely tokens whose preceding cumulative probability is < top_p.
        ordered = tf.sort(scaled, axis=-1, direction="DESCENDING")
        before = tf.cumsum(tf.nn.softmax(ordered, axis=-1), axis=-1, exclusive=True)
        keep = tf.maximum(tf.reduce_sum(tf.cast(before < top_p, tf.int32), axis=-1), 1)
        keep = tf.where(top_p >= 1.0, vocabulary, keep)
        threshold = tf.gather(ordered, keep[:, None] - 1, batch_dims=1)
        scaled = tf.where(scaled < threshold, minus_infinity, scaled)
        seeds = tf.stack([tf.cast(seed, tf.int64), tf.cast(index, tf.int64)])
        sampled = tf.random.stateless_categorical(scaled, 1, seed=seeds, dtype=tf.int32)[:, 0]
        return tf.where(temperature > 0.0, sampled, greedy)

    return next_token


class _Generation:
    """The in-graph generation of one CausalLM: prompts -> padded ids -> decoding loop -> text."""

    def __init__(self, causal_lm, backbone=None):
        self.causal_lm = causal_lm
        self.backbone = causal_lm.backbone if backbone is None else backbone
        self.tokenizer = causal_lm.tokenizer
        self.context = int(self.backbone.max_sequence_length)
        self.start_token = _start_token(causal_lm)
        stops = _stop_token_ids(causal_lm)
        self.stop_token_ids = stops + [-1] * (STOP_SLOTS - len(stops))
        self.vocabulary_size = tokenizer_vocabulary_size(self.tokenizer)

    def _check_max_new_tokens(self, max_new_tokens):
        return tf.debugging.assert_less(
            max_new_tokens, self.context,
            message=f"max_new_tokens must be in [0, {self.context}) (the context is {self.context} tokens)",
        ), tf.debugging.assert_non_negative(max_new_tokens, message="max_new_tokens must be >= 0")

    def _prompt_ids(self, prompts, max_new_tokens) -> tf.RaggedTensor:
        ids = self.tokenizer(prompts)
        if not isinstance(ids, tf.RaggedTensor):
            ids = tf.RaggedTensor.from_tensor(ids, padding=0)
        ids = tf.cast(ids, tf.int32)
        empty = tf.equal(ids.row_lengths(), 0)
        if self.start_token is None:
            check = tf.debugging.Assert(
                tf.logical_not(tf.reduce_any(empty)),
                ["Empty prompt: this model has no start or end-of-text token to condition on."],
            )
            with tf.control_dependencies([check]):
                ids = tf.identity(ids)
        else:
            starts = tf.RaggedTensor.from_row_lengths(
                tf.fill([tf.reduce_sum(tf.cast(empty, tf.int32))], tf.constant(self.start_token, tf.int32)),
                tf.cast(empty, ids.row_splits.dtype),
            )
            ids = tf.concat([starts, ids], axis=1)
        return _keep_last(ids, self.context - max_new_tokens)

    def __call__(self, prompts, max_new_tokens, next_token):
        prompts = tf.reshape(prompts, [-1])
        max_new_tokens = tf.cast(max_new_tokens, tf.int32)
        with tf.control_dependencies(self._check_max_new_tokens(max_new_tokens)):
            max_new_tokens = tf.identity(max_new_tokens)
        ids = self._prompt_ids(prompts, max_new_tokens)
        lengths = tf.cast(ids.row_lengths(), tf.int32)
        longest = tf.reduce_max(tf.concat([lengths, [1]], axis=0))  # a batch of 0 still has shapes
        shortest = tf.reduce_min(tf.concat([lengths, [longest]], axis=0))
        total = longest + max_new_tokens
        token_ids = ids.to_tensor(default_value=0, shape=tf.stack([tf.shape(lengths, out_type=tf.int64)[0],
                                                                    tf.cast(total, tf.int64)]))
        prompt_mask = tf.sequence_mask(lengths, total)
        stop_token_ids = tf.constant(self.stop_token_ids, tf.int32)
        tokens = decode_tokens(self.backbone, next_token, token_ids, prompt_mask, shortest, total,
                               stop_token_ids, shortest, self.vocabulary_size)
        new, length, text_mask = _new_tokens_and_lengths(tokens, lengths, max_new_tokens, stop_token_ids)
        text = self.tokenizer.detokenize(tf.ragged.boolean_mask(new, text_mask))
        text = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD)
        return {"text": text, "token_ids": new, "length": length}


def generation_serving(causal_lm, directory: str, overwrite: bool = False, protected=(),
                       weight_dtype: str = "float32") -> str:
    """Exports a ``keras_lm.tasks.CausalLM`` (with a tokenizer) as a generation serving SavedModel.

    ``overwrite`` replaces only a previous generation export, and never a folder holding one of the
    ``protected`` paths (e.g. the source ``.keras`` file); see ``keras_lm.export.files``.
    See this module's docstring for the signatures. Loading needs ``import tensorflow_text`` in
    the loading process when the tokenizer uses its ops (``keras_lm.tokenizers.BytePair`` does).
    ``weight_dtype`` (``"float32"``, ``"bfloat16"`` or ``"int8"``) is the precision of the
    exported weights, as in ``CausalLM.generate``.

    Example:
        >>> keras_lm.export.serving(causal_lm, "serving/gpt/1")  # doctest: +SKIP
        >>> served = tf.saved_model.load("serving/gpt/1")  # doctest: +SKIP
        >>> served.signatures["serving_default"](prompts=tf.constant(["To be"]),
        ...                                      max_new_tokens=tf.constant(16))["text"]  # doctest: +SKIP
    """
    if causal_lm.tokenizer is None:
        raise ValueError(
            "Generation serving takes raw text and needs a tokenizer: CausalLM(backbone, tokenizer)."
        )
    check_tokenizer_fits(causal_lm.backbone, causal_lm.tokenizer)  # also a tokenizer attached later
    backbone = decoding_backbone(causal_lm.backbone, check_weight_dtype(weight_dtype))
    generation = _Generation(causal_lm, backbone)
    greedy = sampler_next_token(keras_hub.samplers.GreedySampler())

    def serve(prompts, max_new_tokens):
        return generation(prompts, max_new_tokens, greedy)

    def sample(prompts, max_new_tokens, temperature, top_k, top_p, seed):
        with tf.control_dependencies(check_sampling(temperature, top_k, top_p)):
            temperature, top_k, top_p = tf.identity(temperature), tf.identity(top_k), tf.identity(top_p)
        return generation(prompts, max_new_tokens, sample_next_token(temperature, top_k, top_p, seed))

    prompts = tf.TensorSpec([None], tf.string, name="prompts")
    max_new_tokens = tf.TensorSpec([], tf.int32, name="max_new_tokens")
    print(f"[export] writing generation serving SavedModel to {directory}")
    with atomic_directory(directory, overwrite, kind="generation", protected=protected) as staging:
        archive = keras.export.ExportArchive()
        archive.track(causal_lm if backbone is causal_lm.backbone else backbone)
        archive.track(causal_lm.tokenizer)
        archive.add_endpoint("serve", serve, input_signature=[prompts, max_new_tokens])
        archive.add_endpoint(
            "sample",
            sample,
            input_signature=[
                prompts,
                max_new_tokens,
                tf.TensorSpec([], tf.float32, name="temperature"),
                tf.TensorSpec([], tf.int32, name="top_k"),
                tf.TensorSpec([], tf.float32, name="top_p"),
                tf.TensorSpec([], tf.int64, name="seed"),
            ],
        )
        archive.write_out(staging, verbose=False)
    return directory
