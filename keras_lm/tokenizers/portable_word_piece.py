"""WordPiece tokenization in core TensorFlow ops only: SavedModels that load without tensorflow_text.

``PortableWordPiece`` gives exactly the ids of a ``WordPiece`` tokenizer, but its graph uses only
ops every TensorFlow build (and TF Serving) registers: ``tf.strings`` regular expressions, a
per-character table, sorted searches and a ``tf.while_loop``. Its tables are built once, from the
``WordPiece`` itself: the per-character normalization (lower-casing, NFD accent stripping,
mappings of the Unicode versions BERT uses) is read off that tokenizer's own ops for every code
point, so the two agree character by character. Canonical reordering of two adjacent combining
marks that accent stripping keeps (rare spacing marks) is the one thing a per-character table
cannot do.
"""
from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf

from keras_lm.tokenizers.bert_normalization import BERT_CJK, BERT_DELETED, BERT_PUNCTUATION, bert_normalize
from keras_lm.tokenizers.text import WHITESPACE, REPLACEMENT_CHARACTER, special_tokens_pattern
from keras_lm.tokenizers.word_piece import WordPiece

_SEPARATOR = b"\xff"  # never in text once invalid UTF-8 is replaced
_SURROGATES = range(0xD800, 0xE000)


@functools.lru_cache(maxsize=8)
def character_table(lowercase: bool, strip_accents: bool, clean_text: bool) -> tuple[tuple[int, ...], tuple[bytes, ...]]:
    """``(code_points, replacements)``: each code point whose BERT normalization changes it, and its result.

    Computed with ``bert_normalize`` on every code point that reaches that step unchanged (the
    deletion and whitespace steps run as regular expressions in the portable graph).
    """
    code_points = np.array([c for c in range(0x110000) if c not in _SURROGATES], np.int32)
    characters = tf.strings.unicode_encode(tf.constant(code_points)[:, tf.newaxis], "UTF-8")
    before = _clean(characters, clean_text)
    kept = tf.equal(before, characters).numpy()
    code_points = code_points[kept]
    characters = tf.boolean_mask(characters, kept)
    after = bert_normalize(characters, lowercase, strip_accents, split_on_cjk=False, clean_text=clean_text)
    changed = tf.not_equal(after, characters).numpy()
    return tuple(code_points[changed].tolist()), tuple(after.numpy()[changed].tolist())


def _clean(text: tf.Tensor, clean_text: bool) -> tf.Tensor:
    """The deletions and whitespace replacements ``WordPiece`` makes before normalizing (core ops)."""
    text = tf.strings.unicode_transcode(
        text, "UTF-8", "UTF-8", errors="replace", replacement_char=REPLACEMENT_CHARACTER
    )
    if clean_text:
        text = tf.strings.regex_replace(text, BERT_DELETED, "")
        return tf.strings.regex_replace(text, f"[{WHITESPACE}]", " ")
    return tf.strings.regex_replace(text, r"\p{Cc}|\p{Cf}|\p{Zs}", " ")


class PortableWordPiece(tf.Module):
    """The ids of a ``WordPiece`` tokenizer, computed with core TensorFlow ops only.

    Call it on a 1-D ``tf.string`` batch to get a ``tf.RaggedTensor`` ``[batch, tokens]`` of
    int32 ids, equal to ``tokenizer(texts)``; a graph that uses it (e.g. a SavedModel) loads in a
    process that never imports tensorflow_text. The tokenizer must split its text
    (``split=True``) and return ragged ids (no ``sequence_length``).

    Args:
        tokenizer: the ``WordPiece`` tokenizer to reproduce.

    Example:
        >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "king", "##s", "."]
        >>> PortableWordPiece(WordPiece(vocab))(tf.constant(["The kings."])).to_list()
        [[5, 6, 7, 8]]
    """

    def __init__(self, tokenizer: WordPiece, name: str | None = None) -> None:
        super().__init__(name=name)
        if not isinstance(tokenizer, WordPiece):
            raise TypeError(f"PortableWordPiece takes a keras_lm WordPiece tokenizer; got {type(tokenizer).__name__}.")
        if not tokenizer.split or tokenizer.sequence_length:
            raise ValueError(
                "PortableWordPiece needs a WordPiece tokenizer with split=True and sequence_length=None; got "
                f"split={tokenizer.split}, sequence_length={tokenizer.sequence_length}."
            )
        self.lowercase = bool(tokenizer.lowercase)
        self.strip_accents = bool(tokenizer.strip_accents)
        self.split_on_cjk = bool(tokenizer.split_on_cjk)
        self.clean_text = bool(tokenizer.clean_text)
        self.max_input_chars_per_word = int(tokenizer.max_input_chars_per_word)
        self.suffix_indicator = tokenizer.suffix_indicator
        self.unk_id = int(tokenizer.unk_id)
        specials = tokenizer._special_tokens_for_splitting() if tokenizer.special_tokens_in_strings else None
        self.special_tokens_pattern = special_tokens_pattern(specials) if specials else None

        code_points, replacements = character_table(self.lowercase, self.strip_accents, self.clean_text)
        self._code_points = tf.constant(code_points or (-1,), tf.int32)
        self._replacements = tf.constant(replacements or (b"",), tf.string)

        vocabulary = [str(t) for t in tokenizer.get_vocabulary()]
        suffix = self.suffix_indicator
        lengths = [len(t[len(suffix):]) if t.startswith(suffix) else len(t) for t in vocabulary]
        self.max_piece_length = max(1, min(max(lengths), self.max_input_chars_per_word))
        hashes = tf.strings.to_hash_bucket_fast(vocabulary, 2**63 - 1).numpy()
        first = {}
        for token_id, (token, key) in enumerate(zip(vocabulary, hashes)):
            if key in first and vocabulary[first[key]] != token:
                raise ValueError(f"PortableWordPiece: tokens {vocabulary[first[key]]!r} and {token!r} share a hash.")
            first.setdefault(int(key), token_id)
        keys = sorted(first)
        self._keys = tf.constant(keys, tf.int64)
        self._ids = tf.constant([first[k] for k in keys], tf.int32)
        self._tokens = tf.constant([vocabulary[first[k]] for k in keys], tf.string)

    # -- pieces ----------------------------------------------------------------------------

    def lookup(self, pieces: tf.Tensor) -> tf.Tensor:
        """Id of each string of ``pieces`` (any shape) in the vocabulary, -1 when absent."""
        hashes = tf.strings.to_hash_bucket_fast(pieces, 2**63 - 1)
        index = tf.minimum(tf.searchsorted(self._keys, tf.reshape(hashes, [-1])), tf.size(self._keys) - 1)
        index = tf.reshape(index, tf.shape(hashes))
        found = tf.logical_and(tf.equal(tf.gather(self._keys, index), hashes),
                               tf.equal(tf.gather(self._tokens, index), pieces))
        return tf.where(found, tf.gather(self._ids, index), -1)

    def normalize(self, text: tf.Tensor) -> tf.Tensor:
        """BERT normalization of a 1-D batch, followed by spaces around each word-splitting character."""
        text = _clean(text, self.clean_text)
        if self.split_on_cjk:
            text = tf.strings.regex_replace(text, BERT_CJK, r" \0 ")
        characters = tf.strings.unicode_split(text, "UTF-8")
        code_points = tf.strings.unicode_decode(text, "UTF-8").flat_values
        index = tf.minimum(tf.searchsorted(self._code_points, code_points), tf.size(self._code_points) - 1)
        found = tf.equal(tf.gather(self._code_points, index), code_points)
        flat = tf.where(found, tf.gather(self._replacements, index), characters.flat_values)
        text = tf.strings.reduce_join(characters.with_flat_values(flat), axis=-1)
        text = tf.strings.regex_replace(text, f"[{WHITESPACE}]+", " ")
        return tf.strings.regex_replace(text, BERT_PUNCTUATION, r" \0 ")

    def words(self, text: tf.Tensor) -> tf.RaggedTensor:
        """The words WordPiece splits into pieces, ``[batch, words]`` (special tokens kept whole)."""
        if self.special_tokens_pattern is None:
            return self._split(self.normalize(text))
        text = tf.strings.unicode_transcode(
            text, "UTF-8", "UTF-8", errors="replace", replacement_char=REPLACEMENT_CHARACTER
        )
        marked = tf.strings.regex_replace(text, self.special_tokens_pattern, _SEPARATOR + rb"\0" + _SEPARATOR)
        pieces = tf.strings.split(marked, sep=_SEPARATOR)  # text, special, text, special, ... per row
        flat = pieces.flat_values
        position = tf.range(tf.size(flat, out_type=tf.int64)) - tf.repeat(pieces.row_starts(), pieces.row_lengths())
        special = tf.equal(position % 2, 1)
        words = self._split(self.normalize(tf.where(special, "", flat)))  # [pieces, words]
        special_words = tf.ragged.boolean_mask(flat[:, tf.newaxis], special[:, tf.newaxis])
        words = tf.concat([words, special_words], axis=1)
        return tf.RaggedTensor.from_row_splits(words.flat_values, tf.gather(words.row_splits, pieces.row_splits))

    @staticmethod
    def _split(text: tf.Tensor) -> tf.RaggedTensor:
        words = tf.strings.split(text, sep=" ")
        return tf.ragged.boolean_mask(words, tf.strings.length(words) > 0)

    def word_pieces(self, words: tf.Tensor) -> tf.RaggedTensor:
        """Greedy longest-match-first piece ids of each word of a 1-D batch: ``[words, pieces]``."""
        lengths = tf.strings.length(words, unit="UTF8_CHAR")
        count = tf.size(words)
        failed = lengths > self.max_input_chars_per_word  # a too-long word is [UNK]
        piece_lengths = tf.range(1, self.max_piece_length + 1, dtype=tf.int32)[tf.newaxis]
        suffix = tf.constant(self.suffix_indicator)

        def step(position, failed, pieces):
            active = tf.where(tf.logical_and(position < lengths, tf.logical_not(failed)))[:, 0]
            start = tf.gather(position, active)[:, tf.newaxis]
            remaining = tf.gather(lengths, active)[:, tf.newaxis] - start
            shape = [tf.size(active), self.max_piece_length]
            candidates = tf.strings.substr(
                tf.gather(words, active)[:, tf.newaxis],
                tf.broadcast_to(start, shape),
                tf.broadcast_to(piece_lengths, shape),
                unit="UTF8_CHAR",
            )
            candidates = tf.where(start > 0, tf.strings.join([suffix, candidates]), candidates)
            ids = tf.where(piece_lengths <= remaining, self.lookup(candidates), -1)
            longest = tf.reduce_max(tf.where(ids >= 0, piece_lengths, 0), axis=1)
            best = tf.gather(ids, tf.maximum(longest - 1, 0), batch_dims=1)
            best = tf.where(longest > 0, best, -1)
            rows = active[:, tf.newaxis]
            position = tf.tensor_scatter_nd_add(position, rows, longest)
            failed = tf.tensor_scatter_nd_update(failed, rows, longest == 0)
            emitted = tf.tensor_scatter_nd_update(tf.fill([count], -1), rows, best)
            return position, failed, pieces.write(pieces.size(), emitted)

        def more(position, failed, pieces):
            return tf.reduce_any(tf.logical_and(position < lengths, tf.logical_not(failed)))

        # Column 0 is a placeholder (-1) that becomes the [UNK] of a word no pieces cover.
        first_column = tf.TensorArray(tf.int32, size=0, dynamic_size=True, element_shape=[None])
        first_column = first_column.write(0, tf.fill([count], -1))
        position, failed, pieces = tf.while_loop(
            more,
            step,
            (tf.zeros([count], tf.int32), failed, first_column),
        )
        ids = tf.transpose(tf.reshape(pieces.stack(), [-1, count]))  # [words, 1 + steps]
        column = tf.range(tf.shape(ids)[1])[tf.newaxis]
        unknown = failed[:, tf.newaxis]
        ids = tf.where(unknown, self.unk_id, ids)
        keep = tf.where(unknown, column == 0, ids >= 0)
        return tf.ragged.boolean_mask(ids, keep)

    def __call__(self, text: tf.Tensor) -> tf.RaggedTensor:
        words = self.words(text)
        pieces = self.word_pieces(words.flat_values)
        return tf.RaggedTensor.from_row_splits(pieces.flat_values, tf.gather(pieces.row_splits, words.row_splits))
