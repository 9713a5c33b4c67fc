"""keras_lm.models: backbones built from keras_lm.layers as functional Keras models."""
from keras_lm.models.decoder import Decoder
from keras_lm.models.encoder import Encoder
from keras_lm.models.encoder_decoder import EncoderDecoder

__all__ = ["Decoder", "Encoder", "EncoderDecoder"]
