import keras
import numpy as np
import pytest

from keras_lm.layers import PositionEmbedding, SegmentEmbedding, SinusoidalPositionEncoding


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
    [PositionEmbedding(12, initializer="zeros"), SegmentEmbedding(2, 8), SinusoidalPositionEncoding(500.0)],
    ids=lambda layer: type(layer).__name__,
)
def test_config_round_trip(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer)
