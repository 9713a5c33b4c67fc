"""The noun/verb definitions task derived from the embedded WordNet glosses: fixed, balanced, disjoint splits."""
import collections

import pytest

from keras_lm.data import definitions
from keras_lm.data.definitions import LABELS, definition_of, noun_verb_definitions


def _rows(split):
    return [(e["text"].decode("utf-8"), int(e["label"])) for e in noun_verb_definitions(split).as_numpy_iterator()]


@pytest.fixture(scope="module")
def splits():
    return {split: _rows(split) for split in ("train", "validation", "test")}


def test_definition_drops_lemmas_and_quoted_examples():
    line = ('breathe, take a breath, respire, suspire: draw air into, and expel out of, the lungs; '
            '"I can breathe better when the air is clean"; "The patient is respiring"')
    assert definition_of(line) == "draw air into, and expel out of, the lungs"
    assert definition_of("hold: keep from exhaling or expelling") == "keep from exhaling or expelling"


def test_splits_are_fixed_balanced_and_disjoint(splits):
    sizes = {split: len(rows) for split, rows in splits.items()}
    assert sizes == {"train": 24672, "validation": 1248, "test": 1404}
    for rows in splits.values():
        counts = collections.Counter(label for _, label in rows)
        assert counts[0] == counts[1] == len(rows) // 2
        assert len({text for text, _ in rows}) == len(rows)  # no duplicate definitions
        assert not any('"' in text or text.endswith(";") or not text for text, _ in rows)
    texts = {split: {text for text, _ in rows} for split, rows in splits.items()}
    assert not texts["train"] & texts["validation"]
    assert not texts["train"] & texts["test"]
    assert not texts["validation"] & texts["test"]
    # A verb of the corpus' held-out documents is in test, labelled verb; its lemmas are gone.
    assert ("draw air into, and expel out of, the lungs", LABELS.index("verb")) in splits["test"]
    # The order is a fixed shuffle, not the corpus' (nouns first).
    assert {label for _, label in splits["train"][:20]} == {0, 1}


def test_splits_are_the_same_when_built_again(splits):
    definitions._splits.cache_clear()
    assert _rows("test") == splits["test"]


def test_unknown_split_is_one_clear_error():
    with pytest.raises(ValueError, match="train, validation, test"):
        noun_verb_definitions("dev")
