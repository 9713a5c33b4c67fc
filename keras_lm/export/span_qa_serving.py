"""Serving SavedModel of a ``SpanQA`` task: question and context strings in, answer spans out."""
from __future__ import annotations

import keras
import tensorflow as tf

from keras_lm.export.files import atomic_directory, refuse_unsafe_directory


def span_qa_serving(task, directory: str, overwrite: bool = False, protected=()) -> str:
    """Exports ``task`` so that ``serving_default`` answers questions about raw-text contexts.

    Inputs: ``question`` and ``context``, ``tf.string [batch]`` (one context per question). Outputs:
    ``answer`` (``tf.string [batch]``, sliced from the context), ``start`` / ``end`` (int64 ``[batch]``,
    its character span ``[start, end)`` in the context, code points as SQuAD's ``answer_start``) and
    ``score`` (float32, ``start_logit + end_logit``; ``-inf`` with an empty answer when the context
    has no token). The same endpoint is ``serve`` (for ``keras.layers.TFSMLayer``). Long contexts are
    split into windows and the best span over all windows is returned, as ``SpanQA.predict_answers`` does.
    Loading needs ``import tensorflow_text`` (its tokenizer ops).

    ``overwrite=True`` replaces only a previous serving export (marked by its ``.keras_lm_export``
    file); any other existing folder, ``""``, ``"."``, the home folder, a folder holding the current
    working directory or a ``protected`` path is refused with FileExistsError before any work.

    Example:
        >>> span_qa_serving(qa, "serving/qa/1")  # doctest: +SKIP
        >>> served = tf.saved_model.load("serving/qa/1")  # doctest: +SKIP
        >>> served.signatures["serving_default"](question=tf.constant(["Who won?"]),
        ...                                      context=tf.constant(["Ana won the cup."]))["answer"]  # doctest: +SKIP
    """
    from keras_lm.tasks.span_qa import SpanQA, answer_questions

    refuse_unsafe_directory(directory, protected)
    if not isinstance(task, SpanQA):
        raise TypeError(f"span_qa_serving exports a keras_lm.tasks.SpanQA; got {type(task).__name__}.")
    if task.preprocessor is None:
        raise ValueError("span_qa_serving needs a SpanQA with a preprocessor to take raw text; attach one "
                         "(SpanQA(..., preprocessor=QuestionContextPreprocessor(tokenizer, sequence_length=...))).")

    def serve(question, context):
        return answer_questions(task, question, context)

    print(f"[export] writing question-answering SavedModel to {directory}")
    with atomic_directory(directory, overwrite, kind="serving", protected=protected) as staging:
        archive = keras.export.ExportArchive()
        archive.track(task)
        archive.track(task.preprocessor)
        archive.add_endpoint(
            "serve",
            serve,
            input_signature=[tf.TensorSpec([None], tf.string, name="question"),
                             tf.TensorSpec([None], tf.string, name="context")],
        )
        archive.write_out(staging, verbose=False)
    return directory
