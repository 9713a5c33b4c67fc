"""Speed paths: an explicit XLA choice per strategy and device, and mixed precision by name.

XLA (``jit_compile``) on CPU is slower for BERT training here, and ``MirroredStrategy`` with
``jit_compile=True`` over several CPU devices crashes ("resource ... located in device CPU:1 from
CPU:0"), so ``jit_compile_for`` returns False on CPU and True on GPU and TPU.

Measured here (2-core AVX-512 CPU shared with other jobs, TF 2.21 / Keras 3.15): ``BertPretrainer``
on ``Bert("mini")`` (L4/H256/A4), vocab 1000, seq 128, batch 16, MLM + NSP on a fixed in-memory
batch, 3 warm-up steps then three timed ``fit`` calls of 30 steps; best of the three::

    float32          jit_compile=False  3890 tokens/s   jit_compile=True  3000 tokens/s
    mixed_bfloat16   jit_compile=False  6080 tokens/s   jit_compile=True  3000 tokens/s

The machine was loaded (load average 2-6 on 2 cores), so the absolute figures are noisy, but XLA
was never faster than the default path in any run; DESIGN.md's quiet-machine Model Garden figures
agree (XLA on CPU 1734 vs 2376 tokens/s in float32, 1961 vs 3490 in bf16).
"""
from __future__ import annotations

import keras
import tensorflow as tf

from keras_lm.training import devices as local

XLA_CPU_MEASUREMENT = {
    "config": "Bert('mini') BertPretrainer, vocab 1000, seq 128, batch 16, 2 shared CPU cores",
    "tokens_per_second_best_of_3": {
        ("float32", False): 3890,
        ("float32", True): 3000,
        ("mixed_bfloat16", False): 6080,
        ("mixed_bfloat16", True): 3000,
    },
}

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16", "bfloat16", "float16")


def _device_types(distribution: tf.distribute.Strategy | None) -> set[str]:
    if distribution is None:
        distribution = tf.distribute.get_strategy()
    try:
        devices = distribution.extended.worker_devices
    except RuntimeError:  # the default strategy has no device list
        devices = ()
    types = {tf.DeviceSpec.from_string(device).device_type or "CPU" for device in devices}
    if isinstance(distribution, tf.distribute.TPUStrategy):
        types.add("TPU")
    if not types:  # the default strategy: whatever TF places ops on
        types = {"GPU"} if local.logical_device_names("GPU") else {"CPU"}
    return {t.upper() for t in types}


def jit_compile_for(distribution: tf.distribute.Strategy | None = None) -> bool:
    """The ``jit_compile`` value for ``Model.compile`` under ``distribution``.

    True on TPU (XLA is how TPUs run) and on GPU; False whenever a replica is on a CPU: XLA is
    measured slower there for BERT training (see the module docstring), and
    ``MirroredStrategy`` + XLA over several CPU devices fails. ``None`` means the current
    strategy (the default one outside any ``scope()``).

    Example:
        >>> import tensorflow as tf
        >>> jit_compile_for(tf.distribute.OneDeviceStrategy("/cpu:0"))
        False
    """
    types = _device_types(distribution)
    if "TPU" in types:
        return True
    return "CPU" not in types and "GPU" in types


def precision(policy: str | keras.DTypePolicy = "mixed_bfloat16") -> keras.DTypePolicy:
    """Sets Keras' global dtype policy, e.g. ``"mixed_bfloat16"``, and returns it.

    Under ``mixed_bfloat16`` layers compute in bfloat16 and keep float32 variables; keras_lm's
    attention softmax, logits and losses stay float32. Models built afterwards use the policy
    (pass ``dtype=`` to a constructor to choose per model). ``"mixed_float16"`` also works:
    ``compile`` then wraps the optimizer in a ``LossScaleOptimizer``. Set ``"float32"`` to go back.

    Example:
        >>> import keras
        >>> precision("mixed_bfloat16").compute_dtype
        'bfloat16'
        >>> precision("float32").name
        'float32'
    """
    name = policy.name if isinstance(policy, keras.DTypePolicy) else policy
    if name not in PRECISIONS:
        raise ValueError(f"Unknown precision {policy!r}; choose one of {', '.join(PRECISIONS)}.")
    keras.config.set_dtype_policy(name)
    return keras.config.dtype_policy()


#: mixed_bfloat16 is chosen on a CPU only when its bfloat16 matmuls are at least this much faster.
CPU_BFLOAT16_MIN_SPEEDUP = 1.2


def _cpu_has_fast_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX-BF16; Linux flags) AND faster
    than float32 (measured: the flag alone is not enough, see ``fastest_precision``)."""
    if not {"avx512_bf16", "amx_bf16"} & local.cpu_flags():
        return False
    return local.bfloat16_matmul_speedup() >= CPU_BFLOAT16_MIN_SPEEDUP


def _gpus_have_fast_bfloat16() -> bool:
    """Whether every GPU has bfloat16 tensor cores (compute capability 8.0+, Ampere on)."""
    capabilities = local.gpu_compute_capabilities()
    return bool(capabilities) and all(tuple(c) >= (8, 0) for c in capabilities)


def fastest_precision(distribution: tf.distribute.Strategy | None = None) -> str:
    """The dtype policy name that trains fastest and correctly on the devices of ``distribution``.

    ``"mixed_bfloat16"`` on TPUs, on GPUs with bfloat16 tensor cores (compute capability 8.0+) and on
    CPUs with AVX512-BF16 or AMX whose bfloat16 matmuls measure at least 1.2x faster than float32
    ones (``devices.bfloat16_matmul_speedup``, once per process); ``"float32"`` elsewhere.
    The CPU flag is not enough: masked-LM training (``scripts/bench``, BERT L4/H512/A8, seq 128,
    batch 32, interleaved rounds) ran 2,369 vs 1,571 tokens/s in mixed_bfloat16 vs float32 on a 2-core
    AMD EPYC with AVX512-BF16, but 1,419 vs 2,126 on a 2-core Intel Xeon with AVX512-BF16 and no AMX
    (its bfloat16 matmul peak, 178 GFLOP/s, is below its float32 one, 316). Losses, softmax and logits
    stay float32 either way.

    Example:
        >>> fastest_precision() in ("mixed_bfloat16", "float32")
        True
    """
    types = _device_types(distribution)
    if "TPU" in types:
        return "mixed_bfloat16"
    if "GPU" in types:
        return "mixed_bfloat16" if _gpus_have_fast_bfloat16() else "float32"
    return "mixed_bfloat16" if _cpu_has_fast_bfloat16() else "float32"


def resolve_precision(name: str | None, distribution: tf.distribute.Strategy | None = None) -> str | None:
    """``"auto"`` -> ``fastest_precision(distribution)``; a policy name is checked; None stays None."""
    if name is None:
        return None
    if name == "auto":
        return fastest_precision(distribution)
    if name not in PRECISIONS:
        raise ValueError(f"Unknown precision {name!r}; choose 'auto' or one of {', '.join(PRECISIONS)}.")
    return name
