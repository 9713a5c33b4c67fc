import keras
import numpy as np
import pytest

import tensorflow as tf

from keras_lm.training import AdamW, WarmupLinearDecay, adamw


def test_warmup_linear_decay_values():
    schedule = WarmupLinearDecay(1e-3, warmup=10, total=110)
    got = [float(schedule(step)) for step in (0, 5, 10, 60, 110, 500)]
    np.testing.assert_allclose(got, [0.0, 5e-4, 1e-3, 5e-4, 0.0, 0.0], atol=1e-9)
    constant = WarmupLinearDecay(1e-3, warmup=4)
    np.testing.assert_allclose([float(constant(s)) for s in (2, 4, 10**6)], [5e-4, 1e-3, 1e-3])


def test_schedule_config_round_trip():
    schedule = WarmupLinearDecay(3e-4, warmup=7, total=70, end=1e-5)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert [float(restored(s)) for s in (3, 40)] == [float(schedule(s)) for s in (3, 40)]


@pytest.mark.parametrize("kwargs", [{"total": 0}, {"warmup": 20, "total": 10}])
def test_schedule_rejects_bad_steps(kwargs):
    with pytest.raises(ValueError, match="must be"):
        WarmupLinearDecay(1e-3, **{"warmup": 1, **kwargs})


def test_adamw_decays_kernels_but_not_biases_or_layer_norms():
    dense = keras.layers.Dense(3)
    norm = keras.layers.LayerNormalization()
    model = keras.Sequential([keras.Input((4,)), dense, norm])
    keras.utils.set_random_seed(0)
    for variable in model.weights:
        variable.assign(np.full(variable.shape, 2.0, "float32"))
    optimizer = adamw(0.1, weight_decay=0.5, clipnorm=None)
    zeros = [keras.ops.zeros(v.shape) for v in model.trainable_variables]
    optimizer.apply_gradients(zip(zeros, model.trainable_variables))
    # Zero gradients: only decoupled decay moves weights, by lr * wd * w = 0.1.
    np.testing.assert_allclose(dense.kernel.numpy(), 1.9, atol=1e-6)
    np.testing.assert_allclose(dense.bias.numpy(), 2.0)
    np.testing.assert_allclose(norm.gamma.numpy(), 2.0)
    np.testing.assert_allclose(norm.beta.numpy(), 2.0)


def _trained_weights(optimizer, steps=5):
    """A small model's weights after `steps` updates from fixed random gradients (dense and sparse)."""
    keras.utils.set_random_seed(0)
    embedding = keras.layers.Embedding(10, 4)
    dense = keras.layers.Dense(3)
    model = keras.Sequential([keras.Input((2,), dtype="int32"), embedding, dense])
    rng = np.random.default_rng(1)
    for step in range(steps):
        gradients = [tf.IndexedSlices(tf.constant(rng.normal(size=(3, 4)), tf.float32), tf.constant([1, 7, 1]),
                                      tf.constant([10, 4]))]
        gradients += [tf.constant(rng.normal(size=v.shape), tf.float32) for v in model.trainable_variables[1:]]
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
    return [v.numpy() for v in model.trainable_variables], optimizer


def test_fused_adamw_update_equals_keras_adamw():
    kwargs = dict(learning_rate=0.05, weight_decay=0.1, beta_1=0.8, beta_2=0.95, epsilon=1e-6)
    fused, optimizer = _trained_weights(AdamW(**kwargs))
    reference, _ = _trained_weights(keras.optimizers.AdamW(**kwargs))
    for got, want in zip(fused[1:], reference[1:]):  # dense variables: the fused kernel
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    one_step_fewer, _ = _trained_weights(keras.optimizers.AdamW(**kwargs), steps=4)
    assert np.abs(fused[1] - one_step_fewer[1]).max() > 1e-3  # the tolerance sees a single update
    graph = tf.function(lambda: optimizer.apply_gradients(
        zip([tf.ones((3, 4)), tf.ones(3)], optimizer._trainable_variables[1:]))).get_concrete_function().graph
    assert [op.type for op in graph.get_operations()].count("ResourceApplyAdam") == 2


def test_adamw_rejects_non_positive_rate():
    with pytest.raises(ValueError, match="learning_rate"):
        adamw(0.0)


@pytest.mark.parametrize("module_name", ["optimizers", "schedules", "speed"])
def test_docstring_examples(module_name):
    import doctest
    import importlib

    module = importlib.import_module(f"keras_lm.training.{module_name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
