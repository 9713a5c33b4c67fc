"""keras_lm: transformer language models in Keras 3 on TensorFlow.

Build an encoder, decoder or encoder-decoder from Keras layers, pretrain it with ``model.fit``,
fine-tune it with a task head and export SavedModels that take raw text.

Example:
    >>> import keras_lm
    >>> encoder = keras_lm.applications.Bert("tiny", vocabulary_size=1000)
    >>> sorted(encoder.output.keys())
    ['pooled_output', 'sequence_output']
"""
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_lm import data  # noqa: E402
from keras_lm import tokenizers  # noqa: E402
from keras_lm import layers  # noqa: E402
from keras_lm import models  # noqa: E402
from keras_lm import applications  # noqa: E402
from keras_lm import training  # noqa: E402
from keras_lm import pretraining  # noqa: E402
from keras_lm import evaluation  # noqa: E402
from keras_lm import tasks  # noqa: E402
from keras_lm import export  # noqa: E402
from keras_lm import peft  # noqa: E402


def __getattr__(name):
    # keras_lm.visualize (matplotlib) is imported on first use only.
    if name == "visualize":
        import importlib

        return importlib.import_module("keras_lm.visualize")
    raise AttributeError(f"module 'keras_lm' has no attribute {name!r}")

__version__ = "0.1.0"
