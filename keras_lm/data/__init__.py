"""Text sources: embedded corpora (TFDS builders fetched through pip), TFDS names, local files.

Example:
    >>> import keras_lm
    >>> snippets = keras_lm.data.load("movie_snippets", split="validation")
    >>> example = next(iter(snippets))
    >>> sorted(example)
    ['id', 'label', 'rating', 'text']
"""
from keras_lm.data.augmentation import (
    BackTranslation,
    Compose,
    LocalSwap,
    RandomReplacement,
    TokenDropout,
    with_paraphrases,
)
from keras_lm.data.builders import (
    EMBEDDED_BUILDERS,
    BibleEnEs,
    ImdbReviewsText,
    MovieSnippets,
    Shakespeare,
    StateOfTheUnion,
    WordnetGlosses,
)
from keras_lm.data.definitions import noun_verb_definitions
from keras_lm.data.errors import DataUnavailableError
from keras_lm.data.fetch import fetch_debian_package, fetch_npm_package, fetch_sdist, fetch_wheel
from keras_lm.data.labelled import BadRow, BadRowError, LabelledExamples, load_labelled, read_labelled
from keras_lm.data.loading import load
from keras_lm.data.translation_metrics import copy_source_bleu, corpus_bleu

__all__ = [
    "BackTranslation",
    "Compose",
    "LocalSwap",
    "RandomReplacement",
    "TokenDropout",
    "noun_verb_definitions",
    "with_paraphrases",
    "BadRow",
    "BadRowError",
    "BibleEnEs",
    "DataUnavailableError",
    "EMBEDDED_BUILDERS",
    "ImdbReviewsText",
    "LabelledExamples",
    "MovieSnippets",
    "Shakespeare",
    "StateOfTheUnion",
    "WordnetGlosses",
    "copy_source_bleu",
    "corpus_bleu",
    "fetch_debian_package",
    "fetch_npm_package",
    "fetch_sdist",
    "fetch_wheel",
    "load",
    "load_labelled",
    "read_labelled",
]
