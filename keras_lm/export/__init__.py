"""Exports: TF-Hub-style encoder pairs and string-in serving SavedModels."""
from keras_lm.export.encoder import encoder
from keras_lm.export.generation import generation_serving
from keras_lm.export.seq2seq import seq2seq_serving
from keras_lm.export.serving import serving

__all__ = ["encoder", "generation_serving", "seq2seq_serving", "serving"]
