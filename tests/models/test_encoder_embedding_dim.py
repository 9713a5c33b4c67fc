"""Encoder(embedding_dim=...): embeddings narrower than the blocks, projected to hidden_dim (ELECTRA)."""
import keras
import numpy as np
import pytest

from keras_lm.models import Encoder

SMALL = dict(vocabulary_size=120, num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64,
             max_sequence_length=16)


def inputs(seed=0):
    rng = np.random.default_rng(seed)
    mask = np.ones((2, 9), "int32")
    mask[1, 6:] = 0
    return {"token_ids": rng.integers(0, 120, (2, 9)).astype("int32"),
            "segment_ids": np.array([[0] * 4 + [1] * 5] * 2, "int32") * mask, "padding_mask": mask}


def test_default_keeps_the_graph_and_weights():
    encoder = Encoder(**SMALL)
    assert encoder.embedding_dim is None and encoder.get_config()["embedding_dim"] is None
    assert "embedding_projection" not in [layer.name for layer in encoder.layers]
    shapes = {weight.path: tuple(weight.shape) for weight in encoder.weights[:5]}
    assert shapes == {"token_embedding/embeddings": (120, 32), "position_embedding/embeddings": (16, 32),
                      "segment_embedding/embeddings": (2, 32), "embeddings_layer_norm/gamma": (32,),
                      "embeddings_layer_norm/beta": (32,)}
    # A configuration saved before the argument existed still builds the same model.
    old_config = {key: value for key, value in encoder.get_config().items() if key != "embedding_dim"}
    assert [w.shape for w in Encoder.from_config(old_config).weights] == [w.shape for w in encoder.weights]
    # embedding_dim == hidden_dim is the same model as the default.
    same = Encoder(**SMALL, embedding_dim=32)
    assert [w.path for w in same.weights] == [w.path for w in encoder.weights]


def test_narrow_embeddings_are_normalized_then_projected():
    encoder = Encoder(**SMALL, embedding_dim=12, dropout=0.0)
    widths = {weight.path: tuple(weight.shape) for weight in encoder.weights[:7]}
    assert widths == {"token_embedding/embeddings": (120, 12), "position_embedding/embeddings": (16, 12),
                      "segment_embedding/embeddings": (2, 12), "embeddings_layer_norm/gamma": (12,),
                      "embeddings_layer_norm/beta": (12,), "embedding_projection/kernel": (12, 32),
                      "embedding_projection/bias": (32,)}
    rng = np.random.default_rng(1)
    for weight in encoder.weights:  # nothing at its default value (zero biases, unit scales)
        weight.assign(rng.normal(0.0, 0.3, weight.shape).astype("float32"))
    data = inputs()
    projected = keras.Model(encoder.input, encoder.get_layer("embedding_projection").output)(data)

    def table(name):
        return np.asarray(encoder.get_layer(name).weights[0])

    x = (table("token_embedding")[data["token_ids"]] + table("position_embedding")[:9][None]
         + table("segment_embedding")[data["segment_ids"]])
    norm = encoder.get_layer("embeddings_layer_norm")
    x = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-12)
    x = x * np.asarray(norm.gamma) + np.asarray(norm.beta)
    projection = encoder.get_layer("embedding_projection")
    expected = x @ np.asarray(projection.kernel) + np.asarray(projection.bias)
    np.testing.assert_allclose(np.asarray(projected), expected, atol=1e-4)
    outputs = encoder(data)
    assert outputs["sequence_output"].shape == (2, 9, 32) and outputs["pooled_output"].shape == (2, 32)


def test_keras_file_round_trip(tmp_path):
    encoder = Encoder(**SMALL, embedding_dim=8, name="narrow")
    path = str(tmp_path / "narrow.keras")
    encoder.save(path)
    restored = keras.saving.load_model(path)
    assert restored.get_config() == encoder.get_config() and restored.embedding_dim == 8
    np.testing.assert_array_equal(restored(inputs())["sequence_output"], encoder(inputs())["sequence_output"])


@pytest.mark.parametrize("value", [0, -4, 2.5])
def test_invalid_embedding_dim_is_one_clear_error(value):
    with pytest.raises(ValueError, match=r"`embedding_dim` must be a positive integer"):
        Encoder(**SMALL, embedding_dim=value)
