"""Tokenizers and preprocessors usable in tf.data pipelines and serving graphs.

Example:
    >>> import keras_lm
    >>> works = keras_lm.data.load("shakespeare")
    >>> tokenizer = keras_lm.tokenizers.WordPiece.train(works, vocabulary_size=2000)
    >>> preprocessor = keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=16)
    >>> preprocessor(["To be, or not to be"])["token_ids"].shape
    TensorShape([1, 16])
"""
from keras_lm.tokenizers.bert_preprocessor import BertPreprocessor
from keras_lm.tokenizers.byte_pair import END_OF_TEXT, BytePair
from keras_lm.tokenizers.portable_byte_pair import PortableBytePair
from keras_lm.tokenizers.portable_word_piece import PortableWordPiece
from keras_lm.tokenizers.question_context import QuestionContextPreprocessor
from keras_lm.tokenizers.roberta_preprocessor import RobertaPreprocessor
from keras_lm.tokenizers.sentence_piece import SentencePiece
from keras_lm.tokenizers.word_alignment import WordAligner, split_words
from keras_lm.tokenizers.word_piece import SPECIAL_TOKENS, WordPiece

__all__ = ["BertPreprocessor", "BytePair", "END_OF_TEXT", "PortableBytePair", "PortableWordPiece", "QuestionContextPreprocessor", "RobertaPreprocessor",
           "SPECIAL_TOKENS", "SentencePiece", "WordAligner", "WordPiece", "split_words"]
