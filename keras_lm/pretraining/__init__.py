"""keras_lm.pretraining."""
