"""Portable classifier serving export: core TensorFlow ops only, loads without tensorflow_text."""
import numpy as np
import pytest
import tensorflow as tf

import keras_lm
from keras_lm.export.portable import PortableBertPacker, portable_serving
from without_tf_text import load_without_tf_text

TEXTS = [
    "A gem of a film, moving and funny.",
    "Dull, overlong; the plot makes no sense!!!",
    "",
    "Ångström café NAÏVE 東京 😀 \u200bzero\u00a0width",
    b"\xff\xfe broken".decode("latin-1"),
    "good film " * 40,
    "a" * 150,
]


@pytest.fixture(scope="module")
def classifier(movie_vocabulary):
    tokenizer = keras_lm.tokenizers.WordPiece(vocabulary=movie_vocabulary)
    preprocessor = keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=32)
    backbone = keras_lm.applications.Bert("tiny", vocabulary_size=len(movie_vocabulary))
    return keras_lm.tasks.Classifier(backbone, num_classes=2, preprocessor=preprocessor)


def test_packer_equals_bert_preprocessor(classifier):
    texts = tf.constant([t.encode("utf-8") for t in TEXTS])
    expected = classifier.preprocessor(texts)
    packed = PortableBertPacker(classifier.preprocessor)(texts)
    for name in ("token_ids", "segment_ids", "padding_mask"):
        np.testing.assert_array_equal(packed[name].numpy(), expected[name].numpy(), err_msg=name)


@pytest.mark.slow  # long: run with -m slow
def test_portable_export_loads_without_tensorflow_text_and_the_normal_one_does_not(classifier, tmp_path):
    texts = [t.encode("utf-8") for t in TEXTS]
    logits = classifier(classifier.preprocessor(tf.constant(texts)), training=False)
    expected = tf.nn.softmax(logits).numpy()
    portable = keras_lm.export.serving(classifier, str(tmp_path / "portable"), portable=True)
    result = load_without_tf_text(portable, [t.encode("utf-8") for t in TEXTS])
    assert "error" not in result, result.get("error")
    for loader in ("eager", "session"):
        np.testing.assert_allclose(np.array(result[loader]["probabilities"]), expected, atol=1e-5)
        assert result[loader]["label"] == expected.argmax(-1).tolist()
    normal = keras_lm.export.serving(classifier, str(tmp_path / "normal"))
    failed = load_without_tf_text(normal, [t.encode("utf-8") for t in TEXTS])  # proves the check above can fail
    assert "Op type not registered" in failed.get("error", ""), failed


def test_portable_export_refuses_a_task_it_cannot_serve(tmp_path):
    with pytest.raises(TypeError, match="Classifier"):
        portable_serving(object(), str(tmp_path / "x"))
