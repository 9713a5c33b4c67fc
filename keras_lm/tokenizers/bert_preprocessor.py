"""BERT input packing: raw text (one or two segments) to token_ids, segment_ids and padding_mask."""
from __future__ import annotations

import os

import keras
import keras_hub
import tensorflow as tf
from keras_hub.src.utils.tensor_utils import no_convert_scope

from keras_lm.tokenizers.text import TokenizerInputError, checked
from keras_lm.tokenizers.word_piece import WordPiece


@keras.saving.register_keras_serializable(package="keras_lm")
class BertPreprocessor(keras.layers.Layer):
    """Tokenize one or two text segments and pack them as ``[CLS] a [SEP]`` or ``[CLS] a [SEP] b [SEP]``.

    Segments are truncated (``"round_robin"``: take tokens alternately; ``"waterfall"``: the first
    segment first; ``"longest_first"``: cut the longer segment, as Hugging Face tokenizers do) so
    that the packed sequence, special tokens included, fits ``sequence_length``; the rest is
    padded with ``[PAD]``. Segment ids are 0 for ``[CLS]``, the first segment and its
    ``[SEP]``, and 1 for the second segment and the final ``[SEP]``.

    Input: a ``tf.string`` batch ``[B]`` (one segment) or a tuple/list ``(first, second)`` of them;
    scalars work too (e.g. inside ``tf.data.Dataset.map``) and give unbatched outputs. Any bytes are
    accepted: invalid UTF-8 is replaced by U+FFFD, control characters count as whitespace. The two
    segments of a pair must have the same shape (one second text per first text): otherwise a
    ``TokenizerInputError`` (a ``ValueError``), or in a graph/SavedModel an ``InvalidArgumentError``,
    before any text is tokenized.

    Output: ``{"token_ids": int32 [B, L], "segment_ids": int32 [B, L], "padding_mask": bool [B, L]}``.

    Args:
        tokenizer: a ``WordPiece`` tokenizer.
        sequence_length: packed length ``L``.
        truncate: ``"round_robin"``, ``"waterfall"`` or ``"longest_first"``.

    Example:
        >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "king", "is", "dead", "long", "live"]
        >>> preprocessor = BertPreprocessor(WordPiece(vocab), sequence_length=8)
        >>> out = preprocessor((["The king is dead."], ["Long live the king!"]))
        >>> out["token_ids"].numpy().tolist()
        [[2, 5, 6, 7, 3, 9, 10, 3]]
        >>> out["segment_ids"].numpy().tolist()
        [[0, 0, 0, 0, 0, 1, 1, 1]]
    """

    def __init__(
        self,
        tokenizer: WordPiece,
        sequence_length: int = 128,
        truncate: str = "round_robin",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(tokenizer, dict):
            tokenizer = keras.saving.deserialize_keras_object(tokenizer)
        if sequence_length < 3:
            raise ValueError(f"sequence_length must be at least 3 ([CLS] a [SEP]); got {sequence_length}.")
        if truncate not in TRUNCATIONS:
            raise ValueError(f"truncate must be one of {', '.join(TRUNCATIONS)}; got {truncate!r}.")
        self.tokenizer = tokenizer
        self.sequence_length = int(sequence_length)
        self.truncate = truncate
        self.packer = keras_hub.layers.MultiSegmentPacker(
            sequence_length=self.sequence_length,
            start_value=tokenizer.cls_id,
            end_value=tokenizer.sep_id,
            pad_value=tokenizer.pad_id,
            truncate="round_robin" if truncate == "longest_first" else truncate,  # already fitting then
            _allow_python_workflow=False,
        )
        self._convert_input_args = False  # strings and tuples of strings go to call() as given
        self._allow_non_tensor_positional_args = True
        self.built = True

    def call(self, inputs) -> dict[str, tf.Tensor]:
        segments = _as_segments(inputs)
        if not 1 <= len(segments) <= 2:
            raise ValueError(f"BertPreprocessor takes one or two segments; got {len(segments)}.")
        with tf.device("cpu"), no_convert_scope():
            segments = _same_shape(segments)
            tokens = [self.tokenizer(s) for s in segments]
            if self.truncate == "longest_first":
                budget = self.sequence_length - 1 - len(tokens)
                tokens = LongestFirstTrimmer(budget).trim(tokens)
            token_ids, segment_ids = self.packer(tuple(tokens))
            return {
                "token_ids": tf.cast(token_ids, tf.int32),
                "segment_ids": tf.cast(segment_ids, tf.int32),
                "padding_mask": tf.not_equal(token_ids, self.tokenizer.pad_id),
            }

    @classmethod
    def from_hf(
        cls,
        directory: str | os.PathLike,
        sequence_length: int | None = None,
        truncate: str = "longest_first",
        **tokenizer_overrides,
    ) -> "BertPreprocessor":
        """The preprocessor of a Hugging Face BERT checkpoint directory (``WordPiece.from_hf`` + packing).

        Its outputs equal transformers' ``tokenizer(texts, text_pairs, padding="max_length",
        truncation=True, max_length=sequence_length)``: ``token_ids`` = ``input_ids``,
        ``segment_ids`` = ``token_type_ids``, ``padding_mask`` = ``attention_mask``.

        Args:
            directory: the checkpoint (or tokenizer) directory.
            sequence_length: packed length; defaults to ``model_max_length`` of
                ``tokenizer_config.json`` when it sets one.
            truncate: how overlong pairs are cut; Hugging Face's default is ``"longest_first"``.
            **tokenizer_overrides: passed to ``WordPiece.from_hf``.

        Example:
            >>> preprocessor = BertPreprocessor.from_hf("path/to/bert", sequence_length=128)  # doctest: +SKIP
            >>> preprocessor((["The cat sat."], ["It purred."]))["token_ids"].shape  # doctest: +SKIP
            TensorShape([1, 128])
        """
        from keras_lm.tokenizers.hf_files import model_max_length

        tokenizer = WordPiece.from_hf(directory, **tokenizer_overrides)
        if sequence_length is None:
            sequence_length = model_max_length(directory)
            if sequence_length is None:
                raise ValueError(
                    f"BertPreprocessor.from_hf: '{os.fspath(directory)}' sets no model_max_length in "
                    "tokenizer_config.json; pass sequence_length=."
                )
        return cls(tokenizer, sequence_length=sequence_length, truncate=truncate)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "tokenizer": keras.saving.serialize_keras_object(self.tokenizer),
                "sequence_length": self.sequence_length,
                "truncate": self.truncate,
            }
        )
        return config

    @classmethod
    def from_config(cls, config: dict) -> "BertPreprocessor":
        config = dict(config)
        config["tokenizer"] = keras.saving.deserialize_keras_object(config["tokenizer"])
        return cls(**config)


TRUNCATIONS = ("round_robin", "waterfall", "longest_first")


class LongestFirstTrimmer:
    """Hugging Face tokenizers' ``longest_first`` truncation of one or two token segments.

    A pair longer than ``max_seq_length`` loses tokens from its longer segment until both are
    equally long, then both lose tokens alike; of an odd budget, the longer segment (the second
    on a tie) keeps the extra token. A single segment keeps its first ``max_seq_length`` tokens.
    Works on ``[batch, (tokens)]`` ``tf.RaggedTensor`` s or 1-D tensors (one unbatched sequence).

    Example:
        >>> trimmer = LongestFirstTrimmer(max_seq_length=5)
        >>> [s.to_list() for s in trimmer.trim([tf.ragged.constant([[1, 2, 3, 4]]), tf.ragged.constant([[5, 6, 7]])])]
        [[[1, 2, 3]], [[5, 6]]]
    """

    def __init__(self, max_seq_length: int) -> None:
        self.max_seq_length = int(max_seq_length)

    def trim(self, segments) -> list:
        if not 1 <= len(segments) <= 2:
            raise ValueError(f"LongestFirstTrimmer takes one or two segments; got {len(segments)}.")
        unbatched = not isinstance(segments[0], tf.RaggedTensor) and segments[0].shape.rank == 1
        if unbatched:
            segments = [tf.RaggedTensor.from_tensor(s[tf.newaxis]) for s in segments]
        budget = tf.constant(self.max_seq_length, tf.int64)
        lengths = [s.row_lengths() for s in segments]
        if len(segments) == 1:
            keep = [tf.minimum(lengths[0], budget)]
        else:
            first, second = lengths
            shorter = tf.minimum(first, second)
            halves = tf.where(first > second, budget - budget // 2, budget // 2)
            keep_first = tf.where(
                first + second <= budget, first,
                tf.where(2 * shorter <= budget, tf.where(first < second, first, budget - second), halves),
            )
            keep = [keep_first, tf.minimum(second, budget - keep_first)]
        trimmed = [
            tf.ragged.boolean_mask(s, tf.ragged.range(n) < k[:, tf.newaxis]) for s, n, k in zip(segments, lengths, keep)
        ]
        return [t.flat_values for t in trimmed] if unbatched else trimmed


def _as_segments(inputs) -> tuple:
    """A tuple (or a list of tensors/lists) is segments; anything else, a list of strings included, is one."""
    if isinstance(inputs, tuple):
        return inputs
    if isinstance(inputs, list) and inputs and not isinstance(inputs[0], (str, bytes)):
        return tuple(inputs)
    return (inputs,)


def _same_shape(segments: tuple) -> tuple:
    """The segments as tensors, once checked to have the same shape (tf-text crashes otherwise)."""
    if len(segments) < 2:
        return segments
    first, second = (s if isinstance(s, tf.Tensor) else tf.convert_to_tensor(s) for s in segments)
    message = (
        "BertPreprocessor: the two segments of a pair must have the same shape (one second text "
        "for each first text); got shapes"
    )
    if not first.shape.is_compatible_with(second.shape):
        raise TokenizerInputError(f"{message} {_dims(first)} and {_dims(second)}.")
    if first.shape.is_fully_defined() and second.shape.is_fully_defined():
        return first, second  # known to be equal: no run-time check (e.g. scalars in tf.data)
    first_shape, second_shape = tf.shape(first), tf.shape(second)
    same = tf.reduce_all(tf.equal(first_shape, second_shape))
    return checked((first, second), same, message, [first_shape, "and", second_shape])


def _dims(tensor: tf.Tensor):
    return tensor.shape.as_list() if tensor.shape.rank is not None else "unknown"
