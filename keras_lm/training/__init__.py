"""Training utilities: strategies, speed paths, resumable fit, telemetry, optimizer presets.

- ``strategy(name)``: a ``tf.distribute`` strategy ("auto", "one_device", "mirrored",
  "multi_worker", "tpu"), with Keras 3's multi-worker ``fit`` gap closed
  (``enable_multi_worker_fit``; a dead peer raises ``WorkerLostError``).
- ``jit_compile_for(strategy)``: the XLA choice per strategy and device;
  ``precision("mixed_bfloat16")``: the global Keras dtype policy; ``fastest_precision()``: the
  policy that trains fastest on this hardware (what ``mixed_precision="auto"`` picks).
- ``resumable_fit`` / ``StepBackup``: step-level backups and data that resume after ``kill -9``.
- ``Throughput``: tokens/s, examples/s and model FLOP/s in the logs.
- ``adamw`` (with ``gradient_accumulation_steps``; exact for sparse embedding gradients,
  see ``AdamW``) and ``WarmupLinearDecay``.
"""
from keras_lm.training.distribution import (
    STRATEGY_NAMES,
    WorkerLostError,
    enable_multi_worker_fit,
    is_multi_worker,
    strategy,
)
from keras_lm.training.optimizers import AdamW, adamw
from keras_lm.training.resume import CheckpointError, StepBackup, resumable_fit
from keras_lm.training.schedules import InverseSquareRootWarmup, WarmupLinearDecay
from keras_lm.training.speed import fastest_precision, jit_compile_for, precision, resolve_precision
from keras_lm.training.telemetry import Throughput, training_flops_per_token

__all__ = [
    "AdamW",
    "STRATEGY_NAMES",
    "CheckpointError",
    "InverseSquareRootWarmup",
    "StepBackup",
    "Throughput",
    "WarmupLinearDecay",
    "WorkerLostError",
    "adamw",
    "enable_multi_worker_fit",
    "is_multi_worker",
    "fastest_precision",
    "jit_compile_for",
    "precision",
    "resolve_precision",
    "resumable_fit",
    "strategy",
    "training_flops_per_token",
]
