import math

import keras
import numpy as np
import pytest

from keras_lm.layers import FeedForward


def numpy_gelu(x, approximate):
    if approximate:
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / np.sqrt(2)))


@pytest.mark.parametrize("activation,approximate", [("gelu", False), ("gelu_approximate", True)])
def test_matches_numpy_two_layer_mlp(activation, approximate):
    x = np.random.default_rng(0).normal(size=(2, 3, 8)).astype("float32")
    layer = FeedForward(intermediate_dim=16, activation=activation, bias_initializer="random_normal")
    out = np.asarray(layer(x))
    k1, b1 = (np.asarray(w) for w in layer.intermediate_dense.weights)
    k2, b2 = (np.asarray(w) for w in layer.output_dense.weights)
    np.testing.assert_allclose(out, numpy_gelu(x @ k1 + b1, approximate) @ k2 + b2, atol=1e-5)


def test_config_round_trip_keeps_activation():
    for activation in ("gelu", "gelu_approximate", "relu"):
        layer = FeedForward(32, activation=activation, dropout=0.2)
        config = layer.get_config()
        clone = FeedForward.from_config(config)
        assert clone.get_config() == config
        x = np.random.default_rng(1).normal(size=(1, 2, 4)).astype("float32")
        layer(x)
        clone(x)
        clone.set_weights(layer.get_weights())
        np.testing.assert_allclose(np.asarray(clone(x)), np.asarray(layer(x)), atol=1e-6)


def test_dropout_only_in_training():
    layer = FeedForward(16, dropout=0.5)
    x = np.ones((2, 3, 4), "float32")
    np.testing.assert_array_equal(np.asarray(layer(x)), np.asarray(layer(x, training=False)))
    assert np.abs(np.asarray(layer(x, training=True)) - np.asarray(layer(x))).max() > 1e-4


def test_mixed_bfloat16_computes_in_bf16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        layer = FeedForward(16, bias_initializer="random_normal")
        x = np.random.default_rng(5).normal(size=(2, 3, 8)).astype("float32")
        out = layer(x)
        assert out.dtype == "bfloat16" and layer.intermediate_dense.kernel.dtype == "float32"
        k1, b1 = (np.asarray(w) for w in layer.intermediate_dense.weights)
        k2, b2 = (np.asarray(w) for w in layer.output_dense.weights)
        expected = numpy_gelu(x @ k1 + b1, approximate=False) @ k2 + b2
        # Within 2 bf16 ulps (2**-7 each) of the output's scale: a few roundings, each half an ulp.
        np.testing.assert_allclose(np.asarray(keras.ops.cast(out, "float32")), expected,
                                   atol=2**-6 * np.abs(expected).max(), rtol=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_gated_feed_forward_is_swiglu():
    x = np.random.default_rng(2).normal(size=(2, 4, 8)).astype("float32")
    layer = FeedForward(intermediate_dim=16, gated=True, activation="silu", use_bias=False)
    out = np.asarray(layer(x))
    kernel = np.asarray(layer.gate_up_dense.kernel)
    gate, up = x @ kernel[:, :16], x @ kernel[:, 16:]
    silu = gate / (1 + np.exp(-gate))
    np.testing.assert_allclose(out, (silu * up) @ np.asarray(layer.output_dense.kernel), atol=1e-5)
    assert len(layer.weights) == 2  # use_bias=False: no biases


def test_gated_feed_forward_with_biases_and_gelu_matches_numpy():
    x = np.random.default_rng(3).normal(size=(2, 4, 8)).astype("float32")
    layer = FeedForward(intermediate_dim=16, gated=True, activation="gelu_approximate", bias_initializer="random_normal")
    out = np.asarray(layer(x))
    kernel, bias = (np.asarray(w) for w in layer.gate_up_dense.weights)
    gate_up = x @ kernel + bias
    k2, b2 = (np.asarray(w) for w in layer.output_dense.weights)
    expected = (numpy_gelu(gate_up[..., :16], approximate=True) * gate_up[..., 16:]) @ k2 + b2
    np.testing.assert_allclose(out, expected, atol=1e-5)
    config = layer.get_config()
    assert config["gated"] and FeedForward.from_config(config).get_config() == config
