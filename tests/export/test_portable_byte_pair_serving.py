"""Portable serving export of a RoBERTa-style classifier (byte-level BPE): loads without tensorflow_text."""

import numpy as np
import pytest
import tensorflow as tf

import keras_lm
from keras_lm.export.portable import PortableRobertaPacker, portable_packer, portable_serving
from without_tf_text import load_without_tf_text

TEXTS = [t.encode("utf-8") for t in [
    "A gem of a film, moving and funny.",
    "Dull, overlong; the plot makes no sense!!!",
    "",
    "Ångström café NAÏVE 東京 😀 \u200bzero\u00a0width\u3000ideographic",
    "<s> written <pad> as </s> text<mask>",
    "nul\x00 and\r\n\ttabs   ",
    "good film " * 40,
    "a" * 150,
    "12345678901234567890 $9.99",
]] + [b"\xff\xfe broken \xc3 utf-8"]


@pytest.fixture(scope="module")
def classifier():
    reviews = keras_lm.data.load("movie_snippets", split="train")
    tokenizer = keras_lm.tokenizers.BytePair.train(
        reviews, vocabulary_size=800, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    preprocessor = keras_lm.tokenizers.RobertaPreprocessor(tokenizer, sequence_length=32)
    backbone = keras_lm.applications.Roberta("tiny", vocabulary_size=tokenizer.vocabulary_size(),
                                             max_sequence_length=32)
    return keras_lm.tasks.Classifier(backbone, num_classes=3, preprocessor=preprocessor,
                                     label_names=["negative", "neutral", "positive"])


def test_packer_equals_roberta_preprocessor(classifier):
    texts = tf.constant(TEXTS)
    expected = classifier.preprocessor(texts)
    packer = portable_packer(classifier.preprocessor)
    assert isinstance(packer, PortableRobertaPacker)
    packed = tf.function(packer.__call__, input_signature=[tf.TensorSpec([None], tf.string)])(texts)
    for name in ("token_ids", "segment_ids", "padding_mask"):
        np.testing.assert_array_equal(packed[name].numpy(), expected[name].numpy(), err_msg=name)
    pad_id = classifier.preprocessor.pad_id
    assert (expected["token_ids"].numpy()[4] == pad_id).sum() > (~expected["padding_mask"].numpy()[4]).sum()  # "<pad>" in text


def test_portable_export_loads_without_tensorflow_text_and_the_normal_one_does_not(classifier, tmp_path):
    logits = classifier(classifier.preprocessor(tf.constant(TEXTS)), training=False)
    expected = tf.nn.softmax(logits).numpy()
    portable = keras_lm.export.serving(classifier, str(tmp_path / "portable"), portable=True)
    result = load_without_tf_text(portable, TEXTS)
    assert "error" not in result, result.get("error")
    for loader in ("eager", "session"):
        np.testing.assert_allclose(np.array(result[loader]["probabilities"]), expected, atol=1e-5)
        assert result[loader]["label"] == expected.argmax(-1).tolist()
    normal = keras_lm.export.serving(classifier, str(tmp_path / "normal"))
    failed = load_without_tf_text(normal, TEXTS)  # proves the check above can fail
    assert "Op type not registered" in failed.get("error", ""), failed


def test_refuses_a_preprocessor_it_cannot_serve(classifier, tmp_path):
    config = classifier.preprocessor.tokenizer.get_config()
    nfc = keras_lm.tokenizers.RobertaPreprocessor(
        keras_lm.tokenizers.BytePair.from_config({**config, "normalization": "NFC"}), sequence_length=16)
    with pytest.raises(ValueError, match="normalization='NFC'"):
        portable_packer(nfc)
    with pytest.raises(ValueError, match="BertPreprocessor .* or a RobertaPreprocessor"):
        portable_packer(object())
    with pytest.raises(TypeError, match="Classifier"):
        portable_serving(object(), str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()
