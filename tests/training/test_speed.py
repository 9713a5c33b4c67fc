"""Speed paths: XLA choice per strategy, mixed_bfloat16 training, gradient accumulation."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lm
from keras_lm.training import adamw, jit_compile_for, precision


@pytest.fixture
def restore_policy():
    yield
    keras.config.set_dtype_policy("float32")


def test_jit_compile_choice_per_strategy_and_device():
    assert jit_compile_for(tf.distribute.OneDeviceStrategy("/cpu:0")) is False
    assert jit_compile_for(tf.distribute.OneDeviceStrategy("/gpu:0")) is True
    assert jit_compile_for(tf.distribute.MirroredStrategy(["/cpu:0"])) is False
    assert jit_compile_for() is False  # the default strategy on this CPU-only machine


def test_precision_rejects_unknown_names(restore_policy):
    with pytest.raises(ValueError, match="mixed_bfloat16"):
        precision("mixed_bf16")


def test_bert_pretrainer_trains_under_mixed_bfloat16_with_float32_loss(restore_policy):
    policy = precision("mixed_bfloat16")
    assert (policy.compute_dtype, policy.variable_dtype) == ("bfloat16", "float32")
    backbone = keras_lm.applications.Bert("tiny", vocabulary_size=60, max_sequence_length=16)
    pretrainer = keras_lm.pretraining.BertPretrainer(backbone, max_predictions=3)
    pretrainer.compile(optimizer=adamw(5e-3), jit_compile=jit_compile_for())
    rng = np.random.RandomState(0)
    batch = 16
    x = {
        "token_ids": rng.randint(5, 60, (batch, 16)).astype("int32"),
        "segment_ids": np.zeros((batch, 16), "int32"),
        "padding_mask": np.ones((batch, 16), "int32"),
        "mask_positions": np.tile(np.array([[1, 5, 9]], "int32"), (batch, 1)),
    }
    y = {"mlm": x["token_ids"][:, [1, 5, 9]], "nsp": (x["token_ids"][:, 0] > 30).astype("int32")}
    outputs = pretrainer(x)
    assert outputs["mlm"].dtype == "float32" and outputs["nsp"].dtype == "float32"
    hidden = backbone({k: x[k] for k in ("token_ids", "segment_ids", "padding_mask")})["sequence_output"]
    assert hidden.dtype == "bfloat16"  # the backbone really computes in bf16
    assert all(w.dtype == "float32" for w in pretrainer.trainable_weights)
    loss = pretrainer.compute_loss(x, y, outputs, None)
    assert loss.dtype == "float32"
    history = pretrainer.fit(x, y, batch_size=batch, epochs=30, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 1.0


def tiny_classifier(optimizer):
    keras.utils.set_random_seed(3)
    backbone = keras_lm.applications.Bert(
        None, vocabulary_size=40, num_layers=1, hidden_dim=16, num_heads=2, max_sequence_length=8,
        dropout=0.0,
    )
    model = keras_lm.tasks.Classifier(backbone, num_classes=3, dropout=0.0)
    model.compile(optimizer=optimizer)
    return model


def test_two_accumulated_steps_of_batch_b_equal_one_step_of_batch_2b():
    rng = np.random.RandomState(1)
    token_ids = rng.randint(4, 40, (16, 8)).astype("int32")
    x = {"token_ids": token_ids, "segment_ids": np.zeros_like(token_ids),
         "padding_mask": np.ones_like(token_ids)}
    y = token_ids[:, 0] % 3

    accumulated = tiny_classifier(adamw(1e-2, warmup=2, total=10, clipnorm=None, gradient_accumulation_steps=2))
    accumulated.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)  # 4 steps of 8
    full = tiny_classifier(adamw(1e-2, warmup=2, total=10, clipnorm=None))
    full.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)  # 2 steps of 16

    assert int(accumulated.optimizer.iterations) == int(full.optimizer.iterations) == 2
    moved = 0.0
    start = tiny_classifier(adamw(1e-2))
    for a, b, s in zip(accumulated.weights, full.weights, start.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=2e-5)
        moved = max(moved, float(np.max(np.abs(b.numpy() - s.numpy()))))
    assert moved > 1e-3  # the weights did change


def test_auto_precision_is_mixed_bfloat16_exactly_where_bfloat16_is_native():
    with open("/proc/cpuinfo") as f:
        native = any(flag in line for line in f if line.startswith("flags") for flag in (" avx512_bf16", " amx_bf16"))
    expected = "mixed_bfloat16" if native else "float32"
    assert keras_lm.training.fastest_precision() == expected
    assert keras_lm.training.resolve_precision("auto") == expected
    assert keras_lm.training.resolve_precision("float32") == "float32"
    assert keras_lm.training.resolve_precision(None) is None
    with pytest.raises(ValueError, match="Unknown precision 'fp8'"):
        keras_lm.training.resolve_precision("fp8")
