import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lm
from keras_lm.layers import PositionEmbedding, SegmentEmbedding, SinusoidalPositionEncoding
from keras_lm.layers.embeddings import TokenEmbedding


def numpy_sinusoid(length, dim, base=10000.0, start=0):
    table = np.zeros((length, dim))
    for pos in range(length):
        for i in range(0, dim, 2):
            angle = (pos + start) / base ** (i / dim)
            table[pos, i] = np.sin(angle)
            if i + 1 < dim:
                table[pos, i + 1] = np.cos(angle)
    return table


@pytest.mark.parametrize("length,dim", [(7, 16), (50, 6), (3, 5)])
def test_sinusoidal_matches_the_transformer_formula(length, dim):
    encoding = SinusoidalPositionEncoding()(np.zeros((2, length, dim), "float32"))
    assert tuple(encoding.shape) == (1, length, dim)
    np.testing.assert_allclose(np.asarray(encoding[0]), numpy_sinusoid(length, dim), atol=2e-5)


def test_sinusoidal_start_index_shifts_positions():
    encoding = SinusoidalPositionEncoding()(np.zeros((1, 4, 8), "float32"), start_index=10)
    np.testing.assert_allclose(np.asarray(encoding[0]), numpy_sinusoid(4, 8, start=10), atol=2e-5)


def test_position_embedding_returns_the_first_rows_of_its_table():
    layer = PositionEmbedding(sequence_length=10)
    out = layer(np.zeros((3, 4, 6), "float32"))
    assert tuple(out.shape) == (1, 4, 6)
    np.testing.assert_array_equal(np.asarray(out[0]), np.asarray(layer.embeddings)[:4])
    shifted = layer(np.zeros((3, 4, 6), "float32"), start_index=2)
    np.testing.assert_array_equal(np.asarray(shifted[0]), np.asarray(layer.embeddings)[2:6])


def test_position_embedding_too_long_input_is_a_clear_error():
    layer = PositionEmbedding(sequence_length=4)
    with pytest.raises(ValueError, match="5 positions"):
        layer(np.zeros((1, 5, 6), "float32"))


def test_segment_embedding_looks_up_rows():
    layer = SegmentEmbedding(num_segments=3, output_dim=4)
    out = layer(np.array([[0, 2, 1]]))
    np.testing.assert_array_equal(np.asarray(out[0]), np.asarray(layer.embeddings)[[0, 2, 1]])


@pytest.mark.parametrize(
    "layer",
    [PositionEmbedding(12, initializer="zeros"), SegmentEmbedding(2, 8), SinusoidalPositionEncoding(500.0),
     TokenEmbedding(100, 8)],
    ids=lambda layer: type(layer).__name__,
)
def test_config_round_trip(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer)


def test_token_embedding_looks_up_rows_and_rejects_ids_outside_the_table():
    layer = TokenEmbedding(100, 4)
    ids = np.array([[0, 7, 99]])
    np.testing.assert_array_equal(np.asarray(layer(ids)[0]), np.asarray(layer.embeddings)[[0, 7, 99]])
    assert tuple(layer(np.zeros((0, 3), "int32")).shape) == (0, 3, 4)
    for bad, low, high in (([[3, -5]], -5, 3), ([[100, 2]], 2, 100), ([[-1, 100]], -1, 100)):
        with pytest.raises(ValueError, match=rf"^token_embedding: token ids must lie in \[0, 100\) .* Got ids from {low} to {high}\.$"):
            layer(np.array(bad))
    graph = tf.function(layer)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"token ids must lie in \[0, 100\)"):
        graph(tf.constant([[3, -5]]))
    segments = SegmentEmbedding(num_segments=2, output_dim=4)
    with pytest.raises(ValueError, match=r"^segment_embedding: segment ids must lie in \[0, 2\)"):
        segments(np.array([[0, -1]]))


VOCABULARY_SIZE = 50


def _tiny(architecture):
    shape = dict(vocabulary_size=VOCABULARY_SIZE, num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32,
                 max_sequence_length=8)
    if architecture == "bert":
        return keras_lm.applications.Bert(None, **shape)
    return keras_lm.applications.Gpt2(None, **shape)


def _inputs(model, token_ids):
    token_ids = np.array([token_ids], "int32")
    features = {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)}
    if "segment_ids" in model.input:
        features["segment_ids"] = np.zeros_like(token_ids)
    return features


@pytest.mark.parametrize("architecture", ["bert", "gpt2"])
def test_backbones_reject_negative_and_too_large_token_ids_eagerly_in_graphs_and_saved_models(
    architecture, tmp_path
):
    model = _tiny(architecture)
    assert isinstance(model.token_embedding, TokenEmbedding)
    good, negative, too_large = [1, 2, VOCABULARY_SIZE - 1], [1, -5, 2], [1, VOCABULARY_SIZE, 2]
    range_error = rf"token ids must lie in \[0, {VOCABULARY_SIZE}\)"
    # id -5 used to read row 45 (wrap-around) while id 50 raised
    for bad, got in ((negative, "from -5 to 2"), (too_large, f"from 1 to {VOCABULARY_SIZE}")):
        with pytest.raises(ValueError, match=rf"^token_embedding: {range_error} .* Got ids {got}\.$"):
            model(_inputs(model, bad))
        with pytest.raises(tf.errors.InvalidArgumentError, match=range_error):
            model.predict(_inputs(model, bad), verbose=0)
    expected = model.predict(_inputs(model, good), verbose=0)["sequence_output"]

    model.export(str(tmp_path / "saved"), format="tf_saved_model", verbose=False)
    served = tf.saved_model.load(str(tmp_path / "saved"))
    np.testing.assert_allclose(served.serve(_inputs(model, good))["sequence_output"], expected, atol=1e-5)
    for bad in (negative, too_large):
        with pytest.raises(tf.errors.InvalidArgumentError, match=range_error):
            served.serve(_inputs(model, bad))
