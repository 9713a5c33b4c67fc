"""Translation serving SavedModels for sequence-to-sequence LMs: source text (``tf.string``) in, target text out.

Signatures (every input is required, the way TF Serving expects):

- ``serving_default``: ``sources`` tf.string ``[batch]``; decodes at most the exported
  ``max_new_tokens`` per source.
- ``generate``: ``sources`` and ``max_new_tokens`` (int32 scalar in ``[1, exported max_new_tokens]``;
  anything else is an ``InvalidArgument`` error naming it).

Both return ``text`` tf.string ``[batch]`` (the translation: special tokens dropped, valid UTF-8),
``token_ids`` int32 ``[batch, max_new_tokens]`` (the new tokens, the end token included, 0 after
``length``) and ``length`` int32 ``[batch]``.

The whole request runs in the graph: tokenize, keep the first ``source_length`` tokens (ending
with the end token when the model was trained with ``source_end_token``), encode once, decode
with beam search (``num_beams > 1``, GNMT ``length_penalty``) or greedily (``num_beams == 1``),
as chosen at export, then detokenize. The decoding loop is ``Seq2SeqLM.decode_tokens`` (the one
``Seq2SeqLM.generate`` runs), as a plain ``tf.while_loop`` without XLA, so any TF Serving build
runs it; sources are padded the way ``generate`` pads them (batch and source width rounded up to
powers of two, extra rows repeating the first source), so the answers are ``generate``'s.

Hostile requests get answers: a source with no tokens (``""``, only spaces) gets ``""`` (length
0), a long one is truncated to ``source_length`` tokens, invalid UTF-8 is replaced by U+FFFD and a
batch of 0 gets empty outputs.
"""
from __future__ import annotations

import keras
import keras_hub
import tensorflow as tf

from keras_lm.export.files import atomic_directory
from keras_lm.tasks.task import check_tokenizer_fits
from keras_lm.values import is_integer, is_number

EXPORT_KIND = "seq2seq"
#: ``generate`` pads its sources to at least this many positions and its targets to at least this many.
MIN_BUCKET = 16
STOP_SLOTS = 4


def _power_of_two_at_least(n, minimum: int = 1):
    """The smallest power of two ``>= max(n, minimum)`` of a scalar int32 tensor (``_bucket`` in the graph)."""
    powers = tf.bitwise.left_shift(1, tf.range(31))
    return tf.reduce_min(tf.boolean_mask(powers, powers >= tf.maximum(n, minimum)))


def _static_bucket(n: int, minimum: int = 1) -> int:
    n = max(int(n), minimum, 1)
    return 1 << (n - 1).bit_length()


class _Translation:
    """The in-graph decoding of one Seq2SeqLM: sources -> padded ids -> decoding loop -> text."""

    def __init__(self, seq2seq_lm, num_beams: int, length_penalty: float, max_new_tokens: int):
        self.lm = seq2seq_lm
        self.tokenizer = seq2seq_lm.tokenizer
        self.num_beams = None if num_beams == 1 else num_beams
        self.sampler = keras_hub.samplers.GreedySampler() if num_beams == 1 else None
        self.length_penalty = float(length_penalty)
        self.max_new_tokens = int(max_new_tokens)
        self.buffer_length = _static_bucket(max_new_tokens, MIN_BUCKET)
        stops = [] if seq2seq_lm.end_token_id is None else [seq2seq_lm.end_token_id]
        self.stop_token_ids = stops + [-1] * (STOP_SLOTS - len(stops))

    def _source_ids(self, sources) -> tf.RaggedTensor:
        """Ragged ``[batch, None]`` int32 ids, truncated (and ended) as ``Seq2SeqLM.generate`` does."""
        ids = self.tokenizer(sources)
        if not isinstance(ids, tf.RaggedTensor):
            ids = tf.RaggedTensor.from_tensor(ids, padding=0)
        ids = tf.cast(ids, tf.int32)
        length = self.lm.source_length
        if not self.lm.source_end_token:
            return ids[:, :length]
        end = tf.fill(tf.stack([ids.nrows(), 1]), tf.constant(self.lm.end_token_id, tf.int32))
        return tf.concat([ids[:, : length - 1], tf.RaggedTensor.from_tensor(end)], axis=1)

    def _padded_batch(self, ids: tf.RaggedTensor):
        """``(source_ids, source_mask)`` ``[bucket(batch), bucket(longest, 16)]``, as ``generate`` pads them.

        A source with no tokens decodes a one-token placeholder (its answer is dropped); rows past
        the batch repeat the first source (or the placeholder when the batch is empty).
        """
        count = tf.cast(ids.nrows(), tf.int32)
        empty = tf.equal(ids.row_lengths(), 0)
        placeholders = tf.RaggedTensor.from_row_lengths(
            tf.zeros([tf.reduce_sum(tf.cast(empty, tf.int32))], tf.int32), tf.cast(empty, ids.row_splits.dtype))
        ids = tf.concat([tf.concat([ids, placeholders], axis=1),
                         tf.RaggedTensor.from_tensor(tf.zeros([1, 1], tf.int32))], axis=0)
        batch = _power_of_two_at_least(count)
        filler = tf.where(count > 0, 0, count)  # the first source, or the appended placeholder row
        rows = tf.concat([tf.range(count), tf.fill([batch - count], filler)], axis=0)
        ids = tf.gather(ids, rows)
        lengths = tf.cast(ids.row_lengths(), tf.int32)
        width = _power_of_two_at_least(tf.reduce_max(lengths), MIN_BUCKET)
        source_ids = ids.to_tensor(default_value=0, shape=tf.cast(tf.stack([batch, width]), tf.int64))
        return source_ids, tf.sequence_mask(lengths, width, dtype=tf.int32), empty

    def __call__(self, sources, max_new_tokens):
        sources = tf.reshape(sources, [-1])
        ids = self._source_ids(sources)
        count = tf.cast(ids.nrows(), tf.int32)
        source_ids, source_mask, empty = self._padded_batch(ids)
        buffer = tf.zeros(tf.stack([tf.shape(source_ids)[0], self.buffer_length + 1]), tf.int32)
        buffer.set_shape([None, self.buffer_length + 1])
        stop_token_ids = tf.constant(self.stop_token_ids, tf.int32)
        tokens = self.lm.decode_tokens(source_ids, source_mask, buffer, max_new_tokens, stop_token_ids,
                                       num_beams=self.num_beams, sampler=self.sampler,
                                       length_penalty=tf.constant(self.length_penalty, tf.float32))
        new = tokens[:count, 1:]
        new = new[:, : max_new_tokens] if isinstance(max_new_tokens, int) else tf.slice(
            new, [0, 0], tf.stack([count, max_new_tokens]))
        is_stop = tf.reduce_any(tf.equal(new[:, :, None], stop_token_ids[None, None, :]), axis=-1)
        after_stop = tf.cumsum(tf.cast(is_stop, tf.int32), axis=1, exclusive=True) > 0
        kept = tf.logical_and(tf.logical_not(after_stop), tf.logical_not(empty)[:, None])
        new = tf.where(kept, new, tf.zeros_like(new))
        text_mask = tf.logical_and(kept, tf.logical_not(is_stop))
        text = self.tokenizer.detokenize(tf.ragged.boolean_mask(new, text_mask))
        text = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD)
        return {"text": tf.reshape(text, [-1]), "token_ids": new,
                "length": tf.reduce_sum(tf.cast(kept, tf.int32), axis=1)}


def _check_options(seq2seq_lm, num_beams, length_penalty, max_new_tokens) -> int:
    """One ValueError naming the first export option that cannot work; returns ``max_new_tokens``."""
    if seq2seq_lm.tokenizer is None:
        raise ValueError("Seq2seq serving takes raw text and needs a tokenizer: Seq2SeqLM(backbone, tokenizer, ...).")
    check_tokenizer_fits(seq2seq_lm.backbone, seq2seq_lm.tokenizer)
    if not is_integer(num_beams) or num_beams < 1:
        raise ValueError(f"num_beams must be an integer >= 1 (1 is greedy decoding), got {num_beams!r}.")
    if not is_number(length_penalty) or length_penalty != length_penalty or abs(length_penalty) == float("inf"):
        raise ValueError(f"length_penalty must be a finite number, got {length_penalty!r}.")
    max_new_tokens = seq2seq_lm.target_length if max_new_tokens is None else max_new_tokens
    if not is_integer(max_new_tokens) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}.")
    return int(max_new_tokens)


def seq2seq_serving(seq2seq_lm, directory: str, overwrite: bool = False, protected=(), num_beams: int = 4,
                    length_penalty: float = 0.6, max_new_tokens: int | None = None) -> str:
    """Exports a ``keras_lm.tasks.Seq2SeqLM`` (with a tokenizer) as a translation serving SavedModel.

    See this module's docstring for the signatures. The answers equal
    ``seq2seq_lm.generate(sources, max_new_tokens, sampler="beam", num_beams=num_beams,
    length_penalty=length_penalty)`` (``sampler="greedy"`` when ``num_beams == 1``).
    ``overwrite`` replaces only a previous seq2seq export, and never a folder holding one of the
    ``protected`` paths (e.g. the source ``.keras`` file); see ``keras_lm.export.files``. Loading
    needs ``import tensorflow_text`` in the loading process (the tokenizer's ops).

    Args:
        seq2seq_lm: the model, with its tokenizer.
        directory: the export folder (it must not exist unless ``overwrite``).
        num_beams: beams of beam search; 1 decodes greedily.
        length_penalty: the GNMT exponent ``alpha`` of beam search.
        max_new_tokens: the longest translation (tokens); defaults to the model's ``target_length``.

    Example:
        >>> keras_lm.export.serving(seq2seq_lm, "serving/translate/1")  # doctest: +SKIP
        >>> served = tf.saved_model.load("serving/translate/1")  # doctest: +SKIP
        >>> served.signatures["serving_default"](sources=tf.constant(["In the beginning"]))["text"]  # doctest: +SKIP
    """
    max_new_tokens = _check_options(seq2seq_lm, num_beams, length_penalty, max_new_tokens)
    if isinstance(seq2seq_lm.tokenizer, keras.layers.Layer) and not seq2seq_lm.tokenizer.built:
        seq2seq_lm.tokenizer(tf.constant(["built"]))  # a tokenizer not called yet (the export tracks built layers)
    translation = _Translation(seq2seq_lm, int(num_beams), float(length_penalty), max_new_tokens)

    def serve(sources):
        return translation(sources, max_new_tokens)

    def generate(sources, max_new_tokens_tensor):
        checks = [
            tf.debugging.Assert(
                tf.logical_and(max_new_tokens_tensor >= 1, max_new_tokens_tensor <= max_new_tokens),
                [f"max_new_tokens must be in [1, {max_new_tokens}] (the exported maximum); got",
                 max_new_tokens_tensor],
            )
        ]
        with tf.control_dependencies(checks):
            return translation(sources, tf.identity(max_new_tokens_tensor))

    sources = tf.TensorSpec([None], tf.string, name="sources")
    decoding = "greedy decoding" if num_beams == 1 else f"beam search ({num_beams} beams)"
    print(f"[export] writing seq2seq serving SavedModel ({decoding}) to {directory}")
    with atomic_directory(directory, overwrite, kind=EXPORT_KIND, protected=protected) as staging:
        archive = keras.export.ExportArchive()
        archive.track(seq2seq_lm)
        archive.track(seq2seq_lm.tokenizer)
        archive.add_endpoint("serve", serve, input_signature=[sources])
        archive.add_endpoint("generate", generate,
                             input_signature=[sources, tf.TensorSpec([], tf.int32, name="max_new_tokens")])
        archive.write_out(staging, verbose=False)
    return directory
