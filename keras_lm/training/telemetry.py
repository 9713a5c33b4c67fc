"""Throughput telemetry: tokens/s, examples/s and achieved model FLOP/s in Keras logs."""
from __future__ import annotations

import time

import keras


def training_flops_per_token(backbone: keras.Model, sequence_length: int) -> float:
    """Model FLOPs to train on one token: ``6 x parameters + 12 x layers x length x width``.

    ``6 x N`` counts the forward (2 FLOPs per weight per token) and backward (4) matmuls over the
    backbone's non-embedding weights; ``12 x L x T x H`` adds the attention scores and weighted
    values (``QK^T`` and ``AV``, forward and backward). Embedding lookups are not matmuls and are
    left out; so are the task heads (small next to the backbone, except an MLM output layer,
    which runs on the masked positions only).

    Example:
        >>> import keras_lm
        >>> bert = keras_lm.applications.Bert("tiny", vocabulary_size=1000)
        >>> int(training_flops_per_token(bert, sequence_length=128))
        2873088
    """
    embedding_names = ("token_embedding", "position_embedding", "segment_embedding")
    embedding_weights = sum(
        int(weight.numpy().size)
        for name in embedding_names
        if _has_layer(backbone, name)
        for weight in backbone.get_layer(name).weights
    )
    parameters = backbone.count_params() - embedding_weights
    layers = int(getattr(backbone, "num_layers", 0))
    width = int(getattr(backbone, "hidden_dim", 0))
    return 6.0 * parameters + 12.0 * layers * int(sequence_length) * width


def _has_layer(model, name) -> bool:
    try:
        model.get_layer(name)
    except ValueError:
        return False
    return True


class Throughput(keras.callbacks.Callback):
    """Logs ``tokens_per_second``, ``examples_per_second`` and ``model_flops_per_second``.

    The figures go into the ``logs`` of every batch (the progress bar shows them) and of every
    epoch (``History`` keeps them). Batch figures time the step just finished; epoch figures
    cover the epoch without its first step (which includes tracing). With ``log_dir`` and
    ``tensorboard`` installed, epoch figures are also written as TensorBoard scalars (skipped
    when tensorboard is not installed).

    Args:
        batch_size: examples per step (the global batch under a distribution strategy).
        sequence_length: tokens per example.
        flops_per_token: training FLOPs per token; default from ``backbone`` (see
            ``training_flops_per_token``), else FLOP/s are not logged.
        backbone: an encoder whose config gives ``flops_per_token``.
        log_dir: TensorBoard directory (optional).

    Example:
        >>> import keras_lm
        >>> bert = keras_lm.applications.Bert("tiny", vocabulary_size=1000)
        >>> callback = Throughput(batch_size=32, sequence_length=128, backbone=bert)
        >>> callback.tokens_per_step
        4096
    """

    def __init__(
        self,
        batch_size: int,
        sequence_length: int,
        flops_per_token: float | None = None,
        backbone: keras.Model | None = None,
        log_dir: str | None = None,
    ):
        super().__init__()
        if int(batch_size) < 1 or int(sequence_length) < 1:
            raise ValueError(
                f"batch_size and sequence_length must be positive, got {batch_size} and "
                f"{sequence_length}."
            )
        self.batch_size = int(batch_size)
        self.sequence_length = int(sequence_length)
        self.tokens_per_step = self.batch_size * self.sequence_length
        if flops_per_token is None and backbone is not None:
            flops_per_token = training_flops_per_token(backbone, sequence_length)
        self.flops_per_token = flops_per_token
        self.log_dir = log_dir
        self._writer = None
        self._batch_start = None
        self._epoch_seconds = 0.0
        self._epoch_steps = 0

    def _figures(self, steps: int, seconds: float) -> dict:
        if steps <= 0 or seconds <= 0:
            return {}
        tokens = steps * self.tokens_per_step / seconds
        figures = {
            "tokens_per_second": tokens,
            "examples_per_second": steps * self.batch_size / seconds,
        }
        if self.flops_per_token:
            figures["model_flops_per_second"] = tokens * self.flops_per_token
        return figures

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_seconds, self._epoch_steps, self._first = 0.0, 0, True

    def on_train_batch_begin(self, batch, logs=None):
        self._batch_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self._batch_start is None or logs is None:
            return
        # Reading a log value waits for the step to finish (TF dispatches steps asynchronously).
        for value in logs.values():
            getattr(value, "numpy", lambda: None)()
        seconds = time.perf_counter() - self._batch_start
        steps = getattr(self.model, "steps_per_execution", 1) or 1
        if not self._first:
            self._epoch_seconds += seconds
            self._epoch_steps += steps
        self._first = False
        logs.update(self._figures(steps, seconds))

    def on_epoch_end(self, epoch, logs=None):
        figures = self._figures(self._epoch_steps, self._epoch_seconds)
        if logs is not None:
            logs.update(figures)
        if figures and self.log_dir:
            self._write_tensorboard(epoch, figures)

    def _write_tensorboard(self, epoch: int, figures: dict) -> None:
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            return
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default():
            for name, value in figures.items():
                tf.summary.scalar(f"throughput/{name}", value, step=epoch)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
