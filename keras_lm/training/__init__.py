"""keras_lm.training."""
