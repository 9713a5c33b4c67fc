import keras
import numpy as np
import pytest

from keras_lm.layers import TransformerEncoderBlock


def layer_norm(x, gamma, beta, eps):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def run_parts(block, x, mask):
    attention = lambda h: np.asarray(block.self_attention(h, padding_mask=mask))  # noqa: E731
    feed_forward = lambda h: np.asarray(block.feed_forward(h))  # noqa: E731
    norm1 = lambda h: layer_norm(h, *(np.asarray(w) for w in block.self_attention_layer_norm.weights), 1e-12)  # noqa: E731
    norm2 = lambda h: layer_norm(h, *(np.asarray(w) for w in block.feed_forward_layer_norm.weights), 1e-12)  # noqa: E731
    return attention, feed_forward, norm1, norm2


@pytest.mark.parametrize("norm_first", [False, True])
def test_residual_and_layer_norm_order(norm_first):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 8)).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0], [1] * 5])
    block = TransformerEncoderBlock(num_heads=2, intermediate_dim=16, dropout=0.0, norm_first=norm_first)
    out = np.asarray(block(x, padding_mask=mask))
    for layer_norm_layer in (block.self_attention_layer_norm, block.feed_forward_layer_norm):
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
    block = TransformerEncoderBlock(num_heads=2, intermediate_dim=16)
    changed = x.copy()
    changed[:, 4:] = 100.0
    np.testing.assert_allclose(
        np.asarray(block(x, padding_mask=mask))[:, :4], np.asarray(block(changed, padding_mask=mask))[:, :4], atol=1e-5
    )


def test_config_round_trip():
    block = TransformerEncoderBlock(4, 64, dropout=0.2, activation="gelu_approximate", layer_norm_epsilon=1e-6,
                                    norm_first=True, name="block")
    config = block.get_config()
    clone = TransformerEncoderBlock.from_config(config)
    assert clone.get_config() == config
    x = np.random.default_rng(2).normal(size=(2, 3, 16)).astype("float32")
    block(x)
    clone(x)
    clone.set_weights(block.get_weights())
    np.testing.assert_allclose(np.asarray(clone(x)), np.asarray(block(x)), atol=1e-6)


def test_mixed_bfloat16_output_matches_float32():
    x = np.random.default_rng(3).normal(size=(2, 6, 16)).astype("float32")
    mask = np.array([[1] * 6, [1] * 4 + [0] * 2])
    full = TransformerEncoderBlock(2, 32)
    expected = np.asarray(full(x, padding_mask=mask))
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        mixed = TransformerEncoderBlock(2, 32)
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
