"""Bottleneck adapters: identity at initialisation, placed on the sub-layer outputs before the residual
sum and LayerNorm, only adapters + LayerNorms + head train, and the model round-trips through .keras."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_lm.peft.adapters import AdapterEncoder, add_adapters
from keras_lm.peft.variables import trainable_parameter_count


def _features(classifier, texts):
    return classifier.preprocessor(tf.constant(texts))


def _randomize_adapters(model, seed=3):
    rng = np.random.default_rng(seed)
    for variable in model.variables:
        if "_adapter/" in variable.path:
            variable.assign(rng.normal(0, 0.2, variable.shape).astype("float32"))


def test_adapters_leave_the_outputs_unchanged_at_initialisation(classifier, texts_and_labels):
    features = _features(classifier, texts_and_labels[0][:16])
    before_logits = classifier(features).numpy()
    before = classifier.backbone(features)
    adapted = add_adapters(classifier, bottleneck_dim=8)
    assert isinstance(adapted.backbone, AdapterEncoder) and adapted is not classifier
    after = adapted.backbone(features)
    for key in ("sequence_output", "pooled_output"):
        np.testing.assert_array_equal(after[key].numpy(), before[key].numpy())
    np.testing.assert_array_equal(adapted(features).numpy(), before_logits)
    # per block: two adapters of 64 -> 8 -> 64 (with biases); LayerNorms: 5 of 2 x 64; head 64 x 2 + 2
    adapter = (64 * 8 + 8) + (8 * 64 + 64)
    assert trainable_parameter_count(adapted) == 2 * 2 * adapter + 5 * 2 * 64 + 130


def test_each_adapter_sits_on_its_sub_layer_output_before_the_residual_and_norm(classifier, texts_and_labels):
    adapted = add_adapters(classifier, bottleneck_dim=8)
    _randomize_adapters(adapted)
    encoder = adapted.backbone
    block = encoder.get_layer("transformer_layer_0")
    features = _features(adapted, texts_and_labels[0][:4])
    embedded = keras.Model(encoder.input, encoder.get_layer("embeddings_dropout").output)(features)
    mask = features["padding_mask"]

    def adapter(layer, h):  # h + up(gelu(down(h))), written out
        down, up = layer.adapter.down, layer.adapter.up
        return h + (keras.activations.gelu(h @ down.kernel + down.bias) @ up.kernel + up.bias)

    x = embedded
    h = block.self_attention_norm(x + adapter(block.self_attention_dropout, block.self_attention(x, padding_mask=mask)))
    ff = block.feed_forward
    inner = ff.output_dense(ff.intermediate_dense(h))
    expected = block.feed_forward_norm(h + adapter(ff.output_dropout, inner))
    np.testing.assert_allclose(block(x, padding_mask=mask).numpy(), expected.numpy(), atol=1e-5)
    assert not np.allclose(expected.numpy(), keras.Model(  # the adapters do change the block
        classifier.backbone.input, classifier.backbone.get_layer("transformer_layer_0").output)(features).numpy(),
        atol=1e-3)


def test_only_adapters_layer_norms_and_head_change_in_a_real_fit(classifier, fit_and_diff):
    original = {v.path: v.numpy().copy() for v in classifier.weights}
    adapted = add_adapters(classifier, bottleneck_dim=8)
    changed, paths = fit_and_diff(adapted, learning_rate=1e-2, epochs=2)
    intended = {p for p in paths if "_adapter/" in p or p.endswith(("norm/gamma", "norm/beta"))
                or p.startswith("logits/")}
    assert changed == intended, sorted(changed ^ intended)
    assert len([p for p in intended if "_adapter/" in p]) == 2 * 2 * 4
    for variable in classifier.weights:  # the model adapters were added to is untouched
        np.testing.assert_array_equal(variable.numpy(), original[variable.path])


def test_adapter_model_saves_and_loads_as_keras_file(classifier, texts_and_labels, tmp_path):
    adapted = add_adapters(classifier, bottleneck_dim=8, activation="relu")
    _randomize_adapters(adapted)
    features = _features(adapted, texts_and_labels[0][:8])
    expected = adapted(features).numpy()
    path = str(tmp_path / "adapted.keras")
    adapted.save(path)
    reloaded = keras.saving.load_model(path)
    assert isinstance(reloaded.backbone, AdapterEncoder)
    assert reloaded.backbone.get_config()["bottleneck_dim"] == 8
    np.testing.assert_array_equal(reloaded(features).numpy(), expected)


def test_adapters_need_a_keras_lm_encoder(classifier):
    adapted = add_adapters(classifier, bottleneck_dim=4)
    with pytest.raises(ValueError, match="already has adapters"):
        add_adapters(adapted)
    with pytest.raises(ValueError, match="`bottleneck_dim` must be a positive integer"):
        add_adapters(classifier, bottleneck_dim=0)
