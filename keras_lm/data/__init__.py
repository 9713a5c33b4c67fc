"""keras_lm.data."""
