"""Optimizer, schedule and callback presets: cosine decay, weight-decay exclusions, best-epoch restore."""
import math

import keras
import numpy as np
import pytest

import keras_lm
from keras_lm.training.optimizers import adamw
from keras_lm.training.presets import MonitoredEarlyStopping, callbacks
from keras_lm.training.schedules import WarmupCosineDecay, WarmupLinearDecay


def test_warmup_cosine_decay_values_at_warmup_end_middle_and_end():
    schedule = WarmupCosineDecay(1e-3, warmup=10, total=110, end=1e-4)
    steps = (0, 5, 10, 35, 60, 85, 110, 1000)
    expected = [0.0, 5e-4, 1e-3,
                1e-4 + 9e-4 * 0.5 * (1 + math.cos(math.pi * 0.25)),
                5.5e-4,  # the middle of the decay: halfway between peak and end
                1e-4 + 9e-4 * 0.5 * (1 + math.cos(math.pi * 0.75)),
                1e-4, 1e-4]
    np.testing.assert_allclose([float(schedule(s)) for s in steps], expected, rtol=1e-6, atol=1e-10)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert [float(restored(s)) for s in steps] == [float(schedule(s)) for s in steps]


@pytest.mark.parametrize("kwargs", [{"total": 0}, {"warmup": 20, "total": 10}, {"total": None}])
def test_cosine_schedule_rejects_bad_steps(kwargs):
    with pytest.raises(ValueError, match="must be"):
        WarmupCosineDecay(1e-3, **{"warmup": 1, **kwargs})


def test_adamw_preset_picks_the_decay_shape():
    cosine = adamw(2e-3, warmup=4, total=20, decay="cosine")
    linear = adamw(2e-3, warmup=4, total=20)
    assert isinstance(cosine._learning_rate, WarmupCosineDecay)
    assert isinstance(linear._learning_rate, WarmupLinearDecay)
    # Three quarters into the decay: cosine is at (1 + cos(3 pi / 4)) / 2 of the peak, linear at 1/4.
    np.testing.assert_allclose(float(cosine._learning_rate(16)), 2e-3 * (1 + math.cos(0.75 * math.pi)) / 2, rtol=1e-6)
    np.testing.assert_allclose(float(linear._learning_rate(16)), 5e-4, rtol=1e-6)
    with pytest.raises(ValueError, match="needs `total`"):
        adamw(1e-3, warmup=4, decay="cosine")
    with pytest.raises(ValueError, match="linear, cosine"):
        adamw(1e-3, total=10, decay="step")


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_only_kernels_and_embeddings_decay_after_a_zero_gradient_step(family):
    """Biases, LayerNorm gamma/beta and RMSNorm scales keep their values; every other variable shrinks."""
    if family == "bert":
        backbone = keras_lm.applications.Bert("tiny", vocabulary_size=100, max_sequence_length=16)
        model = keras_lm.tasks.Classifier(backbone, num_classes=2)
    else:
        model = keras_lm.applications.Llama("tiny", vocabulary_size=100, max_sequence_length=16)
    optimizer = adamw(0.1, weight_decay=0.5, clipnorm=None)
    variables = model.trainable_variables
    before = [v.numpy().copy() for v in variables]
    optimizer.apply_gradients(zip([keras.ops.zeros(v.shape) for v in variables], variables))
    kinds = set()
    for variable, start in zip(variables, before):
        excluded = variable.name in ("bias", "gamma", "beta", "scale") or variable.name.endswith("_bias")
        kinds.add((variable.name, excluded))
        expected = start if excluded else start * (1 - 0.1 * 0.5)  # decoupled decay: w - lr * wd * w
        np.testing.assert_allclose(variable.numpy(), expected, rtol=1e-6, atol=1e-7, err_msg=variable.path)
    names = {name for name, _ in kinds}
    assert {"kernel", "embeddings"} <= names
    assert ("scale" in names) if family == "llama" else {"bias", "gamma", "beta"} <= names


def _peaking_model():
    """A 2-class model on one input whose validation accuracy rises, peaks at epoch 3, then falls.

    Training examples are x = 0 with label 1, so SGD only moves the biases, and the logit gap
    b1 - b0 grows every epoch (0.50, 0.88, 1.17, 1.41, 1.60, 1.77, ...). A validation example at
    x = s is answered 1 when s + (b1 - b0) > 0: the label-1 examples at -0.7 and -1.0 become right
    after epochs 2 and 3, the label-0 examples at -1.3 and -1.7 wrong after epochs 4 and 6.
    """
    inputs = keras.Input((1,))
    dense = keras.layers.Dense(2, kernel_initializer=keras.initializers.Constant([[0.0, 1.0]]), name="logits")
    model = keras.Model(inputs, dense(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.5),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    train = (np.zeros((8, 1), "float32"), np.ones(8, "int32"))
    validation = (np.array([[-0.7], [-1.0], [-1.3], [-1.7], [-3.0]], "float32"), np.array([1, 1, 0, 0, 0]))
    return model, train, validation


def test_early_stopping_restores_the_peak_epoch_and_the_checkpoint_holds_it(tmp_path):
    model, (x, y), validation = _peaking_model()
    per_epoch = []
    recorder = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: per_epoch.append(model.get_weights()))
    path = str(tmp_path / "best" / "model.keras")
    presets = callbacks("val_accuracy", patience=2, checkpoint=path)
    history = model.fit(x, y, batch_size=8, epochs=10, validation_data=validation,
                        callbacks=[recorder, *presets], verbose=0)
    accuracy = history.history["val_accuracy"]
    np.testing.assert_allclose(accuracy, [0.6, 0.8, 1.0, 0.8, 0.8], atol=1e-6)  # peaks, falls, stops
    best = int(np.argmax(accuracy))
    assert best == 2 and presets[0].stopped_epoch == 4
    for got, want in zip(model.get_weights(), per_epoch[best]):
        np.testing.assert_array_equal(got, want)
    assert not np.allclose(per_epoch[-1][1], per_epoch[best][1])  # the last epoch's weights differ
    assert model.evaluate(*validation, verbose=0, return_dict=True)["accuracy"] == 1.0
    saved = keras.saving.load_model(path)
    for got, want in zip(saved.get_weights(), per_epoch[best]):
        np.testing.assert_array_equal(got, want)


def test_weights_only_checkpoint_and_backup_presets(tmp_path):
    model, (x, y), validation = _peaking_model()
    path = str(tmp_path / "best.weights.h5")
    presets = callbacks("val_loss", patience=1, checkpoint=path, backup=str(tmp_path / "backup"))
    assert [type(c).__name__ for c in presets] == ["MonitoredEarlyStopping", "ModelCheckpoint", "BackupAndRestore"]
    history = model.fit(x, y, batch_size=8, epochs=6, validation_data=validation, callbacks=presets, verbose=0)
    losses = history.history["val_loss"]
    best = int(np.argmin(losses))
    fresh, _, _ = _peaking_model()
    fresh.load_weights(path)
    for got, want in zip(fresh.get_weights(), model.get_weights()):  # both hold the lowest-loss epoch
        np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(fresh.evaluate(*validation, verbose=0, return_dict=True)["loss"], losses[best],
                               rtol=1e-6)


def test_missing_validation_metric_is_one_clear_error():
    model, (x, y), _ = _peaking_model()
    with pytest.raises(ValueError, match="'val_accuracy'.*pass validation_data to fit"):
        model.fit(x, y, epochs=2, callbacks=callbacks("val_accuracy"), verbose=0)
    with pytest.raises(ValueError, match="must end in .keras"):
        callbacks(checkpoint="best.h5")
    with pytest.raises(ValueError, match="`mode`"):
        callbacks(mode="largest")
    assert isinstance(callbacks()[0], MonitoredEarlyStopping)


@pytest.mark.parametrize("module_name", ["presets", "schedules"])
def test_docstring_examples(module_name, tmp_path, monkeypatch):
    import doctest
    import importlib

    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(f"keras_lm.training.{module_name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
