import doctest
import importlib

import keras
import numpy as np
import pytest

from keras_lm.layers import RMSNorm, RotaryEmbedding, rotary_angles


def test_rms_norm_matches_numpy_and_keeps_statistics_in_float32():
    x = np.random.default_rng(0).normal(size=(2, 3, 8)).astype("float32") * 5
    layer = RMSNorm(epsilon=1e-5)
    layer.build(x.shape)
    layer.scale.assign(np.linspace(0.5, 2.0, 8).astype("float32"))
    expected = x / np.sqrt((x**2).mean(-1, keepdims=True) + 1e-5) * np.linspace(0.5, 2.0, 8)
    np.testing.assert_allclose(np.asarray(layer(x)), expected, atol=1e-5)
    mixed = RMSNorm(epsilon=1e-5, dtype="mixed_bfloat16")
    out = mixed(x * 1e3)
    assert out.dtype == "bfloat16" and mixed.scale.dtype == "float32"
    # Statistics in float32: only the bf16 rounding of the input and of the output remain, each at
    # most half an ulp (2**-9 relative), so every element is within 2**-7 of its own size.
    np.testing.assert_allclose(np.asarray(keras.ops.cast(out, "float32")),
                               x / np.sqrt((x**2).mean(-1, keepdims=True)), rtol=2**-7, atol=0)


def test_rotary_matches_rotate_half_formula_and_is_relative():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 2, 6, 8)).astype("float32")
    out = np.asarray(RotaryEmbedding(max_wavelength=100.0)(x, start_index=3))
    positions = np.arange(3, 9)
    inverse = 1.0 / 100.0 ** (np.arange(0, 8, 2) / 8)
    angles = np.concatenate([positions[:, None] * inverse] * 2, -1)
    rotated = np.concatenate([-x[..., 4:], x[..., :4]], -1)
    np.testing.assert_allclose(out, x * np.cos(angles) + rotated * np.sin(angles), atol=1e-5)
    # <R(m) q, R(n) k> depends only on m - n.
    rope = RotaryEmbedding()
    q, k = rng.normal(size=(2, 1, 1, 1, 8)).astype("float32")
    def dot(m, n):
        return float(np.sum(np.asarray(rope(q, start_index=m)) * np.asarray(rope(k, start_index=n))))
    assert abs(dot(5, 2) - dot(13, 10)) < 1e-4 and abs(dot(5, 2) - dot(5, 3)) > 1e-3
    cos, sin = rotary_angles(np.arange(4), 8)
    assert tuple(cos.shape) == (4, 8) and float(sin[0, 0]) == 0.0


def test_mixed_bfloat16_rotary_keeps_its_angles_in_float32_at_late_positions():
    """Under mixed_bfloat16 only the input and the output are rounded to bf16. At position 4000 bf16
    angles would be off by up to 8 radians (bf16 spacing there is 16), so any bf16 step in the angles
    shows as an O(1) error; float32 angles leave the bf16 rounding of input and output only."""
    x = np.random.default_rng(2).normal(size=(1, 2, 6, 8)).astype("float32")
    mixed = RotaryEmbedding(dtype="mixed_bfloat16")
    out = mixed(keras.ops.cast(x, "bfloat16"), start_index=4000)
    assert out.dtype == "bfloat16"
    x_bf16 = np.asarray(keras.ops.cast(keras.ops.cast(x, "bfloat16"), "float32"))
    positions = np.arange(4000, 4006)
    inverse = 1.0 / 10000.0 ** (np.arange(0, 8, 2) / 8)
    angles = np.concatenate([positions[:, None] * inverse] * 2, -1)
    rotated = np.concatenate([-x_bf16[..., 4:], x_bf16[..., :4]], -1)
    expected = x_bf16 * np.cos(angles) + rotated * np.sin(angles)
    error = np.abs(np.asarray(keras.ops.cast(out, "float32")) - expected)
    assert error.max() <= 2.0**-8 * np.abs(x_bf16).max() * 2, error.max()  # the output's bf16 rounding


def test_rotary_needs_even_head_dim():
    with pytest.raises(ValueError, match="even"):
        RotaryEmbedding()(np.zeros((1, 1, 2, 5), "float32"))


@pytest.mark.parametrize(
    "module_name",
    ["keras_lm.layers.normalization", "keras_lm.layers.rotary", "keras_lm.layers.feed_forward",
     "keras_lm.layers.transformer_block", "keras_lm.models.legacy"],
)
def test_docstring_examples(module_name):
    result = doctest.testmod(importlib.import_module(module_name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
