"""keras_lm.applications."""
