"""Token-classifier serving export: raw text in, words and their tags out, equal in a fresh process
with tf.saved_model.load and with keras.layers.TFSMLayer."""
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lm
from keras_lm.export.token_classifier_serving import token_classifier_serving
from keras_lm.tasks.token_classifier import TokenClassifier
from keras_lm.tokenizers.word_alignment import split_words

TAGS = ["O", "B-NAME", "I-NAME"]
TEXTS = [
    "Macbeth met Banquo on the heath.",
    "",
    "Lady Macbeth, the queen!",
    "東京 café \u200b zero-width, 😀 and " + "very " * 40 + "long",  # truncated: untagged words
    b"\xff\xfe broken utf-8 Duncan",
]
LOAD_BOTH_WAYS = r"""
import json, sys
import keras
import tensorflow as tf
import tensorflow_text  # noqa: F401  (tokenizer ops used by the graph)
directory = sys.argv[1]
texts = [t.encode("latin-1") for t in json.loads(sys.stdin.read())]
text = tf.constant(texts, dtype=tf.string)
def plain(outputs):
    return {k: [[x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in row] if isinstance(row, list)
                else row for row in v.numpy().tolist()] for k, v in outputs.items()}
result = {"saved_model": plain(tf.saved_model.load(directory).signatures["serving_default"](text=text))}
result["tfsm_layer"] = plain(keras.layers.TFSMLayer(directory, call_endpoint="serve")(text))
print("RESULT " + json.dumps(result))
"""


@pytest.fixture(scope="module")
def tagger():
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz.,!-",
                  *("##" + c for c in "abcdefghijklmnopqrstuvwxyz"), "macbeth", "banquo", "lady", "the", "very"]
    preprocessor = keras_lm.tokenizers.BertPreprocessor(keras_lm.tokenizers.WordPiece(vocabulary), 24)
    backbone = keras_lm.applications.Bert(None, vocabulary_size=len(vocabulary), num_layers=1, hidden_dim=32,
                                          num_heads=2, max_sequence_length=24)
    model = TokenClassifier(backbone, TAGS, preprocessor)
    # A wide, seeded head: the tags differ from word to word whatever the backbone's random start.
    head = model.get_layer("tag_logits")
    head.kernel.assign(np.random.default_rng(0).normal(0.0, 2.0, head.kernel.shape).astype("float32"))
    head.bias.assign(np.array([0.0, 0.3, -0.2], "float32"))
    return model


def in_process(tagger, texts):
    words = split_words(tf.constant([t.encode("utf-8") if isinstance(t, str) else t for t in texts]))
    return words.to_list(), tagger.word_tag_ids(words).to_list()


def load_in_fresh_process(directory, texts):
    as_codepoints = [(t if isinstance(t, bytes) else t.encode("utf-8")).decode("latin-1") for t in texts]
    process = subprocess.run([sys.executable, "-c", LOAD_BOTH_WAYS, str(directory)], input=json.dumps(as_codepoints),
                             capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    line = [l for l in process.stdout.splitlines() if l.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def test_fresh_process_tags_equal_in_memory_with_both_loaders(tagger, tmp_path):
    directory = token_classifier_serving(tagger, str(tmp_path / "ner" / "1"))
    assert open(os.path.join(directory, ".keras_lm_export")).read() == "serving\n"
    words, tag_ids = in_process(tagger, TEXTS)
    assert -1 in tag_ids[3] and len({t for row in tag_ids for t in row if t >= 0}) >= 2
    names = tagger.predict_tags(TEXTS, untagged=None)
    result = load_in_fresh_process(directory, TEXTS)
    for loader in ("saved_model", "tfsm_layer"):
        served = result[loader]
        assert served["num_words"] == [len(row) for row in words]
        for row, (row_words, row_ids) in enumerate(zip(words, tag_ids)):
            count = len(row_words)
            assert served["words"][row][:count] == [w.decode("utf-8") for w in row_words], loader
            assert served["tag_ids"][row][:count] == row_ids, loader
            assert served["tags"][row][:count] == [n or "" for n in names[row]], loader
            assert set(served["tag_ids"][row][count:]) <= {-1} and set(served["tags"][row][count:]) <= {""}


def test_refuses_other_tasks_and_taggers_without_preprocessor_and_keeps_old_export(tagger, tmp_path):
    directory = str(tmp_path / "ner")
    token_classifier_serving(tagger, directory)
    before = sorted(os.listdir(directory))
    with pytest.raises(FileExistsError, match="already exists"):
        token_classifier_serving(tagger, directory)
    bare = TokenClassifier(tagger.backbone, TAGS)
    with pytest.raises(ValueError, match="needs a tagger with a preprocessor"):
        token_classifier_serving(bare, directory, overwrite=True)
    with pytest.raises(TypeError, match="exports a TokenClassifier; got Bert"):
        token_classifier_serving(tagger.backbone, directory, overwrite=True)
    assert sorted(os.listdir(directory)) == before
    assert [p for p in os.listdir(tmp_path) if p.startswith(".")] == []
    assert keras.saving.get_registered_object("keras_lm>TokenClassifier") is TokenClassifier


def test_keras_lm_export_serving_routes_each_head_to_its_export(tagger, tmp_path):
    """`keras_lm.export.serving` writes the head's own signature (text -> words and tags) and refuses
    options that only generation exports take."""
    directory = keras_lm.export.serving(tagger, str(tmp_path / "tagger"))
    signature = tf.saved_model.load(directory).signatures["serving_default"]
    assert set(signature.structured_outputs) == {"words", "tag_ids", "tags", "num_words"}
    with pytest.raises(TypeError, match="takes no options"):
        keras_lm.export.serving(tagger, str(tmp_path / "other"), num_beams=4)
    assert not os.path.exists(tmp_path / "other")
