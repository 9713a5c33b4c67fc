"""keras_lm.models: backbones built from keras_lm.layers as functional Keras models."""
from keras_lm.models.decoder import Decoder
from keras_lm.models.encoder import Encoder

__all__ = ["Decoder", "Encoder"]
