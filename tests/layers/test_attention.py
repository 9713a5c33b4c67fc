import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_lm.layers import MultiHeadSelfAttention


def reference_attention(layer, x, allowed):
    """Plain numpy multi-head attention with the layer's weights; allowed is [B, T, S] bool."""
    kernel, bias = (np.asarray(w) for w in layer.qkv_dense.weights)
    out_kernel, out_bias = (np.asarray(w) for w in layer.output_dense.weights)
    batch, length, _ = x.shape
    heads, head_dim = layer.num_heads, layer.head_dim
    qkv = (x @ kernel + bias).reshape(batch, length, 3, heads, head_dim)
    q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(head_dim)
    scores = np.where(allowed[:, None], scores, -1e9)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, heads * head_dim)
    return context @ out_kernel + out_bias


def test_matches_numpy_reference_with_padding():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 6, 8)).astype("float32")
    mask = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], "int32")
    layer = MultiHeadSelfAttention(num_heads=2, bias_initializer="random_normal")
    out = np.asarray(layer(x, padding_mask=mask))
    allowed = np.broadcast_to(mask[:, None, :].astype(bool), (2, 6, 6))
    np.testing.assert_allclose(out, reference_attention(layer, x, allowed), atol=1e-5)


@pytest.mark.parametrize("mask_dtype", ["bool", "int32"])
def test_padded_keys_do_not_influence_real_positions(mask_dtype):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 7, 16)).astype("float32")
    mask = np.array([[1] * 5 + [0] * 2, [1] * 3 + [0] * 4]).astype(mask_dtype)
    layer = MultiHeadSelfAttention(num_heads=4)
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
    layer = MultiHeadSelfAttention(num_heads=2)
    causal = np.tril(np.ones((5, 5), bool))[None]
    np.testing.assert_allclose(
        np.asarray(layer(x, use_causal_mask=True)), reference_attention(layer, x, causal), atol=1e-5
    )
    np.testing.assert_allclose(
        np.asarray(layer(x, attention_mask=causal.astype("int32"))), reference_attention(layer, x, causal), atol=1e-5
    )


def test_explicit_key_dim_and_shapes():
    layer = MultiHeadSelfAttention(num_heads=3, key_dim=4)
    out = layer(np.zeros((2, 5, 10), "float32"))
    assert tuple(out.shape) == (2, 5, 10)
    assert tuple(layer.qkv_dense.kernel.shape) == (10, 36)
    assert tuple(layer.output_dense.kernel.shape) == (12, 10)


def test_indivisible_hidden_dim_names_both_numbers():
    with pytest.raises(ValueError, match=r"hidden_dim=10.*num_heads=3"):
        MultiHeadSelfAttention(num_heads=3)(np.zeros((1, 2, 10), "float32"))


def test_dropout_only_in_training():
    x = np.random.default_rng(3).normal(size=(2, 6, 8)).astype("float32")
    layer = MultiHeadSelfAttention(num_heads=2, dropout=0.5)
    np.testing.assert_array_equal(np.asarray(layer(x)), np.asarray(layer(x, training=False)))
    assert np.abs(np.asarray(layer(x, training=True)) - np.asarray(layer(x))).max() > 1e-4


def test_config_round_trip():
    layer = MultiHeadSelfAttention(num_heads=4, key_dim=8, dropout=0.1, use_bias=False, kernel_initializer="zeros")
    config = layer.get_config()
    assert MultiHeadSelfAttention.from_config(config).get_config() == config


def test_mixed_bfloat16_softmax_in_float32():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        layer = MultiHeadSelfAttention(num_heads=2)
        x = np.random.default_rng(4).normal(size=(2, 5, 8)).astype("float32")
        out = layer(x, padding_mask=np.array([[1, 1, 1, 0, 0]] * 2))
        assert out.dtype == "bfloat16"
        assert layer.qkv_dense.kernel.dtype == "float32"
        # The float32 reference agrees within bf16 rounding: bf16 keeps 8 significant bits, one ulp at
        # the output's scale s is 2**-7 s, and the few roundings of the layer stay within 2 ulps.
        reference = reference_attention(layer, x, np.array([[1, 1, 1, 0, 0]] * 2, bool)[:, None, :].repeat(5, 1))
        np.testing.assert_allclose(np.asarray(keras.ops.cast(out, "float32")), reference,
                                   atol=2**-6 * np.abs(reference).max(), rtol=0)

        graph = tf.function(lambda t: layer(t, padding_mask=tf.ones((2, 5), "int32"))).get_concrete_function(
            tf.TensorSpec((2, 5, 8), "float32")
        ).graph
        ops_by_type = {}
        for op in (op for op in graph.get_operations() if op.outputs):
            ops_by_type.setdefault(op.type, []).append(op.outputs[0].dtype)
        assert ops_by_type["Softmax"] == [tf.float32]
        assert set(ops_by_type["BatchMatMulV2"]) == {tf.bfloat16}  # scores and context in bf16
    finally:
        keras.mixed_precision.set_global_policy("float32")
