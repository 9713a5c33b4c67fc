import keras
import numpy as np
import pytest

from keras_lm.layers import MaskedLMHead, NextSentenceHead, Pooler
from keras_lm.models import Encoder


def built_embedding(vocabulary_size=50, dim=8):
    embedding = keras.layers.Embedding(vocabulary_size, dim)
    embedding.build((None, None))
    return embedding


def test_pooler_is_tanh_dense_of_first_token():
    x = np.random.default_rng(0).normal(size=(3, 4, 8)).astype("float32")
    pooler = Pooler(bias_initializer="random_normal")
    pooled = np.asarray(pooler(x))
    kernel, bias = (np.asarray(w) for w in pooler.dense.weights)
    np.testing.assert_allclose(pooled, np.tanh(x[:, 0] @ kernel + bias), atol=1e-6)


def test_masked_lm_head_is_tied_and_gathers_positions():
    rng = np.random.default_rng(1)
    embedding = built_embedding()
    head = MaskedLMHead(token_embedding=embedding, activation="gelu_approximate", bias_initializer="random_normal")
    x = rng.normal(size=(2, 6, 8)).astype("float32")
    positions = np.array([[0, 5, 2], [4, 4, 1]], "int32")
    logits = np.asarray(head(x, positions))
    assert logits.shape == (2, 3, 50) and logits.dtype == np.float32
    gathered = np.take_along_axis(x, positions[..., None], axis=1)
    dense = np.asarray(head.transform_dense(gathered))
    normed = np.asarray(head.transform_layer_norm(dense))
    expected = normed @ np.asarray(embedding.embeddings).T + np.asarray(head.output_bias)
    np.testing.assert_allclose(logits, expected, atol=1e-5)
    # Tied: the embedding matrix is the output kernel, so changing it changes the logits.
    embedding.embeddings.assign(embedding.embeddings * 2.0)
    assert np.abs(np.asarray(head(x, positions)) - logits).max() > 1e-3
    assert sum(w is embedding.embeddings for w in head.trainable_weights) == 1


def test_masked_lm_head_without_embedding_owns_its_kernel():
    head = MaskedLMHead(vocabulary_size=30)
    assert tuple(head(np.zeros((1, 4, 8), "float32"), np.array([[1, 2]])).shape) == (1, 2, 30)
    assert tuple(head.output_kernel.shape) == (8, 30)


def test_masked_lm_head_errors():
    with pytest.raises(ValueError, match="vocabulary_size"):
        MaskedLMHead()
    with pytest.raises(ValueError, match="vocabulary_size=7"):
        MaskedLMHead(vocabulary_size=7, token_embedding=built_embedding())


def test_next_sentence_head_float32_logits_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        head = NextSentenceHead()
        logits = head(np.ones((3, 8), "float32"))
        assert tuple(logits.shape) == (3, 2) and logits.dtype == "float32"
        assert head.dense.compute_dtype == "bfloat16"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_masked_lm_head_float32_logits_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        embedding = built_embedding()
        head = MaskedLMHead(token_embedding=embedding)
        logits = head(np.ones((2, 4, 8), "float32"), np.array([[0, 1], [2, 3]]))
        assert logits.dtype == "float32"
        assert head.transform_dense(np.ones((1, 8), "float32")).dtype == "bfloat16"
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize(
    "layer",
    [
        Pooler(hidden_dim=4),
        NextSentenceHead(kernel_initializer="zeros"),
        MaskedLMHead(vocabulary_size=20, activation="relu"),
        MaskedLMHead(token_embedding=keras.layers.Embedding(20, 8, name="tokens"), layer_norm_epsilon=1e-6),
    ],
    ids=["pooler", "nsp", "mlm_untied", "mlm_tied"],
)
def test_config_round_trip(layer):
    config = layer.get_config()
    restored = type(layer).from_config(config)
    assert restored.get_config() == config


@keras.saving.register_keras_serializable(package="keras_lm_tests")
class TiedMaskedLM(keras.Model):
    """A backbone plus an MLM head, tied when the model is constructed (also in from_config)."""

    def __init__(self, encoder, **kwargs):
        head = MaskedLMHead(token_embedding=encoder.token_embedding, name="mlm_head")
        inputs = {name: keras.Input((None,), dtype="int32", name=name)
                  for name in ("token_ids", "segment_ids", "padding_mask", "mask_positions")}
        encoded = encoder({k: inputs[k] for k in ("token_ids", "segment_ids", "padding_mask")})
        super().__init__(inputs, head(encoded["sequence_output"], inputs["mask_positions"]), **kwargs)
        self.encoder = encoder
        self.head = head

    def get_config(self):
        return {"name": self.name, "encoder": keras.saving.serialize_keras_object(self.encoder)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        return cls(**config)


def test_tied_head_stays_tied_after_keras_round_trip(tmp_path):
    encoder = Encoder(60, 1, 2, 8, 16, max_sequence_length=16)
    model = TiedMaskedLM(encoder)
    model.head.output_bias.assign(np.random.default_rng(2).normal(size=60))
    data = {
        "token_ids": np.array([[1, 5, 9, 0]], "int32"),
        "segment_ids": np.zeros((1, 4), "int32"),
        "padding_mask": np.array([[1, 1, 1, 0]], "int32"),
        "mask_positions": np.array([[1, 2]], "int32"),
    }
    path = str(tmp_path / "mlm.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert restored.head.token_embedding is restored.encoder.token_embedding
    np.testing.assert_array_equal(np.asarray(restored(data)), np.asarray(model(data)))
    restored.encoder.token_embedding.embeddings.assign(restored.encoder.token_embedding.embeddings * 0)
    assert np.abs(np.asarray(restored(data)) - np.asarray(restored.head.output_bias)).max() < 1e-5
