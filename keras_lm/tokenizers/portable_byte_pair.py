"""Byte-level BPE in core TensorFlow ops only: SavedModels that load without tensorflow_text.

``PortableBytePair`` gives exactly the ids of a ``BytePair`` tokenizer, but its graph uses only ops
every TensorFlow build (and TF Serving) registers. The word split is ``byte_pair_split``'s, with
tensorflow_text's ``regex_split`` replaced by ``tf.strings.regex_replace`` marking each match with a
byte that never occurs in valid UTF-8 (``\\xff``) and ``tf.strings.split`` on that byte. Merging follows
keras-hub's loop (the first lowest-rank pair of each word merges at each step), with the vocabulary and
merge ranks in sorted hash tables (constants, no lookup-table resources).
"""
from __future__ import annotations

import tensorflow as tf
from keras_hub.src.tokenizers.byte_pair_tokenizer import bytes_to_unicode

from keras_lm.tokenizers.byte_pair import BytePair
from keras_lm.tokenizers.byte_pair_split import _MARKED_PATTERNS, _mark_last_whitespace, _split_text
from keras_lm.tokenizers.text import special_tokens_pattern

_MARK = b"\xff"  # never in valid UTF-8, and input is made valid first


class _StringTable(tf.Module):
    """Index of each string in a fixed list (first occurrence), -1 when absent: sorted 64-bit hashes."""

    def __init__(self, strings, what: str, name: str | None = None) -> None:
        super().__init__(name=name)
        strings = [s.encode("utf-8") if isinstance(s, str) else bytes(s) for s in strings] or [_MARK]
        hashes = tf.strings.to_hash_bucket_fast(tf.constant(strings, tf.string), 2**63 - 1).numpy().tolist()
        first = {}
        for index, (value, key) in enumerate(zip(strings, hashes)):
            if key in first and strings[first[key]] != value:
                raise ValueError(f"PortableBytePair: {what} {strings[first[key]]!r} and {value!r} share a hash.")
            first.setdefault(key, index)
        keys = sorted(first)
        self._keys = tf.constant(keys, tf.int64)
        self._indices = tf.constant([first[k] for k in keys], tf.int32)
        self._strings = tf.constant([strings[first[k]] for k in keys], tf.string)

    def __call__(self, strings: tf.Tensor) -> tf.Tensor:
        hashes = tf.strings.to_hash_bucket_fast(strings, 2**63 - 1)
        flat = tf.reshape(hashes, [-1])
        position = tf.minimum(tf.searchsorted(self._keys, flat), tf.size(self._keys) - 1)
        position = tf.reshape(position, tf.shape(hashes))
        found = tf.logical_and(tf.equal(tf.gather(self._keys, position), hashes),
                               tf.equal(tf.gather(self._strings, position), strings))
        return tf.where(found, tf.gather(self._indices, position), -1)


def regex_split(texts: tf.Tensor, pattern: str) -> tf.RaggedTensor:
    """``tensorflow_text.regex_split(texts, pattern, pattern)`` in core ops: matches and the text between.

    ``texts`` is a 1-D batch of valid UTF-8; gives ``[batch, pieces]`` without empty pieces.

    Example:
        >>> regex_split(tf.constant(["ab12cd"]), r"\\p{N}+").to_list()
        [[b'ab', b'12', b'cd']]
    """
    pieces = tf.strings.split(tf.strings.regex_replace(texts, pattern, _MARK + rb"\0" + _MARK), sep=_MARK)
    return tf.ragged.boolean_mask(pieces, tf.strings.length(pieces) > 0)


def _regex_split_offsets(texts: tf.Tensor, pattern: str) -> tuple[tf.RaggedTensor, tf.RaggedTensor]:
    """Byte ``(begins, ends)`` of the pieces ``regex_split`` gives, each ``[batch, pieces]``."""
    lengths = tf.strings.length(regex_split(texts, pattern))
    ends = tf.cast(tf.math.cumsum(lengths, axis=1), tf.int64)
    return ends - tf.cast(lengths, tf.int64), ends


def _flat_map(pieces: tf.RaggedTensor, split) -> tf.RaggedTensor:
    words = split(pieces.flat_values)
    return tf.RaggedTensor.from_row_splits(words.flat_values, tf.gather(words.row_splits, pieces.row_splits))


def _split_gpt2(texts: tf.Tensor) -> tf.RaggedTensor:
    """GPT-2 words of each string of a 1-D batch (``byte_pair_split._split_text`` in core ops)."""
    return _split_text(texts, regex_split=regex_split)


def _split_marked(texts: tf.Tensor, name: str) -> tf.RaggedTensor:
    """Words of ``PATTERNS[name]`` (``byte_pair_split._split_with_pattern`` in core ops)."""
    begins, ends = _regex_split_offsets(_mark_last_whitespace(texts), _MARKED_PATTERNS[name])
    rows = begins.value_rowids()
    words = tf.strings.substr(tf.gather(texts, rows), begins.flat_values, ends.flat_values - begins.flat_values)
    return begins.with_flat_values(words)


class PortableBytePair(tf.Module):
    """The ids of a ``BytePair`` tokenizer, computed with core TensorFlow ops only.

    Call it on a 1-D ``tf.string`` batch to get a ``tf.RaggedTensor`` ``[batch, tokens]`` of int32 ids
    (a dense ``[batch, sequence_length]`` tensor padded with 0 when the tokenizer sets
    ``sequence_length``), equal to ``tokenizer(texts)``; a graph that uses it (e.g. a SavedModel) loads
    in a process that never imports tensorflow_text. Every setting of ``BytePair`` is reproduced
    except ``normalization="NFC"`` (core TensorFlow has no Unicode normalization).

    Args:
        tokenizer: the ``BytePair`` tokenizer to reproduce.

    Example:
        >>> vocabulary = {"<|endoftext|>": 0, "b": 1, "u": 2, "t": 3, "e": 4, "r": 5, "Ġ": 6,
        ...               "bu": 7, "tt": 8, "er": 9, "butt": 10, "butter": 11, "Ġbutter": 12}
        >>> merges = ["b u", "t t", "e r", "bu tt", "butt er", "Ġ butter"]
        >>> PortableBytePair(BytePair(vocabulary, merges))(tf.constant(["butter butter<|endoftext|>"])).to_list()
        [[11, 12, 0]]
    """

    def __init__(self, tokenizer: BytePair, name: str | None = None) -> None:
        super().__init__(name=name)
        if not isinstance(tokenizer, BytePair):
            raise TypeError(f"PortableBytePair takes a keras_lm BytePair tokenizer; got {type(tokenizer).__name__}.")
        if tokenizer.normalization:
            raise ValueError(
                f"PortableBytePair cannot reproduce normalization={tokenizer.normalization!r}: core TensorFlow "
                "has no Unicode normalization op. Export with the tensorflow_text graph (portable=False) instead."
            )
        if tokenizer.vocabulary is None:
            raise ValueError("PortableBytePair needs a BytePair tokenizer with a vocabulary and merges.")
        self.split_pattern = tokenizer.split_pattern
        self.split_digits = tokenizer.split_digits
        self.add_prefix_space = bool(tokenizer.add_prefix_space)
        self.ignore_merges = bool(tokenizer.ignore_merges)
        self.sequence_length = int(tokenizer.sequence_length) if tokenizer.sequence_length else None
        specials = [str(t) for t in (tokenizer.unsplittable_tokens or ())]
        self.special_tokens_pattern = special_tokens_pattern(specials) if specials else None
        self._special_tokens = _StringTable(specials, "special tokens")

        vocabulary = dict(tokenizer.vocabulary)
        tokens = list(vocabulary)
        self._vocabulary = _StringTable(tokens, "tokens")
        self._ids = tf.constant([int(vocabulary[t]) for t in tokens] or [-1], tf.int32)
        merges = [m for m in tokenizer.merges if "#version:" not in m.lstrip()]
        self.num_merges = len(merges)
        self._merge_ranks = _StringTable(merges, "merge rules")
        byte_list, unicode_list = bytes_to_unicode()
        by_byte = dict(zip((b[0] for b in byte_list), unicode_list))
        self._byte_symbols = tf.constant([by_byte[b] for b in range(256)], tf.string)

    # -- words -----------------------------------------------------------------------------

    def words(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """The words BPE merges (``byte_pair_split.pre_tokenize``), ``[batch, words]``."""
        texts = tf.strings.unicode_transcode(texts, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD)
        if self.special_tokens_pattern is None:
            return self._split_piece(texts)
        marked = tf.strings.regex_replace(texts, self.special_tokens_pattern, _MARK + rb"\0" + _MARK)
        pieces = tf.strings.split(marked, sep=_MARK)  # text, special, text, special, ... per row
        position = tf.range(tf.size(pieces.flat_values, out_type=tf.int64)) - tf.repeat(
            pieces.row_starts(), pieces.row_lengths())
        special = tf.equal(position % 2, 1)
        keep = special | (tf.strings.length(pieces.flat_values) > 0)  # tf-text gives no empty pieces
        pieces = tf.ragged.boolean_mask(pieces, pieces.with_flat_values(keep))
        special = tf.boolean_mask(special, keep)
        flat = pieces.flat_values
        words = self._split_piece(tf.where(special, "", flat))
        keep = tf.repeat(tf.logical_not(special), words.row_lengths())
        text_words = tf.ragged.boolean_mask(words, words.with_flat_values(keep))
        special_words = tf.ragged.boolean_mask(flat[:, tf.newaxis], special[:, tf.newaxis])
        words = tf.concat([text_words, special_words], axis=1)
        return tf.RaggedTensor.from_row_splits(words.flat_values, tf.gather(words.row_splits, pieces.row_splits))

    def _split_piece(self, pieces: tf.Tensor) -> tf.RaggedTensor:
        if self.add_prefix_space:
            pieces = tf.where(tf.strings.regex_full_match(pieces, "(?s) .*"), pieces, tf.strings.join([" ", pieces]))
        if self.split_digits is None:
            words = tf.RaggedTensor.from_tensor(pieces[:, tf.newaxis])
        else:
            words = regex_split(pieces, r"\p{N}" if self.split_digits == "individual" else r"\p{N}+")
        if self.split_pattern is None:
            return words
        split = _split_gpt2 if self.split_pattern == "gpt2" else lambda flat: _split_marked(flat, self.split_pattern)
        return _flat_map(words, split)

    # -- merges ----------------------------------------------------------------------------

    def merge(self, words: tf.Tensor) -> tf.Tensor:
        """Each word of a 1-D batch as its tokens joined by spaces (what keras-hub's cache holds)."""
        unique, index = tf.unique(words)
        pieces = tf.strings.bytes_split(unique)
        byte_values = tf.cast(tf.reshape(tf.io.decode_raw(pieces.flat_values, tf.uint8), [-1]), tf.int32)
        symbols = pieces.with_flat_values(tf.gather(self._byte_symbols, byte_values))
        merged = self._merge_symbols(symbols)
        merged = tf.strings.reduce_join(tf.ragged.boolean_mask(merged, tf.not_equal(merged, "")), axis=1, separator=" ")
        if self.ignore_merges:  # a word that is a token is that token
            as_token = tf.strings.reduce_join(symbols, axis=1)
            merged = tf.where(self._vocabulary(as_token) >= 0, as_token, merged)
        merged = tf.where(self._special_tokens(unique) >= 0, unique, merged)  # special tokens stay whole
        return tf.gather(merged, index)

    def _merge_symbols(self, symbols: tf.RaggedTensor) -> tf.Tensor:
        """``[words, symbols]`` merged pair by pair: ``[words, width]`` padded with empty strings."""
        dense = symbols.to_tensor(default_value="")
        lengths = tf.cast(symbols.row_lengths(), tf.int32)
        no_rank = self.num_merges + 1

        def step(dense, lengths, active):
            rows = tf.gather(dense, active)
            row_lengths = tf.gather(lengths, active)
            width = tf.reduce_max(row_lengths)
            rows = rows[:, :width]
            pairs = tf.strings.join([rows[:, :-1], rows[:, 1:]], separator=" ")
            column = tf.range(width)[tf.newaxis]
            valid = column[:, :-1] + 1 < row_lengths[:, tf.newaxis]
            ranks = tf.where(valid, self._merge_ranks(pairs), -1)
            ranks = tf.where(ranks < 0, no_rank, ranks)  # not a pair, or no rule for it
            best = tf.argmin(ranks, axis=1, output_type=tf.int32)[:, tf.newaxis]  # first lowest rank
            found = tf.reduce_min(ranks, axis=1) < no_rank
            shifted = tf.concat([rows[:, 1:], tf.fill([tf.shape(rows)[0], 1], "")], axis=1)
            new_rows = tf.where(column < best, rows,
                                tf.where(column == best, tf.strings.join([rows, shifted]), shifted))
            new_rows = tf.where(found[:, tf.newaxis], new_rows, rows)
            padded = tf.concat([new_rows, tf.fill([tf.shape(rows)[0], tf.shape(dense)[1] - width], "")], axis=1)
            dense = tf.tensor_scatter_nd_update(dense, active[:, tf.newaxis], padded)
            row_lengths = row_lengths - tf.cast(found, tf.int32)
            lengths = tf.tensor_scatter_nd_update(lengths, active[:, tf.newaxis], row_lengths)
            return dense, lengths, tf.boolean_mask(active, found & (row_lengths > 1))

        active = tf.where(lengths > 1)[:, 0]
        active = tf.cast(active, tf.int32)
        dense, _, _ = tf.while_loop(
            lambda dense, lengths, active: tf.size(active) > 0, step, (dense, lengths, active),
            shape_invariants=(tf.TensorShape([None, None]), tf.TensorShape([None]), tf.TensorShape([None])),
        )
        return dense

    def __call__(self, texts: tf.Tensor) -> tf.RaggedTensor | tf.Tensor:
        texts = tf.convert_to_tensor(texts, tf.string)
        words = self.words(texts)
        tokens = tf.strings.split(self.merge(words.flat_values), sep=" ")  # [words, tokens]
        index = self._vocabulary(tokens.flat_values)
        ids = tf.where(index >= 0, tf.gather(self._ids, tf.maximum(index, 0)), -1)
        outputs = tf.RaggedTensor.from_row_splits(ids, tf.gather(tokens.row_splits, words.row_splits))
        if self.sequence_length:
            return outputs.to_tensor(shape=[None, self.sequence_length])
        return outputs
