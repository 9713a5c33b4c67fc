"""MultipleChoice serving export: contexts and choices as raw strings in, probabilities and the chosen
index out, equal to the in-memory model in a fresh process with tf.saved_model.load, keras.layers.TFSMLayer
and a TF1 session (the way TF Serving loads)."""
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lm
from keras_lm.export.multiple_choice_serving import multiple_choice_serving
from keras_lm.tasks.multiple_choice import MultipleChoice

LOAD_THREE_WAYS = r"""
import json, sys
import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (tokenizer ops used by the graph)
import keras
directory = sys.argv[1]
request = json.loads(sys.stdin.read())
context = tf.constant(request["context"], tf.string)
choices = tf.constant(request["choices"], tf.string)
result = {}
outputs = tf.saved_model.load(directory).signatures["serving_default"](context=context, choices=choices)
result["saved_model"] = {k: v.numpy().tolist() for k, v in outputs.items()}
layer = keras.layers.TFSMLayer(directory, call_endpoint="serve")  # the endpoint behind serving_default
outputs = layer(context, choices=choices)
result["tfsm_layer"] = {k: np.asarray(v).tolist() for k, v in outputs.items()}
with tf.compat.v1.Session(graph=tf.Graph()) as session:
    definition = tf.compat.v1.saved_model.load(session, ["serve"], directory).signature_def["serving_default"]
    feed = {definition.inputs["context"].name: np.array(request["context"], dtype=object),
            definition.inputs["choices"].name: np.array(request["choices"], dtype=object)}
    names = sorted(definition.outputs)
    values = session.run([definition.outputs[n].name for n in names], feed)
    result["session"] = {n: v.tolist() for n, v in zip(names, values)}
print("RESULT " + json.dumps(result))
"""

CONTEXTS = ["The man broke his toe. What was the cause?", "I emptied my pockets. What happened as a result?",
            "", "The film was a gem " * 50]
CHOICES = [["He dropped a hammer on his foot.", "He got a hole in his sock.", "He sang."],
           ["I retrieved a ticket stub.", "I found a weapon.", "   "],
           ["", "café 😀", "[CLS] [SEP]"],
           ["good", "bad", "a" * 300]]


def load_in_fresh_process(directory, contexts, choices):
    process = subprocess.run([sys.executable, "-c", LOAD_THREE_WAYS, str(directory)],
                             input=json.dumps({"context": contexts, "choices": choices}),
                             capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    line = [l for l in process.stdout.splitlines() if l.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


@pytest.fixture(scope="module")
def movie_vocabulary():
    """A real WordPiece vocabulary trained on 300 movie_snippets sentences."""
    texts = keras_lm.data.load("movie_snippets", split="train").map(lambda ex: ex["text"]).take(300)
    return keras_lm.tokenizers.WordPiece.train(texts, vocabulary_size=600).get_vocabulary()


@pytest.fixture(scope="module")
def model(movie_vocabulary):
    preprocessor = keras_lm.tokenizers.BertPreprocessor(keras_lm.tokenizers.WordPiece(vocabulary=movie_vocabulary),
                                                       sequence_length=32)
    backbone = keras_lm.applications.Bert(None, vocabulary_size=len(movie_vocabulary), num_layers=2, hidden_dim=32,
                                          num_heads=2, intermediate_dim=64, max_sequence_length=32)
    model = MultipleChoice(backbone, num_choices=3, preprocessor=preprocessor)
    model.get_layer("choice_score").set_weights([np.random.default_rng(0).normal(size=(32, 1)).astype("float32") * 30,
                                                np.array([0.3], "float32")])  # scores that differ visibly
    return model


@pytest.mark.slow  # long: run with -m slow
def test_fresh_process_outputs_equal_in_memory_with_every_loader(model, tmp_path):
    directory = multiple_choice_serving(model, str(tmp_path / "choice" / "1"))
    assert open(os.path.join(directory, ".keras_lm_export")).read() == "serving\n"
    expected = model.predict((CONTEXTS, CHOICES), verbose=0)
    assert expected.shape == (4, 3) and expected.std() > 1e-3
    result = load_in_fresh_process(directory, CONTEXTS, CHOICES)
    for loader in ("saved_model", "tfsm_layer", "session"):
        np.testing.assert_allclose(np.array(result[loader]["probabilities"]), expected, atol=1e-5, err_msg=loader)
        assert result[loader]["choice"] == expected.argmax(-1).tolist(), loader


def test_export_refuses_unsafe_targets_and_never_overwrites_silently(model, tmp_path):
    directory = str(tmp_path / "serving")
    multiple_choice_serving(model, directory)
    before = sorted(os.listdir(directory))
    with pytest.raises(FileExistsError, match="already exists"):
        multiple_choice_serving(model, directory)
    with pytest.raises(FileExistsError, match="current working folder"):
        multiple_choice_serving(model, ".")
    (tmp_path / "model.keras").write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="a source of this export"):
        multiple_choice_serving(model, str(tmp_path), overwrite=True, protected=[str(tmp_path / "model.keras")])
    headless = MultipleChoice(model.backbone, num_choices=3)
    with pytest.raises(ValueError, match="needs a task with a preprocessor"):
        multiple_choice_serving(headless, directory, overwrite=True)
    with pytest.raises(TypeError, match="exports a MultipleChoice task"):
        multiple_choice_serving(keras.Sequential([keras.layers.Dense(1)]), directory, overwrite=True)
    assert sorted(os.listdir(directory)) == before
    multiple_choice_serving(model, directory, overwrite=True)  # a previous serving export is replaced
    assert [p for p in os.listdir(tmp_path) if p.startswith(".")] == []
