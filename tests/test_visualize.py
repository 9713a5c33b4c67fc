"""keras_lm.visualize: attention probabilities against a numpy recomputation and transformers, and the PNGs."""
import json

import keras
import keras_hub
import numpy as np
import pytest

import keras_lm
from keras_lm.layers import MultiHeadAttention
from keras_lm.visualize import (
    attention,
    attention_figure,
    attention_grid,
    attention_probabilities,
    grid_inches,
    heatmap_inches,
)

VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "gripping", "film", "dull", "and", "long", ".",
              "beautifully", "acted", ","]
HEADS = 4


def randomize(model, seed=0, std=0.3):
    """Every variable drawn at random (biases, norm scales and offsets too)."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        center = 1.0 if variable.path.endswith("gamma") else 0.0
        variable.assign(center + std * rng.standard_normal(variable.shape).astype("float32"))


@pytest.fixture(scope="module")
def encoder():
    model = keras_lm.models.Encoder(vocabulary_size=len(VOCABULARY), num_layers=2, num_heads=HEADS, hidden_dim=32,
                                    intermediate_dim=64, max_sequence_length=16)
    randomize(model)
    return model


@pytest.fixture(scope="module")
def preprocessor():
    return keras_lm.tokenizers.BertPreprocessor(keras_lm.tokenizers.WordPiece(VOCABULARY), sequence_length=16)


def layer_norm(x, gamma, beta, epsilon=1e-12):
    mean = x.mean(-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + epsilon) * gamma + beta


def numpy_attention(h, qkv_kernel, qkv_bias, real, heads):
    """Softmax(q k^T / sqrt(d)) per head over the real keys: ``[heads, T, T]``."""
    q, k, _ = np.split(h @ qkv_kernel + qkv_bias, 3, axis=-1)
    length, width = h.shape[0], q.shape[-1] // heads
    q = q.reshape(length, heads, width).transpose(1, 0, 2)
    k = k.reshape(length, heads, width).transpose(1, 0, 2)
    scores = q @ k.transpose(0, 2, 1) / np.sqrt(width)
    scores = np.where(real[None, None, :], scores, -np.inf)
    scores = np.exp(scores - scores.max(-1, keepdims=True))
    return scores / scores.sum(-1, keepdims=True)


def weights_of(model):
    return {variable.path: np.asarray(variable) for variable in model.weights}


def test_encoder_probabilities_equal_a_numpy_recomputation_from_the_weights(encoder):
    ids = np.array([2, 5, 6, 7, 14, 12, 13, 3, 0, 0, 0], "int32")
    mask = (ids != 0).astype("int32")
    segments = np.array([0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0], "int32")
    maps = attention_probabilities(encoder, {"token_ids": ids, "padding_mask": mask, "segment_ids": segments})
    assert maps.layers == (0, 1) and maps.probabilities.shape == (2, HEADS, 8, 8)
    assert maps.tokens == [str(i) for i in ids[:8]]  # no tokenizer: the ids

    w = weights_of(encoder)
    real = mask.astype(bool)
    embedded = (w["token_embedding/embeddings"][ids] + w["position_embedding/embeddings"][: len(ids)]
                + w["segment_embedding/embeddings"][segments])
    layer_0_input = layer_norm(embedded, w["embeddings_layer_norm/gamma"], w["embeddings_layer_norm/beta"])
    block_0 = keras.Model(encoder.input, encoder.get_layer("transformer_layer_0").output)
    layer_1_input = np.asarray(block_0({"token_ids": ids[None], "padding_mask": mask[None],
                                        "segment_ids": segments[None]}))[0]
    for layer, h in ((0, layer_0_input), (1, layer_1_input)):
        prefix = f"transformer_layer_{layer}/self_attention/qkv/"
        expected = numpy_attention(h, w[prefix + "kernel"], w[prefix + "bias"], real, HEADS)[:, real][:, :, real]
        np.testing.assert_allclose(maps.probabilities[layer], expected, atol=2e-6)
        assert expected.max() > 0.5  # not a degenerate (uniform) comparison
    # Every row spreads exactly 1 over the real keys: the padding keys got exactly 0.
    np.testing.assert_allclose(maps.probabilities.sum(-1), 1.0, atol=1e-6)


def test_padding_keys_get_exactly_zero_and_the_layer_output_is_unchanged():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 7, 16)).astype("float32")
    mask = np.array([[1] * 7, [1] * 4 + [0] * 3], "int32")
    for implementation in ("fused", "explicit"):
        layer = MultiHeadAttention(num_heads=4, num_key_value_heads=2, implementation=implementation)
        plain = np.asarray(layer(x, padding_mask=mask))
        output, scores = layer(x, padding_mask=mask, return_attention_scores=True)
        np.testing.assert_allclose(np.asarray(output), plain, atol=1e-5)
        scores = np.asarray(scores)
        assert scores.shape == (2, 4, 7, 7) and scores.dtype == np.float32
        assert np.all(scores[1, :, :, 4:] == 0.0)
        np.testing.assert_allclose(scores.sum(-1), 1.0, atol=1e-6)
        cache = np.zeros((2, 2, 2, 7, 4), "float32")
        cached = layer(x, cache=cache, cache_index=0, use_causal_mask=True, return_attention_scores=True)
        assert len(cached) == 3 and np.all(np.triu(np.asarray(cached[2])[0, 0], 1) == 0.0)  # causal


def test_llama_probabilities_match_transformers_attentions(tmp_path, randomize_every_parameter):
    import torch
    import transformers

    config = transformers.LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                                      rope_theta=500.0, attn_implementation="eager")
    reference = transformers.LlamaForCausalLM(config).eval()
    randomize_every_parameter(reference, seed=0, is_norm_scale=lambda name: name.endswith("norm.weight"))
    reference.save_pretrained(tmp_path)
    llama = keras_lm.applications.Llama.from_hf(tmp_path)
    ids = np.random.default_rng(0).integers(1, 97, (1, 11)).astype("int32")
    with torch.no_grad():
        expected = reference(torch.tensor(ids, dtype=torch.long), output_attentions=True).attentions
    maps = attention_probabilities(keras_lm.tasks.CausalLM(llama), {"token_ids": ids[0]})
    assert maps.probabilities.shape == (2, 4, 11, 11)
    for layer in range(2):
        np.testing.assert_allclose(maps.probabilities[layer], expected[layer][0].numpy(), atol=1e-5)
    assert np.all(np.triu(maps.probabilities, 1) == 0.0)  # causal: no query sees a later key


def test_tasks_wrapping_the_backbones_give_the_same_maps_with_token_strings(encoder, preprocessor):
    classifier = keras_lm.tasks.Classifier(encoder, num_classes=2, preprocessor=preprocessor)
    text = "A gripping film, beautifully acted."
    maps = attention_probabilities(classifier, text, layer=1)
    assert maps.tokens == ["[CLS]", "a", "gripping", "film", ",", "beautifully", "acted", ".", "[SEP]"]
    direct = attention_probabilities(encoder, text, layer=1, preprocessor=preprocessor)
    np.testing.assert_array_equal(maps.probabilities, direct.probabilities)
    pair = attention_probabilities(classifier, ("A gripping film.", "Dull and long."), layer=-1)
    assert pair.tokens[-5:] == ["dull", "and", "long", ".", "[SEP]"] and pair.layers == (1,)

    lm = keras_lm.tasks.CausalLM(keras_lm.applications.Gpt2("tiny", vocabulary_size=256, max_sequence_length=32),
                                 keras_hub.tokenizers.ByteTokenizer(lowercase=False))
    maps = attention_probabilities(lm, "To be\nor", layer=0)
    assert maps.tokens == ["T", "o", " ", "b", "e", "\n", "o", "r"]
    np.testing.assert_allclose(maps.probabilities.sum(-1), 1.0, atol=1e-6)


def test_heatmap_png_has_its_size_labels_and_title(encoder, preprocessor, tmp_path):
    from PIL import Image

    classifier = keras_lm.tasks.Classifier(encoder, num_classes=2, preprocessor=preprocessor)
    text = "A gripping film, beautifully acted."
    path = attention(classifier, text, layer=1, head=2, path=tmp_path / "maps" / "head.png", dpi=80)
    assert path == str(tmp_path / "maps" / "head.png")
    maps = attention_probabilities(classifier, text, layer=1)
    width, height = heatmap_inches(len(maps.tokens))
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (round(width * 80), round(height * 80))
        description = json.loads(image.text["Description"])
    assert image.text["Title"] == "layer 1, head 2"
    assert description == {"title": "layer 1, head 2", "layer": 1, "head": 2, "tokens": maps.tokens}
    figure = attention_figure(maps, layer=1, head=2)
    axes = figure.axes[0]
    assert [t.get_text() for t in axes.get_xticklabels()] == maps.tokens
    assert [t.get_text() for t in axes.get_yticklabels()] == maps.tokens
    assert axes.get_title() == "layer 1, head 2" and (axes.get_xlabel(), axes.get_ylabel()) == ("key", "query")
    np.testing.assert_array_equal(axes.images[0].get_array(), maps.probabilities[0, 2])


def test_grid_png_of_every_layer_and_of_one_layer(encoder, preprocessor, tmp_path):
    import matplotlib.image

    text = "Dull and long."
    grid = attention_grid(encoder, text, preprocessor=preprocessor, path=tmp_path / "grid.png")
    tokens = attention_probabilities(encoder, text, preprocessor=preprocessor).tokens
    width, height = grid_inches(2, HEADS, len(tokens))
    assert matplotlib.image.imread(grid).shape == (round(height * 100), round(width * 100), 4)
    one = attention_grid(encoder, text, layer=0, preprocessor=preprocessor, path=tmp_path / "layer0.png")
    width, height = grid_inches(1, HEADS, len(tokens))
    assert matplotlib.image.imread(one).shape == (round(height * 100), round(width * 100), 4)


def test_unknown_layer_or_head_and_unusable_models_are_clear_errors(encoder, preprocessor, tmp_path):
    with pytest.raises(ValueError, match="layer 2 does not exist: the model has 2 layers"):
        attention(encoder, "a film", layer=2, preprocessor=preprocessor, path=tmp_path / "x.png")
    with pytest.raises(ValueError, match="head 4 does not exist: the model has 4 heads"):
        attention(encoder, "a film", head=4, preprocessor=preprocessor, path=tmp_path / "x.png")
    with pytest.raises(TypeError, match="layer` must be an integer"):
        attention_probabilities(encoder, "a film", layer="0", preprocessor=preprocessor)
    with pytest.raises(ValueError, match="needs a preprocessor or tokenizer"):
        attention_probabilities(encoder, "a film")
    with pytest.raises(TypeError, match="keras_lm Encoder or Decoder"):
        attention_probabilities(keras.Sequential([keras.layers.Dense(2)]), "a film")
    assert not (tmp_path / "x.png").exists()
