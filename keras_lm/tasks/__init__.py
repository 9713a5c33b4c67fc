"""keras_lm.tasks."""
