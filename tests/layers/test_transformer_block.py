import keras
import numpy as np
import pytest

from keras_lm.layers import TransformerBlock


def layer_norm(x, gamma, beta, eps):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def run_parts(block, x, mask):
    attention = lambda h: np.asarray(block.self_attention(h, padding_mask=mask))  # noqa: E731
    feed_forward = lambda h: np.asarray(block.feed_forward(h))  # noqa: E731
    norm1 = lambda h: layer_norm(h, *(np.asarray(w) for w in block.self_attention_norm.weights), 1e-12)  # noqa: E731
    norm2 = lambda h: layer_norm(h, *(np.asarray(w) for w in block.feed_forward_norm.weights), 1e-12)  # noqa: E731
    return attention, feed_forward, norm1, norm2


@pytest.mark.parametrize("norm_first", [False, True])
def test_residual_and_layer_norm_order(norm_first):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 8)).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0], [1] * 5])
    block = TransformerBlock(num_heads=2, intermediate_dim=16, dropout=0.0, norm_first=norm_first)
    out = np.asarray(block(x, padding_mask=mask))
    for layer_norm_layer in (block.self_attention_norm, block.feed_forward_norm):
        layer_norm_layer.gamma.assign(rng.normal(1, 0.2, size=8))
        layer_norm_layer.beta.assign(rng.normal(0, 0.2, size=8))
    out = np.asarray(block(x, padding_mask=mask))
    attention, feed_forward, norm1, norm2 = run_parts(block, x, mask)
    if norm_first:
        h = x + attention(norm1(x).astype("float32"))
        expected = h + feed_forward(norm2(h).astype("float32"))
    else:
        h = norm1(x + attention(x)).astype("float32")
        expected = norm2(h + feed_forward(h))
    np.testing.assert_allclose(out, expected, atol=1e-4)


def test_padding_does_not_leak_into_real_tokens():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 6, 8)).astype("float32")
    mask = np.array([[1, 1, 1, 1, 0, 0]], bool)
    block = TransformerBlock(num_heads=2, intermediate_dim=16)
    changed = x.copy()
    changed[:, 4:] = 100.0
    np.testing.assert_allclose(
        np.asarray(block(x, padding_mask=mask))[:, :4], np.asarray(block(changed, padding_mask=mask))[:, :4], atol=1e-5
    )


def test_config_round_trip():
    block = TransformerBlock(4, 64, dropout=0.2, activation="gelu_approximate", layer_norm_epsilon=1e-6,
                             norm_first=True, name="block")
    config = block.get_config()
    clone = TransformerBlock.from_config(config)
    assert clone.get_config() == config
    x = np.random.default_rng(2).normal(size=(2, 3, 16)).astype("float32")
    block(x)
    clone(x)
    clone.set_weights(block.get_weights())
    np.testing.assert_allclose(np.asarray(clone(x)), np.asarray(block(x)), atol=1e-6)


def test_mixed_bfloat16_output_matches_float32():
    x = np.random.default_rng(3).normal(size=(2, 6, 16)).astype("float32")
    mask = np.array([[1] * 6, [1] * 4 + [0] * 2])
    full = TransformerBlock(2, 32)
    expected = np.asarray(full(x, padding_mask=mask))
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        mixed = TransformerBlock(2, 32)
        mixed(x, padding_mask=mask)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    rng = np.random.default_rng(4)
    weights = [rng.normal(1.0 if w.path.endswith("gamma") else 0.0, 0.2, w.shape) for w in full.weights]
    full.set_weights(weights)
    mixed.set_weights(weights)
    expected = np.asarray(full(x, padding_mask=mask))
    out = mixed(x, padding_mask=mask)
    assert out.dtype == "bfloat16" and mixed.feed_forward.intermediate_dense.kernel.dtype == "float32"
    # A whole block: attention, feed-forward and two LayerNorms round about a dozen times; the
    # result stays within 4 bf16 ulps (2**-7 each) of the output's scale.
    np.testing.assert_allclose(np.asarray(keras.ops.cast(out, "float32")), expected,
                               atol=2**-5 * np.abs(expected).max(), rtol=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"activation": "gelu_approximate"},
        {"normalization": "rms_norm", "feed_forward": "gated", "activation": "silu", "use_bias": False,
         "num_key_value_heads": 1, "rope_max_wavelength": 10000.0},
    ],
)
def test_causal_pre_ln_block_as_decoders_use_it_with_a_cache(kwargs):
    block = TransformerBlock(num_heads=2, intermediate_dim=16, norm_first=True, layer_norm_epsilon=1e-5, **kwargs)
    x = np.random.default_rng(3).normal(size=(2, 5, 8)).astype("float32")
    out = np.asarray(block(x, use_causal_mask=True))
    h = x + np.asarray(block.self_attention(block.self_attention_norm(x), use_causal_mask=True))
    expected = h + np.asarray(block.feed_forward(block.feed_forward_norm(h)))
    np.testing.assert_allclose(out, expected, atol=1e-5)
    config = block.get_config()
    assert TransformerBlock.from_config(config).get_config() == config
    cache = np.zeros(block.self_attention.cache_shape(2, 8), "float32")
    first, cache = block(x[:, :3], use_causal_mask=True, cache=cache, cache_index=0)
    rest, _ = block(x[:, 3:], use_causal_mask=True, cache=cache, cache_index=3)
    np.testing.assert_allclose(np.concatenate([first, rest], 1), out, atol=1e-5)


@pytest.mark.parametrize("norm_first", [False, True])
def test_cross_attention_sub_layer_order_and_context_cache(norm_first):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 4, 8)).astype("float32")
    context = rng.normal(size=(2, 6, 8)).astype("float32")
    context_mask = np.array([[1] * 6, [1, 1, 1, 0, 0, 0]], "int32")
    block = TransformerBlock(num_heads=2, intermediate_dim=16, norm_first=norm_first, cross_attention=True)
    out = np.asarray(block(x, use_causal_mask=True, context=context, context_padding_mask=context_mask))

    def attend(h):
        return np.asarray(block.self_attention(h, use_causal_mask=True))

    def attend_context(h):
        return np.asarray(block.cross_attention(h, context=context, context_padding_mask=context_mask))

    def feed_forward(h):
        return np.asarray(block.feed_forward(h))

    sub_layers = ((attend, block.self_attention_norm), (attend_context, block.cross_attention_norm),
                  (feed_forward, block.feed_forward_norm))
    expected = x
    for sub_layer, norm in sub_layers:
        if norm_first:
            expected = expected + sub_layer(np.asarray(norm(expected)))
        else:
            expected = np.asarray(norm(expected + sub_layer(expected)))
    np.testing.assert_allclose(out, expected, atol=1e-5)
    cached = block(x, use_causal_mask=True, context_cache=block.cross_attention.context_cache(context),
                   context_padding_mask=context_mask)
    np.testing.assert_allclose(np.asarray(cached), out, atol=1e-6)
    assert TransformerBlock.from_config(block.get_config()).has_cross_attention


def test_block_rejects_unknown_choices():
    with pytest.raises(ValueError, match="normalization"):
        TransformerBlock(num_heads=2, intermediate_dim=8, normalization="batch_norm")
    with pytest.raises(ValueError, match="feed_forward"):
        TransformerBlock(num_heads=2, intermediate_dim=8, feed_forward="moe")
    with pytest.raises(ValueError, match="implementation"):
        TransformerBlock(num_heads=2, intermediate_dim=8, implementation="flash")
