"""keras_lm.layers."""
