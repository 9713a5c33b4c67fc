"""The PEFT methods on a classifier reloaded from an encoder export with
Classifier.from_saved_model(..., rebuild=True): keras_lm layers holding the exported values."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import keras_lm
from keras_lm.peft.adapters import add_adapters
from keras_lm.peft.freezing import bitfit
from keras_lm.peft.lora import lora, lora_layers, merge_lora
from keras_lm.peft.prompt_tuning import prompt_tuning
from keras_lm.peft.variables import trainable_parameter_count


@pytest.fixture
def encoder_export(small_bert, preprocessor, tmp_path):
    backbone = small_bert()
    return backbone, keras_lm.export.encoder(backbone, preprocessor, str(tmp_path / "hub"))


def test_rebuild_gives_keras_lm_layers_with_the_exported_values(encoder_export, preprocessor, texts_and_labels):
    backbone, directory = encoder_export
    manifest = json.load(open(os.path.join(directory, "keras_lm.json")))
    assert manifest["backbone"]["class_name"] == "Bert"
    rebuilt = keras_lm.tasks.Classifier.from_saved_model(directory, num_classes=2, rebuild=True)
    reloaded = keras_lm.tasks.Classifier.from_saved_model(directory, num_classes=2)
    assert isinstance(rebuilt.backbone, keras_lm.applications.Bert) and rebuilt.preprocessor is not None
    features = preprocessor(tf.constant(texts_and_labels[0][:6]))
    for key in ("sequence_output", "pooled_output"):
        expected = backbone(features)[key].numpy()
        np.testing.assert_array_equal(rebuilt.backbone(features)[key].numpy(), expected)
        np.testing.assert_allclose(reloaded.backbone(features)[key].numpy(), expected, atol=1e-5)
    assert trainable_parameter_count(bitfit(rebuilt)) == trainable_parameter_count(bitfit(reloaded)) == 1410


def test_every_method_applies_to_a_rebuilt_saved_model_start(encoder_export, texts_and_labels, fit_and_diff):
    _, directory = encoder_export

    def start():
        return keras_lm.tasks.Classifier.from_saved_model(directory, num_classes=2, rebuild=True)

    classifier = start()
    texts = texts_and_labels[0][:8]
    features = classifier.preprocessor(tf.constant(texts))
    expected = classifier(features).numpy()
    adapted = add_adapters(classifier, bottleneck_dim=8)
    np.testing.assert_array_equal(adapted(features).numpy(), expected)
    prompted = prompt_tuning(classifier, num_prompts=4)
    assert prompted(features).shape == (8, 2) and trainable_parameter_count(prompted) == 4 * 64 + 130

    tuned = lora(start(), rank=4)
    assert len(lora_layers(tuned)) == 8
    changed, paths = fit_and_diff(tuned, learning_rate=1e-2, epochs=2)
    assert changed == {p for p in paths if "lora_kernel" in p or p.startswith("logits/")}


@pytest.mark.slow  # long: run with -m slow
def test_rebuild_refuses_exports_it_cannot_rebuild_exactly(encoder_export, small_bert, preprocessor, tmp_path):
    _, directory = encoder_export
    path = os.path.join(directory, "keras_lm.json")
    manifest = json.load(open(path))
    json.dump({k: v for k, v in manifest.items() if k != "backbone"}, open(path, "w"))
    with pytest.raises(ValueError, match="records no backbone configuration .* export the encoder again"):
        keras_lm.tasks.Classifier.from_saved_model(directory, num_classes=2, rebuild=True)
    keras_lm.tasks.Classifier.from_saved_model(directory, num_classes=2)  # the SavedModel layer still loads

    unmerged = lora(small_bert(num_layers=1, hidden_dim=32), rank=2)
    exported = keras_lm.export.encoder(unmerged, preprocessor, str(tmp_path / "lora_hub"))
    with pytest.raises(ValueError, match="unmerged LoRA weights .* merge them before exporting"):
        keras_lm.tasks.Classifier.from_saved_model(exported, num_classes=2, rebuild=True)
    merged = keras_lm.export.encoder(merge_lora(unmerged), preprocessor, str(tmp_path / "merged_hub"))
    rebuilt = keras_lm.tasks.Classifier.from_saved_model(merged, num_classes=2, rebuild=True)
    features = preprocessor(tf.constant(["a fine film"]))
    np.testing.assert_array_equal(rebuilt.backbone(features)["sequence_output"].numpy(),
                                  unmerged(features)["sequence_output"].numpy())
