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


def test_auto_precision_on_this_machine_follows_its_cpu_flags_and_measured_matmul_speed():
    from keras_lm.training import devices as local

    with open("/proc/cpuinfo") as f:
        native = any(flag in line for line in f if line.startswith("flags") for flag in (" avx512_bf16", " amx_bf16"))
    speedup = local.bfloat16_matmul_speedup()
    assert speedup > 0 and local.bfloat16_matmul_speedup() == speedup  # measured once per process
    expected = "mixed_bfloat16" if native and speedup >= 1.2 else "float32"
    assert keras_lm.training.fastest_precision() == expected
    assert keras_lm.training.resolve_precision("auto") == expected
    assert keras_lm.training.resolve_precision("float32") == "float32"
    assert keras_lm.training.resolve_precision(None) is None
    with pytest.raises(ValueError, match="Unknown precision 'fp8'"):
        keras_lm.training.resolve_precision("fp8")


CPU_ONLY = ["/job:localhost/replica:0/task:0/device:CPU:0"]
WITH_GPUS = CPU_ONLY + ["/job:localhost/replica:0/task:0/device:GPU:0",
                        "/job:localhost/replica:0/task:0/device:GPU:1"]


def play_machine(monkeypatch, devices=CPU_ONLY, flags=(), capabilities=(), bfloat16_speedup=1.8):
    """Patch keras_lm's own device queries (not TensorFlow) to play another machine."""
    from keras_lm.training import devices as local

    monkeypatch.setattr(local, "logical_device_names",
                        lambda kind=None: [d for d in devices if kind is None or f"device:{kind}:" in d])
    monkeypatch.setattr(local, "cpu_flags", lambda: set(flags))
    monkeypatch.setattr(local, "bfloat16_matmul_speedup", lambda: bfloat16_speedup)
    monkeypatch.setattr(local, "gpu_compute_capabilities", lambda: list(capabilities))


@pytest.mark.parametrize("machine, expected_precision, expected_jit", [
    (dict(flags=("sse4_2", "avx2", "avx512f")), "float32", False),
    (dict(flags=("avx2", "avx512f", "avx512_bf16")), "mixed_bfloat16", False),
    (dict(flags=("avx2", "avx512f", "avx512_bf16"), bfloat16_speedup=0.56), "float32", False),
    (dict(flags=("avx2", "amx_tile", "amx_bf16")), "mixed_bfloat16", False),
    (dict(devices=WITH_GPUS, capabilities=[(7, 0), (7, 0)]), "float32", True),
    (dict(devices=WITH_GPUS, capabilities=[(8, 0), (7, 5)]), "float32", True),
    (dict(devices=WITH_GPUS, capabilities=[(8, 0), (9, 0)]), "mixed_bfloat16", True),
    (dict(devices=WITH_GPUS, capabilities=[(8, 6), (8, 6)], flags=("avx2",)), "mixed_bfloat16", True),
], ids=["cpu", "cpu-avx512bf16", "cpu-avx512bf16-slower-than-fp32", "cpu-amx", "gpu-volta", "gpu-mixed-old-new", "gpu-ampere-hopper",
        "gpu-ampere-on-plain-cpu"])
def test_precision_and_xla_per_device_branch_under_the_default_strategy(
    monkeypatch, machine, expected_precision, expected_jit
):
    play_machine(monkeypatch, **machine)
    assert keras_lm.training.fastest_precision() == expected_precision
    assert keras_lm.training.resolve_precision("auto") == expected_precision
    assert jit_compile_for() is expected_jit


def test_precision_and_xla_follow_the_strategy_devices_not_the_machine(monkeypatch):
    """A CPU strategy on a GPU machine uses the CPU's answer, and a GPU strategy the GPU's."""
    play_machine(monkeypatch, devices=WITH_GPUS, flags=("avx512_bf16",), capabilities=[(7, 0)])
    on_cpu = tf.distribute.OneDeviceStrategy("/cpu:0")
    on_gpu = tf.distribute.OneDeviceStrategy("/gpu:0")
    assert keras_lm.training.fastest_precision(on_cpu) == "mixed_bfloat16"
    assert keras_lm.training.fastest_precision(on_gpu) == "float32"  # Volta: no bf16 tensor cores
    assert (jit_compile_for(on_cpu), jit_compile_for(on_gpu)) == (False, True)
    play_machine(monkeypatch, devices=WITH_GPUS, flags=(), capabilities=[(8, 0)])
    assert keras_lm.training.fastest_precision(on_cpu) == "float32"
    assert keras_lm.training.fastest_precision(on_gpu) == "mixed_bfloat16"


def test_tpu_branch_is_mixed_bfloat16_with_xla(monkeypatch):
    from keras_lm.training import speed

    play_machine(monkeypatch, flags=(), capabilities=[(7, 0)])  # neither CPU nor GPU would say bf16
    monkeypatch.setattr(speed, "_device_types", lambda distribution: {"TPU", "CPU"})
    assert keras_lm.training.fastest_precision() == "mixed_bfloat16"
    assert keras_lm.training.resolve_precision("auto") == "mixed_bfloat16"
    assert jit_compile_for() is True


def test_device_queries_read_this_machine():
    from keras_lm.training import devices as local

    assert [local.short_name(name) for name in local.logical_device_names()] == ["CPU:0"]
    assert local.logical_device_names("GPU") == []  # no GPU here
    assert local.gpu_compute_capabilities() == []
    with open("/proc/cpuinfo") as f:
        flags = next(line for line in f if line.startswith("flags")).split(":", 1)[1].split()
    assert local.cpu_flags() == set(flags) and "fpu" in flags
