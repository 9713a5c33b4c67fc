"""What this machine has: local devices, GPU compute capabilities and CPU flags.

The strategy and precision choices ask only these small functions, so a test can patch them to
play a GPU, a TPU or a CPU with or without native bfloat16.
"""
from __future__ import annotations

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


def short_name(device: str) -> str:
    """``/job:localhost/replica:0/task:0/device:GPU:1`` -> ``GPU:1``."""
    spec = tf.DeviceSpec.from_string(device)
    return f"{(spec.device_type or '?').upper()}:{spec.device_index if spec.device_index is not None else '*'}"
