"""Portable classifier serving export: core TensorFlow ops only, loads without tensorflow_text."""
import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import keras_lm
from keras_lm.export.portable import PortableBertPacker, portable_serving

# Loads an export with both loaders in a process that never imports tensorflow_text.
LOAD_WITHOUT_TF_TEXT = r"""
import json, sys
import numpy as np
import tensorflow as tf
directory = sys.argv[1]
texts = [t.encode("latin-1") for t in json.loads(sys.stdin.read())]
result = {}
try:
    loaded = tf.saved_model.load(directory)
    outputs = loaded.signatures["serving_default"](text=tf.constant(texts, dtype=tf.string))
    result["eager"] = {k: v.numpy().tolist() for k, v in outputs.items() if v.dtype != tf.string}
    with tf.compat.v1.Session(graph=tf.Graph()) as session:
        meta_graph = tf.compat.v1.saved_model.load(session, ["serve"], directory)
        definition = meta_graph.signature_def["serving_default"]
        feed = {definition.inputs["text"].name: np.array(texts, dtype=object)}
        names = sorted(n for n in definition.outputs if n != "label_name")
        values = session.run([definition.outputs[n].name for n in names], feed)
        result["session"] = {n: v.tolist() for n, v in zip(names, values)}
except Exception as error:  # reported to the test, which decides
    result["error"] = f"{type(error).__name__}: {error}"[:2000]
assert "tensorflow_text" not in sys.modules, "tensorflow_text was imported"
print("RESULT " + json.dumps(result))
"""


def _load_without_tf_text(directory, texts):
    as_codepoints = [t.encode("utf-8").decode("latin-1") for t in texts]
    process = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_TF_TEXT, str(directory)],
        input=json.dumps(as_codepoints), capture_output=True, text=True, timeout=300,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    line = [l for l in process.stdout.splitlines() if l.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


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
    result = _load_without_tf_text(portable, TEXTS)
    assert "error" not in result, result.get("error")
    for loader in ("eager", "session"):
        np.testing.assert_allclose(np.array(result[loader]["probabilities"]), expected, atol=1e-5)
        assert result[loader]["label"] == expected.argmax(-1).tolist()
    normal = keras_lm.export.serving(classifier, str(tmp_path / "normal"))
    failed = _load_without_tf_text(normal, TEXTS)  # proves the check above can fail
    assert "Op type not registered" in failed.get("error", ""), failed


def test_portable_export_refuses_a_task_it_cannot_serve(tmp_path):
    with pytest.raises(TypeError, match="Classifier"):
        portable_serving(object(), str(tmp_path / "x"))
