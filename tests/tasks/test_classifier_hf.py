"""Classifier.from_hf against transformers' BertForSequenceClassification (every parameter random)."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lm
from keras_lm.applications import CheckpointError
from keras_lm.tasks.classifier import Classifier

CONFIG = dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=128,
              max_position_embeddings=48, type_vocab_size=2, hidden_act="gelu", layer_norm_eps=1e-12)
LABELS = {0: "contradiction", 1: "entailment", 2: "neutral"}


def random_model(model_class, vocabulary_size, randomize_every_parameter, seed=0, **extra):
    import transformers

    config = transformers.BertConfig(vocab_size=vocabulary_size, **CONFIG, **extra)
    model = model_class(config).eval()
    randomize_every_parameter(model, seed=seed, is_norm_scale=lambda name: name.endswith("LayerNorm.weight"),
                              std=0.2)
    return model


@pytest.fixture(scope="module")
def movie_vocabulary():
    """A real WordPiece vocabulary (under 1,000 tokens) trained on 600 movie_snippets sentences."""
    texts = keras_lm.data.load("movie_snippets", split="train").map(lambda ex: ex["text"]).take(600)
    return keras_lm.tokenizers.WordPiece.train(texts, vocabulary_size=1000).get_vocabulary()


@pytest.fixture(scope="module")
def sequence_classification(tmp_path_factory, movie_vocabulary, randomize_every_parameter):
    """A 3-class BertForSequenceClassification saved with its vocab.txt (a real WordPiece vocabulary)."""
    import transformers

    model = random_model(transformers.BertForSequenceClassification, len(movie_vocabulary),
                         randomize_every_parameter, num_labels=3, id2label=LABELS,
                         label2id={v: k for k, v in LABELS.items()}, classifier_dropout=0.2)
    directory = tmp_path_factory.mktemp("bert_sequence_classification")
    model.save_pretrained(directory)
    (directory / "vocab.txt").write_text("\n".join(movie_vocabulary) + "\n", encoding="utf-8")
    return model, directory


def padded_pairs(vocabulary_size):
    rng = np.random.default_rng(3)
    mask = np.ones((3, 20), "int32")
    mask[1, 12:] = 0
    mask[2, 5:] = 0
    segments = (np.arange(20) >= 8).astype("int32")[None].repeat(3, 0) * mask
    return {"token_ids": rng.integers(0, vocabulary_size, (3, 20)).astype("int32"), "segment_ids": segments,
            "padding_mask": mask}


def torch_logits(model, data):
    import torch

    with torch.no_grad():
        return model(input_ids=torch.tensor(data["token_ids"], dtype=torch.long),
                     token_type_ids=torch.tensor(data["segment_ids"], dtype=torch.long),
                     attention_mask=torch.tensor(data["padding_mask"])).logits.numpy()


def test_reference_is_random_everywhere(sequence_classification):
    model, _ = sequence_classification
    for name, parameter in model.named_parameters():
        values = parameter.detach().numpy()
        default = 1.0 if name.endswith("LayerNorm.weight") else 0.0  # biases, LayerNorm, pooler and head too
        assert np.abs(values - default).max() > 0.05 and len(np.unique(values)) > 0.9 * values.size, name


def test_logits_equal_transformers_and_labels_come_from_id2label(sequence_classification, movie_vocabulary):
    model, directory = sequence_classification
    classifier = Classifier.from_hf(str(directory))
    assert classifier.num_classes == 3
    assert classifier.label_names == ("contradiction", "entailment", "neutral")
    assert classifier.dropout == pytest.approx(0.2)  # classifier_dropout
    data = padded_pairs(len(movie_vocabulary))
    expected = torch_logits(model, data)
    actual = np.asarray(classifier(data, training=False))
    assert np.abs(actual - expected).max() <= 1e-4, np.abs(actual - expected).max()
    assert np.abs(expected).max() > 0.5


def test_raw_text_pairs_with_the_checkpoint_tokenizer_equal_transformers(sequence_classification):
    import torch
    import transformers

    model, directory = sequence_classification
    preprocessor = keras_lm.tokenizers.BertPreprocessor.from_hf(str(directory), sequence_length=32)
    classifier = Classifier.from_hf(str(directory), preprocessor=preprocessor)
    premises = ["A gripping, funny film.", "The plot never lands", "Nobody could sit through this ..."]
    hypotheses = ["It is good.", "It is a mess of a movie with no ending whatsoever and far too long", "Boring!"]
    tokenizer = transformers.BertTokenizerFast(str(directory / "vocab.txt"))
    encoded = tokenizer(premises, hypotheses, padding="max_length", truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        expected = model(**encoded).logits.numpy()
    actual = classifier.predict((premises, hypotheses), verbose=0)
    assert np.abs(actual - expected).max() <= 1e-4


def test_an_in_memory_model_and_keras_round_trip_keep_the_head(sequence_classification, movie_vocabulary, tmp_path):
    model, _ = sequence_classification
    classifier = Classifier.from_hf(model)
    data = padded_pairs(len(movie_vocabulary))
    expected = torch_logits(model, data)
    assert np.abs(np.asarray(classifier(data)) - expected).max() <= 1e-4
    path = str(tmp_path / "classifier.keras")
    classifier.save(path)
    restored = keras.saving.load_model(path)
    assert restored.label_names == classifier.label_names
    assert np.abs(np.asarray(restored(data)) - expected).max() <= 1e-4


def test_a_checkpoint_without_head_gets_a_fresh_head_on_its_backbone(tmp_path, randomize_every_parameter):
    import torch
    import transformers

    model = random_model(transformers.BertModel, 300, randomize_every_parameter, seed=1)
    model.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="no classification head.*pass num_classes"):
        Classifier.from_hf(str(tmp_path))
    classifier = Classifier.from_hf(str(tmp_path), num_classes=4)
    assert classifier.num_classes == 4 and classifier.label_names is None
    data = padded_pairs(300)
    with torch.no_grad():
        pooled = model(input_ids=torch.tensor(data["token_ids"], dtype=torch.long),
                       token_type_ids=torch.tensor(data["segment_ids"], dtype=torch.long),
                       attention_mask=torch.tensor(data["padding_mask"])).pooler_output.numpy()
    assert np.abs(np.asarray(classifier.backbone(data)["pooled_output"]) - pooled).max() <= 1e-4
    assert classifier(data).shape == (3, 4)


def _edited_checkpoint(directory, tmp_path, edit_state=None, edit_config=None):
    from safetensors.numpy import load_file, save_file

    state = load_file(str(directory / "model.safetensors"))
    config = json.loads((directory / "config.json").read_text())
    if edit_state:
        edit_state(state)
    if edit_config:
        edit_config(config)
    target = tmp_path / "edited"
    target.mkdir(parents=True)
    save_file(state, str(target / "model.safetensors"))
    (target / "config.json").write_text(json.dumps(config))
    return str(target)


def test_bad_checkpoints_are_one_clear_error_naming_the_tensor(sequence_classification, tmp_path):
    _, directory = sequence_classification
    with pytest.raises(CheckpointError, match="3-class head .'classifier.weight'.*not 2 classes"):
        Classifier.from_hf(str(directory), num_classes=2)

    missing = _edited_checkpoint(directory, tmp_path / "missing", lambda s: s.pop("classifier.bias"))
    with pytest.raises(CheckpointError, match="has no 'classifier.bias'"):
        Classifier.from_hf(missing)

    def wrong_shape(state):
        state["classifier.bias"] = np.zeros(4, "float32")

    shaped = _edited_checkpoint(directory, tmp_path / "shape", wrong_shape)
    with pytest.raises(CheckpointError, match=r"'classifier.bias'.*shape \(4,\).*needs \(3,\)"):
        Classifier.from_hf(shaped)

    def drop_encoder_weight(state):
        state.pop("bert.encoder.layer.1.output.dense.weight")

    backbone = _edited_checkpoint(directory, tmp_path / "backbone", drop_encoder_weight)
    with pytest.raises(CheckpointError, match="has no 'bert.encoder.layer.1.output.dense.weight'"):
        Classifier.from_hf(backbone)

    unknown = _edited_checkpoint(directory, tmp_path / "unknown", edit_config=lambda c: c.update(model_type="gpt2"))
    with pytest.raises(CheckpointError, match="model_type='gpt2'; supported model types: 'bert'"):
        Classifier.from_hf(unknown)

    def three_labels_two_names(config):
        config["id2label"] = {"0": "a", "1": "b"}

    names = _edited_checkpoint(directory, tmp_path / "names", edit_config=three_labels_two_names)
    with pytest.raises(CheckpointError, match="names 2 labels .id2label., but 'classifier.weight' has 3 rows"):
        Classifier.from_hf(names)


@pytest.mark.slow  # long: run with -m slow
def test_the_imported_classifier_fine_tunes(sequence_classification, movie_sentences):
    _, directory = sequence_classification
    preprocessor = keras_lm.tokenizers.BertPreprocessor.from_hf(str(directory), sequence_length=32)
    classifier = Classifier.from_hf(str(directory), preprocessor=preprocessor)
    classifier.compile(optimizer=keras.optimizers.Adam(1e-3))
    texts, labels = zip(*movie_sentences)
    history = classifier.fit(list(texts), np.array(labels), batch_size=16, epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert tf.reduce_all(tf.math.is_finite(classifier.predict(list(texts[:4]), verbose=0)))
