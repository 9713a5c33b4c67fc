"""Exports never delete anything but a previous export of the same kind.

Every export writes a `.keras_lm_export` marker naming its kind; `overwrite=True` replaces a folder
only when it carries the marker of the same kind (or is empty). `""`, `"."`, `"/"`, the home folder,
the working folder and its ancestors, and any folder holding the source model are always refused,
before any work and without deleting a file.
"""
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

import keras_lm
from keras_lm.export.files import MARKER_FILE, atomic_directory

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "king", "is", "dead", "long", "live", "##s"]


@pytest.fixture(scope="module")
def parts():
    tokenizer = keras_lm.tokenizers.WordPiece(VOCAB)
    preprocessor = keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=8)
    backbone = keras_lm.applications.Bert(
        None, vocabulary_size=len(VOCAB), num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=8,
    )
    classifier = keras_lm.tasks.Classifier(backbone, num_classes=2, preprocessor=preprocessor)
    return classifier, backbone, preprocessor


@pytest.fixture(scope="module")
def serving_export(parts, tmp_path_factory):
    """One serving export of the tiny classifier; tests copy it."""
    classifier, _, _ = parts
    return keras_lm.export.serving(classifier, str(tmp_path_factory.mktemp("exports") / "serving"))


def _tree(root):
    """Every file and folder below `root` (relative paths) with the file contents."""
    found = {}
    for folder, folders, files in os.walk(root):
        for name in folders:
            found[os.path.relpath(os.path.join(folder, name), root)] = None
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, root)] = f.read()
    return found


def _user_folder(path):
    """A folder holding a user's files (not an export)."""
    os.makedirs(path / "data")
    (path / "notes.txt").write_text("precious")
    (path / "data" / "train.csv").write_text("a,1\n")
    return path


@pytest.fixture
def inside_a_user_folder(tmp_path, monkeypatch):
    """Work inside tmp/home/work, with HOME=tmp/home; returns tmp."""
    work = _user_folder(tmp_path / "home" / "work")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(work)
    return tmp_path


@pytest.mark.parametrize("target", ["", ".", "./", "..", "~", "/", "WORK", "HOME"])
def test_current_home_root_and_ancestor_folders_are_refused_and_nothing_is_deleted(
    parts, inside_a_user_folder, target
):
    classifier, backbone, preprocessor = parts
    target = {"WORK": os.getcwd(), "HOME": str(inside_a_user_folder / "home")}.get(target, target)
    before = _tree(inside_a_user_folder)
    for overwrite in (True, False):
        with pytest.raises(FileExistsError, match=r"^Refusing to export to '.*': .*; pass a new folder"):
            keras_lm.export.serving(classifier, target, overwrite=overwrite)
        with pytest.raises(FileExistsError, match=r"^Refusing to export to"):
            keras_lm.export.encoder(backbone, preprocessor, target, overwrite=overwrite)
        with pytest.raises(FileExistsError, match=r"^Refusing to export to"):
            with atomic_directory(target, overwrite):  # the old two-argument call
                pytest.fail("never reached")
    assert _tree(inside_a_user_folder) == before


def test_overwriting_a_folder_that_is_not_an_export_refuses_and_keeps_its_files(parts, tmp_path):
    classifier, backbone, preprocessor = parts
    run = _user_folder(tmp_path / "run")
    os.makedirs(tmp_path / "older_export" / "variables")  # a SavedModel without a marker
    (tmp_path / "older_export" / "saved_model.pb").write_bytes(b"\x08\x01")
    before = _tree(tmp_path)
    for folder in (run, tmp_path / "older_export", run / "notes.txt"):
        with pytest.raises(FileExistsError, match=r"^Refusing to overwrite '.*': it is not .*keras_lm"):
            keras_lm.export.serving(classifier, str(folder), overwrite=True)
        with pytest.raises(FileExistsError, match=r"^Refusing to overwrite"):
            keras_lm.export.encoder(backbone, preprocessor, str(folder), overwrite=True)
    assert _tree(tmp_path) == before  # nothing deleted, no staging folder left


def test_a_folder_holding_the_source_model_is_refused(parts, tmp_path):
    classifier, _, _ = parts
    run = tmp_path / "run"
    os.makedirs(run)
    source = run / "classifier.keras"
    classifier.save(source)
    (run / MARKER_FILE).write_text("serving\n")  # even if it also looks like a serving export
    before = _tree(tmp_path)
    for folder in (run, tmp_path, run / "serving" / ".."):
        with pytest.raises(FileExistsError, match=r"^Refusing to export to '.*': it holds '.*classifier\.keras'"):
            keras_lm.export.serving(classifier, str(folder), overwrite=True, protected=(str(source),))
    assert _tree(tmp_path) == before
    with atomic_directory(str(run / "serving"), protected=(str(source),)):  # a new folder beside it is fine
        pass
    assert os.path.isfile(source) and os.listdir(run / "serving") == [MARKER_FILE]


def test_overwriting_a_previous_export_of_the_same_kind_replaces_it(parts, serving_export, tmp_path):
    classifier, _, preprocessor = parts
    with open(os.path.join(serving_export, MARKER_FILE)) as f:
        assert f.read() == "serving\n"
    directory = str(tmp_path / "serving" / "1")
    shutil.copytree(serving_export, directory)
    (tmp_path / "serving" / "1" / "stale.txt").write_text("from the previous export")
    keras_lm.export.serving(classifier, directory, overwrite=True)
    assert not os.path.exists(os.path.join(directory, "stale.txt"))
    assert [p for p in os.listdir(tmp_path / "serving") if p != "1"] == []  # no staging or backup left
    served = tf.saved_model.load(directory).signatures["serving_default"]
    text = tf.constant(["the king is dead", "long live the king"])
    logits = classifier(preprocessor(text), training=False)
    np.testing.assert_allclose(served(text=text)["probabilities"], tf.nn.softmax(logits), atol=1e-5)

    empty = tmp_path / "empty"
    os.makedirs(empty)  # an empty folder holds nothing to lose
    with atomic_directory(str(empty), overwrite=True, kind="encoder"):
        pass
    assert os.listdir(empty) == [MARKER_FILE]


def test_an_export_of_another_kind_is_refused(parts, serving_export, tmp_path):
    _, backbone, preprocessor = parts
    directory = str(tmp_path / "export")
    shutil.copytree(serving_export, directory)
    before = _tree(tmp_path)
    with pytest.raises(FileExistsError, match=r"^Refusing to overwrite '.*': it holds a keras_lm serving export"):
        keras_lm.export.encoder(backbone, preprocessor, directory, overwrite=True)
    with pytest.raises(FileExistsError, match="it holds a keras_lm serving export"):
        with atomic_directory(directory, overwrite=True):  # the old call: kind "export"
            pytest.fail("never reached")
    assert _tree(tmp_path) == before


def test_atomic_directory_marks_each_kind_and_never_replaces_on_failure(tmp_path):
    directory = str(tmp_path / "out")
    with atomic_directory(directory, kind="generation") as staging:
        open(os.path.join(staging, "model.txt"), "w").write("one")
    assert sorted(os.listdir(directory)) == [MARKER_FILE, "model.txt"]
    with pytest.raises(RuntimeError, match="export failed"):
        with atomic_directory(directory, overwrite=True, kind="generation") as staging:
            raise RuntimeError("export failed")
    assert open(os.path.join(directory, "model.txt")).read() == "one"
    assert os.listdir(tmp_path) == ["out"]
    with pytest.raises(FileExistsError, match="already exists; pass overwrite=True"):
        with atomic_directory(directory, kind="generation"):
            pytest.fail("never reached")
    link = tmp_path / "link"
    link.symlink_to(directory)
    with pytest.raises(FileExistsError, match="not a folder holding a keras_lm generation export"):
        with atomic_directory(str(link), overwrite=True, kind="generation"):
            pytest.fail("never reached")
    assert os.path.islink(link) and open(os.path.join(directory, "model.txt")).read() == "one"
