import doctest

import keras
import numpy as np
import pytest

import keras_lm.layers.relative_position as relative_position_module
from keras_lm.layers import RelativePositionBias, relative_position_bucket

# (num_buckets, max_distance): T5's own and small, odd and wide ones where rounding at bucket edges matters.
BUCKET_CONFIGS = [(32, 128), (8, 20), (16, 64), (64, 256), (4, 8), (6, 10), (10, 100)]


def hf_bucket(relative, bidirectional, num_buckets, max_distance):
    import torch
    from transformers.models.t5.modeling_t5 import T5Attention

    return T5Attention._relative_position_bucket(torch.tensor(relative), bidirectional=bidirectional,
                                                 num_buckets=num_buckets, max_distance=max_distance).numpy()


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("num_buckets,max_distance", BUCKET_CONFIGS)
def test_buckets_equal_transformers_on_a_grid(bidirectional, num_buckets, max_distance):
    positions = np.arange(0, 700)
    relative = positions[None, :] - positions[:, None]  # every distance from -699 to 699
    expected = hf_bucket(relative, bidirectional, num_buckets, max_distance)
    actual = np.asarray(relative_position_bucket(relative, bidirectional, num_buckets, max_distance))
    np.testing.assert_array_equal(actual, expected)
    # The grid reaches every bucket (bidirectional: all but "0 steps later", which is bucket 0).
    assert len(np.unique(expected)) == num_buckets - bidirectional


def hf_bias(weights, bidirectional, query_length, key_length, offset, num_buckets, max_distance):
    import torch
    import transformers
    from transformers.models.t5.modeling_t5 import T5Attention

    config = transformers.T5Config(d_model=16, d_kv=4, num_heads=weights.shape[1], relative_attention_num_buckets=num_buckets,
                                   relative_attention_max_distance=max_distance, is_decoder=not bidirectional)
    attention = T5Attention(config, has_relative_attention_bias=True, layer_idx=0)
    with torch.no_grad():
        attention.relative_attention_bias.weight.copy_(torch.tensor(weights))
        return attention.compute_bias(query_length, key_length, past_seen_tokens=offset).numpy()


@pytest.mark.parametrize("bidirectional", [True, False])
def test_bias_equals_transformers_compute_bias_including_an_offset(bidirectional):
    layer = RelativePositionBias(num_heads=3, num_buckets=8, max_distance=20, bidirectional=bidirectional)
    layer.build()
    weights = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    layer.embeddings.assign(weights)
    full = np.asarray(layer(np.zeros((2, 30, 4), "float32")))
    assert full.shape == (1, 3, 30, 30) and full.dtype == np.float32
    np.testing.assert_array_equal(full, hf_bias(weights, bidirectional, 30, 30, 0, 8, 20))
    # One cached decoding step: query at position 17 over a 30-slot cache is row 17 of the full bias.
    step = np.asarray(layer(np.zeros((2, 1, 4), "float32"), key_length=30, query_offset=17))
    np.testing.assert_array_equal(step, full[:, :, 17:18])
    np.testing.assert_array_equal(step, hf_bias(weights, bidirectional, 1, 30, 17, 8, 20))


def test_get_config_round_trip_and_mixed_precision_output():
    layer = RelativePositionBias(num_heads=2, num_buckets=16, max_distance=50, bidirectional=False,
                                 dtype="mixed_bfloat16", name="decoder_position_bias")
    restored = RelativePositionBias.from_config(layer.get_config())
    assert restored.get_config() == layer.get_config()
    assert (restored.num_buckets, restored.max_distance, restored.bidirectional) == (16, 50, False)
    out = layer(np.zeros((1, 4, 8), "float32"))
    assert out.dtype == "float32" and layer.embeddings.dtype == "float32"
    assert [w.path for w in layer.weights] == ["decoder_position_bias/embeddings"]
    symbolic = layer(keras.Input((None, 8)))
    assert symbolic.shape == (1, 2, None, None) and symbolic.dtype == "float32"


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        ({"num_heads": 0}, r"`num_heads` must be a positive integer, got 0"),
        ({"num_heads": 2, "num_buckets": 2}, r"num_buckets=2 is too small"),
        ({"num_heads": 2, "max_distance": 1.5}, r"`max_distance` must be a positive integer"),
    ],
)
def test_bad_configs_are_clear_errors(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        RelativePositionBias(**kwargs)


def test_docstring_examples():
    result = doctest.testmod(relative_position_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
