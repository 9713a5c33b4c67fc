"""keras_lm.data.load: embedded corpora, TFDS datasets (prepared in the test, offline), local files, clear errors."""
import os
import subprocess
import sys

import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import keras_lm.data
from keras_lm.data import load


def test_embedded_corpus_is_a_dataset_of_dicts(prepared_data_dir):
    works = load("shakespeare", split="validation")
    assert set(works.element_spec) == {"title", "text"}
    assert works.element_spec["text"] == tf.TensorSpec([], tf.string)
    assert [w["title"] for w in tfds.as_numpy(works)] == [b"Macbeth", b"King Richard II", b"Sonnets", b"Twelfth Night"]
    assert [w["title"] for w in tfds.as_numpy(load("shakespeare", split="train[:2]"))] == [
        b"All's Well That Ends Well", b"Antony and Cleopatra"]
    snippets = load("movie_snippets", split="test", data_dir=prepared_data_dir)
    assert snippets.element_spec["label"].dtype == tf.int64
    assert snippets.element_spec["rating"].dtype == tf.float32


def test_unknown_split_of_an_embedded_corpus(prepared_data_dir):
    with pytest.raises(ValueError, match=r"'shakespeare' has no split 'test'.*\['train', 'validation'\]"):
        load("shakespeare", split="test")


class KerasLmTestReviews(tfds.core.GeneratorBasedBuilder):
    """A tiny TFDS dataset written in the test: real TFDS files, no download, two configs."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="short"), tfds.core.BuilderConfig(name="long")]

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
            {"text": tfds.features.Text(), "label": tfds.features.ClassLabel(num_classes=2)}
        ))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(6), "test": self._generate_examples(3)}

    def _generate_examples(self, count):
        for index in range(count):
            yield index, {"text": f"{self.builder_config.name} review {index}", "label": index % 2}


@pytest.fixture(scope="module")
def tfds_data_dir(tmp_path_factory):
    """A data dir where only the 'long' config of keras_lm_test_reviews is prepared."""
    directory = tmp_path_factory.mktemp("tfds")
    KerasLmTestReviews(config="long", data_dir=str(directory)).download_and_prepare()
    return directory


def test_tfds_names_pass_through_to_the_prepared_tfds_dataset(tfds_data_dir):
    dataset = load("tfds:keras_lm_test_reviews/long", split="test", data_dir=tfds_data_dir)
    assert set(dataset.element_spec) == {"text", "label"}
    examples = sorted((e["text"], e["label"]) for e in tfds.as_numpy(dataset))
    assert examples == [(b"long review 0", 0), (b"long review 1", 1), (b"long review 2", 0)]
    sliced = load("tfds:keras_lm_test_reviews/long", split="train[2:4]+test[:1]", data_dir=tfds_data_dir)
    assert len(list(sliced)) == 3


def test_tfds_split_errors_name_the_split_and_the_splits(tfds_data_dir):
    with pytest.raises(ValueError, match=r"Invalid split 'train\[5:2\]'.*selects no examples.*test \(3 examples\), train \(6 examples\)"):
        load("tfds:keras_lm_test_reviews/long", split="train[5:2]", data_dir=tfds_data_dir)
    with pytest.raises(ValueError, match=r"has no split 'validation'; its splits are \['test', 'train'\]"):
        load("tfds:keras_lm_test_reviews/long", split="validation", data_dir=tfds_data_dir)


def test_known_but_unprepared_tfds_dataset_fails_before_any_download(tfds_data_dir):
    before = sorted(p.relative_to(tfds_data_dir) for p in tfds_data_dir.rglob("*"))
    with pytest.raises(keras_lm.data.DataUnavailableError) as raised:
        load("tfds:keras_lm_test_reviews/short", data_dir=tfds_data_dir)
    message = str(raised.value)
    assert "'keras_lm_test_reviews/short' is not prepared" in message
    assert f"tfds build keras_lm_test_reviews/short --data_dir {tfds_data_dir}" in message
    assert "\n" not in message
    assert sorted(p.relative_to(tfds_data_dir) for p in tfds_data_dir.rglob("*")) == before


NOT_PREPARED = """
import sys, time
import keras_lm
start = time.monotonic()
try:
    keras_lm.data.load("tfds:imdb_reviews", data_dir=sys.argv[1])
except keras_lm.data.DataUnavailableError as error:
    print("ERROR", error)
print("SECONDS", round(time.monotonic() - start, 1))
"""


def test_imdb_reviews_not_downloaded_fails_fast_offline_and_writes_nothing(tmp_path):
    """The real TFDS imdb_reviews builder with an empty data dir and every proxy refusing: the
    old code retried downloads for minutes and left a partial folder."""
    data_dir = tmp_path / "tfds"
    data_dir.mkdir()
    refused = "http://127.0.0.1:9"  # nothing listens on the discard port: no network is reached
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", HTTP_PROXY=refused, HTTPS_PROXY=refused,
               http_proxy=refused, https_proxy=refused, NO_PROXY="", no_proxy="")
    process = subprocess.run(
        [sys.executable, "-c", NOT_PREPARED, str(data_dir)],
        capture_output=True, text=True, env=env, timeout=150,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    errors = [line for line in process.stdout.splitlines() if line.startswith("ERROR ")]
    assert len(errors) == 1, process.stdout
    assert "'imdb_reviews' is not prepared" in errors[0]
    assert f"tfds build imdb_reviews --data_dir {data_dir}" in errors[0]
    assert "download_and_prepare()" in errors[0]
    assert list(data_dir.rglob("*")) == []  # no partial folder


@pytest.mark.parametrize("split, problem", [
    ("train[5:2]", r"Invalid split 'train\[5:2\]' for dataset 'shakespeare': it selects no examples \(from 5 to 2 of 38\)"),
    ("train[:200%]", r"Invalid split 'train\[:200%\]' for dataset 'shakespeare': When unit=%, percent slice boundaries should be in \[-100, 100\]"),
    ("train[:50]", r"Invalid split 'train\[:50\]' for dataset 'shakespeare': Requested slice \[:50\] incompatible with 38 examples"),
    ("train[::2]", r"Invalid split 'train\[::2\]' for dataset 'shakespeare': Unrecognized split format"),
    ("validation+train[3:3]", r"its part of 'train' selects no examples"),
    ("test", r"Dataset 'shakespeare' has no split 'test'; its splits are \['train', 'validation'\]"),
])
def test_bad_split_strings_fail_at_load_naming_the_split_and_the_splits(prepared_data_dir, split, problem):
    with pytest.raises(ValueError, match=problem) as raised:
        load("shakespeare", split=split)
    message = str(raised.value)
    assert "\n" not in message
    if "Invalid split" in message:
        assert "train (38 examples), validation (4 examples)" in message
        assert "'train[:10%]'" in message  # the valid syntax


def test_split_none_or_not_a_string_is_one_clear_error(prepared_data_dir):
    for name in ("shakespeare", "movie_snippets"):
        with pytest.raises(TypeError, match=f"split must be a string such as 'train'.*{name!r}; got None"):
            load(name, split=None)
    with pytest.raises(TypeError, match="got 3"):
        load("movie_snippets", split=3)


def test_good_sliced_splits_select_what_they_say(prepared_data_dir):
    assert len(list(load("shakespeare", split="train[-2:]"))) == 2
    assert len(list(load("shakespeare", split="validation[:1]+train[:1]"))) == 2
    assert len(list(load("movie_snippets", split="test[:50%]"))) > 0
    with pytest.raises(ValueError, match=r"Invalid split 'test\[10:5\]' for dataset 'movie_snippets'.*test \("):
        load("movie_snippets", split="test[10:5]")


def test_unknown_tfds_name_is_one_short_error():
    with pytest.raises(ValueError, match="Unknown TFDS dataset 'no_such_corpus_xyz'") as raised:
        load("tfds:no_such_corpus_xyz")
    assert "\n" not in str(raised.value)


def test_local_files_glob_and_list(tmp_path):
    (tmp_path / "a.txt").write_text("First line.\n\n   \nSecond line.\r\n")
    (tmp_path / "b.txt").write_text("Third line.")
    (tmp_path / "notes.md").write_text("not matched\n")
    expected = [b"First line.", b"Second line.", b"Third line."]
    by_glob = [e["text"] for e in tfds.as_numpy(load(str(tmp_path / "*.txt")))]
    by_list = [e["text"] for e in tfds.as_numpy(load([tmp_path / "a.txt", tmp_path / "b.txt"]))]
    by_path = [e["text"] for e in tfds.as_numpy(load(str(tmp_path / "b.txt")))]
    assert by_glob == expected
    assert by_list == expected
    assert by_path == [b"Third line."]


def test_unknown_name_lists_the_options():
    with pytest.raises(ValueError) as raised:
        load("shakespear")
    message = str(raised.value)
    for option in ("'shakespeare'", "'movie_snippets'", "tfds:", "path"):
        assert option in message


def test_glob_matching_nothing_and_empty_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="No text file matches"):
        load(str(tmp_path / "*.txt"))
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        load("missing.txt")
    (tmp_path / "blank.txt").write_text("\n  \n\n")
    with pytest.raises(ValueError, match="no non-blank line"):
        load(str(tmp_path / "blank.txt"))
    with pytest.raises(ValueError, match="single split 'train'"):
        load(str(tmp_path / "blank.txt"), split="validation")
    (tmp_path / "some.txt").write_text("a line\n")
    for split in ("train[:10%]", "train[5:2]", "test"):
        with pytest.raises(ValueError, match=r"single split 'train' \(slice it with Dataset.take/skip\); got split="):
            load(str(tmp_path / "some.txt"), split=split)


def test_public_names():
    assert {"load", "DataUnavailableError", "Shakespeare", "MovieSnippets"} <= set(keras_lm.data.__all__)
