"""Serving SavedModels: raw `tf.string` text in, named outputs out (what TF Serving loads)."""
import importlib
import json
import os

import keras
import tensorflow as tf

from keras_lm.export.files import atomic_directory, refuse_unsafe_directory
from keras_lm.tasks.task import trim_padding


#: A classifier export's class names, by id (next to the SavedModel, where TF Serving ignores extra files).
LABEL_NAMES_FILE = os.path.join("assets.extra", "label_names.json")


def _classifier_endpoint(task, preprocess=None):
    names = getattr(task, "label_names", None)

    def serve(text):
        features = trim_padding((preprocess or task.preprocessor)(text))
        logits = tf.cast(task(features, training=False), tf.float32)
        probabilities = tf.nn.softmax(logits, axis=-1)
        label = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        outputs = {"probabilities": probabilities, "label": label}
        if names:
            outputs["label_name"] = tf.gather(tf.constant(list(names), tf.string), label)
        return outputs

    return serve


def read_label_names(directory: str) -> tuple | None:
    """The class names a classifier serving export was written with (`LABEL_NAMES_FILE`), else None."""
    path = os.path.join(directory, LABEL_NAMES_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as file:
        return tuple(json.load(file)["label_names"])


def _sentence_encoder_endpoint(task):
    def serve(text):
        features = trim_padding(task.preprocessor(text))
        return {"embedding": tf.cast(task(features, training=False), tf.float32)}

    return serve


def serving(task, directory: str, overwrite: bool = False, protected=(), **options) -> str:
    """Exports `task` so that `serving_default` takes tf.string [batch] and returns named outputs.

    For a `Classifier`: {"probabilities": float32 [batch, classes], "label": int64 [batch]}, and
    "label_name" tf.string [batch] when it has `label_names` (also written to DIR/assets.extra/
    label_names.json, see `read_label_names`).
    For a `SentenceEncoder`: {"embedding": float32 [batch, hidden]} (pooled, normalized if it normalizes).
    For a `CausalLM` (or `keras_lm.pretraining.CausalLM`) with a tokenizer: `serving_default` takes
    `prompts` and `max_new_tokens` and returns the generated `text`; see `keras_lm.export.generation`.
    For a `Seq2SeqLM` with a tokenizer: `serving_default` takes `sources` and returns their translations
    `text`; `options` (`num_beams`, `length_penalty`, `max_new_tokens`) go to `keras_lm.export.seq2seq`.
    For a `TokenClassifier`: `text` → `words`, `tag_ids`, `tags`, `num_words` (one tag per word).
    For a `SpanQA`: `question` and `context` → `answer`, `start`, `end` (character offsets), `score`.
    For a `MultipleChoice`: `context` [batch] and `choices` [batch, choices] → `probabilities`, `choice`.
    Loading the export needs `import tensorflow_text` in the loading process (its tokenizer ops),
    except with `portable=True` (a `Classifier` with a `BertPreprocessor` or a one-segment
    `RobertaPreprocessor`): then the graph uses core TensorFlow ops only, with the same token ids (see
    `keras_lm.export.portable`).

    `overwrite=True` replaces only a previous serving export (one holding the `.keras_lm_export`
    marker that every export writes); any other existing folder, `""`, `"."`, the home folder, a
    folder holding the current working directory or a `protected` path (e.g. the source `.keras`
    file) is refused with FileExistsError before any work.

    Example:
        >>> keras_lm.export.serving(classifier, "serving/sentiment/1")  # doctest: +SKIP
        >>> served = tf.saved_model.load("serving/sentiment/1")  # doctest: +SKIP
        >>> served.signatures["serving_default"](text=tf.constant(["a gem"]))  # doctest: +SKIP
    """
    from keras_lm.tasks import CausalLM, Classifier, MultipleChoice, SentenceEncoder, Seq2SeqLM, SpanQA, TokenClassifier

    if options.pop("portable", False):
        from keras_lm.export.portable import portable_serving

        return portable_serving(task, directory, overwrite=overwrite, protected=protected, **options)
    refuse_unsafe_directory(directory, protected)
    headed = {TokenClassifier: "token_classifier", SpanQA: "span_qa", MultipleChoice: "multiple_choice"}
    for task_class, module in headed.items():
        if isinstance(task, task_class):
            if options:
                raise TypeError(f"keras_lm.export.serving of a {type(task).__name__} takes no options; got "
                                f"{', '.join(sorted(options))}.")
            export = getattr(importlib.import_module(f"keras_lm.export.{module}_serving"), f"{module}_serving")
            return export(task, directory, overwrite=overwrite, protected=protected)
    if isinstance(task, Seq2SeqLM):
        from keras_lm.export.seq2seq import seq2seq_serving

        return seq2seq_serving(task, directory, overwrite=overwrite, protected=protected, **options)
    if isinstance(task, CausalLM):
        from keras_lm.export.generation import generation_serving

        return generation_serving(task, directory, overwrite=overwrite, protected=protected, **options)
    if options:
        raise TypeError(f"keras_lm.export.serving of a {type(task).__name__} takes no options; got "
                        f"{', '.join(sorted(options))}.")
    if getattr(task, "preprocessor", None) is None:
        raise ValueError(
            "keras_lm.export.serving needs a task with a preprocessor to take raw text; "
            "attach one (e.g. Classifier(..., preprocessor=BertPreprocessor(...)))."
        )
    if isinstance(task, Classifier):
        endpoint = _classifier_endpoint(task)
    elif isinstance(task, SentenceEncoder):
        endpoint = _sentence_encoder_endpoint(task)
    else:
        raise TypeError(
            f"No serving export for {type(task).__name__} yet; supported: Classifier, SentenceEncoder, CausalLM, "
            "Seq2SeqLM, TokenClassifier, SpanQA, MultipleChoice."
        )
    print(f"[export] writing serving SavedModel to {directory}")
    with atomic_directory(directory, overwrite, kind="serving", protected=protected) as staging:
        archive = keras.export.ExportArchive()
        archive.track(task)
        archive.track(task.preprocessor)
        archive.add_endpoint(
            "serve",
            endpoint,
            input_signature=[tf.TensorSpec([None], tf.string, name="text")],
        )
        archive.write_out(staging, verbose=False)
        if isinstance(task, Classifier) and getattr(task, "label_names", None):
            os.makedirs(os.path.join(staging, os.path.dirname(LABEL_NAMES_FILE)), exist_ok=True)
            with open(os.path.join(staging, LABEL_NAMES_FILE), "w", encoding="utf-8") as file:
                json.dump({"label_names": list(task.label_names)}, file)
    return directory
