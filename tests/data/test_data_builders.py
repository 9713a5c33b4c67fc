"""The embedded corpora as prepared on this machine: exact sizes, titles, rows, and clean text."""
import functools

import tensorflow_datasets as tfds

import keras_lm.data
from keras_lm.data import MovieSnippets, Shakespeare

VALIDATION_TITLES = ["Macbeth", "King Richard II", "Sonnets", "Twelfth Night"]


@functools.lru_cache(maxsize=None)
def _examples(name, split):
    return list(tfds.as_numpy(keras_lm.data.load(name, split=split)))


def test_shakespeare_has_42_works_split_38_4_by_work(prepared_data_dir):
    info = Shakespeare(data_dir=prepared_data_dir).info
    assert info.splits["train"].num_examples == 38
    assert info.splits["validation"].num_examples == 4
    train = [w["title"].decode() for w in _examples("shakespeare", "train")]
    validation = [w["title"].decode() for w in _examples("shakespeare", "validation")]
    assert validation == VALIDATION_TITLES
    assert len(set(train) | set(validation)) == 42
    assert not set(train) & set(validation)
    assert train[:3] == ["All's Well That Ends Well", "Antony and Cleopatra", "As You Like It"]
    for title in ["Hamlet", "King Lear", "The Tempest", "Romeo and Juliet", "A Lover's Complaint"]:
        assert title in train


def test_shakespeare_text_is_the_work_only(prepared_data_dir):
    works = {w["title"].decode(): w["text"].decode() for w in _examples("shakespeare", "train")}
    hamlet = works["Hamlet"]
    assert hamlet.startswith("HAMLET, PRINCE OF DENMARK\n\nby William Shakespeare\n")
    assert "Ber.\nWho's there?\n\nFran.\nNay, answer me: stand, and unfold yourself.\n" in hamlet
    assert hamlet.endswith("[Exeunt, bearing off the dead bodies; after the which a peal of\nordnance is shot off.]\n")
    assert "To be, or not to be" in hamlet
    total = 0
    for title, text in works.items():
        total += len(text)
        assert "gutenberg" not in text.lower(), title
        assert "*** START" not in text and "*** END" not in text, title
        assert "\r" not in text, title
    assert total + sum(len(w["text"].decode()) for w in _examples("shakespeare", "validation")) > 4_900_000


def test_movie_snippets_split_sizes_and_labels(prepared_data_dir):
    splits = MovieSnippets(data_dir=prepared_data_dir).info.splits
    sizes = {s: splits[s].num_examples for s in ("train", "validation", "test")}
    assert sizes == {"train": 8421, "validation": 1033, "test": 1114}
    assert sum(sizes.values()) == 10605 - 37  # every row except the 37 rated exactly 0
    for split in sizes:
        for example in _examples("movie_snippets", split):
            assert example["label"] == int(example["rating"] > 0)
            assert example["rating"] != 0


def test_movie_snippets_known_rows(prepared_data_dir):
    rows = {}
    for split in ("train", "validation", "test"):
        for example in _examples("movie_snippets", split):
            rows[int(example["id"])] = (split, int(example["label"]), float(example["rating"]), example["text"].decode())
    assert len(rows) == 10568
    assert rows[1] == (
        "train", 1, rows[1][2],
        "The Rock is destined to be the 21st Century's new ''Conan'' and that he's going to make a splash "
        "even greater than Arnold Schwarzenegger, Jean Claud Van Damme or Steven Segal.",
    )
    assert abs(rows[1][2] - 2.26666666667) < 1e-6
    assert rows[3][:2] == ("validation", 0) and rows[3][3] == "Effective but too tepid biopic"
    assert abs(rows[3][2] - (-0.6)) < 1e-6
    assert rows[10605][1] == 0 and rows[10605][3].startswith("Her fans walked out muttering")
    assert rows[5000][1:] == (1, 2.4000000953674316, "One of the funnier movies in town.")
    assert "The Château's balance of whimsicality" in rows[2263][3]  # UTF-8 decoded, not mojibake
    assert "the clichés disappear" in rows[93][3]
    for neutral in (77, 182, 198):
        assert neutral not in rows
    label_names = MovieSnippets(data_dir=prepared_data_dir).info.features["label"].names
    assert label_names == ["negative", "positive"]
