"""RoBERTa input packing: raw text (one or two segments) to ``<s> a </s>`` / ``<s> a </s></s> b </s>`` rows."""
from __future__ import annotations

import os

import keras
import keras_hub
import tensorflow as tf
import tensorflow_text as tf_text
from keras_hub.src.utils.tensor_utils import no_convert_scope

from keras_lm.tokenizers.bert_preprocessor import TRUNCATIONS, LongestFirstTrimmer
from keras_lm.tokenizers.byte_pair import BytePair
from keras_lm.tokenizers.text import TokenizerInputError, checked

_TRIMMERS = {"round_robin": tf_text.RoundRobinTrimmer, "waterfall": tf_text.WaterfallTrimmer,
             "longest_first": LongestFirstTrimmer}


@keras.saving.register_keras_serializable(package="keras_lm")
class RobertaPreprocessor(keras.layers.Layer):
    """Tokenize one or two texts with a byte-level BPE and pack them the way RoBERTa reads them.

    One text gives ``<s> a </s>``, a pair ``<s> a </s></s> b </s>``, then ``<pad>`` up to
    ``sequence_length`` (padding on the right). Overlong texts are cut (``"longest_first"``, as
    Hugging Face tokenizers do: the longer text loses tokens first; or ``"round_robin"`` /
    ``"waterfall"``) so that the row, special tokens included, fits. RoBERTa has one segment type:
    ``segment_ids`` are all 0. ``padding_mask`` is true for every token that is not padding.

    Input: a ``tf.string`` batch ``[B]`` or a tuple/list ``(first, second)`` of them; scalars give
    unbatched outputs (e.g. inside ``tf.data.Dataset.map``). Pure TensorFlow ops, so it runs in
    ``tf.data`` and in serving graphs (the loading process imports tensorflow_text).

    Output: ``{"token_ids": int32 [B, L], "segment_ids": int32 [B, L], "padding_mask": bool [B, L]}``.

    The special ids (``cls_id`` = ``<s>``, ``sep_id`` = ``</s>``, ``pad_id``, ``mask_id``,
    ``unk_id``) are looked up in the tokenizer's vocabulary, and together with
    ``vocabulary_size()`` let ``keras_lm.pretraining.MaskedLM.masker_for(preprocessor)`` build
    the masking layer.

    Args:
        tokenizer: a ``BytePair`` tokenizer whose vocabulary holds the special tokens.
        sequence_length: packed length ``L`` (at least 4 for pairs).
        truncate: ``"longest_first"``, ``"round_robin"`` or ``"waterfall"``.
        start_token, end_token, pad_token, mask_token, unknown_token: RoBERTa's special tokens.
            ``mask_token`` and ``unknown_token`` may be missing from the vocabulary (no masking;
            ``unk_id`` falls back to ``pad_id``: a byte-level BPE has no unknown tokens).

    Example:
        >>> vocabulary = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "a": 4, "b": 5, "Ġ": 6, "Ġb": 7, "<mask>": 8}
        >>> preprocessor = RobertaPreprocessor(BytePair(vocabulary, ["Ġ b"], end_token="</s>"), sequence_length=9)
        >>> out = preprocessor((["a b"], ["b"]))
        >>> out["token_ids"].numpy().tolist()
        [[0, 4, 7, 2, 2, 5, 2, 1, 1]]
        >>> out["padding_mask"].numpy().astype(int).tolist()
        [[1, 1, 1, 1, 1, 1, 1, 0, 0]]
    """

    def __init__(
        self,
        tokenizer: BytePair,
        sequence_length: int = 512,
        truncate: str = "longest_first",
        start_token: str = "<s>",
        end_token: str = "</s>",
        pad_token: str = "<pad>",
        mask_token: str = "<mask>",
        unknown_token: str = "<unk>",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(tokenizer, dict):
            tokenizer = keras.saving.deserialize_keras_object(tokenizer)
        if sequence_length < 3:
            raise ValueError(f"sequence_length must be at least 3 (<s> a </s>); got {sequence_length}.")
        if truncate not in TRUNCATIONS:
            raise ValueError(f"truncate must be one of {', '.join(TRUNCATIONS)}; got {truncate!r}.")
        self.tokenizer = tokenizer
        self.sequence_length = int(sequence_length)
        self.truncate = truncate
        self.start_token, self.end_token, self.pad_token = start_token, end_token, pad_token
        self.mask_token, self.unknown_token = mask_token, unknown_token
        index = dict(getattr(tokenizer, "vocabulary", None) or {})  # token -> id
        missing = [f"{role}={token!r}" for role, token in (("start_token", start_token), ("end_token", end_token),
                                                            ("pad_token", pad_token)) if token not in index]
        if missing:
            raise ValueError(
                f"RobertaPreprocessor: the tokenizer's vocabulary has no {', '.join(missing)}; pass the special "
                "tokens of this vocabulary (or a tokenizer trained with them, e.g. BytePair.train(..., "
                "special_tokens=['<s>', '<pad>', '</s>', '<unk>', '<mask>']))."
            )
        self.cls_id, self.sep_id, self.pad_id = index[start_token], index[end_token], index[pad_token]
        self._mask_id = index.get(mask_token)
        self.unk_id = index.get(unknown_token, self.pad_id)
        self.packer = keras_hub.layers.MultiSegmentPacker(
            sequence_length=self.sequence_length,
            start_value=self.cls_id,
            end_value=self.sep_id,
            sep_value=[self.sep_id, self.sep_id],
            pad_value=self.pad_id,
            truncate="round_robin",  # the segments already fit
            _allow_python_workflow=False,
        )
        self._convert_input_args = False  # strings and tuples of strings go to call() as given
        self._allow_non_tensor_positional_args = True
        self.built = True

    @property
    def mask_id(self) -> int:
        if self._mask_id is None:
            raise ValueError(f"RobertaPreprocessor: the tokenizer's vocabulary has no mask token {self.mask_token!r}.")
        return self._mask_id

    def vocabulary_size(self) -> int:
        return int(self.tokenizer.vocabulary_size())

    def call(self, inputs) -> dict[str, tf.Tensor]:
        segments = _as_segments(inputs)
        if not 1 <= len(segments) <= 2:
            raise ValueError(f"RobertaPreprocessor takes one or two segments; got {len(segments)}.")
        with tf.device("cpu"), no_convert_scope():
            segments = _same_shape(segments)
            unbatched = segments[0].shape.rank == 0
            if unbatched:
                segments = tuple(s[tf.newaxis] for s in segments)
            tokens = [tf.cast(self.tokenizer(s), tf.int32) for s in segments]
            specials = 2 if len(tokens) == 1 else 4
            tokens = _TRIMMERS[self.truncate](max_seq_length=self.sequence_length - specials).trim(tokens)
            lengths = specials + sum(tf.cast(t.row_lengths(), tf.int32) for t in tokens)
            token_ids, _ = self.packer(tuple(tokens))
            outputs = {
                "token_ids": tf.cast(token_ids, tf.int32),
                "segment_ids": tf.zeros_like(token_ids, dtype=tf.int32),
                "padding_mask": tf.sequence_mask(lengths, self.sequence_length),
            }
            return {name: value[0] for name, value in outputs.items()} if unbatched else outputs

    @classmethod
    def from_hf(
        cls,
        directory: str | os.PathLike,
        sequence_length: int | None = None,
        truncate: str = "longest_first",
        **tokenizer_overrides,
    ) -> "RobertaPreprocessor":
        """The preprocessor of a Hugging Face RoBERTa checkpoint directory (``BytePair.from_hf`` + packing).

        Its outputs equal transformers' ``tokenizer(texts, text_pairs, padding="max_length",
        truncation=True, max_length=sequence_length)``: ``token_ids`` = ``input_ids``,
        ``padding_mask`` = ``attention_mask``. The special tokens are read from
        ``tokenizer_config.json`` (``cls_token``, ``sep_token``, ``pad_token``, ``mask_token``,
        ``unk_token``) when it names them.

        Args:
            directory: the checkpoint (or tokenizer) directory.
            sequence_length: packed length; defaults to ``model_max_length`` of
                ``tokenizer_config.json`` when it sets one (512 for RoBERTa).
            truncate: how overlong texts are cut; Hugging Face's default is ``"longest_first"``.
            **tokenizer_overrides: passed to ``BytePair.from_hf``.

        Example:
            >>> preprocessor = RobertaPreprocessor.from_hf("path/to/roberta", sequence_length=128)  # doctest: +SKIP
            >>> preprocessor((["The cat sat."], ["It purred."]))["token_ids"].shape  # doctest: +SKIP
            TensorShape([1, 128])
        """
        from keras_lm.tokenizers.hf_files import (
            TOKENIZER_CONFIG_FILE,
            TokenizerFiles,
            byte_pair_options,
            model_max_length,
            read_json,
        )

        if sequence_length is None:
            sequence_length = model_max_length(directory)
            if sequence_length is None:
                raise ValueError(
                    f"RobertaPreprocessor.from_hf: '{os.fspath(directory)}' sets no model_max_length in "
                    "tokenizer_config.json; pass sequence_length=."
                )
        path = os.path.join(os.fspath(directory), TOKENIZER_CONFIG_FILE)
        files = TokenizerFiles(os.fspath(directory), config=read_json(path) if os.path.isfile(path) else {})
        names = {"start_token": "cls_token", "end_token": "sep_token", "pad_token": "pad_token",
                 "mask_token": "mask_token", "unknown_token": "unk_token"}
        tokens = {argument: files.special_token(name) for argument, name in names.items()}
        options = byte_pair_options(directory)
        # vocab.json + merges.txt: tokenizer_config.json's mask/cls/sep tokens are special tokens too
        # (matched whole in text, as transformers does), not only the added tokens it lists.
        known = {options["end_token"], *options["special_tokens"]}
        options["special_tokens"] = [*options["special_tokens"], *sorted(
            {token for token in tokens.values() if token and token in options["vocabulary"] and token not in known})]
        tokenizer = BytePair(**{**options, **tokenizer_overrides})
        return cls(tokenizer, sequence_length=sequence_length, truncate=truncate,
                   **{argument: token for argument, token in tokens.items() if token is not None})

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "tokenizer": keras.saving.serialize_keras_object(self.tokenizer),
                "sequence_length": self.sequence_length,
                "truncate": self.truncate,
                "start_token": self.start_token,
                "end_token": self.end_token,
                "pad_token": self.pad_token,
                "mask_token": self.mask_token,
                "unknown_token": self.unknown_token,
            }
        )
        return config

    @classmethod
    def from_config(cls, config: dict) -> "RobertaPreprocessor":
        config = dict(config)
        config["tokenizer"] = keras.saving.deserialize_keras_object(config["tokenizer"])
        return cls(**config)


def _as_segments(inputs) -> tuple:
    """A tuple (or a list of tensors/lists) is segments; anything else, a list of strings included, is one."""
    if isinstance(inputs, tuple):
        return inputs
    if isinstance(inputs, list) and inputs and not isinstance(inputs[0], (str, bytes)):
        return tuple(inputs)
    return (inputs,)


def _same_shape(segments: tuple) -> tuple:
    """The segments as tensors, once checked to have the same shape (one second text per first text)."""
    segments = tuple(s if isinstance(s, tf.Tensor) else tf.convert_to_tensor(s) for s in segments)
    if len(segments) < 2:
        return segments
    first, second = segments
    message = "RobertaPreprocessor: the two texts of a pair must have the same shape (one second text per first text); got shapes"
    if not first.shape.is_compatible_with(second.shape):
        raise TokenizerInputError(f"{message} {first.shape} and {second.shape}.")
    if first.shape.is_fully_defined() and second.shape.is_fully_defined():
        return first, second
    first_shape, second_shape = tf.shape(first), tf.shape(second)
    return checked((first, second), tf.reduce_all(tf.equal(first_shape, second_shape)), message,
                   [first_shape, "and", second_shape])
