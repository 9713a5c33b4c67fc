"""keras_lm.peft."""
