"""Sequence-to-sequence language modelling on an encoder-decoder backbone: fit on text pairs, generate.

Training is teacher forcing: the decoder reads ``[start] + target`` and predicts ``target + [end]``
under a masked (optionally label-smoothed) cross-entropy. Generation runs the encoder once per
request (the cross-attention keys/values of every decoder layer are computed once), then one
token per step through the decoder's self-attention cache, all inside one ``tf.function``
(XLA-compiled by default). The batch size, the longest source and ``max_new_tokens`` are padded to
powers of two (sources and new tokens at least 16) and the number of new tokens, the stop tokens
and the length penalty are tensors, so calls whose shapes fall in the same buckets reuse one
traced function.
"""
from __future__ import annotations

import math

import keras
import keras_hub
import numpy as np
import tensorflow as tf
from keras import ops

from keras_lm.tasks.beam_search import beam_search
from keras_lm.tasks.causal_lm import (
    SAMPLER_ALIASES,
    _bucket,
    _is_string,
    _to_lists,
    check_sampler,
    default_jit_compile,
    generation_vocabulary_size,
    restrict_to_vocabulary,
    sampler_next_token,
)
from keras_lm.tasks.task import Task, check_not_empty, check_tokenizer_fits
from keras_lm.training.saving import RecompiledOnLoad
from keras_lm.values import is_integer, is_number

_MIN_BUCKET = 16
#: Trimmed training batches keep a width that is a multiple of this (few distinct shapes).
_WIDTH_MULTIPLE = 16
INPUT_NAMES = ("encoder_token_ids", "encoder_padding_mask", "decoder_token_ids", "decoder_padding_mask")


@keras.saving.register_keras_serializable(package="keras_lm")
class SmoothedSparseCrossEntropy(keras.losses.Loss):
    """Sparse cross-entropy from logits with label smoothing, in float32, averaged over weighted tokens.

    With smoothing ``e`` the target distribution is ``(1 - e) * one_hot + e / vocabulary``, so the
    loss is ``(1 - e) * nll + e * mean(-log_softmax(logits))``. The default reduction divides by the
    sum of the sample weights: padded tokens (weight 0) neither add to the loss nor dilute it.

    Example:
        >>> import numpy as np
        >>> loss = SmoothedSparseCrossEntropy()
        >>> round(float(loss(np.array([[1, 0]]), np.zeros((1, 2, 4), "float32"), np.array([[1.0, 0.0]]))), 4)
        1.3863
    """

    def __init__(self, label_smoothing: float = 0.0, reduction: str = "mean_with_sample_weight",
                 name: str = "smoothed_sparse_cross_entropy", dtype=None):
        if not is_number(label_smoothing) or not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be a number in [0, 1), got {label_smoothing!r}.")
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        log_probs = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)
        labels = ops.cast(y_true, "int32")
        nll = -ops.squeeze(ops.take_along_axis(log_probs, labels[..., None], axis=-1), axis=-1)
        if not self.label_smoothing:
            return nll
        smooth = -ops.mean(log_probs, axis=-1)
        return (1.0 - self.label_smoothing) * nll + self.label_smoothing * smooth

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def resolve_special_tokens(tokenizer, decoder_start_token_id=None, end_token_id=None) -> tuple:
    """``(decoder_start_token_id, end_token_id)``: the explicit ids, else the tokenizer's.

    Without explicit ids: a tokenizer with T5's layout (``pad_id`` and ``eos_id``, as
    ``keras_lm`` SentencePiece, or a keras-hub tokenizer whose start token is its end token, as
    ``T5Tokenizer``) starts from the padding id and ends at its end-of-sequence id; any other
    tokenizer uses its ``start_token_id`` / ``end_token_id`` (WordPiece: ``[CLS]`` / ``[SEP]``).
    The decoder start must be found; the end token may be None (then generation runs for
    ``max_new_tokens`` and training data cannot be built).
    """
    start, end = decoder_start_token_id, end_token_id
    if tokenizer is not None:
        pad = _first_attribute(tokenizer, ("pad_id", "pad_token_id"))
        eos = _first_attribute(tokenizer, ("eos_id", "end_token_id"))
        keras_hub_t5 = (getattr(tokenizer, "start_token_id", None) is not None
                        and getattr(tokenizer, "start_token_id", None) == getattr(tokenizer, "end_token_id", None))
        t5_layout = (_first_attribute(tokenizer, ("eos_id",)) is not None or keras_hub_t5) and pad is not None
        if start is None:
            start = pad if t5_layout else _first_attribute(tokenizer, ("start_token_id",))
        if end is None:
            end = eos
    if start is None:
        raise ValueError(
            "Seq2SeqLM needs decoder_start_token_id: the tokenizer has no start token (start_token_id) and no "
            "T5 layout (pad_id, eos_id). Pass decoder_start_token_id=... (T5: 0, the padding id) and "
            "end_token_id=... explicitly."
        )
    return int(start), None if end is None else int(end)


def _first_attribute(tokenizer, names):
    for name in names:
        value = getattr(tokenizer, name, None)
        if is_integer(value):
            return int(value)
    return None


def _is_text_batch(x) -> bool:
    if isinstance(x, (list, tuple)) and x and all(_is_string(t) for t in x):
        return True
    dtype = getattr(x, "dtype", None)
    return dtype is not None and (dtype == tf.string or getattr(dtype, "kind", "") in "OSU")


def _is_pair_list(x) -> bool:
    return (isinstance(x, (list, tuple)) and len(x) > 0 and all(
        isinstance(p, (list, tuple)) and len(p) == 2 and all(_is_string(t) for t in p) for p in x))


def _text_pair_spec(dataset: tf.data.Dataset):
    """``"tuple"`` / ``"dict"`` for a dataset of (source, target) strings, else None (already features)."""
    spec = dataset.element_spec
    if isinstance(spec, tuple) and len(spec) == 2 and all(
            isinstance(s, tf.TensorSpec) and s.dtype == tf.string for s in spec):
        return "tuple"
    if isinstance(spec, dict) and {"source", "target"} <= set(spec) and all(
            spec[k].dtype == tf.string for k in ("source", "target")):
        return "dict"
    return None


class _GenerationState:
    """Traced generation functions and resolved samplers (kept out of checkpoints)."""

    def __init__(self):
        self.functions = {}
        self.samplers = {}


@keras.saving.register_keras_serializable(package="keras_lm")
class Seq2SeqLM(RecompiledOnLoad, keras.Model):
    """An encoder-decoder backbone with its language-model head: ``fit`` on text pairs, ``generate`` text.

    ``call(features)`` maps ``{"encoder_token_ids", "encoder_padding_mask", "decoder_token_ids",
    "decoder_padding_mask"}`` to float32 next-token logits ``[batch, target, vocabulary]``.
    ``dataset(pairs)`` (or ``fit`` on pairs directly) turns ``(source, target)`` strings into those
    features, labels ``target + [end]`` and sample weights that mask padding: sources keep their
    first ``source_length`` tokens, targets their first ``target_length - 1`` (then the end
    token). ``compile()`` defaults to the masked cross-entropy with ``label_smoothing`` and a
    token accuracy.

    Special tokens (resolved once, saved in the config; see ``resolve_special_tokens``): the
    decoder starts from ``decoder_start_token_id`` and a hypothesis ends at ``end_token_id``.
    T5's convention (padding 0 starts, ``</s>`` 1 ends) is found on T5-layout tokenizers,
    ``[CLS]`` / ``[SEP]`` on WordPiece; pass them explicitly for anything else.

    Args:
        backbone: a ``keras_lm.models.EncoderDecoder`` (``keras_lm.applications.Transformer``, ``T5``).
        tokenizer: optional; a keras-hub-style tokenizer (``tokenizer(strings)`` -> ids,
            ``detokenize(ids)`` -> strings, ``vocabulary_size()``) for text in and out. It must not
            pad (ragged output) and may have fewer tokens than the backbone (never more).
        source_length: tokens of a source kept for training and generation (longer ones are
            truncated, never an error).
        target_length: decoder positions in training (target tokens + 1); the default
            ``max_new_tokens`` of ``generate``.
        decoder_start_token_id, end_token_id: the special ids (see above).
        label_smoothing: of the default loss, in ``[0, 1)`` (0.1 in "Attention Is All You Need").
        source_end_token: end every tokenized source text with ``end_token_id`` (after truncation
            to ``source_length - 1`` tokens), as T5's tokenizer does for its inputs; sources given
            as token ids are used as they are.

    Example:
        >>> import keras_lm
        >>> from keras_lm.applications.transformer import Transformer
        >>> tokenizer = keras_lm.tokenizers.WordPiece(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
        ...                                           "to", "be", "or", "not"])
        >>> backbone = Transformer("tiny", vocabulary_size=9, hidden_dim=16, intermediate_dim=32)
        >>> model = Seq2SeqLM(backbone, tokenizer, source_length=8, target_length=8)
        >>> (model.decoder_start_token_id, model.end_token_id)
        (2, 3)
        >>> features, labels, weights = next(iter(model.dataset([("to be", "be to")], batch_size=1)))
        >>> features["decoder_token_ids"].numpy().tolist(), labels.numpy().tolist()
        ([[2, 6, 5, 0, 0, 0, 0, 0]], [[6, 5, 3, 0, 0, 0, 0, 0]])
        >>> isinstance(model.generate("to be or not", max_new_tokens=4, jit_compile=False), str)
        True
    """

    def __init__(self, backbone, tokenizer=None, *, source_length: int, target_length: int,
                 decoder_start_token_id: int | None = None, end_token_id: int | None = None,
                 label_smoothing: float = 0.0, source_end_token: bool = False, **kwargs):
        super().__init__(**kwargs)
        for method in ("encode", "init_cache", "call_with_cache", "logits"):
            if not hasattr(backbone, method):
                raise TypeError(f"Seq2SeqLM needs a keras_lm encoder-decoder backbone (with encode, init_cache, "
                                f"call_with_cache and logits), got {type(backbone).__name__}.")
        for name, value in (("source_length", source_length), ("target_length", target_length)):
            if not is_integer(value) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if target_length < 2:
            raise ValueError(f"target_length must be at least 2 (a token and the end token), got {target_length}.")
        if not is_number(label_smoothing) or not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be a number in [0, 1), got {label_smoothing!r}.")
        check_tokenizer_fits(backbone, tokenizer)
        start, end = resolve_special_tokens(tokenizer, decoder_start_token_id, end_token_id)
        vocabulary = int(backbone.vocabulary_size)
        for name, value in (("decoder_start_token_id", start), ("end_token_id", end)):
            if value is not None and not 0 <= value < vocabulary:
                raise ValueError(f"{name}={value} is outside the backbone's vocabulary [0, {vocabulary}).")
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.source_length = int(source_length)
        self.target_length = int(target_length)
        self.decoder_start_token_id = start
        self.end_token_id = end
        if source_end_token and end is None:
            raise ValueError("source_end_token=True needs end_token_id (the token appended to every source).")
        self.label_smoothing = float(label_smoothing)
        self.source_end_token = bool(source_end_token)
        self._generation = _GenerationState()  # a plain object: not tracked, not saved
        self.generate_trace_count = 0  # number of times a generation function was traced
        self.built = True  # the backbone is built; the head is the backbone's own projection

    # --- training -----------------------------------------------------------------------------
    def call(self, features, training=None):
        missing = [name for name in INPUT_NAMES if name not in features]
        if missing:
            raise ValueError(f"Seq2SeqLM inputs need {', '.join(missing)} (see Seq2SeqLM.dataset).")
        outputs = self.backbone({name: features[name] for name in INPUT_NAMES}, training=training)
        return self.backbone.logits(outputs["decoder_sequence_output"])

    def compile(self, optimizer="adam", loss="auto", weighted_metrics="auto", **kwargs):
        """Defaults: the masked, label-smoothed cross-entropy and a token accuracy (weighted by the mask)."""
        if isinstance(loss, str) and loss == "auto":
            loss = SmoothedSparseCrossEntropy(self.label_smoothing)
        if isinstance(weighted_metrics, str) and weighted_metrics == "auto":
            weighted_metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        super().compile(optimizer=optimizer, loss=loss, weighted_metrics=weighted_metrics, **kwargs)

    def dataset(self, pairs, batch_size: int = 32, shuffle_seed: int | None = None) -> tf.data.Dataset:
        """``fit``-ready batches ``(features, labels, sample_weight)`` from ``(source, target)`` text pairs.

        Args:
            pairs: a list of ``(source, target)`` strings, or a ``tf.data.Dataset`` of
                ``(source, target)`` string pairs or of dicts with ``"source"`` and ``"target"``
                (unbatched, or batched: then ``batch_size`` is ignored).
            batch_size: examples per batch.
            shuffle_seed: shuffle the examples (before batching) with this seed; None keeps the order.

        Each batch is padded to its longest source / target rounded up to a multiple of 16
        (capped at ``source_length`` / ``target_length``).
        """
        if self.tokenizer is None:
            raise ValueError("Seq2SeqLM.dataset needs a tokenizer: Seq2SeqLM(backbone, tokenizer, ...).")
        if self.end_token_id is None:
            raise ValueError("Seq2SeqLM.dataset needs end_token_id (the labels end with it); pass it to Seq2SeqLM.")
        if not is_integer(batch_size) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
        if isinstance(pairs, tf.data.Dataset):
            kind = _text_pair_spec(pairs)
            if kind is None:
                raise ValueError("Seq2SeqLM.dataset needs a dataset of (source, target) strings or of dicts with "
                                 f"'source' and 'target' strings; its elements are {pairs.element_spec}.")
            data = pairs if kind == "tuple" else pairs.map(lambda ex: (ex["source"], ex["target"]))
            batched = data.element_spec[0].shape.rank == 1
        elif _is_pair_list(pairs):
            sources, targets = zip(*pairs)
            data = tf.data.Dataset.from_tensor_slices((list(sources), list(targets)))
            batched = False
        else:
            raise TypeError("Seq2SeqLM.dataset takes a non-empty list of (source, target) strings or a "
                            "tf.data.Dataset of them.")
        if not batched:
            if shuffle_seed is not None:
                size = int(data.cardinality())
                data = data.shuffle(size if size > 0 else 10_000, seed=shuffle_seed)
            data = data.batch(int(batch_size))
        return data.map(self._encode_pairs, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    def _encode_pairs(self, sources, targets):
        target = self._ragged_ids(targets)[:, : self.target_length - 1]
        rows = tf.shape(target.row_lengths())[0]
        start = tf.fill([rows, 1], self.decoder_start_token_id)
        end = tf.fill([rows, 1], self.end_token_id)
        if self.source_end_token:
            source = self._ragged_ids(sources)[:, : self.source_length - 1]
            source = tf.concat([source, tf.RaggedTensor.from_tensor(end)], axis=1)
        else:
            source = self._ragged_ids(sources)[:, : self.source_length]
        decoder_ids = tf.concat([tf.RaggedTensor.from_tensor(start), target], axis=1)
        labels = tf.concat([target, tf.RaggedTensor.from_tensor(end)], axis=1)
        source_ids, source_mask = _padded(source, self.source_length)
        decoder_ids, decoder_mask = _padded(decoder_ids, self.target_length)
        labels, _ = _padded(labels, self.target_length)
        features = {"encoder_token_ids": source_ids, "encoder_padding_mask": source_mask,
                    "decoder_token_ids": decoder_ids, "decoder_padding_mask": decoder_mask}
        return features, labels, tf.cast(decoder_mask, tf.float32)

    def _ragged_ids(self, texts):
        ids = self.tokenizer(texts)
        if not isinstance(ids, tf.RaggedTensor):
            ids = tf.RaggedTensor.from_tensor(ids)
        return tf.cast(ids, tf.int32)

    def fit(self, x=None, y=None, batch_size=None, validation_data=None, **kwargs):
        """``Model.fit``; ``x`` may be text pairs (see ``dataset``), or ``x`` sources and ``y`` targets."""
        shuffle = kwargs.pop("shuffle", True)
        x, y = self._as_dataset(x, y, batch_size, shuffle_seed=0 if shuffle else None)
        if validation_data is not None:
            validation_data = (self._as_dataset(*validation_data, batch_size)[0]
                               if isinstance(validation_data, tuple) and len(validation_data) == 2
                               and _is_text_batch(validation_data[0])
                               else self._as_dataset(validation_data, None, batch_size)[0])
        kwargs["shuffle"] = shuffle and not isinstance(x, tf.data.Dataset)  # a dataset shuffles itself
        return Task.fit(self, x, y, batch_size=batch_size if y is not None else None, validation_data=validation_data,
                        **kwargs)

    def evaluate(self, x=None, y=None, batch_size=None, **kwargs):
        """``Model.evaluate``; ``x`` may be text pairs, or ``x`` sources and ``y`` targets."""
        x, y = self._as_dataset(x, y, batch_size)
        return Task.evaluate(self, x, y, batch_size=batch_size if y is not None else None, **kwargs)

    # Task's checks (no batch at all, a failed first fit) run through Task.fit / Task.evaluate, but
    # Seq2SeqLM does not derive from Task: building a functional task (Classifier) makes keras
    # rewrite Task's base class into keras' Functional, which a subclassed model cannot share.
    def _fit(self, x, y, batch_size, validation_data, **kwargs):
        return super().fit(x, y, batch_size=batch_size, validation_data=validation_data, **kwargs)

    def _evaluate(self, x, y, batch_size, **kwargs):
        return super().evaluate(x, y, batch_size=batch_size, **kwargs)

    def _as_dataset(self, x, y, batch_size, shuffle_seed=None):
        check_not_empty(x, "Seq2SeqLM")
        batch_size = batch_size or 32
        if y is not None and _is_text_batch(x) and _is_text_batch(y):
            sources = [s.decode("utf-8") if isinstance(s, bytes) else str(s) for s in np.asarray(x).reshape(-1)]
            targets = [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in np.asarray(y).reshape(-1)]
            if len(sources) != len(targets):
                raise ValueError(f"{len(sources)} sources but {len(targets)} targets: give one target per source.")
            return self.dataset(list(zip(sources, targets)), batch_size, shuffle_seed), None
        if _is_pair_list(x) or (isinstance(x, tf.data.Dataset) and _text_pair_spec(x) is not None):
            return self.dataset(x, batch_size, shuffle_seed), y
        return x, y

    # --- generation ---------------------------------------------------------------------------
    def generate(self, sources, max_new_tokens: int | None = None, sampler="greedy", num_beams: int = 4,
                 length_penalty: float = 0.6, stop_token_ids=None, jit_compile: bool | None = None):
        """Writes a target for each source.

        Args:
            sources: a string or a list of strings (needs the tokenizer); token ids as a list,
                a list of lists (sources of different lengths) or a 2-D array; or a dict with
                ``encoder_token_ids`` and ``encoder_padding_mask``. A source longer than
                ``source_length`` keeps its first ``source_length`` tokens; an empty one is an error.
            max_new_tokens: the longest target; defaults to ``target_length``.
            sampler: ``"greedy"``, ``"beam"``, ``"top_k"``, ``"top_p"``, ``"temperature"`` (=
                ``"random"``) or a ``keras_hub.samplers.Sampler`` (a ``BeamSampler`` means
                ``"beam"`` with its ``num_beams``).
            num_beams: beams of ``"beam"`` (1 with ``length_penalty=0`` is greedy decoding).
            length_penalty: the GNMT exponent ``alpha`` of beam search: finished hypotheses rank by
                ``sum(log p) / ((5 + length) / 6) ** alpha``.
            stop_token_ids: ids ending a row; defaults to ``[end_token_id]`` (none if it is None).
            jit_compile: compile the decoding loop with XLA; None uses ``default_jit_compile``.

        Returns:
            Strings for string sources (special tokens dropped), else the generated ids per row
            (the stop token included when one was produced); one item for one source.
        """
        rows, kind = self._encode_sources(sources)
        max_new_tokens = self.target_length if max_new_tokens is None else max_new_tokens
        if not is_integer(max_new_tokens) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}.")
        beams, sampler = self._resolve_sampler(sampler, num_beams)
        if not is_number(length_penalty) or not math.isfinite(length_penalty):
            raise ValueError(f"length_penalty must be a finite number, got {length_penalty!r}.")
        if stop_token_ids is None:
            stop_token_ids = [] if self.end_token_id is None else [self.end_token_id]
        stop_token_ids = [int(t) for t in stop_token_ids]
        if jit_compile is None:
            jit_compile = default_jit_compile(len(rows))
        generated = self._generate_ids(rows, int(max_new_tokens), beams, sampler, stop_token_ids,
                                       float(length_penalty), bool(jit_compile))
        return self._format(generated, kind, stop_token_ids)

    def _resolve_sampler(self, sampler, num_beams):
        """``(num_beams or None, keras-hub sampler or None)``."""
        if isinstance(sampler, keras_hub.samplers.BeamSampler):
            sampler, num_beams = "beam", sampler.num_beams
        if isinstance(sampler, str) and sampler == "beam":
            if not is_integer(num_beams) or num_beams < 1:
                raise ValueError(f"num_beams must be an integer >= 1, got {num_beams!r}.")
            return int(num_beams), None
        if isinstance(sampler, keras_hub.samplers.Sampler):
            chosen = sampler
        elif isinstance(sampler, str):
            name = SAMPLER_ALIASES.get(sampler, sampler)
            if name not in self._generation.samplers:
                try:
                    resolved = keras_hub.samplers.get(name)
                except (ValueError, TypeError):
                    resolved = None
                if not isinstance(resolved, keras_hub.samplers.Sampler):
                    raise ValueError(f"Unknown sampler {sampler!r}; use greedy, beam, top_k, top_p, temperature or "
                                     "a keras_hub.samplers.Sampler instance.")
                self._generation.samplers[name] = resolved
            chosen = self._generation.samplers[name]
        else:
            raise TypeError(f"`sampler` must be a name or a keras_hub.samplers.Sampler, got {type(sampler).__name__}.")
        if isinstance(chosen, keras_hub.samplers.ContrastiveSampler):
            raise ValueError("The contrastive sampler is not supported by Seq2SeqLM.generate.")
        check_sampler(chosen, self._generation_vocabulary_size())
        return None, chosen

    def _generation_vocabulary_size(self) -> int:
        return generation_vocabulary_size(self.backbone, self.tokenizer)

    def _encode_sources(self, sources):
        """``(list of token-id lists, kind)``; kind tells ``generate`` how to format the answer."""
        if isinstance(sources, dict):
            if "encoder_token_ids" not in sources:
                raise ValueError("A dict of sources needs 'encoder_token_ids' (and 'encoder_padding_mask').")
            ids = np.asarray(sources["encoder_token_ids"])
            if ids.ndim != 2:
                raise ValueError(f"sources['encoder_token_ids'] must be [batch, length], got shape {ids.shape}.")
            mask = np.asarray(sources.get("encoder_padding_mask", np.ones_like(ids))) != 0
            rows, kind = [row[keep].tolist() for row, keep in zip(ids, mask)], "batch_ids"
        else:
            if isinstance(sources, tf.Tensor):
                sources = sources.numpy()
            if _is_string(sources):
                rows, kind = self._tokenize([sources]), "string"
            elif isinstance(sources, np.ndarray) and sources.dtype.kind in "OSU":
                rows, kind = self._tokenize(list(sources.reshape(-1))), "strings"
            elif isinstance(sources, np.ndarray) and sources.ndim in (1, 2) and sources.dtype.kind in "iu":
                rows = [sources.tolist()] if sources.ndim == 1 else sources.tolist()
                kind = "ids" if sources.ndim == 1 else "batch_ids"
            elif isinstance(sources, (list, tuple)) and len(sources) and all(_is_string(s) for s in sources):
                rows, kind = self._tokenize(list(sources)), "strings"
            elif isinstance(sources, (list, tuple)) and len(sources) and all(is_integer(s) for s in sources):
                rows, kind = [[int(s) for s in sources]], "ids"
            elif isinstance(sources, (list, tuple)) and len(sources) and all(
                    isinstance(s, (list, tuple, np.ndarray)) and all(is_integer(t) for t in np.asarray(s).reshape(-1))
                    for s in sources):
                rows, kind = [[int(t) for t in np.asarray(s).reshape(-1)] for s in sources], "batch_ids"
            elif isinstance(sources, (list, tuple, np.ndarray)) and len(sources) == 0:
                raise ValueError("`sources` is an empty batch: pass at least one source.")
            else:
                raise TypeError("`sources` must be a string, a list of strings, token ids (a list, a list of lists "
                                "or a 2-D array) or a dict with 'encoder_token_ids' and 'encoder_padding_mask'.")
        if not rows:
            raise ValueError("`sources` is an empty batch: pass at least one source.")
        vocabulary = int(self.backbone.vocabulary_size)
        for i, row in enumerate(rows):
            if not row:
                raise ValueError(f"Source {i} is empty (no tokens): there is nothing to translate; give it at least "
                                 "one token.")
            bad = [t for t in row if not 0 <= t < vocabulary]
            if bad:
                raise ValueError(f"Source {i}: token id {bad[0]} is outside the vocabulary [0, {vocabulary}).")
        return [row[: self.source_length] for row in rows], kind

    def _tokenize(self, texts):
        if self.tokenizer is None:
            raise ValueError("Generating from strings needs a tokenizer: Seq2SeqLM(backbone, tokenizer, ...).")
        texts = [t if isinstance(t, bytes) else str(t).encode("utf-8") for t in texts]
        rows = [[int(t) for t in row] for row in _to_lists(self.tokenizer(tf.constant(texts, dtype=tf.string)))]
        if self.source_end_token:
            rows = [row[: self.source_length - 1] + [self.end_token_id] for row in rows]
        return rows

    def _generate_ids(self, rows, max_new_tokens, beams, sampler, stop_token_ids, alpha, jit_compile):
        batch = _bucket(len(rows))
        source_width = _bucket(max(len(r) for r in rows), _MIN_BUCKET)
        buffer_length = _bucket(max_new_tokens, _MIN_BUCKET)
        # Extra rows (batch bucket) repeat the first source; their output is dropped.
        padded_rows = rows + [rows[0]] * (batch - len(rows))
        source_ids = np.zeros((batch, source_width), "int32")
        source_mask = np.zeros((batch, source_width), "int32")
        for i, row in enumerate(padded_rows):
            source_ids[i, : len(row)] = row
            source_mask[i, : len(row)] = 1
        stops = stop_token_ids + [-1] * (_bucket(len(stop_token_ids), 4) - len(stop_token_ids))
        function = self._generate_function(beams, sampler, jit_compile)
        output = function(tf.constant(source_ids), tf.constant(source_mask), tf.zeros((batch, buffer_length + 1), tf.int32),
                          tf.constant(max_new_tokens, tf.int32), tf.constant(stops, tf.int32),
                          tf.constant(alpha, tf.float32))
        output = np.asarray(output)[: len(rows), 1: max_new_tokens + 1]
        return [row.tolist() for row in output]

    def _generate_function(self, beams, sampler, jit_compile):
        key = (beams, id(sampler), jit_compile, self._generation_vocabulary_size())
        if key not in self._generation.functions:
            def generate_tokens(source_ids, source_mask, buffer, max_new_tokens, stop_token_ids, alpha):
                self.generate_trace_count += 1
                return self.decode_tokens(source_ids, source_mask, buffer, max_new_tokens, stop_token_ids,
                                          num_beams=beams, sampler=sampler, length_penalty=alpha)

            self._generation.functions[key] = (
                tf.function(generate_tokens, jit_compile=jit_compile, reduce_retracing=False), sampler)
        return self._generation.functions[key][0]

    def decode_tokens(self, source_ids, source_mask, buffer, max_new_tokens, stop_token_ids, num_beams=None,
                      sampler=None, length_penalty=0.0):
        """The decoding loop of ``generate`` on padded sources, for use inside a ``tf.function``.

        ``generate`` runs it; so does the seq2seq serving export (``keras_lm.export.seq2seq``),
        where the batch size may be unknown until run time.

        Args:
            source_ids, source_mask: ``[batch, source]`` int32 ids and 1 for real source tokens.
            buffer: ``[batch, N + 1]`` int32 (its shape sets the longest target ``N``; values unused).
            max_new_tokens: scalar int32 tensor ``<= N``.
            stop_token_ids: ``[S]`` int32 ids ending a row (-1 for unused slots).
            num_beams: beam search with this many beams; None samples with ``sampler``.
            sampler: a ``keras_hub.samplers.Sampler`` (``GreedySampler`` for greedy decoding).
            length_penalty: the GNMT exponent of beam search.

        Returns:
            ``[batch, N + 1]`` int32: the decoder start token, the new tokens (the stop token
            included), then zeros.
        """
        if num_beams is None:
            return self._sample_loop(sampler, source_ids, source_mask, buffer, max_new_tokens, stop_token_ids)
        return self._beam_search(num_beams, source_ids, source_mask, buffer, max_new_tokens, stop_token_ids,
                                 length_penalty)

    def _encode(self, source_ids, source_mask):
        _, context_caches = self.backbone.encode({"encoder_token_ids": source_ids,
                                                  "encoder_padding_mask": source_mask})
        return context_caches

    def _step_logits(self, tokens, cache, index, context_caches, source_mask):
        logits, _, cache = self.backbone.call_with_cache(tokens, cache, index, context_caches=context_caches,
                                                         encoder_padding_mask=source_mask)
        return restrict_to_vocabulary(logits[:, 0, :], self._generation_vocabulary_size()), cache

    def _sample_loop(self, sampler, source_ids, source_mask, buffer, max_new_tokens, stop_token_ids):
        """Greedy / random sampling: ``buffer`` ``[B, N + 1]`` filled from position 1, start token at 0."""
        batch, width = _batch_size(buffer), buffer.shape[1]
        context_caches = self._encode(source_ids, source_mask)
        cache = self.backbone.init_cache(batch, width - 1)
        tokens = ops.slice_update(buffer, (0, 0), ops.full((batch, 1), self.decoder_start_token_id, "int32"))
        next_token = sampler_next_token(sampler)

        def cond(tokens, cache, index, done):
            return ops.logical_and(index < max_new_tokens, ops.logical_not(ops.all(done)))

        def body(tokens, cache, index, done):
            current = ops.slice(tokens, (0, index), (batch, 1))
            logits, cache = self._step_logits(current, cache, index, context_caches, source_mask)
            token = ops.cast(next_token(logits, index), "int32")
            token = ops.where(done, ops.zeros_like(token), token)
            tokens = ops.slice_update(tokens, (0, index + 1), token[:, None])
            is_stop = ops.any(ops.equal(token[:, None], stop_token_ids[None, :]), axis=-1)
            return tokens, cache, index + 1, ops.logical_or(done, is_stop)

        done = ops.zeros((batch,), "bool")
        tokens, _, _, _ = ops.while_loop(cond, body, (tokens, cache, ops.convert_to_tensor(0, "int32"), done),
                                         maximum_iterations=width - 1)
        return tokens

    def _beam_search(self, beams, source_ids, source_mask, buffer, max_new_tokens, stop_token_ids, alpha):
        batch, width = _batch_size(buffer), buffer.shape[1]
        context_caches = self._encode(source_ids, source_mask)
        context_caches = tuple(tf.repeat(c, beams, axis=0) for c in context_caches)
        beam_source_mask = tf.repeat(source_mask, beams, axis=0)
        cache = self.backbone.init_cache(batch * beams, width - 1)

        def next_log_probs(tokens, cache, index):
            logits, cache = self._step_logits(tokens, cache, index, context_caches, beam_source_mask)
            return tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1), cache

        sequences, _ = beam_search(next_log_probs, self.decoder_start_token_id, cache, batch, beams, width - 1,
                                   max_new_tokens, stop_token_ids, alpha)
        return sequences

    def _format(self, generated, kind, stop_token_ids):
        stops = set(stop_token_ids)
        cut = []
        for sequence in generated:
            end = next((i + 1 for i, t in enumerate(sequence) if t in stops), len(sequence))
            cut.append(sequence[:end])
        if kind == "ids":
            return cut[0]
        if kind == "batch_ids":
            return cut
        texts = _to_lists(self.tokenizer.detokenize(tf.ragged.constant([[t for t in s if t not in stops] for s in cut],
                                                                        dtype=tf.int32)))
        texts = [t.decode("utf-8", errors="replace") if isinstance(t, bytes) else str(t) for t in texts]
        return texts[0] if kind == "string" else texts

    # --- saving -------------------------------------------------------------------------------
    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "tokenizer": keras.saving.serialize_keras_object(self.tokenizer) if self.tokenizer is not None else None,
            "source_length": self.source_length,
            "target_length": self.target_length,
            "decoder_start_token_id": self.decoder_start_token_id,
            "end_token_id": self.end_token_id,
            "label_smoothing": self.label_smoothing,
            "source_end_token": self.source_end_token,
        }

    @classmethod
    def from_hf(cls, directory: str, source_length: int = 512, target_length: int = 128, dtype=None) -> "Seq2SeqLM":
        """The weights and the SentencePiece tokenizer of a Hugging Face T5 directory, with T5's conventions.

        See ``keras_lm.tasks.seq2seq_hf.seq2seq_lm_from_hf``.

        Example:
            >>> model = Seq2SeqLM.from_hf("t5-small-dir", source_length=128)  # doctest: +SKIP
            >>> model.generate(["translate English to German: Hello."])  # doctest: +SKIP
        """
        from keras_lm.tasks.seq2seq_hf import seq2seq_lm_from_hf  # it imports this module

        return seq2seq_lm_from_hf(directory, source_length=source_length, target_length=target_length, dtype=dtype)

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        if config.get("tokenizer") is not None:
            config["tokenizer"] = keras.saving.deserialize_keras_object(config["tokenizer"])
        return cls(**config)


def _batch_size(tensor):
    """The first dimension of ``tensor``: an int when static, else a scalar tensor (a serving graph)."""
    size = tensor.shape[0]
    return int(size) if size is not None else tf.shape(tensor)[0]


def _padded(ragged, limit: int):
    """``(ids [B, width] int32, mask [B, width] int32)``; width = longest row rounded up to 16, at most ``limit``."""
    longest = tf.reduce_max(tf.concat([ragged.row_lengths(), [1]], axis=0))
    width = tf.minimum((longest + _WIDTH_MULTIPLE - 1) // _WIDTH_MULTIPLE * _WIDTH_MULTIPLE, limit)
    ids = ragged.to_tensor(default_value=0, shape=tf.stack([ragged.nrows(), width]))
    mask = tf.sequence_mask(ragged.row_lengths(), width, dtype=tf.int32)
    return tf.cast(ids, tf.int32), mask
