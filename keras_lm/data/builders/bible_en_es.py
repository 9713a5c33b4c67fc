"""English-Spanish Bible verses: about 31,000 aligned pairs for translation (public-domain texts)."""
from __future__ import annotations

import collections
import functools
import html
import re
from pathlib import Path
from typing import Mapping

import numpy as np
import tensorflow_datasets as tfds

from keras_lm.data.fetch import fetch_debian_package, report

#: language -> (Debian package, pinned version, SWORD module inside it).
PACKAGES = {
    "en": ("sword-text-web", "426.0-1", "engWEB2015eb"),  # World English Bible (2020 text)
    "es": ("sword-text-sparv", "2.60-1", "spaRV1909eb"),  # Reina-Valera 1909
}
SWORD_DIR = Path("usr") / "share" / "sword"

#: Whole books (OSIS names) held out, about 5% of the pairs each.
TEST_BOOKS = ("Josh", "John")
VALIDATION_BOOKS = ("Judg", "Ruth", "Rom", "Heb", "Jas")

#: A pair is kept only if len(en) / len(es) (in characters) lies in this closed interval.
LENGTH_RATIO_RANGE = (0.5, 2.0)

#: Chapters the two modules number differently (the Spanish mostly as the Hebrew text does): from
#: some verse on, Spanish verse n holds English verse n +- 1..5, so pairing by reference would pair
#: different verses. Found by comparing verse lengths at shifted offsets, each confirmed by reading;
#: the verse that moves across a chapter boundary is empty on one side and dropped as such.
SHIFTED_CHAPTERS = frozenset(
    {("Num", 13), ("Num", 30), ("1Sam", 24), ("1Kgs", 22), ("1Chr", 21), ("2Chr", 33),
     ("Job", 39), ("Job", 40), ("Hos", 12), ("Jonah", 2)}
)

_BOOK_END = re.compile(r'<div\b[^>]*\btype="book"[^>]*/>.*', re.S)  # the WEB appends its glossary to Rev 22:21
_NOTE_BEFORE_PUNCTUATION = re.compile(r"<note\b.*?</note>(?=[,.;:!?])", re.S)
_NOTE = re.compile(r"<note\b.*?</note>", re.S)
_HEADING = re.compile(r"<speaker\b[^>]*>.*?</speaker>|<title\b(?![^>]*\bcanonical=\"true\")[^>]*>.*?</title>", re.S)
_ADJACENT_WORDS = re.compile(r"(</(?:w|transChange)>)(?=<(?:w|transChange)\b)")
_EMPTY_ELEMENT = re.compile(r"<[^<>]*/>")
_TAG = re.compile(r"<[^<>]*>")


class BibleEnEs(tfds.core.GeneratorBasedBuilder):
    """English-Spanish Bible verse pairs: the World English Bible and the Reina-Valera 1909.

    Sources: the SWORD modules in the Debian packages ``sword-text-web=426.0-1`` (``engWEB2015eb``)
    and ``sword-text-sparv=2.60-1`` (``spaRV1909eb``), both public domain, fetched with
    ``apt-get download`` and read with PyPI ``pysword``.

    Each example is one verse of the 66 books both translations hold (the English deuterocanon is
    left out), paired by reference (book, chapter, verse). Features: ``en``, ``es`` (text),
    ``book`` (OSIS name, e.g. ``"Gen"``), ``chapter`` and ``verse`` (int32). Examples are in
    canonical order.

    Cleaning (``clean_verse``): footnotes and cross references (``<note>…</note>``) become a space
    before any other markup is touched; speaker labels and non-canonical headings go with their
    text (canonical psalm titles stay: the Spanish has them in the verse text); every remaining
    tag (words with Strong's numbers, ``<G…>``/``<H…>`` tags, poetry lines, milestones) goes and
    its text stays; entities are unescaped and whitespace collapsed.

    Of the 31,102 references both hold, pairs are dropped (counted and reported while preparing)
    when they lie in the ten chapters of ``SHIFTED_CHAPTERS``, which the two modules number
    differently (257), when a side is empty after cleaning (19), or when the length ratio
    ``len(en) / len(es)`` in characters lies outside ``LENGTH_RATIO_RANGE`` = [1/2, 2] (26, mostly
    verses whose boundaries the two translations draw differently). 30,800 pairs remain.

    Splits (fixed, by whole book, so no verse of a held-out book is in ``train``): ``test`` =
    Joshua and John (1,537 pairs, 5.0%); ``validation`` = Judges, Ruth, Romans, Hebrews and James
    (1,540 pairs, 5.0%); ``train`` = the other 59 books (27,723 pairs).

    Example:
        >>> import keras_lm
        >>> verses = keras_lm.data.load("bible_en_es", split="train")
        >>> first = next(iter(verses))
        >>> first["en"].numpy().decode(), first["es"].numpy().decode()
        ('In the beginning, God created the heavens and the earth.', 'EN el principio crió Dios los cielos y la tierra.')
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: verse pairs split by book (test Joshua, John)."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "English-Spanish Bible verse pairs (World English Bible, Reina-Valera 1909) aligned by "
                "reference, split by book; fetched from the Debian packages "
                + ", ".join(f"{package}={version}" for package, version, _ in PACKAGES.values())
                + "."
            ),
            features=tfds.features.FeaturesDict(
                {
                    "en": tfds.features.Text(),
                    "es": tfds.features.Text(),
                    "book": tfds.features.Text(),
                    "chapter": tfds.features.Scalar(dtype=np.int32),
                    "verse": tfds.features.Scalar(dtype=np.int32),
                }
            ),
            supervised_keys=("en", "es"),
            homepage="https://crosswire.org/sword/",
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # the sources come from the Debian archive through apt-get
        verses = {
            language: read_verses(fetch_debian_package(package, version) / SWORD_DIR, module)
            for language, (package, version, module) in PACKAGES.items()
        }
        pairs, dropped = aligned_pairs(verses["en"], verses["es"])
        report(
            f"bible_en_es: {len(pairs)} verse pairs; dropped "
            + ", ".join(f"{count} {reason}" for reason, count in sorted(dropped.items()))
        )
        return {split: self._generate_examples(pairs, split) for split in ("train", "validation", "test")}

    def _generate_examples(self, pairs: list[dict], split: str):
        for pair in pairs:
            if split_of(pair["book"]) == split:
                yield f"{pair['book']}.{pair['chapter']}.{pair['verse']}", pair


def split_of(book: str) -> str:
    """The split of every verse of ``book`` (an OSIS name such as ``"Gen"``)."""
    if book in TEST_BOOKS:
        return "test"
    if book in VALIDATION_BOOKS:
        return "validation"
    return "train"


def clean_verse(markup: str) -> str:
    """The plain text of one verse of an OSIS SWORD module.

    Example:
        >>> clean_verse('<w lemma="strong:H0430">God</w><note placement="foot">Hebrew: Elohim</note>'
        ...             '<w lemma="strong:H1254">created</w> <G1234>light.<lb type="x-p"/>')
        'God created light.'
    """
    text = _BOOK_END.sub(" ", markup)
    text = _NOTE_BEFORE_PUNCTUATION.sub("", text)
    text = _NOTE.sub(" ", text)
    text = _HEADING.sub(" ", text)
    text = _ADJACENT_WORDS.sub(r"\1 ", text)  # the Spanish module writes some word pairs without a space
    text = _EMPTY_ELEMENT.sub(" ", text)
    text = _TAG.sub("", text)
    return " ".join(html.unescape(text).split())


def read_verses(sword_dir: Path, module: str) -> dict[tuple[str, int, int], str]:
    """``{(book, chapter, verse): raw OSIS markup}`` for every verse of SWORD ``module`` in ``sword_dir``,
    in canonical order (books by OSIS name, as the module's versification lists them)."""
    from pysword.modules import SwordModules

    sword_dir = Path(sword_dir)
    if not (sword_dir / "mods.d").is_dir():
        raise FileNotFoundError(f"No SWORD library (a mods.d folder) at {sword_dir}")
    library = SwordModules(str(sword_dir))
    if module not in library.parse_modules():
        raise FileNotFoundError(f"No SWORD module {module!r} in {sword_dir / 'mods.d'}")
    bible = library.get_bible_from_module(module)
    if hasattr(bible, "_decompressed_text"):  # pysword inflates a whole book for every verse read
        bible._decompressed_text = functools.lru_cache(maxsize=2)(bible._decompressed_text)
    verses = {}
    for testament in bible.get_structure().get_books().values():
        for book in testament:
            for chapter, length in enumerate(book.chapter_lengths, start=1):
                for verse in range(1, length + 1):
                    verses[(book.osis_name, chapter, verse)] = bible.get(
                        books=book.osis_name, chapters=chapter, verses=verse, clean=False
                    )
    return verses


def aligned_pairs(
    english: Mapping[tuple[str, int, int], str], spanish: Mapping[tuple[str, int, int], str]
) -> tuple[list[dict], collections.Counter]:
    """Cleaned verse pairs for the references both sides hold, in ``spanish``'s order, and the
    number dropped for each reason.

    Example:
        >>> pairs, dropped = aligned_pairs(
        ...     {("Gen", 1, 1): "<w>In the beginning</w>", ("Gen", 1, 2): "x", ("Gen", 1, 3): ""},
        ...     {("Gen", 1, 1): "<w>EN el principio</w>", ("Gen", 1, 2): "xxxxx", ("Gen", 1, 3): "y"})
        >>> [(p["en"], p["es"]) for p in pairs], dict(dropped)
        ([('In the beginning', 'EN el principio')], {'with lengths too different': 1, 'with an empty side': 1})
    """
    low, high = LENGTH_RATIO_RANGE
    pairs, dropped = [], collections.Counter()
    for reference, spanish_markup in spanish.items():
        if reference not in english:
            continue
        book, chapter, verse = reference
        if (book, chapter) in SHIFTED_CHAPTERS:
            dropped["in chapters numbered differently"] += 1
            continue
        en, es = clean_verse(english[reference]), clean_verse(spanish_markup)
        if not en or not es:
            dropped["with an empty side"] += 1
        elif not low <= len(en) / len(es) <= high:
            dropped["with lengths too different"] += 1
        else:
            pairs.append({"en": en, "es": es, "book": book, "chapter": chapter, "verse": verse})
    return pairs, dropped

