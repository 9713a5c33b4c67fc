"""Data augmentation as ``tf.data`` transforms: token-level noise and back-translation.

Token-level noise (``TokenDropout``, ``RandomReplacement``, ``LocalSwap``, chained with ``Compose``)
works on what a dataset holds at either end of the preprocessor:

- preprocessed features ``{"token_ids", "segment_ids", "padding_mask"}`` (``[batch, length]`` or one
  ``[length]`` row): special tokens (``[CLS]``, ``[SEP]``, ... any id in ``special_ids``) and padding
  are never changed, moved or drawn; segment ids and the padding mask follow the tokens;
- raw text (a ``tf.string`` tensor, or the ``"text"`` of a dict example such as
  ``keras_lm.data.load("movie_snippets")`` gives): the same noise on whitespace-separated words,
  which are joined again by single spaces.

Each transform is called as ``transform(*element)`` so that ``dataset.map(transform)`` works on
elements ``x``, ``(x, label)`` or ``(x, label, weight)``; the label and weight pass through. The
noise is a pure function of the input and a ``[2]`` seed: ``transform(x, seed=...)`` uses the seed
given; ``dataset.map(transform)`` draws a new seed for each call from a ``tf.random.Generator``
started from the transform's ``seed`` (new noise every epoch, the same sequence for the same seed
when the map runs in order, i.e. without ``num_parallel_calls``).

``BackTranslation`` paraphrases raw text through two sequence-to-sequence models (e.g. English ->
Spanish -> English with ``keras_lm.tasks.Seq2SeqLM``), with batched generation outside the graph; the
paraphrases are added to a dataset next to the originals, labels carried.

This module imports no model code (data sits left of tokenizers, models and tasks): a tokenizer or a
sequence-to-sequence model is only used through its methods.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

FEATURE_NAMES = ("token_ids", "segment_ids", "padding_mask")
#: Tokenizer attributes read by ``from_tokenizer`` as special-token ids.
SPECIAL_TOKEN_ATTRIBUTES = (
    "pad_id", "unk_id", "cls_id", "sep_id", "mask_id", "bos_id", "eos_id",
    "pad_token_id", "unk_token_id", "start_token_id", "end_token_id", "mask_token_id",
)


def _check_rate(name: str, rate: float) -> float:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= float(rate) <= 1.0:
        raise ValueError(f"{name}: `rate` must be a number in [0, 1], got {rate!r}.")
    return float(rate)


def _check_seed(name: str, seed) -> int | None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise ValueError(f"{name}: `seed` must be an integer or None, got {seed!r}.")
    return None if seed is None else int(seed)


def _seed_generator(seed: int | None) -> tf.random.Generator:
    """The generator of per-call seeds, made eagerly (never inside a traced tf.data function)."""
    with tf.init_scope():
        if seed is None:
            return tf.random.Generator.from_non_deterministic_state()
        return tf.random.Generator.from_seed(seed)


def tokenizer_special_ids(tokenizer) -> tuple[int, ...]:
    """The special-token ids a tokenizer names (``pad_id``, ``cls_id``, ``sep_id``, ``mask_id``, ...).

    Example:
        >>> class Tokenizer:
        ...     pad_id, unk_id, cls_id, sep_id, mask_id = 0, 1, 2, 3, 4
        >>> tokenizer_special_ids(Tokenizer())
        (0, 1, 2, 3, 4)
    """
    ids = set()
    for attribute in SPECIAL_TOKEN_ATTRIBUTES:
        value = getattr(tokenizer, attribute, None)
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0:
            ids.add(int(value))
    return tuple(sorted(ids))


def _tokenizer_pad_id(tokenizer) -> int:
    for attribute in ("pad_id", "pad_token_id"):
        value = getattr(tokenizer, attribute, None)
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return int(value)
    return 0


def _isin(values: tf.Tensor, candidates: Sequence[int]) -> tf.Tensor:
    if not candidates:
        return tf.zeros_like(values, dtype=tf.bool)
    candidates = tf.constant(np.asarray(candidates, dtype=np.int64))
    return tf.reduce_any(tf.equal(tf.cast(values, tf.int64)[..., tf.newaxis], candidates), axis=-1)


def _shift_left(x: tf.Tensor, fill) -> tf.Tensor:
    """``x[:, i + 1]`` at column ``i``; ``fill`` in the last column."""
    return tf.concat([x[:, 1:], tf.fill([tf.shape(x)[0], 1], tf.constant(fill, x.dtype))], axis=1)


def _shift_right(x: tf.Tensor, fill) -> tf.Tensor:
    """``x[:, i - 1]`` at column ``i``; ``fill`` in the first column."""
    return tf.concat([tf.fill([tf.shape(x)[0], 1], tf.constant(fill, x.dtype)), x[:, :-1]], axis=1)


class _Rows:
    """One batch of rows to corrupt: ``values [B, L]`` (token ids or words), which positions are
    real (not padding) and which may change (``eligible``), and each position's segment id."""

    def __init__(self, values, real, eligible, segments):
        self.values, self.real, self.eligible, self.segments = values, real, eligible, segments

    @property
    def shape(self):
        return tf.shape(self.values)


class TokenTransform:
    """Base class of the token-level noise transforms (see the module docstring).

    Subclasses implement ``_corrupt(rows, seed) -> (rows, lengths)`` on a batch of rows; ``lengths``
    is the new number of real positions per row when tokens were removed, else None.

    Args:
        rate: the probability that an eligible token (or word) is changed, in ``[0, 1]``.
        special_ids: token ids never changed, moved or drawn (``[CLS]``, ``[SEP]``, ``[MASK]``, ...);
            ``pad_id`` is always one of them.
        pad_id: the padding id (positions whose ``padding_mask`` is off are padding too).
        seed: starts the generator of per-call seeds used by ``dataset.map(transform)``; None draws
            a non-deterministic start.
    """

    #: Whether the transform moves tokens (then every per-token feature must be one it knows).
    moves_tokens = False

    def __init__(self, rate: float, *, special_ids: Sequence[int] = (), pad_id: int = 0, seed: int | None = None):
        name = type(self).__name__
        self.rate = _check_rate(name, rate)
        self.pad_id = int(pad_id)
        self.special_ids = tuple(sorted({int(i) for i in special_ids} | {self.pad_id}))
        self.seed = _check_seed(name, seed)
        self._generator = _seed_generator(self.seed)

    @classmethod
    def from_tokenizer(cls, tokenizer, rate: float, seed: int | None = None, **kwargs):
        """The transform with the tokenizer's special ids and padding id (and vocabulary where needed)."""
        return cls(rate, special_ids=tokenizer_special_ids(tokenizer), pad_id=_tokenizer_pad_id(tokenizer),
                   seed=seed, **kwargs)

    def get_config(self) -> dict:
        return {"rate": self.rate, "special_ids": list(self.special_ids), "pad_id": self.pad_id, "seed": self.seed}

    @classmethod
    def from_config(cls, config: dict):
        config = dict(config)
        return cls(config.pop("rate"), **config)

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({arguments})"

    # -- the element structure ------------------------------------------------------------------

    def __call__(self, *element, seed=None):
        if not element:
            raise TypeError(f"{type(self).__name__} needs an element: features, text, or (x, label, ...).")
        x, rest = element[0], element[1:]
        seed = self._call_seed(seed)
        x = self.transform(x, seed)
        return (x, *rest) if rest else x

    def transform(self, x, seed):
        """``x`` (features, text, or a dict with ``"text"``) with noise drawn from the ``[2]`` ``seed``."""
        seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
        if isinstance(x, dict) and "token_ids" in x:
            return self._transform_features(x, seed)
        if isinstance(x, dict) and "text" in x:
            return {**x, "text": self._transform_text(x["text"], seed)}
        if isinstance(x, (tf.Tensor, np.ndarray, str, bytes, list)) and tf.convert_to_tensor(x).dtype == tf.string:
            return self._transform_text(x, seed)
        raise TypeError(
            f"{type(self).__name__} transforms preprocessed features (a dict with 'token_ids'), raw text (a "
            f"tf.string tensor) or a dict example with 'text'; got {type(x).__name__}"
            + (f" with keys {sorted(x)}" if isinstance(x, dict) else "") + "."
        )

    def _call_seed(self, seed):
        if seed is not None:
            seed = tf.convert_to_tensor(seed)
            if seed.shape.rank != 1 or seed.shape[0] != 2:
                raise ValueError(f"{type(self).__name__}: `seed` must be a [2] integer tensor, got shape {seed.shape}.")
            return seed
        return self._generator.make_seeds(1)[:, 0]

    # -- token ids ------------------------------------------------------------------------------

    def _transform_features(self, features: dict, seed) -> dict:
        if self.moves_tokens:
            unknown = sorted(set(features) - set(FEATURE_NAMES))
            if unknown:
                raise ValueError(
                    f"{type(self).__name__} moves tokens and keeps {', '.join(FEATURE_NAMES)} aligned, but the "
                    f"features also hold {unknown}: drop them or apply the transform before adding them."
                )
        token_ids = tf.convert_to_tensor(features["token_ids"])
        if token_ids.shape.rank not in (1, 2):
            raise ValueError(f"{type(self).__name__}: features['token_ids'] must be [length] or [batch, length], "
                             f"got shape {token_ids.shape}.")
        unbatched = token_ids.shape.rank == 1

        def batched(value):
            value = tf.convert_to_tensor(value)
            return value[tf.newaxis] if unbatched else value

        ids = tf.cast(batched(token_ids), tf.int64)
        mask = features.get("padding_mask")
        real = tf.cast(batched(mask), tf.bool) if mask is not None else tf.not_equal(ids, self.pad_id)
        segments = features.get("segment_ids")
        segments = tf.cast(batched(segments), tf.int64) if segments is not None else tf.zeros_like(ids)
        rows = _Rows(ids, real, real & ~_isin(ids, self.special_ids), segments)
        rows, lengths = self._corrupt(rows, seed)
        outputs = dict(features)
        if lengths is not None:  # tokens were removed: what is left is padding
            valid = tf.range(tf.shape(ids)[1], dtype=tf.int64)[tf.newaxis] < lengths[:, tf.newaxis]
            rows.values = tf.where(valid, rows.values, tf.constant(self.pad_id, tf.int64))
            rows.segments = tf.where(valid, rows.segments, tf.zeros_like(rows.segments))
            rows.real = valid

        def restore(value, like):
            value = tf.cast(value, tf.convert_to_tensor(like).dtype)
            return value[0] if unbatched else value

        outputs["token_ids"] = restore(rows.values, token_ids)
        if "segment_ids" in features:
            outputs["segment_ids"] = restore(rows.segments, features["segment_ids"])
        if mask is not None:
            outputs["padding_mask"] = restore(rows.real, mask)
        return outputs

    # -- raw text -------------------------------------------------------------------------------

    def _transform_text(self, text, seed):
        text = tf.convert_to_tensor(text, tf.string)
        if text.shape.rank not in (0, 1):
            raise ValueError(f"{type(self).__name__}: text must be a string or a [batch] of strings, "
                             f"got shape {text.shape}.")
        scalar = text.shape.rank == 0
        batch = text[tf.newaxis] if scalar else text
        words = tf.strings.split(batch)
        lengths = words.row_lengths()
        dense = words.to_tensor("")
        real = tf.sequence_mask(lengths, tf.shape(dense)[1])
        rows = _Rows(dense, real, real, tf.zeros(tf.shape(dense), tf.int64))
        rows, new_lengths = self._corrupt(rows, seed)
        kept = tf.RaggedTensor.from_tensor(rows.values, lengths=new_lengths if new_lengths is not None else lengths)
        joined = tf.strings.reduce_join(kept, axis=-1, separator=" ")
        return joined[0] if scalar else joined

    # -- the noise ------------------------------------------------------------------------------

    def _chosen(self, rows: _Rows, seed) -> tf.Tensor:
        """Bernoulli(rate) draws ``uniform(shape, seed) < rate`` at every position."""
        return tf.random.stateless_uniform(rows.shape, seed=seed) < self.rate

    def _corrupt(self, rows: _Rows, seed):
        raise NotImplementedError


class TokenDropout(TokenTransform):
    """Removes each eligible token (or word) with probability ``rate``; the rest close up.

    Token ids: the removed tokens leave the row, later tokens (and their segment ids) move left and
    the row ends in padding (``pad_id``, segment 0, ``padding_mask`` off), as the preprocessor pads.
    The selection is ``tf.random.stateless_uniform([batch, length], seed) < rate`` at eligible
    positions (not special, not padding).

    Example:
        >>> import tensorflow as tf
        >>> dropout = TokenDropout(0.5, special_ids=(2, 3), pad_id=0)
        >>> features = {"token_ids": tf.constant([[2, 10, 11, 12, 3, 0]]),
        ...             "segment_ids": tf.zeros([1, 6], tf.int32),
        ...             "padding_mask": tf.constant([[1, 1, 1, 1, 1, 0]])}
        >>> out = dropout(features, seed=tf.constant([0, 1]))
        >>> ids = out["token_ids"].numpy()[0].tolist()
        >>> ids[0], ids[ids.index(3)], int(out["padding_mask"].numpy().sum()) == ids.index(3) + 1
        (2, 3, True)
    """

    moves_tokens = True

    def _corrupt(self, rows: _Rows, seed):
        drop = rows.eligible & self._chosen(rows, seed)
        keep = rows.real & ~drop
        length = tf.shape(rows.values)[1]
        positions = tf.range(length)[tf.newaxis]
        order = tf.argsort(tf.where(keep, positions, positions + length), axis=-1, stable=True)
        rows.values = tf.gather(rows.values, order, batch_dims=1)
        rows.segments = tf.gather(rows.segments, order, batch_dims=1)
        return rows, tf.reduce_sum(tf.cast(keep, tf.int64), axis=-1)


class RandomReplacement(TokenTransform):
    """Replaces each eligible token with probability ``rate`` by a different random ordinary token.

    Token ids: the replacement is uniform over the ids in ``[0, vocabulary_size)`` that are neither
    special nor the original token, so every selected position changes. Raw text: a selected word
    becomes a word drawn uniformly from ``words`` (it may equal the original).
    Selection: ``tf.random.stateless_uniform([batch, length], s1) < rate`` at eligible positions, with
    ``s1, s2 = tf.random.experimental.stateless_split(seed, 2)``; the draw is
    ``tf.random.stateless_uniform([batch, length], s2, maxval=choices, dtype=int64)``.

    Args:
        rate: probability of replacing an eligible token.
        vocabulary_size: draws token ids below it (needed for token ids).
        words: the words drawn for raw text (needed for raw text).
        special_ids, pad_id, seed: see ``TokenTransform``.

    Example:
        >>> import tensorflow as tf
        >>> replace = RandomReplacement(1.0, vocabulary_size=8, special_ids=(1, 2, 3), pad_id=0)
        >>> out = replace({"token_ids": tf.constant([2, 5, 6, 3, 0])}, seed=tf.constant([4, 2]))
        >>> ids = out["token_ids"].numpy().tolist()
        >>> ids[0], ids[3:], ids[1] not in (0, 1, 2, 3, 5), ids[2] not in (0, 1, 2, 3, 6)
        (2, [3, 0], True, True)
    """

    def __init__(self, rate: float, vocabulary_size: int | None = None, *, words: Sequence[str] | None = None,
                 special_ids: Sequence[int] = (), pad_id: int = 0, seed: int | None = None):
        super().__init__(rate, special_ids=special_ids, pad_id=pad_id, seed=seed)
        self.vocabulary_size = None if vocabulary_size is None else int(vocabulary_size)
        self._specials_below = tuple(i for i in self.special_ids if self.vocabulary_size is None
                                     or 0 <= i < self.vocabulary_size)
        if self.vocabulary_size is not None and self.vocabulary_size - len(self._specials_below) < 2:
            raise ValueError(
                f"RandomReplacement: a vocabulary of {self.vocabulary_size} ids with {len(self._specials_below)} "
                "special ids has fewer than two ordinary tokens to draw a different one from."
            )
        self.words = None if words is None else tuple(str(w) for w in words)
        if self.words is not None and not self.words:
            raise ValueError("RandomReplacement: `words` is empty; give at least one word to draw.")

    @classmethod
    def from_tokenizer(cls, tokenizer, rate: float, seed: int | None = None, **kwargs):
        """Token ids below the tokenizer's ``vocabulary_size()`` (never its special ids); for raw
        text, the whole words of its vocabulary (alphabetic, no ``##`` continuation, not special)."""
        kwargs.setdefault("vocabulary_size", int(tokenizer.vocabulary_size()))
        if "words" not in kwargs and hasattr(tokenizer, "get_vocabulary"):
            special = set(tokenizer_special_ids(tokenizer))
            kwargs["words"] = [token for i, token in enumerate(tokenizer.get_vocabulary())
                               if i not in special and token.isalpha()] or None
        return super().from_tokenizer(tokenizer, rate, seed=seed, **kwargs)

    def get_config(self) -> dict:
        return {**super().get_config(), "vocabulary_size": self.vocabulary_size,
                "words": None if self.words is None else list(self.words)}

    def _corrupt(self, rows: _Rows, seed):
        select_seed, draw_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        chosen = rows.eligible & self._chosen(rows, select_seed)
        if rows.values.dtype == tf.string:
            if self.words is None:
                raise ValueError("RandomReplacement on raw text needs `words` to draw from (or from_tokenizer).")
            draw = tf.random.stateless_uniform(rows.shape, seed=draw_seed, maxval=len(self.words), dtype=tf.int64)
            replacement = tf.gather(tf.constant(self.words), draw)
        else:
            if self.vocabulary_size is None:
                raise ValueError("RandomReplacement on token ids needs `vocabulary_size` (or from_tokenizer).")
            replacement = self._different_ordinary_tokens(rows.values, draw_seed)
        rows.values = tf.where(chosen, replacement, rows.values)
        return rows, None

    def _different_ordinary_tokens(self, ids: tf.Tensor, seed) -> tf.Tensor:
        """Uniform over the ordinary ids other than ``ids`` (at ordinary positions): draw an index
        below ``ordinary - 1``, skip the original's index, then skip the special ids."""
        specials = self._specials_below
        ordinary = self.vocabulary_size - len(specials)
        index_of_original = ids - tf.add_n([tf.cast(ids > s, tf.int64) for s in specials] or [tf.zeros_like(ids)])
        draw = tf.random.stateless_uniform(tf.shape(ids), seed=seed, maxval=ordinary - 1, dtype=tf.int64)
        draw = draw + tf.cast(draw >= index_of_original, tf.int64)
        for special in specials:  # ascending, so each shift keeps the order
            draw = draw + tf.cast(draw >= special, tf.int64)
        return draw


class LocalSwap(TokenTransform):
    """Swaps eligible neighbours: each token swaps with the next one with probability ``rate``.

    A pair ``(i, i + 1)`` can swap when both are eligible (not special, not padding) and in the same
    segment. It is proposed when ``tf.random.stateless_uniform([batch, length], seed)[i] < rate``;
    proposals are taken from left to right, skipping one that overlaps the swap just taken (in a
    run of consecutive proposals the 1st, 3rd, ... swap). On long rows a fraction
    ``rate / (1 + rate)`` of the positions starts a swap. Segment ids and the padding mask do not
    change (tokens never cross a segment or a special token).

    Example:
        >>> import tensorflow as tf
        >>> swap = LocalSwap(1.0, special_ids=(2, 3), pad_id=0)
        >>> swap({"token_ids": tf.constant([2, 10, 11, 12, 13, 14, 3, 0])},
        ...      seed=tf.constant([0, 0]))["token_ids"].numpy().tolist()
        [2, 11, 10, 13, 12, 14, 3, 0]
    """

    def _corrupt(self, rows: _Rows, seed):
        pair = (rows.eligible & _shift_left(rows.eligible, False)
                & tf.equal(rows.segments, _shift_left(rows.segments, -1)))
        proposed = pair & self._chosen(rows, seed)
        accepted = proposed & tf.equal(tf.math.floormod(_run_position(proposed), 2), 1)
        step = tf.cast(accepted, tf.int32) - tf.cast(_shift_right(accepted, False), tf.int32)
        source = tf.range(tf.shape(rows.values)[1])[tf.newaxis] + step
        rows.values = tf.gather(rows.values, source, batch_dims=1)
        return rows, None


def _run_position(flags: tf.Tensor) -> tf.Tensor:
    """For each position, how many consecutive ``True`` flags end there (0 where the flag is False).

    Example:
        >>> _run_position(tf.constant([[True, True, False, True, True, True]])).numpy().tolist()
        [[1, 2, 0, 1, 2, 3]]
    """
    length = tf.shape(flags)[1]
    positions = tf.broadcast_to(tf.range(length)[tf.newaxis], tf.shape(flags))
    # The last False position at or before i: the (number of Falses up to i)-th False position.
    false_first = tf.argsort(tf.where(flags, positions + length, positions), axis=-1, stable=True)
    falses = tf.cumsum(tf.cast(~flags, tf.int32), axis=-1)
    last_false = tf.where(falses > 0, tf.gather(false_first, tf.maximum(falses - 1, 0), batch_dims=1), -1)
    return positions - last_false


class Compose:
    """Applies transforms one after the other, each with its own seed split from the call's seed.

    The call's seed comes from ``seed=`` or from the Compose's generator (started from its ``seed``);
    the transforms' own generators are not used.

    Example:
        >>> import tensorflow as tf
        >>> noise = Compose([TokenDropout(0.1, seed=0), LocalSwap(0.1, seed=1)])
        >>> noise(tf.constant("a b c"), 1, seed=tf.constant([3, 4]))[1]
        1
    """

    def __init__(self, transforms: Sequence[TokenTransform], seed: int | None = None):
        self.transforms = list(transforms)
        if not self.transforms:
            raise ValueError("Compose needs at least one transform.")
        self.seed = _check_seed("Compose", seed)
        self._generator = _seed_generator(self.seed)

    def __call__(self, *element, seed=None):
        if not element:
            raise TypeError("Compose needs an element: features, text, or (x, label, ...).")
        x, rest = element[0], element[1:]
        if seed is None:
            seed = self._generator.make_seeds(1)[:, 0]
        seeds = tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), len(self.transforms)))
        for transform, part in zip(self.transforms, seeds):
            x = transform.transform(x, part)
        return (x, *rest) if rest else x

    def get_config(self) -> dict:
        return {"transforms": [{"class_name": type(t).__name__, "config": t.get_config()} for t in self.transforms],
                "seed": self.seed}

    @classmethod
    def from_config(cls, config: dict) -> "Compose":
        classes = {c.__name__: c for c in (TokenDropout, RandomReplacement, LocalSwap)}
        transforms = []
        for item in config["transforms"]:
            if item["class_name"] not in classes:
                raise ValueError(f"Compose.from_config: unknown transform {item['class_name']!r}; "
                                 f"known: {', '.join(classes)}.")
            transforms.append(classes[item["class_name"]].from_config(item["config"]))
        return cls(transforms, seed=config.get("seed"))


# -- back-translation -----------------------------------------------------------------------------


class BackTranslation:
    """Paraphrases raw text by translating it and translating the translation back.

    ``forward_model`` and ``backward_model`` are any models with ``generate(list_of_strings, ...)``
    returning a list of strings, e.g. two ``keras_lm.tasks.Seq2SeqLM`` trained English -> Spanish and
    Spanish -> English (``applications/translation.yaml`` trains one direction; run it again with the
    languages swapped for the other). Generation runs eagerly, in batches of ``batch_size`` texts of
    similar lengths, outside any ``tf.data`` graph: ``augment`` reads a dataset, paraphrases its texts
    and returns a new dataset holding each original example followed by its paraphrase.

    Args:
        forward_model: translates a text into the pivot language.
        backward_model: translates the pivot text back.
        batch_size: texts per ``generate`` call.
        keep_identical: keep a paraphrase equal to its original (default: dropped, it adds nothing).
        **generate_kwargs: passed to both ``generate`` calls (e.g. ``sampler="beam", num_beams=4``;
            the default is greedy decoding, which is deterministic).

    Example:
        >>> back = BackTranslation(english_to_spanish, spanish_to_english)  # doctest: +SKIP
        >>> back.paraphrase(["A gripping, beautifully acted film."])  # doctest: +SKIP
        ['A film full of grip and well acted.']
        >>> augmented = back.augment(keras_lm.data.load("movie_snippets", split="train"))  # doctest: +SKIP
    """

    def __init__(self, forward_model, backward_model, batch_size: int = 32, keep_identical: bool = False,
                 **generate_kwargs):
        for role, model in (("forward_model", forward_model), ("backward_model", backward_model)):
            if not callable(getattr(model, "generate", None)):
                raise TypeError(f"BackTranslation: `{role}` must have a generate(texts) method (e.g. a "
                                f"keras_lm.tasks.Seq2SeqLM); got {type(model).__name__}.")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"BackTranslation: `batch_size` must be a positive integer, got {batch_size!r}.")
        self.forward_model = forward_model
        self.backward_model = backward_model
        self.batch_size = batch_size
        self.keep_identical = bool(keep_identical)
        self.generate_kwargs = {"sampler": "greedy", **generate_kwargs}

    def paraphrase(self, texts: Sequence[str]) -> list[str]:
        """The back-translation of each text, in order ("" where the pivot translation came out empty)."""
        texts = [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in texts]
        pivots = self._translate(self.forward_model, texts)
        return self._translate(self.backward_model, pivots)

    def _translate(self, model, texts: list[str]) -> list[str]:
        """Translations in the input order; texts without a word (nothing to translate) give ""."""
        outputs = [""] * len(texts)
        order = sorted((i for i, text in enumerate(texts) if text.strip()), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start: start + self.batch_size]
            try:
                translated = model.generate([texts[i] for i in chunk], **self.generate_kwargs)
            except ValueError as error:
                if "empty" not in str(error):
                    raise
                translated = [self._translate_one(model, texts[i]) for i in chunk]
            for i, text in zip(chunk, translated):
                outputs[i] = text
        return outputs

    def _translate_one(self, model, text: str) -> str:
        try:
            return model.generate([text], **self.generate_kwargs)[0]
        except ValueError as error:  # a text the tokenizer turns into no token
            if "empty" in str(error):
                return ""
            raise

    def augment(self, dataset: tf.data.Dataset, paraphrases: Sequence[str] | None = None,
                text_key: str = "text") -> tf.data.Dataset:
        """``dataset`` with each example followed by its paraphrase (labels and other fields carried).

        Elements may be text, ``(text, label, ...)`` tuples or dicts with ``text_key``, one example
        each (unbatched). A paraphrase that came out empty (or equal to its original, unless
        ``keep_identical``) is left out. ``paraphrases`` (one per example, in order) skips the
        generation, e.g. ones computed before and saved (see ``with_paraphrases``).
        """
        if paraphrases is None:
            texts = [_text_of(example, text_key).decode("utf-8") for example in _examples(dataset, text_key)]
            paraphrases = self.paraphrase(texts)
        return with_paraphrases(dataset, paraphrases, keep_identical=self.keep_identical, text_key=text_key)


def _examples(dataset: tf.data.Dataset, text_key: str) -> list:
    if not isinstance(dataset, tf.data.Dataset):
        raise TypeError(f"Back-translation augments a tf.data.Dataset, got {type(dataset).__name__}.")
    text_spec = _text_spec(dataset.element_spec, text_key)
    if text_spec.shape.rank != 0:
        raise ValueError("Back-translation takes one example per element (unbatch the dataset first); "
                         f"the text has shape {text_spec.shape}.")
    examples = list(dataset.as_numpy_iterator())
    if not examples:
        raise ValueError("Back-translation got an empty dataset.")
    return examples


def with_paraphrases(dataset: tf.data.Dataset, paraphrases: Sequence[str], keep_identical: bool = False,
                     text_key: str = "text") -> tf.data.Dataset:
    """``dataset`` (one example per element) with each example followed by a copy holding its paraphrase.

    ``paraphrases`` has one text per example, in order; an empty one (or one equal to its original,
    unless ``keep_identical``) adds nothing. Labels and every other field are carried.

    Example:
        >>> pairs = tf.data.Dataset.from_tensor_slices((["a fine film", "dull"], [1, 0]))
        >>> [(t.decode(), int(y)) for t, y in with_paraphrases(pairs, ["a good movie", ""]).as_numpy_iterator()]
        [('a fine film', 1), ('a good movie', 1), ('dull', 0)]
    """
    examples = _examples(dataset, text_key)
    if len(paraphrases) != len(examples):
        raise ValueError(f"{len(paraphrases)} paraphrases for {len(examples)} examples: give one per example.")
    rows = []
    for example, paraphrase in zip(examples, paraphrases):
        rows.append(example)
        text = _text_of(example, text_key).decode("utf-8")
        if paraphrase.strip() and (keep_identical or paraphrase.strip() != text.strip()):
            rows.append(_with_text(example, text_key, paraphrase.encode("utf-8")))
    return dataset_of_examples(rows, dataset.element_spec)


def _text_spec(spec, text_key: str) -> tf.TensorSpec:
    if isinstance(spec, dict):
        if text_key not in spec:
            raise ValueError(f"The dataset's examples have no {text_key!r}: they hold {sorted(spec)}.")
        spec = spec[text_key]
    elif isinstance(spec, tuple):
        spec = spec[0]
    if not isinstance(spec, tf.TensorSpec) or spec.dtype != tf.string:
        raise ValueError(f"The dataset's text must be tf.string; got {spec}.")
    return spec


def _text_of(example, text_key: str) -> bytes:
    if isinstance(example, dict):
        return example[text_key]
    return example[0] if isinstance(example, tuple) else example


def _with_text(example, text_key: str, text: bytes):
    if isinstance(example, dict):
        return {**example, text_key: text}
    if isinstance(example, tuple):
        return (text, *example[1:])
    return text


def dataset_of_examples(rows: list, spec) -> tf.data.Dataset:
    """A dataset of ``rows`` (numpy examples, as ``as_numpy_iterator`` gives them) with element spec ``spec``.

    Example:
        >>> spec = (tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.int64))
        >>> [(text, int(label)) for text, label in dataset_of_examples([(b"a", 1), (b"b", 0)], spec).as_numpy_iterator()]
        [(b'a', 1), (b'b', 0)]
    """
    flat_spec = tf.nest.flatten(spec)
    columns = [[] for _ in flat_spec]
    for row in rows:
        for column, value in zip(columns, tf.nest.flatten(row)):
            column.append(value)
    tensors = [tf.constant(np.asarray(column, dtype=object if s.dtype == tf.string else s.dtype.as_numpy_dtype),
                           dtype=s.dtype) for column, s in zip(columns, flat_spec)]
    return tf.data.Dataset.from_tensor_slices(tf.nest.pack_sequence_as(spec, tensors))
