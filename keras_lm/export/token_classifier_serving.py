"""Serving SavedModel of a `TokenClassifier`: raw `tf.string` text in, one tag per word out."""
import keras
import tensorflow as tf

from keras_lm.export.files import atomic_directory, refuse_unsafe_directory
from keras_lm.tokenizers.word_alignment import split_words

#: The tag name served for a word that got no token (cut by truncation, or tokenized to nothing).
UNTAGGED_NAME = ""


def _tagging_endpoint(task):
    names = tf.constant([*(task.tag_names or [str(i) for i in range(task.num_classes)]), UNTAGGED_NAME])

    def serve(text):
        words = split_words(text)
        tag_ids = task.word_tag_ids(words)
        dense_ids = tag_ids.to_tensor(default_value=-1)
        return {
            "words": words.to_tensor(default_value=""),
            "tag_ids": dense_ids,
            "tags": tf.gather(names, tf.where(dense_ids < 0, task.num_classes, dense_ids)),
            "num_words": tf.cast(words.row_lengths(), tf.int32),
        }

    return serve


def token_classifier_serving(task, directory: str, overwrite: bool = False, protected=()) -> str:
    """Exports a `TokenClassifier` whose `serving_default` takes tf.string text [batch] and tags its words.

    The text is split into words as BERT's basic tokenizer splits it (whitespace; each punctuation
    character and CJK ideograph a word: `keras_lm.tokenizers.word_alignment.split_words`). Outputs,
    padded to the longest text of the batch:
    `words` tf.string [batch, words] (padding ""), `tag_ids` int32 [batch, words] (padding -1),
    `tags` tf.string [batch, words] (the tag names; padding ""), `num_words` int32 [batch].
    A word that got no token (cut by the preprocessor's sequence length) has tag id -1 and tag "".
    Loading needs `import tensorflow_text` (the tokenizer ops).

    `overwrite=True` replaces only a previous serving export; unsafe folders are refused before any
    work (see `keras_lm.export.serving`).

    Example:
        >>> token_classifier_serving(tagger, "serving/ner/1")  # doctest: +SKIP
        >>> served = tf.saved_model.load("serving/ner/1")  # doctest: +SKIP
        >>> served.signatures["serving_default"](text=tf.constant(["Ada lives in London."]))["tags"]  # doctest: +SKIP
    """
    from keras_lm.tasks.token_classifier import TokenClassifier

    refuse_unsafe_directory(directory, protected)
    if not isinstance(task, TokenClassifier):
        raise TypeError(f"token_classifier_serving exports a TokenClassifier; got {type(task).__name__}.")
    if task.aligner is None:
        raise ValueError(
            "token_classifier_serving needs a tagger with a preprocessor to take raw text; build it with "
            "TokenClassifier(..., preprocessor=BertPreprocessor(...))."
        )
    print(f"[export] writing token-classifier serving SavedModel to {directory}")
    with atomic_directory(directory, overwrite, kind="serving", protected=protected) as staging:
        archive = keras.export.ExportArchive()
        archive.track(task)
        archive.track(task.aligner)
        archive.add_endpoint(
            "serve",
            _tagging_endpoint(task),
            input_signature=[tf.TensorSpec([None], tf.string, name="text")],
        )
        archive.write_out(staging, verbose=False)
    return directory
