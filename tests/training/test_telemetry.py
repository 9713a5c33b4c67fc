"""Throughput callback: figures in batch logs and History, FLOP estimate, TensorBoard when present."""
import importlib.util
import time

import keras
import numpy as np
import pytest

import keras_lm
from keras_lm.training import Throughput, training_flops_per_token


def test_flops_per_token_counts_non_embedding_weights_and_attention():
    bert = keras_lm.applications.Bert("tiny", vocabulary_size=1000)
    # tiny: 2 blocks of H=128, I=512; non-embedding weights = blocks + embedding LayerNorm + pooler
    block = 4 * (128 * 128 + 128) + (128 * 512 + 512 + 512 * 128 + 128) + 2 * 2 * 128
    parameters = 2 * block + 2 * 128 + (128 * 128 + 128)
    expected = 6 * parameters + 12 * 2 * 128 * 128
    assert training_flops_per_token(bert, sequence_length=128) == expected


class BatchLogs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.logs = []

    def on_train_batch_end(self, batch, logs=None):
        self.logs.append(dict(logs))


def test_throughput_figures_reach_batch_logs_and_history(tmp_path):
    bert = keras_lm.applications.Bert(
        None, vocabulary_size=30, num_layers=1, hidden_dim=16, num_heads=2, max_sequence_length=8
    )
    model = keras_lm.tasks.Classifier(bert, num_classes=2)
    model.compile(optimizer="adam")
    token_ids = np.random.RandomState(0).randint(4, 30, (32, 8)).astype("int32")
    x = {"token_ids": token_ids, "segment_ids": np.zeros_like(token_ids),
         "padding_mask": np.ones_like(token_ids)}
    throughput = Throughput(batch_size=8, sequence_length=8, backbone=bert, log_dir=str(tmp_path))
    seen = BatchLogs()
    history = model.fit(x, token_ids[:, 0] % 2, batch_size=8, epochs=2, verbose=0,
                        callbacks=[throughput, seen])
    names = ("tokens_per_second", "examples_per_second", "model_flops_per_second")
    for logs in seen.logs:
        assert all(logs[name] > 0 for name in names)
        np.testing.assert_allclose(logs["tokens_per_second"], 8 * logs["examples_per_second"])
        np.testing.assert_allclose(logs["model_flops_per_second"],
                                   logs["tokens_per_second"] * throughput.flops_per_token)
    assert all(len(history.history[name]) == 2 for name in names)
    if importlib.util.find_spec("tensorboard"):
        assert any(tmp_path.iterdir())  # event files
    else:
        assert not any(tmp_path.iterdir())


class Pause(keras.callbacks.Callback):
    """Makes every step last at least ``seconds`` (a pause inside the interval Throughput times)."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds

    def on_train_batch_begin(self, batch, logs=None):
        time.sleep(self.seconds)


@pytest.mark.parametrize("steps_per_execution", [1, 3])
def test_throughput_agrees_with_an_independent_timer_and_token_count(steps_per_execution):
    """Tokens/s implies a training time that must lie between the pauses it contains and the
    wall time of ``fit`` (time.perf_counter around it); tokens are counted from the data."""
    batch, length, steps, pause = 4, 12, 12, 0.04
    bert = keras_lm.applications.Bert(
        None, vocabulary_size=30, num_layers=1, hidden_dim=16, num_heads=2, max_sequence_length=length
    )
    model = keras_lm.tasks.Classifier(bert, num_classes=2)
    model.compile(optimizer="adam", steps_per_execution=steps_per_execution)
    token_ids = np.random.RandomState(0).randint(4, 30, (batch * steps, length)).astype("int32")
    x = {"token_ids": token_ids, "segment_ids": np.zeros_like(token_ids),
         "padding_mask": np.ones_like(token_ids)}
    y = token_ids[:, 0] % 2
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)  # trace outside the timed fit

    throughput = Throughput(batch_size=batch, sequence_length=length, backbone=bert)
    seen = BatchLogs()
    start = time.perf_counter()
    history = model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False,
                        callbacks=[throughput, Pause(pause), seen])
    wall = time.perf_counter() - start

    calls = steps // steps_per_execution
    assert len(seen.logs) == calls
    tokens_per_call = int(token_ids[:batch * steps_per_execution].size)  # counted from the data
    batch_seconds = [tokens_per_call / logs["tokens_per_second"] for logs in seen.logs]
    assert all(seconds >= pause for seconds in batch_seconds)  # each call holds one pause
    assert sum(batch_seconds) <= wall  # the timed calls lie inside fit
    np.testing.assert_allclose(
        batch_seconds, [batch * steps_per_execution / logs["examples_per_second"] for logs in seen.logs],
        rtol=1e-6,
    )
    # The epoch figure leaves out the first call: (calls - 1) calls of tokens_per_call tokens.
    epoch_seconds = (calls - 1) * tokens_per_call / history.history["tokens_per_second"][0]
    assert (calls - 1) * pause <= epoch_seconds <= wall - batch_seconds[0]
    np.testing.assert_allclose(epoch_seconds, sum(batch_seconds[1:]), rtol=1e-6)
    assert history.history["model_flops_per_second"][0] == pytest.approx(
        history.history["tokens_per_second"][0] * training_flops_per_token(bert, length)
    )


def test_throughput_rejects_bad_sizes():
    with pytest.raises(ValueError, match="must be positive"):
        Throughput(batch_size=0, sequence_length=128)
