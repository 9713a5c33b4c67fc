"""TF-Hub-style encoder export: signature names, shapes and values."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import keras_lm


@pytest.fixture(scope="module")
def exported(movie_vocabulary, tmp_path_factory):
    tokenizer = keras_lm.tokenizers.WordPiece(vocabulary=movie_vocabulary)
    preprocessor = keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=24)
    backbone = keras_lm.applications.Bert("tiny", vocabulary_size=len(movie_vocabulary))
    directory = keras_lm.export.encoder(backbone, preprocessor, str(tmp_path_factory.mktemp("export") / "hub"))
    return backbone, preprocessor, directory


def test_layout_and_manifest(exported):
    backbone, _, directory = exported
    assert sorted(os.listdir(directory)) == [".keras_lm_export", "encoder", "keras_lm.json", "preprocess"]
    with open(os.path.join(directory, ".keras_lm_export")) as f:
        assert f.read() == "encoder\n"
    with open(os.path.join(directory, "keras_lm.json")) as f:
        manifest = json.load(f)
    assert manifest.pop("backbone")["registered_name"] == "keras_lm>Bert"  # for from_saved_model(rebuild=True)
    assert manifest == {
        "format": "keras_lm.encoder",
        "version": 1,
        "hidden_dim": 128,
        "num_layers": 2,
        "sequence_length": 24,
    }


def test_encoder_and_preprocess_signatures_match_in_memory(exported, movie_sentences):
    backbone, preprocessor, directory = exported
    texts = tf.constant([text for text, _ in movie_sentences[:4]])
    preprocess = tf.saved_model.load(os.path.join(directory, "preprocess"))
    hub_inputs = preprocess.signatures["serving_default"](text=texts)
    assert sorted(hub_inputs) == ["input_mask", "input_type_ids", "input_word_ids"]
    features = preprocessor(texts)
    np.testing.assert_array_equal(hub_inputs["input_word_ids"], features["token_ids"])
    np.testing.assert_array_equal(hub_inputs["input_mask"], tf.cast(features["padding_mask"], tf.int32))

    encoder = tf.saved_model.load(os.path.join(directory, "encoder"))
    outputs = encoder.signatures["serving_default"](**hub_inputs)
    assert sorted(outputs) == ["encoder_outputs", "pooled_output", "sequence_output"]
    assert outputs["encoder_outputs"].shape == (2, 4, 24, 128)
    np.testing.assert_allclose(outputs["encoder_outputs"][-1], outputs["sequence_output"], atol=1e-6)
    expected = backbone(features)
    np.testing.assert_allclose(outputs["sequence_output"], expected["sequence_output"], atol=1e-5)
    np.testing.assert_allclose(outputs["pooled_output"], expected["pooled_output"], atol=1e-5)


def test_preprocess_pair_endpoint(exported):
    _, preprocessor, directory = exported
    preprocess = tf.saved_model.load(os.path.join(directory, "preprocess"))
    first, second = tf.constant(["a fine film"]), tf.constant(["not at all"])
    hub = preprocess.serve_pair(first, second)
    expected = preprocessor((first, second))
    np.testing.assert_array_equal(hub["input_word_ids"], expected["token_ids"])
    np.testing.assert_array_equal(hub["input_type_ids"], expected["segment_ids"])
    assert int(tf.reduce_max(hub["input_type_ids"])) == 1


SERVE_PAIR_OF_DIFFERENT_SIZES = r"""
import sys
import tensorflow as tf
import tensorflow_text  # noqa: F401
preprocess = tf.saved_model.load(sys.argv[1])
for first, second in ((["a", "b"], ["c"]), (["a"], ["b", "c", "d"])):
    try:
        preprocess.serve_pair(tf.constant(first), tf.constant(second))
        print("no error")
    except tf.errors.InvalidArgumentError as error:
        print(error.message[error.message.index("assertion failed"):].splitlines()[0])
print(preprocess.serve_pair(tf.constant(["a fine film"]), tf.constant(["not at all"]))["input_type_ids"].shape)
"""


def test_preprocess_pair_of_different_sizes_is_an_error_not_a_crash_in_a_fresh_process(exported):
    _, _, directory = exported
    process = subprocess.run(
        [sys.executable, "-c", SERVE_PAIR_OF_DIFFERENT_SIZES, os.path.join(directory, "preprocess")],
        capture_output=True, text=True, timeout=300,
    )
    assert process.returncode == 0, f"exit code {process.returncode}:\n{process.stderr[-3000:]}"
    message = (
        "assertion failed: [BertPreprocessor: the two segments of a pair must have the same shape "
        "(one second text for each first text); got shapes]"
    )
    assert process.stdout.splitlines() == [f"{message} [2] [and] [1]", f"{message} [1] [and] [3]", "(1, 24)"]


def test_rejects_non_encoder(tmp_path, movie_vocabulary):
    tokenizer = keras_lm.tokenizers.WordPiece(vocabulary=movie_vocabulary)
    preprocessor = keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=8)
    with pytest.raises(TypeError, match="encoder backbone"):
        keras_lm.export.encoder(tf.keras.layers.Dense(2), preprocessor, str(tmp_path / "x"))
    assert not os.path.exists(tmp_path / "x")
