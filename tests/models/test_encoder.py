import keras
import numpy as np
import pytest

from keras_lm.models import Encoder

CONFIG = dict(vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
              max_sequence_length=12)


def make_inputs(batch=2, length=7, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, length), "int32")
    mask[0, length - 3:] = 0
    return {
        "token_ids": rng.integers(1, 50, (batch, length)).astype("int32"),
        "segment_ids": (np.arange(length) >= length // 2).astype("int32")[None].repeat(batch, 0),
        "padding_mask": mask,
    }


def test_outputs_layers_and_attributes():
    encoder = Encoder(**CONFIG)
    outputs = encoder(make_inputs())
    assert tuple(outputs["sequence_output"].shape) == (2, 7, 16)
    assert tuple(outputs["pooled_output"].shape) == (2, 16)
    assert tuple(encoder.token_embedding.embeddings.shape) == (50, 16)
    assert [layer.name for layer in encoder.transformer_layers] == ["transformer_layer_0", "transformer_layer_1"]
    assert encoder.get_layer("pooler") is encoder.pooler
    for key, value in CONFIG.items():
        assert getattr(encoder, key) == value


def test_per_layer_outputs_model():
    encoder = Encoder(**CONFIG)
    per_layer = keras.Model(encoder.inputs, [encoder.get_layer(f"transformer_layer_{i}").output for i in range(2)])
    data = make_inputs()
    layer_outputs = per_layer(data)
    np.testing.assert_allclose(np.asarray(layer_outputs[-1]), np.asarray(encoder(data)["sequence_output"]), atol=1e-6)


def test_padding_is_ignored_and_bool_mask_accepted():
    encoder = Encoder(**CONFIG)
    data = make_inputs()
    changed = {k: v.copy() for k, v in data.items()}
    changed["token_ids"][0, -3:] = 3
    changed["segment_ids"][0, -3:] = 0
    before = np.asarray(encoder(data)["sequence_output"])
    after = np.asarray(encoder(changed)["sequence_output"])
    np.testing.assert_allclose(before[0, :-3], after[0, :-3], atol=1e-5)
    np.testing.assert_array_equal(before[1], after[1])
    as_bool = dict(data, padding_mask=data["padding_mask"].astype(bool))
    np.testing.assert_allclose(np.asarray(encoder(as_bool)["sequence_output"]), before, atol=1e-6)


def test_every_position_sees_tokens_before_and_after_it():
    """Bidirectional attention: changing one token moves the outputs of all other real positions."""
    encoder = Encoder(**CONFIG, dropout=0.0)
    data = make_inputs()
    before = np.asarray(encoder(data)["sequence_output"])
    for changed_position in (0, 3):  # first real token (seen only from the right), a middle one
        changed = {k: v.copy() for k, v in data.items()}
        changed["token_ids"][:, changed_position] = changed["token_ids"][:, changed_position] % 49 + 1
        after = np.asarray(encoder(changed)["sequence_output"])
        shift = np.abs(after - before).max(axis=-1)  # [batch, length]
        others = [p for p in range(4) if p != changed_position]  # real positions of row 0
        assert shift[0, others].min() > 1e-3, shift
        assert shift[1, [p for p in range(7) if p != changed_position]].min() > 1e-3, shift


def test_exact_keras_round_trip(tmp_path):
    encoder = Encoder(**CONFIG, dropout=0.2, activation="gelu_approximate", norm_first=True, name="my_encoder")
    data = make_inputs()
    expected = encoder(data)
    path = str(tmp_path / "encoder.keras")
    encoder.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored) is Encoder and restored.name == "my_encoder"
    assert restored.get_config() == encoder.get_config()
    actual = restored(data)
    for key in expected:
        np.testing.assert_array_equal(np.asarray(actual[key]), np.asarray(expected[key]))


def test_config_round_trip():
    encoder = Encoder(**CONFIG)
    clone = Encoder.from_config(encoder.get_config())
    assert clone.get_config() == encoder.get_config()
    assert clone.count_params() == encoder.count_params()


def test_mixed_bfloat16_dtype_argument_and_reload(tmp_path):
    encoder = Encoder(**CONFIG, dtype="mixed_bfloat16")
    outputs = encoder(make_inputs())
    assert outputs["sequence_output"].dtype == "bfloat16"
    assert encoder.token_embedding.embeddings.dtype == "float32"
    assert keras.mixed_precision.global_policy().name == "float32"
    path = str(tmp_path / "bf16.keras")
    encoder.save(path)
    restored = keras.saving.load_model(path)
    assert restored.dtype_policy.name == "mixed_bfloat16"
    assert restored.transformer_layers[0].compute_dtype == "bfloat16"


def test_dropout_is_active_only_in_training():
    encoder = Encoder(**CONFIG, dropout=0.3)
    data = make_inputs()
    inference = np.asarray(encoder(data)["sequence_output"])
    np.testing.assert_array_equal(inference, np.asarray(encoder(data, training=False)["sequence_output"]))
    assert np.abs(np.asarray(encoder(data, training=True)["sequence_output"]) - inference).max() > 1e-3


@pytest.mark.parametrize(
    "override,pattern",
    [
        ({"hidden_dim": 15}, r"hidden_dim=15.*num_heads=2"),
        ({"num_layers": 0}, "num_layers"),
        ({"vocabulary_size": 2.5}, "vocabulary_size"),
        ({"dropout": 1.0}, "dropout"),
        ({"attention_implementation": "flash"}, "attention_implementation 'flash'.*auto, fused, explicit"),
    ],
)
def test_bad_config_is_one_clear_error(override, pattern):
    with pytest.raises(ValueError, match=pattern):
        Encoder(**{**CONFIG, **override})


def test_unexpected_keyword_is_an_error():
    with pytest.raises(TypeError, match="num_layer"):
        Encoder(**CONFIG, num_layer=3)


def test_bad_inputs_when_called():
    encoder = Encoder(**CONFIG)
    data = make_inputs()
    with pytest.raises(ValueError, match="segment_ids"):
        encoder({k: v for k, v in data.items() if k != "segment_ids"})
    with pytest.raises(ValueError, match="shape"):
        encoder({k: v[0] for k, v in data.items()})
    with pytest.raises(ValueError, match="13 positions"):
        encoder(make_inputs(length=13))


def test_fused_and_explicit_attention_encoders_agree_and_keep_their_choice():
    """The kernel choice reaches every block, survives get_config, and changes no output."""
    explicit = Encoder(**CONFIG, attention_implementation="explicit")
    fused = Encoder.from_config({**explicit.get_config(), "attention_implementation": "fused"})
    fused.set_weights(explicit.get_weights())
    assert [b.self_attention.implementation for b in fused.transformer_layers] == ["fused", "fused"]
    assert Encoder.from_config(explicit.get_config()).attention_implementation == "explicit"
    data = make_inputs()
    mask = data["padding_mask"][..., None]
    a, b = (np.asarray(m(data)["sequence_output"]) * mask for m in (explicit, fused))
    np.testing.assert_allclose(a, b, atol=1e-5)
