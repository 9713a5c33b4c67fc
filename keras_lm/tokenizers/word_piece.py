"""WordPiece tokenizer layer: keras-hub's in-graph WordPiece plus vocabulary training and BERT specials."""
from __future__ import annotations

import os
from typing import Sequence, Union

import keras
import keras_hub
import tensorflow as tf
import tensorflow_text as tf_text
from keras_hub.src.utils.tensor_utils import no_convert_scope, preprocessing_function

from keras_lm.tokenizers.bert_normalization import bert_normalize, bert_words
from keras_lm.tokenizers.text import (
    as_string_tensor,
    ids_in_vocabulary,
    replace_invalid_utf8,
    sanitize_text,
    text_only,
)
from keras_lm.tokenizers.vocabulary_training import learn_word_piece_vocabulary

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)
"""Reserved tokens; a trained vocabulary holds them at ids 0..4 in this order."""
_SPECIAL_TOKEN_NAMES = ("pad_token", "unk_token", "cls_token", "sep_token", "mask_token")

Vocabulary = Union[Sequence[str], str, os.PathLike]


@keras.saving.register_keras_serializable(package="keras_lm")
class WordPiece(keras_hub.tokenizers.WordPieceTokenizer):
    """WordPiece tokenizer (BERT style) as a Keras layer: strings in, int32 token ids out.

    Text is normalized and split into words exactly as BERT's tokenizer (Hugging Face
    ``BertNormalizer`` + ``BertPreTokenizer``) does: CJK ideographs are surrounded by spaces,
    accents optionally stripped (NFD, then non-spacing marks dropped), text optionally
    lower-cased (per character, no case folding), then split on Unicode whitespace and
    punctuation (every non-alphanumeric ASCII symbol and Unicode P*), each punctuation character
    a word. Each word is split greedily into the longest vocabulary pieces (continuations
    prefixed ``##``); a word longer than ``max_input_chars_per_word`` characters, or with a part
    no piece covers, is ``[UNK]``. Invalid UTF-8 bytes are replaced by U+FFFD first, so any byte
    string tokenizes. A ``tf.string`` batch ``[B]`` gives a ``tf.RaggedTensor`` ``[B, None]``; a
    scalar gives a 1-D tensor. Works eagerly, in ``tf.data.Dataset.map`` and in ``tf.function``
    graphs saved with ``tf.saved_model.save`` (the loading process must import tensorflow_text).

    ``WordPiece.from_hf`` reads a Hugging Face BERT tokenizer (``vocab.txt``,
    ``tokenizer_config.json``, ``tokenizer.json``) and gives the ids of its fast tokenizer.

    Args:
        vocabulary: list of tokens, or path of a ``vocab.txt`` (one token per line). Must contain
            the five special tokens below (at any ids).
        lowercase: lower-case the text.
        strip_accents: remove accents; ``None`` means the same as ``lowercase`` (BERT uncased).
        split: split on whitespace and punctuation (``False``: inputs are pre-split words).
        split_on_cjk: split around CJK characters.
        suffix_indicator: prefix of continuation pieces.
        sequence_length: if set, outputs are dense, padded with 0 / truncated to this length.
        clean_text: as BERT, delete control characters (but tab, newline, carriage return),
            format characters (zero-width space, …), private-use characters, NUL and U+FFFD
            (invalid UTF-8). ``False`` turns control, format and space characters into spaces
            instead, so ``"a\\x00b"`` is two words and invalid bytes give ``[UNK]``.
        max_input_chars_per_word: longer words (in characters) are one ``[UNK]``.
        special_tokens_in_strings: special tokens written in the text (``"[MASK]"``) are their
            own id, as in Hugging Face tokenizers; otherwise they are split like any text.
        pad_token, unk_token, cls_token, sep_token, mask_token: the special tokens.

    Example:
        >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "king", "##s", "."]
        >>> tokenizer = WordPiece(vocab)
        >>> tokenizer("The kings.").numpy().tolist()
        [5, 6, 7, 8]
        >>> tokenizer(["the king", "Kings"]).to_list()
        [[5, 6], [6, 7]]
    """

    def __init__(
        self,
        vocabulary: Vocabulary,
        lowercase: bool = True,
        strip_accents: bool | None = None,
        split: bool = True,
        split_on_cjk: bool = True,
        suffix_indicator: str = "##",
        sequence_length: int | None = None,
        clean_text: bool = False,
        max_input_chars_per_word: int = 100,
        special_tokens_in_strings: bool = False,
        pad_token: str = PAD,
        unk_token: str = UNK,
        cls_token: str = CLS,
        sep_token: str = SEP,
        mask_token: str = MASK,
        **kwargs,
    ) -> None:
        tokens = (pad_token, unk_token, cls_token, sep_token, mask_token)
        self._special_token_strings = dict(zip(_SPECIAL_TOKEN_NAMES, map(str, tokens)))
        for name, token in self._special_token_strings.items():
            self._add_special_token(token, name)
        self._add_special_token(cls_token, "start_token")
        self._add_special_token(sep_token, "end_token")
        self.clean_text = bool(clean_text)
        self.max_input_chars_per_word = int(max_input_chars_per_word)
        kwargs.setdefault("dtype", "int32")
        kwargs.setdefault("_allow_python_workflow", False)  # always TensorFlow: same ids eagerly and in graphs
        kwargs.pop("oov_token", None)  # always unk_token
        super().__init__(
            vocabulary=vocabulary,
            lowercase=lowercase,
            strip_accents=lowercase if strip_accents is None else strip_accents,
            split=split,
            split_on_cjk=split_on_cjk,
            suffix_indicator=suffix_indicator,
            sequence_length=sequence_length,
            oov_token=unk_token,
            special_tokens_in_strings=special_tokens_in_strings,
            **kwargs,
        )

    # -- vocabulary -------------------------------------------------------------------------

    def set_vocabulary(self, vocabulary: Vocabulary | None) -> None:
        """Set the vocabulary from a list of tokens or a vocab.txt path (checked for the special tokens)."""
        if vocabulary is None:
            return super().set_vocabulary(None)
        if isinstance(vocabulary, (str, os.PathLike)):
            path = os.fspath(vocabulary)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"WordPiece vocabulary file not found: {path}")
            with open(path, encoding="utf-8") as file:
                _check_special_tokens([line.rstrip() for line in file], self._special_token_strings, source=path)
            return super().set_vocabulary(path)
        tokens = [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in vocabulary]
        _check_special_tokens(tokens, self._special_token_strings, source="the vocabulary")
        return super().set_vocabulary(tokens)

    def _set_vocabulary_tf(self) -> None:
        # Words are cut at max_input_chars_per_word characters before this kernel (which counts bytes).
        self._fast_word_piece = tf_text.FastWordpieceTokenizer(
            vocab=self.vocabulary,
            token_out_type=self.compute_dtype,
            suffix_indicator=self.suffix_indicator,
            unknown_token=self.oov_token,
            max_bytes_per_word=4 * self.max_input_chars_per_word,
            no_pretokenization=True,
            support_detokenization=True,
        )

    def save_vocabulary(self, path: str | os.PathLike) -> str:
        """Write the vocabulary to ``path`` as vocab.txt (one token per line, UTF-8); returns the path."""
        path = os.fspath(path)
        with open(path, "w", encoding="utf-8", newline="\n") as file:
            file.writelines(f"{token}\n" for token in self.get_vocabulary())
        return path

    @property
    def pad_id(self) -> int:
        return self.pad_token_id

    @property
    def unk_id(self) -> int:
        return self.unk_token_id

    @property
    def cls_id(self) -> int:
        return self.cls_token_id

    @property
    def sep_id(self) -> int:
        return self.sep_token_id

    @property
    def mask_id(self) -> int:
        return self.mask_token_id

    # -- tokenization -----------------------------------------------------------------------

    def tokenize(self, inputs, *args, **kwargs):
        """Token ids of ``inputs``: ``tf.RaggedTensor`` for a batch, 1-D ``tf.Tensor`` for a scalar."""
        self._check_vocabulary()
        with no_convert_scope():  # keep TensorFlow outputs (keras-hub turns ragged ones into lists)
            return self._tokenize_text(as_string_tensor(inputs))

    @preprocessing_function
    def _tokenize_text(self, inputs):
        self._maybe_initialized_tf()
        unbatched = isinstance(inputs, tf.Tensor) and inputs.shape.rank == 0
        if unbatched:
            inputs = tf.expand_dims(inputs, 0)
        if isinstance(inputs, tf.RaggedTensor):
            tokens = inputs.with_flat_values(self._tokens_of(inputs.flat_values))
        elif inputs.shape.rank == 1:
            tokens = self._tokens_of(inputs)
        else:
            ragged = tf.RaggedTensor.from_tensor(inputs)
            tokens = ragged.with_flat_values(self._tokens_of(ragged.flat_values))
        if not self.split:  # pre-split words: the pieces of all words of a row form one sequence
            tokens = tokens.merge_dims(-2, -1)
        if self.sequence_length:
            shape = tokens.shape.as_list()
            shape[-1] = self.sequence_length
            tokens = tokens.to_tensor(shape=shape)
        if unbatched:
            tokens = tf.squeeze(tokens, 0)
        return tokens

    def _tokens_of(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """Token ids ``[N, tokens]`` of a 1-D batch of texts (of words when ``split=False``)."""
        if self.split:
            words = bert_words(texts, self.lowercase, self.strip_accents, self.split_on_cjk, self.clean_text,
                               self._special_tokens_for_splitting() or ())
        else:
            texts = replace_invalid_utf8(texts) if self.clean_text else sanitize_text(texts)
            words = bert_normalize(texts, self.lowercase, self.strip_accents, False, self.clean_text)[:, tf.newaxis]
            words = tf.RaggedTensor.from_tensor(words)
        flat = words.flat_values
        too_long = tf.strings.length(flat, unit="UTF8_CHAR") > self.max_input_chars_per_word
        flat = tf.where(too_long, self.unk_token, flat)
        pieces = self._fast_word_piece.tokenize(flat)  # [words, pieces]
        return tf.RaggedTensor.from_row_splits(pieces.flat_values, tf.gather(pieces.row_splits, words.row_splits))

    def detokenize(self, inputs, *args, **kwargs):
        """Join pieces back into ``tf.string`` text (words separated by spaces).

        Ids must lie in ``[0, vocabulary_size())``: otherwise a ``TokenizerInputError`` (a
        ``ValueError``), or in a graph/SavedModel an ``InvalidArgumentError``, before tf-text runs.
        """
        inputs = ids_in_vocabulary(inputs, self.vocabulary_size(), "WordPiece.detokenize")
        with no_convert_scope():
            return super().detokenize(inputs, *args, **kwargs)

    # -- Hugging Face files, training and serialization ------------------------------------

    @classmethod
    def from_hf(cls, directory: str | os.PathLike, **overrides) -> "WordPiece":
        """The tokenizer of a Hugging Face BERT checkpoint directory, giving the ids of its fast tokenizer.

        Reads ``tokenizer.json`` (its ``BertNormalizer`` settings, WordPiece vocabulary, unknown
        token, ``max_input_chars_per_word`` and added tokens) or else ``vocab.txt`` with
        ``tokenizer_config.json`` (``do_lower_case``, ``strip_accents``, ``tokenize_chinese_chars``,
        the special tokens). The result normalizes text exactly as BERT does (``clean_text=True``)
        and treats special tokens written in the text as their id, so its ids equal
        ``transformers.AutoTokenizer.from_pretrained(directory)(text, add_special_tokens=False)``.

        Args:
            directory: the checkpoint (or tokenizer) directory.
            **overrides: constructor arguments replacing the ones read (e.g. ``sequence_length``).

        Raises:
            FileNotFoundError: the directory has neither ``tokenizer.json`` nor ``vocab.txt``.
            ValueError: ``tokenizer.json`` is not a BERT WordPiece tokenizer (named in the
                message), or the vocabulary lacks a special token.

        Example:
            >>> tokenizer = WordPiece.from_hf("path/to/bert-base-uncased")  # doctest: +SKIP
            >>> tokenizer("Hello, world!").numpy().tolist()  # doctest: +SKIP
            [7592, 1010, 2088, 999]
        """
        from keras_lm.tokenizers.hf_files import word_piece_options

        return cls(**{**word_piece_options(directory), **overrides})


    @classmethod
    def train(
        cls,
        text_dataset: tf.data.Dataset,
        vocabulary_size: int = 8000,
        lowercase: bool = True,
        strip_accents: bool | None = None,
        split_on_cjk: bool = True,
        suffix_indicator: str = "##",
        min_frequency: int = 2,
        **kwargs,
    ) -> "WordPiece":
        """Learn a vocabulary of at most ``vocabulary_size`` tokens from text and return the tokenizer.

        Uses tf-text's WordPiece vocabulary learner (the BERT one) on word counts from keras-hub's
        pre-tokenization; documents are split into lines first. ``[PAD]``, ``[UNK]``, ``[CLS]``,
        ``[SEP]``, ``[MASK]`` get ids 0..4, then single characters, then pieces by frequency.

        Args:
            text_dataset: ``tf.data.Dataset`` of strings, or of dicts with a ``"text"`` key.
            vocabulary_size: maximum vocabulary size (the learner stops within 5% below it, or
                earlier when no more pieces occur ``min_frequency`` times).
            lowercase, strip_accents, split_on_cjk, suffix_indicator: as in the constructor.
            min_frequency: pieces rarer than this are not added (single characters always are).
            **kwargs: passed to the constructor.

        Example:
            >>> texts = tf.data.Dataset.from_tensor_slices(["the king", "the kings", "a king"] * 5)
            >>> tokenizer = WordPiece.train(texts, vocabulary_size=40)
            >>> tokenizer.get_vocabulary()[:5]
            ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']
            >>> tokenizer.id_to_token(int(tokenizer("king")[0]))
            'king'
        """
        strip_accents = lowercase if strip_accents is None else strip_accents
        vocabulary = learn_word_piece_vocabulary(
            text_only(text_dataset),
            vocabulary_size=vocabulary_size,
            reserved_tokens=list(SPECIAL_TOKENS),
            lowercase=lowercase,
            strip_accents=strip_accents,
            split_on_cjk=split_on_cjk,
            suffix_indicator=suffix_indicator,
            min_frequency=min_frequency,
        )
        return cls(
            vocabulary,
            lowercase=lowercase,
            strip_accents=strip_accents,
            split_on_cjk=split_on_cjk,
            suffix_indicator=suffix_indicator,
            **kwargs,
        )

    def get_config(self) -> dict:
        config = super().get_config()
        config["vocabulary"] = list(self.get_vocabulary())
        config.pop("oov_token", None)  # always unk_token
        config.update(
            {
                "clean_text": self.clean_text,
                "max_input_chars_per_word": self.max_input_chars_per_word,
                **self._special_token_strings,
            }
        )
        return config


def _check_special_tokens(tokens: Sequence[str], special_tokens: dict, source: str) -> None:
    present = set(tokens)
    required = list(special_tokens.values())
    missing = [t for t in required if t not in present]
    if missing:
        raise ValueError(
            f"{source} is missing the special tokens {missing}: a WordPiece vocabulary must contain "
            f"{', '.join(required)} (WordPiece.train puts them at ids 0..4)."
        )
