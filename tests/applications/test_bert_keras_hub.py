import keras_hub
import numpy as np

from keras_lm.applications import Bert


def randomized_backbone():
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=1000, num_layers=2, num_heads=2, hidden_dim=128, intermediate_dim=512,
        max_sequence_length=64,
    )
    rng = np.random.default_rng(0)
    for weight in backbone.weights:  # biases, LayerNorm gammas and betas too
        scale = 0.05 if weight.path.endswith("kernel") else 0.5
        offset = 1.0 if weight.path.endswith("gamma") else 0.0
        weight.assign(offset + scale * rng.normal(size=weight.shape).astype("float32"))
    return backbone


def padded_inputs():
    rng = np.random.default_rng(1)
    mask = np.ones((3, 24), "int32")
    mask[0, 15:] = 0
    mask[2, 6:] = 0
    return {
        "token_ids": rng.integers(0, 1000, (3, 24)).astype("int32"),
        "segment_ids": (np.arange(24) >= 10).astype("int32")[None].repeat(3, 0) * mask,
        "padding_mask": mask,
    }


def test_ported_weights_give_the_same_outputs():
    backbone = randomized_backbone()
    bert = Bert.from_keras_hub(backbone)
    assert isinstance(bert, Bert) and bert.size == "tiny" and bert.vocabulary_size == 1000
    assert bert.count_params() == backbone.count_params()
    data = padded_inputs()
    expected, actual = backbone(data), bert(data)
    for key in ("sequence_output", "pooled_output"):
        difference = np.abs(np.asarray(expected[key]) - np.asarray(actual[key])).max()
        print(f"{key}: max |delta| = {difference:.3g}")
        assert difference <= 1e-4, (key, difference)
    assert np.abs(np.asarray(actual["sequence_output"])).max() > 0.5  # not a degenerate comparison


def test_every_ported_weight_matters():
    backbone = randomized_backbone()
    bert = Bert.from_keras_hub(backbone)
    data = padded_inputs()
    reference = np.asarray(bert(data)["sequence_output"])
    layer = bert.transformer_layers[1]
    for weight in (layer.self_attention.qkv_dense.bias, layer.feed_forward_norm.beta):
        original = np.asarray(weight)
        weight.assign(original + 0.1)
        assert np.abs(np.asarray(bert(data)["sequence_output"]) - reference).max() > 1e-3
        weight.assign(original)


def test_custom_shape_ports_without_a_size_name():
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=100, num_layers=1, num_heads=4, hidden_dim=32, intermediate_dim=48, max_sequence_length=16
    )
    bert = Bert.from_keras_hub(backbone)
    assert bert.size is None and (bert.num_layers, bert.intermediate_dim, bert.max_sequence_length) == (1, 48, 16)
    data = {"token_ids": np.array([[5, 6, 7]], "int32"), "segment_ids": np.zeros((1, 3), "int32"),
            "padding_mask": np.ones((1, 3), "int32")}
    np.testing.assert_allclose(np.asarray(bert(data)["pooled_output"]), np.asarray(backbone(data)["pooled_output"]),
                               atol=1e-5)


def test_mixed_bfloat16_port_matches_float32_at_early_and_late_positions():
    backbone = randomized_backbone()
    full, mixed = Bert.from_keras_hub(backbone, dtype="float32"), Bert.from_keras_hub(backbone, dtype="mixed_bfloat16")
    assert mixed.transformer_layers[0].compute_dtype == "bfloat16"
    rng = np.random.default_rng(2)
    data = {"token_ids": rng.integers(0, 1000, (2, 64)).astype("int32"), "segment_ids": np.zeros((2, 64), "int32"),
            "padding_mask": np.ones((2, 64), "int32")}
    expected = np.asarray(full(data)["sequence_output"])
    actual = np.asarray(mixed(data)["sequence_output"]).astype("float32")
    # bf16 keeps 8 significant bits (rounding <= 2**-9 of a value); after the roundings of two
    # blocks, 99% of the outputs stay within 2e-2 of their scale and none beyond 5e-2.
    scale, error = np.abs(expected).max(), np.abs(actual - expected)
    for positions in (slice(0, 16), slice(48, 64)):
        assert np.percentile(error[:, positions], 99) <= 2e-2 * scale, (positions, error[:, positions].max(), scale)
        assert error[:, positions].max() <= 5e-2 * scale, (positions, error[:, positions].max(), scale)
    assert error.max() > 0  # really computed in bfloat16
