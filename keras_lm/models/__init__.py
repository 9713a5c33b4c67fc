"""keras_lm.models."""
