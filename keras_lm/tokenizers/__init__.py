"""keras_lm.tokenizers."""
