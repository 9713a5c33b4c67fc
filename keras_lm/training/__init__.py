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
  see ``AdamW``; linear or cosine decay), ``WarmupLinearDecay``, ``WarmupCosineDecay`` and
  ``callbacks`` (early stopping on a validation metric, best-checkpoint restore).
- ``Distiller`` (knowledge distillation), ``adversarial_training`` (FGM / PGD on the input
  embeddings), ``L2SP`` / ``EWC`` / ``fisher_information`` / ``ReplayBuffer`` (continual learning).
"""
from keras_lm.training.adversarial import AdversarialTraining, adversarial_training, remove_adversarial_training
from keras_lm.training.continual import EWC, L2SP, AnchoredPenalty, ReplayBuffer, fisher_information, mix_replay
from keras_lm.training.distillation import Distiller
from keras_lm.training.distribution import (
    STRATEGY_NAMES,
    WorkerLostError,
    enable_multi_worker_fit,
    is_multi_worker,
    strategy,
)
from keras_lm.training.optimizers import AdamW, adamw
from keras_lm.training.presets import callbacks
from keras_lm.training.resume import CheckpointError, StepBackup, resumable_fit
from keras_lm.training.schedules import InverseSquareRootWarmup, WarmupCosineDecay, WarmupLinearDecay
from keras_lm.training.speed import fastest_precision, jit_compile_for, precision, resolve_precision
from keras_lm.training.telemetry import Throughput, training_flops_per_token

__all__ = [
    "AdamW",
    "AdversarialTraining",
    "AnchoredPenalty",
    "Distiller",
    "EWC",
    "L2SP",
    "ReplayBuffer",
    "WarmupCosineDecay",
    "adversarial_training",
    "callbacks",
    "fisher_information",
    "mix_replay",
    "remove_adversarial_training",
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
