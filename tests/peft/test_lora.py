"""LoRA through Keras' enable_lora: what trains, merged == unmerged, the LoRA-only weights file,
and a merged classifier exported for serving that answers raw strings in a fresh process."""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lm
from keras_lm.peft.lora import load_lora_weights, lora, lora_layers, merge_lora, save_lora_weights
from keras_lm.peft.variables import trainable_parameter_count

TARGETS = ("qkv", "output", "intermediate_dense", "output_dense")


def _logits(model, texts):
    return model(model.preprocessor(tf.constant(texts)), training=False).numpy()


def test_lora_starts_as_the_base_model_and_trains_only_its_matrices_and_the_head(
    classifier, texts_and_labels, fit_and_diff
):
    texts = texts_and_labels[0][:8]
    before = _logits(classifier, texts)
    lora(classifier, rank=4, alpha=8)
    np.testing.assert_array_equal(_logits(classifier, texts), before)  # B = 0: nothing changed yet
    layers = lora_layers(classifier)
    assert sorted({layer.name for layer in layers}) == sorted(TARGETS) and len(layers) == 8
    # rank 4 on [64 -> 192], [64 -> 64], [64 -> 128], [128 -> 64], twice, plus the head
    expected = 2 * 4 * ((64 + 192) + (64 + 64) + (64 + 128) + (128 + 64)) + 64 * 2 + 2
    assert trainable_parameter_count(classifier) == expected

    changed, paths = fit_and_diff(classifier, learning_rate=1e-2, epochs=2)
    intended = {p for p in paths if p.endswith(("lora_kernel_a", "lora_kernel_b")) or p.startswith("logits/")}
    assert changed == intended, sorted(changed ^ intended)


def test_merged_model_equals_the_unmerged_one(classifier, texts_and_labels, fit_and_diff, tmp_path):
    texts = texts_and_labels[0][:16]
    lora(classifier, rank=4)
    fit_and_diff(classifier, learning_rate=1e-2, epochs=2)
    unmerged = _logits(classifier, texts)
    sequence = classifier.backbone(classifier.preprocessor(tf.constant(texts)))["sequence_output"].numpy()
    layer = lora_layers(classifier)[0]
    assert float(np.abs(layer.lora_kernel_b.numpy()).max()) > 0  # the update is not zero
    expected_kernel = layer._kernel.numpy() + layer.lora_kernel_a.numpy() @ layer.lora_kernel_b.numpy()
    saved = str(tmp_path / "lora.keras")
    classifier.save(saved)  # Keras writes each LoRA Dense layer's kernel merged

    merge_lora(classifier)
    assert lora_layers(classifier) == [] and not any("lora" in v.path for v in classifier.variables)
    np.testing.assert_allclose(layer.kernel.numpy(), expected_kernel, atol=1e-6)
    np.testing.assert_allclose(_logits(classifier, texts), unmerged, atol=1e-5)
    merged_sequence = classifier.backbone(classifier.preprocessor(tf.constant(texts)))["sequence_output"]
    np.testing.assert_allclose(merged_sequence.numpy(), sequence, atol=1e-5)
    reloaded = keras.saving.load_model(saved)
    assert lora_layers(reloaded) == []
    np.testing.assert_allclose(_logits(reloaded, texts), unmerged, atol=1e-5)
    with pytest.raises(ValueError, match="no LoRA layers to merge"):
        merge_lora(classifier)


def test_lora_weights_alone_restore_the_model_exactly_in_a_fresh_model(
    classifier, preprocessor, texts_and_labels, fit_and_diff, tmp_path
):
    base_file = str(tmp_path / "base.keras")
    classifier.backbone.save(base_file)  # the frozen backbone a fresh model starts from
    lora(classifier, rank=4)
    fit_and_diff(classifier, learning_rate=1e-2, epochs=2)
    texts = texts_and_labels[0][:16]
    expected = _logits(classifier, texts)
    path = save_lora_weights(classifier, str(tmp_path / "sentiment.lora.safetensors"))
    classifier.save_weights(str(tmp_path / "full.weights.h5"))
    assert os.path.getsize(path) < 0.1 * os.path.getsize(tmp_path / "full.weights.h5")

    fresh = keras_lm.tasks.Classifier(keras.saving.load_model(base_file), num_classes=2, preprocessor=preprocessor)
    load_lora_weights(fresh, path)  # enables LoRA with the file's rank and targets
    assert len(lora_layers(fresh)) == 8
    np.testing.assert_array_equal(_logits(fresh, texts), expected)


def test_lora_weights_that_do_not_fit_fail_before_anything_changes(classifier, small_bert, preprocessor, tmp_path):
    lora(classifier, rank=4, targets=("qkv",))
    path = save_lora_weights(classifier, str(tmp_path / "qkv.safetensors"))
    other = keras_lm.tasks.Classifier(small_bert(num_layers=1), num_classes=2, preprocessor=preprocessor)
    before = [v.numpy().copy() for v in other.variables]
    with pytest.raises(ValueError, match="transformer_layer_1/self_attention/qkv/lora_kernel_a' in the file has no "
                                         "counterpart"):
        load_lora_weights(other, path)
    assert lora_layers(other) == [] and all(np.array_equal(v.numpy(), b) for v, b in zip(other.variables, before))
    with pytest.raises(ValueError, match="not a keras_lm LoRA weights file"):
        from safetensors.numpy import save_file

        save_file({"x": np.zeros(2, "float32")}, str(tmp_path / "other.safetensors"))
        load_lora_weights(other, str(tmp_path / "other.safetensors"))
    with pytest.raises(FileNotFoundError, match="No LoRA weights file"):
        load_lora_weights(other, str(tmp_path / "missing.safetensors"))


def test_bad_lora_arguments_fail_clearly(classifier, preprocessor, tmp_path):
    with pytest.raises(ValueError, match="`rank` must be a positive integer"):
        lora(classifier, rank=0)
    with pytest.raises(ValueError, match="Unknown LoRA target 'dense'"):
        lora(classifier, targets=("dense",))
    lora(classifier, rank=2)
    with pytest.raises(ValueError, match="already enabled"):
        lora(classifier, rank=2)
    exported = keras_lm.export.encoder(keras_lm.applications.Bert(
        None, num_layers=1, hidden_dim=32, num_heads=2, intermediate_dim=64, vocabulary_size=1000,
        max_sequence_length=64), preprocessor, str(tmp_path / "hub"))
    reloaded = keras_lm.tasks.Classifier.from_saved_model(exported, num_classes=2)
    with pytest.raises(ValueError, match="rebuild=True"):
        lora(reloaded)


@pytest.mark.slow  # long: run with -m slow
def test_exported_merged_lora_classifier_answers_raw_strings_in_a_fresh_process(
    classifier, texts_and_labels, fit_and_diff, load_in_fresh_process, tmp_path
):
    lora(classifier, rank=4)
    fit_and_diff(classifier, learning_rate=1e-2, epochs=2)
    texts = texts_and_labels[0][:6] + ["A gripping, beautifully acted film.", "Dull and far too long."]
    expected = tf.nn.softmax(_logits(classifier, texts)).numpy()  # the unmerged LoRA model
    merge_lora(classifier)
    directory = keras_lm.export.serving(classifier, str(tmp_path / "serving" / "1"))
    result = load_in_fresh_process(directory, texts)
    for loader in ("eager", "session"):
        np.testing.assert_allclose(np.array(result[loader]["probabilities"]), expected, atol=1e-5)
        assert result[loader]["label"] == expected.argmax(-1).tolist()
