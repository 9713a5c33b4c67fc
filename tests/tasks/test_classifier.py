"""Classifier: fine-tuning from a reloaded SavedModel, a backbone or a .keras file."""
import os
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lm
from keras_lm.tasks import Classifier, SavedModelEncoder


@pytest.fixture
def parts(movie_vocabulary):
    tokenizer = keras_lm.tokenizers.WordPiece(vocabulary=movie_vocabulary)
    preprocessor = keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=32)
    backbone = keras_lm.applications.Bert("tiny", vocabulary_size=len(movie_vocabulary))
    return backbone, preprocessor


@pytest.fixture
def exported(parts, tmp_path):
    backbone, preprocessor = parts
    return keras_lm.export.encoder(backbone, preprocessor, str(tmp_path / "hub"))


def _data(movie_sentences):
    texts, labels = zip(*movie_sentences)
    return list(texts), np.array(labels)


def test_reloaded_encoder_matches_in_memory_backbone(parts, exported, movie_sentences):
    backbone, preprocessor = parts
    classifier = Classifier.from_saved_model(exported, num_classes=2)
    features = preprocessor(tf.constant(_data(movie_sentences)[0][:6]))
    reloaded = classifier.backbone(features, training=False)
    expected = backbone(features, training=False)
    for key in ("sequence_output", "pooled_output"):
        np.testing.assert_allclose(reloaded[key], expected[key], atol=1e-5)


def test_adamw_fine_tuning_updates_every_reloaded_weight_and_loss_falls(exported, movie_sentences):
    classifier = Classifier.from_saved_model(exported, num_classes=2)
    encoder_weights = classifier.backbone.trainable_weights
    assert len(encoder_weights) > 20 and all(":" not in w.name for w in encoder_weights)
    before = [w.numpy().copy() for w in encoder_weights]
    classifier.compile(optimizer=keras_lm.training.adamw(2e-3, warmup=2, total=40))
    texts, labels = _data(movie_sentences)
    history = classifier.fit(texts, labels, batch_size=16, epochs=10, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.7 * losses[0], losses
    unchanged = [w.name for w, b in zip(encoder_weights, before) if np.allclose(w.numpy(), b)]
    assert unchanged == []
    # The SavedModel's own functions see the updated variables (same variables, not copies).
    reloaded = classifier.backbone.saved_model
    assert any(v is w.value for w in encoder_weights for v in reloaded._reloaded_obj.variables)


def test_dropout_is_active_in_training_only(exported, movie_sentences):
    encoder = SavedModelEncoder(os.path.join(exported, "encoder"))
    preprocess = keras_lm.tasks.SavedModelPreprocessor(os.path.join(exported, "preprocess"))
    features = preprocess(tf.constant(_data(movie_sentences)[0][:4]))
    first = encoder(features, training=True)["pooled_output"]
    second = encoder(features, training=True)["pooled_output"]
    assert not np.allclose(first, second)
    np.testing.assert_array_equal(
        encoder(features, training=False)["pooled_output"],
        encoder(features, training=False)["pooled_output"],
    )


@pytest.mark.slow  # long: run with -m slow
def test_fit_accepts_a_text_dataset_and_keras_round_trip(parts, movie_sentences, tmp_path):
    backbone, preprocessor = parts
    classifier = Classifier(backbone, num_classes=2, preprocessor=preprocessor)
    classifier.compile(optimizer=keras_lm.training.adamw(1e-3))
    texts, labels = _data(movie_sentences)
    dataset = tf.data.Dataset.from_tensor_slices((texts, labels))  # unbatched: batched for us
    classifier.fit(dataset, epochs=1, verbose=0)
    path = str(tmp_path / "classifier.keras")
    classifier.save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. Keras' "compile() was not called as part of model loading"
        restored = keras.saving.load_model(path)
    assert isinstance(restored, Classifier)
    np.testing.assert_allclose(
        restored.predict(texts[:8], verbose=0), classifier.predict(texts[:8], verbose=0), atol=1e-6
    )
    # It comes back compiled, with the optimizer's state: evaluate and fit need no compile call.
    assert restored.compiled and int(restored.optimizer.iterations) == int(classifier.optimizer.iterations) > 0
    expected = classifier.evaluate(texts[:32], labels[:32], verbose=0, return_dict=True)
    got = restored.evaluate(texts[:32], labels[:32], verbose=0, return_dict=True)
    assert got.keys() == expected.keys() and abs(got["accuracy"] - expected["accuracy"]) < 1e-6
    restored.fit(texts[:32], labels[:32], epochs=1, verbose=0)


def test_fine_tuned_saved_model_classifier_keras_round_trip(exported, movie_sentences, tmp_path):
    classifier = Classifier.from_saved_model(exported, num_classes=2)
    classifier.compile(optimizer=keras_lm.training.adamw(2e-3))
    texts, labels = _data(movie_sentences)
    classifier.fit(texts, labels, batch_size=16, epochs=1, verbose=0)
    path = str(tmp_path / "fine_tuned.keras")
    classifier.save(path)
    restored = keras.saving.load_model(path)  # the fine-tuned encoder weights come from the file
    np.testing.assert_allclose(
        restored.predict(texts[:8], verbose=0), classifier.predict(texts[:8], verbose=0), atol=1e-5
    )


@pytest.mark.parametrize("saved", ["backbone", "pretrainer"])
def test_from_keras_file_takes_the_backbone(parts, movie_sentences, tmp_path, saved):
    backbone, preprocessor = parts
    for weight in backbone.weights:  # trained-looking weights: a fresh init would not match them
        weight.assign(np.random.default_rng(len(weight.path)).normal(0, 0.1, weight.shape).astype("float32"))
    model = keras_lm.pretraining.BertPretrainer(backbone, max_predictions=4) if saved == "pretrainer" else backbone
    path = str(tmp_path / f"{saved}.keras")
    model.save(path)
    classifier = Classifier.from_keras_file(path, num_classes=3, preprocessor=preprocessor)
    assert classifier.output.shape == (None, 3)
    assert classifier.backbone.count_params() == backbone.count_params()
    features = preprocessor(tf.constant(_data(movie_sentences)[0][:6]))
    loaded = classifier.backbone(features, training=False)
    expected = backbone(features, training=False)
    for key in ("sequence_output", "pooled_output"):
        np.testing.assert_allclose(loaded[key], expected[key], atol=1e-6)


def test_clear_errors_for_bad_exports(exported, tmp_path):
    with pytest.raises(FileNotFoundError, match="keras_lm.json"):
        Classifier.from_saved_model(str(tmp_path), num_classes=2)
    with pytest.raises(FileNotFoundError, match="No SavedModel directory"):
        SavedModelEncoder(str(tmp_path / "missing"))
    # A truncated variables file: one clear error naming the SavedModel.
    variables = os.path.join(exported, "encoder", "variables")
    data_file = [f for f in os.listdir(variables) if f.startswith("variables.data")][0]
    with open(os.path.join(variables, data_file), "r+b") as f:
        f.truncate(100)
    with pytest.raises(ValueError, match="Could not load the SavedModel at"):
        SavedModelEncoder(os.path.join(exported, "encoder"))
    with pytest.raises(ValueError, match="num_classes"):
        Classifier(keras_lm.applications.Bert("tiny", vocabulary_size=100), num_classes=1)


def test_trimming_batch_padding_keeps_logits(parts, movie_sentences):
    backbone, preprocessor = parts
    classifier = Classifier(backbone, num_classes=2, preprocessor=preprocessor)
    shortest = sorted(_data(movie_sentences)[0], key=len)[:8]
    features = preprocessor(tf.constant(shortest))
    trimmed = keras_lm.tasks.task.trim_padding(features)
    longest = int(tf.reduce_max(tf.reduce_sum(tf.cast(features["padding_mask"], tf.int32), 1)))
    rounded = min(-(-longest // 16) * 16, 32)  # widths are multiples of 16: few shapes for XLA
    assert trimmed["token_ids"].shape == (8, rounded)
    exact = keras_lm.tasks.task.trim_padding(features, multiple=1)
    assert exact["token_ids"].shape == (8, longest) and longest < 32
    np.testing.assert_allclose(
        classifier(exact, training=False), classifier(features, training=False), atol=1e-5
    )
    np.testing.assert_allclose(
        classifier(trimmed, training=False), classifier(features, training=False), atol=1e-5
    )


def test_mean_pooling_head_reads_the_average_of_real_tokens(parts, exported, movie_sentences, tmp_path):
    backbone, preprocessor = parts
    texts = _data(movie_sentences)[0][:5]
    classifier = Classifier(backbone, num_classes=2, preprocessor=preprocessor, pooling="mean")
    features = preprocessor(tf.constant(texts))
    sequence = backbone(features)["sequence_output"].numpy()
    mask = features["padding_mask"].numpy().astype("float32")[..., None]
    assert mask.min() == 0.0  # padded rows: a plain average would differ
    mean = (sequence * mask).sum(axis=1) / mask.sum(axis=1)
    kernel, bias = classifier.get_layer("logits").get_weights()
    np.testing.assert_allclose(classifier.predict(texts, verbose=0), mean @ kernel + bias, atol=1e-5)
    assert not np.allclose(mean, sequence.mean(axis=1), atol=1e-3)

    path = str(tmp_path / "mean.keras")
    classifier.save(path)
    reloaded = keras.saving.load_model(path)
    assert reloaded.pooling == "mean"
    np.testing.assert_allclose(reloaded.predict(texts, verbose=0), classifier.predict(texts, verbose=0), atol=1e-6)

    from_export = Classifier.from_saved_model(exported, num_classes=2, pooling="mean")
    from_export.get_layer("logits").set_weights([kernel, bias])
    np.testing.assert_allclose(from_export.predict(texts, verbose=0), mean @ kernel + bias, atol=1e-4)
    with pytest.raises(ValueError, match="Unknown pooling 'max'"):
        Classifier(backbone, num_classes=2, pooling="max")
