"""SpanQA serving export: question/context strings in, answers out, equal in a fresh process."""
import json
import os
import subprocess
import sys

import pytest

import keras_lm
from keras_lm.export.span_qa_serving import span_qa_serving
from keras_lm.tasks.span_qa import SpanQA
from keras_lm.tokenizers.question_context import QuestionContextPreprocessor

VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "who", "what", "won", "the", "cup", "in", "ana", "paris",
              "tokyo", "a", "drink", "is", "café", "?", ".", ",", "!", "東", "京", "##s"]

LOAD_BOTH_WAYS = r"""
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401  (tokenizer ops used by the graph)
import keras
directory = sys.argv[1]
request = json.loads(sys.stdin.read())
questions = tf.constant([q.encode("utf-8") for q in request["questions"]], tf.string)
contexts = tf.constant([c.encode("utf-8") for c in request["contexts"]], tf.string)
def as_json(outputs):
    return {k: [t.decode("utf-8") for t in v.numpy().tolist()] if k == "answer" else v.numpy().tolist()
            for k, v in outputs.items()}
result = {"saved_model": as_json(tf.saved_model.load(directory).signatures["serving_default"](
    question=questions, context=contexts))}
layer = keras.layers.TFSMLayer(directory, call_endpoint="serve")
result["tfsm_layer"] = as_json(layer(questions, context=contexts))
with tf.compat.v1.Session(graph=tf.Graph()) as session:  # the way TF Serving loads
    definition = tf.compat.v1.saved_model.load(session, ["serve"], directory).signature_def["serving_default"]
    feed = {definition.inputs["question"].name: questions.numpy(), definition.inputs["context"].name: contexts.numpy()}
    names = sorted(definition.outputs)
    values = session.run([definition.outputs[name].name for name in names], feed)
    result["session"] = {name: [t.decode("utf-8") for t in value.tolist()] if name == "answer" else value.tolist()
                         for name, value in zip(names, values)}
print("RESULT " + json.dumps(result))
"""


@pytest.fixture(scope="module")
def qa():
    tokenizer = keras_lm.tokenizers.WordPiece(VOCABULARY)
    preprocessor = QuestionContextPreprocessor(tokenizer, sequence_length=16, max_question_length=4, doc_stride=3)
    backbone = keras_lm.applications.Bert(None, vocabulary_size=len(VOCABULARY), num_layers=1, hidden_dim=32,
                                          num_heads=2, intermediate_dim=64, max_sequence_length=16)
    return SpanQA(backbone, preprocessor, max_answer_length=4, n_best_size=5)


def test_fresh_process_answers_equal_predict_answers_with_every_loader(qa, tmp_path):
    """Long contexts (several windows), accents, CJK, an emoji, control and no-break space characters and an
    empty context: the exported graph answers as the in-memory predict_answers, loaded with
    tf.saved_model.load, keras.layers.TFSMLayer and a TF1 session."""
    questions = ["Who won the cup?", "What is café?", "who?", "what?", "Who won?"]
    contexts = [
        "Ana won the cup in Tokyo, the cup in Paris, the cup in 東京!",
        "A drink in Paris is café. Cafés in Tokyo.",
        "",
        "tab\tnew\nline 😀 Ana\u00a0won",
        "ANA WON THE CUP " * 6,
    ]
    expected = qa.predict_answers(questions, contexts)
    directory = span_qa_serving(qa, str(tmp_path / "qa" / "1"))
    assert open(os.path.join(directory, ".keras_lm_export")).read() == "serving\n"
    process = subprocess.run([sys.executable, "-c", LOAD_BOTH_WAYS, directory],
                             input=json.dumps({"questions": questions, "contexts": contexts}),
                             capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    result = json.loads([line for line in process.stdout.splitlines() if line.startswith("RESULT ")][-1][7:])
    for loader in ("saved_model", "tfsm_layer", "session"):
        outputs = result[loader]
        assert outputs["answer"] == [answer["text"] for answer in expected], loader
        assert outputs["start"] == [answer["start"] for answer in expected], loader
        assert outputs["end"] == [answer["end"] for answer in expected], loader
        for score, answer in zip(outputs["score"], expected):
            assert score == pytest.approx(answer["score"], abs=1e-4) or score == answer["score"] == float("-inf")
    assert expected[2] == {"text": "", "start": 0, "end": 0, "score": float("-inf")}  # empty context
    for answer, context in zip(expected, contexts):
        assert context[answer["start"]: answer["end"]] == answer["text"]
        assert answer["text"] or not context


def test_export_refuses_what_it_cannot_serve_and_never_overwrites_silently(qa, tmp_path):
    directory = str(tmp_path / "qa")
    with pytest.raises(TypeError, match="SpanQA"):
        span_qa_serving(qa.backbone, directory)
    no_preprocessor = SpanQA(qa.backbone)
    with pytest.raises(ValueError, match="preprocessor"):
        span_qa_serving(no_preprocessor, directory)
    assert not os.path.exists(directory)
    os.makedirs(directory)
    (tmp_path / "qa" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        span_qa_serving(qa, directory, overwrite=True)
    assert os.listdir(directory) == ["notes.txt"]
