import doctest

import keras
import numpy as np
import pytest

import keras_lm.models.decoder as decoder_module
from keras_lm.models import Decoder

GPT_STYLE = dict(vocabulary_size=61, num_layers=2, num_heads=4, hidden_dim=16, intermediate_dim=32,
                 max_sequence_length=24)
LLAMA_STYLE = dict(GPT_STYLE, num_key_value_heads=2, position_embedding="rotary", normalization="rms_norm",
                   feed_forward="gated", activation="silu", use_bias=False, tie_word_embeddings=False)


def inputs(batch=2, length=9, seed=0):
    ids = np.random.default_rng(seed).integers(1, 61, (batch, length)).astype("int32")
    return {"token_ids": ids, "padding_mask": np.ones_like(ids)}


def full_logits(decoder, data):
    return np.asarray(decoder.logits(decoder(data)["sequence_output"]))


@pytest.mark.parametrize("config", [GPT_STYLE, LLAMA_STYLE], ids=["gpt", "llama"])
def test_outputs_logits_and_head(config):
    decoder = Decoder(**config)
    data = inputs()
    hidden = decoder(data)["sequence_output"]
    assert tuple(hidden.shape) == (2, 9, 16)
    logits = decoder.logits(hidden)
    assert tuple(logits.shape) == (2, 9, 61) and logits.dtype == "float32"
    if config.get("tie_word_embeddings", True):
        assert decoder.lm_head is None
        expected = np.asarray(hidden) @ np.asarray(decoder.token_embedding.embeddings).T
    else:
        expected = np.asarray(hidden) @ np.asarray(decoder.lm_head.kernel)
    np.testing.assert_allclose(np.asarray(logits), expected, atol=1e-5)


@pytest.mark.parametrize("config", [GPT_STYLE, LLAMA_STYLE], ids=["gpt", "llama"])
def test_is_causal(config):
    decoder = Decoder(**config)
    data = inputs()
    changed = {k: v.copy() for k, v in data.items()}
    changed["token_ids"][:, 6:] = 7
    before, after = full_logits(decoder, data), full_logits(decoder, changed)
    np.testing.assert_allclose(before[:, :6], after[:, :6], atol=1e-6)
    assert np.abs(before[:, 6:] - after[:, 6:]).max() > 1e-4


def test_packed_documents_equal_separate_documents_with_rotary_positions():
    # With RoPE, a document's result does not depend on where it sits in the row.
    decoder = Decoder(**LLAMA_STYLE)
    ids = inputs(batch=1, length=8)["token_ids"]
    packed = full_logits(decoder, {"token_ids": ids, "padding_mask": np.array([[1, 1, 1, 2, 2, 2, 2, 0]])})
    first = full_logits(decoder, {"token_ids": ids[:, :3], "padding_mask": np.ones((1, 3), "int32")})
    second = full_logits(decoder, {"token_ids": ids[:, 3:7], "padding_mask": np.ones((1, 4), "int32")})
    np.testing.assert_allclose(packed[:, :3], first, atol=1e-5)
    np.testing.assert_allclose(packed[:, 3:7], second, atol=1e-5)


# Every cache axis has its own size (batch 5, K/V 2, kv heads 4, length 16, head size 6; 3 layers),
# so a transposed or mixed-up axis changes the shape or the values.
CACHE_GPT = dict(GPT_STYLE, num_layers=3, num_heads=4, hidden_dim=24)
CACHE_LLAMA = dict(LLAMA_STYLE, num_layers=3, num_heads=8, num_key_value_heads=4, hidden_dim=48)


@pytest.mark.parametrize("config", [CACHE_GPT, CACHE_LLAMA], ids=["gpt", "llama"])
def test_cached_steps_equal_full_forward(config):
    decoder = Decoder(**config)
    data = inputs(batch=5)
    expected = full_logits(decoder, data)
    cache = decoder.init_cache(5, 16)
    assert len(cache) == 3 and all(tuple(layer.shape) == (5, 2, 4, 16, 6) for layer in cache)
    logits, hidden, cache = decoder.call_with_cache(data["token_ids"][:, :5], cache, 0)
    pieces = [np.asarray(logits)]
    for i in range(5, 9):
        logits, hidden, cache = decoder.call_with_cache(data["token_ids"][:, i:i + 1], cache, i)
        pieces.append(np.asarray(logits))
    assert tuple(hidden.shape) == (5, 1, config["hidden_dim"])
    assert len(cache) == 3 and all(tuple(layer.shape) == (5, 2, 4, 16, 6) for layer in cache)
    np.testing.assert_allclose(np.concatenate(pieces, 1), expected, atol=1e-5)
    # Keys and values of the 9 tokens sit at positions 0..8 of the length axis; nothing after them.
    for layer in cache:
        layer = np.asarray(layer)
        assert np.all(np.abs(layer[:, :, :, :9]).max(-1) > 0) and np.abs(layer[:, :, :, 9:]).max() == 0


@pytest.mark.parametrize("config", [GPT_STYLE, LLAMA_STYLE], ids=["gpt", "llama"])
def test_exact_keras_round_trip(tmp_path, config):
    decoder = Decoder(**config, dropout=0.1, name="my_decoder")
    data = inputs()
    expected = full_logits(decoder, data)
    path = str(tmp_path / "decoder.keras")
    decoder.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored) is Decoder and restored.name == "my_decoder"
    assert restored.get_config() == decoder.get_config()
    np.testing.assert_array_equal(full_logits(restored, data), expected)


@pytest.mark.parametrize("config", [GPT_STYLE, LLAMA_STYLE], ids=["tied", "untied"])
def test_logits_inside_a_functional_model(config):
    decoder = Decoder(**config)
    model = keras.Model(decoder.input, decoder.logits(decoder.output["sequence_output"]))
    data = inputs()
    np.testing.assert_allclose(np.asarray(model(data)), full_logits(decoder, data), atol=1e-6)
    assert len(model.trainable_weights) == len(decoder.trainable_weights)


def test_mixed_bfloat16_logits_are_float32():
    decoder = Decoder(**LLAMA_STYLE, dtype="mixed_bfloat16")
    hidden = decoder(inputs())["sequence_output"]
    assert hidden.dtype == "bfloat16" and decoder.logits(hidden).dtype == "float32"
    assert decoder.init_cache(1, 4)[0].dtype == "bfloat16"


@pytest.mark.parametrize(
    "override,pattern",
    [
        ({"hidden_dim": 18}, r"hidden_dim=18.*num_heads=4"),
        ({"num_key_value_heads": 3}, r"num_key_value_heads=3.*num_heads=4"),
        ({"num_layers": 0}, "num_layers"),
        ({"position_embedding": "alibi"}, "position_embedding"),
        ({"normalization": "batch"}, "normalization"),
        ({"dropout": 1.5}, "dropout"),
        ({"attention_implementation": "flash"}, "attention_implementation 'flash'"),
    ],
)
def test_bad_config_is_one_clear_error(override, pattern):
    with pytest.raises(ValueError, match=pattern):
        Decoder(**{**GPT_STYLE, **override})


@pytest.mark.parametrize("config", [GPT_STYLE, LLAMA_STYLE], ids=["gpt", "llama"])
def test_fused_and_explicit_attention_decoders_agree(config):
    explicit = Decoder(**config, attention_implementation="explicit")
    fused = Decoder.from_config({**explicit.get_config(), "attention_implementation": "fused"})
    fused.set_weights(explicit.get_weights())
    assert {b.self_attention.implementation for b in fused.transformer_layers} == {"fused"}
    np.testing.assert_allclose(full_logits(explicit, inputs()), full_logits(fused, inputs()), atol=1e-5)


def test_bad_inputs():
    decoder = Decoder(**GPT_STYLE)
    with pytest.raises(TypeError, match="num_layer"):
        Decoder(**GPT_STYLE, num_layer=3)
    with pytest.raises(ValueError, match="25 positions"):
        decoder(inputs(length=25))
    with pytest.raises(ValueError, match="padding_mask"):
        decoder({"token_ids": inputs()["token_ids"]})
    with pytest.raises(ValueError, match="exceeds max_sequence_length"):
        decoder.init_cache(1, 25)


def test_docstring_examples():
    result = doctest.testmod(decoder_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
