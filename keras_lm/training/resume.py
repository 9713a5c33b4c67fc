"""Training that survives ``kill -9``: step-level backups plus a data stream that resumes in place.

``resumable_fit`` runs ``model.fit`` on ``dataset.repeat()`` — one stream over every epoch —
with ``StepBackup`` (a ``keras.callbacks.BackupAndRestore``) saving weights, optimizer state and
random-generator state every ``save_every`` steps. After a crash, the same call with the same
(deterministically seeded) dataset restores the last backup and skips the batches already trained
on, so at most ``save_every`` steps are repeated and, with deterministic ops, the final weights
equal those of an uninterrupted run. keras_lm's pretraining datasets are deterministic given a
seed (a reshuffling dataset's k-th pass is the same in every process), which is what makes
``dataset.repeat().skip(steps_done)`` the exact continuation. Skipping still computes the skipped
batches in the input pipeline (not in the model), which is cheap next to a training step.

A backup is written atomically: a new ``step-N.weights.h5`` file first, then the metadata file
``training_metadata.json`` that points to it (replaced in one rename), then the old weights file is
removed, so a kill at any moment leaves a consistent backup. A corrupted or truncated backup, or
metadata with a bad field (a negative or non-integer step, a missing key, a step beyond the
planned steps), raises ``CheckpointError`` naming the file and the field before anything is
restored, trained or removed: the backup is left as it is.
"""
from __future__ import annotations

import json
import os

import keras
import numpy as np
import tensorflow as tf

from keras_lm.values import is_integer

METADATA_FILE = "training_metadata.json"


class CheckpointError(RuntimeError):
    """A training backup cannot be read (corrupted, truncated or inconsistent)."""


class StepBackup(keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` with atomic step-level backups and the step to resume from.

    After ``on_train_begin`` has restored a backup, ``restored_step`` holds the number of
    optimizer steps (batches) already trained; ``resumable_fit`` uses it to skip data.

    Args:
        backup_dir: directory of the backup (created when needed).
        save_every: steps between backups.
        delete_checkpoint: remove the backup when ``fit`` ends (``resumable_fit`` manages this
            itself and passes False).

    Example:
        >>> backup = StepBackup("backups/run1", save_every=100)
        >>> backup.save_freq
        100
    """

    def __init__(self, backup_dir: str, save_every: int = 100, delete_checkpoint: bool = True):
        if not isinstance(save_every, int) or save_every < 1:
            raise ValueError(f"`save_every` must be a positive number of steps, got {save_every!r}.")
        super().__init__(backup_dir, save_freq=save_every, delete_checkpoint=delete_checkpoint)
        self.save_every = save_every
        self.global_step = 0
        self.restored_step = 0
        self._restore_attempted = False
        self._metadata = os.path.join(backup_dir, METADATA_FILE)

    # --- restore ---

    def read_metadata(self) -> dict | None:
        """The metadata of the latest backup, checked field by field; None when there is none."""
        if not os.path.exists(self._metadata):
            return None
        try:
            with open(self._metadata) as file:
                metadata = json.load(file)
        except (OSError, ValueError) as error:
            raise CheckpointError(
                f"The training backup metadata '{self._metadata}' is corrupted ({error}); delete "
                f"'{self.backup_dir}' to start training over."
            ) from None
        problem = _metadata_problem(metadata)
        if problem:
            raise CheckpointError(
                f"The training backup metadata '{self._metadata}' is corrupted: {problem}; delete "
                f"'{self.backup_dir}' to start training over."
            )
        return metadata

    def on_train_begin(self, logs=None):
        """Restores the latest backup, once per callback (later ``fit`` calls continue)."""
        if self._restore_attempted:
            return
        self._restore_attempted = True
        metadata = self.read_metadata()
        if metadata is None:
            return
        if not self.model.built:
            raise ValueError("StepBackup needs a built model: call it on a batch before fit().")
        path = os.path.join(self.backup_dir, metadata["weights"])
        if not os.path.exists(path):
            raise CheckpointError(
                f"The training backup '{self._metadata}' points to '{path}', which does not exist; "
                f"delete '{self.backup_dir}' to start training over."
            )
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        try:
            self.model.load_weights(path)
        except Exception as error:  # noqa: BLE001 - h5py/Keras raise many types for a bad file
            raise CheckpointError(
                f"The training backup '{path}' is corrupted or truncated and cannot be loaded "
                f"({type(error).__name__}: {str(error)[:300]}); delete '{self.backup_dir}' to "
                "start training over."
            ) from None
        _set_seed_states(self.model, metadata.get("seed_states", []), self._metadata)
        self.global_step = self.restored_step = int(metadata["global_step"])

    # --- save ---

    def on_train_batch_end(self, batch, logs=None):
        self.global_step += 1
        if self.global_step % self.save_every == 0:
            self._save_model()

    def on_epoch_end(self, epoch, logs=None):
        pass  # step-level backups only; the step count says where each epoch ends

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        previous = self.read_metadata()
        name = f"step-{self.global_step}.weights.h5"
        path = os.path.join(self.backup_dir, name)
        self.model.save_weights(path, overwrite=True)
        temporary = self._metadata + ".tmp"
        with open(temporary, "w") as file:
            metadata = {
                "global_step": self.global_step,
                "weights": name,
                "seed_states": [state.tolist() for state in _seed_states(self.model)],
            }
            json.dump(metadata, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self._metadata)
        if previous is not None and previous["weights"] != name:
            old = os.path.join(self.backup_dir, previous["weights"])
            if os.path.exists(old):
                os.remove(old)

    def on_train_end(self, logs=None):
        if self.delete_checkpoint:
            delete_backup(self.backup_dir)


def _metadata_problem(metadata) -> str | None:
    """What is wrong with a backup's metadata (a JSON object written by ``StepBackup``), or None."""
    if not isinstance(metadata, dict):
        return f"expected a JSON object, got {type(metadata).__name__}"
    missing = [key for key in ("global_step", "weights") if key not in metadata]
    if missing:
        return f"missing {', '.join(repr(key) for key in missing)}"
    step = metadata["global_step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        return f"'global_step' is {step!r}, not a number of steps (an integer >= 0)"
    weights = metadata["weights"]
    if (
        not isinstance(weights, str)
        or os.path.basename(weights) != weights
        or weights in ("", ".", "..")
        or not weights.endswith(".weights.h5")
    ):
        return f"'weights' is {weights!r}, not the name of a '.weights.h5' file in the backup folder"
    states = metadata.get("seed_states", [])
    if not isinstance(states, list) or not all(_is_int_list(state) for state in states):
        return "'seed_states' is not a list of lists of integers"
    return None


def _is_int_list(values) -> bool:
    return isinstance(values, list) and all(is_integer(value) for value in values)


def _seed_variables(model) -> list:
    """The state variables of the model's random generators (dropout), in a fixed order.

    ``save_weights`` leaves them out, so a resumed run would draw other dropout masks."""
    return [v for v in model.non_trainable_variables if v.path.endswith("seed_generator_state")]


def _seed_states(model) -> list:
    return [np.asarray(variable.numpy()) for variable in _seed_variables(model)]


def _set_seed_states(model, states: list, source: str) -> None:
    variables = _seed_variables(model)
    if len(states) != len(variables):
        raise CheckpointError(
            f"The training backup '{source}' holds {len(states)} random-generator states but the "
            f"model has {len(variables)}: it was written by a different model."
        )
    for variable, state in zip(variables, states):
        variable.assign(np.asarray(state, dtype=variable.dtype))


def delete_backup(backup_dir: str) -> None:
    """Removes a backup directory written by ``StepBackup`` (nothing else)."""
    if not os.path.isdir(backup_dir):
        return
    for name in os.listdir(backup_dir):
        if name.startswith(METADATA_FILE) or (name.startswith("step-") and ".weights.h5" in name):
            os.remove(os.path.join(backup_dir, name))
    if not os.listdir(backup_dir):
        os.rmdir(backup_dir)


def resumable_fit(
    model: keras.Model,
    dataset: tf.data.Dataset,
    backup_dir: str,
    epochs: int = 1,
    steps_per_epoch: int | None = None,
    save_every: int = 100,
    callbacks: list | None = None,
    keep_backup: bool = False,
    **fit_kwargs,
) -> keras.callbacks.History:
    """``model.fit`` that resumes where a killed run left off.

    Call it again with the same arguments after a crash: it restores the last backup in
    ``backup_dir`` (weights, optimizer, dropout generator state), skips the batches already
    trained on and trains the remaining ``epochs * steps_per_epoch - steps_done`` steps. When
    training finishes the backup is removed (unless ``keep_backup``), so a new call starts over.

    Args:
        model: a compiled, built model (keras_lm pretrainers and tasks are built at construction).
        dataset: one epoch of batches, deterministic given its seed (e.g.
            ``BertPretrainer.dataset(corpus, preprocessor, seed=0)``); it is repeated here.
        backup_dir: where backups go (one per worker task under multi-worker training).
        epochs: number of epochs.
        steps_per_epoch: batches per epoch; required when ``dataset``'s length is unknown.
        save_every: steps between backups: at most this many steps are redone after a crash.
        callbacks: more Keras callbacks.
        keep_backup: keep the last backup when training finishes.
        **fit_kwargs: passed to ``fit`` (``verbose``, ``validation_data``, ...).

    Returns:
        the ``History`` of the steps run by this call (the resumed part only).

    Example:
        >>> import keras, numpy as np, tensorflow as tf
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> model.compile("sgd", "mse")
        >>> data = tf.data.Dataset.from_tensor_slices((np.ones((8, 2)), np.ones((8, 1)))).batch(4)
        >>> history = resumable_fit(model, data, "doctest_backup", epochs=2,
        ...                         save_every=1, verbose=0)
        >>> len(history.history["loss"])
        2
    """
    if not isinstance(dataset, tf.data.Dataset):
        raise TypeError(f"resumable_fit needs a tf.data.Dataset, got {type(dataset).__name__}.")
    if not _is_positive_integer(epochs):
        raise ValueError(f"`epochs` must be a positive integer, got {epochs!r}.")
    steps_per_epoch = _steps_per_epoch(dataset, steps_per_epoch)
    from keras_lm.training.distribution import is_multi_worker

    distribution = getattr(model, "distribute_strategy", None)
    if is_multi_worker(distribution):
        task = distribution.cluster_resolver.task_id
        backup_dir = os.path.join(backup_dir, f"worker-{task}")
    backup = StepBackup(backup_dir, save_every=save_every, delete_checkpoint=False)
    total = epochs * steps_per_epoch
    _check_backup_fits(backup, total, f"{epochs} epochs x {steps_per_epoch} steps")
    backup.set_model(model)
    backup.on_train_begin()  # restore now, to know how much data to skip
    done = backup.restored_step
    stream = dataset.repeat().skip(done)
    callbacks = [*(callbacks or []), backup]
    epoch, step_in_epoch = divmod(done, steps_per_epoch)
    history = None
    if step_in_epoch:  # finish the interrupted epoch first
        history = model.fit(
            stream, initial_epoch=epoch, epochs=epoch + 1,
            steps_per_epoch=steps_per_epoch - step_in_epoch, callbacks=callbacks, **fit_kwargs,
        )
        epoch += 1
        stream = dataset.repeat().skip(backup.global_step)
    if epoch < epochs:
        later = model.fit(
            stream, initial_epoch=epoch, epochs=epochs, steps_per_epoch=steps_per_epoch,
            callbacks=callbacks, **fit_kwargs,
        )
        history = _merge(history, later)
    if not keep_backup:
        delete_backup(backup_dir)
    return history or model.history


def _check_backup_fits(backup: StepBackup, total: int, plan: str) -> None:
    """A clear error, before anything is restored or removed, for a backup past the planned steps."""
    metadata = backup.read_metadata()
    if metadata is not None and metadata["global_step"] > total:
        path = os.path.join(backup.backup_dir, METADATA_FILE)
        raise CheckpointError(
            f"The training backup metadata '{path}' has 'global_step' {metadata['global_step']}, "
            f"beyond this run's {total} steps ({plan}); train for longer, or delete "
            f"'{backup.backup_dir}' to start over."
        )


def _is_positive_integer(value) -> bool:
    return is_integer(value) and value >= 1


def _steps_per_epoch(dataset: tf.data.Dataset, steps_per_epoch: int | None) -> int:
    if steps_per_epoch is not None:
        if not _is_positive_integer(steps_per_epoch):
            raise ValueError(f"`steps_per_epoch` must be a positive integer, got {steps_per_epoch!r}.")
        return int(steps_per_epoch)
    cardinality = int(dataset.cardinality())
    if cardinality == tf.data.INFINITE_CARDINALITY or cardinality < 0:
        raise ValueError(
            "resumable_fit needs `steps_per_epoch`: the dataset's length is unknown or infinite "
            "(pass one epoch of batches and its number of batches)."
        )
    if cardinality == 0:
        raise ValueError("The dataset is empty: it has no batch to train on.")
    return cardinality


def _merge(first, second):
    if first is None:
        return second
    for key, values in second.history.items():
        first.history.setdefault(key, []).extend(values)
    first.epoch.extend(second.epoch)
    return first
