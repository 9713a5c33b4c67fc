"""Callback presets for fine-tuning: early stopping on a validation metric, best-checkpoint saving.

The optimizer presets are ``keras_lm.training.adamw`` (linear or cosine decay after warmup,
no decay on biases and norms); this module gives the callbacks that go with them.
"""
from __future__ import annotations

import os

import keras

CHECKPOINT_SUFFIXES = (".keras", ".weights.h5")


class MonitoredEarlyStopping(keras.callbacks.EarlyStopping):
    """``keras.callbacks.EarlyStopping`` that fails with one clear error when its metric is missing.

    Keras only warns and then never stops nor restores; a missing ``val_...`` metric nearly always
    means that ``fit`` got no ``validation_data``.
    """

    def get_monitor_value(self, logs):
        logs = logs or {}
        if self.monitor not in logs:
            hint = " (pass validation_data to fit)" if self.monitor.startswith("val_") else ""
            raise ValueError(f"Early stopping monitors '{self.monitor}', which fit did not report{hint}; "
                             f"reported: {', '.join(sorted(logs)) or 'nothing'}.")
        return logs[self.monitor]


def callbacks(
    monitor: str = "val_accuracy",
    patience: int = 2,
    checkpoint: str | None = None,
    restore_best_weights: bool = True,
    mode: str = "auto",
    min_delta: float = 0.0,
    start_from_epoch: int = 0,
    backup: str | None = None,
) -> list:
    """The callbacks of a fine-tuning run that keeps its best epoch by a validation metric.

    - ``MonitoredEarlyStopping``: stops after ``patience`` epochs without an improvement of
      ``monitor`` by more than ``min_delta`` and, with ``restore_best_weights``, leaves the model
      with the weights of its best epoch when training ends (stopped early or not);
    - with ``checkpoint`` (a ``.keras`` or ``.weights.h5`` path): ``keras.callbacks.ModelCheckpoint``
      saving the model only when ``monitor`` improves, so the file holds the best epoch;
    - with ``backup`` (a folder): ``keras.callbacks.BackupAndRestore``, so that an interrupted run
      resumes where it stopped.

    ``mode`` is "max", "min" or "auto" (Keras: "max" for accuracies, "min" for losses).

    Example:
        >>> [type(c).__name__ for c in callbacks("val_accuracy", patience=1, checkpoint="best.keras")]
        ['MonitoredEarlyStopping', 'ModelCheckpoint']
    """
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"`mode` must be 'auto', 'min' or 'max', got {mode!r}.")
    if int(patience) != patience or patience < 0:
        raise ValueError(f"`patience` must be a whole number of epochs (0 or more), got {patience}.")
    result = [
        MonitoredEarlyStopping(monitor=monitor, patience=int(patience), mode=mode, min_delta=min_delta,
                               restore_best_weights=restore_best_weights, start_from_epoch=start_from_epoch)
    ]
    if checkpoint is not None:
        if not str(checkpoint).endswith(CHECKPOINT_SUFFIXES):
            raise ValueError(f"`checkpoint` must end in .keras (the whole model) or .weights.h5 (weights only), "
                             f"got '{checkpoint}'.")
        directory = os.path.dirname(os.path.abspath(checkpoint))
        os.makedirs(directory, exist_ok=True)
        result.append(keras.callbacks.ModelCheckpoint(
            checkpoint, monitor=monitor, mode=mode, save_best_only=True,
            save_weights_only=str(checkpoint).endswith(".weights.h5"),
        ))
    if backup is not None:
        result.append(keras.callbacks.BackupAndRestore(backup))
    return result
