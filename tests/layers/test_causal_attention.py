import doctest

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lm.layers.causal_attention as causal_attention_module
from keras_lm.layers import CausalSelfAttention, causal_attention_bias


def reference_attention(layer, x, allowed, rope=None):
    """Plain numpy grouped-query attention with the layer's weights; allowed is [B, T, S] bool."""
    weights = [np.asarray(w) for w in layer.qkv_dense.weights]
    kernel, bias = weights[0], (weights[1] if len(weights) > 1 else 0.0)
    out_weights = [np.asarray(w) for w in layer.output_dense.weights]
    batch, length, _ = x.shape
    heads, kv_heads, head_dim = layer.num_heads, layer.num_key_value_heads, layer._head_dim
    qkv = x @ kernel + bias
    q = qkv[..., : heads * head_dim].reshape(batch, length, heads, head_dim).transpose(0, 2, 1, 3)
    k = qkv[..., heads * head_dim: (heads + kv_heads) * head_dim].reshape(batch, length, kv_heads, head_dim)
    v = qkv[..., (heads + kv_heads) * head_dim:].reshape(batch, length, kv_heads, head_dim)
    k, v = (np.repeat(t.transpose(0, 2, 1, 3), heads // kv_heads, axis=1) for t in (k, v))
    if rope is not None:
        q, k = rope(q), rope(k)
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(head_dim)
    scores = np.where(allowed[:, None], scores, -1e9)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, heads * head_dim)
    return context @ out_weights[0] + (out_weights[1] if len(out_weights) > 1 else 0.0)


def numpy_rope(x, base=10000.0):
    length, dim = x.shape[-2], x.shape[-1]
    inverse = 1.0 / base ** (np.arange(0, dim, 2) / dim)
    angles = np.arange(length)[:, None] * inverse[None]
    angles = np.concatenate([angles, angles], -1)
    rotated = np.concatenate([-x[..., dim // 2:], x[..., : dim // 2]], -1)
    return x * np.cos(angles) + rotated * np.sin(angles)


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_grouped_query_attention_matches_numpy_with_causal_and_padding(kv_heads):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 6, 16)).astype("float32")
    mask = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], "int32")
    layer = CausalSelfAttention(num_heads=4, num_key_value_heads=kv_heads, rope_max_wavelength=10000.0)
    out = np.asarray(layer(x, padding_mask=mask))
    causal = np.tril(np.ones((6, 6), bool))[None]
    allowed = causal & mask[:, None, :].astype(bool) & mask[:, :, None].astype(bool)
    expected = reference_attention(layer, x, allowed, rope=numpy_rope)
    real = mask.astype(bool)
    np.testing.assert_allclose(out[real], expected[real], atol=1e-5)
    assert tuple(layer.qkv_dense.kernel.shape) == (16, (4 + 2 * kv_heads) * 4)


def test_document_mask_resets_attention_at_boundaries():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 7, 8)).astype("float32")
    layer = CausalSelfAttention(num_heads=2, use_bias=False)
    packed = np.asarray(layer(x, padding_mask=np.array([[1, 1, 1, 2, 2, 3, 0]])))
    first = np.asarray(layer(x[:, :3]))
    second = np.asarray(layer(x[:, 3:5]))
    third = np.asarray(layer(x[:, 5:6]))
    np.testing.assert_allclose(packed[:, :3], first, atol=1e-6)
    np.testing.assert_allclose(packed[:, 3:5], second, atol=1e-6)
    np.testing.assert_allclose(packed[:, 5:6], third, atol=1e-6)
    # An all-ones mask is plain causal attention.
    np.testing.assert_allclose(np.asarray(layer(x, padding_mask=np.ones((1, 7), "int32"))), np.asarray(layer(x)),
                               atol=1e-6)


def test_bias_is_causal_and_same_document():
    bias = np.asarray(causal_attention_bias(np.arange(4), np.arange(4), np.array([[1, 1, 2, 0]]),
                                            np.array([[1, 1, 2, 0]])))[0, 0, 0]
    allowed = bias == 0
    np.testing.assert_array_equal(allowed, [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])


@pytest.mark.parametrize("rope", [None, 10000.0])
def test_cache_steps_equal_full_sequence(rope):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 7, 16)).astype("float32")
    layer = CausalSelfAttention(num_heads=4, num_key_value_heads=2, rope_max_wavelength=rope)
    full = np.asarray(layer(x))
    cache = np.zeros(layer.cache_shape(2, 10), "float32")
    out, cache = layer(x[:, :4], cache=cache, cache_index=0)
    pieces = [np.asarray(out)]
    for i in range(4, 7):
        out, cache = layer(x[:, i:i + 1], cache=cache, cache_index=tf.constant(i))
        pieces.append(np.asarray(out))
    np.testing.assert_allclose(np.concatenate(pieces, 1), full, atol=1e-5)
    assert np.abs(np.asarray(cache)[:, :, :, 7:]).max() == 0  # nothing written past the last token


def test_bad_head_counts_are_clear_errors():
    with pytest.raises(ValueError, match=r"num_key_value_heads=3 .*num_heads=4"):
        CausalSelfAttention(num_heads=4, num_key_value_heads=3)
    with pytest.raises(ValueError, match=r"hidden_dim=10.*num_heads=4"):
        CausalSelfAttention(num_heads=4)(np.zeros((1, 2, 10), "float32"))


def test_config_round_trip():
    layer = CausalSelfAttention(num_heads=4, num_key_value_heads=2, head_dim=8, rope_max_wavelength=500.0,
                                dropout=0.1, use_bias=False)
    config = layer.get_config()
    assert CausalSelfAttention.from_config(config).get_config() == config


def test_mixed_bfloat16_softmax_in_float32():
    layer = CausalSelfAttention(num_heads=2, num_key_value_heads=1, rope_max_wavelength=10000.0,
                                dtype="mixed_bfloat16")
    x = np.random.default_rng(4).normal(size=(2, 5, 8)).astype("float32")
    out = layer(x)
    assert out.dtype == "bfloat16" and layer.qkv_dense.kernel.dtype == "float32"
    graph = tf.function(lambda t: layer(t, padding_mask=tf.ones((2, 5), "int32"))).get_concrete_function(
        tf.TensorSpec((2, 5, 8), "float32")
    ).graph
    softmax = [op.outputs[0].dtype for op in graph.get_operations() if op.type == "Softmax"]
    assert softmax == [tf.float32]
    matmuls = {op.outputs[0].dtype for op in graph.get_operations() if op.type == "BatchMatMulV2"}
    assert matmuls == {tf.bfloat16}
    expected = reference_attention(layer, x, np.tril(np.ones((5, 5), bool))[None].repeat(2, 0), rope=numpy_rope)
    # bf16 keeps 8 significant bits: one ulp at the output's scale s is 2**-7 s. The layer rounds its
    # input, weights, projections, scores and context once each; the result stays within 2 ulps.
    np.testing.assert_allclose(np.asarray(keras.ops.cast(out, "float32")), expected,
                               atol=2**-6 * np.abs(expected).max(), rtol=0)


def test_docstring_examples():
    result = doctest.testmod(causal_attention_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
