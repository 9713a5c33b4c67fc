import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from keras_lm.applications import Bert, count_bert_parameters
from keras_lm.models import Encoder

EXPECTED_SIZES = {
    "tiny": (2, 128, 2),
    "mini": (4, 256, 4),
    "small": (4, 512, 8),
    "medium": (8, 512, 8),
    "base": (12, 768, 12),
    "large": (24, 1024, 16),
}


def hub_backbone(size, vocabulary_size):
    num_layers, hidden_dim, num_heads = EXPECTED_SIZES[size]
    return keras_hub.models.BertBackbone(
        vocabulary_size=vocabulary_size, num_layers=num_layers, num_heads=num_heads, hidden_dim=hidden_dim,
        intermediate_dim=4 * hidden_dim, max_sequence_length=512,
    )


def test_size_table():
    assert list(Bert.sizes) == list(EXPECTED_SIZES)
    for name, (num_layers, hidden_dim, num_heads) in EXPECTED_SIZES.items():
        assert dict(Bert.sizes[name]) == {"num_layers": num_layers, "hidden_dim": hidden_dim,
                                          "num_heads": num_heads, "intermediate_dim": 4 * hidden_dim}


@pytest.mark.parametrize("size", ["tiny", "mini", "small"])
def test_built_sizes_match_keras_hub(size):
    bert = Bert(size, vocabulary_size=1000)
    num_layers, hidden_dim, num_heads = EXPECTED_SIZES[size]
    assert isinstance(bert, Encoder) and bert.size == size
    assert len(bert.transformer_layers) == num_layers == bert.num_layers
    assert (bert.hidden_dim, bert.num_heads, bert.intermediate_dim) == (hidden_dim, num_heads, 4 * hidden_dim)
    assert bert.max_sequence_length == 512 and bert.num_segments == 2
    assert bert.count_params() == hub_backbone(size, 1000).count_params() == count_bert_parameters(size, 1000)


def test_parameter_counts_of_every_size_without_building():
    # Published totals of the uncased English checkpoints (vocabulary 30522, with pooler).
    assert count_bert_parameters("base") == 109_482_240
    assert count_bert_parameters("large") == 335_141_888
    counts = [count_bert_parameters(size) for size in EXPECTED_SIZES]
    assert counts == sorted(counts)


@pytest.mark.slow
@pytest.mark.parametrize("size", ["medium", "base", "large"])
def test_large_sizes_match_keras_hub_when_built(size):
    bert = Bert(size)
    assert len(bert.transformer_layers) == EXPECTED_SIZES[size][0]
    assert bert.count_params() == hub_backbone(size, 30522).count_params() == count_bert_parameters(size)


def test_unknown_size_lists_known_sizes():
    with pytest.raises(ValueError, match=r"'huge'.*tiny, mini, small, medium, base, large"):
        Bert("huge")


def test_inconsistent_override_names_both_numbers():
    with pytest.raises(ValueError, match=r"hidden_dim=250.*num_heads=4"):
        Bert("mini", hidden_dim=250, num_heads=4)


def test_overrides_and_custom_shape():
    bert = Bert("tiny", vocabulary_size=100, hidden_dim=64, max_sequence_length=32, dropout=0.0)
    assert (bert.hidden_dim, bert.intermediate_dim, bert.max_sequence_length) == (64, 256, 32)
    custom = Bert(None, vocabulary_size=100, num_layers=1, num_heads=2, hidden_dim=32, max_sequence_length=16)
    assert (custom.num_layers, custom.intermediate_dim) == (1, 128)
    with pytest.raises(ValueError, match="num_heads"):
        Bert(None, num_layers=1, hidden_dim=32)


def test_keras_round_trip_is_a_bert(tmp_path):
    bert = Bert("tiny", vocabulary_size=200, max_sequence_length=32, name="tiny_bert")
    data = {
        "token_ids": np.array([[2, 40, 7, 9, 0, 0]], "int32"),
        "segment_ids": np.array([[0, 0, 1, 1, 0, 0]], "int32"),
        "padding_mask": np.array([[1, 1, 1, 1, 0, 0]], "int32"),
    }
    path = str(tmp_path / "bert.keras")
    bert.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored) is Bert and restored.size == "tiny" and restored.name == "tiny_bert"
    for key, value in bert(data).items():
        np.testing.assert_array_equal(np.asarray(restored(data)[key]), np.asarray(value))


def test_gradients_reach_every_trainable_weight():
    bert = Bert("tiny", vocabulary_size=64, num_layers=2, max_sequence_length=16)
    rng = np.random.default_rng(0)
    data = {
        "token_ids": tf.constant(rng.integers(0, 64, (2, 10)), "int32"),
        "segment_ids": tf.constant((np.arange(10) > 4).astype("int32")[None].repeat(2, 0)),
        "padding_mask": tf.constant(np.array([[1] * 10, [1] * 7 + [0] * 3], "int32")),
    }
    with tf.GradientTape() as tape:
        outputs = bert(data, training=True)
        loss = tf.reduce_sum(outputs["sequence_output"] * rng.normal(size=(2, 10, 128)).astype("float32"))
        loss += tf.reduce_sum(outputs["pooled_output"] * rng.normal(size=(2, 128)).astype("float32"))
    gradients = tape.gradient(loss, bert.trainable_weights)
    assert len(bert.trainable_weights) == 5 + 2 * 12 + 2
    for weight, gradient in zip(bert.trainable_weights, gradients):
        assert gradient is not None, weight.path
        assert float(tf.reduce_max(tf.abs(tf.convert_to_tensor(gradient)))) > 0, weight.path
