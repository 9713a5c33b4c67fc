"""WordPiece tokenizer layer: keras-hub's in-graph WordPiece plus vocabulary training and BERT specials."""
from __future__ import annotations

import os
from typing import Sequence, Union

import keras
import keras_hub
import tensorflow as tf
from keras_hub.src.utils.tensor_utils import no_convert_scope

from keras_lm.tokenizers.text import ids_in_vocabulary, sanitize_text, text_only
from keras_lm.tokenizers.vocabulary_training import learn_word_piece_vocabulary

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)
"""Reserved tokens; a trained vocabulary holds them at ids 0..4 in this order."""

Vocabulary = Union[Sequence[str], str, os.PathLike]


@keras.saving.register_keras_serializable(package="keras_lm")
class WordPiece(keras_hub.tokenizers.WordPieceTokenizer):
    """WordPiece tokenizer (BERT style) as a Keras layer: strings in, int32 token ids out.

    Text is split on whitespace, control characters and punctuation, optionally lower-cased
    and accent-stripped, then each word is split greedily into the longest vocabulary pieces
    (continuations prefixed ``##``). Invalid UTF-8 bytes are replaced by U+FFFD and control
    characters (NUL included) and Unicode spaces (e.g. no-break space) by spaces first, so any
    byte string tokenizes. A ``tf.string`` batch ``[B]`` gives a ``tf.RaggedTensor`` ``[B, None]``; a scalar gives a 1-D tensor. Works eagerly, in ``tf.data.Dataset.map`` and in ``tf.function``
    graphs saved with ``tf.saved_model.save`` (the loading process must import tensorflow_text).

    Args:
        vocabulary: list of tokens, or path of a ``vocab.txt`` (one token per line). Must contain
            ``[PAD]``, ``[UNK]``, ``[CLS]``, ``[SEP]`` and ``[MASK]`` (at any ids).
        lowercase: lower-case (Unicode case folding) before splitting into pieces.
        strip_accents: remove accents; ``None`` means the same as ``lowercase`` (BERT uncased).
        split: split on whitespace and punctuation (``False``: inputs are pre-split words).
        split_on_cjk: split around CJK characters.
        suffix_indicator: prefix of continuation pieces.
        sequence_length: if set, outputs are dense, padded with 0 / truncated to this length.

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
        **kwargs,
    ) -> None:
        for token, name in ((PAD, "pad_token"), (UNK, "unk_token"), (CLS, "cls_token"),
                            (SEP, "sep_token"), (MASK, "mask_token"),
                            (CLS, "start_token"), (SEP, "end_token")):
            self._add_special_token(token, name)
        kwargs.setdefault("dtype", "int32")
        kwargs.setdefault("_allow_python_workflow", False)  # always TensorFlow: same ids eagerly and in graphs
        super().__init__(
            vocabulary=vocabulary,
            lowercase=lowercase,
            strip_accents=lowercase if strip_accents is None else strip_accents,
            split=split,
            split_on_cjk=split_on_cjk,
            suffix_indicator=suffix_indicator,
            sequence_length=sequence_length,
            oov_token=UNK,
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
                _check_special_tokens([line.rstrip() for line in file], source=path)
            return super().set_vocabulary(path)
        tokens = [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in vocabulary]
        _check_special_tokens(tokens, source="the vocabulary")
        return super().set_vocabulary(tokens)

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
        with no_convert_scope():  # keep TensorFlow outputs (keras-hub turns ragged ones into lists)
            return super().tokenize(sanitize_text(inputs), *args, **kwargs)

    def detokenize(self, inputs, *args, **kwargs):
        """Join pieces back into ``tf.string`` text (words separated by spaces).

        Ids must lie in ``[0, vocabulary_size())``: otherwise a ``TokenizerInputError`` (a
        ``ValueError``), or in a graph/SavedModel an ``InvalidArgumentError``, before tf-text runs.
        """
        inputs = ids_in_vocabulary(inputs, self.vocabulary_size(), "WordPiece.detokenize")
        with no_convert_scope():
            return super().detokenize(inputs, *args, **kwargs)

    # -- training and serialization ---------------------------------------------------------

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
        config.pop("oov_token", None)  # always [UNK]
        return config


def _check_special_tokens(tokens: Sequence[str], source: str) -> None:
    missing = [t for t in SPECIAL_TOKENS if t not in set(tokens)]
    if missing:
        raise ValueError(
            f"{source} is missing the special tokens {missing}: a WordPiece vocabulary must contain "
            f"{', '.join(SPECIAL_TOKENS)} (WordPiece.train puts them at ids 0..4)."
        )
