"""Question/context packing for extractive QA, with the character offsets of every context token.

``[CLS] question [SEP] context [SEP]`` as in BERT's SQuAD code (with a byte-level BPE tokenizer,
RoBERTa's pair format ``<s> question </s></s> context </s>``): the question is cut to
``max_question_length`` tokens; a context longer than what is left is split into overlapping windows
(``doc_stride`` tokens apart), each packed with the question as one feature row. Every context token
carries the start/end character offsets (code points, end exclusive) of the text it came from in the
ORIGINAL context, whatever the tokenizer's lower-casing, accent stripping or cleaning does to it.

Offsets are found by splitting the original context into words and tokenizing each word on its own:
every piece of a word gets the word's offsets. A WordPiece context is split the way BERT's tokenizer
splits normalized text (whitespace; each punctuation character and CJK ideograph a word of its own;
special tokens written in the text, when the tokenizer reads them) with tf-text's
``regex_split_with_offsets``; a byte-level BPE context into the words its tokenizer merges (GPT-2's
split), whose offsets leave out the word's leading spaces (as transformers' ``trim_offsets``; a lone
leading-space piece gets the empty span at the word's start). The ids
are the ids of ``tokenizer(context)``. Everything is TensorFlow ops, usable in ``tf.data`` and serving
graphs.
"""
from __future__ import annotations

import keras
import tensorflow as tf
import tensorflow_text as tf_text
from keras_hub.src.utils.tensor_utils import no_convert_scope

from keras_lm.tokenizers.bert_normalization import BERT_CJK, BERT_PUNCTUATION
from keras_lm.tokenizers.byte_pair import BytePair
from keras_lm.tokenizers.byte_pair_split import pre_tokenize
from keras_lm.tokenizers.text import WHITESPACE, replace_invalid_utf8, special_tokens_pattern
from keras_lm.tokenizers.word_piece import WordPiece

#: Offset of the tokens that are not from the context ([CLS], the question, [SEP], padding).
NOT_CONTEXT = -1
#: Feature names the encoder reads.
ENCODER_FEATURES = ("token_ids", "segment_ids", "padding_mask")
#: A space in byte-level BPE vocabularies (GPT-2's byte-to-unicode alphabet).
BYTE_LEVEL_SPACE = "\u0120"


def context_text(contexts) -> tf.Tensor:
    """The text that offsets index: the context with invalid UTF-8 replaced by U+FFFD (else unchanged)."""
    return replace_invalid_utf8(tf.convert_to_tensor(contexts, tf.string))


def character_offsets(texts: tf.Tensor, rows: tf.Tensor, byte_offsets: tf.Tensor) -> tf.Tensor:
    """Byte offsets ``[n]`` into ``texts[rows]`` (valid UTF-8 ``[batch]``) as code-point offsets ``[n]``."""
    _, char_starts = tf.strings.unicode_decode_with_offsets(texts, "UTF-8")
    # one sorted key per character: (row, byte offset), so that one search serves every row
    stride = tf.constant(1 << 32, tf.int64)
    keys = char_starts.value_rowids() * stride + char_starts.flat_values
    wanted = tf.cast(rows, tf.int64) * stride + tf.cast(byte_offsets, tf.int64)
    found = tf.searchsorted(keys[tf.newaxis], wanted[tf.newaxis], side="left", out_type=tf.int64)[0]
    return found - tf.gather(char_starts.row_splits, rows)


class ContextPieces:
    """The tokens of a batch of contexts: flat ``ids``, ``starts`` and ``ends`` (character offsets,
    end exclusive) ``[n]``, and ``row_splits`` ``[batch + 1]`` (context ``i`` owns ``row_splits[i]:row_splits[i+1]``).
    ``ragged(values)`` views any of them as ``[batch, (tokens)]``."""

    def __init__(self, ids, starts, ends, row_splits):
        self.ids, self.starts, self.ends, self.row_splits = ids, starts, ends, row_splits

    def ragged(self, values) -> tf.RaggedTensor:
        return tf.RaggedTensor.from_row_splits(values, self.row_splits, validate=False)


def tokenize_with_offsets(tokenizer, texts: tf.Tensor, also_tokenize=None):
    """Token ids of valid UTF-8 ``texts`` ``[batch]`` and each token's character span in them (``ContextPieces``).

    ``also_tokenize``: more texts ``[m]`` tokenized in the same tokenizer call (one graph instead of two);
    their ids (``tf.RaggedTensor`` ``[m, (tokens)]``) are then returned too, as ``(pieces, ids)``.
    A ``BytePair`` tokenizer splits the texts into its own words (see ``byte_pair_words_with_offsets``).
    """
    if isinstance(tokenizer, BytePair):
        words, begins, ends = byte_pair_words_with_offsets(tokenizer, texts)
        # a word's leading space as a piece of its own ("Ġ") holds none of the word's characters
        space = (tokenizer.vocabulary or {}).get(BYTE_LEVEL_SPACE)
        return _pieces_of_words(tokenizer, texts, words, begins, ends, also_tokenize, empty_first_piece=space)
    alternatives = [f"[{WHITESPACE}]+", BERT_PUNCTUATION]
    kept = [BERT_PUNCTUATION]
    if getattr(tokenizer, "split_on_cjk", True):
        alternatives.append(BERT_CJK)
        kept.append(BERT_CJK)
    special = tokenizer._special_tokens_for_splitting() if hasattr(tokenizer, "_special_tokens_for_splitting") else None
    if special:
        alternatives.insert(0, special_tokens_pattern(special))
        kept.insert(0, special_tokens_pattern(special))
    # tf-text's regex split stops at NUL; \x01 is one byte of the same kind (a control character).
    safe = tf.strings.regex_replace(texts, "\x00", "\x01")
    words, begins, ends = tf_text.regex_split_with_offsets(safe, "|".join(alternatives), "|".join(kept))
    return _pieces_of_words(tokenizer, texts, words, begins.flat_values, ends.flat_values, also_tokenize)


def byte_pair_words_with_offsets(tokenizer: BytePair, texts: tf.Tensor):
    """The words a ``BytePair`` merges in valid UTF-8 ``texts`` ``[batch]`` (GPT-2's split, special tokens
    whole) as ``(words [batch, (words)], begins [n], ends [n])``: byte offsets of each word in its text,
    ``begins`` past the word's leading spaces (``" world"`` starts at ``w``; other whitespace is kept).

    The words partition each text (no normalization, no added prefix space), so their offsets are
    running sums of their lengths.
    """
    words = pre_tokenize(texts, tokenizer.unsplittable_tokens, tokenizer.split_pattern, tokenizer.split_digits)
    flat = words.flat_values
    lengths = tf.cast(tf.strings.length(flat), tf.int64)
    running = tf.cumsum(lengths)
    row_start = tf.gather(tf.concat([tf.zeros([1], tf.int64), running], axis=0), words.row_splits)
    ends = running - tf.gather(row_start, words.value_rowids())
    stripped = tf.strings.regex_replace(flat, "^ +", "")  # spaces only, as transformers' trim_offsets
    leading = lengths - tf.cast(tf.strings.length(stripped), tf.int64)
    return words, ends - lengths + leading, ends


def _pieces_of_words(tokenizer, texts: tf.Tensor, words: tf.RaggedTensor, begins, ends, also_tokenize,
                     empty_first_piece: int | None = None):
    """``ContextPieces`` of ``words`` ``[batch, (words)]`` of ``texts`` and their byte spans ``[n]``.

    Every piece gets its word's span, but a word's first piece with the id ``empty_first_piece`` gets
    the empty span at the word's start."""
    flat_words = words.flat_values
    count = 0
    if also_tokenize is not None:
        count = tf.shape(also_tokenize, out_type=tf.int64)[0]
        flat_words = tf.concat([also_tokenize, flat_words], axis=0)
    pieces = tokenizer(flat_words)  # [words, (pieces)]
    if not isinstance(pieces, tf.RaggedTensor):
        raise ValueError("tokenize_with_offsets needs a tokenizer without a fixed sequence_length (ragged ids).")
    splits = pieces.row_splits
    first_piece = splits[count]
    word_of_piece = pieces.value_rowids()[first_piece:] - count
    word_rows = words.value_rowids()
    both = character_offsets(texts, tf.concat([word_rows, word_rows], 0), tf.concat([begins, ends], 0))
    char_begins, char_ends = tf.split(both, 2)
    ids = tf.cast(pieces.flat_values[first_piece:], tf.int32)
    starts, ends = tf.gather(char_begins, word_of_piece), tf.gather(char_ends, word_of_piece)
    if empty_first_piece is not None:
        first_of_word = tf.equal(tf.ragged.range(pieces.row_lengths()).flat_values[first_piece:], 0)
        ends = tf.where(tf.logical_and(first_of_word, tf.equal(ids, empty_first_piece)), starts, ends)
    result = ContextPieces(ids, starts, ends, tf.gather(splits[count:], words.row_splits) - first_piece)
    if also_tokenize is None:
        return result
    extra = tf.RaggedTensor.from_row_splits(tf.cast(pieces.flat_values[:first_piece], tf.int32), splits[: count + 1],
                                            validate=False)
    return result, extra


@keras.saving.register_keras_serializable(package="keras_lm")
class QuestionContextPreprocessor(keras.layers.Layer):
    """Packs (question, context) pairs as ``[CLS] question [SEP] context window [SEP]`` feature rows.

    With a ``WordPiece`` tokenizer rows are BERT's pairs; with a byte-level BPE (``BytePair``, as
    ``RobertaPreprocessor.from_hf`` reads it) RoBERTa's: ``<s> question </s></s> context window </s>``
    with all segment ids 0, as transformers' RoBERTa tokenizers pack a pair. Each pair gives one row
    per context window: a context of ``n`` tokens with ``b`` tokens left after the question and the
    special tokens gives ``1 + ceil((n - b) / doc_stride)`` windows (one when it fits), starting
    ``doc_stride`` tokens apart, as in BERT's ``run_squad.py``.

    Output of ``pack`` (``F`` rows for ``B`` pairs, ``L = sequence_length``):

    - ``token_ids``, ``segment_ids`` (BERT: 0 up to the first ``[SEP]``, then 1; RoBERTa: 0),
      ``padding_mask``: ``[F, L]``;
    - ``start_offsets`` / ``end_offsets``: int64 ``[F, L]``, the character span of each context token
      in its original context (``-1`` elsewhere);
    - ``example_index``: int64 ``[F]``, the pair each row belongs to;
    - with answers: ``start_positions`` / ``end_positions`` int32 ``[F]``, the token positions of the
      answer's first and last tokens in the row, or 0 (``[CLS]``) when the window does not hold the
      whole answer or there is no answer.

    Args:
        tokenizer: a ``WordPiece`` tokenizer, or a ``BytePair`` without ``add_prefix_space`` or
            ``normalization`` (RoBERTa's).
        sequence_length: packed length ``L``.
        max_question_length: questions are cut to this many tokens.
        doc_stride: distance in tokens between the starts of consecutive context windows.
        start_token, end_token, pad_token: the special tokens; by default WordPiece's ``[CLS]``,
            ``[SEP]``, ``[PAD]`` and RoBERTa's ``<s>``, ``</s>``, ``<pad>``.

    Example:
        >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "who", "won", "the", "cup", "?", "ana", "."]
        >>> packer = QuestionContextPreprocessor(WordPiece(vocab), sequence_length=12, max_question_length=4)
        >>> features = packer.pack(["Who won?"], ["ANA won the cup."], answer_starts=[0], answer_texts=["ANA"])
        >>> features["token_ids"].numpy().tolist()
        [[2, 5, 6, 9, 3, 10, 6, 7, 8, 11, 3, 0]]
        >>> features["start_offsets"].numpy()[0, 5:10].tolist(), features["end_offsets"].numpy()[0, 5:10].tolist()
        ([0, 4, 8, 12, 15], [3, 7, 11, 15, 16])
        >>> int(features["start_positions"][0]), int(features["end_positions"][0])
        (5, 5)
    """

    def __init__(self, tokenizer: WordPiece | BytePair, sequence_length: int = 384, max_question_length: int = 64,
                 doc_stride: int = 128, start_token: str | None = None, end_token: str | None = None,
                 pad_token: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if isinstance(tokenizer, dict):
            tokenizer = keras.saving.deserialize_keras_object(tokenizer)
        self.start_token, self.end_token, self.pad_token = start_token, end_token, pad_token
        self.cls_id, self.sep_id, self.pad_id = self._special_ids(tokenizer)
        # RoBERTa's pair: <s> q </s></s> c </s>, one segment type; BERT's: [CLS] q [SEP] c [SEP], two
        self.separators = 2 if isinstance(tokenizer, BytePair) else 1
        specials = 2 + self.separators
        sequence_length, max_question_length, doc_stride = int(sequence_length), int(max_question_length), int(doc_stride)
        if max_question_length < 1 or doc_stride < 1:
            raise ValueError(f"max_question_length and doc_stride must be positive; got {max_question_length} and "
                             f"{doc_stride}.")
        if sequence_length < max_question_length + specials + 1:
            raise ValueError(
                f"sequence_length={sequence_length} leaves no room for the context after a question of up to "
                f"{max_question_length} tokens and the {specials} special tokens; use sequence_length >= "
                f"{max_question_length + specials + 1} or a smaller max_question_length."
            )
        self.tokenizer = tokenizer
        self.sequence_length = sequence_length
        self.max_question_length = max_question_length
        self.doc_stride = doc_stride
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        self.built = True

    def _special_ids(self, tokenizer) -> tuple[int, int, int]:
        """``(start, separator, padding)`` ids: WordPiece's own, or looked up in a BytePair's vocabulary."""
        tokens = (self.start_token, self.end_token, self.pad_token)
        if isinstance(tokenizer, BytePair):
            if tokenizer.add_prefix_space or tokenizer.normalization:
                raise ValueError(
                    "QuestionContextPreprocessor reads byte-level BPE tokenizers that keep the text as it is "
                    f"(RoBERTa's); this one has add_prefix_space={tokenizer.add_prefix_space}, normalization="
                    f"{tokenizer.normalization!r}. Pass BytePair.from_hf(directory, add_prefix_space=False).")
            vocabulary = dict(tokenizer.vocabulary or {})
            tokens = tuple(token or default for token, default in zip(tokens, ("<s>", "</s>", "<pad>")))
            missing = [token for token in tokens if token not in vocabulary]
            if missing:
                raise ValueError(f"QuestionContextPreprocessor: the BytePair vocabulary has no {missing}; pass "
                                 "start_token=, end_token= and pad_token= of this vocabulary.")
            return tuple(int(vocabulary[token]) for token in tokens)
        if not all(hasattr(tokenizer, name) for name in ("cls_id", "sep_id", "pad_id")):
            raise TypeError("QuestionContextPreprocessor needs a WordPiece tokenizer ([CLS]/[SEP]/[PAD] ids) or a "
                            f"byte-level BPE (BytePair); got {type(tokenizer).__name__}.")
        defaults = (tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id)
        return tuple(int(default if token is None else tokenizer.token_to_id(token))
                     for token, default in zip(tokens, defaults))

    @classmethod
    def from_preprocessor(cls, preprocessor, **kwargs) -> "QuestionContextPreprocessor":
        """The packer of a pair preprocessor's tokenizer, special tokens and ``sequence_length``.

        Args:
            preprocessor: a ``BertPreprocessor`` or a ``RobertaPreprocessor`` (e.g. from ``from_hf``).
            **kwargs: other arguments (``max_question_length``, ``doc_stride``, ``sequence_length``).

        Example:
            >>> from keras_lm.tokenizers.bert_preprocessor import BertPreprocessor
            >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "who", "won", "?", "ana"]
            >>> packer = QuestionContextPreprocessor.from_preprocessor(
            ...     BertPreprocessor(WordPiece(vocab), sequence_length=10), max_question_length=4)
            >>> packer.sequence_length, packer.cls_id, packer.sep_id
            (10, 2, 3)
        """
        for name in ("start_token", "end_token", "pad_token"):
            if getattr(preprocessor, name, None) is not None:
                kwargs.setdefault(name, getattr(preprocessor, name))
        kwargs.setdefault("sequence_length", preprocessor.sequence_length)
        return cls(preprocessor.tokenizer, **kwargs)

    def call(self, inputs) -> dict[str, tf.Tensor]:
        """``pack(questions, contexts)`` of a ``(questions, contexts)`` pair of ``tf.string [B]``."""
        if not isinstance(inputs, (tuple, list)) or len(inputs) != 2:
            raise ValueError("QuestionContextPreprocessor takes a pair (questions, contexts).")
        return self.pack(*inputs)

    @tf.autograph.experimental.do_not_convert  # plain TF ops: tracing without autograph is much faster
    def pack(self, questions, contexts, answer_starts=None, answer_texts=None) -> dict[str, tf.Tensor]:
        """Feature rows for ``B`` (question, context) pairs; see the class docstring.

        Args:
            questions, contexts: ``tf.string`` ``[B]`` (lists of str/bytes work too).
            answer_starts: optional int ``[B]``, the character offset of each answer in its context
                (SQuAD's ``answer_start``); negative for no answer.
            answer_texts: the answers ``[B]`` (their length in characters sets where they end).
        """
        if (answer_starts is None) != (answer_texts is None):
            raise ValueError("pack needs both answer_starts and answer_texts, or neither.")
        with tf.device("cpu"), no_convert_scope():
            questions = replace_invalid_utf8(tf.convert_to_tensor(questions, tf.string))
            contexts = context_text(contexts)
            if questions.shape.rank != 1 or contexts.shape.rank != 1:
                raise ValueError(f"pack takes 1-D batches of questions and contexts; got shapes {questions.shape} "
                                 f"and {contexts.shape}.")
            same = tf.debugging.assert_equal(
                tf.size(questions), tf.size(contexts),
                message="QuestionContextPreprocessor: pass one context per question")
            with tf.control_dependencies([same]):
                questions = tf.identity(questions)
            context, question_ids = tokenize_with_offsets(self.tokenizer, contexts, also_tokenize=questions)
            question_ids = question_ids[:, : self.max_question_length]
            features = self._windows(question_ids, context)
            if answer_starts is not None:
                features.update(self._answer_positions(features, context, answer_starts, answer_texts))
            return public_features(features)

    def _windows(self, question_ids: tf.RaggedTensor, context: ContextPieces) -> dict:
        """Dense feature rows, computed by index arithmetic (no ragged ops: small, fast graphs)."""
        length, separators = self.sequence_length, self.separators
        question_length = question_ids.row_lengths()
        context_length = context.row_splits[1:] - context.row_splits[:-1]
        budget = tf.constant(length - 2 - separators, tf.int64) - question_length
        stride = tf.minimum(tf.constant(self.doc_stride, tf.int64), budget)
        extra = tf.maximum(context_length - budget, 0)
        num_windows = 1 + (extra + stride - 1) // stride
        example = tf.repeat(tf.range(tf.size(num_windows, out_type=tf.int64)), num_windows)  # [F]
        first_row = tf.cumsum(num_windows, exclusive=True)
        start = (tf.range(tf.size(example, out_type=tf.int64)) - tf.gather(first_row, example)) * tf.gather(stride, example)
        window_length = tf.minimum(tf.gather(budget, example), tf.gather(context_length, example) - start)
        row_question_length = tf.gather(question_length, example)

        position = tf.range(length, dtype=tf.int64)[tf.newaxis, :]  # [1, L]
        question_end = row_question_length[:, tf.newaxis] + 1  # the first [SEP]
        context_begin = question_end + separators
        context_end = context_begin + window_length[:, tf.newaxis]  # the last [SEP]
        in_question = tf.logical_and(position >= 1, position < question_end)
        in_context = tf.logical_and(position >= context_begin, position < context_end)
        is_separator = tf.logical_or(tf.logical_and(position >= question_end, position < context_begin),
                                     position == context_end)

        def gather_at(flat_values, index, where):
            last = tf.maximum(tf.size(flat_values, out_type=tf.int64) - 1, 0)
            safe_values = tf.concat([flat_values, tf.zeros([1], flat_values.dtype)], axis=0)  # never empty
            return tf.where(where, tf.gather(safe_values, tf.clip_by_value(index, 0, last)), tf.zeros([], flat_values.dtype))

        question_index = tf.gather(question_ids.row_splits, example)[:, tf.newaxis] + position - 1
        context_index = (tf.gather(context.row_splits, example) + start)[:, tf.newaxis] + position - context_begin
        cls, sep, pad = self.cls_id, self.sep_id, self.pad_id
        token_ids = tf.where(
            position == 0, cls,
            tf.where(is_separator, sep,
                     tf.where(position > context_end, pad,
                              gather_at(question_ids.flat_values, question_index, in_question)
                              + gather_at(context.ids, context_index, in_context))))
        not_context = tf.constant(NOT_CONTEXT, tf.int64)
        # BERT's second segment is the context and its [SEP]; RoBERTa has one segment type
        second_segment = position >= (context_begin if separators == 1 else tf.constant(length, tf.int64))

        def offsets(values):
            return tf.where(in_context, gather_at(values, context_index, in_context), not_context)

        return {
            "token_ids": tf.cast(token_ids, tf.int32),
            "segment_ids": tf.cast(tf.logical_and(second_segment, position <= context_end), tf.int32),
            "padding_mask": position <= context_end,
            "start_offsets": offsets(context.starts),
            "end_offsets": offsets(context.ends),
            "example_index": example,
            # where each window starts in its context's tokens, and where its tokens start in the row
            "_window_start": start,
            "_window_length": window_length,
            "_context_position": tf.reshape(context_begin, [-1]),
        }

    def _answer_positions(self, features: dict, context: ContextPieces, answer_starts, answer_texts) -> dict:
        answer_starts = tf.reshape(tf.cast(answer_starts, tf.int64), [-1])
        answer_texts = replace_invalid_utf8(tf.reshape(tf.convert_to_tensor(answer_texts, tf.string), [-1]))
        answer_ends = answer_starts + tf.cast(tf.strings.length(answer_texts, unit="UTF8_CHAR"), tf.int64)
        answered = tf.logical_and(answer_starts >= 0, answer_ends > answer_starts)
        # the first and last context tokens overlapping each answer's characters
        num_examples = tf.size(answer_starts)
        row = tf.searchsorted(context.row_splits[1:], tf.range(tf.size(context.ids, out_type=tf.int64)), side="right",
                              out_type=tf.int64)  # each token's context
        index = tf.range(tf.size(context.ids, out_type=tf.int64)) - tf.gather(context.row_splits, row)
        overlaps = tf.logical_and(context.ends > tf.gather(answer_starts, row), context.starts < tf.gather(answer_ends, row))
        big = tf.constant(tf.int64.max, tf.int64)
        first = tf.math.unsorted_segment_min(tf.where(overlaps, index, big), row, num_examples)
        last = tf.math.unsorted_segment_max(tf.where(overlaps, index, -1), row, num_examples)
        found = tf.logical_and(answered, tf.logical_and(first < big, first <= last))
        example = features["example_index"]
        first, last, found = (tf.gather(t, example) for t in (first, last, found))
        start, window_length = features["_window_start"], features["_window_length"]
        inside = tf.logical_and(found, tf.logical_and(first >= start, last < start + window_length))
        offset = features["_context_position"] - start
        return {
            "start_positions": tf.cast(tf.where(inside, first + offset, 0), tf.int32),
            "end_positions": tf.cast(tf.where(inside, last + offset, 0), tf.int32),
        }

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({
            "tokenizer": keras.saving.serialize_keras_object(self.tokenizer),
            "sequence_length": self.sequence_length,
            "max_question_length": self.max_question_length,
            "doc_stride": self.doc_stride,
            "start_token": self.start_token,
            "end_token": self.end_token,
            "pad_token": self.pad_token,
        })
        return config

    @classmethod
    def from_config(cls, config: dict) -> "QuestionContextPreprocessor":
        config = dict(config)
        config["tokenizer"] = keras.saving.deserialize_keras_object(config["tokenizer"])
        return cls(**config)


def public_features(features: dict) -> dict:
    """``features`` without the internal window bookkeeping (names starting with ``_``)."""
    return {name: value for name, value in features.items() if not name.startswith("_")}
