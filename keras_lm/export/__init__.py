"""keras_lm.export."""
