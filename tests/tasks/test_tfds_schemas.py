"""TFDS schemas, offline with tfds.testing.mock_data: GLUE configs feed a Classifier, COPA a MultipleChoice."""
import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import keras_lm
from keras_lm.evaluation.classification import MatthewsCorrelation
from keras_lm.tasks.classifier import Classifier
from keras_lm.tasks.multiple_choice import MultipleChoice
from keras_lm.tasks.tfds_schemas import COPA_QUESTIONS, copa_schema, glue_schema

# mock_data's random texts are letters a-j and spaces; COPA below is real text.
WORDS = ("my body cast a shadow over the grass sun was rising cut woman tolerated her friend ' s difficult "
         "behavior knew that s had gone through some hard times felt she could not trust him . , the")
VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghij", *sorted(set(WORDS.split()) - set("abcdefghij"))]
#: Two COPA development examples (Roemmele et al., 2011), one cause and one effect question.
COPA = [
    {"premise": "My body cast a shadow over the grass.", "question": "cause", "choice1": "The sun was rising.",
     "choice2": "The grass was cut.", "label": 0, "idx": 0},
    {"premise": "The woman tolerated her friend's difficult behavior.", "question": "cause",
     "choice1": "The woman knew her friend was going through a hard time.",
     "choice2": "The woman felt that her friend took advantage of her kindness.", "label": 0, "idx": 1},
    {"premise": "The women met for coffee.", "question": "effect", "choice1": "The cafe reopened in a new location.",
     "choice2": "They wanted to catch up with each other.", "label": 1, "idx": 2},
    {"premise": "The unlabelled test example.", "question": "effect", "choice1": "a", "choice2": "b", "label": -1,
     "idx": 3},
]


def parts():
    preprocessor = keras_lm.tokenizers.BertPreprocessor(keras_lm.tokenizers.WordPiece(vocabulary=VOCABULARY),
                                                       sequence_length=24)
    backbone = keras_lm.applications.Bert(None, vocabulary_size=len(VOCABULARY), num_layers=1, hidden_dim=32,
                                          num_heads=2, intermediate_dim=64, max_sequence_length=24)
    return backbone, preprocessor


@pytest.mark.parametrize("config, texts, names, first_metric", [
    ("cola", ("sentence",), ("unacceptable", "acceptable"), "matthews_correlation"),
    ("mrpc", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"), "f1"),
])
def test_glue_configs_feed_a_classifier_fit_step(config, texts, names, first_metric):
    with tfds.testing.mock_data(num_examples=12):
        train, info = tfds.load(f"glue/{config}", split="train", with_info=True)
    schema = glue_schema(info)
    assert schema.text_features == texts and schema.label_names == names == tuple(info.features["label"].names)
    assert schema.num_classes == info.features["label"].num_classes
    metrics = schema.metrics()
    assert metrics[0].name == first_metric
    if config == "cola":
        assert isinstance(metrics[0], MatthewsCorrelation)
    element = schema.inputs(train).element_spec
    assert (element[0].dtype if len(texts) == 1 else tuple(s.dtype for s in element[0])) == (
        tf.string if len(texts) == 1 else (tf.string, tf.string))
    backbone, preprocessor = parts()
    classifier = Classifier(backbone, schema.num_classes, preprocessor=preprocessor, label_names=schema.label_names)
    classifier.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=metrics)
    history = classifier.fit(schema.inputs(train).batch(4), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all() and first_metric in history.history
    examples = list(tfds.as_numpy(train.take(1)))[0]
    inputs, label = schema.example_inputs(examples)
    assert label == examples["label"]
    assert (inputs == examples[texts[0]]) if len(texts) == 1 else (inputs == tuple(examples[t] for t in texts))


def test_glue_schema_refuses_other_datasets_with_a_clear_error():
    with tfds.testing.mock_data(num_examples=1):
        _, copa_info = tfds.load("super_glue/copa", split="train", with_info=True)
    with pytest.raises(ValueError, match="glue_schema reads the GLUE classification configs.*got super_glue/copa"):
        glue_schema(copa_info)
    with pytest.raises(ValueError, match="copa_schema reads super_glue/copa"):
        with tfds.testing.mock_data(num_examples=1):
            copa_schema(tfds.load("glue/cola", split="train", with_info=True)[1])


def test_copa_feeds_multiple_choice_with_the_question_phrased():
    def copa_examples(*args, **kwargs):
        columns = {key: [example[key] for example in COPA] for key in COPA[0]}
        return tf.data.Dataset.from_tensor_slices(columns)

    with tfds.testing.mock_data(as_dataset_fn=copa_examples):
        train, info = tfds.load("super_glue/copa", split="train", with_info=True)
    schema = copa_schema(info)
    assert schema.num_choices == info.features["label"].num_classes == 2
    rows = list(tfds.as_numpy(schema.inputs(train)))
    assert len(rows) == 3  # the unlabelled example is dropped
    assert rows[0]["question"].decode() == COPA_QUESTIONS["cause"] == "What was the cause?"
    assert rows[2]["question"].decode() == COPA_QUESTIONS["effect"] == "What happened as a result?"
    assert [c.decode() for c in rows[0]["choices"]] == ["The sun was rising.", "The grass was cut."]
    backbone, preprocessor = parts()
    model = MultipleChoice(backbone, schema.num_choices, preprocessor=preprocessor)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    data = model.dataset(schema.inputs(train), batch_size=2)
    features, labels = next(iter(data))
    assert features["token_ids"].shape[:2] == (2, 2) and labels.numpy().tolist() == [0, 0]
    expected = model.pack(["My body cast a shadow over the grass."], [["The sun was rising.", "The grass was cut."]],
                          ["What was the cause?"])
    width = expected["token_ids"].shape[-1]
    np.testing.assert_array_equal(features["token_ids"][:1, :, :width], expected["token_ids"])
    history = model.fit(data, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def test_an_unknown_copa_question_word_is_named():
    schema = copa_schema(_copa_info())
    bad = dict(COPA[0], question="reason")
    with pytest.raises(tf.errors.InvalidArgumentError, match="(?s)COPA question must be 'cause' or 'effect'; got.*reason"):
        schema.example_inputs({key: tf.constant(value) for key, value in bad.items()})


def _copa_info():
    with tfds.testing.mock_data(num_examples=1):
        return tfds.load("super_glue/copa", split="train", with_info=True)[1]
