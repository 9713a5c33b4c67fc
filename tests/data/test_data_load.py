"""keras_lm.data.load: embedded corpora, TFDS passthrough (mocked, offline), local files, clear errors."""
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


@pytest.mark.parametrize(
    "name, split, features",
    [("glue/sst2", "train", {"sentence", "label", "idx"}), ("wiki40b/en", "validation", {"wikidata_id", "text", "version_id"})],
)
def test_tfds_names_pass_through_to_tfds_load(tmp_path, name, split, features):
    with tfds.testing.mock_data(num_examples=5, policy=tfds.testing.MockPolicy.USE_CODE):
        dataset = load(f"tfds:{name}", split=split, data_dir=str(tmp_path))
        examples = list(tfds.as_numpy(dataset))
    assert set(dataset.element_spec) == features
    assert len(examples) == 5
    assert all(isinstance(e["wikidata_id" if "wiki" in name else "sentence"], bytes) for e in examples)


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


def test_public_names():
    assert {"load", "DataUnavailableError", "Shakespeare", "MovieSnippets"} <= set(keras_lm.data.__all__)
