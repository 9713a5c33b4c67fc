"""Throughput callback: figures in batch logs and History, FLOP estimate, TensorBoard when present."""
import importlib.util

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


def test_throughput_rejects_bad_sizes():
    with pytest.raises(ValueError, match="must be positive"):
        Throughput(batch_size=0, sequence_length=128)
