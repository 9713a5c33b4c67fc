"""What this machine has: local devices, GPU compute capabilities and CPU flags.

The strategy and precision choices ask only these small functions, so a test can patch them to
play a GPU, a TPU or a CPU with or without native bfloat16.
"""
from __future__ import annotations

import functools
import time

import tensorflow as tf


def logical_device_names(device_type: str | None = None) -> list[str]:
    """Names of this process's logical devices (of ``device_type`` only, when given), e.g. ``/device:CPU:0``."""
    return [device.name for device in tf.config.list_logical_devices(device_type)]


def gpu_compute_capabilities() -> list[tuple[int, int]]:
    """The CUDA compute capability of each physical GPU, e.g. ``[(8, 0)]``; ``(0, 0)`` when unknown."""
    return [
        tuple(tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0)))
        for gpu in tf.config.list_physical_devices("GPU")
    ]


def cpu_flags() -> set[str]:
    """The CPU feature flags (``/proc/cpuinfo`` on Linux, e.g. ``avx512_bf16``); empty elsewhere."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            line = next((line for line in cpuinfo if line.startswith("flags")), "")
    except OSError:
        return set()
    return set(line.split(":", 1)[1].split()) if ":" in line else set()


@functools.lru_cache(maxsize=None)
def bfloat16_matmul_speedup(size: int = 1024, rounds: int = 3) -> float:
    """How many times faster this CPU multiplies bfloat16 than float32 matrices (measured once per process).

    ``size``-square matmuls, the two dtypes timed in interleaved rounds, best round of each (a busy
    machine only slows rounds down, so the ratio holds under load). About half a second.
    """
    with tf.device("/cpu:0"):
        a = tf.random.stateless_normal((size, size), seed=(1, 2))
        operands = {dtype: (tf.cast(a, dtype), tf.cast(tf.transpose(a), dtype)) for dtype in (tf.float32, tf.bfloat16)}
        matmul = tf.function(lambda x, y: tf.reduce_sum(tf.cast(tf.matmul(x, y)[:1, :1], tf.float32)))
        best = {}
        for dtype, (x, y) in operands.items():
            matmul(x, y).numpy()  # trace and warm up
            best[dtype] = float("inf")
        for _ in range(rounds):
            for dtype, (x, y) in operands.items():
                start = time.perf_counter()
                for _ in range(4):
                    matmul(x, y).numpy()
                best[dtype] = min(best[dtype], time.perf_counter() - start)
    return best[tf.float32] / best[tf.bfloat16]


def short_name(device: str) -> str:
    """``/job:localhost/replica:0/task:0/device:GPU:1`` -> ``GPU:1``."""
    spec = tf.DeviceSpec.from_string(device)
    return f"{(spec.device_type or '?').upper()}:{spec.device_index if spec.device_index is not None else '*'}"
