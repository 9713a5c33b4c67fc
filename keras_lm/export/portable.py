"""Classifier serving exports in core TensorFlow ops only: they load where tensorflow_text is missing."""
import json
import os

import keras
import tensorflow as tf

from keras_lm.export.files import atomic_directory, refuse_unsafe_directory
from keras_lm.export.serving import LABEL_NAMES_FILE, _classifier_endpoint
from keras_lm.tokenizers.portable_byte_pair import PortableBytePair
from keras_lm.tokenizers.portable_word_piece import PortableWordPiece


class PortableBertPacker(tf.Module):
    """``BertPreprocessor`` for one segment in core ops: ``[CLS] tokens [SEP]`` padded to ``sequence_length``.

    Example:
        >>> packer = PortableBertPacker(preprocessor)  # doctest: +SKIP
        >>> packer(tf.constant(["a gem"]))["token_ids"].shape  # doctest: +SKIP
        TensorShape([1, 128])
    """

    def __init__(self, preprocessor, name: str | None = None) -> None:
        super().__init__(name=name)
        tokenizer = preprocessor.tokenizer
        self.word_piece = PortableWordPiece(tokenizer)
        self.sequence_length = int(preprocessor.sequence_length)
        self.cls_id, self.sep_id, self.pad_id = int(tokenizer.cls_id), int(tokenizer.sep_id), int(tokenizer.pad_id)

    def __call__(self, text: tf.Tensor) -> dict:
        tokens = self.word_piece(text)[:, : self.sequence_length - 2]
        rows = tokens.nrows()
        packed = tf.concat(
            [tf.fill([rows, 1], self.cls_id), tokens, tf.fill([rows, 1], self.sep_id)], axis=1
        ).to_tensor(default_value=self.pad_id, shape=[None, self.sequence_length])
        return {
            "token_ids": packed,
            "segment_ids": tf.zeros_like(packed),
            "padding_mask": tf.not_equal(packed, self.pad_id),
        }


class PortableRobertaPacker(tf.Module):
    """``RobertaPreprocessor`` for one segment in core ops: ``<s> tokens </s>`` padded to ``sequence_length``.

    Example:
        >>> packer = PortableRobertaPacker(preprocessor)  # doctest: +SKIP
        >>> packer(tf.constant(["a gem"]))["token_ids"].shape  # doctest: +SKIP
        TensorShape([1, 128])
    """

    def __init__(self, preprocessor, name: str | None = None) -> None:
        super().__init__(name=name)
        if preprocessor.tokenizer.sequence_length:
            raise ValueError(
                "PortableRobertaPacker needs a BytePair tokenizer without sequence_length (the preprocessor pads); "
                f"got sequence_length={preprocessor.tokenizer.sequence_length}."
            )
        self.byte_pair = PortableBytePair(preprocessor.tokenizer)
        self.sequence_length = int(preprocessor.sequence_length)
        self.cls_id, self.sep_id, self.pad_id = int(preprocessor.cls_id), int(preprocessor.sep_id), int(preprocessor.pad_id)

    def __call__(self, text: tf.Tensor) -> dict:
        tokens = self.byte_pair(text)[:, : self.sequence_length - 2]
        rows = tokens.nrows()
        packed = tf.concat(
            [tf.fill([rows, 1], self.cls_id), tokens, tf.fill([rows, 1], self.sep_id)], axis=1
        )
        token_ids = packed.to_tensor(default_value=self.pad_id, shape=[None, self.sequence_length])
        return {
            "token_ids": token_ids,
            "segment_ids": tf.zeros_like(token_ids),
            "padding_mask": tf.sequence_mask(packed.row_lengths(), self.sequence_length),
        }


def portable_packer(preprocessor) -> tf.Module:
    """The core-op packer for ``preprocessor`` (``BertPreprocessor`` or ``RobertaPreprocessor``, one segment)."""
    from keras_lm.tokenizers.bert_preprocessor import BertPreprocessor
    from keras_lm.tokenizers.roberta_preprocessor import RobertaPreprocessor

    if isinstance(preprocessor, BertPreprocessor):
        return PortableBertPacker(preprocessor)
    if isinstance(preprocessor, RobertaPreprocessor):
        return PortableRobertaPacker(preprocessor)
    raise ValueError(
        "portable_serving needs a Classifier whose preprocessor is a BertPreprocessor (WordPiece) or a "
        f"RobertaPreprocessor (byte-level BPE); got {type(preprocessor).__name__}."
    )


def portable_serving(task, directory: str, overwrite: bool = False, protected=()) -> str:
    """A `Classifier` serving export (as `keras_lm.export.serving`) whose graph needs no tensorflow_text.

    `serving_default` takes `text` (tf.string [batch]) and returns `probabilities` (float32
    [batch, classes]), `label` (int64 [batch]) and `label_name` (tf.string [batch], when the
    classifier has label names). The classifier's preprocessor must be a one-segment
    `BertPreprocessor` with a `WordPiece` tokenizer or a `RobertaPreprocessor` with a `BytePair`
    tokenizer (without NFC normalization); the ids are those of that tokenizer.

    Example:
        >>> keras_lm.export.portable.portable_serving(classifier, "serving/sentiment/1")  # doctest: +SKIP
        >>> tf.saved_model.load("serving/sentiment/1").signatures["serving_default"](text=tf.constant(["a gem"]))  # doctest: +SKIP
    """
    from keras_lm.tasks import Classifier

    refuse_unsafe_directory(directory, protected)
    if not isinstance(task, Classifier):
        raise TypeError(f"portable_serving exports a Classifier; got {type(task).__name__}.")
    packer = portable_packer(getattr(task, "preprocessor", None))
    serve = _classifier_endpoint(task, preprocess=packer)
    names = tuple(getattr(task, "label_names", None) or ())

    print(f"[export] writing portable serving SavedModel to {directory}")
    with atomic_directory(directory, overwrite, kind="serving", protected=protected) as staging:
        archive = keras.export.ExportArchive()
        archive.track(task)
        archive.add_endpoint("serve", serve, input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        archive.write_out(staging, verbose=False)
        if names:
            os.makedirs(os.path.join(staging, os.path.dirname(LABEL_NAMES_FILE)), exist_ok=True)
            with open(os.path.join(staging, LABEL_NAMES_FILE), "w", encoding="utf-8") as file:
                json.dump({"label_names": list(names)}, file)
    return directory
