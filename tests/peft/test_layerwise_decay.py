"""Layer-wise learning-rate decay: the update of a variable at depth d is scaled by decay ** (L - d),
exactly, with SGD and with keras_lm's AdamW (learning rate and weight decay), on keras_lm layers and on
an encoder reloaded as a SavedModel layer."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lm
from keras_lm.peft.layerwise_decay import LayerwiseDecayAdamW, layerwise_decay

DECAY = 0.5  # powers of two: the scaled updates are exact in float32
LEARNING_RATE = 2.0**-6


def _depth(path):
    """0: embeddings, i + 1: transformer_layer_{i}, 3: pooler and head (2 blocks), from the path alone."""
    if path.split("/")[0] in ("token_embedding", "position_embedding", "segment_embedding", "embeddings_layer_norm"):
        return 0
    if path.startswith("transformer_layer_"):
        return int(path.split("/")[0].rsplit("_", 1)[1]) + 1
    return 3


def _gradients(classifier, texts, labels):
    features = classifier.preprocessor(tf.constant(texts))
    variables = classifier.trainable_variables
    with tf.GradientTape() as tape:
        logits = classifier(features, training=False)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
    return [tf.convert_to_tensor(g) for g in tape.gradient(loss, variables)], variables


def test_one_sgd_step_scales_the_update_of_layer_i_by_decay_to_the_l_minus_i(classifier, texts_and_labels):
    texts, labels = texts_and_labels
    gradients, variables = _gradients(classifier, texts[:16], labels[:16])
    before = [v.numpy().copy() for v in variables]
    optimizer = layerwise_decay(keras.optimizers.SGD(LEARNING_RATE), classifier, decay=DECAY)
    optimizer.apply(gradients, variables)
    depths = set()
    for variable, start, gradient in zip(variables, before, gradients):
        depth = _depth(variable.path)
        depths.add(depth)
        expected = start - gradient.numpy() * np.float32(LEARNING_RATE * DECAY ** (3 - depth))
        np.testing.assert_array_equal(variable.numpy(), expected, err_msg=variable.path)
    assert depths == {0, 1, 2, 3}


def test_adamw_steps_and_weight_decay_scale_per_layer(classifier, texts_and_labels):
    texts, labels = texts_and_labels
    gradients, variables = _gradients(classifier, texts[:16], labels[:16])
    start = [v.numpy().copy() for v in variables]
    decayed = layerwise_decay(keras_lm.training.adamw(LEARNING_RATE, weight_decay=0.25), classifier, decay=DECAY)
    assert isinstance(decayed, LayerwiseDecayAdamW) and decayed.layer_decay == DECAY and decayed.num_layers == 2
    decayed.apply(gradients, variables)
    stepped = [v.numpy().copy() for v in variables]
    for depth in range(4):  # reference: the plain optimizer at that depth's rate, on fresh copies
        for variable, value in zip(variables, start):
            variable.assign(value)
        plain = keras_lm.training.adamw(LEARNING_RATE * DECAY ** (3 - depth), weight_decay=0.25)
        plain.apply(gradients, variables)
        for variable, result in zip(variables, stepped):
            if _depth(variable.path) == depth:
                np.testing.assert_allclose(result, variable.numpy(), rtol=0, atol=1e-7, err_msg=variable.path)
    kernel = [i for i, v in enumerate(variables) if v.path == "transformer_layer_0/self_attention/qkv/kernel"][0]
    assert not np.allclose(stepped[kernel], start[kernel])  # it did move (and was weight-decayed)


def test_layer_depths_are_read_from_saved_model_variable_names(classifier, preprocessor, tmp_path):
    exported = keras_lm.export.encoder(classifier.backbone, preprocessor, str(tmp_path / "hub"))
    reloaded = keras_lm.tasks.Classifier.from_saved_model(exported, num_classes=2)
    optimizer = layerwise_decay(keras_lm.training.adamw(1e-3), reloaded, decay=DECAY)
    multipliers = {v.path.replace("/", "_"): optimizer.multiplier(v) for v in classifier.trainable_variables}
    reloaded_multipliers = {v.path.replace("/", "_"): optimizer.multiplier(v) for v in reloaded.trainable_variables}
    assert reloaded_multipliers == multipliers
    assert sorted(set(multipliers.values())) == [0.125, 0.25, 0.5, 1.0]


def test_compile_fit_and_config_round_trip(classifier, texts_and_labels):
    optimizer = layerwise_decay(keras_lm.training.adamw(1e-3, warmup=2, total=8), classifier, decay=0.9)
    classifier.compile(optimizer=optimizer)
    history = classifier.fit(*texts_and_labels, batch_size=16, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    config = keras.optimizers.serialize(optimizer)
    again = keras.optimizers.deserialize(config)
    assert isinstance(again, LayerwiseDecayAdamW) and again.layer_decay == 0.9 and again.num_layers == 2
    with pytest.raises(ValueError, match="not built yet"):
        layerwise_decay(optimizer, classifier)
    with pytest.raises(TypeError, match="layerwise_decay wraps"):
        layerwise_decay(keras.optimizers.RMSprop(), classifier)
    with pytest.raises(ValueError, match=r"`layer_decay` must be in \(0, 1\]"):
        layerwise_decay(keras.optimizers.SGD(), classifier, decay=1.5)
