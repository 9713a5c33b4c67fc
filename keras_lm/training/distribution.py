"""Distribution strategies by name, and the Keras 3 fixes that make ``fit`` work under all of them.

``strategy(name)`` returns a ``tf.distribute`` strategy; build and compile the model under
``with strategy.scope():`` and call ``fit`` as usual. Every strategy it returns has
``multi_worker_fit_fix`` installed (see ``enable_multi_worker_fit``): Keras 3.15's TensorFlow
trainer cannot ``fit`` under ``MultiWorkerMirroredStrategy`` (keras issue 20585) for two reasons,
both in ``keras/src/backend/tensorflow/trainer.py``:

1. ``_maybe_symbolic_build`` takes the first distributed batch and calls
   ``strategy.reduce("MEAN", batch, axis=None)`` on the whole nested structure just to learn its
   shapes. The collective strategy's ``reduce`` accepts one ``PerReplica`` only, so it tries to turn
   a tuple of ``PerReplica`` into a tensor and fails. It also consumes a batch and starts an extra
   pass over the dataset (a reshuffling dataset then moves to its next order).
2. ``reduce_per_replica`` (the step's logs) calls ``strategy.reduce("MEAN", v, axis=0)`` on each
   log value under a multi-worker strategy. Logs are scalars, so ``axis=0`` does not exist:
   ``Invalid reduction dimension 0 for input with 0 dimensions``. The intended reduction is the
   mean over replicas, ``axis=None``.

The fix builds the model from the dataset's ``element_spec`` (no data read, no communication) and
reduces multi-worker logs with ``axis=None``. It also turns the errors a worker gets when a peer dies
(``UnavailableError`` and friends from the collective ops) into one ``WorkerLostError``.
"""
from __future__ import annotations

import functools
import json
import os

import tensorflow as tf

from keras_lm.training import devices as local

STRATEGY_NAMES = ("auto", "one_device", "mirrored", "multi_worker", "tpu")

#: Seconds a collective op (gradient all-reduce) may wait for the other workers before failing.
DEFAULT_COLLECTIVE_TIMEOUT = 300.0

_PEER_ERRORS = (
    tf.errors.UnavailableError,
    tf.errors.DeadlineExceededError,
    tf.errors.AbortedError,
    tf.errors.CancelledError,
)


class WorkerLostError(RuntimeError):
    """A multi-worker ``fit`` stopped because another worker died or stopped answering."""


def strategy(
    name: str = "auto",
    devices: list[str] | None = None,
    collective_timeout: float | None = DEFAULT_COLLECTIVE_TIMEOUT,
    tpu: str | None = None,
) -> tf.distribute.Strategy:
    """A ``tf.distribute`` strategy by name.

    - ``"auto"``: ``"multi_worker"`` when ``TF_CONFIG`` names more than one task, ``"tpu"`` when
      ``tpu`` or the ``TPU_NAME`` environment variable is set, ``"mirrored"`` with two or more
      GPUs, else ``"one_device"``.
    - ``"one_device"``: ``OneDeviceStrategy`` on ``devices[0]``, else the first GPU, else the CPU.
    - ``"mirrored"``: ``MirroredStrategy`` over ``devices``, else every GPU, else every logical CPU.
      A device in ``devices`` that this machine does not have is an error (TensorFlow would
      quietly place the variables elsewhere).
    - ``"multi_worker"``: ``MultiWorkerMirroredStrategy`` configured from ``TF_CONFIG``; a collective
      op waits at most ``collective_timeout`` seconds for the other workers.
    - ``"tpu"``: ``TPUStrategy`` through ``TPUClusterResolver(tpu)``.

    Every strategy returned carries the fixes of ``enable_multi_worker_fit``.

    Example:
        >>> import keras, keras_lm
        >>> one = keras_lm.training.strategy("one_device")
        >>> with one.scope():
        ...     encoder = keras_lm.applications.Bert("tiny", vocabulary_size=100)
        >>> one.num_replicas_in_sync
        1
    """
    if name not in STRATEGY_NAMES:
        raise ValueError(f"Unknown strategy {name!r}; choose one of {', '.join(STRATEGY_NAMES)}.")
    devices = _check_devices(name, devices)
    enable_multi_worker_fit()
    if name == "auto":
        name = _auto_name(tpu)
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(devices[0] if devices else _default_device())
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices or _local_devices())
    if devices:
        raise ValueError(
            f"strategy({name!r}) takes its devices from the cluster, not `devices`; pass devices "
            "only to 'one_device' or 'mirrored'."
        )
    if name == "multi_worker":
        return _multi_worker(collective_timeout)
    return _tpu(tpu)


def _check_devices(name: str, devices) -> list[str] | None:
    """``devices`` as a list of names of devices this machine has; a clear error otherwise."""
    if devices is None:
        return None
    if isinstance(devices, (str, bytes)) or not all(isinstance(d, str) for d in devices):
        raise TypeError(f"`devices` must be a list of device names such as ['/gpu:0'], got {devices!r}.")
    devices = list(devices)
    if not devices:
        raise ValueError("`devices` is an empty list; pass device names such as ['/gpu:0'], or None.")
    available = local.logical_device_names()
    for device in devices:
        if not _device_exists(device, available):
            names = ", ".join(local.short_name(d) for d in available)
            raise ValueError(
                f"strategy({name!r}): device {device!r} does not exist on this machine; its devices "
                f"are {names}. Pass some of these, or devices=None for the default."
            )
    return devices


def _device_exists(device: str, available: list[str]) -> bool:
    try:
        wanted = tf.DeviceSpec.from_string(device)
    except ValueError:
        return False
    if wanted.job not in (None, "localhost"):
        return True  # another task's device: only that task can tell
    if wanted.device_type is None:
        return False
    for name in available:
        spec = tf.DeviceSpec.from_string(name)
        same_type = spec.device_type.upper() == wanted.device_type.upper()
        if same_type and wanted.device_index in (None, spec.device_index):
            return True
    return False


def _auto_name(tpu: str | None) -> str:
    if _tf_config_task_count() > 1:
        return "multi_worker"
    if tpu or os.environ.get("TPU_NAME"):
        return "tpu"
    return "mirrored" if len(local.logical_device_names("GPU")) > 1 else "one_device"


def _default_device() -> str:
    gpus = local.logical_device_names("GPU")
    return gpus[0] if gpus else "/cpu:0"


def _local_devices() -> list[str]:
    return local.logical_device_names("GPU") or local.logical_device_names("CPU")


def _tf_config() -> dict:
    raw = os.environ.get("TF_CONFIG", "")
    if not raw:
        return {}
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON ({error}): {raw[:200]!r}") from None
    if not isinstance(config, dict):
        raise ValueError(f"TF_CONFIG must be a JSON object, got {raw[:200]!r}.")
    return config


def _tf_config_task_count() -> int:
    cluster = _tf_config().get("cluster", {})
    return sum(len(tasks) for tasks in cluster.values()) if isinstance(cluster, dict) else 0


def _multi_worker(collective_timeout: float | None) -> tf.distribute.Strategy:
    config = _tf_config()
    cluster, task = config.get("cluster"), config.get("task")
    if not cluster or not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ValueError(
            "strategy('multi_worker') needs TF_CONFIG describing the cluster and this task, e.g. "
            '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", '
            f'"index": 0}}; got TF_CONFIG={os.environ.get("TF_CONFIG", "")!r}.'
        )
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=collective_timeout)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def _tpu(tpu: str | None) -> tf.distribute.Strategy:
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as error:
        raise RuntimeError(
            f"No TPU found (TPUClusterResolver(tpu={tpu!r}) failed: {error}). Pass tpu='name or "
            "grpc://address', set TPU_NAME, or run on a TPU VM; use strategy('auto') to fall "
            "back to GPUs/CPU."
        ) from None
    return tf.distribute.TPUStrategy(resolver)


def is_multi_worker(distribution: tf.distribute.Strategy | None) -> bool:
    """True for a multi-worker collective strategy (more than one worker)."""
    extended = getattr(distribution, "extended", None)
    return bool(
        isinstance(distribution, tf.distribute.MultiWorkerMirroredStrategy)
        and getattr(extended, "_in_multi_worker_mode", lambda: False)()
    )


# --- Keras 3 fixes -------------------------------------------------------------------------


_INSTALLED = False


def enable_multi_worker_fit() -> None:
    """Makes Keras ``fit``/``evaluate``/``predict`` work under ``MultiWorkerMirroredStrategy``.

    Idempotent; ``strategy()`` calls it. Call it yourself when you create a
    ``tf.distribute.MultiWorkerMirroredStrategy`` directly. Single-device and mirrored training
    behave as before, except that the model is built from the dataset's ``element_spec``
    instead of a batch drawn from it.
    """
    global _INSTALLED
    if _INSTALLED:
        return
    from keras.src.backend.tensorflow import trainer as tf_trainer

    trainer_class = tf_trainer.TensorFlowTrainer
    trainer_class._maybe_symbolic_build = _maybe_symbolic_build
    original_reduce = tf_trainer.reduce_per_replica
    tf_trainer.reduce_per_replica = functools.partial(_reduce_per_replica, original_reduce)
    for method in ("fit", "evaluate", "predict"):
        setattr(trainer_class, method, _explain_lost_workers(getattr(trainer_class, method)))
    _INSTALLED = True


def _maybe_symbolic_build(self, iterator=None, data_batch=None):
    if self._distribute_strategy is None:
        return  # built lazily when the train function is traced, as in Keras
    if iterator is not None:
        data_batch = _symbolic_batch(iterator)
        if data_batch is None:  # not a plain nest of tensors: read the first local batch
            for _, _, batches in iterator:
                data_batch = _first_local_replica(self.distribute_strategy, next(batches))
                break
    with self.distribute_strategy.scope():
        self._symbolic_build(data_batch=data_batch)


def _symbolic_batch(iterator):
    """A nest of ``KerasTensor`` from the epoch iterator's dataset spec, or None."""
    import keras

    try:
        spec = iterator.data_adapter.get_tf_dataset().element_spec
    except Exception:  # noqa: BLE001 - any adapter without a tf.data view falls back
        return None
    leaves = tf.nest.flatten(spec)
    if not all(isinstance(leaf, tf.TensorSpec) and leaf.shape.rank is not None for leaf in leaves):
        return None
    return tf.nest.map_structure(
        lambda leaf: keras.KerasTensor(tuple(leaf.shape), leaf.dtype.name), spec
    )


def _first_local_replica(distribution, batch):
    def first(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return distribution.experimental_local_results(value)[0]
        return value

    return tf.nest.map_structure(first, batch)


def _reduce_per_replica(original, values, strategy, reduction="auto"):
    if reduction in ("auto", "mean") and is_multi_worker(strategy):
        return tf.nest.map_structure(lambda value: strategy.reduce("MEAN", value, axis=None), values)
    return original(values, strategy, reduction)


def _explain_lost_workers(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except _PEER_ERRORS as error:
            if not is_multi_worker(self._distribute_strategy):
                raise
            raise WorkerLostError(_lost_worker_message(method.__name__, error)) from None

    wrapper._keras_lm_wrapped = True
    return wrapper


def _lost_worker_message(method_name: str, error: Exception) -> str:
    lines = [line.strip() for line in str(error.message).splitlines() if line.strip()]
    detail = next((line for line in lines if "unhealthy" in line or "task" in line), None)
    detail = detail or (lines[0] if lines else type(error).__name__)
    return (
        f"Multi-worker {method_name}() stopped: another worker died or stopped answering "
        f"({type(error).__name__}: {detail}). Restart every worker; with "
        "keras_lm.training.resumable_fit (or keras.callbacks.BackupAndRestore) training resumes "
        "from the last checkpoint."
    )
