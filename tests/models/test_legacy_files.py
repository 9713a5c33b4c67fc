"""`.keras` files written before encoders and decoders shared one block type still load.

tests/models/legacy/ holds tiny models saved by keras_lm 0.1 (blocks stored as
`transformer_encoder_block*` / `transformer_decoder_block*`, encoder norms as `*_layer_norm`) with
every weight random, and their outputs on fixed inputs (outputs.npz).
"""
import pathlib
import zipfile

import h5py
import keras
import numpy as np
import pytest

LEGACY = pathlib.Path(__file__).resolve().parent / "legacy"


@pytest.fixture(scope="module")
def reference():
    return dict(np.load(LEGACY / "outputs.npz"))


def _weight_groups(path) -> set:
    with zipfile.ZipFile(path) as archive, archive.open("model.weights.h5") as weights:
        with h5py.File(weights, "r") as h5:
            return set(h5["layers"].keys())


def test_a_legacy_encoder_file_loads_with_its_outputs(reference, tmp_path):
    assert "transformer_encoder_block_1" in _weight_groups(LEGACY / "encoder.keras")
    encoder = keras.saving.load_model(LEGACY / "encoder.keras")
    inputs = {"token_ids": reference["token_ids"], "segment_ids": np.zeros_like(reference["token_ids"]),
              "padding_mask": reference["padding_mask"]}
    outputs = encoder(inputs)
    np.testing.assert_allclose(np.asarray(outputs["sequence_output"]), reference["encoder_sequence_output"], atol=1e-6)
    np.testing.assert_allclose(np.asarray(outputs["pooled_output"]), reference["encoder_pooled_output"], atol=1e-6)
    # Saved again, it is written in the current layout and loads as such.
    encoder.save(tmp_path / "encoder.keras")
    groups = _weight_groups(tmp_path / "encoder.keras")
    assert {"transformer_block", "transformer_block_1"} <= groups and "transformer_encoder_block" not in groups
    again = keras.saving.load_model(tmp_path / "encoder.keras")
    np.testing.assert_allclose(np.asarray(again(inputs)["sequence_output"]), reference["encoder_sequence_output"],
                               atol=1e-6)


@pytest.mark.parametrize("name", ["gpt2_style", "llama_style"])
def test_a_legacy_decoder_file_loads_with_its_logits(reference, name):
    assert "transformer_decoder_block_1" in _weight_groups(LEGACY / f"{name}_decoder.keras")
    decoder = keras.saving.load_model(LEGACY / f"{name}_decoder.keras")
    inputs = {"token_ids": reference["token_ids"], "padding_mask": reference["padding_mask"]}
    logits = np.asarray(decoder.logits(decoder(inputs)["sequence_output"]))
    real = reference["padding_mask"].astype(bool)  # outputs at padding positions are not defined
    np.testing.assert_allclose(logits[real], reference[f"{name}_logits"][real], atol=1e-5)


def test_a_legacy_weights_file_loads_into_a_new_model(tmp_path, reference):
    legacy = keras.saving.load_model(LEGACY / "encoder.keras")
    with zipfile.ZipFile(LEGACY / "encoder.keras") as archive:
        archive.extract("model.weights.h5", tmp_path)
    fresh = type(legacy).from_config(legacy.get_config())
    fresh.load_weights(tmp_path / "model.weights.h5")
    for new, old in zip(fresh.weights, legacy.weights):
        np.testing.assert_array_equal(np.asarray(new), np.asarray(old))
