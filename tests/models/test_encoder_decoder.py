import doctest

import keras
import numpy as np
import pytest

import keras_lm.models.encoder_decoder as encoder_decoder_module
from keras_lm.models import EncoderDecoder

VOCABULARY = 97
T5_LIKE = dict(vocabulary_size=VOCABULARY, num_layers=2, num_decoder_layers=3, num_heads=4, hidden_dim=32,
               intermediate_dim=48, head_dim=6, num_buckets=8, max_distance=12, feed_forward="gated",
               activation="gelu_approximate", tie_word_embeddings=False)
# The original Transformer: post-LN, LayerNorm, biases, scaled dot products, sinusoidal positions.
VANILLA = dict(vocabulary_size=VOCABULARY, num_layers=2, num_heads=4, hidden_dim=32, intermediate_dim=64,
               position_embedding="sinusoidal", normalization="layer_norm", layer_norm_epsilon=1e-5, norm_first=False,
               use_bias=True, attention_scale=None, activation="relu", scale_embeddings=True)


def randomized(model, seed=0):
    """Every weight random (norm scales around 1), so no mapping hides behind zeros or ones."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        offset = 1.0 if weight.path.endswith(("scale", "gamma")) else 0.0
        weight.assign(offset + 0.15 * rng.normal(size=weight.shape).astype("float32"))
    return model


def batch(seed=0, source_length=9, target_length=8):
    rng = np.random.default_rng(seed)
    source = rng.integers(2, VOCABULARY, (2, source_length)).astype("int32")
    target = rng.integers(2, VOCABULARY, (2, target_length)).astype("int32")
    source_mask = np.ones_like(source)
    source_mask[1, 6:] = 0
    return {"encoder_token_ids": source, "encoder_padding_mask": source_mask, "decoder_token_ids": target,
            "decoder_padding_mask": np.ones_like(target)}


def full_logits(model, inputs):
    return np.asarray(model.logits(model(inputs)["decoder_sequence_output"]))


@pytest.mark.parametrize("config", [T5_LIKE, VANILLA], ids=["t5_like", "vanilla_transformer"])
def test_cached_decoding_equals_uncached_recomputation(config):
    model = randomized(EncoderDecoder(**config))
    inputs = batch()
    expected = full_logits(model, inputs)
    assert np.abs(expected).max() > 1.0
    encoder_output, context_caches = model.encode(inputs)
    np.testing.assert_allclose(np.asarray(encoder_output)[0], np.asarray(model(inputs)["encoder_sequence_output"])[0],
                               atol=1e-5)
    target = inputs["decoder_token_ids"]
    cache = model.init_cache(2, 10)  # two unused slots at the end must not matter
    # Prefill three tokens at once, then one token per step; alternate the two ways to pass the encoder.
    logits, _, cache = model.call_with_cache(target[:, :3], cache, 0, context_caches=context_caches,
                                             encoder_padding_mask=inputs["encoder_padding_mask"])
    np.testing.assert_allclose(np.asarray(logits), expected[:, :3], atol=1e-5)
    for step in range(3, target.shape[1]):
        source = {"context_caches": context_caches} if step % 2 else {"encoder_output": encoder_output}
        logits, hidden, cache = model.call_with_cache(target[:, step:step + 1], cache, step,
                                                      encoder_padding_mask=inputs["encoder_padding_mask"], **source)
        assert tuple(hidden.shape) == (2, 1, 32)
        np.testing.assert_allclose(np.asarray(logits)[:, 0], expected[:, step], atol=1e-5, err_msg=f"step {step}")


def test_cached_step_in_a_tf_function_traces_once_and_matches():
    import tensorflow as tf

    model = randomized(EncoderDecoder(**T5_LIKE), seed=4)
    inputs = batch(4)
    expected = full_logits(model, inputs)
    _, context_caches = model.encode(inputs)
    step = tf.function(lambda token, cache, index: model.call_with_cache(
        token, cache, index, context_caches=context_caches, encoder_padding_mask=inputs["encoder_padding_mask"]))
    cache = model.init_cache(2, 8)
    for index in range(8):
        logits, _, cache = step(tf.constant(inputs["decoder_token_ids"][:, index:index + 1]), cache, tf.constant(index))
        np.testing.assert_allclose(np.asarray(logits)[:, 0], expected[:, index], atol=1e-5)
    assert step.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("config", [T5_LIKE, VANILLA], ids=["t5_like", "vanilla_transformer"])
def test_source_padding_and_later_target_tokens_do_not_leak(config):
    model = randomized(EncoderDecoder(**config), seed=1)
    inputs = batch(1)
    expected = full_logits(model, inputs)
    changed = {name: value.copy() for name, value in inputs.items()}
    changed["encoder_token_ids"][1, 6:] = 1  # other ids under the padding
    changed["decoder_token_ids"][:, 5:] = 1  # other later target tokens
    actual = full_logits(model, changed)
    np.testing.assert_allclose(actual[:, :5], expected[:, :5], atol=1e-5)
    assert np.abs(actual[:, 5:] - expected[:, 5:]).max() > 1e-3  # the changed tokens themselves do matter
    unpadded = {"encoder_token_ids": inputs["encoder_token_ids"][1:, :6], "encoder_padding_mask": np.ones((1, 6), "int32"),
                "decoder_token_ids": inputs["decoder_token_ids"][1:], "decoder_padding_mask": np.ones((1, 8), "int32")}
    np.testing.assert_allclose(full_logits(model, unpadded)[0], expected[1], atol=1e-5)


def test_relative_bias_is_shared_by_the_layers_of_a_stack():
    model = EncoderDecoder(**T5_LIKE)
    names = sorted(w.path for w in model.weights if "position_bias" in w.path)
    assert names == ["decoder_position_bias/embeddings", "encoder_position_bias/embeddings"]
    assert model.encoder_positions.bidirectional and not model.decoder_positions.bidirectional
    assert len(model.encoder_layers) == 2 and len(model.decoder_layers) == 3
    assert all(block.cross_attention is not None for block in model.decoder_layers)
    assert all(block.attention_scale == 1.0 and not block.use_bias for block in model.encoder_layers)


def test_tied_output_projection_with_rescale():
    model = randomized(EncoderDecoder(**{**T5_LIKE, "tie_word_embeddings": True, "scale_decoder_output": True}))
    assert model.lm_head is None
    hidden = np.random.default_rng(2).normal(size=(2, 3, 32)).astype("float32")
    expected = (hidden * 32**-0.5) @ np.asarray(model.token_embedding.embeddings).T
    np.testing.assert_allclose(np.asarray(model.logits(hidden)), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("config", [T5_LIKE, VANILLA], ids=["t5_like", "vanilla_transformer"])
def test_get_config_round_trip_and_keras_file(config, tmp_path):
    model = randomized(EncoderDecoder(**config))
    restored = EncoderDecoder.from_config(model.get_config())
    assert restored.get_config() == model.get_config()
    path = str(tmp_path / "encoder_decoder.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is EncoderDecoder and loaded.get_config() == model.get_config()
    inputs = batch(3)
    np.testing.assert_array_equal(full_logits(loaded, inputs), full_logits(model, inputs))


@pytest.mark.parametrize(
    "kwargs,error,pattern",
    [
        ({"num_heads": 5, "head_dim": None}, ValueError, r"hidden_dim=32 is not divisible by num_heads=5"),
        ({"num_decoder_layers": 0}, ValueError, r"`num_decoder_layers` must be a positive integer, got 0"),
        ({"position_embedding": "rotary"}, ValueError, r"Unknown position_embedding 'rotary'"),
        ({"num_buckets": 2}, ValueError, r"num_buckets=2 is too small"),
        ({"feed_forward": "moe"}, ValueError, r"Unknown feed_forward 'moe'"),
        ({"dropout": 1.0}, ValueError, r"`dropout` must be in \[0, 1\)"),
        ({"hidden_size": 32}, TypeError, r"unexpected keyword argument\(s\) hidden_size"),
    ],
)
def test_bad_configs_are_clear_errors(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        EncoderDecoder(**{**T5_LIKE, **kwargs})


def test_bad_cached_decoding_inputs_are_clear_errors():
    model = EncoderDecoder(**T5_LIKE)
    with pytest.raises(ValueError, match=r"needs `encoder_output` or `context_caches`"):
        model.call_with_cache(np.zeros((1, 1), "int32"), model.init_cache(1, 4), 0)
    _, context_caches = model.encode(batch())
    with pytest.raises(ValueError, match=r"2 token\(s\) at position 3 do not fit the cache of 4 positions"):
        model.call_with_cache(np.zeros((2, 2), "int32"), model.init_cache(2, 4), 3, context_caches=context_caches)
    with pytest.raises(ValueError, match=r"needs encoder_padding_mask"):
        model.encode({"encoder_token_ids": np.zeros((1, 3), "int32")})


def test_docstring_examples():
    result = doctest.testmod(encoder_decoder_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
