"""Rotten Tomatoes movie-review snippets with human sentiment ratings (VADER ground truth)."""
from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds

from keras_lm.data.fetch import fetch_sdist

PACKAGE = "vaderSentiment"
PACKAGE_VERSION = "3.3.2"
ARCHIVE = "additional_resources/hutto_ICWSM_2014.tar.gz"
MEMBER = "movieReviewSnippets_GroundTruth.txt"

SPLIT_BUCKETS = {"train": range(0, 8), "validation": range(8, 9), "test": range(9, 10)}
"""Each snippet goes to bucket ``sha256(id) % 10``: 8 buckets train, 1 validation, 1 test."""


class MovieSnippets(tfds.core.GeneratorBasedBuilder):
    """Sentence-level movie-review sentiment: 10,568 Rotten Tomatoes snippets, positive or negative.

    Source: ``movieReviewSnippets_GroundTruth.txt`` inside
    ``additional_resources/hutto_ICWSM_2014.tar.gz`` of the ``vaderSentiment==3.3.2`` source
    distribution on the Python package index (Hutto & Gilbert, ICWSM 2014), fetched with pip.
    Each of its 10,605 rows is ``id <TAB> mean human rating in [-4, 4] <TAB> sentence``; the
    37 rows rated exactly 0 are dropped.

    Features: ``id`` (int64, the row id), ``text``, ``rating`` (float32 mean rating) and
    ``label`` (``ClassLabel``: 0 ``negative`` if rating < 0, 1 ``positive`` if rating > 0).
    Supervised keys: ``("text", "label")``.

    Splits (fixed): a row goes to bucket ``int(sha256(str(id))) % 10``; buckets 0-7 are
    ``train`` (8,421 snippets), 8 is ``validation`` (1,033), 9 is ``test`` (1,114).

    Example:
        >>> import keras_lm
        >>> test = keras_lm.data.load("movie_snippets", split="test")
        >>> sorted(test.element_spec)
        ['id', 'label', 'rating', 'text']
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: 80/10/10 split by a hash of the snippet id."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "Rotten Tomatoes sentence snippets with mean human sentiment ratings "
                "(VADER ground truth, Hutto & Gilbert 2014); label = sign of the rating, "
                "neutral (0) rows dropped. Fetched from the vaderSentiment==3.3.2 sdist on PyPI."
            ),
            features=tfds.features.FeaturesDict(
                {
                    "id": tfds.features.Scalar(dtype=np.int64),
                    "text": tfds.features.Text(),
                    "label": tfds.features.ClassLabel(names=["negative", "positive"]),
                    "rating": tfds.features.Scalar(dtype=np.float32),
                }
            ),
            supervised_keys=("text", "label"),
            homepage="https://github.com/cjhutto/vaderSentiment",
            citation=(
                "@inproceedings{hutto2014vader, title={VADER: A Parsimonious Rule-based Model for "
                "Sentiment Analysis of Social Media Text}, author={Hutto, C.J. and Gilbert, Eric}, "
                "booktitle={Eighth International Conference on Weblogs and Social Media (ICWSM-14)}, "
                "year={2014}}"
            ),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # the source comes from the package index through pip
        rows = read_snippets(fetch_sdist(PACKAGE, PACKAGE_VERSION) / ARCHIVE)
        return {split: self._generate_examples(rows, split) for split in SPLIT_BUCKETS}

    def _generate_examples(self, rows: list[tuple[int, float, str]], split: str):
        for snippet_id, rating, text in rows:
            if rating == 0 or split_of(snippet_id) != split:
                continue
            yield snippet_id, {
                "id": snippet_id,
                "text": text,
                "label": int(rating > 0),
                "rating": rating,
            }


def split_of(snippet_id: int) -> str:
    """The split a snippet id belongs to (stable across runs and machines)."""
    bucket = int(hashlib.sha256(str(snippet_id).encode("ascii")).hexdigest(), 16) % 10
    return next(split for split, buckets in SPLIT_BUCKETS.items() if bucket in buckets)


def read_snippets(archive: Path) -> list[tuple[int, float, str]]:
    """All rows ``(id, rating, text)`` of the ground-truth file inside ``archive``, in file order."""
    with tarfile.open(archive) as tar:
        member = next((m for m in tar.getmembers() if m.name.endswith("/" + MEMBER)), None)
        if member is None:
            raise FileNotFoundError(f"{MEMBER} not found in {archive}")
        raw = tar.extractfile(member).read()
    return list(parse_snippets(decode(raw)))


def decode(raw: bytes) -> str:
    """Decode the file: it is UTF-8; fall back to Windows-1252 for a release that is not."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


def parse_snippets(text: str) -> Iterator[tuple[int, float, str]]:
    for line_number, line in enumerate(io.StringIO(text, newline=None), start=1):
        line = line.strip()
        if not line:
            continue
        fields = line.split("\t", 2)
        if len(fields) != 3:
            raise ValueError(f"{MEMBER}:{line_number}: expected id<TAB>rating<TAB>text, got {line!r}")
        yield int(fields[0]), float(fields[1]), fields[2].strip()
