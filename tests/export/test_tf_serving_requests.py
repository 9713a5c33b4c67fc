"""TF Serving REST request shapes: row ("instances") and columnar ("inputs") bodies on a serving export.

The request is mapped onto the signature's inputs and the reply built from its outputs the way
TF Serving's REST handler does (tensorflow_serving/util/json_tensor.cc), and the signature run
through the TF1 session loader, which is how the server runs a SavedModel.
"""
import base64
import json

import numpy as np
import pytest
import tensorflow as tf

import keras_lm
from keras_lm.export.portable import portable_serving

TEXTS = ["A gem of a film.", "Dull and overlong!!!", "Ångström café 東京 😀", ""]
LABEL_NAMES = ("negative", "positive")


def _as_bytes(value):
    return base64.b64decode(value["b64"]) if isinstance(value, dict) else value.encode("utf-8")


def request_to_feed(body: dict, inputs: list) -> dict:
    """Input name -> batch of values, from a REST body in row or columnar format."""
    if "instances" in body:
        rows = body["instances"]
        if len(inputs) == 1 and not (rows and isinstance(rows[0], dict) and "b64" not in rows[0]):
            return {inputs[0]: [_as_bytes(r) for r in rows]}
        return {name: [_as_bytes(r[name]) for r in rows] for name in inputs}
    columns = body["inputs"]
    if len(inputs) == 1 and not isinstance(columns, dict):
        columns = {inputs[0]: columns}
    return {name: [_as_bytes(v) for v in columns[name]] for name in inputs}


def _json_value(value):
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value


def reply(outputs: dict, row_format: bool) -> str:
    listed = {name: [_json_value(v) for v in value.tolist()] for name, value in outputs.items()}
    if row_format:
        rows = len(next(iter(listed.values())))
        predictions = [{name: listed[name][i] for name in sorted(listed)} for i in range(rows)]
        return json.dumps({"predictions": predictions})
    return json.dumps({"outputs": listed})


def serve_request(directory: str, body: str) -> dict:
    """What TF Serving would answer to the JSON ``body`` POSTed to ``:predict`` of ``serving_default``."""
    request = json.loads(body)
    with tf.compat.v1.Session(graph=tf.Graph()) as session:
        definition = tf.compat.v1.saved_model.load(session, ["serve"], directory).signature_def["serving_default"]
        feed = request_to_feed(request, sorted(definition.inputs))
        names = sorted(definition.outputs)
        values = session.run(
            [definition.outputs[n].name for n in names],
            {definition.inputs[k].name: np.array(v, dtype=object) for k, v in feed.items()},
        )
    return json.loads(reply(dict(zip(names, values)), row_format="instances" in request))


@pytest.fixture(scope="module")
def exported(movie_vocabulary, tmp_path_factory):
    tokenizer = keras_lm.tokenizers.WordPiece(vocabulary=movie_vocabulary)
    preprocessor = keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=32)
    backbone = keras_lm.applications.Bert("tiny", vocabulary_size=len(movie_vocabulary))
    classifier = keras_lm.tasks.Classifier(backbone, num_classes=2, preprocessor=preprocessor, label_names=LABEL_NAMES)
    logits = classifier(preprocessor(tf.constant([t.encode("utf-8") for t in TEXTS])), training=False)
    expected = tf.nn.softmax(logits).numpy()
    return portable_serving(classifier, str(tmp_path_factory.mktemp("serving") / "1")), expected


def _check(probabilities, labels, names, expected):
    np.testing.assert_allclose(np.array(probabilities), expected, atol=1e-5)
    assert labels == expected.argmax(-1).tolist()
    assert names == [LABEL_NAMES[i] for i in labels]


def test_signature_names_and_dtypes_are_readable(exported):
    directory, _ = exported
    definition = tf.compat.v1.saved_model.load(tf.compat.v1.Session(graph=tf.Graph()), ["serve"], directory)
    signature = definition.signature_def["serving_default"]
    assert {k: v.dtype for k, v in signature.inputs.items()} == {"text": tf.string.as_datatype_enum}
    assert {k: v.dtype for k, v in signature.outputs.items()} == {
        "probabilities": tf.float32.as_datatype_enum, "label": tf.int64.as_datatype_enum,
        "label_name": tf.string.as_datatype_enum,
    }


def test_row_format_instances(exported):
    directory, expected = exported
    answer = serve_request(directory, json.dumps({"instances": TEXTS}))
    rows = answer["predictions"]
    assert len(rows) == len(TEXTS) and all(sorted(r) == ["label", "label_name", "probabilities"] for r in rows)
    _check([r["probabilities"] for r in rows], [r["label"] for r in rows], [r["label_name"] for r in rows], expected)
    named = serve_request(directory, json.dumps({"instances": [{"text": t} for t in TEXTS]}))
    assert named == answer
    binary = [{"b64": base64.b64encode(t.encode("utf-8")).decode("ascii")} for t in TEXTS]
    assert serve_request(directory, json.dumps({"instances": binary})) == answer


def test_columnar_format_inputs(exported):
    directory, expected = exported
    answer = serve_request(directory, json.dumps({"inputs": {"text": TEXTS}}))
    outputs = answer["outputs"]
    _check(outputs["probabilities"], outputs["label"], outputs["label_name"], expected)
    assert serve_request(directory, json.dumps({"inputs": TEXTS})) == answer


@pytest.mark.slow  # long: run with -m slow
def test_saved_model_cli_shows_the_signature_and_answers_a_raw_string_request(exported):
    import os
    import subprocess
    import sys

    directory, expected = exported
    cli = [os.path.join(os.path.dirname(sys.executable), "saved_model_cli")]
    shown = subprocess.run(cli + ["show", "--all", "--dir", directory], capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr[-2000:]
    for line in ("inputs['text'] tensor_info:", "outputs['label_name'] tensor_info:", "dtype: DT_STRING",
                 "outputs['probabilities'] tensor_info:", "dtype: DT_FLOAT", "dtype: DT_INT64"):
        assert line in shown.stdout, shown.stdout
    literal = json.dumps(TEXTS[:2], ensure_ascii=True)
    ran = subprocess.run(
        cli + ["run", "--dir", directory, "--tag_set", "serve", "--signature_def", "serving_default",
               "--input_exprs", f"text={literal}"],
        capture_output=True, text=True, timeout=300,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    names = [f"b'{LABEL_NAMES[i]}'" for i in expected[:2].argmax(-1)]
    assert f"Result for output key label_name:\n[{' '.join(names)}]" in ran.stdout, ran.stdout
