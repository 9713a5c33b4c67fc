import doctest

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lm.layers.attention as attention_module
from keras_lm.layers import MultiHeadAttention, attention_allowed


def softmax_attention(q, k, v, allowed, bias=None, scale=None):
    """numpy attention over [B, H, T, D] / [B, H, S, D]; allowed is [B, T, S] bool."""
    scores = q @ k.transpose(0, 1, 3, 2) * (q.shape[-1] ** -0.5 if scale is None else scale)
    if bias is not None:
        scores = scores + bias
    scores = np.where(allowed[:, None], scores, -1e9)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    return probs @ v


def numpy_rope(x, base=10000.0, start=0):
    length, dim = x.shape[-2], x.shape[-1]
    inverse = 1.0 / base ** (np.arange(0, dim, 2) / dim)
    angles = (np.arange(length) + start)[:, None] * inverse[None]
    angles = np.concatenate([angles, angles], -1)
    rotated = np.concatenate([-x[..., dim // 2:], x[..., : dim // 2]], -1)
    return x * np.cos(angles) + rotated * np.sin(angles)


def _dense(layer):
    weights = [np.asarray(w) for w in layer.weights]
    return lambda x: x @ weights[0] + (weights[1] if len(weights) > 1 else 0.0)


def reference_self_attention(layer, x, allowed, rope=None, bias=None):
    """numpy grouped-query self-attention with the layer's weights."""
    batch, length, _ = x.shape
    heads, kv_heads, head_dim = layer.num_heads, layer.num_key_value_heads, layer._head_dim
    qkv = _dense(layer.qkv_dense)(x)
    q = qkv[..., : heads * head_dim].reshape(batch, length, heads, head_dim).transpose(0, 2, 1, 3)
    k = qkv[..., heads * head_dim: (heads + kv_heads) * head_dim].reshape(batch, length, kv_heads, head_dim)
    v = qkv[..., (heads + kv_heads) * head_dim:].reshape(batch, length, kv_heads, head_dim)
    k, v = (np.repeat(t.transpose(0, 2, 1, 3), heads // kv_heads, axis=1) for t in (k, v))
    if rope is not None:
        q, k = rope(q), rope(k)
    context = softmax_attention(q, k, v, allowed, bias, layer.scale)
    return _dense(layer.output_dense)(context.transpose(0, 2, 1, 3).reshape(batch, length, heads * head_dim))


def reference_cross_attention(layer, x, context, context_mask):
    batch, length, _ = x.shape
    heads, kv_heads, head_dim = layer.num_heads, layer.num_key_value_heads, layer._head_dim
    q = _dense(layer.query_dense)(x).reshape(batch, length, heads, head_dim).transpose(0, 2, 1, 3)
    kv = _dense(layer.key_value_dense)(context)
    k, v = (t.reshape(batch, context.shape[1], kv_heads, head_dim).transpose(0, 2, 1, 3)
            for t in np.split(kv, 2, axis=-1))
    k, v = (np.repeat(t, heads // kv_heads, axis=1) for t in (k, v))
    allowed = np.broadcast_to(context_mask[:, None, :].astype(bool), (batch, length, context.shape[1]))
    context_vectors = softmax_attention(q, k, v, allowed)
    return _dense(layer.output_dense)(context_vectors.transpose(0, 2, 1, 3).reshape(batch, length, -1))


def random_layer(seed=0, **kwargs):
    """A built layer whose every weight, biases included, is random."""
    keras.utils.set_random_seed(seed)
    return MultiHeadAttention(bias_initializer="random_normal", **kwargs)


def test_matches_numpy_with_padding():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 6, 8)).astype("float32")
    mask = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], "int32")
    layer = random_layer(num_heads=2)
    out = np.asarray(layer(x, padding_mask=mask))
    allowed = np.broadcast_to(mask[:, None, :].astype(bool), (2, 6, 6))  # padding queries see every real key
    np.testing.assert_allclose(out, reference_self_attention(layer, x, allowed), atol=1e-5)


@pytest.mark.parametrize("mask_dtype", ["bool", "int32"])
def test_padded_keys_do_not_influence_real_positions(mask_dtype):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 7, 16)).astype("float32")
    mask = np.array([[1] * 5 + [0] * 2, [1] * 3 + [0] * 4]).astype(mask_dtype)
    layer = MultiHeadAttention(num_heads=4)
    changed = x.copy()
    changed[0, 5:] = rng.normal(size=(2, 16)) * 10
    changed[1, 3:] = rng.normal(size=(4, 16)) * 10
    before = np.asarray(layer(x, padding_mask=mask))
    after = np.asarray(layer(changed, padding_mask=mask))
    np.testing.assert_allclose(before[0, :5], after[0, :5], atol=1e-6)
    np.testing.assert_allclose(before[1, :3], after[1, :3], atol=1e-6)
    assert np.abs(before[0, 5:] - after[0, 5:]).max() > 1e-3  # padded queries still computed


def test_causal_and_pairwise_masks():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 5, 8)).astype("float32")
    layer = random_layer(num_heads=2)
    causal = np.tril(np.ones((5, 5), bool))[None]
    out = np.asarray(layer(x, use_causal_mask=True))
    expected = reference_self_attention(layer, x, causal)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    np.testing.assert_allclose(np.asarray(layer(x, attention_mask=causal.astype("int32"))), expected, atol=1e-5)


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_grouped_query_attention_with_rope_causal_and_padding_matches_numpy(kv_heads):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 6, 16)).astype("float32")
    mask = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], "int32")
    layer = random_layer(num_heads=4, num_key_value_heads=kv_heads, rope_max_wavelength=10000.0)
    out = np.asarray(layer(x, padding_mask=mask, use_causal_mask=True))
    allowed = np.tril(np.ones((6, 6), bool))[None] & mask[:, None, :].astype(bool)
    np.testing.assert_allclose(out, reference_self_attention(layer, x, allowed, rope=numpy_rope), atol=1e-5)
    assert tuple(layer.qkv_dense.kernel.shape) == (16, (4 + 2 * kv_heads) * 4)


def test_document_mask_resets_attention_at_boundaries():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 7, 8)).astype("float32")
    layer = MultiHeadAttention(num_heads=2, use_bias=False)
    packed = np.asarray(layer(x, padding_mask=np.array([[1, 1, 1, 2, 2, 3, 0]]), use_causal_mask=True))
    for start, stop in ((0, 3), (3, 5), (5, 6)):
        alone = np.asarray(layer(x[:, start:stop], use_causal_mask=True))
        np.testing.assert_allclose(packed[:, start:stop], alone, atol=1e-6)
    # An all-ones mask is plain causal attention.
    np.testing.assert_allclose(np.asarray(layer(x, padding_mask=np.ones((1, 7), "int32"), use_causal_mask=True)),
                               np.asarray(layer(x, use_causal_mask=True)), atol=1e-6)


def test_allowed_mask_is_causal_same_document_and_lets_padding_queries_see_real_keys():
    segments = np.array([[1, 1, 2, 0]])
    allowed = np.asarray(attention_allowed(segments, segments, np.arange(4), np.arange(4)))[0, 0]
    np.testing.assert_array_equal(allowed, [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [1, 1, 1, 0]])
    assert attention_allowed() is None


def test_position_bias_is_added_to_the_scores():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 5, 8)).astype("float32")
    bias = rng.normal(size=(1, 2, 5, 5)).astype("float32")
    layer = random_layer(num_heads=2, scale=1.0, use_bias=False)
    out = np.asarray(layer(x, position_bias=bias, use_causal_mask=True))
    causal = np.tril(np.ones((5, 5), bool))[None].repeat(2, 0)
    np.testing.assert_allclose(out, reference_self_attention(layer, x, causal, bias=bias), atol=1e-5)


@pytest.mark.parametrize("kv_heads", [2, 1])
def test_cross_attention_matches_numpy_and_its_context_cache(kv_heads):
    rng = np.random.default_rng(6)
    x = rng.normal(size=(2, 4, 16)).astype("float32")
    context = rng.normal(size=(2, 6, 12)).astype("float32")
    context_mask = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], "int32")
    layer = random_layer(num_heads=2, num_key_value_heads=kv_heads, cross_attention=True)
    out = np.asarray(layer(x, context=context, context_padding_mask=context_mask))
    np.testing.assert_allclose(out, reference_cross_attention(layer, x, context, context_mask), atol=1e-5)
    assert tuple(layer.key_value_dense.kernel.shape) == (12, 2 * kv_heads * 8)
    cached = layer(x, context_cache=layer.context_cache(context), context_padding_mask=context_mask)
    np.testing.assert_allclose(np.asarray(cached), out, atol=1e-6)


@pytest.mark.parametrize("rope", [None, 10000.0])
def test_cache_steps_equal_full_sequence(rope):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 7, 16)).astype("float32")
    layer = MultiHeadAttention(num_heads=4, num_key_value_heads=2, rope_max_wavelength=rope)
    full = np.asarray(layer(x, use_causal_mask=True))
    cache = np.zeros(layer.cache_shape(2, 10), "float32")
    out, cache = layer(x[:, :4], cache=cache, cache_index=0)
    pieces = [np.asarray(out)]
    for i in range(4, 7):
        out, cache = layer(x[:, i:i + 1], cache=cache, cache_index=tf.constant(i))
        pieces.append(np.asarray(out))
    np.testing.assert_allclose(np.concatenate(pieces, 1), full, atol=1e-5)
    assert np.abs(np.asarray(cache)[:, :, :, 7:]).max() == 0  # nothing written past the last token


def _pair(**kwargs):
    """The same random weights computed fused and explicitly."""
    fused = random_layer(implementation="fused", **kwargs)
    explicit = MultiHeadAttention(implementation="explicit", **kwargs)
    return fused, explicit


MASK_CASES = {
    "none": {},
    "padding": {"padding_mask": np.array([[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1]], "int32")},
    "causal": {"use_causal_mask": True},
    "causal+documents": {"use_causal_mask": True, "padding_mask": np.array([[1, 1, 2, 2, 2, 3, 0], [1] * 7], "int32")},
    "pairwise": {"attention_mask": np.tril(np.ones((2, 7, 7), "int32"), 1)},
    "position_bias": {"use_causal_mask": True,
                      "position_bias": np.random.default_rng(9).normal(size=(1, 4, 7, 7)).astype("float32")},
}


@pytest.mark.parametrize("case", sorted(MASK_CASES))
@pytest.mark.parametrize("kv_heads,rope", [(4, None), (2, 10000.0), (1, 500.0)])
def test_fused_and_explicit_agree_for_every_mask(case, kv_heads, rope):
    x = np.random.default_rng(7).normal(size=(2, 7, 16)).astype("float32")
    fused, explicit = _pair(num_heads=4, num_key_value_heads=kv_heads, rope_max_wavelength=rope)
    for layer in (fused, explicit):
        layer.build((2, 7, 16))
    explicit.set_weights(fused.get_weights())
    assert fused._uses_fused(MASK_CASES[case].get("position_bias"), None) and not explicit._fused
    out = np.asarray(fused(x, **MASK_CASES[case]))
    expected = np.asarray(explicit(x, **MASK_CASES[case]))
    np.testing.assert_allclose(out, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kv_heads,rope", [(4, None), (2, 10000.0)])
def test_fused_and_explicit_agree_with_a_cache(kv_heads, rope):
    x = np.random.default_rng(8).normal(size=(2, 6, 16)).astype("float32")
    mask = np.array([[0, 0, 1, 1, 1, 1, 1, 1], [1] * 8], "int32")  # left padding, as in batched generation
    fused, explicit = _pair(num_heads=4, num_key_value_heads=kv_heads, rope_max_wavelength=rope)
    for layer in (fused, explicit):
        layer.build((2, 6, 16))
    explicit.set_weights(fused.get_weights())
    results = []
    for layer in (fused, explicit):
        cache = np.zeros(layer.cache_shape(2, 8), "float32")
        out, cache = layer(x[:, :4], padding_mask=mask, cache=cache, cache_index=0)
        steps = [np.asarray(out)]
        for i in (4, 5):
            out, cache = layer(x[:, i:i + 1], padding_mask=mask, cache=cache, cache_index=i)
            steps.append(np.asarray(out))
        results.append(np.concatenate(steps, 1))
    np.testing.assert_allclose(results[0], results[1], atol=1e-5, rtol=0)


def test_fused_and_explicit_agree_for_cross_attention():
    rng = np.random.default_rng(10)
    x, context = rng.normal(size=(2, 4, 16)).astype("float32"), rng.normal(size=(2, 6, 16)).astype("float32")
    context_mask = np.array([[1] * 6, [1, 1, 0, 0, 0, 0]], "int32")
    fused, explicit = _pair(num_heads=4, num_key_value_heads=2, cross_attention=True)
    for layer in (fused, explicit):
        layer.build((2, 4, 16), (2, 6, 16))
    explicit.set_weights(fused.get_weights())
    np.testing.assert_allclose(np.asarray(fused(x, context=context, context_padding_mask=context_mask)),
                               np.asarray(explicit(x, context=context, context_padding_mask=context_mask)),
                               atol=1e-5, rtol=0)


def test_fused_layer_computes_explicitly_when_training_with_dropout():
    layer = MultiHeadAttention(num_heads=2, dropout=0.5, implementation="fused")
    assert layer._uses_fused(None, training=False)
    assert not layer._uses_fused(None, training=True)  # the fused op has no attention dropout
    x = np.random.default_rng(3).normal(size=(2, 6, 8)).astype("float32")
    assert np.abs(np.asarray(layer(x, training=True)) - np.asarray(layer(x))).max() > 1e-4


def test_cpu_default_is_the_measured_faster_explicit_path():
    if tf.config.list_logical_devices("GPU"):
        assert attention_module.default_implementation() == "fused"
    else:
        assert attention_module.default_implementation() == "explicit"
        assert not MultiHeadAttention(num_heads=2)._fused


def test_explicit_head_dim_and_shapes():
    layer = MultiHeadAttention(num_heads=3, head_dim=4)
    out = layer(np.zeros((2, 5, 10), "float32"))
    assert tuple(out.shape) == (2, 5, 10)
    assert tuple(layer.qkv_dense.kernel.shape) == (10, 36)
    assert tuple(layer.output_dense.kernel.shape) == (12, 10)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match=r"hidden_dim=10.*num_heads=3"):
        MultiHeadAttention(num_heads=3)(np.zeros((1, 2, 10), "float32"))
    with pytest.raises(ValueError, match=r"num_key_value_heads=3 .*num_heads=4"):
        MultiHeadAttention(num_heads=4, num_key_value_heads=3)
    with pytest.raises(ValueError, match="implementation"):
        MultiHeadAttention(num_heads=4, implementation="flash")
    with pytest.raises(ValueError, match="cross-attention takes none"):
        MultiHeadAttention(num_heads=4, cross_attention=True, rope_max_wavelength=10000.0)
    with pytest.raises(ValueError, match="needs `context`"):
        MultiHeadAttention(num_heads=2, cross_attention=True)(np.zeros((1, 2, 8), "float32"))


def test_dropout_only_in_training():
    x = np.random.default_rng(3).normal(size=(2, 6, 8)).astype("float32")
    layer = MultiHeadAttention(num_heads=2, dropout=0.5)
    np.testing.assert_array_equal(np.asarray(layer(x)), np.asarray(layer(x, training=False)))
    assert np.abs(np.asarray(layer(x, training=True)) - np.asarray(layer(x))).max() > 1e-4


def test_config_round_trip():
    layer = MultiHeadAttention(num_heads=4, num_key_value_heads=2, head_dim=8, rope_max_wavelength=500.0,
                               dropout=0.1, use_bias=False, scale=1.0, implementation="fused",
                               kernel_initializer="zeros")
    config = layer.get_config()
    assert MultiHeadAttention.from_config(config).get_config() == config
    cross = MultiHeadAttention(num_heads=2, cross_attention=True)
    assert MultiHeadAttention.from_config(cross.get_config()).cross_attention


@pytest.mark.parametrize("kv_heads,rope", [(2, None), (1, 10000.0)])
def test_mixed_bfloat16_softmax_in_float32(kv_heads, rope):
    layer = MultiHeadAttention(num_heads=2, num_key_value_heads=kv_heads, rope_max_wavelength=rope,
                               dtype="mixed_bfloat16")
    x = np.random.default_rng(4).normal(size=(2, 5, 8)).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0]] * 2)
    out = layer(x, padding_mask=mask, use_causal_mask=True)
    assert out.dtype == "bfloat16" and layer.qkv_dense.kernel.dtype == "float32"
    graph = tf.function(lambda t: layer(t, padding_mask=tf.ones((2, 5), "int32"))).get_concrete_function(
        tf.TensorSpec((2, 5, 8), "float32")
    ).graph
    softmax = [op.outputs[0].dtype for op in graph.get_operations() if op.type == "Softmax"]
    assert softmax == [tf.float32]
    matmuls = {op.outputs[0].dtype for op in graph.get_operations() if op.type == "BatchMatMulV2"}
    assert matmuls == {tf.bfloat16}  # scores and context in bf16
    allowed = np.tril(np.ones((5, 5), bool))[None] & mask[:, None, :].astype(bool)
    expected = reference_self_attention(layer, x, allowed, rope=numpy_rope if rope else None)
    # bf16 keeps 8 significant bits: one ulp at the output's scale s is 2**-7 s. The layer rounds its
    # input, weights, projections, scores and context once each; the result stays within 2 ulps.
    np.testing.assert_allclose(np.asarray(keras.ops.cast(out, "float32")), expected,
                               atol=2**-6 * np.abs(expected).max(), rtol=0)


def test_docstring_examples():
    result = doctest.testmod(attention_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
