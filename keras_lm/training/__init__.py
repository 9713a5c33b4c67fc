"""Training utilities: optimizer presets and schedules."""
from keras_lm.training.optimizers import adamw
from keras_lm.training.schedules import WarmupLinearDecay

__all__ = ["adamw", "WarmupLinearDecay"]
