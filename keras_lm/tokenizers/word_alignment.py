"""Word / sub-word alignment for tagging: pre-split words in, packed encoder inputs plus word ids out.

Tagging datasets (CoNLL-2003 and its kin) give one label per *word*; an encoder sees sub-word
*tokens*. ``WordAligner`` tokenizes each word on its own, packs the pieces of a sentence as
``[CLS] pieces [SEP]`` (as ``BertPreprocessor`` packs one segment), and records for each token the
index of the word it came from (``-1`` for ``[CLS]``, ``[SEP]`` and padding). A word's label goes to
its first piece; its other pieces get weight 0, so the loss sees each word once — the convention
of BERT's NER fine-tuning and of Hugging Face's ``word_ids()``. ``split_words`` splits raw text into
words the way BERT's basic tokenizer does (whitespace, each punctuation character a word), so a
served tagger can return one tag per word. Everything is TensorFlow ops: it runs in
``tf.data.Dataset.map`` and in serving graphs.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras_hub.src.utils.tensor_utils import no_convert_scope

from keras_lm.tokenizers.bert_normalization import BERT_CJK, split_bert_words
from keras_lm.tokenizers.text import replace_invalid_utf8

#: The word index of tokens that belong to no word ([CLS], [SEP], padding).
NO_WORD = -1


def split_words(text) -> tf.RaggedTensor:
    """Words of each raw text of a 1-D ``tf.string`` batch, split as BERT's basic tokenizer splits.

    Unicode whitespace separates words; every punctuation character and every CJK ideograph is a
    word of its own. The words keep their original spelling (no lower-casing), so they can be
    shown next to their tags. Invalid UTF-8 becomes U+FFFD.

    Example:
        >>> split_words(tf.constant(["Mr. Smith went to Washington, D.C."])).to_list()
        [[b'Mr', b'.', b'Smith', b'went', b'to', b'Washington', b',', b'D', b'.', b'C', b'.']]
    """
    text = tf.convert_to_tensor(text, tf.string)
    if text.shape.rank != 1:
        raise ValueError(f"split_words takes a 1-D batch of strings; got shape {text.shape}.")
    text = replace_invalid_utf8(text)
    text = tf.strings.regex_replace(text, BERT_CJK, r" \0 ")
    return split_bert_words(text)


def _ids_of(owners: tuple, names: tuple[str, ...]):
    """The first of ``names`` set on the first owner that has one (a preprocessor, then its tokenizer)."""
    for owner in owners:
        for name in names:
            value = getattr(owner, name, None)
            if isinstance(value, (int, np.integer)):
                return int(value)
    return None


@keras.saving.register_keras_serializable(package="keras_lm")
class WordAligner(keras.layers.Layer):
    """Packs pre-split words as ``[CLS] pieces [SEP]`` and aligns per-word labels to first pieces.

    Input: words, a ``tf.RaggedTensor`` ``[batch, (words)]`` of ``tf.string`` (or nested Python
    lists), and optionally ``labels`` ``[batch, (words)]`` of integers (one per word). A word is
    tokenized on its own (for byte-level BPE with ``word_prefix=" "``, as RoBERTa reads words); it
    may become several pieces, or none (a word of deleted characters).

    Output dict (``L = sequence_length``):
        ``token_ids``, ``segment_ids`` (all 0), ``padding_mask`` (bool): the encoder inputs;
        ``word_ids`` int32 ``[batch, L]``: the word each token came from, ``-1`` for special and
        padding tokens (Hugging Face's ``word_ids()`` with ``None`` as ``-1``);
        ``first_piece`` bool ``[batch, L]``: the token is its word's first piece;
        ``num_words`` int32 ``[batch]``; ``untagged_words`` int32 ``[batch]``: words that have no
        first piece in the packed sequence (cut by truncation, or tokenized to nothing);
        with labels: ``labels`` int32 ``[batch, L]`` (the word's label at its first piece, 0
        elsewhere) and ``label_weights`` float32 ``[batch, L]`` (1 at first pieces, 0 elsewhere).

    Args:
        tokenizer: a ``WordPiece`` or ``BytePair`` tokenizer (strings -> ragged ids), a
            ``BertPreprocessor`` (its tokenizer is used), or any single-segment packing
            preprocessor such as a reloaded ``SavedModelPreprocessor`` (each word is packed on
            its own and its pieces are read between the first and the last real token).
        sequence_length: packed length; defaults to the preprocessor's.
        word_prefix: prepended to every word before tokenizing (``" "`` for byte-level BPE).
        start_id, end_id, pad_id: special ids; default to the tokenizer's ``cls_id``/``sep_id``/
            ``pad_id`` (``start_token_id``/``end_token_id``/``pad_token_id`` for other tokenizers).

    Example:
        >>> from keras_lm.tokenizers.word_piece import WordPiece
        >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "new", "york", "##er", "is", "big"]
        >>> aligner = WordAligner(WordPiece(vocab), sequence_length=8)
        >>> out = aligner(tf.ragged.constant([["New", "Yorker", "is", "big"]]), tf.ragged.constant([[1, 2, 0, 0]]))
        >>> out["token_ids"].numpy().tolist()
        [[2, 5, 6, 7, 8, 9, 3, 0]]
        >>> out["word_ids"].numpy().tolist()
        [[-1, 0, 1, 1, 2, 3, -1, -1]]
        >>> out["labels"].numpy().tolist(), out["label_weights"].numpy().tolist()
        ([[0, 1, 2, 0, 0, 0, 0, 0]], [[0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0]])
    """

    def __init__(self, tokenizer, sequence_length: int | None = None, word_prefix: str = "",
                 start_id: int | None = None, end_id: int | None = None, pad_id: int | None = None, **kwargs):
        kwargs.pop("trainable", None)
        super().__init__(trainable=False, **kwargs)
        if isinstance(tokenizer, dict):
            tokenizer = keras.saving.deserialize_keras_object(tokenizer)
        self.tokenizer = tokenizer
        source = getattr(tokenizer, "tokenizer", None) or tokenizer  # a BertPreprocessor's tokenizer
        self._packs_words = getattr(tokenizer, "tokenizer", None) is None and hasattr(tokenizer, "sequence_length") \
            and not hasattr(tokenizer, "vocabulary_size")
        packed_ids = self._special_ids_of_packing() if self._packs_words else {}
        owners = (tokenizer, source)
        self.start_id = start_id if start_id is not None else packed_ids.get("start", _ids_of(
            owners, ("cls_id", "start_token_id", "cls_token_id")))
        self.end_id = end_id if end_id is not None else packed_ids.get("end", _ids_of(
            owners, ("sep_id", "end_token_id", "sep_token_id")))
        self.pad_id = pad_id if pad_id is not None else packed_ids.get("pad", _ids_of(
            owners, ("pad_id", "pad_token_id")) or 0)
        if self.start_id is None or self.end_id is None:
            raise ValueError(
                f"WordAligner cannot tell the start/end token ids of {type(source).__name__}; pass start_id= and end_id=."
            )
        if sequence_length is None:
            sequence_length = getattr(tokenizer, "sequence_length", None)
        if sequence_length is None or int(sequence_length) < 3:
            raise ValueError(f"WordAligner needs sequence_length >= 3 ([CLS] word [SEP]); got {sequence_length}.")
        self.sequence_length = int(sequence_length)
        self.word_prefix = str(word_prefix)
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        self.built = True

    # -- pieces of each word -------------------------------------------------------------------

    def _special_ids_of_packing(self) -> dict:
        """[CLS], [SEP] and [PAD] ids of a packing preprocessor, read from the packing of ''."""
        packed = self.tokenizer(tf.constant([""]))
        ids = tf.cast(packed["token_ids"][0], tf.int32).numpy().tolist()
        return {"start": ids[0], "end": ids[1], "pad": ids[2] if len(ids) > 2 else 0}

    def word_pieces(self, words: tf.Tensor) -> tf.RaggedTensor:
        """Token ids ``[N, (pieces)]`` of each word of a 1-D ``tf.string`` batch of words."""
        if self.word_prefix:
            words = tf.strings.join([self.word_prefix, words])
        if self._packs_words:
            packed = self.tokenizer(words)
            ids, lengths = tf.cast(packed["token_ids"], tf.int32), tf.reduce_sum(
                tf.cast(packed["padding_mask"], tf.int32), axis=1)
            inner = tf.RaggedTensor.from_tensor(ids[:, 1:], lengths=tf.maximum(lengths - 2, 0))
            return inner
        source = getattr(self.tokenizer, "tokenizer", None) or self.tokenizer
        pieces = source(words)
        if not isinstance(pieces, tf.RaggedTensor):
            pieces = tf.RaggedTensor.from_tensor(pieces[:, tf.newaxis] if pieces.shape.rank == 1 else pieces)
        return tf.cast(pieces, tf.int32)

    # -- packing ---------------------------------------------------------------------------------

    def call(self, words, labels=None) -> dict:
        with tf.device("cpu"), no_convert_scope():
            words = _as_ragged(words, tf.string, "words")
            if labels is not None:
                labels = _as_ragged(labels, tf.int32, "labels")
                labels = _check_same_lengths(words, labels)
            return self._pack(words, labels)

    def _pack(self, words: tf.RaggedTensor, labels) -> dict:
        budget = self.sequence_length - 2
        flat_words = words.flat_values
        pieces = self.word_pieces(flat_words)  # [N, (P)]
        counts = tf.cast(pieces.row_lengths(), tf.int32)
        word_index = tf.ragged.range(tf.cast(words.row_lengths(), tf.int32)).flat_values  # [N]
        flat_word_ids = tf.repeat(word_index, counts)  # one per piece
        flat_first = tf.equal(tf.ragged.range(counts).flat_values, 0)
        splits = tf.gather(pieces.row_splits, words.row_splits)  # pieces per sentence
        token_ids = tf.RaggedTensor.from_row_splits(pieces.flat_values, splits)[:, :budget]
        word_ids = tf.RaggedTensor.from_row_splits(flat_word_ids, splits)[:, :budget]
        first = tf.RaggedTensor.from_row_splits(flat_first, splits)[:, :budget]
        batch = tf.cast(words.nrows(), tf.int32)
        num_words = tf.cast(words.row_lengths(), tf.int32)
        tagged = tf.reduce_sum(tf.cast(first, tf.int32), axis=1)

        def pack(values, start, end, pad, dtype):
            ends = tf.fill([batch, 1], tf.constant(end, dtype))
            starts = tf.fill([batch, 1], tf.constant(start, dtype))
            row = tf.concat([starts, tf.cast(values, dtype), ends], axis=1)
            return row.to_tensor(default_value=tf.constant(pad, dtype), shape=[None, self.sequence_length])

        outputs = {
            "token_ids": pack(token_ids, self.start_id, self.end_id, self.pad_id, tf.int32),
            "word_ids": pack(word_ids, NO_WORD, NO_WORD, NO_WORD, tf.int32),
            "first_piece": pack(first, False, False, False, tf.bool),
            "num_words": num_words,
            "untagged_words": num_words - tagged,
        }
        outputs["padding_mask"] = pack(tf.ones_like(token_ids, tf.bool), True, True, False, tf.bool)
        outputs["segment_ids"] = tf.zeros_like(outputs["token_ids"])
        if labels is not None:
            flat_labels = tf.repeat(labels.flat_values, counts)
            first_labels = tf.where(flat_first, flat_labels, tf.zeros_like(flat_labels))
            token_labels = tf.RaggedTensor.from_row_splits(first_labels, splits)[:, :budget]
            outputs["labels"] = pack(token_labels, 0, 0, 0, tf.int32)
            outputs["label_weights"] = tf.cast(outputs["first_piece"], tf.float32)
        return outputs

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({
            "tokenizer": keras.saving.serialize_keras_object(self.tokenizer),
            "sequence_length": self.sequence_length,
            "word_prefix": self.word_prefix,
            "start_id": self.start_id,
            "end_id": self.end_id,
            "pad_id": self.pad_id,
        })
        return config

    @classmethod
    def from_config(cls, config: dict) -> "WordAligner":
        config = dict(config)
        config["tokenizer"] = keras.saving.deserialize_keras_object(config["tokenizer"])
        return cls(**config)


def word_labels(token_values, word_ids, num_words, fill=-1) -> tf.RaggedTensor:
    """Per-word values ``[batch, (num_words)]`` read at each word's first piece.

    ``token_values`` is ``[batch, L]`` (e.g. predicted tag ids), ``word_ids`` and the first-piece
    positions come from ``WordAligner``; a word with no piece in the packed sequence gets ``fill``.

    Example:
        >>> ids = tf.constant([[-1, 0, 1, 1, -1]])
        >>> word_labels(tf.constant([[9, 4, 5, 6, 9]]), ids, tf.constant([3])).to_list()
        [[4, 5, -1]]
    """
    token_values = tf.convert_to_tensor(token_values)
    word_ids = tf.cast(word_ids, tf.int32)
    num_words = tf.cast(num_words, tf.int32)
    batch, length = tf.shape(word_ids)[0], tf.shape(word_ids)[1]
    previous = tf.concat([tf.fill([batch, 1], NO_WORD), word_ids[:, :-1]], axis=1)
    first = tf.logical_and(word_ids >= 0, tf.not_equal(word_ids, previous))
    width = tf.maximum(tf.reduce_max(num_words), 0)
    rows = tf.broadcast_to(tf.range(batch)[:, None], [batch, length])
    index = tf.stack([tf.boolean_mask(rows, first), tf.boolean_mask(word_ids, first)], axis=1)
    values = tf.boolean_mask(token_values, first)
    dense = tf.tensor_scatter_nd_update(
        tf.fill(tf.stack([batch, width]), tf.cast(fill, token_values.dtype)), index, values)
    return tf.RaggedTensor.from_tensor(dense, lengths=num_words)


def _as_ragged(values, dtype, name: str) -> tf.RaggedTensor:
    if isinstance(values, tf.RaggedTensor):
        ragged = values
    elif isinstance(values, tf.Tensor):
        if values.shape.rank != 2:
            raise ValueError(f"WordAligner: {name} must be [batch, words]; got shape {values.shape}.")
        ragged = tf.RaggedTensor.from_tensor(values)
    else:
        try:
            ragged = tf.ragged.constant(values, dtype=dtype) if dtype != tf.string else tf.ragged.constant(values)
        except (ValueError, TypeError) as error:
            raise ValueError(f"WordAligner: {name} must be a list of lists (one entry per word): {error}") from None
    if ragged.shape.rank != 2:
        raise ValueError(f"WordAligner: {name} must be [batch, (words)]; got rank {ragged.shape.rank}.")
    if dtype == tf.string:
        if ragged.dtype != tf.string:
            raise TypeError(f"WordAligner: {name} must be strings; got {ragged.dtype.name}.")
        return ragged
    if not ragged.dtype.is_integer:
        raise TypeError(f"WordAligner: {name} must be integer tag ids; got {ragged.dtype.name}.")
    return tf.cast(ragged, dtype)


def _check_same_lengths(words: tf.RaggedTensor, labels: tf.RaggedTensor) -> tf.RaggedTensor:
    """``labels`` once each sentence is known to have one label per word (clear error otherwise)."""
    word_counts, label_counts = words.row_lengths(), labels.row_lengths()
    same = tf.logical_and(tf.equal(tf.size(word_counts), tf.size(label_counts)),
                          tf.reduce_all(tf.equal(word_counts, label_counts)))
    message = "WordAligner: each sentence needs one label per word; words per sentence vs labels per sentence:"
    if tf.executing_eagerly():
        if not bool(same):
            raise ValueError(f"{message} {word_counts.numpy().tolist()} vs {label_counts.numpy().tolist()}.")
        return labels
    check = tf.debugging.Assert(same, [message, word_counts, "vs", label_counts], summarize=16)
    with tf.control_dependencies([check]):
        return labels.with_flat_values(tf.identity(labels.flat_values))
