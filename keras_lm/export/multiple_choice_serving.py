"""Serving SavedModels for ``keras_lm.tasks.MultipleChoice``: raw contexts and choices in.

``serving_default`` takes ``context`` tf.string ``[batch]`` and ``choices`` tf.string
``[batch, num_choices]`` and returns ``probabilities`` float32 ``[batch, num_choices]`` (softmax over
the choices) and ``choice`` int64 ``[batch]`` (the index of the most probable choice). Each (context,
choice) pair is packed in the graph as the task's ``pack`` does, so the answers equal the in-memory
model's. Loading needs ``import tensorflow_text`` in the loading process (the tokenizer's ops).
"""
from __future__ import annotations

import keras
import tensorflow as tf

from keras_lm.export.files import atomic_directory, refuse_unsafe_directory

EXPORT_KIND = "serving"


def multiple_choice_serving(task, directory: str, overwrite: bool = False, protected=()) -> str:
    """Exports a ``MultipleChoice`` task (with its preprocessor) as a serving SavedModel.

    ``overwrite=True`` replaces only a previous serving export; the current folder, the home
    folder or a folder holding a ``protected`` path (e.g. the source ``.keras`` file) is refused
    before any work, and a failed export leaves an existing one untouched (see
    ``keras_lm.export.files``).

    Example:
        >>> multiple_choice_serving(model, "serving/choice/1")  # doctest: +SKIP
        >>> served = tf.saved_model.load("serving/choice/1")  # doctest: +SKIP
        >>> served.signatures["serving_default"](
        ...     context=tf.constant(["The man broke his toe. What was the cause?"]),
        ...     choices=tf.constant([["He dropped a hammer on his foot.", "He got a hole in his sock."]]))  # doctest: +SKIP
    """
    from keras_lm.tasks.multiple_choice import MultipleChoice

    refuse_unsafe_directory(directory, protected)
    if not isinstance(task, MultipleChoice):
        raise TypeError(f"multiple_choice_serving exports a MultipleChoice task, not a {type(task).__name__}.")
    if task.preprocessor is None:
        raise ValueError("multiple_choice_serving needs a task with a preprocessor to take raw text; attach one "
                         "(MultipleChoice(..., preprocessor=BertPreprocessor(...))).")

    def serve(context, choices):
        logits = tf.cast(task(task.pack(context, choices), training=False), tf.float32)
        probabilities = tf.nn.softmax(logits, axis=-1)
        return {"probabilities": probabilities,
                "choice": tf.argmax(probabilities, axis=-1, output_type=tf.int64)}

    print(f"[export] writing multiple-choice serving SavedModel to {directory}")
    with atomic_directory(directory, overwrite, kind=EXPORT_KIND, protected=protected) as staging:
        archive = keras.export.ExportArchive()
        archive.track(task)
        archive.track(task.preprocessor)
        archive.add_endpoint(
            "serve",
            serve,
            input_signature=[tf.TensorSpec([None], tf.string, name="context"),
                             tf.TensorSpec([None, task.num_choices], tf.string, name="choices")],
        )
        archive.write_out(staging, verbose=False)
    return directory
