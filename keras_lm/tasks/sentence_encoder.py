"""Sentence embeddings: an encoder backbone pooled (mean over real tokens, or [CLS]) and L2-normalized."""
from __future__ import annotations

import os

import keras
import numpy as np

from keras_lm.layers import POOLINGS, SentencePooling
from keras_lm.tasks.classifier import ENCODER_INPUTS, backbone_inputs, load_backbone_file
from keras_lm.tasks.saved_model import (
    ENCODER_DIR,
    PREPROCESS_DIR,
    SavedModelEncoder,
    SavedModelPreprocessor,
    read_manifest,
)
from keras_lm.tasks.task import Task, check_tokenizer_fits, is_empty

def _check_encoder(backbone) -> None:
    inputs = getattr(backbone, "input", None) if isinstance(backbone, keras.Model) else None
    if isinstance(backbone, SavedModelEncoder):
        return
    if not isinstance(inputs, dict) or set(ENCODER_INPUTS) - set(inputs):
        raise TypeError(
            "SentenceEncoder needs an encoder backbone with inputs token_ids, segment_ids and padding_mask "
            f"(e.g. keras_lm.applications.Bert) or a SavedModelEncoder; got {type(backbone).__name__}."
        )


@keras.saving.register_keras_serializable(package="keras_lm")
class SentenceEncoder(Task):
    """Turns texts into fixed-size embeddings: encoder -> pooling -> optional L2 normalization.

    The model maps the encoder inputs to float32 ``[batch, hidden]`` embeddings; with a
    ``preprocessor`` it takes raw strings in ``predict`` and ``encode``, batches are trimmed to
    their longest text (padding is masked, so embeddings do not change) and
    ``keras_lm.export.serving`` writes a SavedModel whose ``serving_default`` maps ``text``
    (``tf.string [batch]``) to ``{"embedding": float32 [batch, hidden]}``.

    Args:
        backbone: a keras_lm encoder (e.g. ``keras_lm.applications.Bert``) or a ``SavedModelEncoder``.
        preprocessor: optional ``BertPreprocessor`` (or ``SavedModelPreprocessor``) for raw text.
        pooling: ``"mean"`` over the real tokens (padding excluded) or ``"cls"`` (the first token).
        normalize: L2-normalize the embeddings (dot products are then cosine similarities).

    Example:
        >>> import keras_lm
        >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "king", "is", "dead"]
        >>> preprocessor = keras_lm.tokenizers.BertPreprocessor(keras_lm.tokenizers.WordPiece(vocab), 8)
        >>> bert = keras_lm.applications.Bert("tiny", vocabulary_size=len(vocab), max_sequence_length=8)
        >>> encoder = SentenceEncoder(bert, preprocessor)
        >>> encoder.encode(["the king is dead", "the king"]).shape
        (2, 128)
    """

    def __init__(self, backbone, preprocessor=None, pooling: str = "mean", normalize: bool = True, **kwargs):
        _check_encoder(backbone)
        check_tokenizer_fits(backbone, getattr(preprocessor, "tokenizer", None))
        pooling_layer = SentencePooling(pooling, normalize, name="pooling")
        inputs = backbone_inputs(backbone)
        sequence_output = backbone(inputs)["sequence_output"]
        embedding = pooling_layer(sequence_output, inputs["padding_mask"])
        super().__init__(inputs=inputs, outputs=embedding, **kwargs)
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.pooling = pooling
        self.normalize = bool(normalize)

    @property
    def embedding_dim(self) -> int | None:
        """Size of the embeddings (the encoder's hidden size)."""
        return self.output.shape[-1]

    def encode(self, texts, batch_size: int = 32) -> np.ndarray:
        """Float32 embeddings ``[len(texts), hidden]`` of a list (or array) of strings.

        Example:
            >>> encoder.encode(["a gripping film", "dull"], batch_size=16)  # doctest: +SKIP
        """
        if self.preprocessor is None:
            raise ValueError("SentenceEncoder.encode takes raw text and needs a preprocessor: "
                             "SentenceEncoder(backbone, preprocessor=BertPreprocessor(...)).")
        if isinstance(texts, (str, bytes)):
            raise ValueError("SentenceEncoder.encode takes a list of strings, not a single string: "
                             "pass [text].")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
        texts = list(texts) if not isinstance(texts, np.ndarray) else texts
        if is_empty(texts):
            return np.zeros((0, self.embedding_dim or 0), "float32")
        return np.asarray(self.predict(texts, batch_size=int(batch_size), verbose=0), dtype="float32")

    def predict(self, x, batch_size=None, **kwargs):
        """``Model.predict``; no examples give an empty ``[0, hidden]`` array."""
        if is_empty(x):
            return np.zeros((0, self.embedding_dim or 0), dtype="float32")
        return super().predict(x, batch_size=batch_size, **kwargs)

    @classmethod
    def from_saved_model(cls, directory: str, **kwargs) -> "SentenceEncoder":
        """An encoder export (``keras_lm.export.encoder``) reloaded trainably, with its preprocess model.

        Example:
            >>> encoder = SentenceEncoder.from_saved_model("hub/bert")  # doctest: +SKIP
        """
        read_manifest(directory)
        backbone = SavedModelEncoder(os.path.join(directory, ENCODER_DIR), name="encoder")
        preprocessor = kwargs.pop("preprocessor", None) or SavedModelPreprocessor(
            os.path.join(directory, PREPROCESS_DIR), name="preprocessor"
        )
        return cls(backbone, preprocessor=preprocessor, **kwargs)

    @classmethod
    def from_keras_file(cls, path: str, **kwargs) -> "SentenceEncoder":
        """Starts from a ``.keras`` file holding a backbone or a model with a ``.backbone`` (a pretrainer)."""
        return cls(load_backbone_file(path), **kwargs)

    def get_config(self):
        return {
            **self._base_config(),
            "pooling": self.pooling,
            "normalize": self.normalize,
        }
